//! Golden files for the EURES renderer.
//!
//! Every `fixtures/golden/NN-name.json` is a JobAG feed item (SPEC 4.1); it is
//! parsed with `parse_change`, rendered with party id `STAR-DK`, and compared
//! byte for byte with `NN-name.xml`. Every `invalid-*.json` must be refused
//! with the JobAG field named in [`INVALID`].
//!
//! A case that needs another configuration than the defaults says so in an
//! optional top-level `"_settings"` object, which is taken out of the item
//! before it is parsed: `"nace_revision"` (`jobag.nace_revision`, `"2"` or
//! `"2.1"`) and `"posting_url_template"` (`jobag.posting_url_template`).
//! Any other key there is refused, so a misspelt setting cannot pass
//! unnoticed.
//!
//! After a deliberate change of the renderer, rewrite the expected documents
//! with `UPDATE_GOLDEN=1 cargo test --test golden`, review the diff, and
//! commit it.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use eures_sync::domain::codes::NaceRevision;
use eures_sync::domain::posting::{ChangeBody, ParsedChange, PostingFields, parse_change};
use eures_sync::domain::render::{DocumentSettings, HR_NS, OA_NS, content_hash, render};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// Invalid inputs and the JobAG field each must be refused for.
const INVALID: [(&str, &str); 11] = [
    ("invalid-missing-title.json", "title"),
    ("invalid-title-too-long.json", "title"),
    ("invalid-no-eures-location.json", "locations"),
    ("invalid-isco-too-short.json", "occupation"),
    ("invalid-no-way-to-apply.json", "application"),
    ("invalid-no-close-date.json", "application_deadline"),
    ("invalid-language-dk.json", "language"),
    ("invalid-employer-name-blank.json", "employer.name"),
    ("invalid-description-only-controls.json", "description"),
    ("invalid-scope-posting-no-url.json", "application"),
    ("invalid-application-markup-only.json", "application"),
];

/// Elements of the OAGIS namespace; everything else is HR-XML.
const OA_ELEMENTS: [&str; 4] = [
    "AddressLine",
    "CityName",
    "CountrySubDivisionCode",
    "PostalCode",
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden")
}

/// `NN-name.json` files, sorted.
fn golden_inputs() -> Vec<PathBuf> {
    let mut inputs: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("fixtures/golden exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            name.ends_with(".json")
                && name.len() > 3
                && name.as_bytes()[..2].iter().all(u8::is_ascii_digit)
                && name.as_bytes()[2] == b'-'
        })
        .collect();
    inputs.sort();
    inputs
}

fn golden_documents() -> Vec<PathBuf> {
    golden_inputs()
        .iter()
        .map(|json| json.with_extension("xml"))
        .collect()
}

/// One golden input: the posting's id, the feed item as JSON (without
/// `_settings`), its parsed fields and the settings it is rendered with.
struct Case {
    id: String,
    value: serde_json::Value,
    fields: PostingFields,
    settings: DocumentSettings,
}

/// The configuration a fixture's `_settings` object names, over the
/// defaults.
fn settings_of(path: &Path, settings: Option<serde_json::Value>) -> DocumentSettings {
    let mut out = DocumentSettings::default();
    let Some(settings) = settings else {
        return out;
    };
    let settings = settings
        .as_object()
        .unwrap_or_else(|| panic!("{}: _settings is not an object", path.display()));
    for (key, value) in settings {
        let text = value
            .as_str()
            .unwrap_or_else(|| panic!("{}: _settings.{key} is not a string", path.display()));
        match key.as_str() {
            "nace_revision" => {
                out.nace_revision = NaceRevision::parse(text).unwrap_or_else(|| {
                    panic!("{}: _settings.nace_revision {text:?}", path.display())
                });
            }
            "posting_url_template" => out.posting_url_template = Some(text.to_string()),
            other => panic!("{}: unknown _settings.{other}", path.display()),
        }
    }
    out
}

fn load(path: &Path) -> Case {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut value: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let settings = value
        .as_object_mut()
        .and_then(|item| item.remove("_settings"));
    let settings = settings_of(path, settings);
    match parse_change(&value) {
        ParsedChange::Change(change) => match change.body {
            ChangeBody::Live(fields) => Case {
                id: change.id,
                value,
                fields: *fields,
                settings,
            },
            other => panic!("{}: not a live posting: {other:?}", path.display()),
        },
        other => panic!("{}: quarantined: {other:?}", path.display()),
    }
}

fn render_file(path: &Path) -> Result<String, eures_sync::domain::render::Invalid> {
    let case = load(path);
    render(&case.id, &case.fields, &case.settings)
}

#[test]
fn golden_documents_match_byte_for_byte() {
    let update = env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    // Rewriting the expected documents makes this test pass whatever the
    // renderer does: never where nobody reviews the diff.
    assert!(
        !(update && env::var_os("CI").is_some()),
        "UPDATE_GOLDEN=1 is refused when CI is set: rewrite the golden files locally and review the diff"
    );
    let inputs = golden_inputs();
    assert!(inputs.len() >= 12, "only {} golden cases", inputs.len());
    let mut failures = Vec::new();
    for json in &inputs {
        let got = render_file(json).unwrap_or_else(|e| panic!("{}: {e}", json.display()));
        let xml_path = json.with_extension("xml");
        if update {
            fs::write(&xml_path, &got).unwrap_or_else(|e| panic!("{}: {e}", xml_path.display()));
            continue;
        }
        let want = fs::read_to_string(&xml_path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", xml_path.display()));
        if want != got {
            let line = want
                .lines()
                .zip(got.lines())
                .position(|(w, g)| w != g)
                .map_or_else(
                    || "length differs".to_string(),
                    |i| {
                        format!(
                            "line {}:\n  want {:?}\n  got  {:?}",
                            i + 1,
                            want.lines().nth(i).unwrap_or_default(),
                            got.lines().nth(i).unwrap_or_default()
                        )
                    },
                );
            failures.push(format!("{}: {line}", xml_path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatch (UPDATE_GOLDEN=1 rewrites after review):\n{}",
        failures.join("\n")
    );
}

#[test]
fn invalid_inputs_name_the_jobag_field() {
    let on_disk: BTreeSet<String> = fs::read_dir(golden_dir())
        .expect("fixtures/golden exists")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("invalid-") && name.ends_with(".json"))
        .collect();
    let listed: BTreeSet<String> = INVALID.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "every invalid-*.json has an expected field here"
    );
    for (file, field) in INVALID {
        let path = golden_dir().join(file);
        match render_file(&path) {
            Err(invalid) => assert_eq!(invalid.field, field, "{file}: {invalid}"),
            Ok(xml) => panic!("{file}: rendered, expected invalid {field}:\n{xml}"),
        }
    }
}

/// (local name path, namespace, attributes) of every element, read with a
/// namespace-aware quick-xml reader to the end.
type ElementInfo = (String, Option<String>, Vec<(String, String)>);

fn read_elements(xml: &str) -> Result<Vec<ElementInfo>, String> {
    let mut reader = NsReader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut out = Vec::new();
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(|e| e.to_string())?;
        let ns = match ns {
            ResolveResult::Bound(ns) => Some(ns.as_ref().to_string()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => return Err(format!("unknown prefix {prefix}")),
        };
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(e) | Event::Empty(e) => {
                path.push(e.local_name().as_ref().to_string());
                let attributes = e
                    .attributes()
                    .map(|a| {
                        let a = a.map_err(|e| e.to_string())?;
                        let value = a
                            .normalized_value(quick_xml::XmlVersion::Explicit1_0)
                            .map_err(|e| e.to_string())?;
                        Ok((a.key.as_ref().to_string(), value.into_owned()))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                out.push((path.join("/"), ns, attributes));
                if empty {
                    path.pop();
                }
            }
            Event::End(_) => {
                path.pop().ok_or("unbalanced end tag")?;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if path.is_empty() {
        Ok(out)
    } else {
        Err(format!("unclosed: {}", path.join("/")))
    }
}

#[test]
fn golden_documents_parse_back_with_the_right_namespaces() {
    for xml_path in golden_documents() {
        let xml =
            fs::read_to_string(&xml_path).unwrap_or_else(|e| panic!("{}: {e}", xml_path.display()));
        let name = xml_path.display();
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            "{name}"
        );
        let elements = read_elements(&xml).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (root, root_ns, root_attributes) = &elements[0];
        assert_eq!(root, "PositionOpening", "{name}");
        assert_eq!(root_ns.as_deref(), Some(HR_NS), "{name}");
        for (key, value) in [
            ("xmlns", HR_NS),
            ("xmlns:oa", OA_NS),
            ("majorVersionID", "3"),
            ("minorVersionID", "2"),
        ] {
            assert!(
                root_attributes.contains(&(key.to_string(), value.to_string())),
                "{name}: root attribute {key}"
            );
        }
        for (path, ns, _) in &elements {
            let local = path.rsplit('/').next().unwrap_or_default();
            let in_address = path.contains("/PositionLocation/Address/");
            let want = if in_address && OA_ELEMENTS.contains(&local) {
                OA_NS
            } else {
                HR_NS
            };
            assert_eq!(ns.as_deref(), Some(want), "{name}: {path}");
        }
        // Only the root declares namespaces: one prefix, declared once.
        assert_eq!(xml.matches("xmlns").count(), 2, "{name}");
        for part in [
            "AddressLine",
            "CityName",
            "CountrySubDivisionCode",
            "PostalCode",
        ] {
            assert!(
                !xml.contains(&format!("<{part}")),
                "{name}: {part} without oa:"
            );
        }
        assert!(
            !xml.contains("<oa:CountryCode"),
            "{name}: CountryCode stays hr"
        );
        assert!(!xml.contains("null"), "{name}: absent values are absent");
    }
}

#[test]
fn golden_set_covers_the_hard_cases() {
    let all: Vec<String> = golden_documents()
        .iter()
        .map(|p| fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    let any = |needle: &str| all.iter().any(|xml| xml.contains(needle));
    for offering in [
        "DirectHire",
        "Temporary",
        "Seasonal",
        "Contract",
        "Apprenticeship",
        "Internship",
        "Volunteer",
    ] {
        assert!(
            any(&format!("<PositionOfferingTypeCode>{offering}<")),
            "{offering}"
        );
    }
    for needle in [
        "<CountryCode>EL</CountryCode>",
        "<PostingOptionCode>EURESFlag</PostingOptionCode>",
        "listName=\"ESCO_Occupations\" listVersionID=\"ESCOv1\"",
        "<OfferedRemunerationPackage>",
        "<PositionQualifications>",
        // A `]]>` the employer wrote, escaped by the sanitizer: no HTML
        // field carries one into CDATA (the writer's split of one has a
        // unit test of its own).
        "]]&gt;",
        "&amp;",
        "&lt;",
        "æ",
        "ø",
        "å",
        "Æ",
        "Ø",
        "Å",
        "🚀",
        "<PositionScheduleTypeCode>PartTime</PositionScheduleTypeCode>",
        "<ImmediateStartIndicator>true</ImmediateStartIndicator>",
        // 69.20 under NACE Rev. 2.1 (Rev. 2 would say M69.2.0).
        "<IndustryCode>N69.2.0</IndustryCode>",
    ] {
        assert!(any(needle), "no golden document contains {needle:?}");
    }
    assert!(
        all.iter()
            .any(|xml| !xml.contains("PositionOfferingTypeCode")),
        "a case without employment_type"
    );
}

#[test]
fn contact_person_data_never_reaches_the_document() {
    for json in golden_inputs() {
        let Case { value, fields, .. } = load(&json);
        let xml = render_file(&json).unwrap_or_else(|e| panic!("{}: {e}", json.display()));
        let Some(contact) = value.get("contact").and_then(|c| c.as_object()) else {
            continue;
        };
        let application_email = fields
            .application
            .as_ref()
            .and_then(|a| a.email.as_deref())
            .map(str::trim);
        for (key, secret) in contact {
            let Some(secret) = secret.as_str() else {
                continue;
            };
            if key == "email" && application_email == Some(secret.trim()) {
                continue; // the employer put it in the application method
            }
            assert!(
                !xml.contains(secret),
                "{}: contact.{key} leaked",
                json.display()
            );
        }
    }
}

#[test]
fn rendering_twice_gives_the_same_bytes_and_hash() {
    for json in golden_inputs() {
        let a = render_file(&json).unwrap_or_else(|e| panic!("{}: {e}", json.display()));
        let b = render_file(&json).unwrap_or_else(|e| panic!("{}: {e}", json.display()));
        assert_eq!(a, b, "{}", json.display());
        assert_eq!(content_hash(&a), content_hash(&b));
    }
}

#[test]
fn hostile_markup_never_passes_and_ordinary_formatting_is_kept() {
    for json in golden_inputs() {
        let xml = render_file(&json).unwrap_or_else(|e| panic!("{}: {e}", json.display()));
        let lower = xml.to_ascii_lowercase();
        for hostile in [
            "<script",
            "<style",
            "<iframe",
            "<img",
            "javascript:",
            "onclick",
            "onmouseover",
            "onerror",
            "<!--",
        ] {
            assert!(!lower.contains(hostile), "{}: {hostile}", json.display());
        }
    }
    let ordinary = golden_dir().join("16-ordinary-danish-formatting.json");
    let value = load(&ordinary).value;
    let description = value["description"].as_str().expect("description");
    let xml = render_file(&ordinary).expect("renders");
    assert!(
        xml.contains(&format!("<![CDATA[{description}]]>")),
        "ordinary formatting passes byte for byte"
    );
}

#[test]
fn golden_documents_keep_every_eures_rule() {
    for xml_path in golden_documents() {
        let xml =
            fs::read_to_string(&xml_path).unwrap_or_else(|e| panic!("{}: {e}", xml_path.display()));
        let violations = eures_sync_sims::conformance::check(&xml);
        assert!(
            violations.is_empty(),
            "{}: {violations:?}",
            xml_path.display()
        );
    }
}

/// The text of the one `ApplicationMethod/Instructions` of `xml`.
fn application_instructions(xml: &str) -> &str {
    let (_, rest) = xml
        .split_once("<Instructions><![CDATA[")
        .expect("ApplicationMethod/Instructions");
    assert!(!rest.contains("<Instructions>"), "one Instructions element");
    rest.split_once("]]></Instructions>")
        .expect("Instructions closed")
        .0
}

#[test]
fn scope_posting_documents_carry_the_url_alone() {
    let mut seen = 0;
    for json in golden_inputs() {
        let case = load(&json);
        if case.value["eures_consent_scope"] != "posting" {
            continue;
        }
        seen += 1;
        let name = json.display();
        let xml = render_file(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The URL as HTML text: `&`, `<` and `>` escaped.
        let want = match case.value["application"]["url"].as_str() {
            Some(url) => url
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;"),
            None => case
                .settings
                .posting_url_template
                .as_deref()
                .unwrap_or_else(|| panic!("{name}: no URL and no template"))
                .replace("{id}", &case.id),
        };
        assert_eq!(application_instructions(&xml), want, "{name}");
        let mut personal: Vec<&str> = Vec::new();
        for part in ["application", "contact"] {
            if let Some(o) = case.value[part].as_object() {
                personal.extend(
                    o.iter()
                        .filter(|(key, _)| *key != "url")
                        .filter_map(|(_, v)| v.as_str()),
                );
            }
        }
        assert!(
            !personal.is_empty(),
            "{name}: nothing personal to leave out"
        );
        for secret in personal {
            assert!(!xml.contains(secret), "{name}: {secret:?} in the document");
        }
        assert!(
            !xml.contains('@'),
            "{name}: an email address in the document"
        );
        let lower = xml.to_ascii_lowercase();
        for scheme in ["mailto:", "tel:"] {
            assert!(!lower.contains(scheme), "{name}: a {scheme} link");
        }
    }
    assert!(seen >= 3, "golden cases with scope \"posting\": {seen}");
}

/// A case with `_settings` renders differently under the defaults, so the
/// settings are read and matter.
#[test]
fn fixture_settings_change_the_document() {
    let mut seen = 0;
    for json in golden_inputs() {
        let case = load(&json);
        if case.settings == DocumentSettings::default() {
            continue;
        }
        seen += 1;
        let with = render(&case.id, &case.fields, &case.settings);
        let without = render(&case.id, &case.fields, &DocumentSettings::default());
        assert_ne!(with, without, "{}", json.display());
    }
    assert!(seen >= 2, "golden cases with _settings: {seen}");
}

/// SPEC 5: the application URL and email are values placed into HTML: one
/// with markup in it appears only escaped, on a line of its own, or not at
/// all when it is not a URL or an email; never as the markup it carries.
#[test]
fn application_values_with_markup_appear_only_escaped() {
    let (mut kept, mut dropped) = (0, 0);
    for json in golden_inputs() {
        let case = load(&json);
        let name = json.display();
        let xml = render_file(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        let instructions = application_instructions(&xml);
        for key in ["url", "email"] {
            let Some(value) = case.value["application"][key].as_str() else {
                continue;
            };
            let value = value.trim();
            if !value.contains(['<', '>', '&']) {
                continue;
            }
            assert!(
                !instructions.contains(value),
                "{name}: application.{key} unescaped"
            );
            let escaped = value
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            if instructions.lines().any(|line| line == escaped) {
                kept += 1;
            } else {
                assert!(
                    !instructions.contains(&escaped),
                    "{name}: application.{key} inside another line"
                );
                dropped += 1;
            }
        }
    }
    assert!(
        kept >= 2 && dropped >= 2,
        "golden application values with markup: {kept} kept escaped, {dropped} dropped"
    );
}
