//! HR-XML 3.2 `PositionOpening` renderer (SPEC 5). Placeholder until the
//! renderer lands.

use super::posting::PostingFields;

/// Why a posting does not render to a valid PositionOpening.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct Invalid {
    /// The JobAG field at fault, dotted (`employer.name`, `locations[0].country`).
    pub field: String,
    pub why: String,
}

/// Renders the EURES document for posting `id`.
pub fn render(id: &str, fields: &PostingFields, party_id: &str) -> Result<String, Invalid> {
    let _ = (id, fields, party_id);
    Err(Invalid { field: "posting".into(), why: "renderer not built yet".into() })
}
