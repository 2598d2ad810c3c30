//! The judge of EURES's request history: what every reference the agent ever
//! touched went through, held against the promises that make a deletion
//! final. Looking only at what EURES holds at the end misses a posting that
//! was deleted or withdrawn, which is where a resurrection would show.

use std::fmt;

use eures_sync_sims::eures::RequestRecord;
use hyper::Method;

/// A promise about one reference's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// No PUT is applied after a DELETE of an equal or newer version was
    /// applied: a deleted posting never comes back through a stale copy.
    NoResurrection,
    /// The versions PUTs carry, in the order they arrived, never decrease.
    PutVersionsNeverDecrease,
    /// A DELETE carries at least the highest version any earlier request of
    /// its reference carried, so EURES cannot refuse it as stale.
    DeleteCarriesHighestVersion,
    /// At most one request per reference is in flight at a time.
    OneRequestInFlight,
    /// Every PUT and DELETE names the version it was computed from.
    VersionCarried,
}

/// One broken promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reference: String,
    pub rule: Rule,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}: {}", self.reference, self.rule, self.detail)
    }
}

/// Judges one reference's requests (any order: sorted here by arrival, and
/// applies by the time they changed the holdings).
pub fn judge_reference(reference: &str, requests: &[RequestRecord]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut violation = |rule: Rule, detail: String| {
        out.push(Violation {
            reference: reference.to_owned(),
            rule,
            detail,
        })
    };
    let mut arrived: Vec<&RequestRecord> = requests
        .iter()
        .filter(|r| r.method == Method::PUT || r.method == Method::DELETE)
        .collect();
    arrived.sort_by_key(|r| r.started);

    let mut highest_seen: Option<u64> = None;
    let mut last_put: Option<u64> = None;
    for (i, r) in arrived.iter().enumerate() {
        if r.in_flight > 1 {
            violation(
                Rule::OneRequestInFlight,
                format!(
                    "request #{i} ({} v{:?}) arrived with {} in flight",
                    r.method, r.source_version, r.in_flight
                ),
            );
        }
        let Some(version) = r.source_version else {
            violation(
                Rule::VersionCarried,
                format!("request #{i} ({}) carried no version", r.method),
            );
            continue;
        };
        if r.method == Method::PUT {
            if let Some(last) = last_put
                && version < last
            {
                violation(
                    Rule::PutVersionsNeverDecrease,
                    format!("request #{i}: PUT v{version} after PUT v{last}"),
                );
            }
            last_put = Some(last_put.map_or(version, |l| l.max(version)));
        } else if let Some(seen) = highest_seen
            && version < seen
        {
            violation(
                Rule::DeleteCarriesHighestVersion,
                format!("request #{i}: DELETE v{version} after v{seen} was sent"),
            );
        }
        highest_seen = Some(highest_seen.map_or(version, |h| h.max(version)));
    }

    let mut applied: Vec<&RequestRecord> = arrived
        .iter()
        .copied()
        .filter(|r| r.applied_at.is_some())
        .collect();
    applied.sort_by_key(|r| r.applied_at);
    let mut deleted_at: Option<u64> = None;
    for r in applied {
        let Some(version) = r.source_version else {
            continue;
        };
        if r.method == Method::DELETE {
            deleted_at = Some(deleted_at.map_or(version, |d| d.max(version)));
        } else if let Some(deleted) = deleted_at
            && deleted >= version
        {
            violation(
                Rule::NoResurrection,
                format!("PUT v{version} applied after DELETE v{deleted} was applied"),
            );
        }
    }
    out
}

/// Judges every reference of a request history.
pub fn judge<'a>(
    histories: impl IntoIterator<Item = (&'a String, &'a Vec<RequestRecord>)>,
) -> Vec<Violation> {
    histories
        .into_iter()
        .flat_map(|(reference, requests)| judge_reference(reference, requests))
        .collect()
}

/// Panics with the first violations found, if any.
pub fn assert_sound(violations: &[Violation]) {
    if violations.is_empty() {
        return;
    }
    let shown: Vec<String> = violations.iter().take(10).map(|v| v.to_string()).collect();
    panic!(
        "EURES's request history breaks {} promise(s):\n{}",
        violations.len(),
        shown.join("\n")
    );
}
