//! The request-history judge catches each broken promise: from histories
//! written out by hand (a resurrection cannot be staged against a portal
//! that refuses it) and from requests sent to the EURES simulator over
//! loopback HTTP, whose recording the judge reads.

mod common;

use std::time::{Duration, Instant};

use common::history::{Rule, judge, judge_reference};
use eures_sync_sims::eures::{EuresOptions, EuresSim, Faults, RequestRecord};
use hyper::Method;
use serde_json::json;

/// A request `at` ms after `t0`, answered 1 ms later; applied then when
/// `applied`.
fn request(t0: Instant, at: u64, method: Method, version: u64, applied: bool) -> RequestRecord {
    let started = t0 + Duration::from_millis(at);
    let finished = started + Duration::from_millis(1);
    RequestRecord {
        method,
        reference: Some("R".into()),
        source_version: Some(version),
        status: if applied { 200 } else { 409 },
        applied,
        started,
        finished,
        applied_at: applied.then_some(finished),
        in_flight: 1,
    }
}

fn rules(requests: &[RequestRecord]) -> Vec<Rule> {
    judge_reference("R", requests)
        .into_iter()
        .map(|v| v.rule)
        .collect()
}

#[test]
fn a_sound_story_passes() {
    let t0 = Instant::now();
    let story = [
        request(t0, 0, Method::PUT, 1, true),
        request(t0, 10, Method::PUT, 3, true),
        request(t0, 20, Method::DELETE, 3, true),
        // Re-consent: a newer version may come back after a deletion.
        request(t0, 30, Method::PUT, 4, true),
        request(t0, 40, Method::PUT, 4, true),
        request(t0, 50, Method::DELETE, 5, true),
    ];
    assert_eq!(rules(&story), []);
}

#[test]
fn a_put_applied_after_a_delete_of_its_version_is_a_resurrection() {
    let t0 = Instant::now();
    let mut late = request(t0, 5, Method::PUT, 2, true);
    // Arrived before the DELETE, held, applied after it.
    late.applied_at = Some(t0 + Duration::from_millis(50));
    let story = [
        request(t0, 0, Method::PUT, 1, true),
        late,
        request(t0, 20, Method::DELETE, 2, true),
    ];
    let found = rules(&story);
    assert!(found.contains(&Rule::NoResurrection), "{found:?}");
    // An older DELETE does not forbid a newer PUT.
    let story = [
        request(t0, 0, Method::DELETE, 1, true),
        request(t0, 10, Method::PUT, 2, true),
    ];
    assert_eq!(rules(&story), []);
}

#[test]
fn a_put_of_an_older_version_is_caught_even_when_refused() {
    let t0 = Instant::now();
    let story = [
        request(t0, 0, Method::PUT, 3, true),
        request(t0, 10, Method::PUT, 2, false),
    ];
    assert_eq!(rules(&story), [Rule::PutVersionsNeverDecrease]);
}

#[test]
fn a_delete_below_the_highest_version_sent_is_caught() {
    let t0 = Instant::now();
    let story = [
        request(t0, 0, Method::PUT, 4, false),
        request(t0, 10, Method::DELETE, 3, false),
    ];
    assert_eq!(rules(&story), [Rule::DeleteCarriesHighestVersion]);
}

#[test]
fn two_requests_in_flight_and_a_missing_version_are_caught() {
    let t0 = Instant::now();
    let mut second = request(t0, 1, Method::PUT, 1, true);
    second.in_flight = 2;
    let mut unversioned = request(t0, 10, Method::DELETE, 0, false);
    unversioned.source_version = None;
    let story = [request(t0, 0, Method::PUT, 1, true), second, unversioned];
    assert_eq!(
        rules(&story),
        [Rule::OneRequestInFlight, Rule::VersionCarried]
    );
}

/// A document the simulator accepts (it applies the EURES content rules).
fn doc() -> String {
    eures_sync_sims::jobag::sample_document(1, "Udvikler")
}

async fn put(c: &reqwest::Client, sim: &EuresSim, reference: &str, version: u64) -> u16 {
    c.put(format!(
        "{}/api/v1/job-vacancies/{reference}",
        sim.base_url()
    ))
    .json(&json!({
        "reference": reference, "source": "JobAG", "status": "ACTIVE",
        "sourceVersion": version, "contentFormatVersion": "1.3", "content": doc(),
    }))
    .send()
    .await
    .expect("PUT answered")
    .status()
    .as_u16()
}

async fn delete(c: &reqwest::Client, sim: &EuresSim, reference: &str, version: u64) -> u16 {
    c.delete(format!(
        "{}/api/v1/job-vacancies/{reference}",
        sim.base_url()
    ))
    .header("X-Source-Version", version.to_string())
    .send()
    .await
    .expect("DELETE answered")
    .status()
    .as_u16()
}

/// The simulator records what the judge needs: a stale PUT, a DELETE below
/// the version seen and two requests at once on one reference, each found
/// under its reference; a reference with a sound story is not named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_records_what_the_judge_needs() {
    let sim = EuresSim::start(EuresOptions::default()).await.expect("sim");
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    // Sound: create, update, delete.
    assert_eq!(put(&c, &sim, "sound", 1).await, 201);
    assert_eq!(put(&c, &sim, "sound", 2).await, 200);
    assert_eq!(delete(&c, &sim, "sound", 2).await, 204);
    // A stale PUT after a newer one (refused by the portal, still a defect).
    assert_eq!(put(&c, &sim, "stale-put", 3).await, 201);
    assert_eq!(put(&c, &sim, "stale-put", 2).await, 409);
    // A DELETE below the version the portal holds.
    assert_eq!(put(&c, &sim, "low-delete", 5).await, 201);
    assert_eq!(delete(&c, &sim, "low-delete", 4).await, 409);
    // Two requests at once on one reference.
    sim.set_faults(Faults {
        latency: Duration::from_millis(300),
        ..Faults::none()
    });
    let (a, b) = tokio::join!(put(&c, &sim, "twice", 1), put(&c, &sim, "twice", 1));
    assert!([a, b].contains(&201), "{a} {b}");
    assert_eq!(sim.in_flight(), 0);

    let histories = sim.request_histories();
    assert_eq!(histories["sound"].len(), 3);
    let mut found: Vec<(String, Rule)> = judge(&histories)
        .into_iter()
        .map(|v| (v.reference, v.rule))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        [
            ("low-delete".to_string(), Rule::DeleteCarriesHighestVersion),
            ("stale-put".to_string(), Rule::PutVersionsNeverDecrease),
            ("twice".to_string(), Rule::OneRequestInFlight),
        ]
    );
    let sound = &histories["sound"];
    assert!(
        sound
            .iter()
            .all(|r| r.applied_at.is_some() && r.in_flight == 1)
    );
}
