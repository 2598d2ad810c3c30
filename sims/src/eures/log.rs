//! The request log: every request with its arrival, apply and answer
//! times, the in-flight count per reference, and the history queries the
//! test suite's judge reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use hyper::{Method, Response};

use super::{EuresSim, Shared, lock};
use crate::HandlerResult;

/// One request the simulator received, recorded when it finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: Method,
    /// The `{reference}` of a PUT or DELETE; `None` for the listing and for
    /// requests that did not route.
    pub reference: Option<String>,
    /// The body's `sourceVersion` (PUT) or the `X-Source-Version` header
    /// (DELETE), when readable.
    pub source_version: Option<u64>,
    /// The status answered; 0 when no response was sent (a simulated drop,
    /// or the client gave up while the request was held).
    pub status: u16,
    /// Whether the request changed the holdings (true for a drop after
    /// applying, even though the client saw no answer).
    pub applied: bool,
    /// When the simulator started handling the request.
    pub started: Instant,
    /// When it answered (or dropped / abandoned) it.
    pub finished: Instant,
    /// When the operation changed the holdings; `None` when it did not.
    /// Applies of one reference are ordered by it (the request history's
    /// judge reads the order EURES saw, not the order answers came back).
    pub applied_at: Option<Instant>,
    /// Requests for the same reference in flight when this one arrived,
    /// itself included: above 1 means two requests worked on one posting at
    /// once.
    pub in_flight: u32,
}

/// Requests seen, and which references have one in flight.
#[derive(Default)]
pub(super) struct RequestLog {
    /// Finished requests, in finishing order.
    records: Vec<RequestRecord>,
    /// Requests in flight per reference (entries removed at zero).
    in_flight: HashMap<String, u32>,
    /// Requests that started while another one for the same reference was
    /// in flight.
    overlaps: usize,
}

impl EuresSim {
    /// Turns request recording on or off (records kept so far stay).
    pub fn set_record_requests(&self, on: bool) {
        self.shared.record_requests.store(on, Ordering::Relaxed);
    }

    /// Every finished request so far, in finishing order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).records.clone()
    }

    /// Forgets the recorded requests and resets [`EuresSim::overlaps`].
    pub fn clear_requests(&self) {
        let mut log = lock(&self.shared.log);
        log.records.clear();
        log.overlaps = 0;
    }

    /// Requests that started while another request for the same reference
    /// was in flight (two overlapping requests count 1). Zero proves that no
    /// reference was ever worked on by two requests at once.
    pub fn overlaps(&self) -> usize {
        lock(&self.shared.log).overlaps
    }
}

/// The request history, as the judge of the test suite reads it: every
/// reference's requests with their arrival, apply and answer times.
impl EuresSim {
    /// Requests being handled right now (held, slowed, or between arrival
    /// and answer); 0 when the portal is quiet.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.log)
            .in_flight
            .values()
            .map(|n| *n as usize)
            .sum()
    }

    /// Every finished request that named a reference, grouped by reference,
    /// each group in arrival order.
    pub fn request_histories(&self) -> BTreeMap<String, Vec<RequestRecord>> {
        let mut out: BTreeMap<String, Vec<RequestRecord>> = BTreeMap::new();
        for record in lock(&self.shared.log).records.iter() {
            if let Some(reference) = &record.reference {
                out.entry(reference.clone())
                    .or_default()
                    .push(record.clone());
            }
        }
        for requests in out.values_mut() {
            requests.sort_by_key(|r| r.started);
        }
        out
    }
}

/// Tracks one request from start to finish: counts it in flight for its
/// reference and records it when dropped, so a request abandoned mid-way
/// (client gone, simulated drop, shutdown) is still accounted for.
pub(super) struct Tracker {
    shared: Arc<Shared>,
    method: Method,
    reference: Option<String>,
    pub(super) source_version: Option<u64>,
    status: u16,
    pub(super) applied: bool,
    started: Instant,
    pub(super) applied_at: Option<Instant>,
    in_flight: u32,
}

impl Tracker {
    pub(super) fn begin(shared: Arc<Shared>, method: Method, reference: Option<String>) -> Tracker {
        let started = Instant::now();
        let mut in_flight = 0;
        if let Some(r) = &reference {
            let mut log = lock(&shared.log);
            let n = log.in_flight.entry(r.clone()).or_insert(0);
            let overlapping = *n > 0;
            *n += 1;
            in_flight = *n;
            if overlapping {
                log.overlaps += 1;
            }
        }
        Tracker {
            shared,
            method,
            reference,
            source_version: None,
            status: 0,
            applied: false,
            started,
            applied_at: None,
            in_flight,
        }
    }

    /// Notes the status of `resp` and passes it on.
    pub(super) fn answer(&mut self, resp: Response<Body>) -> HandlerResult {
        self.status = resp.status().as_u16();
        Ok(resp)
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let finished = Instant::now();
        let mut log = lock(&self.shared.log);
        if let Some(r) = &self.reference
            && let Some(n) = log.in_flight.get_mut(r)
        {
            *n -= 1;
            if *n == 0 {
                log.in_flight.remove(r);
            }
        }
        if self.shared.record_requests.load(Ordering::Relaxed) {
            let record = RequestRecord {
                method: self.method.clone(),
                reference: self.reference.take(),
                source_version: self.source_version,
                status: self.status,
                applied: self.applied,
                started: self.started,
                finished,
                applied_at: self.applied_at,
                in_flight: self.in_flight,
            };
            log.records.push(record);
        }
    }
}
