//! Desired EURES state of a posting (SPEC 2): `Present` with the rendered
//! document, or `Absent` with the first rule that fails. Rules are checked in
//! the order of the SPEC table; a field a rule needs that is missing makes the
//! posting invalid at that rule (a draft without a title is `not_published`, a
//! published posting without a title is `invalid: title: missing`).

use std::fmt;

use chrono::{DateTime, Utc};

use super::codes::is_eures_country;
use super::posting::{Change, ChangeBody, Origin, PostingFields, Status};
use super::render::{DocumentSettings, content_hash, render};

/// What EURES should hold for one posting version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    Present {
        /// The rendered PositionOpening.
        content: String,
        /// Lowercase hex SHA-256 of `content`; equal hashes mean "no change on EURES".
        hash: String,
        /// When the copy must leave EURES without any further event.
        publication_end: DateTime<Utc>,
    },
    Absent(AbsentReason),
}

/// Why no copy may exist. `Display` gives the reason code of SPEC 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbsentReason {
    Deleted,
    NotPublished,
    Expired,
    NoConsent,
    /// Processing restricted (GDPR art. 18).
    Restricted,
    Internal,
    FromEures,
    OutsideEuresArea,
    /// `<field>: <why>`
    Invalid(String),
}

impl AbsentReason {
    fn invalid(field: &str, why: &str) -> Self {
        AbsentReason::Invalid(format!("{field}: {why}"))
    }
}

impl fmt::Display for AbsentReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbsentReason::Deleted => f.write_str("deleted"),
            AbsentReason::NotPublished => f.write_str("not_published"),
            AbsentReason::Expired => f.write_str("expired"),
            AbsentReason::NoConsent => f.write_str("no_consent"),
            AbsentReason::Restricted => f.write_str("restricted"),
            AbsentReason::Internal => f.write_str("internal"),
            AbsentReason::FromEures => f.write_str("from_eures"),
            AbsentReason::OutsideEuresArea => f.write_str("outside_eures_area"),
            AbsentReason::Invalid(what) => write!(f, "invalid: {what}"),
        }
    }
}

/// The reason code of an expiry found by the timer (no feed event).
pub const EXPIRED: &str = "expired";

/// True when a stored reason marks the posting as quarantined (invalid).
pub fn is_invalid_reason(reason: &str) -> bool {
    reason.starts_with("invalid")
}

/// Computes the desired state of `change` at `now`.
pub fn evaluate(change: &Change, now: DateTime<Utc>, document: &DocumentSettings) -> Desired {
    match &change.body {
        ChangeBody::Deleted => Desired::Absent(AbsentReason::Deleted),
        ChangeBody::Unreadable { field, why } => Desired::Absent(AbsentReason::invalid(field, why)),
        ChangeBody::Live(fields) => match check_rules(fields, now) {
            Err(reason) => Desired::Absent(reason),
            Ok(publication_end) => match render(&change.id, fields, document) {
                Ok(content) => Desired::Present {
                    hash: content_hash(&content),
                    content,
                    publication_end,
                },
                Err(invalid) => {
                    Desired::Absent(AbsentReason::invalid(&invalid.field, &invalid.why))
                }
            },
        },
    }
}

fn check_rules(p: &PostingFields, now: DateTime<Utc>) -> Result<DateTime<Utc>, AbsentReason> {
    let missing = |field: &str| AbsentReason::invalid(field, "missing");
    match p.status.ok_or_else(|| missing("status"))? {
        Status::Published => {}
        _ => return Err(AbsentReason::NotPublished),
    }
    let publication_end = p
        .publication_end
        .ok_or_else(|| missing("publication_end"))?;
    if now >= publication_end {
        return Err(AbsentReason::Expired);
    }
    if !p.eures_consent.ok_or_else(|| missing("eures_consent"))? {
        return Err(AbsentReason::NoConsent);
    }
    if p.processing_restricted.unwrap_or(false) {
        return Err(AbsentReason::Restricted);
    }
    if p.internal.unwrap_or(false) {
        return Err(AbsentReason::Internal);
    }
    if p.origin == Some(Origin::Eures) {
        return Err(AbsentReason::FromEures);
    }
    let locations = p.locations.as_deref().unwrap_or_default();
    if locations.is_empty() {
        return Err(missing("locations"));
    }
    let in_area = locations
        .iter()
        .any(|l| l.country.as_deref().is_some_and(is_eures_country));
    if !in_area {
        return Err(AbsentReason::OutsideEuresArea);
    }
    Ok(publication_end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posting::{ParsedChange, parse_change};
    use serde_json::{Value, json};

    fn now() -> DateTime<Utc> {
        "2026-11-23T12:00:00Z".parse().unwrap()
    }

    fn base() -> Value {
        json!({
            "id": "a3f1c2d4-0000-4000-8000-000000000001", "version": 3,
            "updated_at": "2026-11-20T10:15:00Z", "deleted": false,
            "status": "published", "eures_consent": true, "internal": false, "origin": "jobag",
            "publication_end": "2026-12-15T23:59:59Z", "title": "Software developer",
            "description": "<p>Build things</p>", "language": "da",
            "employer": {"name": "Acme ApS", "cvr": "12345678", "nace": "62.01"},
            "locations": [{"address_line": "Vermundsgade 38", "postal_code": "2100",
                           "city": "København Ø", "country": "DK", "nuts": "DK011"}],
            "occupation": {"isco": "2512"}, "application_deadline": "2026-12-15",
            "application": {"url": "https://example.dk/apply"}
        })
    }

    fn eval(v: Value) -> Desired {
        match parse_change(&v) {
            ParsedChange::Change(c) => evaluate(&c, now(), &DocumentSettings::default()),
            q => panic!("quarantined: {q:?}"),
        }
    }

    fn reason(v: Value) -> String {
        match eval(v) {
            Desired::Absent(r) => r.to_string(),
            Desired::Present { .. } => "present".into(),
        }
    }

    fn with(mut v: Value, key: &str, value: Value) -> Value {
        v[key] = value;
        v
    }

    #[test]
    fn every_rule_gives_its_reason() {
        assert_eq!(reason(base()), "present");
        assert_eq!(reason(with(base(), "deleted", json!(true))), "deleted");
        for s in ["draft", "unpublished", "expired"] {
            assert_eq!(reason(with(base(), "status", json!(s))), "not_published");
        }
        assert_eq!(
            reason(with(
                base(),
                "publication_end",
                json!("2026-11-23T12:00:00Z")
            )),
            "expired"
        );
        assert_eq!(
            reason(with(base(), "eures_consent", json!(false))),
            "no_consent"
        );
        assert_eq!(reason(with(base(), "internal", json!(true))), "internal");
        assert_eq!(reason(with(base(), "origin", json!("eures"))), "from_eures");
        assert_eq!(
            reason(with(
                base(),
                "locations",
                json!([{"country": "US", "city": "Boston"}])
            )),
            "outside_eures_area"
        );
    }

    #[test]
    fn missing_required_fields_are_invalid_naming_the_field() {
        for field in ["status", "publication_end", "eures_consent", "locations"] {
            let mut v = base();
            v.as_object_mut().unwrap().remove(field);
            assert_eq!(reason(v), format!("invalid: {field}: missing"));
        }
        assert!(reason(with(base(), "updated_at", Value::Null)).starts_with("invalid: updated_at"));
        assert!(
            reason(with(base(), "publication_end", json!("soon")))
                .starts_with("invalid: publication_end")
        );
    }

    #[test]
    fn optional_flags_default() {
        let mut v = base();
        for f in ["internal", "origin"] {
            v.as_object_mut().unwrap().remove(f);
        }
        assert_eq!(reason(v), "present");
    }

    #[test]
    fn draft_without_title_is_not_published_not_invalid() {
        let mut v = with(base(), "status", json!("draft"));
        v.as_object_mut().unwrap().remove("title");
        assert_eq!(reason(v), "not_published");
    }

    #[test]
    fn deleted_wins_over_unreadable_fields() {
        let v = json!({"id": "x", "version": 2, "deleted": true, "title": 5});
        assert_eq!(reason(v), "deleted");
    }

    fn content_of(d: &Desired) -> &str {
        match d {
            Desired::Present { content, .. } => content,
            other => panic!("expected a copy, got {other:?}"),
        }
    }

    #[test]
    fn restriction_of_processing_takes_the_copy_away_and_lifting_it_brings_it_back() {
        let mut v = base();
        v["processing_restricted"] = json!(true);
        assert_eq!(eval(v.clone()), Desired::Absent(AbsentReason::Restricted));
        assert_eq!(AbsentReason::Restricted.to_string(), "restricted");
        v["processing_restricted"] = json!(false);
        assert!(matches!(eval(v), Desired::Present { .. }));
    }

    #[test]
    fn scope_posting_carries_no_personal_data() {
        let mut v = base();
        v["application"] = json!({"url": "https://example.dk/apply",
                                  "email": "karoline@example.dk",
                                  "instructions": "Ring til Karoline på 87654321"});
        v["contact"] = json!({"name": "Karoline Birkedal", "email": "karoline@example.dk",
                              "phone": "87654321"});
        let wide = eval(v.clone());
        assert!(
            content_of(&wide).contains("karoline@example.dk"),
            "the default scope keeps contact"
        );

        v["eures_consent_scope"] = json!("posting");
        let narrow = eval(v.clone());
        let doc = content_of(&narrow);
        assert!(doc.contains("https://example.dk/apply"), "{doc}");
        for personal in ["karoline", "Karoline", "87654321"] {
            assert!(!doc.contains(personal), "{personal} in {doc}");
        }
        assert_ne!(wide, narrow, "narrowing the scope is an update");

        // No URL of its own: the template, with the id; no template: invalid.
        v["application"] = json!({"email": "karoline@example.dk"});
        let settings = DocumentSettings {
            posting_url_template: Some("https://jobnet.example/job/{id}".to_owned()),
            ..DocumentSettings::default()
        };
        let change = match parse_change(&v) {
            ParsedChange::Change(c) => c,
            q => panic!("{q:?}"),
        };
        let templated = evaluate(&change, now(), &settings);
        assert!(
            content_of(&templated)
                .contains("https://jobnet.example/job/a3f1c2d4-0000-4000-8000-000000000001"),
            "{templated:?}"
        );
        match eval(v) {
            Desired::Absent(reason) => assert!(
                reason.to_string().starts_with("invalid: application: "),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
