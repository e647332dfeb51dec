//! One organization's node: the event loop that joins the libp2p swarm,
//! the durable store and the protocol state machines.
//!
//! All protocol decisions (is this certificate valid, which record wins,
//! where does a request go, is this package intact) are made by
//! `konsilium-protocol`; this module moves bytes, keeps time and persists.

use crate::behaviour::{
    Behaviour, BehaviourEvent, DIRECTORY_TOPIC, HELLO_TIMEOUT, REVOCATION_TOPIC,
};
use crate::blobs::{BlobError, BlobStore, PartialBlob};
pub use crate::config::{DirectoryScope, Profile};

mod attachments;
mod consult;
mod directory_sync;
mod escalation;
mod handle;
mod inbox;
mod inspect;
mod outbox;
mod peers;
use crate::store::{InboxEntry, Origin, OutboxEntry, SentEntry, Store, StoreError};
pub use consult::{ConclusionText, ConsultationView, NewConsultation};
use futures::StreamExt;
pub use inspect::Inspect;
use konsilium_protocol::cert::{
    CertChain, CertError, OrgLevel, RegionCode, RevocationNotice, Trust, VerifiedOrg,
};
use konsilium_protocol::content::FileInfo;
use konsilium_protocol::delivery::Receipt;
use konsilium_protocol::directory::sync::{
    DirectorySync, GossipVerdict, Output as SyncOutput, RequestToken as SyncToken, Scope,
    SyncConfig, SyncEvent,
};
use konsilium_protocol::directory::{Directory, RecordError, SignedRecord};
use konsilium_protocol::fetch::{FetchOutput, Fetches, MAX_HASH_FAILURES, PieceToken};
use konsilium_protocol::identity::{
    AuthorityKey, IdentityKey, OrgId, SealingKey, SealingPublicKey,
};
use konsilium_protocol::journal::{Checkpoint, Entry as JournalEntry, Journal, Role};
use konsilium_protocol::outbox::{Config as OutboxConfig, Outbox, OutboxError, Token};
use konsilium_protocol::route::{self, RouteDecision, RouteRequest};
use konsilium_protocol::rpc::{Hello, HelloAnswer, MAX_BLOB_CHUNK, Refusal, Request, Response};
use konsilium_protocol::seal::{
    self, BlobRef, EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader,
};
use konsilium_protocol::signed::Signed;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::wire::{self, RecordBatch};
use konsilium_protocol::workflow::{
    Action as WorkflowAction, ConsultationId, Status as WorkflowStatus,
};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{
    Multiaddr, PeerId, Swarm, gossipsub, identify, kad, noise, ping, request_response, tcp, yamux,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Where a node reads the time. The protocol takes time as an argument;
/// the node asks its clock, so tests can move a deadline forward without
/// waiting for it.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        now()
    }
}

/// A clock that runs with the system clock plus an offset the caller moves
/// forward: deadlines pass, while libp2p's own timers stay real.
#[derive(Debug, Default)]
pub struct OffsetClock(std::sync::atomic::AtomicU64);

impl OffsetClock {
    pub fn advance(&self, by: Duration) {
        self.0
            .fetch_add(by.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        now().saturating_add(Duration::from_millis(
            self.0.load(std::sync::atomic::Ordering::SeqCst),
        ))
    }
}

pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Timestamp::from_unix_millis(ms)
}

/// OS randomness for package ids, ephemeral keys and jitter.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system's random source is available");
    out
}

/// How many candidates a regional center returns to a scoped node.
const MAX_CANDIDATES: usize = 8;

/// Everything a node needs to start.
pub struct NodeSetup {
    pub identity: IdentityKey,
    pub sealing: SealingKey,
    pub chain: CertChain,
    pub roots: Vec<AuthorityKey>,
    pub revocations: Vec<RevocationNotice>,
    pub profile: Profile,
    pub data_dir: PathBuf,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub external: Vec<Multiaddr>,
    /// Packages to organizations outside our region go through these (federation policy).
    pub relay_via: Vec<OrgId>,
    pub scope: DirectoryScope,
    pub gossip_heartbeat: Duration,
    pub clock: std::sync::Arc<dyn Clock>,
    pub anti_entropy_every: Duration,
    /// How long attachments sent or relayed stay after their receipt.
    pub keep_delivered: Duration,
}

impl From<konsilium_protocol::conclusion::ConclusionError> for NodeError {
    fn from(e: konsilium_protocol::conclusion::ConclusionError) -> Self {
        NodeError::Conclusion(e.to_string())
    }
}

impl From<konsilium_protocol::signed::SignedError> for NodeError {
    fn from(e: konsilium_protocol::signed::SignedError) -> Self {
        NodeError::Workflow(e.into())
    }
}

impl NodeSetup {
    /// The setup for a real node from its validated config, keys and
    /// certificate files.
    pub fn from_config(
        config: &crate::config::NodeConfig,
        keys: crate::keys::NodeKeys,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(NodeSetup {
            identity: keys.identity,
            sealing: keys.sealing,
            chain: config.load_certificate()?,
            roots: config.roots.clone(),
            revocations: config.load_revocations()?,
            profile: config.profile(),
            data_dir: config.data_dir.clone(),
            listen: config.listen.clone(),
            bootstrap: config.bootstrap.iter().map(|b| b.address.clone()).collect(),
            external: config.external.clone(),
            relay_via: config.relay_via.clone(),
            scope: config.directory_scope,
            gossip_heartbeat: Duration::from_secs(1),
            clock: std::sync::Arc::new(SystemClock),
            anti_entropy_every: Duration::from_secs(60),
            keep_delivered: config.keep_delivered,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("this node's own certificate is not valid: {0}")]
    OwnCertificate(CertError),
    #[error(
        "the identity key does not match the certificate (certificate is for {cert}, key is {key})"
    )]
    KeyMismatch { cert: OrgId, key: OrgId },
    #[error("network: {0}")]
    Network(String),
    #[error("no organization in the directory offers this: {0}")]
    NoRoute(String),
    #[error("organization {0} is not in the directory")]
    UnknownOrg(OrgId),
    #[error("package {0} is not in the inbox")]
    NotInInbox(PackageId),
    #[error("package: {0}")]
    Seal(#[from] seal::SealError),
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
    #[error("the node has stopped")]
    Stopped,
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error("consultation: {0}")]
    Workflow(#[from] konsilium_protocol::workflow::WorkflowError),
    #[error("consultation {0} is not known here")]
    UnknownConsultation(ConsultationId),
    #[error("conclusion: {0}")]
    Conclusion(String),
    #[error("attachment: {0}")]
    Attachment(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("the journal cannot be written, so the operation was not done: {0}")]
    Journal(String),
    #[error(
        "the journal does not match its anchor {anchor}: {reason}. Acknowledged records may \
         have been lost or changed on disk; `konsilium doctor` checks the data directory. To \
         accept the loss and start anyway, move the anchor file away."
    )]
    JournalDamaged {
        anchor: std::path::PathBuf,
        reason: String,
    },
    #[error("data directory: {0}")]
    DataDir(#[from] crate::datadir::DataDirError),
    #[error(
        "the identifier already opened consultation {0} with a different request; use a new identifier for a new request"
    )]
    IntakeConflict(ConsultationId),
}

/// A client's identifier for the request it sends, and the hash of what it
/// sent (see [`crate::store::IntakeRecord`]). The identifier is namespaced
/// by the caller (the FHIR and the JSON API keep separate namespaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeKey {
    pub identifier: String,
    pub fingerprint: [u8; 32],
}

/// How long an identifier is remembered: a client retries within minutes
/// or hours; after this a reused identifier opens a new consultation.
pub const INTAKE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// What an idempotent request did.
#[derive(Debug, Clone)]
pub enum Intake {
    Opened(ConsultationId, Sent),
    /// The identifier had already opened this consultation with the same request.
    Existing(ConsultationId),
}

/// Where a package should go.
#[derive(Debug, Clone)]
pub enum Target {
    Org(OrgId),
    /// Let routing pick the best match for the package's routing header.
    Best,
}

#[derive(Debug, Clone)]
pub struct SendRequest {
    pub target: Target,
    pub routing: RoutingHeader,
    pub body: Vec<u8>,
    /// Sealed into separate blobs and transferred in resumable pieces.
    pub attachments: Vec<Attachment>,
    pub lifetime: Duration,
}

/// Where an attachment's bytes come from.
#[derive(Debug, Clone)]
pub enum Attachment {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// One file of a case extract: its bytes and what the consultant needs to
/// open them (title, media type), which travel sealed with the request.
#[derive(Debug, Clone)]
pub struct CaseFile {
    pub info: FileInfo,
    pub content: Attachment,
}

impl CaseFile {
    /// Bytes whose kind the sender does not say.
    pub fn untyped(content: Attachment) -> Self {
        CaseFile {
            info: FileInfo::default(),
            content,
        }
    }
}

/// A package whose recipient is chosen and whose header is drawn, waiting
/// for its attachments to be sealed outside the event loop.
struct Plan {
    header: EnvelopeHeader,
    recipient_key: SealingPublicKey,
    sealing: SealingKey,
    blobs: BlobStore,
    recipient_name: String,
    route: Option<RouteDecision>,
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub id: PackageId,
    pub recipient: OrgId,
    pub recipient_name: String,
    pub next_hop: OrgId,
    pub route: Option<RouteDecision>,
}

/// What a node reports as it works; the demo narrates these and tests wait for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    Listening(Multiaddr),
    PeerCertified {
        org: OrgId,
        name: String,
        level: OrgLevel,
    },
    PeerRejected {
        peer: PeerId,
        reason: String,
    },
    RecordAccepted {
        org: OrgId,
        sequence: u64,
    },
    RecordRejected {
        reason: String,
    },
    PackageQueued {
        id: PackageId,
        next_hop: OrgId,
    },
    PackageInCustody {
        id: PackageId,
        relay: OrgId,
    },
    PackageDelivered {
        id: PackageId,
        recipient: OrgId,
    },
    PackageReceived {
        id: PackageId,
        sender: OrgId,
        bytes: usize,
    },
    Relaying {
        id: PackageId,
        recipient: OrgId,
    },
    /// A sent or relayed attachment was deleted after its retention.
    AttachmentRemoved {
        blob: [u8; 32],
    },
    /// The next hop refused the package for good; it will not be retried.
    DeliveryRefused {
        id: PackageId,
        reason: Refusal,
    },
    DeliveryRetry {
        id: PackageId,
        error: String,
    },
    /// The next hop is fetching the package's attachments.
    DeliveryProgress {
        id: PackageId,
        have: u64,
        total: u64,
    },
    /// Fetching an attachment started (or resumed, when `from` > 0).
    FetchStarted {
        blob: [u8; 32],
        from: u64,
        total: u64,
    },
    /// Pieces of an attachment arrived, in order, up to `have` bytes.
    FetchProgress {
        blob: [u8; 32],
        have: u64,
        total: u64,
    },
    FetchCompleted {
        blob: [u8; 32],
    },
    /// A consultation's deadline became at risk (75% of the time used) or breached.
    Deadline {
        id: ConsultationId,
        state: konsilium_protocol::deadline::DeadlineState,
        due: Timestamp,
    },
    /// A consultation went to the next candidate.
    Escalated {
        from: ConsultationId,
        to: ConsultationId,
        consultant: OrgId,
    },
    ConsultationUpdated {
        id: ConsultationId,
        status: WorkflowStatus,
    },
}

#[derive(Debug, Clone)]
pub struct Status {
    pub org: OrgId,
    pub name: String,
    pub level: OrgLevel,
    pub region: RegionCode,
    pub listen: Vec<Multiaddr>,
    pub peers: Vec<OrgId>,
    pub directory_size: usize,
    pub directory_digest: [u8; 32],
    pub outbox: usize,
    pub inbox: usize,
}

enum Command {
    Plan(
        Target,
        RoutingHeader,
        Duration,
        oneshot::Sender<Result<Plan, NodeError>>,
    ),
    Commit(Box<Plan>, Vec<u8>, oneshot::Sender<Result<Sent, NodeError>>),
    Open(
        PackageId,
        oneshot::Sender<Result<(EnvelopeHeader, Vec<u8>), NodeError>>,
    ),
    Status(oneshot::Sender<Status>),
    Outbox(oneshot::Sender<Result<Vec<OutboxEntry>, NodeError>>),
    Records(oneshot::Sender<Vec<SignedRecord>>),
    Dial(Multiaddr),
    AttachmentKeys(
        PackageId,
        oneshot::Sender<Result<AttachmentKeys, NodeError>>,
    ),
    CaseFileKeys(
        ConsultationId,
        oneshot::Sender<Result<CaseFileKeys, NodeError>>,
    ),
    Candidates(RoutingHeader, oneshot::Sender<Result<usize, NodeError>>),
    OpenConsultation(
        Box<NewConsultation>,
        Vec<FileInfo>,
        OrgId,
        Option<IntakeKey>,
        oneshot::Sender<Result<consult::Opened, NodeError>>,
    ),
    FindIntake(
        IntakeKey,
        oneshot::Sender<Result<Option<ConsultationId>, NodeError>>,
    ),
    ForgetIntake(
        String,
        ConsultationId,
        oneshot::Sender<Result<(), NodeError>>,
    ),
    Act(
        Box<ActRequest>,
        oneshot::Sender<Result<WorkflowStatus, NodeError>>,
    ),
    Consultation(
        ConsultationId,
        oneshot::Sender<Result<ConsultationView, NodeError>>,
    ),
    Consultations(oneshot::Sender<Result<Vec<ConsultationId>, NodeError>>),
    Journal(oneshot::Sender<Result<JournalDump, NodeError>>),
    Record(
        Option<String>,
        Option<Role>,
        konsilium_protocol::journal::Action,
        oneshot::Sender<Result<(), NodeError>>,
    ),
    KeepOwnCopy(
        ConsultationId,
        Box<EnvelopeHeader>,
        oneshot::Sender<Result<(), NodeError>>,
    ),
    Inspect(
        Box<Inspect>,
        oneshot::Sender<Result<serde_json::Value, NodeError>>,
    ),
    Metrics(oneshot::Sender<String>),
    Shutdown(oneshot::Sender<()>),
}

type JournalDump = (Vec<JournalEntry>, Vec<Signed<Checkpoint>>);

/// One workflow step a user takes.
pub struct ActRequest {
    pub consultation: ConsultationId,
    pub role: Role,
    pub user: String,
    pub action: WorkflowAction,
    /// Required with `Action::Conclude`: the node signs it and fills in its hash.
    pub conclusion: Option<ConclusionText>,
}

type AttachmentKeys = (EnvelopeHeader, SealingKey, Vec<SealingPublicKey>, BlobStore);
/// What opening a consultation's case files needs: the keys of the package
/// that holds them, and their descriptions in the same order.
type CaseFileKeys = (AttachmentKeys, Vec<FileInfo>);

/// A running node, driven from other tasks.
pub struct NodeHandle {
    org: OrgId,
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<NodeEvent>,
    task: tokio::task::JoinHandle<()>,
    /// The node's own clock, so the API and views judge deadlines by the
    /// same time as the node (a moved clock moves everything).
    clock: std::sync::Arc<dyn Clock>,
}

/// What an outbound request was for.
enum Pending {
    /// A request of the directory machine's.
    Sync(SyncToken),
    Revocations,
    Deliver(Token),
    Receipt,
    /// A piece of an attachment, for the fetch machine.
    Fetch(PieceToken),
}

/// A consultation request lives as long as the longest legal deadline allows, with margin.
const REQUEST_LIFETIME: Duration = Duration::from_secs(14 * 86_400);

/// Gossipsub application score of a connected peer that has not been
/// admitted: far below the graylist threshold, so it gets no mesh slot and
/// its gossip is ignored.
const UNADMITTED_SCORE: f64 = -1000.0;

/// How many recent refusals `konsilium peers` shows.
const RECENT_REFUSALS: usize = 64;

/// How long a refused peer stays connected to hear why.
const REFUSAL_GRACE: Duration = Duration::from_millis(500);

/// How often unconnected bootstrap peers are dialled again.
const BOOTSTRAP_REDIAL: Duration = Duration::from_secs(3);

/// Open blob files being served to peers, so a piece costs one positioned read.
const SERVED_FILES: usize = 32;

struct Node {
    swarm: Swarm<Behaviour>,
    store: Store,
    /// The directory, and the protocol that keeps it in step with the federation.
    sync: DirectorySync<PeerId>,
    trust: Trust,
    identity: IdentityKey,
    sealing: SealingKey,
    chain: CertChain,
    me: VerifiedOrg,
    profile: Profile,
    sequence: u64,
    record_dirty: bool,
    external: Vec<Multiaddr>,
    /// Dialled at start and again whenever not connected: a bootstrap peer
    /// that is down, or a dial lost to a busy moment, must not leave the
    /// node alone for good.
    bootstrap: Vec<Multiaddr>,
    journal: Journal,
    clock: std::sync::Arc<dyn Clock>,
    /// Every consultation's deadline and escalation timers.
    timers: konsilium_protocol::timers::ConsultationTimers,
    /// Refused peers and when their connections are cut.
    refused: HashMap<PeerId, Timestamp>,
    listen_addrs: Vec<Multiaddr>,
    relay_via: Vec<OrgId>,
    /// Peers whose certificate chain we verified; our RPC gate is open to them.
    certified: HashMap<PeerId, OrgId>,
    /// Peers that answered our Hello with theirs: their gate is open to us.
    /// Requests go only to peers in both sets.
    welcomed: HashSet<PeerId>,
    /// Connected peers that have not yet presented a verified Hello, and
    /// when they will be cut if they do not.
    awaiting_hello: HashMap<PeerId, tokio::time::Instant>,
    /// The most recent refusals, for `konsilium peers`.
    recent_refusals: std::collections::VecDeque<inspect::RefusedPeer>,
    /// Revocation notices too large for our Hello, sent once a peer is ready.
    hello_left_out: Vec<RevocationNotice>,
    hello_sent: HashSet<PeerId>,
    pending: HashMap<request_response::OutboundRequestId, (PeerId, Pending)>,
    /// Delivery: next hops, retries, custody, receipts. Its entries are the
    /// outbox's index; storage is read only for a package's bytes.
    outbox: Outbox,
    blobs: BlobStore,
    /// Attachment transfers: what to ask for and when a blob is whole.
    fetches: Fetches<PeerId>,
    /// The partial file of each running transfer.
    partials: HashMap<[u8; 32], PartialBlob>,
    /// Attachments whose received bytes failed their hash, and how often.
    /// Twice means the copy they come from is damaged: the package is
    /// refused with that reason instead of being fetched again forever.
    served: HashMap<[u8; 32], std::fs::File>,
    candidate_requests:
        HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<usize, NodeError>>>,
    events: broadcast::Sender<NodeEvent>,
    data_dir: PathBuf,
    keep_delivered: Duration,
    started_at: Timestamp,
    peer_info: HashMap<PeerId, inspect::PeerInfo>,
    /// Our addresses as peers reported seeing them, most recent last.
    observed: std::collections::VecDeque<Multiaddr>,
    refused_orgs: BTreeMap<OrgId, inspect::RefusedOrg>,
    metrics: crate::metrics::Metrics,
    /// Consultations replayed from their signed steps, with how many steps
    /// each covers. History only grows, so an equal count is the same
    /// state: the deadline check every second and each metrics scrape need
    /// not verify every signature again.
    replayed: std::cell::RefCell<
        HashMap<ConsultationId, (usize, konsilium_protocol::workflow::Consultation)>,
    >,
    directory_topic: gossipsub::IdentTopic,
    revocation_topic: gossipsub::IdentTopic,
}

/// Starts a node; it runs until shut down.
pub async fn start(setup: NodeSetup) -> Result<NodeHandle, NodeError> {
    let now = setup.clock.now();
    let mut trust = Trust::new(setup.roots.iter().copied());
    crate::datadir::make_private(&setup.data_dir)?;
    let store = Store::open(&setup.data_dir.join("db"))?;
    let blobs = BlobStore::open(&setup.data_dir.join("blobs"))?;
    for notice in setup.revocations.iter().chain(store.revocations()?.iter()) {
        let _ = trust.apply_revocations(notice, now);
    }
    let me = trust
        .verify_chain(&setup.chain, now)
        .map_err(NodeError::OwnCertificate)?;
    if me.cert.org != setup.identity.org_id() {
        return Err(NodeError::KeyMismatch {
            cert: me.cert.org,
            key: setup.identity.org_id(),
        });
    }
    let mut directory = Directory::new();
    for result in directory.insert_many(store.records()?, &trust, now) {
        if let Err(e) = result {
            tracing::warn!("dropping stored record: {e}");
        }
    }
    let keypair = setup.identity.to_libp2p();
    let heartbeat = setup.gossip_heartbeat;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NodeError::Network(e.to_string()))?
        .with_quic()
        // `/dns4/`, `/dns6/` and `/dns/` addresses, as deployments write them.
        .with_dns()
        .map_err(|e| NodeError::Network(format!("DNS resolver: {e}")))?
        .with_behaviour(|key| {
            Behaviour::new(key, heartbeat).map_err(Box::<dyn std::error::Error + Send + Sync>::from)
        })
        .map_err(|e| NodeError::Network(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    for addr in &setup.listen {
        check_port_free(addr)?;
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NodeError::Network(format!("cannot listen on {addr}: {}", causes(&e))))?;
    }
    for addr in &setup.external {
        swarm.add_external_address(addr.clone());
    }
    let directory_topic = gossipsub::IdentTopic::new(DIRECTORY_TOPIC);
    let revocation_topic = gossipsub::IdentTopic::new(REVOCATION_TOPIC);
    for t in [&directory_topic, &revocation_topic] {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(t)
            .map_err(|e| NodeError::Network(e.to_string()))?;
    }
    let journal = resume_journal(&store, &setup.identity.org_id(), &setup.data_dir)?;
    let mut store = store;
    let clock = setup.clock.clone();
    store.anchor_journal(crate::store::Anchoring::new(
        IdentityKey::from_seed(*setup.identity.to_seed()),
        &setup.data_dir,
        move || clock.now(),
    ));
    store.flush()?;
    let sequence = store.meta_u64("sequence")?.unwrap_or(0);
    // The one scan of the stored outbox: from here on the machine knows
    // every change as it happens.
    let outbox = Outbox::new(
        OutboxConfig {
            me: me.cert.org,
            region: me.cert.region.clone(),
            relay: setup.relay_via.first().copied(),
        },
        u64::from_le_bytes(random_bytes()),
        store.outbox()?.iter().map(OutboxEntry::entry),
    );
    let org = me.cert.org;
    let peer_id = *swarm.local_peer_id();
    let (events, _) = broadcast::channel(1024);
    let (commands, command_rx) = mpsc::channel(64);
    let mut node = Node {
        swarm,
        store,
        sync: DirectorySync::new(
            SyncConfig {
                interval: setup.anti_entropy_every,
                ..SyncConfig::new(
                    match setup.scope {
                        DirectoryScope::Federation => Scope::Federation,
                        DirectoryScope::Region => Scope::Region(me.cert.region.clone()),
                    },
                    random_bytes(),
                )
            },
            directory,
        ),
        trust,
        identity: setup.identity,
        sealing: setup.sealing,
        chain: setup.chain,
        me,
        profile: setup.profile,
        sequence,
        record_dirty: true,
        external: setup.external,
        bootstrap: setup.bootstrap,
        refused: HashMap::new(),
        journal,
        clock: setup.clock.clone(),
        timers: Default::default(),
        listen_addrs: Vec::new(),
        relay_via: setup.relay_via,
        candidate_requests: HashMap::new(),
        certified: HashMap::new(),
        welcomed: HashSet::new(),
        awaiting_hello: HashMap::new(),
        recent_refusals: Default::default(),
        hello_left_out: Vec::new(),
        hello_sent: HashSet::new(),
        pending: HashMap::new(),
        outbox,
        blobs,
        fetches: Fetches::new(),
        partials: HashMap::new(),
        served: HashMap::new(),
        events: events.clone(),
        data_dir: setup.data_dir.clone(),
        keep_delivered: setup.keep_delivered,
        started_at: setup.clock.now(),
        peer_info: HashMap::new(),
        observed: std::collections::VecDeque::new(),
        refused_orgs: BTreeMap::new(),
        metrics: crate::metrics::Metrics::new(),
        replayed: Default::default(),
        directory_topic,
        revocation_topic,
    };
    node.publish_record()?;
    // The one scan of stored consultations: from here on the timers know
    // every change as it happens.
    for id in node.consultation_ids()? {
        node.watch(&id);
    }
    let clock = setup.clock.clone();
    let task = tokio::spawn(async move { node.run(command_rx).await });
    Ok(NodeHandle {
        org,
        peer_id,
        commands,
        events,
        task,
        clock,
    })
}

impl Node {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn emit(&self, event: NodeEvent) {
        tracing::debug!(?event);
        let m = &self.metrics;
        match &event {
            NodeEvent::PackageQueued { .. } => m.packages_queued.inc(),
            NodeEvent::PackageDelivered { .. } => m.deliveries.inc(),
            NodeEvent::DeliveryRetry { .. } => m.delivery_retries.inc(),
            NodeEvent::PackageReceived { bytes, .. } => {
                m.packages_received.inc();
                m.package_bytes
                    .with_label_values(&["received"])
                    .inc_by(*bytes as u64);
            }
            NodeEvent::Deadline { state, .. } => {
                m.deadline_events.with_label_values(&[state.as_str()]).inc()
            }
            NodeEvent::Escalated { .. } => m.escalations.inc(),
            _ => {}
        }
        let _ = self.events.send(event);
    }

    async fn run(&mut self, mut commands: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut redial = tokio::time::interval(BOOTSTRAP_REDIAL);
        loop {
            // Re-armed every turn: each input may have moved a machine's
            // next deadline, and the tick catches a clock moved forward.
            let wake = self.machines_wake();
            let machines_due =
                tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now));
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(Command::Shutdown(done)) => {
                        self.checkpoint_journal();
                        let _ = self.store.flush();
                        let _ = done.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => return,
                },
                _ = tick.tick() => self.on_tick(),
                _ = redial.tick() => self.dial_bootstrap(),
                _ = machines_due, if wake.is_some() => self.on_machines_due(),
            }
            self.drive_outbox();
        }
    }

    /// When the earliest protocol machine needs waking, on tokio's clock:
    /// the node's clock may run ahead of the system's.
    fn machines_wake(&self) -> Option<tokio::time::Instant> {
        let at = [
            self.sync.poll_timeout(),
            self.outbox.poll_timeout(),
            self.timers.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()?;
        Some(tokio::time::Instant::now() + at.since(self.now()))
    }

    /// Wakes every machine whose time has come.
    fn on_machines_due(&mut self) {
        let now = self.now();
        if self.sync.poll_timeout().is_some_and(|t| t <= now) {
            self.sync.handle_timeout(now);
            self.drive_sync();
        }
        if self.outbox.poll_timeout().is_some_and(|t| t <= now) {
            self.outbox.handle_timeout(now);
        }
        self.on_timers();
    }

    fn on_tick(&mut self) {
        self.cut_refused();
        self.remove_expired_blobs();
        // A clock moved forward (tests, an operator's correction) makes
        // machines due before their sleep ends.
        self.on_machines_due();
        if self.record_dirty
            && let Err(e) = self.publish_record()
        {
            tracing::error!("cannot publish own record: {e}");
        }
    }

    /// Signs and publishes this organization's record with the next sequence number.
    fn publish_record(&mut self) -> Result<(), NodeError> {
        self.record_dirty = false;
        self.sequence += 1;
        self.store.set_meta_u64("sequence", self.sequence)?;
        let mut addresses: Vec<Multiaddr> = self.external.clone();
        addresses.extend(
            self.listen_addrs
                .iter()
                .filter(|a| !is_unspecified(a))
                .cloned(),
        );
        let record = self.profile.record(
            self.chain.clone(),
            self.sealing.public(),
            addresses,
            self.sequence,
            self.now(),
        );
        let signed = Signed::sign(&self.identity, &record);
        match self
            .sync
            .insert_wanted(self.now(), None, vec![signed.clone()], &self.trust)
            .pop()
        {
            Some(Ok(_)) | None => self.drive_sync(),
            Some(Err(e)) => {
                return Err(NodeError::OwnCertificate(CertError::Field(
                    konsilium_protocol::limits::FieldError::Invalid {
                        field: "own directory record",
                        reason: e.to_string(),
                    },
                )));
            }
        }
        self.store.put_record(&self.me.cert.org, &signed)?;
        self.store.flush()?;
        if let Ok(frame) = wire::encode(&signed) {
            // No peers yet is fine: anti-entropy on connect carries it.
            if self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(self.directory_topic.clone(), frame)
                .is_ok()
            {
                self.metrics.gossip_published.inc();
            }
        }
        Ok(())
    }

    fn hello(&mut self) -> Hello {
        let (hello, left_out) = Hello {
            chain: self.chain.clone(),
            record: self
                .directory()
                .get(&self.me.cert.org)
                .map(|e| e.signed().clone()),
            revocations: self.trust.revocation_notices().cloned().collect(),
            time: self.now(),
        }
        .fit();
        self.hello_left_out = left_out;
        hello
    }

    fn send_hello(&mut self, peer: PeerId) {
        let hello = self.hello();
        self.swarm.behaviour_mut().hello.send_request(&peer, hello);
    }

    /// Both sides have admitted each other: requests can flow.
    fn ready(&self, peer: &PeerId) -> bool {
        self.certified.contains_key(peer) && self.welcomed.contains(peer)
    }

    fn request(&mut self, peer: PeerId, request: Request, what: Pending) {
        let id = self.swarm.behaviour_mut().rpc.send_request(&peer, request);
        self.pending.insert(id, (peer, what));
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                self.listen_addrs.push(address.clone());
                self.record_dirty = true;
                self.emit(NodeEvent::Listening(address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                if endpoint.is_dialer() {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, endpoint.get_remote_address().clone());
                }
                let remote = endpoint.get_remote_address().clone();
                let info = self.peer_info.entry(peer_id).or_default();
                if !info.addresses.contains(&remote) {
                    info.addresses.push(remote);
                }
                if !self.certified.contains_key(&peer_id) {
                    // No mesh slot and no gossip accepted until admitted.
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .set_application_score(&peer_id, UNADMITTED_SCORE);
                    self.awaiting_hello
                        .entry(peer_id)
                        .or_insert_with(|| tokio::time::Instant::now() + HELLO_TIMEOUT);
                }
                if self.hello_sent.insert(peer_id) {
                    self.send_hello(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.not_ready(peer_id);
                self.awaiting_hello.remove(&peer_id);
                self.hello_sent.remove(&peer_id);
                self.peer_info.remove(&peer_id);
                self.sync.handle_peer_gone(self.now(), peer_id);
                self.drive_sync();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(event)) => self.on_rpc(event),
            SwarmEvent::Behaviour(BehaviourEvent::Hello(event)) => self.on_hello(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if !self.observed.contains(&info.observed_addr) {
                    self.observed.push_back(info.observed_addr.clone());
                    if self.observed.len() > inspect::MAX_OBSERVED {
                        self.observed.pop_front();
                    }
                }
                let known = self.peer_info.entry(peer_id).or_default();
                known.protocol_version = Some(info.protocol_version.clone());
                known.agent_version = Some(info.agent_version.clone());
                known.protocols = info.protocols.iter().map(|p| p.to_string()).collect();
                for addr in info.listen_addrs {
                    if !is_unspecified(&addr) {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                self.peer_info.entry(peer).or_default().rtt = Some(rtt);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { .. }))
            | SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated { .. })) => {}
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, "dial failed: {error}");
                if let Some(org) = peer_id.and_then(|p| OrgId::from_peer_id(&p).ok()) {
                    self.outbox.handle_dial_failed(org, &error.to_string());
                }
            }
            _ => {}
        }
    }

    fn on_rpc(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let response = self.answer(peer, request);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .rpc
                    .send_response(channel, response);
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.candidate_requests.remove(&request_id) {
                    let result = match response {
                        Response::Records(batch) => {
                            let n = self
                                .sync
                                .insert_wanted(self.now(), Some(peer), batch.records, &self.trust)
                                .iter()
                                .filter(|r| r.is_ok())
                                .count();
                            self.drive_sync();
                            Ok(n)
                        }
                        other => Err(NodeError::NoRoute(format!(
                            "regional center answered {other:?}"
                        ))),
                    };
                    let _ = reply.send(result);
                } else if let Some((_, what)) = self.pending.remove(&request_id) {
                    self.on_response(peer, what, response);
                }
            }
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                if let Some(reply) = self.candidate_requests.remove(&request_id) {
                    let _ = reply.send(Err(NodeError::NoRoute(format!(
                        "regional center unreachable: {error}"
                    ))));
                }
                if let Some((_, what)) = self.pending.remove(&request_id) {
                    match what {
                        Pending::Deliver(token) => {
                            self.outbox
                                .handle_failure(self.now(), token, &error.to_string())
                        }
                        // The partial file keeps what arrived; the next delivery attempt resumes.
                        Pending::Fetch(token) => {
                            self.fetches.handle_failure(token, &error.to_string());
                            self.drive_fetches();
                        }
                        Pending::Sync(token) => {
                            self.sync.handle_failure(self.now(), token);
                            self.drive_sync();
                        }
                        _ => tracing::debug!(%peer, "request failed: {error}"),
                    }
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound request failed: {error}")
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn answer(&mut self, peer: PeerId, request: Request) -> Response {
        // The gate already keeps the RPC closed to unadmitted peers; this
        // covers a peer refused while its stream was being read.
        let Some(&from) = self.certified.get(&peer) else {
            return Response::Refused(Refusal::NotAdmitted);
        };
        match request {
            request @ (Request::SyncOffer(_)
            | Request::PushRecords(_)
            | Request::WantRecords(_)) => {
                let response = self
                    .sync
                    .handle_request(self.now(), peer, request, &self.trust);
                self.drive_sync();
                response
            }
            Request::Deliver(package) => self.receive_package(from, package),
            Request::Receipt(receipt) => {
                // Done whatever it was: a receipt for a package delivered
                // already, or a bad one, needs nothing from the sender.
                if let Err(e) = self.outbox.handle_receipt(receipt) {
                    tracing::debug!(%from, "receipt: {e}");
                }
                Response::Done
            }
            Request::Candidates {
                specialty,
                min_level,
                urgency,
            } => self.candidates(from, specialty, min_level, urgency),
            Request::FetchBlob { hash, offset, len } => {
                self.serve_piece(hash, offset, len.min(MAX_BLOB_CHUNK))
            }
            Request::Revocations(notices) => {
                for n in &notices {
                    self.adopt_revocation(n, self.now());
                }
                Response::Done
            }
        }
    }

    fn on_response(&mut self, peer: PeerId, what: Pending, response: Response) {
        match (what, response) {
            (Pending::Sync(token), response) => {
                if let Err(e) = self
                    .sync
                    .handle_response(self.now(), token, response, &self.trust)
                {
                    tracing::debug!(%peer, "directory exchange: {e}");
                }
                self.drive_sync();
            }
            (Pending::Deliver(token), response) => {
                self.outbox.handle_response(self.now(), token, response)
            }
            (Pending::Fetch(token), Response::Blob(bytes)) => {
                self.fetches.handle_piece(token, bytes);
                self.drive_fetches();
            }
            (Pending::Fetch(token), other) => {
                tracing::warn!(%peer, "attachment fetch refused: {other:?}");
                self.fetches
                    .handle_failure(token, &format!("{peer} answered {other:?}"));
                self.drive_fetches();
            }
            (Pending::Revocations | Pending::Receipt, _) => {}
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Plan(target, routing, lifetime, reply) => {
                let _ = reply.send(self.plan(target, routing, lifetime));
            }
            Command::Commit(plan, body, reply) => {
                let _ = reply.send(self.commit(*plan, &body));
            }
            Command::Candidates(routing, reply) => self.ask_candidates(routing, reply),
            Command::OpenConsultation(new, files, consultant, intake, reply) => {
                let _ =
                    reply.send(self.open_consultation(&new, files, consultant, intake.as_ref()));
            }
            Command::FindIntake(key, reply) => {
                let _ = reply.send(self.find_intake(&key));
            }
            Command::ForgetIntake(identifier, id, reply) => {
                let _ = reply.send(self.forget_intake(&identifier, id));
            }
            Command::Act(req, reply) => {
                let ActRequest {
                    consultation,
                    role,
                    user,
                    action,
                    conclusion,
                } = *req;
                let _ = reply.send(self.act(consultation, role, &user, action, conclusion));
            }
            Command::Consultation(id, reply) => {
                let _ = reply.send(self.consultation_view(&id));
            }
            Command::Consultations(reply) => {
                let _ = reply.send(self.consultation_ids());
            }
            Command::Inspect(what, reply) => {
                let _ = reply.send(self.inspect(*what));
            }
            Command::Metrics(reply) => {
                let _ = reply.send(self.render_metrics());
            }
            Command::KeepOwnCopy(id, header, reply) => {
                let _ = reply.send(self.keep_own_copy(id, *header));
            }
            Command::Record(user, role, action, reply) => {
                let result = self
                    .append_journal(user, role, action)
                    .and_then(|_| self.store.flush().map(drop).map_err(NodeError::from));
                let _ = reply.send(result);
            }
            Command::Journal(reply) => {
                let dump = self
                    .store
                    .journal()
                    .and_then(|e| Ok((e, self.store.checkpoints()?)));
                let _ = reply.send(dump.map_err(NodeError::from));
            }
            Command::AttachmentKeys(id, reply) => {
                let _ = reply.send(self.attachment_keys(id));
            }
            Command::CaseFileKeys(id, reply) => {
                let _ = reply.send(self.case_file_keys(&id));
            }
            Command::Open(id, reply) => {
                let _ = reply.send(self.open_package(id));
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Outbox(reply) => {
                let _ = reply.send(self.store.outbox().map_err(NodeError::from));
            }
            Command::Records(reply) => {
                let _ = reply.send(
                    self.directory()
                        .entries()
                        .map(|e| e.signed().clone())
                        .collect(),
                );
            }
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::warn!("cannot dial {addr}: {e}");
                }
            }
            Command::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    fn status(&self) -> Status {
        Status {
            org: self.me.cert.org,
            name: self.me.cert.name.clone(),
            level: self.me.cert.level,
            region: self.me.cert.region.clone(),
            listen: self.listen_addrs.clone(),
            peers: self
                .certified
                .values()
                .copied()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            directory_size: self.directory().len(),
            directory_digest: self.directory().digest(),
            outbox: self.outbox.len(),
            inbox: self.store.inbox_len(),
        }
    }
}

/// An error and its causes on one line: libp2p's transport errors often
/// say nothing themselves and keep the reason in their source.
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out += ": ";
            }
            out += &text;
        }
        source = cause.source();
    }
    if out.is_empty() {
        out = format!("{e:?}");
    }
    out
}

/// libp2p binds TCP with SO_REUSEPORT, so a second node on the same port
/// would start and silently take half the inbound connections. A plain bind
/// (no SO_REUSEPORT) fails if anyone holds the port: refuse to start then.
fn check_port_free(addr: &Multiaddr) -> Result<(), NodeError> {
    use libp2p::multiaddr::Protocol as P;
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next() {
        Some(P::Ip4(ip)) => ip.into(),
        Some(P::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    let (port, udp) = match parts.next() {
        Some(P::Tcp(port)) => (port, false),
        Some(P::Udp(port)) => (port, true),
        _ => return Ok(()),
    };
    if port == 0 {
        return Ok(());
    }
    let bound = if udp {
        std::net::UdpSocket::bind((ip, port)).map(drop)
    } else {
        std::net::TcpListener::bind((ip, port)).map(drop)
    };
    bound.map_err(|e| {
        let proto = if udp { "UDP" } else { "TCP" };
        NodeError::Network(match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "{proto} port {port} on {ip} is already in use (is another node running?); \
                 choose another port in network.listen ({addr})"
            ),
            _ => format!("cannot listen on {addr}: {e}"),
        })
    })
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_unspecified(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// Loads the journal, checks it against its signed checkpoints, and continues
/// it. A journal that fails the check still continues (the node must keep
/// working), but loudly: `konsilium journal verify` names the problem.
/// Resumes the journal where the database has it. If the database lost
/// or changed entries its anchor vouched for, the node does not start:
/// writing on would replace the anchor and erase the evidence.
fn resume_journal(
    store: &Store,
    org: &OrgId,
    data_dir: &std::path::Path,
) -> Result<Journal, NodeError> {
    let entries = store.journal()?;
    let mut checkpoints = store.checkpoints()?;
    let anchor = crate::anchor::read(data_dir).map_err(StoreError::from)?;
    let anchored = anchor.is_some();
    checkpoints.extend(anchor);
    if let Err(e) = konsilium_protocol::journal::verify(&entries, &checkpoints, org) {
        if anchored {
            return Err(NodeError::JournalDamaged {
                anchor: crate::anchor::path(data_dir),
                reason: e.to_string(),
            });
        }
        tracing::error!("the consultation journal failed verification: {e}");
    }
    Ok(entries.last().map(Journal::resume).unwrap_or_default())
}

/// Opens one attachment into a new file on a blocking thread, streaming.
async fn open_to_file(
    (header, sealing, keys, blobs): AttachmentKeys,
    index: u32,
    dest: PathBuf,
) -> Result<u64, NodeError> {
    tokio::task::spawn_blocking(move || {
        let failed = |e: std::io::Error| NodeError::Attachment(format!("{}: {e}", dest.display()));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&dest).map_err(failed)?);
        let n = blobs.open_attachment(&header, index, &sealing, &keys, &mut out)?;
        std::io::Write::flush(&mut out).map_err(failed)?;
        Ok(n)
    })
    .await
    .map_err(|e| NodeError::Attachment(e.to_string()))?
}

/// Seals each attachment for the plan's recipient on a blocking thread,
/// streaming, and lists it in the plan's header.
async fn seal_attachments(plan: &mut Plan, attachments: Vec<Attachment>) -> Result<(), NodeError> {
    for (index, attachment) in attachments.into_iter().enumerate() {
        let header = plan.header.clone();
        let sealing = SealingKey::from_seed(*plan.sealing.to_seed());
        let (key, blobs) = (plan.recipient_key, plan.blobs.clone());
        let blob = tokio::task::spawn_blocking(move || -> Result<BlobRef, NodeError> {
            let mut source: Box<dyn std::io::Read> = match attachment {
                Attachment::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes)),
                Attachment::File(path) => Box::new(
                    std::fs::File::open(&path)
                        .map_err(|e| NodeError::Attachment(format!("{}: {e}", path.display())))?,
                ),
            };
            Ok(blobs.seal_attachment(
                &header,
                index as u32,
                &sealing,
                &key,
                random_bytes(),
                &mut source,
            )?)
        })
        .await
        .map_err(|e| NodeError::Attachment(e.to_string()))??;
        plan.header.attachments.push(blob);
    }
    Ok(())
}
