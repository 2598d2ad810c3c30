//! The core promise end to end, over loopback HTTP: JobAG simulator → worker
//! → EURES simulator, each test once on a SQLite ledger (`sqlite::*`) and
//! once on PostgreSQL (`postgres::*`).

mod common;

use std::time::Duration;

use common::{Backend, Env, editable, eventually, eventually_async};
use eures_sync::domain::ledger::{Delivered, DesiredState};
use eures_sync::domain::render::content_hash;
use eures_sync::http::input_api::BASE;
use eures_sync_sims::conformance::check;
use eures_sync_sims::eures::Faults;
use eures_sync_sims::jobag::{sample_id, sample_posting};
use hyper::Method;
use quick_xml::events::Event;
use quick_xml::reader::Reader;
use serde_json::{Value, json};

common::on_both_backends!(
    every_eligibility_rule_keeps_its_posting_off_eures,
    create_edit_withdraw_reconsent_delete_and_expiry_reach_eures,
    converges_under_5xx_throttling_and_dropped_connections,
    ten_edits_during_an_outage_arrive_as_one_update,
    malformed_change_is_quarantined_and_the_feed_goes_on,
    an_invalid_edit_removes_the_earlier_valid_copy,
    out_of_order_and_repeated_versions_never_regress,
    hostile_application_values_reach_eures_as_text_in_push_mode,
    hostile_application_values_reach_eures_as_text_in_pull_mode,
);

const CONVERGE: Duration = Duration::from_secs(60);

async fn every_eligibility_rule_keeps_its_posting_off_eures(backend: Backend) {
    let env = Env::start_with(backend).await;
    let mut ids = Vec::new();
    let variants: Vec<(&str, serde_json::Value)> = vec![
        ("eligible", json!({})),
        ("not_published", json!({"status": "draft"})),
        ("unpublished", json!({"status": "unpublished"})),
        (
            "expired",
            json!({"publication_end": "2020-01-01T00:00:00Z"}),
        ),
        ("no_consent", json!({"eures_consent": false})),
        ("internal", json!({"internal": true})),
        ("from_eures", json!({"origin": "eures"})),
        (
            "outside",
            json!({"locations": [{"city": "Oslo-less", "country": "US"}]}),
        ),
        ("invalid", json!({"title": "   "})),
    ];
    for (i, (_, patch)) in variants.iter().enumerate() {
        let mut p = sample_posting(i as u64 + 1);
        for (k, v) in patch.as_object().unwrap() {
            p[k] = v.clone();
        }
        ids.push(p["id"].as_str().unwrap().to_string());
        env.jobag.upsert(p);
    }
    let id_deleted = sample_posting(100)["id"].as_str().unwrap().to_string();
    env.jobag.upsert(sample_posting(100));
    env.jobag.delete(&id_deleted);

    let running = env.worker().await;
    eventually(CONVERGE, "eligible posting on EURES", || {
        env.eures.get(&ids[0]).is_some()
    })
    .await;
    // Let every change be ingested, then check nothing else arrived.
    let store = running.worker.store.clone();
    eventually_async(CONVERGE, "all changes ingested", || async {
        store.get(&id_deleted).await.ok().flatten().is_some()
    })
    .await;
    // Nothing due, nothing leased, nothing in flight: nothing else can come.
    env.judged(CONVERGE).await;
    assert_eq!(env.eures.len(), 1, "only the eligible posting is on EURES");
    let expectations = [
        (1, "not_published"),
        (2, "not_published"),
        (3, "expired"),
        (4, "no_consent"),
        (5, "internal"),
        (6, "from_eures"),
        (7, "outside_eures_area"),
    ];
    for (i, reason) in expectations {
        let e = store.get(&ids[i]).await.unwrap().expect("ledger knows it");
        assert_eq!(e.absent_reason(), Some(reason), "posting {i}");
    }
    let invalid = store.get(&ids[8]).await.unwrap().unwrap();
    assert!(
        invalid
            .absent_reason()
            .unwrap()
            .starts_with("invalid: title"),
        "{:?}",
        invalid.absent_reason()
    );
    let deleted = store.get(&id_deleted).await.unwrap().unwrap();
    assert_eq!(deleted.absent_reason(), Some("deleted"));
    env.settled(CONVERGE).await;
    running.stop().await;
}

async fn create_edit_withdraw_reconsent_delete_and_expiry_reach_eures(backend: Backend) {
    let env = Env::start_with(backend).await;
    let running = env.worker().await;
    let p = sample_posting(1);
    let id = p["id"].as_str().unwrap().to_string();
    env.jobag.upsert(p);
    eventually(CONVERGE, "create", || env.eures.get(&id).is_some()).await;
    // SPEC 6: once EURES acknowledged it, the ledger keeps no copy of the
    // document (it lives apart from the record and is deleted).
    let store = running.worker.store.clone();
    eventually_async(CONVERGE, "the delivered document erased", || {
        let store = store.clone();
        let id = id.clone();
        async move {
            let e = store.get(&id).await.unwrap().unwrap();
            matches!(e.desired, DesiredState::Present { content: None, .. })
                && matches!(e.delivered, Delivered::Present { .. })
        }
    })
    .await;

    let mut edit = editable(&env.jobag, &id);
    edit["title"] = json!("Ny titel: æøå");
    let v = env.jobag.upsert(edit);
    eventually(CONVERGE, "update", || {
        env.eures.get(&id).is_some_and(|x| x.source_version == v)
    })
    .await;
    assert!(
        env.eures
            .get(&id)
            .unwrap()
            .content
            .contains("Ny titel: æøå")
    );

    let mut withdraw = editable(&env.jobag, &id);
    withdraw["eures_consent"] = json!(false);
    env.jobag.upsert(withdraw);
    eventually(CONVERGE, "withdrawal", || env.eures.get(&id).is_none()).await;

    let mut again = editable(&env.jobag, &id);
    again["eures_consent"] = json!(true);
    env.jobag.upsert(again);
    eventually(CONVERGE, "re-consent", || env.eures.get(&id).is_some()).await;

    env.jobag.delete(&id);
    eventually(CONVERGE, "deletion", || env.eures.get(&id).is_none()).await;
    let ops: Vec<Method> = env.eures.history(&id).into_iter().map(|(m, _)| m).collect();
    assert_eq!(
        ops,
        vec![
            Method::PUT,
            Method::PUT,
            Method::DELETE,
            Method::PUT,
            Method::DELETE
        ],
        "exactly the operations the story needs"
    );

    // Expiry: no event, the copy leaves within 5 s of publication_end, not before.
    let mut short = sample_posting(2);
    let ends = chrono::Utc::now() + chrono::Duration::seconds(4);
    short["publication_end"] = json!(ends.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let short_id = short["id"].as_str().unwrap().to_string();
    env.jobag.upsert(short);
    eventually(CONVERGE, "short-lived create", || {
        env.eures.get(&short_id).is_some()
    })
    .await;
    let mut checked = 0;
    while chrono::Utc::now() < ends - chrono::Duration::milliseconds(200) {
        assert!(
            env.eures.get(&short_id).is_some(),
            "removed before publication_end"
        );
        checked += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        checked > 0,
        "the copy arrived too late to check that it stays until publication_end"
    );
    let deadline = ends + chrono::Duration::seconds(5);
    while env.eures.get(&short_id).is_some() {
        assert!(
            chrono::Utc::now() < deadline,
            "not removed within 5 s of publication_end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = running.worker.store.get(&short_id).await.unwrap().unwrap();
    assert_eq!(e.absent_reason(), Some("expired"));
    env.settled(CONVERGE).await;
    running.stop().await;
}

async fn converges_under_5xx_throttling_and_dropped_connections(backend: Backend) {
    let env = Env::start_with(backend).await;
    env.eures.set_faults(Faults {
        error_5xx_ratio: 0.3,
        throttle_ratio: 0.05,
        retry_after_secs: 1,
        drop_ratio: 0.1,
        ..Faults::none()
    });
    for i in 1..=200 {
        env.jobag.upsert(sample_posting(i));
    }
    let running = env.worker().await;
    // Edits, withdrawals and deletions while the faults go on.
    for i in 1..=40u64 {
        let id = sample_posting(i)["id"].as_str().unwrap().to_string();
        let mut p = editable(&env.jobag, &id);
        match i % 4 {
            0 => {
                env.jobag.delete(&id);
                continue;
            }
            1 => p["eures_consent"] = json!(false),
            _ => p["title"] = json!(format!("Redigeret {i}")),
        }
        env.jobag.upsert(p);
    }
    env.converged(Duration::from_secs(120)).await;
    env.settled(CONVERGE).await;
    running.stop().await;
}

async fn ten_edits_during_an_outage_arrive_as_one_update(backend: Backend) {
    let env = Env::start_with(backend).await;
    let running = env.worker().await;
    let p = sample_posting(1);
    let id = p["id"].as_str().unwrap().to_string();
    env.jobag.upsert(p);
    eventually(CONVERGE, "create", || env.eures.get(&id).is_some()).await;

    env.eures.set_faults(Faults {
        force_status: Some(503),
        ..Faults::none()
    });
    let mut last = 0;
    for i in 0..10 {
        let mut edit = editable(&env.jobag, &id);
        edit["title"] = json!(format!("Edit number {i}"));
        last = env.jobag.upsert(edit);
    }
    // Let the agent see every edit and fail against the outage.
    let store = running.worker.store.clone();
    eventually_async(CONVERGE, "edits ingested", || async {
        store
            .get(&id)
            .await
            .ok()
            .flatten()
            .is_some_and(|e| e.source_version == last)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.eures.set_faults(Faults::none());
    eventually(CONVERGE, "update after outage", || {
        env.eures.get(&id).is_some_and(|x| x.source_version == last)
    })
    .await;
    let applied = env.eures.history(&id);
    assert_eq!(
        applied.len(),
        2,
        "one create and exactly one update: {applied:?}"
    );
    assert_eq!(applied[1].1, last);
    env.settled(CONVERGE).await;
    running.stop().await;
}

async fn malformed_change_is_quarantined_and_the_feed_goes_on(backend: Backend) {
    let env = Env::start_with(backend).await;
    env.jobag.upsert(sample_posting(1));
    env.jobag.push_raw(json!({"title": "no id"}));
    env.jobag.push_raw(json!("not even an object"));
    let bad = sample_posting(2);
    let bad_id = bad["id"].as_str().unwrap().to_string();
    env.jobag.push_raw(
        json!({"id": bad_id, "version": 1, "updated_at": "2026-11-20T10:00:00Z",
                              "status": "published", "employer": "not an object"}),
    );
    env.jobag.upsert(sample_posting(3));
    let running = env.worker().await;
    env.converged(CONVERGE).await;
    assert_eq!(env.eures.len(), 2);
    let quarantined = running.worker.store.quarantined(10).await.unwrap();
    assert!(
        quarantined
            .iter()
            .any(|(id, r)| id.as_deref() == Some(bad_id.as_str())
                && r.starts_with("invalid: employer")),
        "{quarantined:?}"
    );
    assert_eq!(
        quarantined.iter().filter(|(id, _)| id.is_none()).count(),
        2,
        "{quarantined:?}"
    );
    env.settled(CONVERGE).await;
    running.stop().await;
}

async fn an_invalid_edit_removes_the_earlier_valid_copy(backend: Backend) {
    let env = Env::start_with(backend).await;
    let running = env.worker().await;
    let p = sample_posting(1);
    let id = p["id"].as_str().unwrap().to_string();
    env.jobag.upsert(p);
    eventually(CONVERGE, "create", || env.eures.get(&id).is_some()).await;
    let mut broken = editable(&env.jobag, &id);
    broken["occupation"] = json!({"isco": "25"});
    env.jobag.upsert(broken);
    eventually(CONVERGE, "stale copy deleted", || {
        env.eures.get(&id).is_none()
    })
    .await;
    let e = running.worker.store.get(&id).await.unwrap().unwrap();
    assert!(
        e.absent_reason()
            .unwrap()
            .starts_with("invalid: occupation"),
        "{:?}",
        e.absent_reason()
    );
    env.settled(CONVERGE).await;
    running.stop().await;
}

async fn out_of_order_and_repeated_versions_never_regress(backend: Backend) {
    let env = Env::start_with(backend).await;
    let mut p = sample_posting(1);
    let id = p["id"].as_str().unwrap().to_string();
    p["version"] = json!(5);
    p["updated_at"] = json!("2026-11-20T10:00:00Z");
    p["title"] = json!("Version five");
    env.jobag.push_raw(p.clone());
    let mut old = p.clone();
    old["version"] = json!(3);
    old["title"] = json!("Version three, late");
    env.jobag.push_raw(old);
    env.jobag.push_raw(p.clone());
    let running = env.worker().await;
    eventually(CONVERGE, "create", || env.eures.get(&id).is_some()).await;
    env.judged(CONVERGE).await;
    let held = env.eures.get(&id).unwrap();
    assert_eq!(held.source_version, 5);
    assert!(held.content.contains("Version five"));
    assert_eq!(env.eures.history(&id).len(), 1);
    running.stop().await;
}

/// SPEC 5: an application URL or email is a value placed into HTML, so it
/// reaches the public portal as escaped text (or not at all, when it is not
/// a URL or an email), never as markup; with consent scope "posting" the
/// description's mailto: and tel: links go, their text stays. Through the
/// real binary, the document EURES holds: the simulator's copy (push) or
/// the content getDetails serves (pull).
async fn hostile_application_values_reach_eures_as_text_in_push_mode(backend: Backend) {
    hostile_application_values(backend, false).await;
}

async fn hostile_application_values_reach_eures_as_text_in_pull_mode(backend: Backend) {
    hostile_application_values(backend, true).await;
}

const PULL_TOKEN: &str = "sync-hostile-input-api-token-0123456789";

async fn hostile_application_values(backend: Backend, pull: bool) {
    let env = Env::start_with(backend).await;
    let hostile = [
        // (url, email, scope, description, the Instructions HTML EURES gets)
        (
            "https://x.dk/<script>alert(1)</script>",
            Some("a<img/src/onerror=alert(1)>@x.dk"),
            "posting_and_contact",
            None,
            // The URL parses (a browser would percent-encode its path), so it
            // stays, escaped; the email is not one and goes.
            "https://x.dk/&lt;script&gt;alert(1)&lt;/script&gt;",
        ),
        (
            "https://x.dk/a\"><svg/onload=alert(1)>",
            Some("jobs@x.dk"),
            "posting_and_contact",
            None,
            "https://x.dk/a\"&gt;&lt;svg/onload=alert(1)&gt;\njobs@x.dk",
        ),
        (
            "https://x.dk/job?a=1&b=2",
            None,
            "posting",
            Some(
                "<p>Skriv <a href=\"mailto:job@x.dk\">til os</a> eller \
                 <a href=\"TEL:+4512345678\">ring</a>, \
                 <a href=\"https://x.dk/om\">læs mere</a>.</p>",
            ),
            "https://x.dk/job?a=1&amp;b=2",
        ),
    ];
    let mut ids = Vec::new();
    for (i, (url, email, scope, description, _)) in hostile.iter().enumerate() {
        let mut p = sample_posting(i as u64 + 1);
        p["application"] = json!({"url": url, "email": email, "instructions": null});
        p["eures_consent_scope"] = json!(scope);
        if let Some(description) = description {
            p["description"] = json!(description);
        }
        ids.push(sample_id(i as u64 + 1));
        env.jobag.upsert(p);
    }
    let mut extra = "[reconcile]\ninterval_s = 0\n".to_string();
    if pull {
        let token_file = env.dir.path().join("input-api.token");
        common::write_secret(&token_file, PULL_TOKEN);
        extra.push_str(&format!(
            "[eures]\nmode = \"pull\"\ninput_api_token_file = \"{}\"\n",
            token_file.display()
        ));
    }
    let mut agent = env.agent("hostile", "info", &extra);
    let base = format!("http://{}", agent.listen());
    let http = reqwest::Client::new();
    let held = |id: String| {
        let (http, base) = (http.clone(), base.clone());
        let eures = &env.eures;
        async move {
            if !pull {
                return eures.get(&id).map(|v| v.content);
            }
            let response = http
                .post(format!("{base}{BASE}/getDetails"))
                .bearer_auth(PULL_TOKEN)
                .json(&json!([id]))
                .send()
                .await
                .expect("getDetails");
            // 503 while the agent catches up with JobAG after its start.
            if response.status().as_u16() == 503 {
                return None;
            }
            assert_eq!(response.status().as_u16(), 200);
            let body: Value = response.json().await.expect("JSON");
            let detail = body["details"].get(&id)?;
            (detail["status"] == "ACTIVE")
                .then(|| detail["content"].as_str().expect("content").to_string())
        }
    };
    for (id, (_, _, _, _, want)) in ids.iter().zip(hostile) {
        eventually_async(CONVERGE, &format!("{id} on EURES as rendered"), || async {
            let expected = env.expected().get(id).cloned();
            expected.is_some() && held(id.clone()).await.as_deref().map(content_hash) == expected
        })
        .await;
        let doc = held(id.clone()).await.expect("held");
        assert_eq!(check(&doc), [], "{id}: EURES content rules\n{doc}");
        let instructions = html_of(&doc, "Instructions");
        assert_eq!(instructions, want, "{id}: Instructions");
        assert!(!instructions.contains('<'), "{id}: markup in Instructions");
        let lower = doc.to_ascii_lowercase();
        for markup in ["<script", "<img", "<svg"] {
            assert!(!lower.contains(markup), "{id}: {markup} in\n{doc}");
        }
    }
    let description = html_of(&held(ids[2].clone()).await.expect("held"), "Content");
    assert_eq!(
        description,
        "<p>Skriv <a>til os</a> eller <a>ring</a>, <a href=\"https://x.dk/om\">læs mere</a>.</p>",
        "scope \"posting\": mailto: and tel: links go, their text stays"
    );
    if !pull {
        env.settled(CONVERGE).await;
    } else {
        assert!(env.eures.requests().is_empty(), "pull mode pushed");
    }
    agent.stop().await;
}

/// The text of the one element `name` of `doc` (CDATA sections joined):
/// the HTML as EURES reads it out of the XML.
fn html_of(doc: &str, name: &str) -> String {
    let mut reader = Reader::from_str(doc);
    let (mut inside, mut found, mut text) = (false, 0, String::new());
    loop {
        match reader.read_event().expect("well-formed") {
            Event::Start(e) if e.local_name().as_ref() == name => {
                inside = true;
                found += 1;
            }
            Event::End(e) if e.local_name().as_ref() == name => inside = false,
            Event::CData(c) if inside => text.push_str(&c.xml10_content()),
            Event::Text(t) if inside => text.push_str(&t.xml10_content()),
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(found, 1, "one {name} element");
    text
}
