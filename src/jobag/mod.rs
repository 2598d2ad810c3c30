//! The JobAG side (SPEC 4.1): the client of the change feed, the snapshot
//! and single postings.
//!
//! Owns fetching pages, the bounds SPEC 4.1 sets on what JobAG may send, and
//! mapping HTTP answers onto [`SourceError`]. It never parses a posting
//! (items stay JSON text for `domain` to parse and quarantine one by one),
//! never stores a cursor (the store does, after the page's changes are
//! recorded), and never logs a token or posting content.

pub mod client;

pub use client::{
    ChangesPage, FeedItem, JobagClient, MAX_CURSOR_LEN, MAX_ITEM, MAX_PAGE_BODY, RawItem,
    SetupError, SnapshotPage, SourceError, Unreadable, default_backoff,
};
