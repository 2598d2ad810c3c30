//! Pull mode end to end (SPEC 4.3): the test plays the EURES portal. It polls
//! the agent's Input API over loopback HTTP, keeps a model of what the portal
//! holds (reference → document), and checks after every round of source
//! changes that the model equals what the source says EURES must hold.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, Env, Running, editable, eventually, now_ms, on_both_backends};
use eures_sync::domain::render::content_hash;
use eures_sync::engine::Health;
use eures_sync::http::input_api::{BASE, InputApi, MAX_DETAILS};
use eures_sync::http::{AppState, serve};
use eures_sync::store::Store;
use eures_sync_sims::jobag::sample_posting;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

on_both_backends!(
    a_portal_polling_the_input_api_follows_every_change,
    bad_and_unauthorised_calls_get_a_clear_error_and_no_data,
    a_new_ledger_publishes_nothing_half_built,
);

const TOKEN: &str = "input-api-test-token-5f0c2b7e-0123456789";
const ROUND: Duration = Duration::from_secs(60);

fn id_of(p: &Value) -> String {
    p["id"].as_str().expect("sample id").to_string()
}

/// The agent's HTTP listener with the Input API, over a given ledger.
struct Listener {
    base: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start(env: &Env, store: Arc<dyn Store>, health: Arc<Health>) -> Listener {
        let config = env.pull_config(TOKEN);
        let token = config
            .token(eures_sync::config::Token::InputApi)
            .expect("token readable")
            .expect("token set");
        let exchange = eures_sync::store::exchange::connect_exchange(&config.database.url)
            .await
            .expect("exchange view");
        let state = AppState {
            store,
            health,
            input_api: Some(InputApi::new(exchange, &token)),
        };
        let (stop, rx) = watch::channel(false);
        let (addr, task) = serve("127.0.0.1:0".parse().expect("addr"), state, rx)
            .await
            .expect("http listener");
        Listener {
            base: format!("http://{addr}{BASE}"),
            stop,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// A pull-mode worker and its listener.
struct Agent {
    running: Running,
    http: Listener,
}

/// Migrates the ledger first (the worker and the API reader open it apart).
async fn migrated(env: &Env) -> Arc<dyn Store> {
    let store = eures_sync::store::connect(&env.db_url())
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    store
}

async fn start_agent(env: &Env) -> Agent {
    migrated(env).await;
    let running = env.worker_with(env.pull_config(TOKEN)).await;
    let http = Listener::start(
        env,
        running.worker.store.clone(),
        running.worker.health.clone(),
    )
    .await;
    Agent { running, http }
}

impl Agent {
    async fn stop(self) {
        self.http.stop().await;
        self.running.stop().await;
    }
}

/// The EURES side of the wire.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.to_string(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder, token: Option<&str>) -> (u16, String) {
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("complete body"))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        self.send(self.http.get(format!("{}/{path}", self.base)), token)
            .await
    }

    async fn post(&self, path: &str, body: String, token: Option<&str>) -> (u16, String) {
        let req = self
            .http
            .post(format!("{}/{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        self.send(req, token).await
    }

    async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path, Some(TOKEN)).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("a complete JSON document")
    }

    /// getAll as reference → Ref.
    async fn all(&self) -> BTreeMap<String, Value> {
        let body = self.get_json("getAll").await;
        let refs = body["allReferences"].as_array().expect("allReferences");
        assert_eq!(body.as_object().map(Map::len), Some(1), "{body}");
        let mut out = BTreeMap::new();
        for r in refs {
            let reference = check_ref(r, None, 0);
            assert_eq!(r["status"], "ACTIVE", "getAll lists only ACTIVE: {r}");
            assert!(
                out.insert(reference.clone(), r.clone()).is_none(),
                "{reference} twice"
            );
        }
        out
    }

    /// getDetails in calls of at most 1,000 references.
    async fn details(&self, references: &[String]) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for chunk in references.chunks(MAX_DETAILS) {
            let (status, body) = self
                .post(
                    "getDetails",
                    serde_json::to_string(chunk).expect("json"),
                    Some(TOKEN),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let body: Value = serde_json::from_str(&body).expect("JSON");
            for (reference, d) in body["details"].as_object().expect("details") {
                assert!(chunk.contains(reference), "asked for {reference}?");
                check_detail(reference, d);
                out.insert(reference.clone(), d.clone());
            }
        }
        out
    }
}

/// Checks a Ref's shape (and its kind when it comes from getChanges);
/// returns its reference.
fn check_ref(r: &Value, kind: Option<&str>, since: i64) -> String {
    let o = r.as_object().expect("Ref is an object");
    for (k, v) in o {
        assert!(
            [
                "reference",
                "source",
                "status",
                "creationTimestamp",
                "lastModificationTimestamp",
                "closingTimestamp"
            ]
            .contains(&k.as_str()),
            "unexpected field {k} in {r}"
        );
        assert!(
            !v.is_null() && v != "null",
            "absent values are omitted: {r}"
        );
    }
    assert_eq!(o["source"], "JobAG");
    let created = o["creationTimestamp"].as_i64().expect("creation ms");
    let modified = o["lastModificationTimestamp"]
        .as_i64()
        .expect("last modification ms");
    let closing = o.get("closingTimestamp").map(|v| v.as_i64().expect("ms"));
    // Epoch ms UTC on the agent's clock: recent, not in the future, not
    // shifted by a time zone.
    let now = now_ms();
    assert!(created > now - 3_600_000 && modified <= now + 1_000, "{r}");
    assert!(created <= modified, "{r}");
    assert!(modified >= since, "getChanges/{since} listed {r}");
    match kind {
        Some("createdReferences") => {
            assert_eq!(o["status"], "ACTIVE", "{r}");
            assert_eq!(created, modified, "{r}");
            assert_eq!(closing, None, "{r}");
        }
        Some("modifiedReferences") => {
            assert_eq!(o["status"], "ACTIVE", "{r}");
            assert_ne!(created, modified, "{r}");
            assert_eq!(closing, None, "{r}");
        }
        Some("closedReferences") => {
            assert_eq!(o["status"], "CLOSED", "{r}");
            assert!(closing.is_some(), "{r}");
        }
        Some(other) => panic!("unknown list {other}"),
        None => {}
    }
    o["reference"].as_str().expect("reference").to_string()
}

/// A detail: ACTIVE with a document, or CLOSED with a closing timestamp and
/// no document; never a null.
fn check_detail(reference: &str, d: &Value) {
    assert_eq!(d["reference"], reference);
    assert_eq!(d["source"], "JobAG");
    assert_eq!(d["contentFormatVersion"], "1.3");
    assert!(
        d.as_object()
            .expect("object")
            .values()
            .all(|v| !v.is_null())
    );
    assert!(d["creationTimestamp"].is_i64() && d["lastModificationTimestamp"].is_i64());
    match d["status"].as_str() {
        Some("ACTIVE") => {
            let content = d["content"].as_str().expect("an ACTIVE copy has content");
            assert!(content.contains("PositionOpening"), "{reference}");
            assert!(d.get("closingTimestamp").is_none(), "{d}");
        }
        Some("CLOSED") => {
            assert!(
                d.get("content").is_none(),
                "{reference}: a closed copy is served without content"
            );
            assert!(d["closingTimestamp"].is_i64(), "{d}");
        }
        other => panic!("{reference}: status {other:?}"),
    }
}

/// What one getChanges answer listed.
#[derive(Debug, Default)]
struct Seen {
    created: BTreeSet<String>,
    modified: BTreeSet<String>,
    closed: BTreeSet<String>,
}

impl Seen {
    fn merge(&mut self, other: Seen) {
        self.created.extend(other.created);
        self.modified.extend(other.modified);
        self.closed.extend(other.closed);
    }

    fn all(&self) -> BTreeSet<String> {
        let mut all = self.created.clone();
        all.extend(self.modified.iter().cloned());
        all.extend(self.closed.iter().cloned());
        all
    }

    fn is_empty(&self) -> bool {
        self.all().is_empty()
    }
}

/// The model portal: what EURES holds, and where its next poll starts.
struct Portal {
    client: Client,
    /// reference → document.
    held: BTreeMap<String, String>,
    /// The moment the previous poll started (the portal's clock), 0 at first.
    since: i64,
}

impl Portal {
    fn new(base: &str) -> Portal {
        Portal {
            client: Client::new(base),
            held: BTreeMap::new(),
            since: 0,
        }
    }

    /// One poll: getChanges since the previous poll started, then the details
    /// of everything listed, applied to the model (de-duplicated: a reference
    /// listed again just gets its current state again).
    async fn poll(&mut self) -> Seen {
        let started = now_ms();
        let body = self
            .client
            .get_json(&format!("getChanges/{}", self.since))
            .await;
        let o = body.as_object().expect("object");
        assert_eq!(o.len(), 3, "{body}");
        let mut seen = Seen::default();
        for (list, set) in [
            ("createdReferences", &mut seen.created),
            ("modifiedReferences", &mut seen.modified),
            ("closedReferences", &mut seen.closed),
        ] {
            for r in o[list].as_array().expect("a list") {
                set.insert(check_ref(r, Some(list), self.since));
            }
        }
        self.since = started;
        // A reference listed in several lists (it changed while the answer
        // streamed) is fetched once; the details say where it stands now.
        let listed: Vec<String> = seen.all().into_iter().collect();
        let details = self.client.details(&listed).await;
        for reference in &listed {
            let d = details
                .get(reference)
                .unwrap_or_else(|| panic!("{reference} listed but has no details"));
            match d["status"].as_str() {
                Some("ACTIVE") => {
                    let content = d["content"].as_str().expect("content").to_string();
                    self.held.insert(reference.clone(), content);
                }
                _ => {
                    self.held.remove(reference);
                }
            }
        }
        seen
    }

    fn hashes(&self) -> BTreeMap<String, String> {
        self.held
            .iter()
            .map(|(r, c)| (r.clone(), content_hash(c)))
            .collect()
    }

    /// Polls until the model equals what the source says EURES must hold
    /// and a poll lists nothing new: the details of one poll may already
    /// show a change its listing missed, which the next poll then lists.
    async fn converge(&mut self, env: &Env, what: &str) -> Seen {
        let started = Instant::now();
        let mut seen = Seen::default();
        loop {
            let this = self.poll().await;
            let quiet = this.is_empty();
            seen.merge(this);
            let expected = env.expected();
            let held = self.hashes();
            if expected == held && quiet {
                return seen;
            }
            if started.elapsed() > ROUND {
                let missing: Vec<_> = expected
                    .keys()
                    .filter(|k| !held.contains_key(*k))
                    .take(5)
                    .collect();
                let extra: Vec<_> = held
                    .keys()
                    .filter(|k| !expected.contains_key(*k))
                    .take(5)
                    .collect();
                panic!(
                    "{what}: the portal did not converge in {ROUND:?}: missing {missing:?}, extra {extra:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

async fn a_portal_polling_the_input_api_follows_every_change(backend: Backend) {
    let env = Env::start_with(backend).await;
    // More than a page of 1,000: getChanges and getAll stream several pages,
    // the portal fetches details in two calls.
    const N: u64 = 1_050;
    for i in 1..=N {
        env.jobag.upsert(sample_posting(i));
    }
    // Never ACTIVE: no consent from the start, and a draft.
    let mut no_consent = sample_posting(5_001);
    no_consent["eures_consent"] = json!(false);
    let mut draft = sample_posting(5_002);
    draft["status"] = json!("draft");
    let never = vec![id_of(&no_consent), id_of(&draft)];
    env.jobag.upsert(no_consent);
    env.jobag.upsert(draft);
    let id = |i: u64| id_of(&sample_posting(i));

    let agent = start_agent(&env).await;
    let mut portal = Portal::new(&agent.http.base);

    // Initial load through getChanges/0.
    let seen = portal.converge(&env, "initial load").await;
    assert_eq!(portal.held.len(), N as usize);
    assert!(
        seen.closed.is_empty() && seen.modified.is_empty(),
        "{seen:?}"
    );
    let all = portal.client.all().await;
    assert_eq!(
        all.keys().collect::<BTreeSet<_>>(),
        portal.held.keys().collect::<BTreeSet<_>>(),
        "getAll lists exactly the ACTIVE copies"
    );

    // Edits: modified, same creation timestamp.
    let created_before = all[&id(1)]["creationTimestamp"].clone();
    for i in 1..=3 {
        let mut p = editable(&env.jobag, &id(i));
        p["title"] = json!(format!("Ny titel {i}: æøå"));
        env.jobag.upsert(p);
    }
    let seen = portal.converge(&env, "edits").await;
    assert!(
        seen.modified.is_superset(&set(&[&id(1), &id(2), &id(3)])),
        "{seen:?}"
    );
    assert!(seen.closed.is_empty(), "{seen:?}");
    assert!(portal.held[&id(1)].contains("Ny titel 1: æøå"));
    let d = portal.client.details(&[id(1)]).await;
    assert_eq!(d[&id(1)]["creationTimestamp"], created_before);

    // An edit that does not change the document (the contact person is not
    // in it) is not a change on the exchange.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let settle = portal.poll().await;
    assert!(
        settle.all().is_subset(&set(&[&id(1), &id(2), &id(3)])),
        "{settle:?}"
    );
    let mut p = editable(&env.jobag, &id(4));
    p["contact"]["phone"] = json!("+4587654321");
    let v = env.jobag.upsert(p);
    let store = agent.running.worker.store.clone();
    eventually(ROUND, "no-op edit ingested", || {
        futures::executor::block_on(store.get(&id(4)))
            .ok()
            .flatten()
            .is_some_and(|e| e.source_version == v)
    })
    .await;
    let after_noop = portal.poll().await;
    assert!(
        after_noop.is_empty(),
        "a no-op edit was reported: {after_noop:?}"
    );

    // Withdrawal, deletion, an invalid edit, unpublishing: all close.
    let mut p = editable(&env.jobag, &id(5));
    p["eures_consent"] = json!(false);
    env.jobag.upsert(p);
    env.jobag.delete(&id(6));
    let mut p = editable(&env.jobag, &id(7));
    p["occupation"] = json!({"isco": "25"});
    env.jobag.upsert(p);
    let mut p = editable(&env.jobag, &id(8));
    p["status"] = json!("unpublished");
    env.jobag.upsert(p);
    let closed_ids = [id(5), id(6), id(7), id(8)];
    let seen = portal.converge(&env, "closings").await;
    assert!(
        seen.closed
            .is_superset(&closed_ids.iter().cloned().collect()),
        "{seen:?}"
    );
    let d = portal.client.details(&closed_ids).await;
    assert_eq!(d.len(), 4, "tombstones stay listed");
    for r in &closed_ids {
        assert_eq!(d[r]["status"], "CLOSED");
        assert!(d[r].get("content").is_none(), "{r} served with content");
    }
    let all = portal.client.all().await;
    assert!(closed_ids.iter().all(|r| !all.contains_key(r)));
    let closed_at = d[&id(5)]["closingTimestamp"].as_i64().expect("closing");

    // Re-consent: created again, new creation timestamp, no closing.
    let mut p = editable(&env.jobag, &id(5));
    p["eures_consent"] = json!(true);
    env.jobag.upsert(p);
    let seen = portal.converge(&env, "re-consent").await;
    assert!(seen.created.contains(&id(5)), "{seen:?}");
    let d = portal.client.details(&[id(5)]).await;
    assert_eq!(d[&id(5)]["status"], "ACTIVE");
    assert!(d[&id(5)]["creationTimestamp"].as_i64().expect("ms") >= closed_at);
    assert!(d[&id(5)].get("closingTimestamp").is_none());

    // Expiry: no event; closed within 5 s of publication_end, not before.
    let mut short = sample_posting(N + 1);
    let ends = chrono::Utc::now() + chrono::Duration::seconds(4);
    short["publication_end"] = json!(ends.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let short_id = id_of(&short);
    env.jobag.upsert(short);
    portal.converge(&env, "short-lived posting").await;
    assert!(portal.held.contains_key(&short_id));
    let mut checked = 0;
    while chrono::Utc::now() < ends - chrono::Duration::milliseconds(300) {
        portal.poll().await;
        assert!(
            portal.held.contains_key(&short_id),
            "closed before publication_end"
        );
        checked += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        checked > 0,
        "the posting arrived too late to check that it stays open until publication_end"
    );
    let deadline = ends + chrono::Duration::seconds(5);
    let mut seen = Seen::default();
    while portal.held.contains_key(&short_id) {
        assert!(
            chrono::Utc::now() < deadline,
            "not closed within 5 s of publication_end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen.merge(portal.poll().await);
    }
    assert!(seen.closed.contains(&short_id), "{seen:?}");
    portal.converge(&env, "after expiry").await;

    // A rebuild (the operator re-reads postings, same documents) publishes
    // nothing: no closing, no re-creation.
    tokio::time::sleep(Duration::from_millis(50)).await;
    portal.poll().await;
    let before = portal.client.all().await;
    let mut reread: Vec<String> = (1..=40).map(id).collect();
    reread.push(short_id.clone());
    reread.extend(never.iter().cloned());
    for r in &reread {
        agent.running.worker.reread(r, true).await.expect("reread");
    }
    let after_rebuild = portal.poll().await;
    assert!(
        after_rebuild.is_empty(),
        "a rebuild was reported: {after_rebuild:?}"
    );
    assert_eq!(portal.client.all().await, before);

    // Never ACTIVE: nowhere, not even from the beginning.
    let mut from_zero = Portal::new(&agent.http.base);
    let everything = from_zero.poll().await.all();
    let d = portal.client.details(&never).await;
    for r in &never {
        assert!(!everything.contains(r) && !before.contains_key(r) && !d.contains_key(r));
    }
    // A portal starting from scratch ends where this one is.
    assert_eq!(from_zero.hashes(), portal.hashes());
    assert_eq!(portal.hashes(), env.expected());
    agent.stop().await;
}

async fn bad_and_unauthorised_calls_get_a_clear_error_and_no_data(backend: Backend) {
    let env = Env::start_with(backend).await;
    let (a, b) = (sample_posting(1), sample_posting(2));
    let known = vec![id_of(&a), id_of(&b)];
    env.jobag.upsert(a);
    env.jobag.upsert(b);
    let agent = start_agent(&env).await;
    let client = Client::new(&agent.http.base);
    let mut listed = 0;
    let started = Instant::now();
    while listed < 2 {
        assert!(started.elapsed() < ROUND, "postings never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
        listed = client.all().await.len();
    }

    // ping
    let resp = reqwest::Client::new()
        .get(format!("{}/ping", agent.http.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("ping");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );

    let error_of = |status: u16, body: &str, want: u16| -> String {
        assert_eq!(status, want, "{body}");
        let v: Value = serde_json::from_str(body).expect("JSON error");
        let o = v.as_object().expect("object");
        assert_eq!(o.len(), 1, "only the error: {body}");
        let msg = o["error"].as_str().expect("message").to_string();
        assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
        assert!(!body.contains(&known[0]) && !body.contains(TOKEN), "{body}");
        msg
    };

    // No token, a wrong one, another scheme: 401 and nothing else.
    let refs_body = serde_json::to_string(&known).expect("json");
    for token in [None, Some("wrong-token"), Some("")] {
        for path in ["ping", "getAll", "getChanges/0"] {
            let (s, body) = client.get(path, token).await;
            error_of(s, &body, 401);
        }
        let (s, body) = client.post("getDetails", refs_body.clone(), token).await;
        error_of(s, &body, 401);
    }
    let (s, body) = client
        .send(
            client
                .http
                .get(format!("{}/getAll", agent.http.base))
                .header("authorization", format!("Basic {TOKEN}")),
            None,
        )
        .await;
    error_of(s, &body, 401);

    // Timestamps that are not non-negative integers.
    for ts in ["abc", "-1", "1.5", "1e3", "99999999999999999999999"] {
        let (s, body) = client.get(&format!("getChanges/{ts}"), Some(TOKEN)).await;
        assert!(error_of(s, &body, 400).contains("timestamp"), "{body}");
    }

    // getDetails bodies.
    for bad in ["not json", "{\"refs\": []}", "[1, 2]", "[\"a\", null]", ""] {
        let (s, body) = client.post("getDetails", bad.into(), Some(TOKEN)).await;
        error_of(s, &body, 400);
    }
    let too_many: Vec<String> = (0..=MAX_DETAILS).map(|i| format!("unknown-{i}")).collect();
    let (s, body) = client
        .post(
            "getDetails",
            serde_json::to_string(&too_many).expect("json"),
            Some(TOKEN),
        )
        .await;
    assert!(error_of(s, &body, 400).contains("1000"), "{body}");

    // Exactly the limit is fine; unknown references are left out, repeated
    // ones answered once.
    let mut at_limit: Vec<String> = (0..MAX_DETAILS - 3)
        .map(|i| format!("unknown-{i}"))
        .collect();
    at_limit.extend([known[0].clone(), known[1].clone(), known[0].clone()]);
    let (s, body) = client
        .post(
            "getDetails",
            serde_json::to_string(&at_limit).expect("json"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    let details = v["details"].as_object().expect("details");
    assert_eq!(
        details.keys().collect::<BTreeSet<_>>(),
        known.iter().collect::<BTreeSet<_>>()
    );
    let (s, body) = client.post("getDetails", "[]".into(), Some(TOKEN)).await;
    assert_eq!((s, body.as_str()), (200, "{\"details\":{}}"));

    // Inclusive: getChanges/{ts} lists what was modified at exactly ts.
    let all = client.all().await;
    let ts = all[&known[0]]["lastModificationTimestamp"]
        .as_i64()
        .expect("ms");
    let mut p = Portal::new(&agent.http.base);
    p.since = ts;
    assert!(p.poll().await.created.contains(&known[0]));
    p.since = ts + 1;
    let later = p.poll().await;
    assert!(!later.all().contains(&known[0]), "{later:?}");
    agent.stop().await;
}

/// A new (or rebuilt) ledger serves nothing until it knows something, then
/// only what is live: it never reports a closing the source did not make
/// while this ledger held the copy.
async fn a_new_ledger_publishes_nothing_half_built(backend: Backend) {
    let env = Env::start_with(backend).await;
    let (live, deleted, withdrawn) = (sample_posting(1), sample_posting(2), sample_posting(3));
    let ids = [id_of(&live), id_of(&deleted), id_of(&withdrawn)];
    env.jobag.upsert(live);
    env.jobag.upsert(deleted);
    env.jobag.upsert(withdrawn);
    env.jobag.delete(&ids[1]);
    let mut w = editable(&env.jobag, &ids[2]);
    w["eures_consent"] = json!(false);
    env.jobag.upsert(w);

    // The empty ledger, before any worker ran.
    let store = migrated(&env).await;
    let http = Listener::start(&env, store, Arc::new(Health::default())).await;
    let client = Client::new(&http.base);
    assert_eq!(
        client.get_json("getAll").await,
        json!({"allReferences": []})
    );
    assert_eq!(
        client.get_json("getChanges/0").await,
        json!({"createdReferences": [], "modifiedReferences": [], "closedReferences": []})
    );
    http.stop().await;

    let agent = start_agent(&env).await;
    let mut portal = Portal::new(&agent.http.base);
    let seen = portal.converge(&env, "first load").await;
    assert_eq!(seen.created, set(&[&ids[0]]));
    assert!(
        seen.closed.is_empty() && seen.modified.is_empty(),
        "{seen:?}"
    );
    let from_zero = Portal::new(&agent.http.base).poll().await;
    assert_eq!(from_zero.all(), set(&[&ids[0]]));
    agent.stop().await;
}
