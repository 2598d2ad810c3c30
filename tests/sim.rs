//! The JobAG and EURES simulators driven over real HTTP (loopback only) with
//! reqwest, the way the agent and the benchmarks use them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use eures_sync_sims::eures::{EuresOptions, EuresSim, Faults};
use eures_sync_sims::jobag::{self, JobagOptions, JobagSim, sample_id, sample_posting};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client builds")
}

async fn get_json(c: &Client, url: &str) -> (StatusCode, Value) {
    let resp = c.get(url).send().await.expect("request succeeds");
    let status = resp.status();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

// ---------------------------------------------------------------- JobAG

#[tokio::test]
async fn feed_pages_with_cursors_and_repeats() {
    let sim = JobagSim::start(JobagOptions::default()).await.unwrap();
    let c = client();
    let base = sim.base_url();

    for i in 0..5 {
        assert_eq!(sim.upsert(sample_posting(i)), 1);
    }
    assert_eq!(sim.upsert(sample_posting(0)), 2);
    assert_eq!(sim.delete(&sample_id(1)), 2);
    sim.push_raw(json!({"id": sample_id(2), "version": "seven"}));
    assert_eq!(sim.log_len(), 8);
    assert_eq!(sim.len(), 4);

    // Page through with limit 3, bounded.
    let mut after: Option<String> = None;
    let mut seen = Vec::new();
    let mut cursors = Vec::new();
    for _ in 0..10 {
        let url = match &after {
            None => format!("{base}/api/v1/postings/changes?limit=3"),
            Some(a) => format!("{base}/api/v1/postings/changes?after={a}&limit=3"),
        };
        let (status, page) = get_json(&c, &url).await;
        assert_eq!(status, StatusCode::OK);
        let changes = page["changes"].as_array().unwrap().clone();
        assert!(changes.len() <= 3);
        seen.extend(changes);
        let next = page["next_cursor"].as_str().unwrap().to_owned();
        cursors.push(next.clone());
        after = Some(next);
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(cursors.len(), 3);
    assert_eq!(seen[0]["id"], sample_id(0));
    assert_eq!(seen[0]["version"], 1);
    assert!(seen[0]["updated_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(seen[5]["id"], sample_id(0));
    assert_eq!(seen[5]["version"], 2);
    assert_eq!(
        seen[6],
        json!({"id": sample_id(1), "version": 2, "deleted": true,
                               "updated_at": seen[6]["updated_at"]})
    );
    assert_eq!(seen[7]["version"], "seven");

    // Re-reading a cursor repeats the same items.
    let (_, again) = get_json(
        &c,
        &format!(
            "{base}/api/v1/postings/changes?after={}&limit=3",
            cursors[0]
        ),
    )
    .await;
    assert_eq!(again["changes"].as_array().unwrap(), &seen[3..6]);

    // At the head: no items, the cursor stays.
    let head = cursors.last().unwrap();
    let (status, page) =
        get_json(&c, &format!("{base}/api/v1/postings/changes?after={head}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["changes"], json!([]));
    assert_eq!(page["next_cursor"], head.as_str());
    assert_eq!(page["has_more"], false);
    assert_eq!(*head, sim.head_cursor());

    // New items appear after the head cursor.
    sim.upsert(sample_posting(9));
    let (_, page) = get_json(&c, &format!("{base}/api/v1/postings/changes?after={head}")).await;
    assert_eq!(page["changes"][0]["id"], sample_id(9));

    // Malformed cursor and limit: 400.
    for q in ["after=garbage", "after=c", "after=c-1", "limit=many"] {
        let (status, body) = get_json(&c, &format!("{base}/api/v1/postings/changes?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert!(body["errors"][0]["message"].is_string());
    }

    // Compaction: cursors before position 3 are gone, "from the start"
    // begins at 3, and a cursor beyond the log is unknown too.
    sim.forget_before(3);
    let (status, _) = get_json(
        &c,
        &format!("{base}/api/v1/postings/changes?after={}", jobag::cursor(2)),
    )
    .await;
    assert_eq!(status, StatusCode::GONE);
    let (status, _) = get_json(
        &c,
        &format!(
            "{base}/api/v1/postings/changes?after={}",
            jobag::cursor(1000)
        ),
    )
    .await;
    assert_eq!(status, StatusCode::GONE);
    let (status, page) = get_json(
        &c,
        &format!("{base}/api/v1/postings/changes?after={}", cursors[0]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["changes"][0], seen[3]);
    let (_, page) = get_json(&c, &format!("{base}/api/v1/postings/changes")).await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 6);
    assert_eq!(page["changes"][0], seen[3]);

    assert_eq!(sim.counters().changes, 14);
}

#[tokio::test]
async fn feed_limit_defaults_and_caps() {
    let sim = JobagSim::start(JobagOptions::default()).await.unwrap();
    for i in 0..5_200 {
        sim.upsert(json!({"id": format!("p{i}"), "status": "draft"}));
    }
    let c = client();
    let (_, page) = get_json(&c, &format!("{}/api/v1/postings/changes", sim.base_url())).await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 500);
    assert_eq!(page["next_cursor"], "c500");
    let (_, page) = get_json(
        &c,
        &format!("{}/api/v1/postings/changes?limit=100000", sim.base_url()),
    )
    .await;
    assert_eq!(page["changes"].as_array().unwrap().len(), 5000);
    assert_eq!(page["has_more"], true);
}

#[tokio::test]
async fn upsert_keeps_given_version_and_timestamp() {
    let sim = JobagSim::start(JobagOptions::default()).await.unwrap();
    let id = sample_id(1);
    let mut p = sample_posting(1);
    p["version"] = json!(7);
    p["updated_at"] = json!("2026-11-20T10:15:00Z");
    assert_eq!(sim.upsert(p), 7);
    let cur = sim.current(&id).unwrap();
    assert_eq!(cur["version"], 7);
    assert_eq!(cur["updated_at"], "2026-11-20T10:15:00Z");
    assert_eq!(sim.upsert(sample_posting(1)), 8);

    // A raw item with a higher version moves the counter without touching
    // the snapshot; an older repeat changes nothing.
    sim.push_raw(json!({"id": id, "version": 12, "title": 5}));
    sim.push_raw(json!({"id": id, "version": 3}));
    assert_eq!(sim.current(&id).unwrap()["version"], 8);
    assert_eq!(sim.latest_version(&id), Some(12));
    assert_eq!(sim.delete(&id), 13);
    assert!(sim.current(&id).is_none());
    assert_eq!(sim.upsert(sample_posting(1)), 14);
}

#[tokio::test]
async fn snapshot_pages_by_id_and_single_reads() {
    let sim = JobagSim::start(JobagOptions::default()).await.unwrap();
    let c = client();
    let base = sim.base_url();
    // Insert out of order; the snapshot is ordered by id.
    for i in (0..25).rev() {
        sim.upsert(sample_posting(i));
    }
    sim.upsert(sample_posting(4));
    sim.delete(&sample_id(3));
    sim.delete(&sample_id(17));

    let mut token: Option<String> = None;
    let mut ids = Vec::new();
    let mut pages = 0;
    for _ in 0..10 {
        let url = match &token {
            None => format!("{base}/api/v1/postings?limit=10"),
            Some(t) => format!("{base}/api/v1/postings?limit=10&page_token={t}"),
        };
        let (status, page) = get_json(&c, &url).await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        for p in page["postings"].as_array().unwrap() {
            ids.push(p["id"].as_str().unwrap().to_owned());
            if p["id"] == sample_id(4) {
                assert_eq!(p["version"], 2);
            }
        }
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => {
                assert!(page["next_page_token"].is_null());
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..25)
        .filter(|i| *i != 3 && *i != 17)
        .map(sample_id)
        .collect();
    assert_eq!(ids, want);

    // Exactly one full page: no next token.
    let (_, page) = get_json(&c, &format!("{base}/api/v1/postings?limit=23")).await;
    assert!(page["next_page_token"].is_null());

    let (status, p) = get_json(&c, &format!("{base}/api/v1/postings/{}", sample_id(4))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p, sim.current(&sample_id(4)).unwrap());
    assert_eq!(p["title"], sample_posting(4)["title"]);
    let (status, _) = get_json(&c, &format!("{base}/api/v1/postings/{}", sample_id(3))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let counters = sim.counters();
    assert_eq!((counters.snapshot, counters.get), (4, 2));
}

#[tokio::test]
async fn jobag_outage_and_token() {
    let sim = JobagSim::start(JobagOptions::default()).await.unwrap();
    sim.upsert(sample_posting(1));
    let c = client();
    let urls = [
        format!("{}/api/v1/postings/changes", sim.base_url()),
        format!("{}/api/v1/postings", sim.base_url()),
        format!("{}/api/v1/postings/{}", sim.base_url(), sample_id(1)),
    ];
    sim.set_outage(true);
    for u in &urls {
        assert_eq!(
            c.get(u).send().await.unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    sim.set_outage(false);
    sim.set_token(Some("s3cret".into()));
    for u in &urls {
        assert_eq!(
            c.get(u).send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        let wrong = c.get(u).bearer_auth("nope").send().await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let ok = c.get(u).bearer_auth("s3cret").send().await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
    }
    sim.set_token(None);
    assert_eq!(
        c.get(&urls[0]).send().await.unwrap().status(),
        StatusCode::OK
    );
    let posted = c.post(&urls[0]).send().await.unwrap();
    assert_eq!(posted.status(), StatusCode::METHOD_NOT_ALLOWED);
    let counters = sim.counters();
    assert_eq!(counters.changes, 5);
    assert_eq!(counters.other, 1);
    sim.reset_counters();
    assert_eq!(sim.counters().changes, 0);
}

#[tokio::test]
async fn jobag_shutdown_stops_serving() {
    let sim = JobagSim::start(JobagOptions::default()).await.unwrap();
    let url = format!("{}/api/v1/postings", sim.base_url());
    let c = client();
    assert!(c.get(&url).send().await.is_ok());
    sim.shutdown();
    // A fresh client: no pooled connection to reuse.
    let err = client().get(&url).send().await.expect_err("server is gone");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
}

// ---------------------------------------------------------------- EURES

/// A document the simulator accepts (it applies the EURES content rules).
fn doc(title: &str) -> String {
    eures_sync_sims::jobag::sample_document(1, title)
}

fn put_body(reference: &str, version: u64, content: &str) -> Value {
    json!({
        "reference": reference, "source": "JobAG", "status": "ACTIVE",
        "sourceVersion": version, "contentFormatVersion": "1.3", "content": content,
        "creationTimestamp": 1763633700000i64, "lastModificationTimestamp": 1763633700000i64 + version as i64,
    })
}

/// Builds the request now (borrowing nothing afterwards) and sends it.
fn put(
    c: &Client,
    sim: &EuresSim,
    reference: &str,
    version: u64,
    content: &str,
) -> impl Future<Output = reqwest::Result<reqwest::Response>> + use<> {
    c.put(format!(
        "{}/api/v1/job-vacancies/{reference}",
        sim.base_url()
    ))
    .json(&put_body(reference, version, content))
    .send()
}

fn delete(
    c: &Client,
    sim: &EuresSim,
    reference: &str,
    version: Option<&str>,
) -> impl Future<Output = reqwest::Result<reqwest::Response>> + use<> {
    let mut req = c.delete(format!(
        "{}/api/v1/job-vacancies/{reference}",
        sim.base_url()
    ));
    if let Some(v) = version {
        req = req.header("X-Source-Version", v);
    }
    req.send()
}

fn sha_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

async fn seeded(faults: Faults) -> EuresSim {
    EuresSim::start(EuresOptions {
        faults,
        seed: Some(7),
        ..EuresOptions::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn eures_put_semantics() {
    let sim = EuresSim::start(EuresOptions::default()).await.unwrap();
    let c = client();
    let r = "a3f1c2d4-0000-4000-8000-000000000001";

    assert_eq!(
        put(&c, &sim, r, 3, &doc("v3")).await.unwrap().status(),
        StatusCode::CREATED
    );
    // Same version again: idempotent overwrite.
    let resp = put(&c, &sim, r, 3, &doc("v3 restored")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["contentSha256"], sha_hex(&doc("v3 restored")));
    assert_eq!(
        put(&c, &sim, r, 5, &doc("v5")).await.unwrap().status(),
        StatusCode::OK
    );
    // Older: conflict, nothing changes.
    let resp = put(&c, &sim, r, 4, &doc("v4")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["sourceVersion"], 5);
    assert_eq!(body["errors"][0]["field"], "sourceVersion");

    let v = sim.get(r).unwrap();
    assert_eq!(v.source_version, 5);
    assert_eq!(v.content, doc("v5"));
    assert_eq!(v.content_sha256, sha_hex(&doc("v5")));
    assert_eq!(v.status, "ACTIVE");
    assert_eq!(v.creation_timestamp, 1763633700000);
    assert_eq!(v.last_modification_timestamp, 1763633700005);
    assert_eq!(v.body, put_body(r, 5, &doc("v5")));
    assert_eq!(sim.len(), 1);
    assert_eq!(
        sim.history(r),
        vec![(Method::PUT, 3), (Method::PUT, 3), (Method::PUT, 5)]
    );

    let records = sim.requests();
    assert_eq!(records.len(), 4);
    assert_eq!(
        records
            .iter()
            .map(|r| (r.status, r.source_version, r.applied))
            .collect::<Vec<_>>(),
        vec![
            (201, Some(3), true),
            (200, Some(3), true),
            (200, Some(5), true),
            (409, Some(4), false)
        ]
    );
    assert!(
        records
            .iter()
            .all(|x| x.reference.as_deref() == Some(r) && x.finished >= x.started)
    );
    sim.clear_requests();
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn eures_delete_semantics() {
    let sim = EuresSim::start(EuresOptions::default()).await.unwrap();
    let c = client();
    let r = "ref-1";
    put(&c, &sim, r, 5, &doc("x")).await.unwrap();

    for bad in [None, Some("nine"), Some("-1"), Some("")] {
        let resp = delete(&c, &sim, r, bad).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "X-Source-Version");
    }
    assert_eq!(
        delete(&c, &sim, r, Some("4")).await.unwrap().status(),
        StatusCode::CONFLICT
    );
    assert!(sim.get(r).is_some());
    assert_eq!(
        delete(&c, &sim, r, Some("5")).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert!(sim.get(r).is_none());
    assert_eq!(
        delete(&c, &sim, r, Some("5")).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete(&c, &sim, "never", Some("1")).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(sim.history(r), vec![(Method::PUT, 5), (Method::DELETE, 5)]);

    // A create after the delete starts over (the agent guards regressions).
    assert_eq!(
        put(&c, &sim, r, 6, &doc("y")).await.unwrap().status(),
        StatusCode::CREATED
    );
    let recs = sim.requests();
    let deletes: Vec<_> = recs.iter().filter(|x| x.method == Method::DELETE).collect();
    assert_eq!(deletes.len(), 8);
    assert_eq!(deletes[4].source_version, Some(4));
}

#[tokio::test]
async fn eures_rejects_bad_content_and_bodies() {
    let sim = EuresSim::start(EuresOptions::default()).await.unwrap();
    let c = client();
    let url = format!("{}/api/v1/job-vacancies/r1", sim.base_url());

    let cases = [
        (
            "bad xml",
            doc("x").replace("</PositionTitle>", ""),
            "content",
        ),
        (
            "no major version",
            doc("x").replace(r#" majorVersionID="3""#, ""),
            "content",
        ),
        (
            "wrong root",
            doc("x").replace("PositionOpening", "Vacancy"),
            "content",
        ),
        ("truncated", doc("x")[..120].to_owned(), "content"),
    ];
    for (what, content, field) in cases {
        let resp = put(&c, &sim, "r1", 1, &content).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{what}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], field, "{what}");
        assert!(!body["errors"][0]["message"].as_str().unwrap().is_empty());
    }
    let mut mismatched = put_body("r2", 1, &doc("x"));
    mismatched["sourceVersion"] = json!("1");
    let resp = c.put(&url).json(&mismatched).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.unwrap();
    let fields: BTreeSet<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, BTreeSet::from(["reference", "sourceVersion"]));

    let mut no_content = put_body("r1", 1, "");
    no_content.as_object_mut().unwrap().remove("content");
    let resp = c.put(&url).json(&no_content).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let resp = c
        .put(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert!(body["errors"][0]["message"].is_string());

    assert!(sim.is_empty());
    assert!(sim.history("r1").is_empty());
}

#[tokio::test]
async fn eures_listing_pages_by_reference() {
    let sim = EuresSim::start(EuresOptions::default()).await.unwrap();
    let c = client();
    for i in (0..12u64).rev() {
        put(
            &c,
            &sim,
            &format!("ref-{i:02}"),
            i + 1,
            &doc(&format!("t{i}")),
        )
        .await
        .unwrap();
    }
    let base = sim.base_url();
    let mut token: Option<String> = None;
    let mut items = Vec::new();
    let mut pages = 0;
    for _ in 0..10 {
        let url = match &token {
            None => format!("{base}/api/v1/job-vacancies?limit=5"),
            Some(t) => format!("{base}/api/v1/job-vacancies?limit=5&page_token={t}"),
        };
        let (status, page) = get_json(&c, &url).await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(items.len(), 12);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["reference"], format!("ref-{i:02}"));
        assert_eq!(item["sourceVersion"], i as u64 + 1);
        assert_eq!(item["contentSha256"], sha_hex(&doc(&format!("t{i}"))));
    }
    let (_, page) = get_json(&c, &format!("{base}/api/v1/job-vacancies")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 12);
    assert!(page["next_page_token"].is_null());
    let (status, _) = get_json(&c, &format!("{base}/api/v1/job-vacancies?limit=x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Drift helpers show up in the listing.
    assert!(sim.tamper_content("ref-00", "<tampered/>"));
    assert!(!sim.tamper_content("nope", "x"));
    sim.insert_orphan("orphan-1", 9, doc("orphan"));
    assert!(sim.remove("ref-01").is_some());
    let holdings = sim.holdings();
    assert_eq!(holdings.len(), 12);
    assert_eq!(holdings["ref-00"].source_version, 1);
    assert_eq!(holdings["ref-00"].content_sha256, sha_hex("<tampered/>"));
    assert_eq!(holdings["ref-00"].body["content"], "<tampered/>");
    assert_eq!(holdings["orphan-1"].body["sourceVersion"], 9);
    let (_, page) = get_json(&c, &format!("{base}/api/v1/job-vacancies?limit=100")).await;
    let listed: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&"orphan-1") && !listed.contains(&"ref-01"));
    assert_eq!(listed[0], "orphan-1");
    assert_eq!(page["items"][1]["reference"], "ref-00");
    assert_eq!(page["items"][1]["contentSha256"], sha_hex("<tampered/>"));
}

#[tokio::test]
async fn eures_bearer_auth() {
    let sim = EuresSim::start(EuresOptions {
        token: Some("tok".into()),
        ..EuresOptions::default()
    })
    .await
    .unwrap();
    let c = client();
    assert_eq!(
        put(&c, &sim, "r", 1, &doc("x")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let url = format!("{}/api/v1/job-vacancies/r", sim.base_url());
    let wrong = c
        .put(&url)
        .bearer_auth("bad")
        .json(&put_body("r", 1, &doc("x")))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let ok = c
        .put(&url)
        .bearer_auth("tok")
        .json(&put_body("r", 1, &doc("x")))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
    let list = c
        .get(format!("{}/api/v1/job-vacancies", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        delete(&c, &sim, "r", Some("1")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    sim.set_token(None);
    assert_eq!(
        delete(&c, &sim, "r", Some("1")).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn fault_5xx_answers_without_applying() {
    let sim = seeded(Faults {
        error_5xx_ratio: 1.0,
        ..Faults::none()
    })
    .await;
    let c = client();
    let mut statuses = BTreeSet::new();
    for i in 0..30 {
        let status = put(&c, &sim, &format!("r{i}"), 1, &doc("x"))
            .await
            .unwrap()
            .status();
        statuses.insert(status.as_u16());
    }
    assert!(
        statuses.iter().all(|s| [500, 502, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.len() > 1, "the status varies: {statuses:?}");
    assert!(sim.is_empty());
    sim.set_faults(Faults {
        error_5xx_ratio: 0.5,
        ..Faults::none()
    });
    let mut ok = 0;
    for i in 0..40 {
        if put(&c, &sim, &format!("r{i}"), 1, &doc("x"))
            .await
            .unwrap()
            .status()
            .is_success()
        {
            ok += 1;
        }
    }
    assert!((5..=35).contains(&ok), "{ok}");
    assert_eq!(sim.len(), ok);
}

#[tokio::test]
async fn fault_throttle_with_retry_after_seconds_and_date() {
    let sim = seeded(Faults {
        throttle_ratio: 1.0,
        retry_after_secs: 7,
        ..Faults::none()
    })
    .await;
    let c = client();
    let resp = put(&c, &sim, "r", 1, &doc("x")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "7");
    let list = c
        .get(format!("{}/api/v1/job-vacancies", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::TOO_MANY_REQUESTS);

    sim.set_faults(Faults {
        throttle_ratio: 1.0,
        retry_after_secs: 30,
        throttle_http_date: true,
        ..Faults::none()
    });
    let resp = put(&c, &sim, "r", 1, &doc("x")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let date = resp.headers()["retry-after"].to_str().unwrap().to_owned();
    let when = httpdate::parse_http_date(&date).expect("an HTTP date");
    let ahead = when.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(
        ahead > Duration::from_secs(25) && ahead <= Duration::from_secs(31),
        "{ahead:?}"
    );
    assert!(sim.is_empty());

    // A forced 429 carries Retry-After too.
    sim.set_faults(Faults {
        force_status: Some(429),
        ..Faults::none()
    });
    let resp = put(&c, &sim, "r", 1, &doc("x")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1");
}

#[tokio::test]
async fn fault_drop_closes_connection_before_or_after_applying() {
    let sim = seeded(Faults {
        drop_ratio: 1.0,
        ..Faults::none()
    })
    .await;
    let c = client();
    let mut errors = 0;
    for i in 0..24 {
        match put(&c, &sim, &format!("r{i:02}"), 1, &doc("x")).await {
            Ok(resp) => panic!("expected a dropped connection, got {}", resp.status()),
            Err(e) => {
                // hyper's IncompleteMessage: closed without a response.
                assert!(
                    e.is_request() && !e.is_timeout() && e.status().is_none(),
                    "{e:?}"
                );
                errors += 1;
            }
        }
    }
    assert_eq!(errors, 24);
    let records = sim.requests();
    assert_eq!(records.len(), 24);
    assert!(records.iter().all(|r| r.status == 0));
    let applied = records.iter().filter(|r| r.applied).count();
    // Half of the drops apply first: with 24 draws both kinds occur.
    assert!(applied > 0 && applied < 24, "{applied}");
    assert_eq!(sim.len(), applied);

    // The connection loss is survivable: a retry with the same version
    // after faults clear lands exactly once more.
    sim.set_faults(Faults::none());
    let resp = put(&c, &sim, "r00", 1, &doc("x")).await.unwrap();
    assert!(resp.status() == StatusCode::OK || resp.status() == StatusCode::CREATED);
    assert_eq!(sim.get("r00").unwrap().source_version, 1);
}

#[tokio::test]
async fn fault_force_status_and_latency() {
    let sim = seeded(Faults {
        force_status: Some(401),
        ..Faults::none()
    })
    .await;
    let c = client();
    assert_eq!(
        put(&c, &sim, "r", 1, &doc("x")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    sim.set_faults(Faults {
        force_status: Some(403),
        ..Faults::none()
    });
    assert_eq!(
        delete(&c, &sim, "r", Some("1")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    sim.set_faults(Faults {
        force_status: Some(503),
        ..Faults::none()
    });
    let list = c
        .get(format!("{}/api/v1/job-vacancies", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(sim.is_empty());

    sim.set_faults(Faults {
        latency: Duration::from_millis(150),
        ..Faults::none()
    });
    assert_eq!(sim.faults().latency, Duration::from_millis(150));
    let t0 = Instant::now();
    assert_eq!(
        put(&c, &sim, "r", 1, &doc("x")).await.unwrap().status(),
        StatusCode::CREATED
    );
    assert!(t0.elapsed() >= Duration::from_millis(150));
    let rec = sim.requests().pop().unwrap();
    assert!(rec.finished - rec.started >= Duration::from_millis(150));

    // A client timeout shorter than the latency sees a timeout.
    let impatient = Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let err = put(&impatient, &sim, "r", 2, &doc("x"))
        .await
        .expect_err("times out");
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn fault_hang_holds_requests_until_released() {
    let sim = seeded(Faults {
        hang: true,
        ..Faults::none()
    })
    .await;
    let c = client();
    let held = tokio::spawn({
        let c = c.clone();
        let url = format!("{}/api/v1/job-vacancies/r", sim.base_url());
        async move {
            c.put(url)
                .json(&put_body("r", 1, &doc("x")))
                .send()
                .await
                .map(|r| r.status())
        }
    });
    wait_for("the PUT held", || sim.in_flight() == 1).await;
    assert!(!held.is_finished());
    assert!(sim.is_empty());
    sim.set_faults(Faults::none());
    let status = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("released")
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    assert!(sim.get("r").is_some());
}

#[tokio::test]
async fn overlap_counting_under_latency() {
    let sim = seeded(Faults {
        latency: Duration::from_millis(300),
        ..Faults::none()
    })
    .await;
    let c = client();

    // Two requests for one reference at once: one overlap.
    let (a, b) = tokio::join!(
        put(&c, &sim, "same", 1, &doc("a")),
        delete(&c, &sim, "same", Some("1"))
    );
    assert!(a.unwrap().status().is_success());
    let _ = b.unwrap();
    assert_eq!(sim.overlaps(), 1);

    // Different references at once, or one reference in sequence: none.
    sim.clear_requests();
    let (a, b) = tokio::join!(
        put(&c, &sim, "one", 1, &doc("a")),
        put(&c, &sim, "two", 1, &doc("b"))
    );
    assert!(a.unwrap().status().is_success() && b.unwrap().status().is_success());
    put(&c, &sim, "one", 2, &doc("a2")).await.unwrap();
    put(&c, &sim, "one", 3, &doc("a3")).await.unwrap();
    assert_eq!(sim.overlaps(), 0);

    // The records show the overlap in time as well.
    let (x, y) = tokio::join!(
        put(&c, &sim, "two", 2, &doc("b2")),
        put(&c, &sim, "two", 3, &doc("b3"))
    );
    let _ = (x.unwrap(), y.unwrap());
    assert_eq!(sim.overlaps(), 1);
    let twos: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.reference.as_deref() == Some("two") && r.source_version != Some(1))
        .collect();
    assert_eq!(twos.len(), 2);
    assert!(twos[0].started < twos[1].finished && twos[1].started < twos[0].finished);
    // Version 3 wins whatever the order; 2 either applied first or got 409.
    assert_eq!(sim.get("two").unwrap().source_version, 3);
}

#[tokio::test]
async fn eures_shutdown_closes_held_connections() {
    let sim = seeded(Faults {
        hang: true,
        ..Faults::none()
    })
    .await;
    let url = format!("{}/api/v1/job-vacancies/r", sim.base_url());
    let held = tokio::spawn(async move {
        client()
            .put(url)
            .json(&put_body("r", 1, &doc("x")))
            .send()
            .await
    });
    wait_for("the PUT held", || sim.in_flight() == 1).await;
    sim.shutdown();
    let result = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("ends")
        .unwrap();
    assert!(result.is_err());
    let err = client()
        .get(format!("{}/api/v1/job-vacancies", sim.base_url()))
        .send()
        .await;
    assert!(err.is_err());
    // The abandoned request is still recorded, with no answer.
    wait_for("the abandoned request recorded", || {
        !sim.requests().is_empty()
    })
    .await;
    let recs = sim.requests();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].status, 0);
}

/// Polls `f` every 10 ms until true; fails after 10 s.
async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
