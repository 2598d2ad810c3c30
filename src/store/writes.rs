//! What each ledger write does inside its transaction, written once for both
//! databases: load the records it touches, let the pure planner
//! ([`crate::domain::ledger`]) compute their next state, write them back
//! together with whatever moves with them (cursor, quarantine, lease, audit
//! row), and ask for waiting workers to be woken when work
//! became due.
//!
//! They run on a [`LedgerTx`] (`ledger_tx.rs`): the statements of one
//! open transaction, which on PostgreSQL lock the records they load.
//!
//! Never here: opening, committing or retrying transactions
//! (`generic.rs`), SQL text, or any decision the planner makes.

use std::collections::{HashMap, HashSet};

use super::ledger_tx::{Leases, LedgerTx, NewAudit, Page};
use super::sql::{CURSOR_KEY, RECONCILE_KEY, REREAD_PREFIX, SOURCE_HEAD_KEY};
use super::types::{
    Claimed, Completion, Ctx, Diff, IngestBatch, IngestStats, Listed, QuarantineItem, Repair,
    Result, Unseen,
};
use crate::domain::ledger::guards::{self, SourceVerdict};
use crate::domain::ledger::{self, DesiredState, Entry, Incoming, Op, Sent};

/// Whether the record has an operation ready now (not backing off).
fn due_now(entry: &Entry, now_ms: i64) -> bool {
    entry.due().is_some() && entry.retry.next_attempt_at_ms <= now_ms
}

/// Writes `entries` (the existing ones by their loaded flag) and wakes the
/// workers when one of them is due now.
async fn write_all<T: LedgerTx>(tx: &mut T, entries: &[(&Entry, bool)], now_ms: i64) -> Result<()> {
    write_leases(tx, entries, now_ms, Leases::Keep).await
}

async fn write_leases<T: LedgerTx>(
    tx: &mut T,
    entries: &[(&Entry, bool)],
    now_ms: i64,
    leases: Leases,
) -> Result<()> {
    let (loaded, new): (Vec<_>, Vec<_>) = entries.iter().partition(|(_, existed)| *existed);
    let loaded: Vec<&Entry> = loaded.into_iter().map(|&(e, _)| e).collect();
    let new: Vec<&Entry> = new.into_iter().map(|&(e, _)| e).collect();
    tx.write(&loaded, &new, leases).await?;
    if entries.iter().any(|(e, _)| due_now(e, now_ms)) {
        tx.wake_workers().await?;
    }
    Ok(())
}

/// Records this transaction loaded, ready for [`write_all`].
fn existing(entries: &[Entry]) -> Vec<(&Entry, bool)> {
    entries.iter().map(|e| (e, true)).collect()
}

fn flagged(entries: &[(Entry, bool)]) -> Vec<(&Entry, bool)> {
    entries.iter().map(|(e, existed)| (e, *existed)).collect()
}

/// The quarantine record of a version [`ledger::implausible_jump`] refuses.
fn implausible_item(current: &Entry, incoming: &Incoming) -> QuarantineItem {
    QuarantineItem {
        posting_id: Some(incoming.id.clone()),
        reason: format!(
            "version: implausible jump from {} to {}; after checking JobAG, `eures-sync resync --posting {} --accept-version` accepts it",
            current.source_version, incoming.version, incoming.id
        ),
        feed_position: "version check".into(),
    }
}

pub(crate) async fn ingest<T: LedgerTx>(
    tx: &mut T,
    batch: &IngestBatch,
    ctx: Ctx,
) -> Result<IngestStats> {
    let mut ids: Vec<&str> = batch.changes.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut entries = tx.load_many(&ids).await?;
    let loaded: HashSet<String> = entries.keys().cloned().collect();
    let mut dirty: Vec<String> = Vec::new();
    let mut stats = IngestStats::default();
    let mut implausible: Vec<QuarantineItem> = Vec::new();
    for incoming in &batch.changes {
        let current = entries.get(&incoming.id);
        let verdict = guards::apply_source(
            current,
            incoming.clone(),
            ctx.now_ms,
            ctx.mode,
            batch.forced,
            batch.accept_version,
        );
        let next = match verdict {
            SourceVerdict::Apply(next) => {
                stats.applied += 1;
                next
            }
            SourceVerdict::Ignore => {
                stats.ignored += 1;
                continue;
            }
            SourceVerdict::Quarantine { removal } => {
                if let Some(cur) = current {
                    implausible.push(implausible_item(cur, incoming));
                }
                let Some(next) = removal else {
                    continue;
                };
                next
            }
        };
        dirty.push(next.id.clone());
        entries.insert(next.id.clone(), next);
    }
    dirty.sort_unstable();
    dirty.dedup();
    let writes: Vec<(&Entry, bool)> = dirty
        .iter()
        .filter_map(|id| entries.get(id).map(|e| (e, loaded.contains(id))))
        .collect();
    write_all(tx, &writes, ctx.now_ms).await?;
    for q in batch.quarantined.iter().chain(&implausible) {
        tx.quarantine(q, ctx.now_ms).await?;
        stats.quarantined += 1;
    }
    // A change the feed carried unusable may have been a withdrawal: its
    // posting is re-read from JobAG, remembered with the page, so neither
    // a failed re-read nor a restart loses it.
    for id in batch
        .quarantined
        .iter()
        .filter_map(|q| q.posting_id.as_deref())
    {
        let key = format!("{}{id}", REREAD_PREFIX);
        tx.set_state(&key, &ctx.now_ms.to_string()).await?;
    }
    if let Some(cursor) = &batch.next_cursor {
        tx.set_state(CURSOR_KEY, cursor).await?;
    }
    if batch.at_source_head {
        tx.set_state(SOURCE_HEAD_KEY, &ctx.now_ms.to_string())
            .await?;
    }
    if batch.reconcile_requested {
        tx.set_state(RECONCILE_KEY, &ctx.now_ms.to_string()).await?;
    }
    Ok(stats)
}

/// One page of the expiry pass. Returns `(expired, rows read)`.
pub(crate) async fn expire_page<T: LedgerTx>(
    tx: &mut T,
    limit: i64,
    ctx: Ctx,
) -> Result<(usize, usize)> {
    let rows = tx
        .load_page(Page::Expired {
            now_ms: ctx.now_ms,
            limit,
        })
        .await?;
    let next: Vec<Entry> = rows
        .iter()
        .filter_map(|e| ledger::expire(e, ctx.now_ms, ctx.mode))
        .collect();
    write_all(tx, &existing(&next), ctx.now_ms).await?;
    Ok((next.len(), rows.len()))
}

/// Leases due operations to `owner`, after taking back the leases that ran
/// out (see [`reap`]) when `reap_first`.
pub(crate) async fn claim<T: LedgerTx>(
    tx: &mut T,
    owner: &str,
    token: i64,
    until_ms: i64,
    limit: i64,
    now_ms: i64,
    reap_first: bool,
) -> Result<Vec<Claimed>> {
    if reap_first {
        reap(tx, REAP_BATCH, Ctx::claiming(now_ms)).await?;
    }
    tx.lease_due(owner, token, until_ms, limit, now_ms).await
}

/// Leases examined per claim.
const REAP_BATCH: i64 = 500;

/// Takes back up to `limit` leases that ran out: their workers died (or
/// restarted) with the request in flight, so the planner marks each attempt
/// abandoned, outcome unknown. Returns how many.
pub(crate) async fn reap<T: LedgerTx>(tx: &mut T, limit: i64, ctx: Ctx) -> Result<usize> {
    let rows = tx.load_abandoned(ctx.now_ms, limit).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let next: Vec<Entry> = rows
        .iter()
        .map(|(entry, _)| ledger::abandon(entry, ctx.now_ms, ctx.mode))
        .collect();
    write_leases(tx, &existing(&next), ctx.now_ms, Leases::End).await?;
    for (entry, holder) in &rows {
        tracing::info!(posting = %entry.id, holder = %holder,
            "a lease ran out with its attempt unfinished: outcome unknown, the operation is due again");
    }
    Ok(rows.len())
}

/// Records attempts' ends, in order (a batch may hold several outcomes of
/// one posting), for the records `owner` still holds the lease of, then
/// releases those leases; the audit rows are written either way.
pub(crate) async fn complete<T: LedgerTx>(
    tx: &mut T,
    owner: &str,
    done: &[Completion<'_>],
    ctx: Ctx,
) -> Result<()> {
    let mut ids: Vec<&str> = done.iter().map(|d| d.claimed.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let leased = tx.load_leased(&ids).await?;
    let mut held: HashMap<String, Entry> = HashMap::with_capacity(ids.len());
    for d in done {
        let claimed = d.claimed;
        let Some((entry, lease)) = leased.get(&claimed.id) else {
            continue;
        };
        let ours = guards::holds_lease(
            lease.as_ref().map(|l| l.owner.as_str()),
            lease.as_ref().and_then(|l| l.token),
            owner,
            claimed.lease_token,
        );
        if !ours {
            // Our lease ran out and the operation was claimed again (by
            // another worker, or by this one): the current claim records
            // what it finds; this outcome only goes to the audit trail.
            tracing::warn!(
                posting = %claimed.id,
                holder = lease.as_ref().map_or("-", |l| l.owner.as_str()),
                "lease lost before the outcome was recorded; the current claim decides"
            );
            continue;
        }
        let current = held.get(&claimed.id).unwrap_or(entry);
        let sent = Sent {
            op: claimed.op,
            version: claimed.version,
            hash: claimed.hash.clone(),
        };
        let next = ledger::apply_outcome(
            current, &sent, d.result, ctx.now_ms, d.limits, d.backoff, ctx.mode,
        );
        held.insert(next.id.clone(), next);
    }
    let mut next: Vec<&Entry> = held.values().collect();
    next.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    let writes: Vec<(&Entry, bool)> = next.iter().map(|e| (*e, true)).collect();
    write_leases(tx, &writes, ctx.now_ms, Leases::End).await?;
    let audit: Vec<NewAudit<'_>> = done
        .iter()
        .map(|d| NewAudit {
            posting_id: &d.claimed.id,
            employer_cvr: d.claimed.employer_cvr.as_deref(),
            op: d.claimed.op,
            version: i64::try_from(d.claimed.version).unwrap_or(i64::MAX),
            content_hash: d.claimed.hash.as_deref(),
            outcome: d.outcome_label,
            detail: d.result.detail(),
            at_ms: ctx.now_ms,
            worker: owner,
        })
        .collect();
    tx.append_audit(&audit).await
}

/// Revives the named dead letters; returns how many.
pub(crate) async fn revive_ids<T: LedgerTx>(tx: &mut T, ids: &[String], ctx: Ctx) -> Result<u64> {
    let mut refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    refs.sort_unstable();
    refs.dedup();
    let entries = tx.load_many(&refs).await?;
    let next: Vec<Entry> = entries
        .values()
        .filter(|e| e.retry.dead)
        .map(|e| ledger::revive(e, ctx.now_ms, ctx.mode))
        .collect();
    write_all(tx, &existing(&next), ctx.now_ms).await?;
    Ok(next.len() as u64)
}

/// Revives the first `limit` dead letters; returns how many (0: none left).
pub(crate) async fn revive_page<T: LedgerTx>(tx: &mut T, limit: i64, ctx: Ctx) -> Result<u64> {
    // Revived rows leave the dead set, so the first page is always fresh.
    let page = tx.load_page(Page::Dead { after: "", limit }).await?;
    let next: Vec<Entry> = page
        .iter()
        .map(|e| ledger::revive(e, ctx.now_ms, ctx.mode))
        .collect();
    write_all(tx, &existing(&next), ctx.now_ms).await?;
    Ok(next.len() as u64)
}

pub(crate) async fn reconcile_source<T: LedgerTx>(
    tx: &mut T,
    page: &[Incoming],
    ctx: Ctx,
    repair: Repair,
) -> Result<Vec<Diff>> {
    let mut ids: Vec<&str> = page.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let entries = tx.load_many(&ids).await?;
    let mut diffs = Vec::new();
    let mut writes = Vec::new();
    let mut handled = HashSet::new();
    for incoming in page {
        if !handled.insert(incoming.id.as_str()) {
            continue;
        }
        let current = entries.get(&incoming.id);
        let (kind, forced) = match current {
            None => ("missing_in_ledger", repair.forces()),
            Some(c) if incoming.version > c.source_version => ("newer_in_source", repair.forces()),
            Some(c) if incoming.version == c.source_version => {
                let want = DesiredState::from(incoming.desired.clone());
                if repair.forces() {
                    ("resync", true)
                } else if want.is_present() && ledger::is_gone(c) {
                    ("back_in_source", true)
                } else if want.is_present() != c.desired.is_present()
                    || want.hash() != c.desired.hash()
                {
                    ("rerendered", true)
                } else {
                    continue;
                }
            }
            Some(_) => continue,
        };
        // The feed's guard, whoever reads the source (SPEC 3.9); reconcile
        // never accepts an implausible version, only an operator does.
        match guards::apply_source(
            current,
            incoming.clone(),
            ctx.now_ms,
            ctx.mode,
            forced,
            false,
        ) {
            SourceVerdict::Apply(next) => {
                diffs.push(Diff {
                    id: incoming.id.clone(),
                    kind,
                    detail: format!(
                        "source v{} {}; ledger v{}",
                        incoming.version,
                        describe(&next.desired),
                        current.map_or(0, |c| c.source_version)
                    ),
                });
                writes.push((next, current.is_some()));
            }
            SourceVerdict::Ignore => {}
            SourceVerdict::Quarantine { removal } => {
                let Some(cur) = current else {
                    continue;
                };
                diffs.push(Diff {
                    id: incoming.id.clone(),
                    kind: "implausible_version",
                    detail: format!(
                        "source v{} jumps implausibly far above ledger v{}; quarantined{}",
                        incoming.version,
                        cur.source_version,
                        if removal.is_some() {
                            ", the copy goes"
                        } else {
                            ""
                        }
                    ),
                });
                if repair.writes() {
                    tx.quarantine(&implausible_item(cur, incoming), ctx.now_ms)
                        .await?;
                }
                if let Some(next) = removal {
                    writes.push((next, true));
                }
            }
        }
    }
    finish_page(tx, &writes, ctx, repair).await?;
    Ok(diffs)
}

/// Judges the records `ids` that reconcile run `run` did not see in the
/// JobAG snapshot (deleted in JobAG) or in the EURES listing (missing
/// there). A record that changed since the run began, or that left the
/// pass's scope meanwhile, is left alone: the run cannot judge it.
pub(crate) async fn reconcile_unseen<T: LedgerTx>(
    tx: &mut T,
    unseen: Unseen,
    ids: &[&str],
    run: i64,
    ctx: Ctx,
    repair: Repair,
) -> Result<Vec<Diff>> {
    let entries = tx.load_many(ids).await?;
    let mut diffs = Vec::new();
    let mut writes = Vec::new();
    for entry in entries.values() {
        if !guards::may_judge_unseen(entry, run) || !unseen.judges(entry) {
            continue;
        }
        let judged = match unseen {
            Unseen::InSnapshot => judge_gone_from_source(entry, ctx),
            Unseen::InListing => judge_missing_on_eures(entry, ctx),
        };
        if let Some((next, diff)) = judged {
            diffs.extend(diff);
            writes.push(next);
        }
    }
    if repair.writes() {
        write_all(tx, &existing(&writes), ctx.now_ms).await?;
    }
    diffs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(diffs)
}

/// A record the snapshot did not show: deleted in JobAG.
fn judge_gone_from_source(entry: &Entry, ctx: Ctx) -> Option<(Entry, Option<Diff>)> {
    let next = ledger::source_gone(entry, ctx.now_ms, ctx.mode)?;
    let diff = Diff {
        id: entry.id.clone(),
        kind: "gone_from_source",
        detail: format!("ledger v{} not in the JobAG snapshot", entry.source_version),
    };
    Some((next, Some(diff)))
}

/// A record believed on EURES that the (complete) listing did not show.
fn judge_missing_on_eures(entry: &Entry, ctx: Ctx) -> Option<(Entry, Option<Diff>)> {
    let next = ledger::observe_remote(entry, None, ctx.now_ms, ctx.mode);
    if next == *entry {
        return None;
    }
    let diff = (next.due().is_some() && next.desired.is_present()).then(|| Diff {
        id: entry.id.clone(),
        kind: "missing_on_eures",
        detail: format!(
            "ledger v{} believed delivered, EURES does not list it",
            entry.source_version
        ),
    });
    Some((next, diff))
}

pub(crate) async fn reconcile_remote<T: LedgerTx>(
    tx: &mut T,
    page: &[Listed],
    ctx: Ctx,
    repair: Repair,
) -> Result<Vec<Diff>> {
    let mut ids: Vec<&str> = page.iter().map(|l| l.reference.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let entries = tx.load_many(&ids).await?;
    let mut diffs = Vec::new();
    let mut writes = Vec::new();
    let mut handled = HashSet::new();
    for item in page {
        if !handled.insert(item.reference.as_str()) {
            continue;
        }
        let hash = item.content_sha256.as_deref().unwrap_or("");
        match entries.get(&item.reference) {
            None => {
                diffs.push(Diff {
                    id: item.reference.clone(),
                    kind: "orphan_on_eures",
                    detail: format!(
                        "EURES holds v{} the ledger does not know",
                        item.source_version
                    ),
                });
                let orphan = ledger::orphan(
                    &item.reference,
                    item.source_version,
                    hash,
                    ctx.now_ms,
                    ctx.mode,
                );
                writes.push((orphan, false));
            }
            Some(entry) => {
                let next = ledger::observe_remote(
                    entry,
                    Some((item.source_version, hash)),
                    ctx.now_ms,
                    ctx.mode,
                );
                if next == *entry {
                    continue;
                }
                if let Some(op) = next
                    .due()
                    .filter(|op| Some(*op) != entry.due() || entry.delivered != next.delivered)
                {
                    diffs.push(Diff {
                        id: item.reference.clone(),
                        kind: if op == Op::Delete {
                            "unwanted_on_eures"
                        } else {
                            "altered_on_eures"
                        },
                        detail: format!(
                            "EURES holds v{}; ledger wants {}",
                            item.source_version,
                            describe(&entry.desired)
                        ),
                    });
                }
                writes.push((next, true));
            }
        }
    }
    finish_page(tx, &writes, ctx, repair).await?;
    Ok(diffs)
}

/// Writes what a page of the snapshot or the listing changed, unless a
/// dry run.
async fn finish_page<T: LedgerTx>(
    tx: &mut T,
    writes: &[(Entry, bool)],
    ctx: Ctx,
    repair: Repair,
) -> Result<()> {
    if repair.writes() {
        write_all(tx, &flagged(writes), ctx.now_ms).await?;
    }
    Ok(())
}

fn describe(d: &DesiredState) -> String {
    match d {
        DesiredState::Present { .. } => "present".into(),
        DesiredState::Absent { reason } => format!("absent ({reason})"),
    }
}
