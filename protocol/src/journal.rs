//! The node's tamper-evident journal of consultations and security events.
//!
//! The source documents require a journal of telemedicine consultations and
//! security logs, and because payment between organizations is not
//! standardized yet, this journal is also what an organization shows when it
//! accounts for who consulted whom, how often and how fast. An entry that was
//! quietly edited or deleted would make both worthless, so the journal is a
//! hash chain: every entry carries the hash of the one before it and a
//! sequence number, and the organization signs [`Checkpoint`]s of the head.
//!
//! What each mechanism detects:
//! - an **edited** entry changes its hash, so the next entry's `prev` no
//!   longer matches ([`JournalError::Edited`] or [`JournalError::BrokenChain`]);
//! - a **deleted** entry leaves a gap in the sequence numbers
//!   ([`JournalError::Missing`]);
//! - **swapped** entries show up out of sequence ([`JournalError::Reordered`]);
//! - a **truncated tail** (the last entries deleted) leaves a journal that is
//!   perfectly consistent on its own. Only a signed checkpoint that the
//!   remaining entries no longer reach shows it
//!   ([`CheckpointFault::BeyondJournal`]);
//! - a **rewritten history** (an entry edited and every later hash recomputed,
//!   which anyone with write access to the store can do, since the chain
//!   itself holds no secret) is likewise caught only by a signed checkpoint
//!   whose head no longer matches ([`CheckpointFault::HeadMismatch`]).
//!
//! So the node should sign a checkpoint regularly (every N entries, say 100,
//! and at shutdown) and keep copies where the journal's own storage cannot
//! reach them (backups, the peer it accounts with). Entries after the last
//! checkpoint are protected only by the chain; [`Verified::anchored`] says how
//! many entries a signature covers. Someone holding the identity key can
//! re-sign anything, so off-node copies of checkpoints are what make even that
//! visible.
//!
//! Pure data and verification: the node stores entries (in sled) and decides
//! when to checkpoint.

use crate::identity::{IdentityKey, OrgId};
use crate::limits::FieldError;
use crate::seal::PackageId;
use crate::signed::{Signable, Signed, SignedError};
use crate::specialty::Specialty;
use crate::time::Timestamp;
use crate::urgency::Urgency;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Prepended to an entry's encoding before hashing, so an entry hash can never
/// be confused with the hash of any other Konsilium object.
const ENTRY_DOMAIN: &[u8] = b"konsilium/journal-entry/v1\0";

/// The `prev` of the first entry, and the head of an empty journal.
pub const GENESIS: [u8; 32] = [0; 32];

/// What the journal records about a consultation when it is created: enough
/// to account for it (who asked whom, in which specialty, how urgently) and no
/// patient data, since the journal is kept longer and shown more widely than
/// the clinical record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConsultationRef {
    pub id: [u8; 16],
    pub requester: OrgId,
    pub consultant: OrgId,
    pub specialty: Specialty,
    pub urgency: Urgency,
}

/// The role a person acted in, as the documents name the participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(rename_all = "lowercase")
)]
pub enum Role {
    /// The attending physician, who asks for the consultation.
    Physician,
    /// The telemedicine coordinator, who registers, triages and schedules.
    Coordinator,
    /// The consultant (or a member of the team) who answers.
    Consultant,
    /// The technical operator, who runs equipment and network.
    Operator,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Physician,
        Role::Coordinator,
        Role::Consultant,
        Role::Operator,
    ];

    /// Stable spelling for config files, the CLI and the journal's text export.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Physician => "physician",
            Role::Coordinator => "coordinator",
            Role::Consultant => "consultant",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = FieldError;

    /// Case-insensitive and trimmed, because roles are typed by hand in user
    /// configuration.
    fn from_str(s: &str) -> Result<Self, FieldError> {
        let wanted = s.trim();
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| FieldError::Invalid {
                field: "role",
                reason: format!(
                    "{wanted:?} is not a role: use physician|coordinator|consultant|operator"
                ),
            })
    }
}

/// What happened. Free-text fields (user names, reasons, state names) are
/// recorded as given: a failed login's user name comes from whoever tried, so
/// anything that prints the journal must escape control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// A consultation was registered and given its id.
    Create(ConsultationRef),
    /// A package of materials for the consultation was sent.
    Send {
        consultation: [u8; 16],
        package: PackageId,
    },
    /// A package for the consultation arrived.
    Receive {
        consultation: [u8; 16],
        package: PackageId,
    },
    /// Someone opened (read) the consultation's materials: access to health
    /// data is itself a security event.
    Open {
        consultation: [u8; 16],
    },
    /// The consultation moved between workflow states.
    Transition {
        consultation: [u8; 16],
        from: String,
        to: String,
    },
    /// A conclusion was delivered; `deadline_met` says whether it came within
    /// the deadline for the consultation's urgency.
    Conclusion {
        consultation: [u8; 16],
        deadline_met: bool,
    },
    /// Data was sent without written consent (allowed in an emergency when
    /// consent cannot be obtained); the reason must be kept.
    ConsentOverride {
        consultation: [u8; 16],
        reason: String,
    },
    FailedLogin {
        user: String,
    },
    Login {
        user: String,
    },
    /// The consultation's state was restored from `from`'s signed history
    /// after this node lost it: `steps` steps were taken from it.
    Recover {
        consultation: [u8; 16],
        from: OrgId,
        steps: u32,
    },
    /// The database came back without entries its anchor vouched for:
    /// entries `lost_from..lost_to` are gone, and the node went on from
    /// the last one it kept and asked its counterparts for what it lost.
    Gap {
        lost_from: u64,
        lost_to: u64,
    },
    /// A step of the consultation's video session with `org`, the other
    /// site. A refused description is a security event.
    Video {
        consultation: [u8; 16],
        org: OrgId,
        step: VideoStep,
    },
    /// `org` was invited into the consultation's consilium: it receives
    /// the case and every step from then on.
    Invite {
        consultation: [u8; 16],
        org: OrgId,
    },
    /// Step `seq`, which this user took, was undone: `by` took a step at
    /// the same place at the same moment, and the two organizations' rule
    /// for such races let `by`'s stand (see `workflow::outranks`).
    Undone {
        consultation: [u8; 16],
        seq: u32,
        by: OrgId,
    },
}

/// What happened to a site's link in a video session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VideoStep {
    /// A user opened the session before its appointment, or without one.
    Opened,
    /// This site sent its signed offer.
    Offered,
    /// This site answered the other's signed offer.
    Answered,
    /// The link connected (ICE and DTLS done): the site is in the session.
    Joined,
    /// The link ended.
    Left { reason: String },
    /// The other site's description was refused: not signed by a
    /// participant, not for this session, or not a description at all.
    Refused { reason: String },
}

impl fmt::Display for VideoStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VideoStep::Opened => f.write_str("opened early"),
            VideoStep::Offered => f.write_str("offered"),
            VideoStep::Answered => f.write_str("answered"),
            VideoStep::Joined => f.write_str("joined"),
            VideoStep::Left { reason } => write!(f, "left: {reason}"),
            VideoStep::Refused { reason } => write!(f, "description refused: {reason}"),
        }
    }
}

/// One line for operators: what happened, without the consultation id
/// (shown beside it) or raw bytes.
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Create(c) => write!(
                f,
                "create: {} {}, {} asks {}",
                c.urgency,
                c.specialty.slug(),
                c.requester,
                c.consultant
            ),
            Action::Send { package, .. } => write!(f, "send package {package}"),
            Action::Receive { package, .. } => write!(f, "receive package {package}"),
            Action::Open { .. } => f.write_str("open the materials"),
            Action::Transition { from, to, .. } => write!(f, "transition {from} -> {to}"),
            Action::Conclusion { deadline_met, .. } => write!(
                f,
                "conclusion, {}",
                if *deadline_met {
                    "within the deadline"
                } else {
                    "late"
                }
            ),
            Action::ConsentOverride { reason, .. } => {
                write!(f, "consent override: {reason}")
            }
            Action::FailedLogin { user } => write!(f, "failed login as {user:?}"),
            Action::Login { user } => write!(f, "login as {user:?}"),
            Action::Recover { from, steps, .. } => {
                write!(f, "recover {steps} step(s) from {from}")
            }
            Action::Video { org, step, .. } => write!(f, "video with {org}: {step}"),
            Action::Invite { org, .. } => write!(f, "invite {org} into the consilium"),
            Action::Undone { seq, by, .. } => {
                write!(
                    f,
                    "step {seq} undone: {by}'s step at the same moment stands"
                )
            }
            Action::Gap { lost_from, lost_to } => write!(
                f,
                "entries {lost_from}..{lost_to} lost from the database; recovery asked"
            ),
        }
    }
}

impl Action {
    /// The consultation the action concerns, so a node can index its journal
    /// by consultation; `None` for security events.
    pub fn consultation(&self) -> Option<[u8; 16]> {
        match self {
            Action::Create(c) => Some(c.id),
            Action::Send { consultation, .. }
            | Action::Receive { consultation, .. }
            | Action::Open { consultation }
            | Action::Transition { consultation, .. }
            | Action::Conclusion { consultation, .. }
            | Action::ConsentOverride { consultation, .. }
            | Action::Recover { consultation, .. }
            | Action::Video { consultation, .. }
            | Action::Invite { consultation, .. }
            | Action::Undone { consultation, .. } => Some(*consultation),
            Action::FailedLogin { .. } | Action::Login { .. } | Action::Gap { .. } => None,
        }
    }
}

/// One journal entry. `seq` counts from 0 without gaps and `prev` is the hash
/// of the entry before (or [`GENESIS`]), which is what lets [`verify`] tell
/// a deletion, a reordering and an edit apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub prev: [u8; 32],
    /// The node's clock when the event was recorded. Not required to be
    /// monotonic: clocks step backwards (NTP corrections), and refusing such a
    /// journal would report tampering where there is none.
    pub at: Timestamp,
    /// The user name of the person who acted; `None` for the node itself.
    pub actor: Option<String>,
    pub role: Option<Role>,
    pub action: Action,
}

impl Entry {
    /// BLAKE3 over a domain tag and the entry's postcard encoding. Postcard
    /// has one encoding per value, so the hash names the value, and every
    /// field, `prev` included, is covered: changing any of them, or the
    /// history before, changes the hash.
    pub fn hash(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(ENTRY_DOMAIN);
        // The hasher is an infallible writer and every field has a known
        // length, so encoding cannot fail.
        let _ = postcard::to_io(self, &mut hasher);
        *hasher.finalize().as_bytes()
    }
}

/// A signed statement of the journal's state: "my journal had `seq` entries
/// and the last one hashed to `head`". Signed by the organization's identity
/// key, so whoever holds a copy can later prove that those entries existed
/// and were exactly these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Number of entries covered, which is also the `seq` the next entry
    /// takes; 0 for an empty journal.
    pub seq: u64,
    /// Hash of entry `seq - 1`, or [`GENESIS`] when `seq` is 0.
    pub head: [u8; 32],
    pub at: Timestamp,
}

impl Signable for Checkpoint {
    const DOMAIN: &'static [u8] = b"konsilium/journal-checkpoint/v1\0";
}

/// A checkpoint kept outside the database as the journal's anchor: if the
/// database loses or rewrites entries the anchor vouched for, verification
/// fails instead of finding a shorter journal that is intact.
impl crate::wire::WireMessage for Signed<Checkpoint> {
    const KIND: crate::wire::MessageKind = crate::wire::MessageKind::JournalAnchor;
    const MAX_LEN: usize = 1024;
}

/// The writing end of a journal: only the head hash and the next sequence
/// number, because entries are persisted by the node as they are appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    head: [u8; 32],
    next_seq: u64,
}

impl Default for Journal {
    fn default() -> Self {
        Self::new()
    }
}

impl Journal {
    /// An empty journal: the first entry gets seq 0 and `prev` = [`GENESIS`].
    pub fn new() -> Self {
        Self {
            head: GENESIS,
            next_seq: 0,
        }
    }

    /// Continues after `last`, the newest stored entry. Trusts it as given:
    /// the node should [`verify`] what it loaded (at least since the last
    /// checkpoint) before resuming, or it would extend a tampered journal.
    pub fn resume(last: &Entry) -> Self {
        Self {
            head: last.hash(),
            // 2^64 entries cannot be reached; saturating keeps this panic-free,
            // and a repeated seq would be reported by `verify`.
            next_seq: last.seq.saturating_add(1),
        }
    }

    /// Hash of the newest entry ([`GENESIS`] when empty).
    pub fn head(&self) -> [u8; 32] {
        self.head
    }

    /// The number of entries so far, which is the next entry's `seq`.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records an event and returns the entry for the node to persist. The
    /// journal advances at once, so the node must store entries in the order
    /// they are returned.
    pub fn append(
        &mut self,
        at: Timestamp,
        actor: Option<String>,
        role: Option<Role>,
        action: Action,
    ) -> Entry {
        let entry = Entry {
            seq: self.next_seq,
            prev: self.head,
            at,
            actor,
            role,
            action,
        };
        self.head = entry.hash();
        self.next_seq = self.next_seq.saturating_add(1);
        entry
    }

    /// Signs the current head with the organization's identity key.
    pub fn checkpoint(&self, key: &IdentityKey, at: Timestamp) -> Signed<Checkpoint> {
        Signed::sign(
            key,
            &Checkpoint {
                seq: self.next_seq,
                head: self.head,
                at,
            },
        )
    }
}

/// Entries an anchor vouched for that the journal no longer has, at its
/// end: `lost_from..lost_to` by seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostTail {
    pub lost_from: u64,
    pub lost_to: u64,
}

/// Whether the only thing wrong with a journal is that it ends before its
/// anchor: every entry it kept chains and matches its own checkpoints, and
/// the anchor, signed by `org`, covers more. That is what a store that
/// dropped its last writes leaves (sled takes a damaged log tail for a torn
/// write); the rest is trustworthy and what was lost can be asked back
/// from counterparts. Any other failure is `None`: the journal was edited,
/// and nothing about it can be taken on trust.
pub fn lost_tail(
    entries: &[Entry],
    checkpoints: &[Signed<Checkpoint>],
    anchor: &Signed<Checkpoint>,
    org: &OrgId,
) -> Option<LostTail> {
    let kept = verify(entries, checkpoints, org).ok()?;
    let mut all = checkpoints.to_vec();
    all.push(anchor.clone());
    match verify(entries, &all, org) {
        Err(JournalError::Checkpoint {
            seq,
            reason: CheckpointFault::BeyondJournal { .. },
        }) if seq > kept.entries => Some(LostTail {
            lost_from: kept.entries,
            lost_to: seq,
        }),
        _ => None,
    }
}

/// What a successful [`verify`] established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Number of entries, all chained from genesis without gaps.
    pub entries: u64,
    /// Hash of the last entry ([`GENESIS`] when there are none).
    pub head: [u8; 32],
    /// Number of checkpoints checked.
    pub checkpoints: usize,
    /// How many entries (from the start) a valid checkpoint covers. Entries
    /// beyond this could have been truncated or rewritten without a trace,
    /// so it measures how much of the journal is actually proven.
    pub anchored: u64,
}

/// Why a checkpoint does not fit the journal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointFault {
    #[error("not signed by the organization's identity key")]
    BadSignature,
    #[error(
        "signed head {} but the entries hash to {}: entries up to here were changed after it was signed",
        short_hex(signed),
        short_hex(found)
    )]
    HeadMismatch { signed: [u8; 32], found: [u8; 32] },
    #[error(
        "it covers more entries than the {entries} present: the last entries were deleted (truncated)"
    )]
    BeyondJournal { entries: u64 },
}

/// The first problem found, with the sequence number where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("journal entry {seq} was edited: its hash no longer matches the next entry's link")]
    Edited { seq: u64 },
    #[error(
        "journal entry {expected_seq} is missing (found {found_seq} in its place): entries were deleted"
    )]
    Missing { expected_seq: u64, found_seq: u64 },
    #[error("journal entry {seq} is out of order: entries were moved")]
    Reordered { seq: u64 },
    #[error("journal entry {seq} appears twice")]
    Duplicate { seq: u64 },
    #[error(
        "journal chain broken at entry {seq}: it does not link to the entry before (one of the two was edited)"
    )]
    BrokenChain { seq: u64 },
    #[error("journal checkpoint at entry {seq}: {reason}")]
    Checkpoint { seq: u64, reason: CheckpointFault },
    #[error("journal checkpoint #{index} cannot be read: {source}")]
    UnreadableCheckpoint { index: usize, source: SignedError },
}

/// Checks that `entries` are a complete journal from genesis, in order, with
/// every link intact, and that every checkpoint is signed by `org` and
/// matches the entries. A checkpoint that is unreadable or not signed by
/// `org` is reported before anything else, since it is wrong whatever the
/// entries say; otherwise the first problem in sequence order is returned.
///
/// Without a checkpoint at its end, a journal whose last entries were deleted
/// or rewritten still verifies: see the module documentation.
pub fn verify(
    entries: &[Entry],
    checkpoints: &[Signed<Checkpoint>],
    org: &OrgId,
) -> Result<Verified, JournalError> {
    let signer = org.checked_key();
    let mut signed = Vec::with_capacity(checkpoints.len());
    for (index, checkpoint) in checkpoints.iter().enumerate() {
        let claimed = checkpoint
            .decode_unverified()
            .map_err(|source| JournalError::UnreadableCheckpoint { index, source })?;
        if checkpoint.verify_by(signer).is_err() {
            return Err(JournalError::Checkpoint {
                seq: claimed.seq,
                reason: CheckpointFault::BadSignature,
            });
        }
        signed.push(claimed);
    }
    // Checked as the walk reaches them, so the first problem by seq is named.
    signed.sort_by_key(|c| c.seq);
    let mut pending = signed.iter().peekable();
    let mut anchored = 0;

    let mut head = GENESIS;
    let mut count: u64 = 0;
    for (i, entry) in entries.iter().enumerate() {
        // Entry `count` must come next, and all checkpoints covering `count`
        // entries are due, since the entries they cover are now all checked.
        while let Some(c) = pending.next_if(|c| c.seq == count) {
            check_head(c, head)?;
            anchored = count;
        }
        // A checkpoint right after this entry vouches for its hash, which
        // helps name an edit when no later entry links to it.
        let vouched = pending
            .peek()
            .filter(|c| c.seq == count.saturating_add(1))
            .map(|c| c.head);
        check_link(entries, i, count, head, vouched)?;
        head = entry.hash();
        count = count.saturating_add(1);
    }
    for c in pending {
        if c.seq == count {
            check_head(c, head)?;
            anchored = count;
        } else {
            return Err(JournalError::Checkpoint {
                seq: c.seq,
                reason: CheckpointFault::BeyondJournal { entries: count },
            });
        }
    }
    Ok(Verified {
        entries: count,
        head,
        checkpoints: signed.len(),
        anchored,
    })
}

fn check_head(checkpoint: &Checkpoint, found: [u8; 32]) -> Result<(), JournalError> {
    if checkpoint.head == found {
        return Ok(());
    }
    Err(JournalError::Checkpoint {
        seq: checkpoint.seq,
        reason: CheckpointFault::HeadMismatch {
            signed: checkpoint.head,
            found,
        },
    })
}

/// Checks that `entries[i]` is entry `expected` and links to `prev_hash`,
/// the hash of the entry before it. On failure, looks at the neighbours (and
/// `vouched`, a signed hash of this entry if a checkpoint gives one) to name
/// what most likely happened.
fn check_link(
    entries: &[Entry],
    i: usize,
    expected: u64,
    prev_hash: [u8; 32],
    vouched: Option<[u8; 32]>,
) -> Result<(), JournalError> {
    let Some(entry) = entries.get(i) else {
        return Ok(());
    };
    let later = entries.get(i.saturating_add(1)..).unwrap_or_default();
    if entry.seq != expected {
        // Still chained to its predecessor: the entry is in its place and only
        // its number was changed.
        if entry.prev == prev_hash {
            return Err(JournalError::Edited { seq: expected });
        }
        if entry.seq < expected {
            // Every lower seq was already seen, in order.
            return Err(JournalError::Duplicate { seq: entry.seq });
        }
        if later.iter().any(|e| e.seq == expected) {
            return Err(JournalError::Reordered { seq: expected });
        }
        return Err(JournalError::Missing {
            expected_seq: expected,
            found_seq: entry.seq,
        });
    }
    if entry.prev == prev_hash {
        return Ok(());
    }
    if expected == 0 {
        // The first entry's link is known exactly, so it was itself changed.
        return Err(JournalError::Edited { seq: 0 });
    }
    // If the next entry (or a signed checkpoint) still vouches for this one,
    // this entry is as it was when it was appended, so the one before it was
    // changed.
    let hash = entry.hash();
    let intact = later.first().is_some_and(|next| next.prev == hash) || vouched == Some(hash);
    if intact {
        Err(JournalError::Edited { seq: expected - 1 })
    } else {
        Err(JournalError::BrokenChain { seq: expected })
    }
}

/// Counts for accounting between organizations and for deadline adherence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Consultations by (requester, consultant): who consulted whom.
    pub by_pair: BTreeMap<(OrgId, OrgId), u64>,
    pub by_specialty: BTreeMap<Specialty, u64>,
    pub by_urgency: BTreeMap<Urgency, u64>,
    /// Consultations with a conclusion.
    pub conclusions: u64,
    /// Of those, concluded within their deadline.
    pub deadlines_met: u64,
}

/// Counts consultations from their `Create` entries and deadline adherence
/// from `Conclusion` entries. Each consultation counts once by its id: a
/// retried registration must not be billed twice, and for adherence the first
/// conclusion is what was due (for an emergency, the oral one; the written
/// documents that follow have their own, longer deadline). Verify the journal
/// first: stats over unverified entries prove nothing.
pub fn stats(entries: &[Entry]) -> Stats {
    let mut stats = Stats::default();
    let mut created = BTreeSet::new();
    let mut concluded = BTreeSet::new();
    for entry in entries {
        match &entry.action {
            Action::Create(c) if created.insert(c.id) => {
                *stats
                    .by_pair
                    .entry((c.requester, c.consultant))
                    .or_default() += 1;
                *stats.by_specialty.entry(c.specialty).or_default() += 1;
                *stats.by_urgency.entry(c.urgency).or_default() += 1;
            }
            Action::Conclusion {
                consultation,
                deadline_met,
            } if concluded.insert(*consultation) => {
                stats.conclusions += 1;
                stats.deadlines_met += u64::from(*deadline_met);
            }
            _ => {}
        }
    }
    stats
}

fn short_hex(bytes: &[u8; 32]) -> String {
    let mut s: String = hex::encode(&bytes[..8]);
    s.push_str("..");
    s
}

#[cfg(test)]
mod tests;
