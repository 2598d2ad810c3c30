//! Sample postings for tests, the demo and the benchmarks: complete,
//! valid and eligible, deterministic in their number.

use serde_json::{Value, json};

/// A complete, valid, eligible posting in the SPEC 4.1 shape, deterministic
/// in `i`, without `version` and `updated_at` (the simulator assigns them).
/// The id is `a3f1c2d4-0000-4000-8000-{i:012}`; publication ends on
/// 2030-12-31, so it does not expire under tests. A few fields vary with `i`
/// (title, address, employer, employment type, working time, salary, flags).
pub fn sample_posting(i: u64) -> Value {
    const TYPES: [&str; 4] = ["permanent", "temporary", "contract", "seasonal"];
    const TITLES: [&str; 4] = [
        "Softwareudvikler",
        "Backend-udvikler (Rust)",
        "Systemudvikler til økonomiløsninger",
        "Udvikler – dataplatform",
    ];
    let employer_no = i % 97;
    let salary_min = 42_000 + (i % 10) * 1_000;
    json!({
        "id": sample_id(i),
        "deleted": false,
        "status": "published",
        "eures_consent": true,
        "eures_flag": i.is_multiple_of(5),
        "internal": false,
        "origin": "jobag",
        "publication_end": "2030-12-31T23:59:59Z",
        "title": format!("{} nr. {i}", TITLES[(i % 4) as usize]),
        "description": format!(
            "<p>Vi søger en erfaren udvikler til vores team på Østerbro (stilling {i}).</p>\
             <ul><li>Rust &amp; PostgreSQL</li><li>Gode kolleger, frokostordning og fleksible arbejdstider</li></ul>"
        ),
        "language": "da",
        "employer": {
            "name": format!("Ærøskøbing Software ApS {employer_no}"),
            "cvr": format!("{:08}", 30_000_000 + employer_no * 1_013),
            "nace": "62.01"
        },
        "locations": [{
            "address_line": format!("Vermundsgade {}", 1 + i % 60),
            "postal_code": "2100",
            "city": "København Ø",
            "country": "DK",
            "nuts": "DK011"
        }],
        "occupation": {"isco": "2512", "esco_uri": null},
        "positions": 1 + i % 3,
        "employment_type": TYPES[(i % 4) as usize],
        "working_time": if i % 3 == 2 { "part_time" } else { "full_time" },
        "start_date": "2031-01-01",
        "start_asap": i % 2 == 1,
        "application_deadline": "2030-12-15",
        "application": {
            "url": format!("https://job.example.dk/ansoeg/{i}"),
            "email": null,
            "instructions": null
        },
        "contact": {
            "name": "Søren Ødegård",
            "email": "soeren@example.dk",
            "phone": "+4512345678"
        },
        "requirements": {
            "education_isced": 6,
            "experience_months": 12 * (1 + i % 5),
            "languages": [{"code": "da", "level": "B2"}, {"code": "en", "level": "C1"}],
            "driving_licences": if i.is_multiple_of(2) { json!(["B"]) } else { json!([]) }
        },
        "salary": {
            "min": salary_min,
            "max": salary_min + 10_000,
            "currency": "DKK",
            "period": "month"
        },
        "remote": i.is_multiple_of(4)
    })
}

/// [`sample_posting`] `i` with `title`, rendered as the agent renders it
/// (default settings): a document the EURES simulator accepts, for tests
/// that talk to it directly.
pub fn sample_document(i: u64, title: &str) -> String {
    let mut posting = sample_posting(i);
    posting["version"] = json!(1);
    posting["updated_at"] = json!("2026-11-20T10:00:00Z");
    posting["title"] = json!(title);
    let eures_sync_domain::posting::ParsedChange::Change(change) =
        eures_sync_domain::posting::parse_change(&posting)
    else {
        unreachable!("a sample posting always parses");
    };
    let eures_sync_domain::posting::ChangeBody::Live(fields) = change.body else {
        unreachable!("a sample posting is live");
    };
    eures_sync_domain::render::render(
        &change.id,
        &fields,
        &eures_sync_domain::render::DocumentSettings::default(),
    )
    .unwrap_or_else(|e| unreachable!("a sample posting renders: {e:?}"))
}

/// The id [`sample_posting`] gives posting `i`.
pub fn sample_id(i: u64) -> String {
    format!("a3f1c2d4-0000-4000-8000-{i:012}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_postings_are_complete_and_parse() {
        use eures_sync_domain::posting::PostingFields;
        for i in [0, 1, 2, 3, 99_999] {
            let p = sample_posting(i);
            assert_eq!(p["id"], sample_id(i));
            assert!(p.get("version").is_none() && p.get("updated_at").is_none());
            let fields: PostingFields = serde_json::from_value(p).expect("sample parses");
            assert_eq!(fields.eures_consent, Some(true));
            assert!(fields.title.unwrap().chars().count() <= 200);
            assert_eq!(fields.locations.unwrap()[0].nuts.as_deref(), Some("DK011"));
        }
        assert_eq!(sample_posting(7), sample_posting(7));
    }
}
