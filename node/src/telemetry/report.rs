//! What the operator views show, as data.
//!
//! The node fills these in (on its event loop, so they are consistent with
//! one moment of its state), the admin channel carries them as JSON, and the
//! CLI either prints that JSON unchanged (`--json`, for scripts) or renders
//! tables. The field names are the stable interface for scripts: rename one
//! only with a deprecation period.

use serde::{Deserialize, Serialize};

/// `konsilium status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub org: String,
    pub name: String,
    pub level: String,
    pub region: String,
    pub certificate: CertValidity,
    pub started_at: String,
    pub uptime_secs: u64,
    pub listen: Vec<String>,
    /// Our addresses as peers saw them (identify).
    pub observed: Vec<String>,
    /// `bootstrap` or `organization`.
    pub role: String,
    /// `public` when a reachability probe dialled one of our addresses back
    /// (or the operator declared it), `private` when every probe failed,
    /// `unknown` before any answer.
    pub nat: String,
    /// Addresses others reached us at, as probes confirmed.
    #[serde(default)]
    pub confirmed: Vec<String>,
    /// Relay reservations held or being made while not public.
    #[serde(default)]
    pub reservations: Vec<ReservationReport>,
    pub peers_connected: usize,
    pub directory_size: usize,
    pub directory_digest: String,
    pub outbox_depth: usize,
    pub inbox_depth: usize,
    pub attachments_incoming: usize,
    pub deadlines_at_risk: usize,
    pub deadlines_breached: usize,
    /// The last round of asking counterparts for lost state (`konsilium
    /// recover`, or by itself after a journal gap), if there was one.
    #[serde(default)]
    pub recovery: Option<RecoveryReport>,
    /// The video port, and what a STUN server says it maps to.
    #[serde(default)]
    pub video: Option<String>,
    #[serde(default)]
    pub video_mapped: Option<String>,
    /// The TURN relay video offers, and the server that granted it.
    #[serde(default)]
    pub video_relay: Option<String>,
    /// Where this node answers STUN requests.
    #[serde(default)]
    pub stun_service: Option<String>,
    pub version: String,
}

/// A sealing key rotation (`konsilium rotate-sealing-key`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationReport {
    /// Hex of the new public key, published in the record from now on.
    pub sealing_key: String,
    /// Hex of the key it replaced.
    pub retired: String,
    /// Until when packages sealed to the retired key are still taken in.
    pub accepted_until: String,
    /// Retired keys the node keeps, for what it already holds.
    pub retired_keys: usize,
}

/// An end-to-end probe (`konsilium probe`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeReport {
    pub org: String,
    pub name: String,
    pub package: String,
    /// From queueing the probe to its signed receipt, dials included.
    pub round_trip_ms: f64,
    /// How the package went: `direct`, `hole-punched`, `relayed`, or
    /// store-and-forward via a relay node.
    pub link: Option<String>,
}

/// `konsilium probe --video`: how media got to the organization.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VideoProbeReport {
    pub org: String,
    pub name: String,
    /// From asking to ICE and DTLS done, the signed offer's round trip included.
    pub connect_ms: f64,
    /// `host`, `srflx`, `prflx` or `relay`: what the other site's address
    /// that media went to is (see `SessionReport::route`).
    pub route: Option<String>,
    pub remote: Option<String>,
    pub rtt_ms: Option<f64>,
}

/// One relay reservation (`konsilium status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReservationReport {
    pub relay: String,
    /// `requested`, `active` or `waiting` (after a failure).
    pub state: String,
    pub detail: String,
    /// Our relayed addresses through it, published in our record.
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertValidity {
    pub serial: u64,
    pub valid_from: String,
    pub valid_until: String,
    /// Negative once expired.
    pub days_left: i64,
}

/// One peer (`konsilium peers`): a connected, admitted organization, a
/// connected peer that has not yet presented its certificate, or a recently
/// refused one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerReport {
    /// `admitted`, `pending` (connected, no verified Hello yet) or `refused`.
    pub admission: String,
    /// Why the peer was refused.
    pub reason: Option<String>,
    /// The organization id, or the libp2p peer id of a peer that never
    /// proved an organization.
    pub org: String,
    pub name: String,
    pub level: String,
    pub region: String,
    pub addresses: Vec<String>,
    pub latency_ms: Option<f64>,
    /// The libp2p identify protocol version and agent of the peer's node.
    pub protocol_version: Option<String>,
    pub agent_version: Option<String>,
    /// The Konsilium protocols the peer speaks.
    pub protocols: Vec<String>,
    /// Gossipsub's score for the peer (negative is misbehaviour).
    pub gossip_score: Option<f64>,
    /// The peer's clock minus ours, from its Hello.
    pub clock_skew_ms: Option<i64>,
    /// How the peer is reached: `direct`, `hole-punched`, `relayed` (a
    /// circuit through a relay), or store-and-forward through a relay node.
    #[serde(default)]
    pub link: Option<String>,
    /// From the first relayed connection to the direct one hole punching made.
    #[serde(default)]
    pub hole_punch_ms: Option<f64>,
    /// Each open connection's rung: a relayed circuit stays beside a direct
    /// connection only for a few seconds.
    #[serde(default)]
    pub connections: Vec<String>,
}

/// One organization in the directory (`konsilium directory`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectoryEntryReport {
    pub org: String,
    pub name: String,
    pub level: String,
    pub region: String,
    pub sequence: u64,
    pub issued_at: String,
    pub age_secs: u64,
    pub time_zone: String,
    /// Specialty slugs (`konsilium specialties` lists them); the CLI prints
    /// their names in the operator's language.
    pub services: Vec<ServiceReport>,
    pub consultants: Vec<ConsultantReport>,
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceReport {
    pub specialty: String,
    pub urgencies: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsultantReport {
    pub name: String,
    pub specialties: Vec<String>,
    pub languages: Vec<String>,
}

/// A routing dry run (`konsilium route`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteReport {
    pub specialty: String,
    pub min_level: String,
    pub urgency: String,
    pub region: Option<String>,
    /// Best first; the first one is where a request would go.
    pub candidates: Vec<RouteCandidate>,
    pub skipped: Vec<RouteSkip>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteCandidate {
    pub rank: usize,
    pub org: String,
    pub name: String,
    pub level: String,
    pub region: String,
    pub same_region: bool,
    pub next_slot: Option<String>,
    /// Why it sits at this rank.
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteSkip {
    pub org: String,
    pub name: String,
    /// One of `excluded`, `specialty_not_offered`, `level_too_low`,
    /// `urgency_not_accepted`, `revoked`, `certificate_refused`.
    pub reason_code: String,
    pub reason: String,
}

/// One consultation (`konsilium requests`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestSummary {
    pub id: String,
    /// `requesting` or `consulting`: which end this node is.
    pub side: String,
    pub counterpart: String,
    pub counterpart_name: String,
    pub specialty: String,
    pub urgency: String,
    pub state: String,
    pub created: String,
    pub deadline: Option<String>,
    /// Negative once the deadline has passed; absent once concluded or closed.
    pub time_left_secs: Option<i64>,
    /// `on_track`, `at_risk` or `breached`.
    pub deadline_state: Option<String>,
    pub escalated_from: Option<String>,
    pub escalated_to: Option<String>,
}

/// `konsilium request ID`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestDetail {
    pub summary: RequestSummary,
    pub physician: String,
    pub consultant_org: String,
    pub requester_org: String,
    /// Every organization asked, oldest first (escalation hops).
    pub hops: Vec<Hop>,
    pub transitions: Vec<TransitionReport>,
    pub receipts: Vec<ReceiptReport>,
    pub conclusion: Option<ConclusionReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hop {
    pub consultation: String,
    pub consultant: String,
    pub consultant_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransitionReport {
    pub seq: u32,
    pub at: String,
    pub actor: String,
    pub role: String,
    pub user: String,
    pub action: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptReport {
    pub package: String,
    pub recipient: String,
    /// When the recipient signed the receipt.
    pub received_at: String,
    pub attempts: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConclusionReport {
    pub issued_at: String,
    pub diagnosis: String,
    pub signer: String,
}

/// A package waiting for delivery (`konsilium outbox`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxReport {
    pub package: String,
    pub recipient: String,
    pub recipient_name: String,
    pub next_hop: String,
    /// `local` (ours) or `relay` (held for someone else).
    pub origin: String,
    pub attempts: u32,
    /// Empty once the package was refused for good.
    pub next_retry: String,
    pub last_error: Option<String>,
    /// Why the next hop refused the package for good (no more attempts).
    pub refused: Option<String>,
    pub custody: Option<String>,
    pub queued_at: String,
    pub bytes: usize,
}

/// `konsilium sla`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SlaReport {
    /// Consultations not yet concluded or closed whose deadline is at risk or breached.
    pub late: Vec<RequestSummary>,
    pub by_urgency: Vec<SlaCount>,
    pub by_counterpart: Vec<SlaCount>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SlaCount {
    /// The urgency, or the counterpart's org id.
    pub key: String,
    pub name: String,
    pub on_track: usize,
    pub at_risk: usize,
    pub breached: usize,
}

/// `konsilium sessions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionsReport {
    pub sessions: Vec<SessionReport>,
    /// Said plainly when this build cannot hold video sessions at all, so an
    /// empty list is not mistaken for "none right now".
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionReport {
    pub consultation: String,
    /// The other site's organization id, and its name.
    pub peer: String,
    #[serde(default)]
    pub name: String,
    /// `connecting` or `connected`.
    #[serde(default)]
    pub state: String,
    /// What the media goes through to reach the other site: `host`,
    /// `srflx` (its NAT's mapped address, from STUN), `prflx` (a mapping
    /// found by the connectivity checks) or `relay` (TURN).
    #[serde(default)]
    pub route: Option<String>,
    /// The other site's address the media goes to.
    #[serde(default)]
    pub remote: Option<String>,
    pub rtt_ms: Option<f64>,
    /// Fraction of the other site's packets lost on their way here.
    pub loss: Option<f64>,
    /// Bits per second over the last second, all WebRTC traffic.
    #[serde(default)]
    pub receive_bps: u64,
    #[serde(default)]
    pub send_bps: u64,
    /// Video frames per second over the last second: what the other site
    /// or the clinician's browser sends, and what it is sent.
    #[serde(default)]
    pub receive_fps: f64,
    #[serde(default)]
    pub send_fps: f64,
}

/// `konsilium journal verify`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalVerifyReport {
    pub intact: bool,
    pub entries: u64,
    pub checkpoints: usize,
    pub anchored: u64,
    /// How many entries the anchor outside the database vouches for.
    pub anchor: Option<u64>,
    pub head: String,
    /// What is wrong, when `intact` is false.
    pub error: Option<String>,
}

impl JournalVerifyReport {
    /// Checks a journal against its signed checkpoints and its anchor; the
    /// same for a running node (on its event loop) and a stopped one (read
    /// by the CLI). Without an anchor, a journal whose last entries vanished
    /// would look intact, so a missing anchor is a failure.
    pub fn check(
        entries: &[konsilium_protocol::journal::Entry],
        checkpoints: &[konsilium_protocol::signed::Signed<
            konsilium_protocol::journal::Checkpoint,
        >],
        anchor: Option<konsilium_protocol::signed::Signed<konsilium_protocol::journal::Checkpoint>>,
        org: &konsilium_protocol::identity::OrgId,
    ) -> Self {
        let anchor_seq = anchor
            .as_ref()
            .and_then(|a| a.decode_unverified().ok())
            .map(|c| c.seq);
        let mut all = checkpoints.to_vec();
        all.extend(anchor);
        let missing_anchor = anchor_seq.is_none() && !entries.is_empty();
        match konsilium_protocol::journal::verify(entries, &all, org) {
            Ok(v) if !missing_anchor => JournalVerifyReport {
                intact: true,
                entries: v.entries,
                checkpoints: v.checkpoints,
                anchored: v.anchored,
                anchor: anchor_seq,
                head: hex::encode(v.head),
                error: None,
            },
            result => JournalVerifyReport {
                intact: false,
                entries: entries.len() as u64,
                checkpoints: all.len(),
                anchored: 0,
                anchor: anchor_seq,
                head: String::new(),
                error: Some(match result {
                    Err(e) => e.to_string(),
                    Ok(_) => format!(
                        "the journal has no anchor ({}), so entries lost from its end could not be detected",
                        crate::storage::anchor::FILE
                    ),
                }),
            },
        }
    }
}

/// `konsilium recover`: a round of asking counterparts for lost
/// consultation state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// What was asked for: everything that moved since then.
    pub since: String,
    /// Whether every counterpart answered or was given up on.
    pub finished: bool,
    /// Consultation histories the counterparts queued for this node.
    pub consultations: u32,
    pub counterparts: Vec<RecoveryAsk>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryAsk {
    pub org: String,
    pub name: String,
    /// `answered`, `failed`, `asked` or `retrying (asked Nx)`.
    pub state: String,
    pub consultations: u32,
    pub reason: Option<String>,
}

/// `konsilium journal tail`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalEntryReport {
    pub seq: u64,
    pub at: String,
    pub actor: Option<String>,
    pub role: Option<String>,
    pub action: String,
    pub consultation: Option<String>,
}

/// `konsilium journal stats`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalStatsReport {
    pub by_pair: Vec<PairCount>,
    pub by_specialty: Vec<KeyCount>,
    pub by_urgency: Vec<KeyCount>,
    pub conclusions: u64,
    pub deadlines_met: u64,
}

impl From<&konsilium_protocol::journal::Stats> for JournalStatsReport {
    fn from(s: &konsilium_protocol::journal::Stats) -> Self {
        let count = |key: String, n: &u64| KeyCount { key, count: *n };
        JournalStatsReport {
            by_pair: s
                .by_pair
                .iter()
                .map(|((a, b), n)| PairCount {
                    requester: a.to_string(),
                    consultant: b.to_string(),
                    consultations: *n,
                })
                .collect(),
            by_specialty: s
                .by_specialty
                .iter()
                .map(|(k, n)| count(k.slug().into(), n))
                .collect(),
            by_urgency: s
                .by_urgency
                .iter()
                .map(|(k, n)| count(k.to_string(), n))
                .collect(),
            conclusions: s.conclusions,
            deadlines_met: s.deadlines_met,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairCount {
    pub requester: String,
    pub consultant: String,
    pub consultations: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyCount {
    pub key: String,
    pub count: u64,
}

/// `konsilium certs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertsReport {
    pub roots: Vec<String>,
    pub authority: Option<AuthorityReport>,
    pub organization: OrgCertReport,
    pub revocations: Vec<RevocationReport>,
    /// Expiry within 30 days, or already expired.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorityReport {
    pub key: String,
    pub name: String,
    pub region: String,
    pub max_level: String,
    pub issuer: String,
    pub serial: u64,
    pub valid_from: String,
    pub valid_until: String,
    pub days_left: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrgCertReport {
    pub org: String,
    pub name: String,
    pub level: String,
    pub region: String,
    pub issuer: String,
    pub serial: u64,
    pub valid_from: String,
    pub valid_until: String,
    pub days_left: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevocationReport {
    pub issuer: String,
    pub sequence: u64,
    pub issued_at: String,
    pub serials: Vec<u64>,
}

/// What only the running node knows, for `konsilium doctor`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthReport {
    pub bootstrap: Vec<BootstrapReport>,
    pub clock_skew: Vec<SkewReport>,
    pub listen: Vec<String>,
    /// As in [`StatusReport::nat`].
    pub nat: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootstrapReport {
    pub address: String,
    pub connected: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkewReport {
    pub org: String,
    pub name: String,
    pub skew_ms: i64,
}

/// Whole days from `now` to `until` (negative once past), for expiry warnings.
pub fn days_left(
    now: konsilium_protocol::time::Timestamp,
    until: konsilium_protocol::time::Timestamp,
) -> i64 {
    const DAY_MS: i64 = 86_400_000;
    let delta = until.unix_millis() as i128 - now.unix_millis() as i128;
    (delta / DAY_MS as i128) as i64
}
