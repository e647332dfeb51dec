//! One organization's node: the event loop that joins the libp2p swarm,
//! the durable store and the protocol state machines.
//!
//! All protocol decisions (is this certificate valid, which record wins,
//! where does a request go, is this package intact) are made by
//! `konsilium-protocol`; this module moves bytes, keeps time and persists.

pub use crate::config::{DirectoryScope, Profile};
use crate::net::behaviour::{
    Behaviour, BehaviourEvent, DIRECTORY_TOPIC, HELLO_TIMEOUT, REVOCATION_TOPIC,
};
use crate::storage::blobs::{BlobError, BlobStore};

mod attachments;
mod backup;
mod clock;
mod commands;
mod consult;
mod directory_sync;
mod error;
mod escalation;
mod events;
mod group_commit;
mod handle;
mod inbox;
mod inspect;
mod keep;
mod offload;
mod outbox;
mod parcels;
mod partials;
mod peers;
mod probe;
mod reach;
mod recovery;
mod rotation;
mod rpc;
mod setup;
mod video;
mod video_probe;
mod views;

use crate::storage::store::{InboxEntry, Origin, OutboxEntry, SentEntry, Store, StoreError};
use attachments::{open_to_file, seal_attachments};
pub use clock::{Clock, OffsetClock, SystemClock, now, random_bytes};
pub use commands::{
    ActRequest, Attachment, CaseFile, INTAKE_RETENTION, Intake, IntakeKey, SendRequest, Sent,
    Target, VideoPayload,
};
use commands::{AttachmentKeys, CaseFileKeys, Command, JournalDump, Plan, Queued};
pub use consult::{ConclusionText, NewConsultation};
pub use error::NodeError;
use error::causes;
pub use events::{NodeEvent, Status};
use futures::{FutureExt, StreamExt};
pub use handle::NodeHandle;
use inbox::{Answer, Reply};
pub use inspect::Inspect;
use konsilium_protocol::admission::{
    Admission, Config as AdmissionConfig, Offence, Output as AdmissionOutput,
    Refusal as AdmissionRefusal,
};
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
use konsilium_protocol::reach::{Config as ReachConfig, Reach};
use konsilium_protocol::route::{self, RouteDecision, RouteRequest};
use konsilium_protocol::rpc::{Hello, HelloAnswer, MAX_BLOB_CHUNK, Refusal, Request, Response};
use konsilium_protocol::seal::keyring::{Keyring, Purpose, Retired};
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
use offload::by_size;
use rpc::Pending;
use setup::is_unspecified;
pub use setup::{ANTI_ENTROPY_EVERY, GOSSIP_HEARTBEAT, MAX_RESIDENT_BYTES, NodeSetup, start};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};
pub use views::{ConsultationPage, ConsultationView};

/// How many candidates a regional center returns to a scoped node.
const MAX_CANDIDATES: usize = 8;
/// A consultation request lives as long as the longest legal deadline allows, with margin.
const REQUEST_LIFETIME: Duration = Duration::from_secs(14 * 86_400);

/// Gossipsub application score of a connected peer that has not been
/// admitted: far below the graylist threshold, so it gets no mesh slot and
/// its gossip is ignored.
const UNADMITTED_SCORE: f64 = -1000.0;

/// How many recent refusals `konsilium peers` shows.
const RECENT_REFUSALS: usize = 64;

/// How long a changed record waits for further changes before it is
/// published, so the listen addresses that come up at start share one.
const RECORD_SETTLE: Duration = Duration::from_millis(200);

/// How often unconnected bootstrap peers are dialled again.
const BOOTSTRAP_REDIAL: Duration = Duration::from_secs(3);

/// Open blob files being served to peers, so a piece costs one positioned read.
const SERVED_FILES: usize = 32;

struct Node {
    swarm: Swarm<Behaviour>,
    store: std::sync::Arc<Store>,
    /// Flushes for writes that may trail the step they record.
    flush_soon: crate::storage::background_flush::BackgroundFlush,
    /// Answers waiting for a flush (group commit).
    group: group_commit::GroupCommit,
    /// The directory, and the protocol that keeps it in step with the federation.
    sync: DirectorySync<PeerId>,
    trust: Trust,
    identity: IdentityKey,
    /// The sealing key, and those rotated away from (which still open what
    /// was sealed to them).
    keyring: Keyring,
    chain: CertChain,
    me: VerifiedOrg,
    profile: Profile,
    sequence: u64,
    record_dirty: bool,
    /// Work done off the event loop reports back here, as a command. Its
    /// own channel: the loop still ends when every handle is gone.
    loopback: mpsc::UnboundedSender<Command>,
    /// When the changed record is published.
    record_due: Option<tokio::time::Instant>,
    /// When the next kept attachment is due for deletion.
    next_blob_expiry: Option<Timestamp>,
    external: Vec<Multiaddr>,
    /// Dialled at start and again whenever not connected: a bootstrap peer
    /// that is down, or a dial lost to a busy moment, must not leave the
    /// node alone for good.
    bootstrap: Vec<Multiaddr>,
    journal: Journal,
    clock: std::sync::Arc<dyn Clock>,
    /// Every consultation: steps in order, held steps, deadlines and
    /// escalations. Storage is read only for a consultation's extract and
    /// files.
    desk: konsilium_protocol::desk::Desk,
    listen_addrs: Vec<Multiaddr>,
    relay_via: Vec<OrgId>,
    /// Who is admitted, who must still say Hello, who is refused and when
    /// their connections are cut. Our RPC gate is open to admitted peers;
    /// requests go only to peers that admitted us too.
    admission: Admission<PeerId>,
    /// The most recent refusals, for `konsilium peers`.
    recent_refusals: std::collections::VecDeque<inspect::RefusedPeer>,
    /// Revocation notices too large for our Hello, sent once a peer is ready.
    hello_left_out: Vec<RevocationNotice>,
    pending: HashMap<request_response::OutboundRequestId, (PeerId, Pending)>,
    /// Delivery: next hops, retries, custody, receipts. Its entries are the
    /// outbox's index; storage is read only for a package's bytes.
    outbox: Outbox,
    blobs: BlobStore,
    /// Attachment transfers: what to ask for and when a blob is whole.
    fetches: Fetches<PeerId>,
    /// The partial files of running transfers, on their own thread.
    partials: partials::Partials,
    /// Transfers whose partial file is being opened.
    beginning: HashSet<[u8; 32]>,
    /// Attachments whose received bytes failed their hash, and how often.
    /// Twice means the copy they come from is damaged: the package is
    /// refused with that reason instead of being fetched again forever.
    served: HashMap<[u8; 32], std::fs::File>,
    /// Peers found entitled to an attachment (a package queued here for
    /// them lists it), at most four times [`SERVED_FILES`] pairs.
    entitled: HashSet<(OrgId, [u8; 32])>,
    candidate_requests:
        HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<usize, NodeError>>>,
    /// Packages for us being opened off the event loop, and who waits for
    /// each one's answer.
    opening: HashMap<PackageId, Vec<inbox::Reply>>,
    /// The sealed bytes of those packages.
    opening_bytes: usize,
    /// This turn's packages for each hop, leaving together at its end.
    parcels: konsilium_protocol::outbox::Parcels<seal::SealedPackage>,
    /// Parcels peers sent us, answered once every package in one is.
    gathering: parcels::Gathering,
    /// Packages opened at once: one a core.
    open_slots: std::sync::Arc<tokio::sync::Semaphore>,
    events: broadcast::Sender<NodeEvent>,
    data_dir: PathBuf,
    keep_delivered: Duration,
    /// What peers' requests and answers not yet written hold.
    budgets: crate::net::budget::Budgets,
    started_at: Timestamp,
    peer_info: HashMap<PeerId, inspect::PeerInfo>,
    /// Our addresses as peers reported seeing them, most recent last.
    observed: std::collections::VecDeque<Multiaddr>,
    refused_orgs: BTreeMap<OrgId, inspect::RefusedOrg>,
    metrics: crate::telemetry::metrics::Metrics,
    directory_topic: gossipsub::IdentTopic,
    revocation_topic: gossipsub::IdentTopic,
    /// Asking counterparts for consultation state this node lost.
    recovery: konsilium_protocol::recovery::Recovery,
    /// Who waits for the recovery round to finish (`konsilium recover`).
    recovery_waiters:
        Vec<oneshot::Sender<Result<crate::telemetry::report::RecoveryReport, NodeError>>>,
    /// When each organization last had its histories queued.
    recoveries_served: HashMap<OrgId, Timestamp>,
    /// A bootstrap node publishes no record and takes no packages.
    role: crate::config::NodeRole,
    /// Whether others can dial us, and our relay reservations.
    reach: Reach<PeerId, Multiaddr>,
    /// How each open connection was made: the fallback ladder's rungs.
    ladder: konsilium_protocol::ladder::Ladder<PeerId, libp2p::swarm::ConnectionId>,
    /// The reachability and number of confirmed addresses our record was
    /// last published with: a change changes which addresses it lists.
    published_reach: (konsilium_protocol::reach::Reachability, usize),
    /// Every listen address is a loopback one (tests, one machine).
    loopback_only: bool,
    /// Video links to other sites, when a video address is configured.
    media: Option<crate::media::MediaPlane>,
    /// Video probe links this site opened, and those it answered.
    video_probes: HashSet<konsilium_protocol::video::SessionId>,
    /// Probe links answered here, by the session they are held under, and
    /// when each was answered.
    answered_probes: HashMap<konsilium_protocol::video::SessionId, std::time::Instant>,
    /// The STUN service, on a bootstrap node.
    stun: Option<crate::stun::StunService>,
    /// When consultations' video sessions open and end.
    schedule: konsilium_protocol::video::Schedule,
    /// Our listeners on relays' circuit addresses: one per reservation.
    relay_listeners: HashMap<libp2p::core::transport::ListenerId, PeerId>,
    /// Which idle connections stay open.
    keep: konsilium_protocol::keep::Keep<PeerId>,
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

    async fn run(
        &mut self,
        mut commands: mpsc::Receiver<Command>,
        mut loopback: mpsc::UnboundedReceiver<Command>,
        mut media: mpsc::UnboundedReceiver<crate::media::MediaEvent>,
    ) {
        let mut redial = tokio::time::interval(BOOTSTRAP_REDIAL);
        let clock = self.clock.clone();
        // What start-up drove (an outbox rebuilt from disk) is settled
        // before the first input.
        self.end_turn();
        loop {
            // Re-armed every turn: each input may have moved a machine's
            // next deadline. Nothing runs on a period: the loop sleeps until
            // the earliest thing due, or until the clock jumps.
            let wake = self.machines_wake();
            let machines_due =
                tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now));
            let jumped = async {
                match clock.jumps() {
                    Some(jumps) => jumps.notified().await,
                    None => std::future::pending().await,
                }
            };
            let mut from_handle = tokio::select! {
                event = self.swarm.select_next_some() => {
                    self.on_swarm_event(event);
                    None
                }
                command = commands.recv() => Some(command),
                Some(done) = loopback.recv() => {
                    self.on_command(done);
                    None
                }
                Some(event) = media.recv() => {
                    self.on_media(event);
                    None
                }
                _ = redial.tick() => {
                    self.dial_bootstrap();
                    None
                }
                _ = machines_due, if wake.is_some() => {
                    self.on_machines_due();
                    None
                }
                _ = jumped => {
                    self.on_machines_due();
                    None
                }
            };
            // Then what is already waiting, so that one flush answers it
            // all. A handle's command is taken here, where shutdown is.
            for taken in 1.. {
                match from_handle.take() {
                    Some(Some(Command::Shutdown(done))) => {
                        self.settle();
                        self.checkpoint_journal();
                        let _ = self.store.flush();
                        let _ = done.send(());
                        return;
                    }
                    Some(Some(command)) => self.on_command(command),
                    Some(None) => {
                        self.settle();
                        return;
                    }
                    None => {}
                }
                self.drive_outbox();
                if taken == group_commit::TURN_INPUTS {
                    break;
                }
                if let Ok(done) = loopback.try_recv() {
                    self.on_command(done);
                } else if let Ok(next) = commands.try_recv() {
                    from_handle = Some(Some(next));
                } else if let Some(event) = self.swarm.select_next_some().now_or_never() {
                    self.on_swarm_event(event);
                } else if let Ok(event) = media.try_recv() {
                    // An offer written at once during this turn leaves in it.
                    self.on_media(event);
                } else {
                    break;
                }
            }
            self.end_turn();
            if self.record_dirty && self.record_due.is_none() {
                // Listen addresses come up one by one at start: one record for them all.
                self.record_due = Some(tokio::time::Instant::now() + RECORD_SETTLE);
            }
        }
    }

    /// When the earliest protocol machine, attachment deletion or record
    /// publication needs waking, on tokio's clock: the node's clock may run
    /// ahead of the system's.
    fn machines_wake(&self) -> Option<tokio::time::Instant> {
        let at = [
            self.admission.poll_timeout(),
            self.sync.poll_timeout(),
            self.outbox.poll_timeout(),
            self.desk.poll_timeout(),
            self.recovery.poll_timeout(),
            self.reach.poll_timeout(),
            self.schedule.poll_timeout(),
            self.keep.poll_timeout(),
            self.ladder.poll_timeout(),
            self.next_blob_expiry,
        ]
        .into_iter()
        .flatten()
        .min();
        let machines = at.map(|at| tokio::time::Instant::now() + at.since(self.now()));
        [machines, self.record_due].into_iter().flatten().min()
    }

    /// Wakes every machine whose time has come.
    fn on_machines_due(&mut self) {
        let now = self.now();
        if self.admission.poll_timeout().is_some_and(|t| t <= now) {
            self.admission.handle_timeout(now, &self.trust);
            self.drive_admission();
        }
        if self.sync.poll_timeout().is_some_and(|t| t <= now) {
            self.sync.handle_timeout(now);
            self.drive_sync();
        }
        if self.outbox.poll_timeout().is_some_and(|t| t <= now) {
            self.outbox.handle_timeout(now);
        }
        self.on_timers();
        if self.recovery.poll_timeout().is_some_and(|t| t <= now) {
            self.recovery.handle_timeout(now);
            self.drive_recovery();
        }
        if self.reach.poll_timeout().is_some_and(|t| t <= now) {
            self.reach.handle_timeout(now);
            self.drive_reach();
        }
        if self.schedule.poll_timeout().is_some_and(|t| t <= now) {
            self.schedule.handle_timeout(now);
            self.drive_schedule();
        }
        if self.keep.poll_timeout().is_some_and(|t| t <= now) {
            self.on_keep_due(now);
        }
        if self.ladder.poll_timeout().is_some_and(|t| t <= now) {
            self.on_ladder_due(now);
        }
        if self.next_blob_expiry.is_some_and(|t| t <= now) {
            self.next_blob_expiry = None;
            self.remove_expired_blobs_once_durable();
        }
        if self
            .record_due
            .is_some_and(|at| at <= tokio::time::Instant::now())
        {
            self.record_due = None;
            if let Err(e) = self.publish_record() {
                tracing::error!("cannot publish own record: {e}");
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let loopback =
                    crate::net::scope::scope(&address) == crate::net::scope::Scope::Loopback;
                if self.reach.reachability() == konsilium_protocol::reach::Reachability::Public
                    && self.external.is_empty()
                    && !reach::is_relayed(&address)
                    && !is_unspecified(&address)
                    && (!loopback || self.loopback_only)
                {
                    // Declared public (a bootstrap node) with no external
                    // address configured: what relays hand out in
                    // reservations and identify tells peers (loopback only
                    // from a node on loopback alone: to others it leads
                    // to themselves).
                    self.swarm.add_external_address(address.clone());
                }
                self.listen_addrs.push(address.clone());
                self.record_dirty = true;
                self.emit(NodeEvent::Listening(address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                let remote = endpoint.get_remote_address().clone();
                if endpoint.is_dialer() && !reach::is_relayed(&remote) {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, remote.clone());
                }
                // An inbound circuit's remote address is just `/p2p/<peer>`:
                // the endpoint knows.
                self.on_link_up(connection_id, peer_id, endpoint.is_relayed());
                self.keep_connected(peer_id, endpoint.is_dialer());
                // That bare `/p2p/<peer>` is nowhere to dial or reserve at.
                let bare = endpoint.is_relayed() && !reach::is_relayed(&remote);
                let info = self.peer_info.entry(peer_id).or_default();
                if !bare && !info.addresses.contains(&remote) {
                    info.addresses.push(remote);
                }
                self.on_connected(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                self.on_link_down(connection_id);
                self.keep_disconnected(&peer_id, endpoint.is_dialer());
                if num_established == 0 {
                    self.on_disconnected(peer_id);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.forget_listen_addrs(std::slice::from_ref(&address));
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => self.on_listener_closed(listener_id, &addresses, reason.map_err(|e| causes(&e))),
            SwarmEvent::ExternalAddrExpired { address } => self.on_external_expired(&address),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(event)) => {
                self.on_relay_client(event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(event)) => self.on_hole_punch(event),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(event)) => self.on_probe(event),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => self.on_relay_served(event),
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
                let met_at = known.addresses.first().cloned();
                for addr in info.listen_addrs {
                    let useful = met_at
                        .as_ref()
                        .is_some_and(|m| crate::net::scope::reachable_from(&addr, m));
                    if !is_unspecified(&addr) && useful {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
                self.offer_relay(peer_id);
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

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Plan(target, routing, lifetime, reply) => {
                let _ = reply.send(self.plan(target, routing, lifetime));
            }
            Command::Queue(queued, reply) => self.queue_in_group(*queued, reply),
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
            Command::AttachmentFile(report) => self.on_file_report(report),
            Command::Opened {
                from,
                package,
                body,
            } => self.on_opened(from, *package, body),
            Command::Flushed(flushed) => self.on_flushed(flushed),
            Command::Resealed {
                from,
                to,
                reason,
                plan,
            } => self.on_resealed(from, to, reason, plan),
            Command::HistoryResealed { id, to, plan } => self.on_history_resealed(id, to, plan),
            Command::StepPlans(id, reply) => {
                let _ = reply.send(self.step_plans(&id));
            }
            Command::Act(req, plans, reply) => {
                let ActRequest {
                    consultation,
                    role,
                    user,
                    action,
                    conclusion,
                } = *req;
                let step = consult::LocalStep {
                    id: consultation,
                    role,
                    user: &user,
                    action,
                    conclusion,
                };
                let _ = reply.send(self.act(step, plans));
            }
            Command::Consultation(id, reply) => {
                let _ = reply.send(self.consultation_view(&id));
            }
            Command::Consultations(reply) => {
                let _ = reply.send(self.consultation_ids());
            }
            Command::ConsultationPage(status, after, limit, reply) => {
                let _ = reply.send(self.consultation_page(status, after, limit));
            }
            Command::Backup(dest, reply) => self.backup(dest, reply),
            Command::Revoke(notices, reply) => {
                let _ = reply.send(self.revoke(notices));
            }
            Command::Reload(profile, bootstrap, reply) => {
                // Republished (with a new sequence) at once: the settling
                // delay is for addresses that come up one by one, and an
                // operator's profile arrives whole.
                self.profile = *profile;
                self.record_dirty = true;
                self.record_due = Some(tokio::time::Instant::now());
                self.bootstrap = bootstrap;
                self.dial_bootstrap();
                tracing::info!("configuration reloaded: directory profile and bootstrap list");
                let _ = reply.send(());
            }
            Command::Recover(since, from, reply) => {
                match self.start_recovery(since, from) {
                    Ok(()) => self.recovery_waiters.push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
                self.drive_recovery();
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
            Command::ConclusionFileKeys(id, reply) => {
                let _ = reply.send(self.conclusion_file_keys(&id));
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
            Command::RotateSealing(reply) => {
                let _ = reply.send(self.rotate_sealing());
            }
            Command::OpenVideo(id, by, reply) => {
                let _ = reply.send(self.open_video(id, by));
            }
            Command::JoinVideo(id, by, offer, reply) => {
                let _ = reply.send(self.join_video(id, by, &offer));
            }
            Command::LeaveVideo(id, seat, by, reply) => {
                let _ = reply.send(self.leave_video(id, seat, by));
            }
            Command::VideoSend(session, org, payload, reply) => {
                let _ = reply.send(self.video_send(session, org, payload));
            }
            Command::WatchVideo(session, reply) => {
                let _ = reply.send(self.media_plane().map(|m| m.watch(session)));
            }
            Command::Probe(to, reply) => {
                let _ = reply.send(self.probe(to));
            }
            Command::ProbeVideo(to, reply) => {
                let _ = reply.send(self.probe_video(to));
            }
            Command::CloseProbe(session, reply) => {
                self.close_probe(session);
                let _ = reply.send(());
            }
            Command::Link(org, reply) => {
                let _ = reply.send(self.link_to(org));
            }
            Command::Shutdown(_) => unreachable!("handled in run"),
        }
    }
}
