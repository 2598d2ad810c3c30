//! The EURES content rules (`eures_sync_sims::conformance`) against what the
//! renderer produces: every generated valid posting renders to a document
//! that keeps every rule, and the EURES simulator refuses, over real HTTP, a
//! document that breaks one.

use eures_sync::domain::codes::NaceRevision;
use eures_sync::domain::posting::{ChangeBody, ParsedChange, parse_change};
use eures_sync::domain::render::{DocumentSettings, render};
use eures_sync_sims::conformance::check;
use eures_sync_sims::eures::{EuresOptions, EuresSim};
use eures_sync_sims::jobag::sample_posting;
use proptest::prelude::*;
use serde_json::{Value, json};

fn rendered(posting: &Value, settings: &DocumentSettings) -> Option<String> {
    let ParsedChange::Change(change) = parse_change(posting) else {
        return None;
    };
    let ChangeBody::Live(fields) = change.body else {
        return None;
    };
    render(&change.id, &fields, settings).ok()
}

/// A valid posting with the parts the rules are about drawn at random.
fn posting() -> impl Strategy<Value = (Value, DocumentSettings)> {
    let nace = prop_oneof![
        Just("62.01"),
        Just("01.13"),
        Just("08.12"),
        Just("45.20"),
        Just("61.10"),
        Just("99.00"),
        Just("86.10"),
        Just("04.00"),
        Just("rubbish"),
    ];
    let occupation = prop_oneof![
        Just(json!({"isco": "2512"})),
        Just(json!({"isco": "7411", "esco_uri": "http://data.europa.eu/esco/isco/c7411"})),
        Just(
            json!({"esco_uri": "https://data.europa.eu/esco/occupation/F2B15A0E-E65A-438A-AFFB-29B9D50B77D1"})
        ),
        Just(
            json!({"isco": "2221", "esco_uri": "http://data.europa.eu/esco/skill/f2b15a0e-e65a-438a-affb-29b9d50b77d1"})
        ),
    ];
    let description = prop_oneof![
        Just("<p>Vi søger en <strong>kok</strong>.</p>".to_string()),
        Just(
            "<p onclick=\"x()\">a</p><script>alert(1)</script><a href=\"javascript:x\">b</a>"
                .to_string()
        ),
        Just("<iframe src=x>y</iframe><ul><li>z &amp; w</li></ul><!-- c -->".to_string()),
        "[a-zA-Zæøå <>&/\"=]{1,60}",
    ];
    let salary = prop_oneof![
        Just(Value::Null),
        (0u32..100_000, 0u32..100_000).prop_map(
            |(a, b)| json!({"min": a.min(b), "max": a.max(b), "currency": "DKK", "period": "month"})
        ),
        (1u32..500).prop_map(|m| json!({"max": m, "currency": "EUR", "period": "hour"})),
    ];
    (
        1u64..1000,
        nace,
        occupation,
        description,
        salary,
        0u8..12,
        0u32..120,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(i, nace, occupation, description, salary, isced, months, rev21, scope, template)| {
                let mut p = sample_posting(i);
                p["version"] = json!(1);
                p["updated_at"] = json!("2026-11-20T10:00:00Z");
                p["employer"]["nace"] = json!(nace);
                p["occupation"] = occupation;
                p["description"] = json!(format!("x{description}"));
                p["salary"] = salary;
                p["requirements"]["education_isced"] = json!(isced);
                p["requirements"]["experience_months"] = json!(months);
                if scope {
                    p["eures_consent_scope"] = json!("posting");
                    if template {
                        p["application"] = json!({"email": "a@b.dk"});
                    }
                }
                let settings = DocumentSettings {
                    nace_revision: if rev21 {
                        NaceRevision::Rev2_1
                    } else {
                        NaceRevision::Rev2
                    },
                    ..DocumentSettings::default()
                };
                (p, settings)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_generated_valid_posting_keeps_every_rule((posting, settings) in posting()) {
        if let Some(xml) = rendered(&posting, &settings) {
            let violations = check(&xml);
            prop_assert!(violations.is_empty(), "{violations:?}\n{xml}");
        }
    }
}

/// A PUT of `content` for sample posting 1; the status and body.
async fn put(eures: &EuresSim, content: &str) -> (u16, Value) {
    let reference = sample_posting(1)["id"].as_str().expect("id").to_string();
    let response = reqwest::Client::new()
        .put(format!(
            "{}/api/v1/job-vacancies/{reference}",
            eures.base_url()
        ))
        .json(&json!({
            "reference": reference, "source": "JobAG", "status": "ACTIVE",
            "sourceVersion": 1, "contentFormatVersion": "1.3", "content": content,
            "creationTimestamp": 1, "lastModificationTimestamp": 1,
        }))
        .send()
        .await
        .expect("PUT");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn the_eures_simulator_refuses_a_document_that_breaks_a_rule() {
    let eures = EuresSim::start(EuresOptions::default()).await.expect("sim");
    let mut posting = sample_posting(1);
    posting["version"] = json!(1);
    posting["updated_at"] = json!("2026-11-20T10:00:00Z");
    let good = rendered(&posting, &DocumentSettings::default()).expect("renders");
    for (broken, rule) in [
        (
            good.replace(" listURI=\"https://ec.europa.eu/eures\"", ""),
            "BR-COM-55",
        ),
        (
            good.replace("RemunerationMinimumAmount", "MinimumAmount"),
            "SPEC-5",
        ),
        (good.replace("J62.0.1", "J062.0.1"), "BR-COM-20"),
        (
            good.replace("<p>Vi søger", "<p onclick=\"x()\">Vi søger"),
            "SPEC-5",
        ),
        (good.replace(">2512<", ">251<"), "BR-COM-29"),
        (
            good.replace("<CountryCode>DK<", "<CountryCode>US<"),
            "BR-COM-52",
        ),
    ] {
        assert_ne!(broken, good, "{rule}: the edit applies");
        let (status, body) = put(&eures, &broken).await;
        assert_eq!(status, 422, "{rule}: {body}");
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&rule), "{rule} not in {body}");
        assert!(
            eures
                .get(sample_posting(1)["id"].as_str().expect("id"))
                .is_none()
        );
    }
    let (status, body) = put(&eures, &good).await;
    assert_eq!(status, 201, "{body}");
}
