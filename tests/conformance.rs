//! The EURES content rules (`eures_sync_sims::conformance`) against what the
//! renderer produces: every generated valid posting renders to a document
//! that keeps every rule, and the EURES simulator refuses, over real HTTP, a
//! document that breaks one.

use eures_sync::domain::codes::NaceRevision;
use eures_sync::domain::posting::{ChangeBody, ParsedChange, parse_change};
use eures_sync::domain::render::{DocumentSettings, render, sanitize};
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
    let application = (hostile_url(), hostile_email(), hostile_instructions()).prop_map(
        |(url, email, instructions)| json!({"url": url, "email": email, "instructions": instructions}),
    );
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
        (any::<bool>(), prop::option::weighted(0.7, application)),
    )
        .prop_map(
            |(
                i,
                nace,
                occupation,
                description,
                salary,
                isced,
                months,
                rev21,
                scope,
                (template, application),
            )| {
                let mut p = sample_posting(i);
                if let Some(application) = application {
                    p["application"] = application;
                }
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
                    posting_url_template: template
                        .then(|| "https://job.jobag.example/stilling/{id}".to_string()),
                    ..DocumentSettings::default()
                };
                (p, settings)
            },
        )
}

/// Pieces of markup an attacker puts into a value that ends up in HTML.
fn markup() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<script>alert(1)</script>".to_string()),
        Just("\"><svg/onload=alert(1)>".to_string()),
        Just("'><img src=x onerror=alert(1)>".to_string()),
        Just("<img/src/onerror=alert(1)>".to_string()),
        Just("<a href=\"javascript:alert(1)\">x</a>".to_string()),
        Just("<p onclick=\"x()\">".to_string()),
        Just("</p></li></ul><b>".to_string()),
        Just("]]>".to_string()),
        Just("<!--".to_string()),
        Just("&".to_string()),
        Just("&amp;".to_string()),
        Just("&lt;script&gt;".to_string()),
        Just("\u{a0}".to_string()),
        Just(" ".to_string()),
        Just("\t".to_string()),
        Just("@".to_string()),
        Just("\\".to_string()),
        "[a-zA-Z0-9æøå./?=#%:-]{0,8}",
    ]
}

fn pieces() -> impl Strategy<Value = String> {
    prop::collection::vec(markup(), 0..6).prop_map(|p| p.concat())
}

/// An application URL: an ordinary start (or none) and hostile pieces.
fn hostile_url() -> impl Strategy<Value = Option<String>> {
    let start = prop_oneof![
        Just("https://x.dk/"),
        Just("HTTP://job.example.dk/apply?a=1&b=2"),
        Just("https://x.dk"),
        Just("https://user:pw@x.dk/"),
        Just("javascript:alert(1)//https://x.dk/"),
        Just("data:text/html,"),
        Just("https:x.dk/"),
        Just(""),
    ];
    prop::option::weighted(0.8, (start, pieces()).prop_map(|(s, p)| format!("{s}{p}")))
}

/// An application email: hostile pieces around and inside `local@domain`.
fn hostile_email() -> impl Strategy<Value = Option<String>> {
    let shape = (pieces(), prop::bool::ANY, pieces()).prop_map(|(local, plain, domain)| {
        if plain {
            format!("jobs{local}@x.dk")
        } else {
            format!("{local}@{domain}x.dk")
        }
    });
    prop::option::weighted(0.6, prop_oneof![Just("jobs@x.dk".to_string()), shape])
}

fn hostile_instructions() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(
        0.5,
        (pieces(), pieces()).prop_map(|(a, b)| format!("<p>{a}</p>{b}")),
    )
}

/// The HTML text of element `name` in `xml` (CDATA sections joined).
fn html_of(xml: &str, name: &str) -> String {
    let (_, rest) = xml
        .split_once(&format!("<{name}><![CDATA["))
        .unwrap_or_else(|| panic!("{name}"));
    let (cdata, _) = rest
        .split_once(&format!("]]></{name}>"))
        .unwrap_or_else(|| panic!("{name} closed"));
    cdata.replace("]]]]><![CDATA[>", "]]>")
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

    /// The HTML rule on its own terms: every HTML field comes back
    /// unchanged from the sanitizer, and a URL or email with markup in it
    /// never puts that markup into Instructions.
    #[test]
    fn html_fields_are_fixed_points_without_script_event_or_foreign_scheme(
        (posting, settings) in posting()
    ) {
        let Some(xml) = rendered(&posting, &settings) else {
            return Ok(());
        };
        for name in ["Instructions", "Content"] {
            let html = html_of(&xml, name);
            prop_assert_eq!(sanitize(&html).into_owned(), html.clone(), "{}", name);
            // Text is escaped, so a `<` opens a tag.
            let lower = html.to_ascii_lowercase();
            for hostile in ["<script", "<img", "<svg", "<iframe", "<!--"] {
                prop_assert!(!lower.contains(hostile), "{} in {}: {}", hostile, name, html);
            }
            // The sanitizer writes `>` in text and attribute values as
            // `&gt;`: a tag runs from `<` to the next `>`.
            for tag in lower.split('<').skip(1).filter_map(|t| t.split_once('>')) {
                prop_assert!(
                    !tag.0.split([' ', '/']).skip(1).any(|a| a.starts_with("on")),
                    "an event attribute in {}: {}", name, html
                );
            }
            for (_, href) in lower.match_indices("href=\"").map(|(at, _)| lower.split_at(at + 6)) {
                prop_assert!(
                    ["http://", "https://", "mailto:"].iter().any(|s| href.starts_with(s)),
                    "a foreign scheme in {}: {}", name, html
                );
            }
        }
        let instructions = html_of(&xml, "Instructions");
        for key in ["url", "email"] {
            if let Some(value) = posting["application"][key].as_str()
                && value.trim().contains('<')
            {
                prop_assert!(!instructions.contains(value.trim()), "application.{} unescaped", key);
            }
        }
        if posting["eures_consent_scope"] == "posting" {
            // The URL alone, as text.
            prop_assert!(!instructions.contains(['<', '\n']), "{}", instructions);
            let lower = html_of(&xml, "Content").to_ascii_lowercase();
            prop_assert!(!lower.contains("mailto:") && !lower.contains("tel:"));
        }
    }
}

/// Every golden document keeps the HTML rule (the other rules too; the
/// golden tests check the bytes).
#[test]
fn every_golden_document_keeps_the_html_rule() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures/golden") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "xml") {
            continue;
        }
        let xml = std::fs::read_to_string(&path).expect("readable");
        for name in ["Instructions", "Content"] {
            let html = html_of(&xml, name);
            assert_eq!(sanitize(&html), html, "{}: {name}", path.display());
        }
        let violations = check(&xml);
        assert!(violations.is_empty(), "{}: {violations:?}", path.display());
        seen += 1;
    }
    assert!(seen >= 24, "golden documents: {seen}");
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
        // An application URL placed into the HTML unescaped, as text the
        // allow-list accepts and as markup it does not.
        (good.replace("ansoeg/1]]>", "ansoeg/1?a=1&b=2]]>"), "SPEC-5"),
        (
            good.replace("ansoeg/1]]>", "ansoeg/<script>alert(1)</script>]]>"),
            "SPEC-5",
        ),
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
