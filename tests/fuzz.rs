//! Bad input never panics: random JSON in every field of a real posting goes
//! through parsing, eligibility and rendering; whatever renders is a
//! PositionOpening EURES accepts (the simulator's validator), byte-stable.
//!
//! `FUZZ_CASES=200000 cargo test --release --test fuzz` runs a long campaign.

use chrono::Utc;
use eures_sync::domain::eligibility::{Desired, evaluate};
use eures_sync::domain::posting::{ParsedChange, parse_change};
use eures_sync::domain::render::DocumentSettings;
use eures_sync::sim::eures::check_position_opening;
use eures_sync::sim::jobag::sample_posting;
use proptest::prelude::*;
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

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
                    let again = evaluate(&change, now, &DocumentSettings::default());
                    let same = matches!(again, Desired::Present { hash: ref h, .. } if *h == hash);
                    prop_assert!(same, "not byte-stable");
                }
                Desired::Absent(reason) => prop_assert!(!reason.to_string().is_empty()),
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
