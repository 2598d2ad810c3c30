//! HR-XML 3.2 `PositionOpening` renderer (SPEC 5). Placeholder until the
//! renderer lands.

use super::posting::PostingFields;
use sha2::{Digest, Sha256};

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
    let title = fields.title.clone().ok_or(Invalid {
        field: "title".into(),
        why: "missing".into(),
    })?;
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><PositionOpening xmlns=\"http://www.hr-xml.org/3\" majorVersionID=\"3\" minorVersionID=\"2\"><DocumentID>{id}</DocumentID><PartyID>{party_id}</PartyID><PositionTitle>{}</PositionTitle></PositionOpening>",
        title.len()
    ))
}

pub fn content_hash(xml: &str) -> String {
    hex::encode(Sha256::digest(xml.as_bytes()))
}
