//! Consent scope and restriction end to end (SPEC 2, 4.1, 5), through the
//! real binary, in push mode (the EURES simulator holds the copy) and in
//! pull mode (the test reads the copy from the agent's Input API, SPEC
//! 4.3), on SQLite (`sqlite::*`) and PostgreSQL (`postgres::*`):
//!
//! 1. a posting whose consent covers the posting and its contact data is
//!    delivered, the application email and instructions (which name the
//!    contact person and their phone) in its `ApplicationMethod`;
//! 2. the employer narrows the scope to `"posting"`: an update reaches
//!    EURES, and the document it holds carries the application URL and no
//!    email, phone or name;
//! 3. processing is restricted (GDPR art. 18): the copy goes (push: a
//!    DELETE, the simulator holds nothing; pull: the reference is CLOSED,
//!    served without content), and `status --json`, `inspect --json` and
//!    `eures_sync_absent_postings{reason="restricted"}` show the reason
//!    while it holds;
//! 4. the restriction is lifted: the copy is back, still without personal
//!    data, and the reason is gone from `status` and the metric.
//!
//! A second posting with the default scope stays untouched throughout.

mod common;

use std::time::Duration;

use common::agent::{Agent, cli};
use common::{Backend, Env, editable, eventually_async};
use eures_sync::domain::render::content_hash;
use eures_sync::http::input_api::BASE;
use eures_sync_sims::jobag::{sample_id, sample_posting};
use hyper::Method;
use serde_json::{Value, json};

common::on_both_backends!(
    scope_narrowed_then_restricted_then_lifted_in_push_mode,
    scope_narrowed_then_restricted_then_lifted_in_pull_mode,
);

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "consent-scope-input-api-token-0123456789";

/// The contact person of the posting, as JobAG sends them; the employer
/// also put all three in the application email and instructions.
const NAME: &str = "Søren Ødegård";
const EMAIL: &str = "soeren@example.dk";
const PHONE: &str = "+4512345678";
const URL: &str = "https://job.example.dk/ansoeg/1";
const RESTRICTED: &str = "eures_sync_absent_postings{reason=\"restricted\"}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Push,
    Pull,
}

async fn scope_narrowed_then_restricted_then_lifted_in_push_mode(backend: Backend) {
    story(Mode::Push, backend).await;
}

async fn scope_narrowed_then_restricted_then_lifted_in_pull_mode(backend: Backend) {
    story(Mode::Pull, backend).await;
}

/// The running agent and where to ask it.
struct Story<'a> {
    env: &'a Env,
    mode: Mode,
    agent: Agent,
    /// `http://<listen>`: metrics, and the Input API under [`BASE`].
    base: String,
    http: reqwest::Client,
}

impl Story<'_> {
    /// The Input API's details of `id` (pull mode); `None` for an unknown
    /// reference, or while nothing is served yet.
    async fn details(&self, id: &str) -> Option<Value> {
        let response = self
            .http
            .post(format!("{}{BASE}/getDetails", self.base))
            .bearer_auth(TOKEN)
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
        body["details"].get(id).cloned()
    }

    /// The references getAll lists (pull mode).
    async fn all(&self) -> Vec<String> {
        let response = self
            .http
            .get(format!("{}{BASE}/getAll", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("getAll");
        assert_eq!(response.status().as_u16(), 200);
        let body: Value = response.json().await.expect("JSON");
        body["allReferences"]
            .as_array()
            .expect("allReferences")
            .iter()
            .filter_map(|r| r["reference"].as_str().map(str::to_string))
            .collect()
    }

    /// The document EURES holds for `id`: push, the simulator's copy; pull,
    /// the content of an ACTIVE reference on the Input API.
    async fn held(&self, id: &str) -> Option<String> {
        match self.mode {
            Mode::Push => self.env.eures.get(id).map(|v| v.content),
            Mode::Pull => {
                let d = self.details(id).await?;
                (d["status"] == "ACTIVE")
                    .then(|| d["content"].as_str().expect("content").to_string())
            }
        }
    }

    /// Waits until EURES holds for `id` what the source says it must (the
    /// document's hash, or nothing), and returns that document.
    async fn converged(&self, id: &str, what: &str) -> Option<String> {
        eventually_async(WAIT, what, || async {
            let want = self.env.expected().get(id).cloned();
            let held = self.held(id).await;
            held.as_deref().map(content_hash) == want
        })
        .await;
        self.held(id).await
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body")
    }

    /// `status --json` of the running agent's ledger.
    fn status(&self) -> Value {
        let out = cli(&self.agent.config, &["status", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    /// Waits until `status --json` shows `restricted` postings absent for
    /// that reason (the reason left out when 0) and `present` postings
    /// present; returns it.
    async fn status_shows(&self, restricted: u64, present: u64) -> Value {
        let wanted = |s: &Value| {
            let reason = &s["absent_reasons"]["restricted"];
            let reason_ok = if restricted == 0 {
                reason.is_null()
            } else {
                *reason == restricted
            };
            reason_ok && s["postings"]["present"] == present
        };
        eventually_async(
            WAIT,
            &format!("status: {restricted} restricted, {present} present"),
            || async { wanted(&self.status()) },
        )
        .await;
        self.status()
    }

    /// `inspect ID --json` of the running agent's ledger.
    fn inspect(&self, id: &str) -> Value {
        let out = cli(&self.agent.config, &["inspect", id, "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("inspect --json is JSON")
    }

    /// Waits until the metric `eures_sync_absent_postings{reason="restricted"}`
    /// reads `want` (the ledger summary behind it is recomputed at most once
    /// a second).
    async fn restricted_gauge(&self, want: f64) {
        eventually_async(WAIT, &format!("{RESTRICTED} {want}"), || async {
            value(&self.metrics().await, RESTRICTED) == Some(want)
        })
        .await;
    }
}

/// One series' value, named exactly as exposed (labels included).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn assert_no_personal_data(doc: &str, when: &str) {
    for personal in [NAME, EMAIL, PHONE, "Ring til"] {
        assert!(!doc.contains(personal), "{when}: {personal:?} in\n{doc}");
    }
    assert!(
        doc.contains(&format!("<![CDATA[{URL}]]>")),
        "{when}: the application URL alone in ApplicationMethod:\n{doc}"
    );
}

async fn story(mode: Mode, backend: Backend) {
    let env = Env::start_with(backend).await;
    let id = sample_id(1);
    let bystander = sample_id(2);
    let mut posting = sample_posting(1);
    posting["eures_consent_scope"] = json!("posting_and_contact");
    posting["contact"] = json!({"name": NAME, "email": EMAIL, "phone": PHONE});
    posting["application"] = json!({
        "url": URL,
        "email": EMAIL,
        "instructions": format!("<p>Ring til {NAME} på {PHONE}.</p>"),
    });
    let v1 = env.jobag.upsert(posting);
    env.jobag.upsert(sample_posting(2));

    // No periodic reconcile: every request below comes from the feed.
    let mut extra = "[reconcile]\ninterval_s = 0\n".to_string();
    if mode == Mode::Pull {
        let token_file = env.dir.path().join("input-api.token");
        common::write_secret(&token_file, TOKEN);
        extra.push_str(&format!(
            "[eures]\nmode = \"pull\"\ninput_api_token_file = \"{}\"\n",
            token_file.display()
        ));
    }
    let mut agent = env.agent("consent", "info", &extra);
    let base = format!("http://{}", agent.listen());
    let story = Story {
        env: &env,
        mode,
        agent,
        base,
        http: reqwest::Client::new(),
    };

    // 1. Scope "posting_and_contact": what the employer put in the
    // application method travels.
    let doc = story
        .converged(&id, "the copy with contact data")
        .await
        .expect("delivered");
    for personal in [NAME, EMAIL, PHONE] {
        assert!(doc.contains(personal), "{personal:?} missing in\n{doc}");
    }
    story
        .converged(&bystander, "the bystander's copy")
        .await
        .expect("delivered");
    let created = match mode {
        Mode::Push => 0,
        Mode::Pull => story.details(&id).await.expect("listed")["creationTimestamp"]
            .as_i64()
            .expect("creation ms"),
    };

    // 2. Scope narrowed: an update, the document without personal data.
    let mut p = editable(&env.jobag, &id);
    p["eures_consent_scope"] = json!("posting");
    let v2 = env.jobag.upsert(p);
    let narrowed = story
        .converged(&id, "the copy without contact data")
        .await
        .expect("still on EURES");
    assert_no_personal_data(&narrowed, "scope narrowed");
    assert_ne!(narrowed, doc);
    match mode {
        Mode::Push => assert_eq!(
            env.eures.history(&id),
            [(Method::PUT, v1), (Method::PUT, v2)],
            "the narrowing is an update, not a deletion and a new copy"
        ),
        Mode::Pull => {
            let d = story.details(&id).await.expect("listed");
            assert_eq!(d["status"], "ACTIVE", "{d}");
            assert_eq!(d["creationTimestamp"], created, "an update keeps it: {d}");
            let modified = d["lastModificationTimestamp"].as_i64().expect("ms");
            assert!(modified > created, "an update moves it: {d}");
        }
    }

    // 3. Processing restricted: the copy goes, and the reason shows.
    let mut p = editable(&env.jobag, &id);
    p["processing_restricted"] = json!(true);
    let v3 = env.jobag.upsert(p);
    let gone = story.converged(&id, "the restricted copy gone").await;
    assert!(gone.is_none(), "the copy stayed on EURES while restricted");
    let closed = match mode {
        Mode::Push => {
            assert!(env.eures.get(&id).is_none());
            assert_eq!(env.eures.history(&id).last(), Some(&(Method::DELETE, v3)));
            0
        }
        Mode::Pull => {
            let d = story.details(&id).await.expect("a tombstone stays listed");
            assert_eq!(d["status"], "CLOSED", "{d}");
            assert!(d.get("content").is_none(), "served with content: {d}");
            assert!(!story.all().await.contains(&id));
            d["closingTimestamp"].as_i64().expect("closing ms")
        }
    };
    let status = story.status_shows(1, 1).await;
    assert_eq!(status["postings"]["absent"], 1, "{status}");
    let inspected = story.inspect(&id);
    assert_eq!(inspected["desired"]["reason"], "restricted", "{inspected}");
    story.restricted_gauge(1.0).await;

    // 4. Restriction lifted: the copy is back, still within the scope.
    let mut p = editable(&env.jobag, &id);
    p["processing_restricted"] = json!(false);
    let v4 = env.jobag.upsert(p);
    let back = story
        .converged(&id, "the copy back")
        .await
        .expect("on EURES again");
    assert_no_personal_data(&back, "restriction lifted");
    assert_eq!(
        back, narrowed,
        "the same document as before the restriction"
    );
    match mode {
        Mode::Push => assert_eq!(
            env.eures.history(&id),
            [
                (Method::PUT, v1),
                (Method::PUT, v2),
                (Method::DELETE, v3),
                (Method::PUT, v4)
            ]
        ),
        Mode::Pull => {
            let d = story.details(&id).await.expect("listed");
            assert_eq!(d["status"], "ACTIVE", "{d}");
            assert!(d.get("closingTimestamp").is_none(), "{d}");
            let recreated = d["creationTimestamp"].as_i64().expect("creation ms");
            assert!(recreated >= closed, "ACTIVE again, created anew: {d}");
            assert!(story.all().await.contains(&id));
        }
    }
    let status = story.status_shows(0, 2).await;
    assert_eq!(status["postings"]["absent"], 0, "{status}");
    story.restricted_gauge(0.0).await;

    // The bystander never moved.
    let bystander_doc = story.held(&bystander).await.expect("held");
    assert_eq!(
        Some(content_hash(&bystander_doc)),
        env.expected().get(&bystander).cloned()
    );
    match mode {
        Mode::Push => {
            assert_eq!(env.eures.history(&bystander).len(), 1);
            env.settled(WAIT).await;
        }
        Mode::Pull => assert!(env.eures.requests().is_empty(), "pull mode pushed"),
    }
    let log = story.agent.stop().await;
    for personal in [NAME, EMAIL, PHONE] {
        assert!(!log.contains(personal), "{personal:?} logged");
    }
}
