//! The CPU cost of rendering one document, and the HTML sanitizer's share
//! of it (no IO; one thread).

use std::time::Instant;

use anyhow::Context;
use eures_sync::domain::codes::NaceRevision;
use eures_sync::domain::posting::{ChangeBody, ParsedChange, PostingFields, parse_change};
use eures_sync::domain::render::{DocumentSettings, render};
use eures_sync_sims::jobag::sample_posting;
use serde_json::json;

/// A document to render: the posting as JobAG sends it, and the same
/// posting with every character that sends HTML through the sanitizer
/// (`<`, `>`, `&`, no-break space, `\r`, NUL, BOM) replaced by a letter in
/// its description and application instructions. The second skips the
/// sanitizer and is otherwise the same work, so the difference of the two
/// is what the sanitizer costs inside the renderer. The plain variant also
/// pays for the renderer's plain-text check scanning the whole text (the
/// HTML one stops at its first `<`): well under a microsecond in a release
/// build, but in a debug build, where this crate is not optimised and the
/// sanitizer's dependencies are, it outweighs the sanitizer and the
/// difference comes out negative. Measure with `--release`.
struct RenderCase {
    name: String,
    id: String,
    fields: PostingFields,
    plain: PostingFields,
    settings: DocumentSettings,
}

fn live_fields(item: &serde_json::Value) -> Option<(String, PostingFields)> {
    match parse_change(item) {
        ParsedChange::Change(change) => match change.body {
            ChangeBody::Live(fields) => Some((change.id, *fields)),
            _ => None,
        },
        ParsedChange::Quarantined { .. } => None,
    }
}

fn without_markup(mut item: serde_json::Value) -> serde_json::Value {
    let plain = |s: &str| {
        s.chars()
            .map(|c| match c {
                '<' | '>' | '&' | '\u{a0}' | '\r' | '\0' | '\u{feff}' => 'x',
                c => c,
            })
            .collect::<String>()
    };
    if let Some(text) = item["description"].as_str() {
        item["description"] = json!(plain(text));
    }
    if let Some(text) = item["application"]["instructions"].as_str() {
        item["application"]["instructions"] = json!(plain(text));
    }
    item
}

fn render_case(name: String, mut item: serde_json::Value) -> anyhow::Result<Option<RenderCase>> {
    let mut settings = DocumentSettings::default();
    // A golden input may name the configuration it is rendered with.
    if let Some(wanted) = item.as_object_mut().and_then(|o| o.remove("_settings")) {
        if let Some(revision) = wanted["nace_revision"].as_str() {
            settings.nace_revision =
                NaceRevision::parse(revision).context("_settings.nace_revision")?;
        }
        if let Some(template) = wanted["posting_url_template"].as_str() {
            settings.posting_url_template = Some(template.to_string());
        }
    }
    let (Some((id, fields)), Some((_, plain))) =
        (live_fields(&item), live_fields(&without_markup(item)))
    else {
        return Ok(None);
    };
    let renders = render(&id, &fields, &settings).is_ok() && render(&id, &plain, &settings).is_ok();
    Ok(renders.then_some(RenderCase {
        name,
        id,
        fields,
        plain,
        settings,
    }))
}

/// The golden inputs (`fixtures/golden/NN-*.json` of the source tree this
/// binary was built from); none when that directory is not there.
fn golden_render_cases() -> anyhow::Result<Vec<RenderCase>> {
    // The bench crate sits one directory below the workspace root, which
    // holds the fixtures.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".json") && name.as_bytes().first().is_some_and(u8::is_ascii_digit)
        })
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let item = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| path.display().to_string())?;
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        out.extend(render_case(name, item)?);
    }
    Ok(out)
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Per case: the median µs of a whole render, and of the same render
/// without markup; `rounds` of each, interleaved.
fn time_renders(cases: &[RenderCase], rounds: usize) -> Vec<(f64, f64)> {
    let mut whole = vec![Vec::with_capacity(rounds); cases.len()];
    let mut plain = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (i, case) in cases.iter().enumerate() {
            let started = Instant::now();
            let doc = render(&case.id, &case.fields, &case.settings);
            whole[i].push(started.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(doc.ok());
            let started = Instant::now();
            let doc = render(&case.id, &case.plain, &case.settings);
            plain[i].push(started.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(doc.ok());
        }
    }
    whole
        .iter_mut()
        .zip(plain.iter_mut())
        .map(|(w, p)| (median(w), median(p)))
        .collect()
}

fn render_rows(what: &str, cases: &[RenderCase], rounds: usize) {
    if cases.is_empty() {
        println!("| render, {what} | no documents | |");
        return;
    }
    let timed = time_renders(cases, rounds);
    let mut whole: Vec<f64> = timed.iter().map(|(w, _)| *w).collect();
    let mut sanitizer: Vec<f64> = timed.iter().map(|(w, p)| w - p).collect();
    let (worst, worst_at) = timed
        .iter()
        .zip(cases)
        .map(|((w, p), c)| (w - p, c.name.as_str()))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((f64::NAN, ""));
    let n = cases.len();
    println!(
        "| render, {what} ({n} documents, {rounds} rounds) | median {:.1} µs per document | |",
        median(&mut whole)
    );
    println!(
        "| HTML sanitizer inside it (render minus render of the same text without markup) | median {:.1} µs per document, at most {worst:.1} µs ({worst_at}) | |",
        median(&mut sanitizer)
    );
}

pub(crate) fn render_costs(rounds: usize) -> anyhow::Result<()> {
    anyhow::ensure!(rounds > 0, "--rounds must be at least 1");
    render_rows("golden inputs", &golden_render_cases()?, rounds);
    let mut samples = Vec::new();
    for i in 1..=100 {
        let mut item = sample_posting(i);
        item["version"] = json!(1);
        item["updated_at"] = json!("2026-11-20T10:00:00Z");
        samples.extend(render_case(format!("sample {i}"), item)?);
    }
    render_rows("sample postings of the backfill", &samples, rounds);
    Ok(())
}
