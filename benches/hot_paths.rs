//! Micro-benchmarks of the hot paths: parsing a feed page, rendering a
//! PositionOpening, planning a batch of changes. `cargo bench`.

use std::hint::black_box;

use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eures_sync::domain::eligibility::evaluate;
use eures_sync::domain::ledger::{Incoming, Mode, apply_change};
use eures_sync::domain::posting::{ParsedChange, parse_change};
use eures_sync::domain::render::DocumentSettings;
use eures_sync_sims::jobag::sample_posting;
use serde_json::{Value, json};

fn page(n: u64) -> Vec<Value> {
    (1..=n)
        .map(|i| {
            let mut p = sample_posting(i);
            p["version"] = json!(1);
            p["updated_at"] = json!("2026-11-20T10:00:00Z");
            p
        })
        .collect()
}

fn hot_paths(c: &mut Criterion) {
    let items = page(500);
    let body =
        serde_json::to_vec(&json!({"changes": items, "next_cursor": "c500", "has_more": true}))
            .expect("page");
    let mut group = c.benchmark_group("feed");
    group.throughput(Throughput::Elements(500));
    group.bench_function("parse a 500-item page body", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&body)).expect("json");
            black_box(v)
        })
    });
    group.bench_function("parse 500 changes", |b| {
        b.iter(|| {
            for item in &items {
                black_box(parse_change(black_box(item)));
            }
        })
    });
    group.finish();

    let changes: Vec<_> = items
        .iter()
        .filter_map(|i| match parse_change(i) {
            ParsedChange::Change(c) => Some(c),
            ParsedChange::Quarantined { .. } => None,
        })
        .collect();
    let now = Utc::now();
    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(1));
    group.bench_function("evaluate + render one PositionOpening", |b| {
        b.iter(|| {
            black_box(evaluate(
                black_box(&changes[0]),
                now,
                &DocumentSettings::default(),
            ))
        })
    });
    group.finish();

    let incoming: Vec<Incoming> = changes
        .iter()
        .map(|c| Incoming {
            id: c.id.clone(),
            version: c.version,
            updated_at_ms: Some(0),
            employer_cvr: None,
            desired: evaluate(c, now, &DocumentSettings::default()),
        })
        .collect();
    let mut group = c.benchmark_group("plan");
    group.throughput(Throughput::Elements(500));
    group.bench_function("plan a batch of 500 new postings", |b| {
        b.iter(|| {
            for inc in &incoming {
                black_box(apply_change(None, inc.clone(), 0, Mode::Push, false));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
