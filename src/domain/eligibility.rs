//! Desired EURES state of a posting (SPEC 2).
