//! One posting's record: the facts it keeps (what EURES should hold, what
//! EURES acknowledged, the retry and exchange state, what a lost answer may
//! still do) and what follows from them alone (the operation due, the
//! state label). The transitions that change a record are the planner's,
//! in the parent module.

use crate::eligibility::Desired;

/// The EURES operation that closes the gap between desired and delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Create,
    Update,
    Delete,
    /// `GET` of the reference: a deletion followed a request whose answer
    /// was lost, which EURES may still apply (SPEC 3.8). Finding the copy
    /// makes the deletion due again.
    Verify,
}

impl Op {
    /// Metric and audit label.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Verify => "verify",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        match s {
            "create" => Some(Op::Create),
            "update" => Some(Op::Update),
            "delete" => Some(Op::Delete),
            "verify" => Some(Op::Verify),
            _ => None,
        }
    }

    /// Deletions go first (SPEC 3.4): lower rank is claimed first.
    pub fn rank(self) -> i64 {
        match self {
            Op::Delete | Op::Verify => 0,
            Op::Create | Op::Update => 1,
        }
    }
}

/// How the copy reaches EURES: pushed by us, or pulled from our Input API.
/// In pull mode the ledger *is* the exchange: what is desired is served at
/// once, so nothing is ever due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The agent PUTs and DELETEs on a push endpoint (SPEC 4.2).
    #[default]
    Push,
    /// The agent serves the Input API that EURES polls (SPEC 4.3).
    Pull,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Push => "push",
            Mode::Pull => "pull",
        })
    }
}

/// The document of a record that has one. The ledger keeps documents
/// apart from the records: a record changes several times per delivery (a
/// lease, an outcome) and its 3-4 KB document need not be read or written
/// again each time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Content {
    /// The one the ledger holds, unchanged (records are loaded without it).
    Stored,
    /// Rendered from a newer version of the posting: the ledger keeps this
    /// one instead.
    New(String),
}

/// What EURES should hold. Its version is always the record's
/// `source_version`: every accepted change recomputes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DesiredState {
    Present {
        hash: String,
        /// The document; erased once no longer needed (SPEC 6).
        content: Option<Content>,
        publication_end_ms: i64,
    },
    Absent {
        /// A reason code of SPEC 2 (`invalid: <field>: <why>` included).
        reason: String,
    },
}

impl DesiredState {
    pub fn is_present(&self) -> bool {
        matches!(self, DesiredState::Present { .. })
    }

    pub fn hash(&self) -> Option<&str> {
        match self {
            DesiredState::Present { hash, .. } => Some(hash),
            DesiredState::Absent { .. } => None,
        }
    }
}

/// What EURES acknowledged (or what reconcile saw it list).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Delivered {
    Absent,
    Present {
        version: u64,
        hash: String,
    },
    /// An attempt ended without a clear answer (timeout, dropped connection,
    /// 5xx): EURES may or may not have applied it. Whatever is desired next
    /// must be sent, never assumed: an absent posting gets a DELETE (404 is
    /// fine), a present one a PUT.
    Unknown,
}

/// Retry bookkeeping of the operation currently due.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Retry {
    /// Failed attempts of the current operation in a row (reset when
    /// desired moves): how long the next backoff is.
    pub attempts: u32,
    /// The failures among them that count toward `eures.max_attempts`:
    /// those while EURES answered other requests (SPEC 4.2). A failure
    /// during a portal-wide outage says nothing about the document.
    pub strikes: u32,
    /// When the last attempt's outcome was recorded (epoch ms): a failure
    /// counts only if EURES answered another request since then.
    pub last_attempt_ms: Option<i64>,
    /// Not before this instant (epoch ms).
    pub next_attempt_at_ms: i64,
    /// Last failure, one line, no personal data.
    pub last_error: Option<String>,
    /// A create/update EURES rejected or that ran out of attempts: parked
    /// until the posting changes or an operator retries. Never a deletion.
    pub dead: bool,
    /// An operator's resync: deliver even if EURES seems to hold this already.
    pub forced: bool,
    /// When the current gap opened; feeds "oldest pending".
    pub due_since_ms: Option<i64>,
}

/// The exchange timestamps of SPEC 4.3 (epoch ms UTC, the agent's clock).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Exchange {
    pub created_ms: Option<i64>,
    pub modified_ms: Option<i64>,
    pub closed_ms: Option<i64>,
    /// ACTIVE (true) or CLOSED (false); meaningful once `created_ms` is set.
    pub active: bool,
}

/// One posting's record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    pub id: String,
    /// Kept for `resync --employer` and `export --employer`.
    pub employer_cvr: Option<String>,
    /// Highest version seen; feed events at or below it are ignored.
    pub source_version: u64,
    /// The source's `updated_at` of that version; feeds the propagation metric.
    pub source_updated_at_ms: Option<i64>,
    pub desired: DesiredState,
    pub delivered: Delivered,
    pub retry: Retry,
    pub exchange: Exchange,
    /// When the agent last accepted a source fact for this posting (epoch
    /// ms): reconcile only judges records older than its own start.
    pub last_change_ms: i64,
    /// What a request whose answer was lost may still do (SPEC 3.8).
    pub doubt: Doubt,
}

/// A create or update whose answer was lost (timeout, dropped connection,
/// 5xx, a worker gone with it in flight) may be applied by EURES or a
/// gateway later, even after the deletion that followed it. Kept apart
/// from `desired` and `retry`, so no change of mind resets it: only a
/// verification that finds nothing ends it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Doubt {
    /// Such a request was sent and never confirmed: the next deletion is
    /// verified.
    pub in_doubt: bool,
    /// A deletion went out meanwhile: look (`GET`) at this instant (epoch
    /// ms), whatever desired does until then; a copy found is deleted
    /// again.
    pub verify_at_ms: Option<i64>,
}

/// The exclusive state of a record for status and metrics (SPEC 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateLabel {
    Present,
    Pending,
    Absent,
    Quarantined,
}

impl StateLabel {
    pub const ALL: [StateLabel; 4] = [
        StateLabel::Present,
        StateLabel::Pending,
        StateLabel::Absent,
        StateLabel::Quarantined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateLabel::Present => "present",
            StateLabel::Pending => "pending",
            StateLabel::Absent => "absent",
            StateLabel::Quarantined => "quarantined",
        }
    }

    pub fn parse(s: &str) -> Option<StateLabel> {
        StateLabel::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl Entry {
    /// The operation needed to make EURES match `desired`, dead letters aside.
    pub fn gap(&self) -> Option<Op> {
        match (&self.desired, &self.delivered) {
            (DesiredState::Present { .. }, Delivered::Absent) => Some(Op::Create),
            (DesiredState::Present { hash, .. }, Delivered::Present { hash: held, .. }) => {
                (hash != held || self.retry.forced).then_some(Op::Update)
            }
            (DesiredState::Absent { .. }, Delivered::Present { .. }) => Some(Op::Delete),
            // A resync of a posting that was once wanted on EURES makes sure
            // it is gone; one never wanted has nothing to delete.
            (DesiredState::Absent { .. }, Delivered::Absent)
                if self.retry.forced && self.exchange.created_ms.is_some() =>
            {
                Some(Op::Delete)
            }
            (DesiredState::Absent { .. }, Delivered::Absent) => {
                self.doubt.verify_at_ms.map(|_| Op::Verify)
            }
            (DesiredState::Present { .. }, Delivered::Unknown) => Some(Op::Create),
            (DesiredState::Absent { .. }, Delivered::Unknown) => Some(Op::Delete),
        }
    }

    /// The operation the delivery side should perform now or later.
    pub fn due(&self) -> Option<Op> {
        self.gap().filter(|_| !self.retry.dead)
    }

    pub fn state(&self) -> StateLabel {
        if self.gap().is_some() {
            return StateLabel::Pending;
        }
        match &self.desired {
            DesiredState::Present { .. } => StateLabel::Present,
            DesiredState::Absent { reason } if crate::eligibility::is_invalid_reason(reason) => {
                StateLabel::Quarantined
            }
            DesiredState::Absent { .. } => StateLabel::Absent,
        }
    }

    /// Reason shown by status/inspect when the copy is not wanted.
    pub fn absent_reason(&self) -> Option<&str> {
        match &self.desired {
            DesiredState::Absent { reason } => Some(reason),
            DesiredState::Present { .. } => None,
        }
    }

    pub(super) fn set_desired(&mut self, desired: DesiredState, now_ms: i64) {
        let was_present = self.desired.is_present();
        let changed = self.desired != desired
            && (self.desired.hash() != desired.hash() || was_present != desired.is_present());
        match (was_present, desired.is_present()) {
            (false, true) => {
                self.exchange = Exchange {
                    created_ms: Some(now_ms),
                    modified_ms: Some(now_ms),
                    closed_ms: None,
                    active: true,
                };
            }
            (true, true) if changed => self.exchange.modified_ms = Some(now_ms),
            (true, false) => {
                self.exchange.closed_ms = Some(now_ms);
                self.exchange.modified_ms = Some(now_ms);
                self.exchange.active = false;
            }
            _ => {}
        }
        if changed {
            self.retry.attempts = 0;
            self.retry.strikes = 0;
            self.retry.dead = false;
            self.retry.last_error = None;
            self.retry.next_attempt_at_ms = now_ms;
        }
        self.desired = desired;
    }

    /// Re-derives what follows from desired/delivered: pull mode mirrors,
    /// content kept only while needed, the age of the gap.
    pub(super) fn settle(&mut self, mode: Mode, now_ms: i64) {
        if mode == Mode::Pull {
            self.delivered = match &self.desired {
                DesiredState::Present { hash, .. } => Delivered::Present {
                    version: self.source_version,
                    hash: hash.clone(),
                },
                DesiredState::Absent { .. } => Delivered::Absent,
            };
            self.retry = Retry {
                next_attempt_at_ms: now_ms,
                ..Retry::default()
            };
            self.doubt = Doubt::default();
        }
        if self.gap() == Some(Op::Verify)
            && let Some(at) = self.doubt.verify_at_ms
        {
            self.retry.next_attempt_at_ms = self.retry.next_attempt_at_ms.max(at);
        }
        let needed = match mode {
            Mode::Pull => true,
            Mode::Push => self.gap().is_some(),
        };
        if !needed && let DesiredState::Present { content, .. } = &mut self.desired {
            *content = None;
        }
        if self.gap().is_some() {
            self.retry.due_since_ms.get_or_insert(now_ms);
        } else {
            self.retry.due_since_ms = None;
        }
    }
}

impl From<Desired> for DesiredState {
    fn from(d: Desired) -> Self {
        match d {
            Desired::Present {
                content,
                hash,
                publication_end,
            } => DesiredState::Present {
                hash,
                content: Some(Content::New(content)),
                publication_end_ms: publication_end.timestamp_millis(),
            },
            Desired::Absent(reason) => DesiredState::Absent {
                reason: reason.to_string(),
            },
        }
    }
}
