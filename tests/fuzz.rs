//! Bad input never panics: random JSON in every field of a real posting goes
//! through parsing, eligibility and rendering; whatever renders is a
//! PositionOpening EURES accepts (the simulator's validator), byte-stable.
//!
//! The decision Present/Absent is compared with an oracle written from SPEC 2
//! alone, and contact data is looked for in every document rendered.
//!
//! `FUZZ_CASES=200000 cargo test --release --test fuzz` runs a long campaign;
//! `EURES_TEST_SEED` repeats one.

#[path = "common/seed.rs"]
mod seed;

use chrono::Utc;
use eures_sync::domain::eligibility::{Desired, evaluate};
use eures_sync::domain::posting::{ParsedChange, parse_change};
use eures_sync::domain::render::DocumentSettings;
use eures_sync_sims::eures::check_position_opening;
use eures_sync_sims::jobag::sample_posting;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use serde_json::{Map, Value, json};

/// `FUZZ_CASES`, 3,000 when unset. Zero or a value that is no number is an
/// error: a campaign of no cases would pass without testing anything.
fn cases() -> u32 {
    match std::env::var("FUZZ_CASES") {
        Err(_) => 3_000,
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => panic!("FUZZ_CASES={v:?}: expected a number of cases above zero"),
        },
    }
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just("]]>".to_string()),
        Just("<script>alert(1)</script>&amp;".to_string()),
        Just("\u{0}\u{1}\u{b}\u{c}\u{fffe}\u{ffff}".to_string()),
        Just("æøå ÆØÅ 🚀".to_string()),
        "[0-9]{1,30}",
        Just(" ".repeat(300)),
        Just("x".repeat(5_000)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "id",
    "version",
    "updated_at",
    "deleted",
    "status",
    "eures_consent",
    "eures_consent_scope",
    "processing_restricted",
    "eures_flag",
    "internal",
    "origin",
    "publication_end",
    "title",
    "description",
    "language",
    "employer",
    "locations",
    "occupation",
    "positions",
    "employment_type",
    "working_time",
    "start_date",
    "start_asap",
    "application_deadline",
    "application",
    "contact",
    "requirements",
    "salary",
    "remote",
];

fn mutated_posting() -> impl Strategy<Value = Value> {
    (
        1u64..1_000,
        prop::collection::vec((0..FIELDS.len(), json_value()), 0..5),
        prop::collection::vec((0..FIELDS.len(), "[a-z_]{1,8}", json_value()), 0..3),
    )
        .prop_map(|(i, replace, nested)| {
            let mut p = sample_posting(i);
            p["version"] = json!(i);
            p["updated_at"] = json!("2026-11-20T10:15:00Z");
            with_personal_data(&mut p, i);
            for (f, v) in replace {
                p[FIELDS[f]] = v;
            }
            for (f, k, v) in nested {
                if let Some(obj) = p[FIELDS[f]].as_object_mut() {
                    obj.insert(k, v);
                }
            }
            p
        })
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed::seed("fuzz cases")),
        // The seed printed repeats a failure; no file of past cases.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(cases()))]

    #[test]
    fn any_posting_parses_evaluates_and_renders_valid_xml(p in mutated_posting()) {
        let now = Utc::now();
        match parse_change(&p) {
            ParsedChange::Quarantined { reason, .. } => prop_assert!(!reason.is_empty()),
            ParsedChange::Change(change) => match evaluate(&change, now, &DocumentSettings::default()) {
                Desired::Present { content, hash, .. } => {
                    if let Err(why) = check_position_opening(&content) {
                        return Err(TestCaseError::fail(format!("EURES would reject: {why}\n{content}")));
                    }
                    if let Some(broken) = spec2::broken_rule(&p, now) {
                        return Err(TestCaseError::fail(format!("present, but SPEC 2 says {broken}: {p:#}")));
                    }
                    no_personal_data(&p, &content)?;
                    let again = evaluate(&change, now, &DocumentSettings::default());
                    let same = matches!(again, Desired::Present { hash: ref h, .. } if *h == hash);
                    prop_assert!(same, "not byte-stable");
                }
                Desired::Absent(reason) => {
                    let reason = reason.to_string();
                    prop_assert!(!reason.is_empty());
                    // A rule named as the reason does fail.
                    if !reason.starts_with("invalid") {
                        prop_assert_eq!(spec2::fails(&p, &reason, now), Some(true),
                            "absent as {}, but SPEC 2 does not say so: {:#}", reason, p);
                    }
                }
            },
        }
    }

    #[test]
    fn any_json_value_is_handled(v in json_value()) {
        let _ = parse_change(&v);
    }
}

#[test]
fn oversize_and_deep_input_are_refused_with_a_reason() {
    let mut p = sample_posting(1);
    p["version"] = json!(1);
    p["updated_at"] = json!("2026-11-20T10:15:00Z");
    p["description"] = json!("ø".repeat(5 * 1024 * 1024 / 2));
    let ParsedChange::Change(change) = parse_change(&p) else {
        panic!("quarantined")
    };
    match evaluate(&change, Utc::now(), &DocumentSettings::default()) {
        Desired::Absent(reason) => assert!(
            reason.to_string().starts_with("invalid: description"),
            "{reason}"
        ),
        Desired::Present { .. } => panic!("a 5 MB description was accepted"),
    }

    let mut deep = json!("bottom");
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let mut p = sample_posting(2);
    p["version"] = json!(1);
    p["updated_at"] = json!("2026-11-20T10:15:00Z");
    p["title"] = deep;
    let ParsedChange::Change(change) = parse_change(&p) else {
        panic!("quarantined")
    };
    let reason = match evaluate(&change, Utc::now(), &DocumentSettings::default()) {
        Desired::Absent(r) => r.to_string(),
        Desired::Present { .. } => panic!("accepted"),
    };
    assert!(reason.starts_with("invalid: title"), "{reason}");

    let mut p = sample_posting(3);
    p["version"] = json!(u64::MAX);
    assert!(matches!(parse_change(&p), ParsedChange::Quarantined { .. }));
}

/// The decision of SPEC 2, written afresh from its table and read off the
/// raw JSON of a posting: nothing here comes from the domain.
mod spec2 {
    use chrono::{DateTime, Utc};
    use serde_json::Value;

    /// EU-27, Iceland, Liechtenstein, Norway, Switzerland; Greece arrives as
    /// `GR` (EURES itself writes `EL`).
    const EURES_AREA: [&str; 32] = [
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "EL", "HU", "IE",
        "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI",
        "NO", "CH",
    ];

    /// The reason codes of the table, in its order, with "all hold".
    pub const RULES: [&str; 8] = [
        "deleted",
        "not_published",
        "expired",
        "no_consent",
        "restricted",
        "internal",
        "from_eures",
        "outside_eures_area",
    ];

    fn field<'a>(p: &'a Value, name: &str) -> Option<&'a Value> {
        p.get(name).filter(|v| !v.is_null())
    }

    fn in_area(country: &Value) -> bool {
        country
            .as_str()
            .is_some_and(|c| EURES_AREA.contains(&c.trim().to_ascii_uppercase().as_str()))
    }

    /// Whether the rule of `reason` fails for `p` at `now`: `Some(true)` it
    /// fails, `Some(false)` it holds, `None` the value needed is missing or
    /// of another type (the posting is then invalid, not absent by rule).
    pub fn fails(p: &Value, reason: &str, now: DateTime<Utc>) -> Option<bool> {
        let flag = |name: &str| match field(p, name) {
            None => Some(false),
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => None,
        };
        match reason {
            "deleted" => flag("deleted"),
            "not_published" => match field(p, "status")?.as_str()? {
                "published" => Some(false),
                "draft" | "unpublished" | "expired" => Some(true),
                _ => None,
            },
            "expired" => {
                let end = field(p, "publication_end")?.as_str()?;
                let end = DateTime::parse_from_rfc3339(end).ok()?;
                Some(now >= end)
            }
            "no_consent" => field(p, "eures_consent")?.as_bool().map(|b| !b),
            "restricted" => flag("processing_restricted"),
            "internal" => flag("internal"),
            "from_eures" => match field(p, "origin") {
                None => Some(false),
                Some(o) => match o.as_str()? {
                    "eures" => Some(true),
                    "jobag" => Some(false),
                    _ => None,
                },
            },
            "outside_eures_area" => {
                let locations = field(p, "locations")?.as_array()?;
                if locations.is_empty() {
                    return None;
                }
                Some(
                    !locations
                        .iter()
                        .any(|l| l.get("country").is_some_and(in_area)),
                )
            }
            other => panic!("no rule {other}"),
        }
    }

    /// The first rule of the table that does not clearly hold, if any: a
    /// posting with one must not be on EURES.
    pub fn broken_rule(p: &Value, now: DateTime<Utc>) -> Option<&'static str> {
        RULES.into_iter().find(|r| fails(p, r, now) != Some(false))
    }

    /// What the agent must decide for a posting whose every field but those
    /// the rules read is a valid one, and whose rule fields are either well
    /// formed or clearly not: present, absent by the first rule that fails,
    /// or invalid naming one of the fields of `malformed`.
    #[derive(Debug, PartialEq)]
    pub enum Verdict {
        Present,
        Absent(&'static str),
        Invalid(Vec<&'static str>),
    }

    pub fn verdict(p: &Value, malformed: Vec<&'static str>, now: DateTime<Utc>) -> Verdict {
        // A deletion needs nothing else; a deletion that cannot be read is
        // no posting the agent may keep on EURES.
        match p.get("deleted") {
            Some(Value::Bool(true)) => return Verdict::Absent("deleted"),
            None | Some(Value::Bool(false)) | Some(Value::Null) => {}
            Some(_) => return Verdict::Invalid(vec!["deleted"]),
        }
        if !malformed.is_empty() {
            return Verdict::Invalid(malformed);
        }
        // A field a rule needs that is missing makes the posting invalid
        // at that rule.
        let needs: [(&str, &'static str); 3] = [
            ("not_published", "status"),
            ("expired", "publication_end"),
            ("no_consent", "eures_consent"),
        ];
        for rule in RULES.into_iter().skip(1) {
            if let Some((_, name)) = needs.iter().find(|(r, _)| *r == rule)
                && field(p, name).is_none()
            {
                return Verdict::Invalid(vec![name]);
            }
            match fails(p, rule, now) {
                Some(false) => {}
                Some(true) => return Verdict::Absent(rule),
                None => return Verdict::Invalid(vec!["locations"]),
            }
        }
        Verdict::Present
    }
}

/// The contact person and an application email and text naming them.
const CONTACT_NAME: &str = "Kirstine Qvortrup-Zahle";
const CONTACT_EMAIL: &str = "kirstine.qz@arbejdsgiver.example.dk";
const CONTACT_PHONE: &str = "+4571829364";
const APPLY_EMAIL: &str = "ansoegning.kqz@arbejdsgiver.example.dk";
const APPLY_TEXT: &str = "Ring til Kirstine paa 71829364";

/// Puts personal data where JobAG carries it; the consent scope is drawn
/// from `i`: missing, `posting`, `posting_and_contact`.
fn with_personal_data(p: &mut Value, i: u64) {
    p["contact"] = json!({"name": CONTACT_NAME, "email": CONTACT_EMAIL, "phone": CONTACT_PHONE});
    p["application"]["email"] = json!(APPLY_EMAIL);
    p["application"]["instructions"] = json!(APPLY_TEXT);
    match i % 3 {
        0 => {}
        1 => p["eures_consent_scope"] = json!("posting"),
        _ => p["eures_consent_scope"] = json!("posting_and_contact"),
    }
}

/// SPEC 2 and 5: the contact person never reaches the document; with
/// consent scope `posting` no personal data at all does.
fn no_personal_data(p: &Value, content: &str) -> Result<(), TestCaseError> {
    for marker in [CONTACT_NAME, CONTACT_EMAIL, CONTACT_PHONE] {
        if content.contains(marker) {
            return Err(TestCaseError::fail(format!(
                "contact data {marker:?} in the document:\n{content}"
            )));
        }
    }
    if p.get("eures_consent_scope") == Some(&json!("posting")) {
        for marker in [APPLY_EMAIL, "Kirstine", "71829364"] {
            if content.contains(marker) {
                return Err(TestCaseError::fail(format!(
                    "scope posting, yet {marker:?} in the document:\n{content}"
                )));
            }
        }
    }
    Ok(())
}

/// One value of a rule field: `None` leaves the field out; `true` when it
/// is of a type or value the SPEC does not define.
type Choice = (Option<Value>, bool);

fn choice(
    usual: Option<Value>,
    other: Vec<Option<Value>>,
    malformed: Vec<Value>,
) -> impl Strategy<Value = Choice> {
    let other: Vec<Choice> = other.into_iter().map(|v| (v, false)).collect();
    let bad: Vec<Choice> = malformed.into_iter().map(|v| (Some(v), true)).collect();
    prop_oneof![
        30 => Just((usual, false)),
        3 => proptest::sample::select(other),
        1 => proptest::sample::select(bad),
    ]
}

/// A valid posting whose rule fields are drawn from what SPEC 2 names
/// (and a few values it does not), with personal data in place.
fn rule_posting() -> impl Strategy<Value = (Value, Vec<&'static str>)> {
    let dk = json!({"address_line": "Vermundsgade 38", "postal_code": "2100",
                    "city": "København Ø", "country": "DK", "nuts": "DK011"});
    let flag = |usual: Option<Value>, bad: Value| {
        choice(
            usual,
            vec![
                None,
                Some(Value::Null),
                Some(json!(false)),
                Some(json!(true)),
            ],
            vec![bad],
        )
    };
    let fields = (
        flag(Some(json!(false)), json!("no")),
        choice(
            Some(json!("published")),
            vec![
                Some(json!("draft")),
                Some(json!("unpublished")),
                Some(json!("expired")),
                None,
                Some(Value::Null),
            ],
            vec![json!("archived"), json!(1)],
        ),
        choice(
            Some(json!("2030-12-31T23:59:59Z")),
            vec![
                Some(json!("2026-11-23T11:59:59Z")),
                Some(json!("2026-11-23T12:00:00Z")),
                Some(json!("2026-11-23T12:00:01Z")),
                None,
            ],
            vec![json!("tomorrow"), json!(17)],
        ),
        choice(
            Some(json!(true)),
            vec![Some(json!(false)), None, Some(Value::Null)],
            vec![json!("true"), json!(1)],
        ),
        flag(None, json!("no")),
        flag(Some(json!(false)), json!(0)),
        choice(
            Some(json!("jobag")),
            vec![None, Some(Value::Null), Some(json!("eures"))],
            vec![json!("partner"), json!(true)],
        ),
        choice(
            Some(json!([dk.clone()])),
            vec![
                Some(json!([{"city": "Chicago", "country": "US"}, dk.clone()])),
                Some(json!([{"city": "London", "country": "GB"}])),
                Some(json!([{"country": "TR"}, {"country": "US"}])),
                Some(json!([{"country": "GR"}])),
                Some(json!([{"city": "Oslo", "country": "NO"}])),
                Some(json!([{"country": "CH"}, {"country": null}])),
                Some(json!([{"city": "Nowhere"}])),
                Some(json!([])),
                None,
            ],
            vec![json!("DK"), json!([{"country": 45}])],
        ),
        choice(
            None,
            vec![
                Some(Value::Null),
                Some(json!("posting")),
                Some(json!("posting")),
                Some(json!("posting_and_contact")),
            ],
            vec![json!("everything"), json!(2)],
        ),
        1u64..100,
    );
    fields.prop_map(
        |(deleted, status, end, consent, restricted, internal, origin, locations, scope, i)| {
            let mut p = sample_posting(i);
            p["version"] = json!(i);
            p["updated_at"] = json!("2026-11-20T10:15:00Z");
            with_personal_data(&mut p, 0);
            let mut malformed = Vec::new();
            for (name, (value, bad)) in [
                ("deleted", deleted),
                ("status", status),
                ("publication_end", end),
                ("eures_consent", consent),
                ("processing_restricted", restricted),
                ("internal", internal),
                ("origin", origin),
                ("locations", locations),
                ("eures_consent_scope", scope),
            ] {
                let obj = p.as_object_mut().unwrap();
                match value {
                    None => {
                        obj.remove(name);
                    }
                    Some(v) => {
                        obj.insert(name.to_string(), v);
                    }
                }
                if bad && name != "deleted" {
                    malformed.push(name);
                }
            }
            (p, malformed)
        },
    )
}

proptest! {
    #![proptest_config(config(2_000))]

    /// The agent's decision equals the oracle's: present exactly when every
    /// rule holds, else absent with the first rule that fails, or invalid
    /// naming a field that is.
    #[test]
    fn the_decision_is_spec_2((p, malformed) in rule_posting()) {
        let now: chrono::DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
        let expected = spec2::verdict(&p, malformed, now);
        let ParsedChange::Change(change) = parse_change(&p) else {
            return Err(TestCaseError::fail(format!("quarantined: {p:#}")));
        };
        let got = evaluate(&change, now, &DocumentSettings::default());
        match (&expected, got) {
            (spec2::Verdict::Present, Desired::Present { content, .. }) => {
                no_personal_data(&p, &content)?;
                // The markers are found where they belong: the check above
                // can see them.
                if p.get("eures_consent_scope") != Some(&json!("posting")) {
                    prop_assert!(content.contains(APPLY_EMAIL), "application email missing:\n{}", content);
                }
            }
            (spec2::Verdict::Absent(code), Desired::Absent(reason)) => {
                prop_assert_eq!(reason.to_string(), *code, "{:#}", p);
            }
            (spec2::Verdict::Invalid(fields), Desired::Absent(reason)) => {
                let reason = reason.to_string();
                let named = reason.strip_prefix("invalid: ").unwrap_or("");
                prop_assert!(fields.iter().any(|f| named.starts_with(f)),
                    "expected invalid: one of {:?}, got {}: {:#}", fields, reason, p);
            }
            (expected, got) => {
                let got = match got {
                    Desired::Present { .. } => "present".to_string(),
                    Desired::Absent(r) => r.to_string(),
                };
                return Err(TestCaseError::fail(format!("expected {expected:?}, got {got}: {p:#}")));
            }
        }
    }
}
