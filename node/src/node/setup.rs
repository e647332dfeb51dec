//! Starting a node: what it needs (from its config or a test), and the
//! start-up that opens the store, resumes the journal and joins the swarm.

use super::*;
use konsilium_protocol::desk::{Config as DeskConfig, Desk};
use konsilium_protocol::journal::LostTail;

/// How often a configured node's gossip heartbeats. Tests run faster.
pub const GOSSIP_HEARTBEAT: Duration = Duration::from_secs(1);
/// How often a configured node runs an anti-entropy round with one peer:
/// gossip carries updates, this only repairs what gossip missed.
pub const ANTI_ENTROPY_EVERY: Duration = Duration::from_secs(60);
/// Above this resident size a node takes no new connections (those it has
/// keep working), so a flood cannot push it into the kernel's OOM killer.
pub const MAX_RESIDENT_BYTES: usize = 2 << 30;

/// Everything a node needs to start.
pub struct NodeSetup {
    pub identity: IdentityKey,
    pub sealing: SealingKey,
    /// Sealing keys rotated away from, with when.
    pub retired: Vec<Retired>,
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
    /// Bootstrap or organization; declared or probed reachability; whether
    /// it relays for others.
    pub openness: crate::config::Openness,
    pub gossip_heartbeat: Duration,
    pub clock: std::sync::Arc<dyn Clock>,
    pub anti_entropy_every: Duration,
    /// How long attachments sent or relayed stay after their receipt.
    pub keep_delivered: Duration,
    /// What this node holds at most for each organization it relays for.
    pub custody: konsilium_protocol::outbox::Custody,
    /// The media plane (video), if any.
    pub video: Option<crate::config::VideoConfig>,
    /// Where this node answers STUN Binding requests (a bootstrap node's
    /// service to the sites behind NATs), if anywhere.
    pub stun_listen: Option<std::net::SocketAddr>,
    /// Above this resident size of the process the node takes no new
    /// connections. Nodes sharing one process (the live simulations) share
    /// this figure too, so they need a larger one.
    pub max_resident: usize,
    /// How many idle connections the node keeps, and after how long unused.
    pub keep: konsilium_protocol::keep::Config,
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
            retired: (keys.retired.into_iter())
                .map(|r| Retired {
                    key: r.key,
                    at: Timestamp::from_unix_millis(r.retired_at_ms),
                })
                .collect(),
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
            openness: config.openness,
            gossip_heartbeat: GOSSIP_HEARTBEAT,
            clock: std::sync::Arc::new(SystemClock),
            anti_entropy_every: ANTI_ENTROPY_EVERY,
            keep_delivered: config.keep_delivered,
            custody: config.custody,
            video: config.video.clone(),
            stun_listen: config.stun_listen,
            max_resident: MAX_RESIDENT_BYTES,
            keep: Default::default(),
        })
    }
}

/// Starts a node; it runs until shut down.
pub async fn start(setup: NodeSetup) -> Result<NodeHandle, NodeError> {
    let now = setup.clock.now();
    let mut trust = Trust::new(setup.roots.iter().copied());
    crate::storage::datadir::make_private(&setup.data_dir)?;
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
    let serves_others = setup.openness.serves_others;
    let declared = setup.openness.reachability;
    let max_resident = setup.max_resident;
    let budgets = crate::net::budget::Budgets::default();
    let behaviour_budgets = budgets.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NodeError::Network(e.to_string()))?
        .with_quic()
        .with_other_transport(|key| {
            crate::net::in_process(key).map_err(Box::<dyn std::error::Error + Send + Sync>::from)
        })
        .map_err(|e| NodeError::Network(format!("in-process transport: {e}")))?
        // `/dns4/`, `/dns6/` and `/dns/` addresses, as deployments write them.
        .with_dns()
        .map_err(|e| NodeError::Network(format!("DNS resolver: {e}")))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| NodeError::Network(format!("relay client: {e}")))?
        .with_behaviour(|key, relay_client| {
            Behaviour::new(
                key,
                heartbeat,
                relay_client,
                serves_others,
                declared,
                max_resident,
                &behaviour_budgets,
            )
            .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
        })
        .map_err(|e| NodeError::Network(e.to_string()))?
        .with_swarm_config(crate::net::swarm_config)
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
    let (journal, lost) = resume_journal(&store, &setup.identity.org_id(), &setup.data_dir)?;
    let lost_since = match lost {
        Some(_) => Some(recovery::default_since(store.journal_last_at()?)),
        None => None,
    };
    let mut store = store;
    let clock = setup.clock.clone();
    store.anchor_journal(crate::storage::store::Anchoring::new(
        IdentityKey::from_seed(*setup.identity.to_seed()),
        &setup.data_dir,
        move || clock.now(),
    ));
    store.flush()?;
    let store = std::sync::Arc::new(store);
    let sequence = store.meta_u64("sequence")?.unwrap_or(0);
    // The one scan of the stored outbox: from here on the machine knows
    // every change as it happens.
    let outbox = Outbox::new(
        OutboxConfig {
            me: me.cert.org,
            region: me.cert.region.clone(),
            relay: setup.relay_via.first().copied(),
            custody: setup.custody,
        },
        u64::from_le_bytes(random_bytes()),
        store.outbox()?.iter().map(OutboxEntry::entry),
    );
    let org = me.cert.org;
    let peer_id = *swarm.local_peer_id();
    let (events, _) = broadcast::channel(1024);
    let (commands, command_rx) = mpsc::channel(64);
    let (loopback, loopback_rx) = mpsc::unbounded_channel();
    let (media_tx, media_rx) = mpsc::unbounded_channel();
    let me_org = me.cert.org;
    let stun = match setup.stun_listen {
        Some(addr) => Some(crate::stun::StunService::start(addr).await?),
        None => None,
    };
    let media = match &setup.video {
        Some(video) => Some(crate::media::MediaPlane::start(video, &me.cert.name, media_tx).await?),
        None => None,
    };
    // Attachments kept from earlier runs are deleted when due, without a scan.
    let next_blob_expiry = store.next_blob_expiry()?;
    let desk = Desk::new(
        DeskConfig::default(),
        IdentityKey::from_seed(*setup.identity.to_seed()),
        me.cert.region.clone(),
    );
    let mut node = Node {
        swarm,
        flush_soon: crate::storage::background_flush::BackgroundFlush::new(store.clone()),
        group: Default::default(),
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
        keyring: Keyring::new(setup.sealing, setup.retired),
        chain: setup.chain,
        me,
        profile: setup.profile,
        sequence,
        record_dirty: true,
        record_due: None,
        partials: partials::Partials::start(blobs.clone(), loopback.clone()),
        beginning: HashSet::new(),
        loopback,
        next_blob_expiry,
        external: setup.external,
        bootstrap: setup.bootstrap,
        journal,
        clock: setup.clock.clone(),
        desk,
        listen_addrs: Vec::new(),
        relay_via: setup.relay_via,
        candidate_requests: HashMap::new(),
        opening: HashMap::new(),
        opening_bytes: 0,
        parcels: Default::default(),
        gathering: Default::default(),
        open_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )),
        admission: Admission::new(AdmissionConfig {
            // The Hello protocol's own timeout: a peer is not refused as
            // silent while its Hello may still be answered.
            hello_timeout: HELLO_TIMEOUT,
            ..AdmissionConfig::default()
        }),
        recent_refusals: Default::default(),
        hello_left_out: Vec::new(),
        pending: HashMap::new(),
        outbox,
        blobs,
        fetches: Fetches::new(),
        served: HashMap::new(),
        entitled: HashSet::new(),
        events: events.clone(),
        data_dir: setup.data_dir.clone(),
        keep_delivered: setup.keep_delivered,
        budgets,
        started_at: setup.clock.now(),
        peer_info: HashMap::new(),
        observed: std::collections::VecDeque::new(),
        refused_orgs: BTreeMap::new(),
        metrics: crate::telemetry::metrics::Metrics::new(),
        directory_topic,
        revocation_topic,
        recovery: konsilium_protocol::recovery::Recovery::new(Default::default()),
        recovery_waiters: Vec::new(),
        recoveries_served: HashMap::new(),
        role: setup.openness.role,
        reach: Reach::new(
            now,
            ReachConfig {
                declared: setup.openness.reachability,
                ..ReachConfig::default()
            },
        ),
        ladder: konsilium_protocol::ladder::Ladder::new(konsilium_protocol::ladder::GRACE),
        loopback_only: (setup.listen.iter())
            .all(|a| crate::net::scope::scope(a) == crate::net::scope::Scope::Loopback),
        media,
        stun,
        video_probes: Default::default(),
        answered_probes: Default::default(),
        schedule: konsilium_protocol::video::Schedule::new(me_org, video::LEAD),
        published_reach: (konsilium_protocol::reach::Reachability::Unknown, 0),
        relay_listeners: HashMap::new(),
        keep: konsilium_protocol::keep::Keep::new(setup.keep),
    };
    node.publish_record()?;
    // The one scan of stored consultations: from here on the desk holds
    // them and knows every change as it happens.
    let now = node.now();
    for stored in node.store.consultations()? {
        let deadline = (stored.request.decode_unverified().ok())
            .map_or(Ok(None), |r| node.store.deadline(&r.id));
        match consult::case_of(&stored, deadline) {
            Ok(case) => node.desk.restore(now, case, node.sync.directory()),
            Err(e) => tracing::error!("a stored consultation does not replay: {e}"),
        }
    }
    for early in node.store.early_steps()? {
        node.desk.restore_held(early);
    }
    node.schedule_all();
    if let (Some(lost), Some(since)) = (lost, lost_since) {
        let gap = konsilium_protocol::journal::Action::Gap {
            lost_from: lost.lost_from,
            lost_to: lost.lost_to,
        };
        node.append_journal(None, None, gap)?;
        node.store.flush()?;
        node.start_recovery(Some(since), Vec::new())?;
    }
    let clock = setup.clock.clone();
    let task = tokio::spawn(async move { node.run(command_rx, loopback_rx, media_rx).await });
    Ok(NodeHandle {
        org,
        peer_id,
        commands,
        events,
        task,
        db: setup.data_dir.join("db"),
        clock,
    })
}

/// libp2p binds TCP with SO_REUSEPORT, so a second node on the same port
/// would start and silently take half the inbound connections. A plain bind
/// (no SO_REUSEPORT) fails if anyone holds the port: refuse to start then.
pub(super) fn check_port_free(addr: &Multiaddr) -> Result<(), NodeError> {
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

pub(super) fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_unspecified(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// Resumes the journal where the database has it, checked against its
/// signed checkpoints and its anchor. A journal that only lost its end
/// (the store dropped its last writes) goes on from the last entry it
/// kept: the loss is returned, to be journaled and recovered from
/// counterparts, and the anchor that proves it is kept beside the database.
/// A journal that was otherwise changed does not start the node: writing
/// on would replace the anchor and erase the evidence. Without an anchor
/// (a node from before anchors) a failure is logged and the node goes on.
pub(super) fn resume_journal(
    store: &Store,
    org: &OrgId,
    data_dir: &std::path::Path,
) -> Result<(Journal, Option<LostTail>), NodeError> {
    let entries = store.journal()?;
    let checkpoints = store.checkpoints()?;
    let anchor = crate::storage::anchor::read(data_dir).map_err(StoreError::from)?;
    let journal = entries.last().map(Journal::resume).unwrap_or_default();
    let mut all = checkpoints.clone();
    all.extend(anchor.clone());
    let Err(e) = konsilium_protocol::journal::verify(&entries, &all, org) else {
        return Ok((journal, None));
    };
    let Some(anchor) = anchor else {
        tracing::error!("the consultation journal failed verification: {e}");
        return Ok((journal, None));
    };
    let anchor_path = crate::storage::anchor::path(data_dir);
    let Some(lost) = konsilium_protocol::journal::lost_tail(&entries, &checkpoints, &anchor, org)
    else {
        return Err(NodeError::JournalDamaged {
            anchor: anchor_path,
            reason: e.to_string(),
        });
    };
    let evidence = data_dir.join(format!(
        "{}.lost-{}-{}",
        crate::storage::anchor::FILE,
        lost.lost_from,
        lost.lost_to
    ));
    std::fs::copy(&anchor_path, &evidence).map_err(|source| {
        StoreError::from(crate::storage::anchor::AnchorError::Io {
            path: evidence.clone(),
            source,
        })
    })?;
    tracing::error!(
        lost_from = lost.lost_from,
        lost_to = lost.lost_to,
        evidence = %evidence.display(),
        "the database lost the last journal entries its anchor vouched for; \
         going on from the last one kept and asking counterparts for what was lost"
    );
    Ok((journal, Some(lost)))
}
