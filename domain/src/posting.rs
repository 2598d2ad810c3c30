//! The JobAG posting as it arrives in the change feed (SPEC 4.1), parsed into
//! types that say what is known. Every optional or possibly missing field is
//! an `Option`: whether a missing field makes the posting invalid is decided by
//! eligibility and rendering, not here. A change whose fields have the wrong
//! type is still kept by id and version (`ChangeBody::Unreadable`), so its
//! version moves the posting forward and the EURES copy goes (SPEC 2).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One item of the change feed after parsing.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedChange {
    /// Carries an id and a version: it moves the posting's state.
    Change(Change),
    /// Has no usable id or version: it can only be recorded and skipped.
    Quarantined {
        /// The id when one could be read (a version was missing or bad).
        id: Option<String>,
        /// Why the change could not be used, naming the field.
        reason: String,
    },
}

/// A change of one posting, identified by id and version.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub id: String,
    pub version: u64,
    /// The source's own time of the change; feeds the propagation metric.
    pub updated_at: Option<DateTime<Utc>>,
    pub body: ChangeBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChangeBody {
    /// Deleted in JobAG.
    Deleted,
    /// The whole posting as it is at this version.
    Live(Box<PostingFields>),
    /// Has an id and a version, but the rest does not parse; the reason names
    /// the field (`invalid: <field>: <why>` once evaluated).
    Unreadable { field: String, why: String },
}

/// Status of a posting in JobAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Published,
    Unpublished,
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Jobag,
    Eures,
}

/// What the employer consented to transfer (SPEC 2, 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentScope {
    /// The posting without any personal data.
    Posting,
    /// The posting and the contact data the employer put in the
    /// application method (the default when the field is missing).
    #[default]
    PostingAndContact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmploymentType {
    Permanent,
    Temporary,
    Seasonal,
    Contract,
    Apprenticeship,
    Internship,
    Volunteer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkingTime {
    FullTime,
    PartTime,
}

/// Every field of a non-deleted posting. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct PostingFields {
    pub status: Option<Status>,
    pub eures_consent: Option<bool>,
    /// What the consent covers; missing means `posting_and_contact`. A
    /// value JobAG does not define makes the change unreadable (the copy
    /// goes: the agent cannot know what was consented to).
    pub eures_consent_scope: Option<ConsentScope>,
    /// The employer asked JobAG to restrict processing (GDPR art. 18): the
    /// data may be stored, not transferred or published.
    pub processing_restricted: Option<bool>,
    /// The employer especially wants applicants from abroad.
    pub eures_flag: Option<bool>,
    pub internal: Option<bool>,
    pub origin: Option<Origin>,
    pub publication_end: Option<DateTime<Utc>>,
    pub title: Option<String>,
    /// HTML allowed.
    pub description: Option<String>,
    /// ISO 639-1 of the text.
    pub language: Option<String>,
    pub employer: Option<Employer>,
    pub locations: Option<Vec<Location>>,
    pub occupation: Option<Occupation>,
    /// Parsed defensively: a number, or the first digits of a text ("2
    /// stillinger"); anything else counts as missing (default 1).
    #[serde(deserialize_with = "lenient_positions")]
    pub positions: Option<u32>,
    pub employment_type: Option<EmploymentType>,
    pub working_time: Option<WorkingTime>,
    pub start_date: Option<NaiveDate>,
    pub start_asap: Option<bool>,
    pub application_deadline: Option<NaiveDate>,
    pub application: Option<Application>,
    /// Personal data: never rendered outside `ApplicationMethod`, never logged.
    pub contact: Option<Contact>,
    pub requirements: Option<Requirements>,
    pub salary: Option<Salary>,
    pub remote: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Employer {
    pub name: Option<String>,
    pub cvr: Option<String>,
    /// NACE rev. 2 class, e.g. "62.01".
    pub nace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Location {
    pub address_line: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2 (Greece as `GR`).
    pub country: Option<String>,
    /// NUTS-3 code.
    pub nuts: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Occupation {
    /// ISCO-08, four digits.
    pub isco: Option<String>,
    pub esco_uri: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Application {
    pub url: Option<String>,
    pub email: Option<String>,
    pub instructions: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Contact {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Requirements {
    /// ISCED 2011 level 0..=8.
    pub education_isced: Option<u8>,
    pub experience_months: Option<u32>,
    pub languages: Option<Vec<LanguageRequirement>>,
    pub driving_licences: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct LanguageRequirement {
    /// ISO 639-1.
    pub code: Option<String>,
    /// CEFR A1..C2.
    pub level: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Salary {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub currency: Option<String>,
    /// hour | day | week | month | year
    pub period: Option<String>,
}

impl PostingFields {
    /// The employer's CVR number when given; the audit trail and
    /// `--employer` selections use it.
    pub fn employer_cvr(&self) -> Option<&str> {
        self.employer.as_ref()?.cvr.as_deref()
    }
}

impl Change {
    pub fn employer_cvr(&self) -> Option<&str> {
        match &self.body {
            ChangeBody::Live(fields) => fields.employer_cvr(),
            _ => None,
        }
    }
}

fn lenient_positions<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    Ok(match value {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(Value::String(s)) => {
            let digits: String = s
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        }
        _ => None,
    })
}

/// The longest id accepted; JobAG ids are UUIDs, this leaves room for other
/// schemes while keeping references (URL path segments) sane.
const MAX_ID_LEN: usize = 128;

/// Parses one feed item. Never fails: what cannot be used is quarantined with
/// a reason naming the field.
pub fn parse_change(item: &Value) -> ParsedChange {
    let Some(obj) = item.as_object() else {
        return ParsedChange::Quarantined {
            id: None,
            reason: "change is not a JSON object".into(),
        };
    };
    let id = match obj.get("id") {
        Some(Value::String(s)) if valid_id(s) => s.clone(),
        Some(Value::String(_)) => {
            return ParsedChange::Quarantined {
                id: None,
                reason: format!(
                    "id: must be 1..={MAX_ID_LEN} characters of letters, digits, '-', '_' or '.'"
                ),
            };
        }
        Some(_) => {
            return ParsedChange::Quarantined {
                id: None,
                reason: "id: not a string".into(),
            };
        }
        None => {
            return ParsedChange::Quarantined {
                id: None,
                reason: "id: missing".into(),
            };
        }
    };
    let version = match obj.get("version") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= i64::MAX as u64 => v,
            _ => {
                return ParsedChange::Quarantined {
                    id: Some(id),
                    reason: "version: not a non-negative integer".into(),
                };
            }
        },
        Some(_) => {
            return ParsedChange::Quarantined {
                id: Some(id),
                reason: "version: not an integer".into(),
            };
        }
        None => {
            return ParsedChange::Quarantined {
                id: Some(id),
                reason: "version: missing".into(),
            };
        }
    };
    let mut updated_at = None;
    let mut unreadable = None;
    match obj.get("updated_at") {
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => updated_at = Some(t.with_timezone(&Utc)),
            Err(e) => unreadable = Some(("updated_at".to_string(), e.to_string())),
        },
        None | Some(Value::Null) => {
            unreadable = Some(("updated_at".to_string(), "missing".to_string()))
        }
        Some(_) => unreadable = Some(("updated_at".to_string(), "not a string".to_string())),
    }
    let deleted = match obj.get("deleted") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            // Cannot tell whether it is deleted: privacy first, treat as unusable.
            unreadable = Some(("deleted".into(), "not a boolean".into()));
            false
        }
    };
    let body = if deleted {
        ChangeBody::Deleted
    } else if let Some((field, why)) = unreadable {
        ChangeBody::Unreadable { field, why }
    } else {
        match serde_path_to_error::deserialize::<_, PostingFields>(item) {
            Ok(fields) => ChangeBody::Live(Box::new(fields)),
            Err(e) => {
                let field = e.path().to_string();
                let why = e.inner().to_string();
                ChangeBody::Unreadable {
                    field: if field.is_empty() || field == "." {
                        "posting".into()
                    } else {
                        field
                    },
                    why: without_values(&strip_serde_location(&why)),
                }
            }
        }
    };
    ParsedChange::Change(Change {
        id,
        version,
        updated_at,
        body,
    })
}

/// Whether `s` may be a posting id: ids become URL path segments and log
/// fields, so only a safe alphabet is taken.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "."
        && s != ".."
}

/// serde's error text with the offending value taken out: a reason is
/// logged, kept in the ledger and shown by `status` and `inspect`, and the
/// value may be a name or an email (SPEC 6). `invalid type: string
/// "Karoline Birkedal", expected struct Employer` becomes `wrong type,
/// expected an object`.
fn without_values(why: &str) -> String {
    let expected = |rest: &str| {
        rest.rfind(", expected ")
            .map(|i| plain_expectation(&rest[i + ", expected ".len()..]))
    };
    let described = |kind: &str, rest: &str| match expected(rest) {
        Some(e) => format!("{kind}, expected {e}"),
        None => kind.to_owned(),
    };
    if let Some(rest) = why.strip_prefix("invalid type: ") {
        described("wrong type", rest)
    } else if let Some(rest) = why.strip_prefix("invalid value: ") {
        described("invalid value", rest)
    } else if let Some(rest) = why.strip_prefix("invalid length ") {
        described("wrong length", rest)
    } else if let Some(rest) = why.strip_prefix("unknown variant ") {
        described("unknown value", rest)
    } else if why.starts_with("missing field `") || why.starts_with("unknown field `") {
        // Field names come from our own types, never from the posting.
        why.split(", expected").next().unwrap_or(why).to_owned()
    } else if why.contains(['"', '`', '\'']) {
        // A message that quotes something may quote the value.
        "cannot be read".to_owned()
    } else {
        why.to_owned()
    }
}

/// serde's description of a type, in the words of the feed's JSON.
fn plain_expectation(expected: &str) -> String {
    let e = expected.trim();
    if e.starts_with("struct ") || e == "a map" {
        "an object".to_owned()
    } else if e.starts_with("a sequence") || e.starts_with("tuple") {
        "a list".to_owned()
    } else if matches!(
        e,
        "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" | "isize"
    ) {
        "a whole number".to_owned()
    } else if matches!(e, "f32" | "f64") {
        "a number".to_owned()
    } else {
        e.to_owned()
    }
}

/// serde_json appends " at line X column Y", meaningless for a `Value`.
fn strip_serde_location(why: &str) -> String {
    match why.rfind(" at line ") {
        Some(i) => why[..i].to_string(),
        None => why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(v: Value) -> Change {
        match parse_change(&v) {
            ParsedChange::Change(c) => c,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[test]
    fn deleted_posting_needs_only_id_version_updated_at() {
        let c = change(json!({"id": "a-1", "version": 9, "deleted": true,
                              "updated_at": "2026-11-20T10:15:00Z"}));
        assert_eq!(c.version, 9);
        assert_eq!(c.body, ChangeBody::Deleted);
    }

    #[test]
    fn missing_id_or_version_is_quarantined() {
        assert!(matches!(
            parse_change(&json!({"version": 1})),
            ParsedChange::Quarantined { id: None, .. }
        ));
        match parse_change(&json!({"id": "x", "version": "7"})) {
            ParsedChange::Quarantined { id, reason } => {
                assert_eq!(id.as_deref(), Some("x"));
                assert!(reason.starts_with("version"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_change(&json!([1, 2])),
            ParsedChange::Quarantined { .. }
        ));
        assert!(matches!(
            parse_change(&json!({"id": "../etc", "version": 1})),
            ParsedChange::Quarantined { .. }
        ));
    }

    #[test]
    fn a_reason_names_the_field_and_the_problem_never_the_value() {
        let reason = |v: Value| match change(v).body {
            ChangeBody::Unreadable { field, why } => format!("{field}: {why}"),
            other => panic!("{other:?}"),
        };
        let base = |k: &str, v: Value| {
            let mut item = json!({"id": "a", "version": 2, "updated_at": "2026-11-20T10:15:00Z"});
            item[k] = v;
            item
        };
        let cases = [
            (
                base("employer", json!("Karoline Birkedal")),
                "employer: wrong type, expected an object",
            ),
            (
                base("title", json!(["Karoline Birkedal"])),
                "title: wrong type, expected a string",
            ),
            (
                base("status", json!("Karoline Birkedal")),
                "status: unknown value, expected one of",
            ),
            (
                base("contact", json!({"email": {"Karoline": 1}})),
                "contact.email: wrong type, expected a string",
            ),
            (
                base("locations", json!("karoline@example.dk")),
                "locations: wrong type, expected a list",
            ),
            (
                base("start_date", json!("Karoline Birkedal")),
                "start_date: ",
            ),
        ];
        for (item, expected) in cases {
            let r = reason(item);
            assert!(r.starts_with(expected), "{r}");
            assert!(!r.contains("Karoline") && !r.contains("karoline"), "{r}");
        }
    }

    #[test]
    fn wrong_type_names_the_field() {
        let c = change(
            json!({"id": "a", "version": 2, "updated_at": "2026-11-20T10:15:00Z",
                              "employer": {"name": 5}}),
        );
        match c.body {
            ChangeBody::Unreadable { field, .. } => assert_eq!(field, "employer.name"),
            other => panic!("{other:?}"),
        }
        let c = change(
            json!({"id": "a", "version": 2, "updated_at": "2026-11-20T10:15:00Z",
                              "status": "archived"}),
        );
        assert!(matches!(c.body, ChangeBody::Unreadable { ref field, .. } if field == "status"));
    }

    #[test]
    fn unknown_fields_ignored_and_positions_lenient() {
        let c = change(
            json!({"id": "a", "version": 2, "updated_at": "2026-11-20T10:15:00Z",
                              "positions": "2 stillinger", "whatever": {"x": 1}}),
        );
        match c.body {
            ChangeBody::Live(f) => assert_eq!(f.positions, Some(2)),
            other => panic!("{other:?}"),
        }
        let c = change(
            json!({"id": "a", "version": 2, "updated_at": "2026-11-20T10:15:00Z",
                              "positions": "mange"}),
        );
        match c.body {
            ChangeBody::Live(f) => assert_eq!(f.positions, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_updated_at_makes_it_unreadable() {
        let c = change(json!({"id": "a", "version": 2}));
        assert!(
            matches!(c.body, ChangeBody::Unreadable { ref field, .. } if field == "updated_at")
        );
    }
}
