//! The HTTP client of the EURES push endpoint (SPEC 4.2): one `reqwest`
//! client (keep-alive pool sized for `eures.concurrency`, TLS verification
//! always on), one classified [`Outcome`] per call.
//!
//! It never retries a request by itself (the caller persists attempts and
//! schedules them with [`super::schedule`]); the only retries below it are
//! `reqwest`'s transparent replays of requests an HTTP/2 server refused
//! before processing them. It does not bound concurrency either: the caller
//! runs at most `eures.concurrency` calls at once. It never logs the token
//! or a document, only references, versions, statuses and timings.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use super::classify::{Outcome, classify_delete, classify_get, classify_put, parse_retry_after};
use crate::domain::posting::valid_id;
use crate::http_client::{
    SetupError, describe_error, http_setup, json_error_summary, read_bounded,
};

/// Largest response body read for an error message; more is cut off.
pub const MAX_ERROR_BODY: usize = 1024 * 1024;
/// Largest listing page accepted.
pub const MAX_LIST_BODY: usize = 64 * 1024 * 1024;

/// `source` of every vacancy.
const SOURCE: &str = "JobAG";
/// EURES content format of the documents.
const CONTENT_FORMAT_VERSION: &str = "1.3";

/// One vacancy to create or replace, borrowed from the ledger row.
#[derive(Debug, Clone, Copy)]
pub struct VacancyPut<'a> {
    /// The JobAG posting id.
    pub reference: &'a str,
    /// The posting version the content was rendered from.
    pub source_version: u64,
    /// The HR-XML `PositionOpening` document.
    pub content: &'a str,
    /// When the copy became ACTIVE (epoch ms UTC).
    pub creation_timestamp_ms: i64,
    /// When the agent last changed the copy (epoch ms UTC).
    pub last_modification_timestamp_ms: i64,
}

/// The wire form of [`VacancyPut`] (SPEC 4.2), field order as specified.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PutBody<'a> {
    reference: &'a str,
    source: &'static str,
    status: &'static str,
    source_version: u64,
    content_format_version: &'static str,
    content: &'a str,
    creation_timestamp: i64,
    last_modification_timestamp: i64,
}

/// The result of one PUT or DELETE: the classified outcome plus what the
/// caller records (duration histogram, audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub outcome: Outcome,
    /// From just before sending to the end of reading the answer.
    pub elapsed: Duration,
    /// The HTTP status, `None` when no answer came (timeout, connection).
    pub status: Option<u16>,
}

/// One page of what the portal holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Items whose reference is a valid posting id (the only kind the agent
    /// ever sends).
    pub items: Vec<ListedVacancy>,
    /// References that are no posting id, shortened and escaped for a log
    /// or a report: left out of `items`, since no copy of ours can have one
    /// and a URL made of one could address something else.
    pub invalid: Vec<String>,
    /// `None` on the last page (also when the portal sends `""`).
    pub next_page_token: Option<String>,
}

/// One vacancy the portal holds, as its listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedVacancy {
    pub reference: String,
    pub source_version: u64,
    /// Lower-case hex SHA-256 of the content string; `None` when the portal
    /// does not say (the caller then treats the content as unknown).
    #[serde(default)]
    pub content_sha256: Option<String>,
}

/// How much of an invalid reference a report shows.
const MAX_SHOWN_REFERENCE: usize = 64;

#[derive(Debug, Deserialize)]
struct ListBody {
    items: Vec<ListedVacancy>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// The push endpoint client. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct EuresClient {
    http: reqwest::Client,
    /// Root given in `eures.base_url`; API paths are appended to it.
    base: Url,
    /// `Bearer <token>`, marked sensitive so `Debug` of a request hides it.
    auth: Option<HeaderValue>,
}

impl fmt::Debug for EuresClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EuresClient")
            .field("base", &self.base.as_str())
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl EuresClient {
    /// Builds the client. `timeout` bounds each whole call; `concurrency`
    /// sizes the idle connection pool; `extra_ca` is a PEM bundle of roots
    /// trusted besides the system ones.
    pub fn new(
        base_url: &str,
        token: Option<SecretString>,
        timeout: Duration,
        concurrency: usize,
        extra_ca: Option<&Path>,
    ) -> Result<Self, SetupError> {
        let (base, http, auth) = http_setup(
            "eures",
            base_url,
            token,
            timeout,
            extra_ca,
            reqwest::Client::builder().pool_max_idle_per_host(concurrency.max(1)),
        )?;
        Ok(Self { http, base, auth })
    }

    /// The root this client talks to.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `PUT {base}/api/v1/job-vacancies/{reference}`: creates or replaces
    /// the copy.
    pub async fn put(&self, v: &VacancyPut<'_>) -> Attempt {
        let started = Instant::now();
        let Some(url) = self.vacancy_url(v.reference) else {
            return Attempt {
                outcome: Outcome::Rejected {
                    errors: "reference: cannot be a URL path segment".to_owned(),
                },
                elapsed: started.elapsed(),
                status: None,
            };
        };
        let body = PutBody {
            reference: v.reference,
            source: SOURCE,
            status: "ACTIVE",
            source_version: v.source_version,
            content_format_version: CONTENT_FORMAT_VERSION,
            content: v.content,
            creation_timestamp: v.creation_timestamp_ms,
            last_modification_timestamp: v.last_modification_timestamp_ms,
        };
        let request = self.authorized(self.http.put(url)).json(&body);
        let attempt = self.finish(request, classify_put, started).await;
        tracing::debug!(
            reference = v.reference,
            version = v.source_version,
            status = attempt.status,
            outcome = attempt.outcome.label(),
            elapsed_ms = attempt.elapsed.as_millis() as u64,
            "eures put"
        );
        attempt
    }

    /// `DELETE {base}/api/v1/job-vacancies/{reference}` with
    /// `X-Source-Version`: removes the copy. Never [`Outcome::Rejected`].
    pub async fn delete(&self, reference: &str, source_version: u64) -> Attempt {
        let started = Instant::now();
        let Some(url) = self.vacancy_url(reference) else {
            // Such a reference never got a copy through this client; keep it
            // transient (deletions never give up) and visible.
            return Attempt {
                outcome: Outcome::transient("reference cannot be a URL path segment"),
                elapsed: started.elapsed(),
                status: None,
            };
        };
        let request = self
            .authorized(self.http.delete(url))
            .header("X-Source-Version", source_version);
        let attempt = self.finish(request, classify_delete, started).await;
        tracing::debug!(
            reference,
            version = source_version,
            status = attempt.status,
            outcome = attempt.outcome.label(),
            elapsed_ms = attempt.elapsed.as_millis() as u64,
            "eures delete"
        );
        attempt
    }

    /// `GET {base}/api/v1/job-vacancies?page_token=..&limit=..`: one page of
    /// what the portal holds. An error is classified like the other calls
    /// ([`Outcome::Auth`], [`Outcome::Throttled`] or [`Outcome::Transient`],
    /// the latter also for a page that does not parse: one unreadable item
    /// fails the page, so reconcile never decides on a partial listing).
    pub async fn list_page(
        &self,
        page_token: Option<&str>,
        limit: u32,
    ) -> Result<ListPage, Outcome> {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend(["api", "v1", "job-vacancies"]);
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(t) = page_token.filter(|t| !t.is_empty()) {
                q.append_pair("page_token", t);
            }
            q.append_pair("limit", &limit.to_string());
        }
        let response = match self.authorized(self.http.get(url)).send().await {
            Ok(r) => r,
            Err(e) => return Err(Outcome::transient(describe_error(&e))),
        };
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let retry_after = retry_after_of(&response);
            let (body, _) = read_bounded(response, MAX_ERROR_BODY).await;
            let outcome = classify_get(status, retry_after, &String::from_utf8_lossy(&body));
            tracing::debug!(status, outcome = outcome.label(), "eures list failed");
            return Err(outcome);
        }
        let (body, err) = read_bounded(response, MAX_LIST_BODY).await;
        if let Some(why) = err {
            return Err(Outcome::transient(format!("listing body: {why}")));
        }
        let page: ListBody = serde_json::from_slice(&body)
            .map_err(|e| Outcome::transient(format!("bad listing: {}", json_error_summary(&e))))?;
        let (items, invalid): (Vec<_>, Vec<_>) =
            page.items.into_iter().partition(|i| valid_id(&i.reference));
        Ok(ListPage {
            items,
            invalid: invalid
                .iter()
                .map(|i| crate::printable::short(&i.reference, MAX_SHOWN_REFERENCE))
                .collect(),
            next_page_token: page.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// `GET {base}/api/v1/job-vacancies/{reference}`: the copy the portal
    /// holds of one reference, `None` when it holds none (`404`, `410`).
    /// Any other failure is classified like the listing's.
    pub async fn get_one(&self, reference: &str) -> Result<Option<ListedVacancy>, Outcome> {
        // No URL can carry such a reference, so no copy was ever made.
        let Some(url) = self.vacancy_url(reference) else {
            return Ok(None);
        };
        let response = match self.authorized(self.http.get(url)).send().await {
            Ok(r) => r,
            Err(e) => return Err(Outcome::transient(describe_error(&e))),
        };
        let status = response.status().as_u16();
        let retry_after = retry_after_of(&response);
        let (body, err) = read_bounded(response, MAX_ERROR_BODY).await;
        if matches!(status, 404 | 410) {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(classify_get(
                status,
                retry_after,
                &String::from_utf8_lossy(&body),
            ));
        }
        if let Some(why) = err {
            return Err(Outcome::transient(format!("copy body: {why}")));
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| Outcome::transient(format!("bad copy: {}", json_error_summary(&e))))
    }

    /// `{base}/api/v1/job-vacancies/{reference}`, the reference one
    /// percent-encoded path segment. `None` for `""`, `"."` and `".."`, which
    /// no URL can carry as a segment.
    fn vacancy_url(&self, reference: &str) -> Option<Url> {
        if matches!(reference, "" | "." | "..") {
            return None;
        }
        let mut url = self.base.clone();
        url.path_segments_mut().ok()?.pop_if_empty().extend([
            "api",
            "v1",
            "job-vacancies",
            reference,
        ]);
        Some(url)
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(auth) => request.header(AUTHORIZATION, auth.clone()),
            None => request,
        }
    }

    /// Sends, reads the (bounded) answer and classifies it.
    async fn finish(
        &self,
        request: reqwest::RequestBuilder,
        classify: fn(u16, Option<Duration>, &str) -> Outcome,
        started: Instant,
    ) -> Attempt {
        match request.send().await {
            Err(e) => Attempt {
                outcome: Outcome::transient(describe_error(&e)),
                elapsed: started.elapsed(),
                status: None,
            },
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = retry_after_of(&response);
                // Read the body even on success so the connection goes back
                // to the pool; a failure while reading does not change what
                // the status already said.
                let (body, _) = read_bounded(response, MAX_ERROR_BODY).await;
                let outcome = classify(status, retry_after, &String::from_utf8_lossy(&body));
                Attempt {
                    outcome,
                    elapsed: started.elapsed(),
                    status: Some(status),
                }
            }
        }
    }
}

fn retry_after_of(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PLAIN_HTTP_REFUSED;
    use crate::http_client::test_server::{Reply, reply, serve};

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn client(base: &str, token: Option<&str>) -> EuresClient {
        EuresClient::new(base, token.map(SecretString::from), TIMEOUT, 4, None).unwrap()
    }

    fn vacancy<'a>(reference: &'a str, content: &'a str) -> VacancyPut<'a> {
        VacancyPut {
            reference,
            source_version: 7,
            content,
            creation_timestamp_ms: 1_763_633_700_000,
            last_modification_timestamp_ms: 1_763_633_800_000,
        }
    }

    #[tokio::test]
    async fn put_sends_the_specified_request() {
        let (base, mut rx) = serve(vec![reply(201, &[], "")]).await;
        let c = client(&base, Some("tok-123"));
        let content = "<?xml version=\"1.0\"?><PositionOpening>æ</PositionOpening>";
        let a = c.put(&vacancy("a3f1-0001", content)).await;
        assert_eq!(a.outcome, Outcome::Done);
        assert_eq!(a.status, Some(201));
        let req = rx.recv().await.unwrap();
        assert_eq!(req.method, "PUT");
        assert_eq!(req.target, "/api/v1/job-vacancies/a3f1-0001");
        assert_eq!(req.header("authorization"), Some("Bearer tok-123"));
        assert_eq!(req.header("content-type"), Some("application/json"));
        let body = String::from_utf8(req.body).unwrap();
        assert_eq!(
            body,
            format!(
                "{{\"reference\":\"a3f1-0001\",\"source\":\"JobAG\",\"status\":\"ACTIVE\",\
                 \"sourceVersion\":7,\"contentFormatVersion\":\"1.3\",\"content\":{},\
                 \"creationTimestamp\":1763633700000,\"lastModificationTimestamp\":1763633800000}}",
                serde_json::to_string(content).unwrap()
            )
        );
    }

    #[tokio::test]
    async fn put_without_token_sends_no_authorization() {
        let (base, mut rx) = serve(vec![reply(200, &[], "{}")]).await;
        let a = client(&base, None).put(&vacancy("r", "<x/>")).await;
        assert_eq!(a.outcome, Outcome::Done);
        assert_eq!(rx.recv().await.unwrap().header("authorization"), None);
    }

    #[tokio::test]
    async fn reference_is_one_encoded_path_segment_under_a_base_path() {
        let (base, mut rx) = serve(vec![reply(204, &[], ""), reply(204, &[], "")]).await;
        let c = client(&format!("{base}/gateway/"), None);
        c.put(&vacancy("a/b?c#d e%", "<x/>")).await;
        assert_eq!(
            rx.recv().await.unwrap().target,
            "/gateway/api/v1/job-vacancies/a%2Fb%3Fc%23d%20e%25"
        );
        c.delete("ø..", 3).await;
        assert_eq!(
            rx.recv().await.unwrap().target,
            "/gateway/api/v1/job-vacancies/%C3%B8.."
        );
    }

    #[tokio::test]
    async fn dot_references_never_reach_the_collection() {
        let c = client("http://127.0.0.1:9", None);
        for r in ["", ".", ".."] {
            assert_eq!(c.put(&vacancy(r, "<x/>")).await.outcome.label(), "rejected");
            assert_eq!(c.delete(r, 1).await.outcome.label(), "transient");
        }
    }

    #[tokio::test]
    async fn put_outcomes_per_status() {
        let (base, _rx) = serve(vec![
            reply(409, &[], "{}"),
            reply(
                422,
                &[("Content-Type", "application/json")],
                r#"{"errors":[{"field":"content","message":"missing ApplicationCloseDate"}]}"#,
            ),
            reply(429, &[("Retry-After", "17")], ""),
            reply(401, &[], ""),
            reply(500, &[], "boom"),
            reply(429, &[], ""),
        ])
        .await;
        let c = client(&base, Some("t"));
        let v = vacancy("r1", "<x/>");
        assert_eq!(c.put(&v).await.outcome, Outcome::Superseded);
        assert_eq!(
            c.put(&v).await.outcome,
            Outcome::Rejected {
                errors: "HTTP 422: fields content".to_owned()
            }
        );
        assert_eq!(
            c.put(&v).await.outcome,
            Outcome::Throttled {
                retry_after: Some(Duration::from_secs(17))
            }
        );
        assert_eq!(c.put(&v).await.outcome, Outcome::Auth);
        assert_eq!(c.put(&v).await.outcome, Outcome::transient("HTTP 500"));
        assert_eq!(
            c.put(&v).await.outcome,
            Outcome::Throttled { retry_after: None }
        );
    }

    #[tokio::test]
    async fn closed_connection_is_transient() {
        let (base, _rx) = serve(vec![Reply::Close]).await;
        let a = client(&base, None).put(&vacancy("r", "<x/>")).await;
        assert_eq!(a.outcome.label(), "transient", "{a:?}");
        assert_eq!(a.status, None);
    }

    #[tokio::test]
    async fn refused_connection_is_transient() {
        // Bind then drop a listener so the port is (very likely) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let a = client(&format!("http://127.0.0.1:{port}"), None)
            .delete("r", 1)
            .await;
        match a.outcome {
            Outcome::Transient { why } => assert!(why.starts_with("connect error"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn timeout_is_transient_and_bounded() {
        let (base, _rx) = serve(vec![Reply::Hang(Duration::from_secs(10))]).await;
        let c = EuresClient::new(&base, None, Duration::from_millis(200), 1, None).unwrap();
        let a = c.put(&vacancy("r", "<x/>")).await;
        assert_eq!(a.outcome, Outcome::transient("timeout"));
        assert!(a.elapsed >= Duration::from_millis(200));
        assert!(a.elapsed < Duration::from_secs(5), "{:?}", a.elapsed);
    }

    #[tokio::test]
    async fn delete_sends_the_version_header_and_treats_404_as_done() {
        let (base, mut rx) = serve(vec![
            reply(204, &[], ""),
            reply(404, &[], ""),
            reply(409, &[], ""),
            reply(422, &[], "{\"errors\":[]}"),
            reply(403, &[], ""),
        ])
        .await;
        let c = client(&base, Some("t"));
        assert_eq!(c.delete("r9", 9).await.outcome, Outcome::Done);
        let req = rx.recv().await.unwrap();
        assert_eq!(req.method, "DELETE");
        assert_eq!(req.target, "/api/v1/job-vacancies/r9");
        assert_eq!(req.header("x-source-version"), Some("9"));
        assert_eq!(req.header("authorization"), Some("Bearer t"));
        assert_eq!(c.delete("r9", 9).await.outcome, Outcome::Done);
        assert_eq!(c.delete("r9", 9).await.outcome, Outcome::Superseded);
        assert_eq!(
            c.delete("r9", 9).await.outcome,
            Outcome::transient("HTTP 422")
        );
        assert_eq!(c.delete("r9", 9).await.outcome, Outcome::Auth);
    }

    #[tokio::test]
    async fn huge_error_body_is_cut_not_buffered() {
        let big = "x".repeat(3 * MAX_ERROR_BODY);
        let (base, _rx) = serve(vec![reply(400, &[], &big)]).await;
        let a = client(&base, None).put(&vacancy("r", "<x/>")).await;
        match a.outcome {
            Outcome::Rejected { errors } => assert!(errors.chars().count() <= 500),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn list_page_parses_items_and_paging() {
        let (base, mut rx) = serve(vec![
            reply(
                200,
                &[],
                r#"{"items":[{"reference":"a","sourceVersion":7,"contentSha256":"ab12"},
                           {"reference":"b","sourceVersion":1,"extra":true}],
                   "next_page_token":"p2"}"#,
            ),
            reply(200, &[], r#"{"items":[],"next_page_token":null}"#),
            reply(200, &[], r#"{"items":[{"reference":"a"}]}"#),
            reply(401, &[], ""),
            reply(503, &[], ""),
        ])
        .await;
        let c = client(&base, Some("t"));
        let page = c.list_page(None, 100).await.unwrap();
        assert_eq!(
            page.items,
            vec![
                ListedVacancy {
                    reference: "a".into(),
                    source_version: 7,
                    content_sha256: Some("ab12".into())
                },
                ListedVacancy {
                    reference: "b".into(),
                    source_version: 1,
                    content_sha256: None
                },
            ]
        );
        assert_eq!(page.next_page_token.as_deref(), Some("p2"));
        let req = rx.recv().await.unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.target, "/api/v1/job-vacancies?limit=100");
        assert_eq!(req.header("authorization"), Some("Bearer t"));

        let page = c.list_page(Some("p 2&x"), 5).await.unwrap();
        assert!(page.items.is_empty());
        assert_eq!(page.next_page_token, None);
        assert_eq!(
            rx.recv().await.unwrap().target,
            "/api/v1/job-vacancies?page_token=p+2%26x&limit=5"
        );

        let e = c.list_page(None, 5).await.unwrap_err();
        assert!(
            matches!(e, Outcome::Transient { ref why } if why.starts_with("bad listing")),
            "{e:?}"
        );
        assert_eq!(c.list_page(None, 5).await.unwrap_err(), Outcome::Auth);
        assert_eq!(
            c.list_page(None, 5).await.unwrap_err(),
            Outcome::transient("HTTP 503")
        );
    }

    #[test]
    fn setup_errors_are_one_line_and_name_the_cause() {
        for bad in [
            "",
            "nope",
            "ftp://x",
            "mailto:a@b",
            "http://x",
            "http://10.1.2.3",
        ] {
            let e = EuresClient::new(bad, None, TIMEOUT, 1, None).unwrap_err();
            assert!(e.to_string().starts_with("eures.base_url: "), "{e}");
        }
        let e = EuresClient::new("http://eures.example", None, TIMEOUT, 1, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("eures.base_url: {PLAIN_HTTP_REFUSED}")
        );
        EuresClient::new("https://eures.example", None, TIMEOUT, 1, None).unwrap();
        let e = EuresClient::new(
            "http://localhost",
            Some(SecretString::from("bad\ntoken")),
            TIMEOUT,
            1,
            None,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("bad"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let e = EuresClient::new("http://localhost", None, TIMEOUT, 1, Some(&missing)).unwrap_err();
        assert!(e.to_string().starts_with("tls.extra_ca_file: "), "{e}");
        std::fs::write(&missing, "not a cert").unwrap();
        let e = EuresClient::new("http://localhost", None, TIMEOUT, 1, Some(&missing)).unwrap_err();
        assert!(e.to_string().contains("ca.pem"), "{e}");
    }

    #[test]
    fn json_errors_never_quote_values() {
        let summary =
            |text: &str| json_error_summary(&serde_json::from_str::<ListBody>(text).unwrap_err());
        let s = summary(r#"{"items": "Jane Doe, jd@acme.dk"}"#);
        assert_eq!(s, "unexpected shape at line 1 column 32");
        let s = summary(r#"{"items": [{"reference": "a"}]}"#);
        assert!(s.starts_with("missing field `sourceVersion`"), "{s}");
        assert_eq!(summary(r#"{"items": ["#), "truncated at line 1 column 11");
        assert!(summary("<html>").starts_with("syntax error"));
    }

    #[test]
    fn debug_hides_the_token() {
        let c = EuresClient::new(
            "http://localhost",
            Some(SecretString::from("s3cr3t")),
            TIMEOUT,
            1,
            None,
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        assert!(dbg.contains("redacted"), "{dbg}");
    }
}
