//! `status` and `inspect`: what the ledger says, for a person or as JSON.

use serde_json::{Value, json};

use crate::config::Config;
use crate::domain::ledger::{Delivered, DesiredState, Entry};
use crate::engine::now_ms;
use crate::printable;

fn iso(ms: Option<i64>) -> Value {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

pub async fn status(config: &Config, json_out: bool) -> anyhow::Result<()> {
    let store = crate::store::open_existing(&config.database.url).await?;
    let s = store.summary(now_ms()).await?;
    let quarantined = store.quarantined(100).await?;
    let doc = json!({
        "postings": {"present": s.present, "pending": s.pending, "absent": s.absent, "quarantined": s.quarantined},
        "backlog": {"create": s.backlog_create, "update": s.backlog_update, "delete": s.backlog_delete},
        "oldest_pending_seconds": s.oldest_pending_ms.map(|ms| ms as f64 / 1000.0).unwrap_or(0.0),
        "last_source_poll": iso(s.last_source_poll_ms),
        "dead_letters": s.dead_letters,
        "absent_reasons": s.absent_reasons.iter().map(|(r, n)| (r.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "quarantined": quarantined.iter().map(|(id, reason)| json!({"id": id, "reason": reason})).collect::<Vec<_>>(),
    });
    if json_out {
        println!("{}", printable::json(&doc.to_string()));
        return Ok(());
    }
    println!(
        "postings   present {}  pending {}  absent {}  quarantined {}",
        s.present, s.pending, s.absent, s.quarantined
    );
    println!(
        "backlog    create {}  update {}  delete {}",
        s.backlog_create, s.backlog_update, s.backlog_delete
    );
    println!(
        "oldest pending  {:.1} s",
        s.oldest_pending_ms.unwrap_or(0) as f64 / 1000.0
    );
    println!(
        "last poll       {}",
        doc["last_source_poll"].as_str().unwrap_or("never")
    );
    println!("dead letters    {}", s.dead_letters);
    if !s.absent_reasons.is_empty() {
        let reasons: Vec<String> = s
            .absent_reasons
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        println!("absent by reason  {}", printable::text(&reasons.join("  ")));
    }
    if !quarantined.is_empty() {
        println!("quarantined:");
        for (id, reason) in &quarantined {
            println!(
                "  {}  {}",
                printable::text(id.as_deref().unwrap_or("(no id)")),
                printable::text(reason)
            );
        }
    }
    Ok(())
}

pub fn entry_json(e: &Entry) -> Value {
    let desired = match &e.desired {
        DesiredState::Present {
            hash,
            publication_end_ms,
            ..
        } => json!({
            "state": "present", "version": e.source_version, "content_sha256": hash,
            "publication_end": iso(Some(*publication_end_ms)),
        }),
        DesiredState::Absent { reason } => {
            json!({"state": "absent", "version": e.source_version, "reason": reason})
        }
    };
    let delivered = match &e.delivered {
        Delivered::Present { version, hash } => {
            json!({"state": "present", "version": version, "content_sha256": hash})
        }
        Delivered::Absent => json!({"state": "absent"}),
        Delivered::Unknown => json!({"state": "unknown"}),
    };
    json!({
        "id": e.id,
        "state": e.state().as_str(),
        "source_version": e.source_version,
        "desired": desired,
        "delivered": delivered,
        "due": e.due().map(|op| op.as_str()),
        "attempts": e.retry.attempts,
        "next_attempt_at": iso(Some(e.retry.next_attempt_at_ms)),
        "last_error": e.retry.last_error,
        "dead_letter": e.retry.dead,
        "exchange": {
            "status": if e.exchange.created_ms.is_none() { Value::Null } else if e.exchange.active { "ACTIVE".into() } else { "CLOSED".into() },
            "creation": iso(e.exchange.created_ms),
            "last_modification": iso(e.exchange.modified_ms),
            "closing": iso(e.exchange.closed_ms),
        },
    })
}

pub async fn inspect(config: &Config, id: &str, json_out: bool) -> anyhow::Result<()> {
    let store = crate::store::open_existing(&config.database.url).await?;
    let Some(entry) = store.get(id).await? else {
        anyhow::bail!("unknown posting id {id}");
    };
    let mut doc = entry_json(&entry);
    let audit = store
        .audit(crate::store::AuditOf::Posting(id), 0, 200)
        .await?;
    doc["audit"] = Value::Array(
        audit
            .iter()
            .map(|r| {
                json!({"at": iso(Some(r.at_ms)), "operation": r.op, "version": r.version,
                             "outcome": r.outcome, "content_sha256": r.content_hash,
                             "worker": r.worker})
            })
            .collect(),
    );
    let shown = if json_out {
        doc.to_string()
    } else {
        serde_json::to_string_pretty(&doc)?
    };
    println!("{}", printable::json(&shown));
    Ok(())
}
