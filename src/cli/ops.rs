//! Operator commands that change or report through the database while a
//! worker may be running: resync, reconcile, dead-letters, export, purge.
//! They write due operations into the ledger; the running worker delivers
//! them (it looks at the ledger at least every poll interval).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::config::Config;
use crate::engine::{Worker, now_ms};
use crate::printable;
use crate::store::{AuditOf, AuditRow, PurgeStats, Repair, Store};

/// The ledger and a worker over it; a dry run opens an existing ledger
/// only, never creating or migrating one.
async fn open(config: &Config, dry_run: bool) -> anyhow::Result<(Arc<dyn Store>, Worker)> {
    let store = if dry_run {
        crate::store::open_existing(&config.database.url).await?
    } else {
        let store = crate::store::connect(&config.database.url).await?;
        store.migrate().await.context("applying migrations")?;
        store
    };
    let worker = Worker::from_config(config, store.clone())?;
    Ok((store, worker))
}

/// A spinner on a terminal, nothing otherwise (logs and `--json` stay clean).
fn progress(what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Which postings `resync` re-reads.
#[derive(Debug, Clone)]
pub enum ResyncTarget {
    Postings {
        ids: Vec<String>,
        /// Accept an implausible version jump (see `ledger::implausible_jump`).
        accept_version: bool,
    },
    Employer(String),
    All,
}

pub async fn resync(config: &Config, target: ResyncTarget, dry_run: bool) -> anyhow::Result<()> {
    let (store, worker) = open(config, dry_run).await?;
    match target {
        ResyncTarget::Postings {
            ids,
            accept_version,
        } => {
            for id in &ids {
                resync_one(&store, &worker, id, dry_run, accept_version).await?;
            }
        }
        ResyncTarget::Employer(cvr) => {
            let bar = progress(&format!("resync of employer {cvr}"));
            let mut after: Option<String> = None;
            let mut n = 0u64;
            loop {
                let ids = store.ids_page(Some(&cvr), after.as_deref(), 500).await?;
                let Some(last) = ids.last().cloned() else {
                    break;
                };
                for id in &ids {
                    resync_one(&store, &worker, id, dry_run, false).await?;
                    n += 1;
                    bar.set_message(format!("resync of employer {cvr}: {n} postings"));
                }
                after = Some(last);
            }
            bar.finish_and_clear();
            if n == 0 {
                anyhow::bail!("no posting of employer {cvr} is known");
            }
            println!(
                "{n} postings of employer {cvr} {}",
                if dry_run {
                    "would be re-delivered"
                } else {
                    "queued for re-delivery"
                }
            );
        }
        ResyncTarget::All => {
            let bar = progress("resync of all postings");
            // The dry run finds exactly what the real one does: the same
            // passes, the same verdicts, nothing written.
            let repair = if dry_run {
                Repair::ForceDryRun
            } else {
                Repair::Force
            };
            let report = worker
                .reconcile_source_only(repair, &|phase, n| {
                    bar.set_message(format!("{}: {n}", phase.label()))
                })
                .await?;
            bar.finish_and_clear();
            println!(
                "{} postings read from JobAG; {} {}",
                report.source_postings,
                report.differences.values().sum::<u64>(),
                if dry_run {
                    "would be re-delivered"
                } else {
                    "queued for re-delivery"
                }
            );
            for (kind, n) in &report.differences {
                println!("  {kind}: {n}");
            }
        }
    }
    Ok(())
}

async fn resync_one(
    store: &Arc<dyn Store>,
    worker: &Worker,
    id: &str,
    dry_run: bool,
    accept_version: bool,
) -> anyhow::Result<()> {
    let known = store.get(id).await?;
    let in_source = worker.jobag.posting_with_retry(id).await?;
    if known.is_none() && in_source.is_none() {
        anyhow::bail!("unknown posting id {id}");
    }
    if dry_run {
        println!(
            "{id}: would be re-read (JobAG {}, ledger {})",
            in_source
                .as_ref()
                .and_then(|p| p.get("version"))
                .map_or("has no such posting".into(), |v| format!("v{v}")),
            known.map_or("does not know it".into(), |e| format!(
                "v{} {}",
                e.source_version,
                e.state().as_str()
            ))
        );
        return Ok(());
    }
    let stats = if accept_version {
        worker.reread_accepting_version(id).await?
    } else {
        worker.reread(id, true).await?
    };
    if stats.quarantined > 0 {
        anyhow::bail!(
            "{id}: JobAG's version jumps more than {} above the ledger's; quarantined. \
             Check the posting in JobAG, then run `eures-sync resync --posting {id} --accept-version`",
            crate::domain::ledger::IMPLAUSIBLE_JUMP
        );
    }
    let after = store.get(id).await?;
    println!(
        "{id}: queued ({})",
        after.map_or("nothing to deliver".into(), |e| match e.due() {
            Some(op) => format!("{} v{}", op.as_str(), e.source_version),
            None => format!("nothing due, {}", e.state().as_str()),
        })
    );
    Ok(())
}

pub async fn reconcile(config: &Config, dry_run: bool) -> anyhow::Result<()> {
    let (_store, worker) = open(config, dry_run).await?;
    let bar = progress("reconcile");
    let repair = if dry_run {
        Repair::DryRun
    } else {
        Repair::Apply
    };
    let mut lines = Vec::new();
    let report = worker
        .reconcile(
            repair,
            &mut |d| {
                let line = format!(
                    "{:<20} {}  {}",
                    d.kind,
                    printable::text(&d.id),
                    printable::text(&d.detail)
                );
                lines.push(line);
            },
            &|phase, n| bar.set_message(format!("{}: {n}", phase.label())),
        )
        .await?;
    bar.finish_and_clear();
    for line in &lines {
        println!("{line}");
    }
    let total: u64 = report.differences.values().sum();
    println!(
        "{total} differences ({} JobAG postings, {} EURES copies, {} ms){}",
        report.source_postings,
        report.eures_items,
        report.elapsed_ms,
        if dry_run {
            "; dry run: nothing repaired"
        } else if total > 0 {
            "; repairs queued for the worker"
        } else {
            ""
        }
    );
    for (kind, n) in &report.differences {
        println!("  {kind}: {n}");
    }
    if report.skipped > 0 {
        println!(
            "{} items skipped (could not be used; the run went on without them)",
            report.skipped
        );
        for item in &report.skipped_items {
            println!(
                "  {}  {}  {}",
                item.from,
                printable::text(item.id.as_deref().unwrap_or("(no id)")),
                printable::text(&item.reason)
            );
        }
        let unnamed = report.skipped - report.skipped_items.len() as u64;
        if unnamed > 0 {
            println!("  … and {unnamed} more");
        }
    }
    if !report.listing_complete && config.eures.mode == crate::domain::ledger::Mode::Push {
        anyhow::bail!(
            "the EURES listing could not be read to the end; EURES-side differences were not checked"
        );
    }
    Ok(())
}

pub async fn dead_letters_list(config: &Config, json_out: bool) -> anyhow::Result<()> {
    let store = crate::store::open_existing(&config.database.url).await?;
    let mut after: Option<String> = None;
    let mut rows = Vec::new();
    loop {
        let page = store.dead_letters(after.as_deref(), 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        rows.extend(page.into_iter().map(|e| {
            json!({
                "id": e.id, "version": e.source_version, "attempts": e.retry.attempts,
                "operation": e.gap().map(|op| op.as_str()), "last_error": e.retry.last_error,
            })
        }));
    }
    if json_out {
        let doc = json!({ "dead_letters": rows }).to_string();
        println!("{}", printable::json(&doc));
    } else if rows.is_empty() {
        println!("no dead letters");
    } else {
        for r in &rows {
            println!(
                "{}  v{}  {}  attempts {}  {}",
                printable::text(r["id"].as_str().unwrap_or_default()),
                r["version"],
                r["operation"].as_str().unwrap_or("-"),
                r["attempts"],
                printable::text(r["last_error"].as_str().unwrap_or(""))
            );
        }
    }
    Ok(())
}

pub async fn dead_letters_retry(config: &Config, ids: Option<Vec<String>>) -> anyhow::Result<()> {
    let store = crate::store::connect(&config.database.url).await?;
    store.migrate().await?;
    if let Some(ids) = &ids {
        for id in ids {
            match store.get(id).await? {
                None => anyhow::bail!("unknown posting id {id}"),
                Some(e) if !e.retry.dead => anyhow::bail!("posting {id} is not a dead letter"),
                Some(_) => {}
            }
        }
    }
    let n = store
        .revive(
            ids.as_deref(),
            crate::store::Ctx {
                now_ms: now_ms(),
                mode: config.eures.mode,
            },
        )
        .await?;
    println!("{n} dead letters queued for another attempt");
    Ok(())
}

fn audit_json(rows: &[AuditRow]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            json!({
                "posting_id": r.posting_id, "employer_cvr": r.employer_cvr, "operation": r.op,
                "version": r.version, "content_sha256": r.content_hash, "outcome": r.outcome,
                "at": iso(r.at_ms),
            })
        })
        .collect()
}

async fn all_audit(store: &Arc<dyn Store>, of: AuditOf<'_>) -> anyhow::Result<Vec<AuditRow>> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit(of, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        out.extend(page);
    }
    Ok(out)
}

pub async fn export(
    config: &Config,
    posting: Option<String>,
    employer: Option<String>,
) -> anyhow::Result<()> {
    let store = crate::store::open_existing(&config.database.url).await?;
    let doc = match (posting, employer) {
        (Some(id), _) => {
            let entry = store.get(&id).await?;
            let rows = all_audit(&store, AuditOf::Posting(&id)).await?;
            if entry.is_none() && rows.is_empty() {
                anyhow::bail!("unknown posting id {id}");
            }
            let delivered = rows.iter().filter(|r| r.outcome == "ok").count();
            json!({
                "posting_id": id,
                "employer_cvr": entry.as_ref().and_then(|e| e.employer_cvr.clone()),
                "on_eures_now": entry.as_ref().is_some_and(|e| e.exchange.active),
                "successful_transfers": delivered,
                "transfers": audit_json(&rows),
            })
        }
        (None, Some(cvr)) => {
            let rows = all_audit(&store, AuditOf::Employer(&cvr)).await?;
            json!({ "employer_cvr": cvr, "transfers": audit_json(&rows) })
        }
        (None, None) => anyhow::bail!("export needs --posting ID or --employer CVR"),
    };
    println!("{}", printable::json(&serde_json::to_string_pretty(&doc)?));
    Ok(())
}

/// Tombstones are kept at least this long, whatever the retention: a
/// tombstone holds the highest version seen of a deleted posting, and
/// without it a change the feed replays (a re-read from the beginning
/// after `410 Gone`) would bring an old version back onto EURES. The feed
/// is assumed to replay nothing older.
pub const TOMBSTONE_MIN_DAYS: u32 = 90;

const DAY_MS: i64 = 86_400_000;

pub async fn purge(
    config: &Config,
    older_than_days: Option<u32>,
    dry_run: bool,
    yes: bool,
) -> anyhow::Result<()> {
    let days = older_than_days.unwrap_or(config.retention.audit_days);
    anyhow::ensure!(
        days >= crate::config::MIN_AUDIT_DAYS,
        "retention.audit_days must be at least {} day to purge",
        crate::config::MIN_AUDIT_DAYS
    );
    if !dry_run && !yes {
        // Refused before anything is opened when nobody can be asked.
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            super::confirm(
                "delete audit rows, tombstones and quarantine records",
                "purge",
                false,
            )?;
        }
    }
    let store = if dry_run {
        crate::store::open_existing(&config.database.url).await?
    } else {
        let store = crate::store::connect(&config.database.url).await?;
        store.migrate().await?;
        store
    };
    let now = now_ms();
    let cutoff = now - i64::from(days) * DAY_MS;
    let tombstone_cutoff = cutoff.min(now - i64::from(TOMBSTONE_MIN_DAYS) * DAY_MS);
    let describe = |stats: PurgeStats| {
        format!(
            "{} audit rows and {} quarantine records older than {days} days ({}), \
             {} tombstones older than {} days",
            stats.audit_rows,
            stats.quarantine_rows,
            iso(cutoff),
            stats.tombstones,
            days.max(TOMBSTONE_MIN_DAYS)
        )
    };
    if dry_run || !yes {
        let counts = store.purge_counts(cutoff, tombstone_cutoff).await?;
        if dry_run {
            println!("would purge {}; dry run: nothing deleted", describe(counts));
            return Ok(());
        }
        super::confirm(&format!("delete {}", describe(counts)), "purge", false)?;
    }
    let bar = progress(&format!("purging records older than {days} days"));
    let stats = store.purge(cutoff, tombstone_cutoff).await?;
    bar.finish_and_clear();
    println!("purged {}", describe(stats));
    Ok(())
}

/// `migrate`: applies what is pending and says what that was;
/// `migrate --status`: lists applied (with when) and pending migrations,
/// applying nothing (and creating no ledger).
pub async fn migrate(config: &Config, status: bool) -> anyhow::Result<()> {
    let url = &config.database.url;
    if status {
        let store = crate::store::open_unchecked(url).await?;
        let applied = store.applied_migrations().await?;
        let pending = store.pending_migrations().await?;
        println!("ledger {}", crate::store::display_url(url));
        println!("trust roots: {}", crate::store::trust_roots(url)?);
        for m in &applied {
            println!(
                "applied  {}  {}  {}",
                m.version,
                m.installed_on.as_deref().unwrap_or("(time unknown)"),
                m.description
            );
        }
        for (version, description) in &pending {
            println!("pending  {version}  {description}");
        }
        println!(
            "{} applied, {} pending{}",
            applied.len(),
            pending.len(),
            if pending.is_empty() {
                ""
            } else {
                "; run `eures-sync migrate` (stop the workers first)"
            }
        );
        return Ok(());
    }
    let store = crate::store::connect(url).await?;
    let before = store.pending_migrations().await?;
    store.migrate().await?;
    let after = store.pending_migrations().await?;
    let applied: Vec<_> = before.iter().filter(|m| !after.contains(*m)).collect();
    if applied.is_empty() {
        println!("nothing to apply: the ledger is up to date");
    } else {
        for (version, description) in &applied {
            println!("applied  {version}  {description}");
        }
        println!("{} migrations applied", applied.len());
    }
    Ok(())
}
