//! The organizations as running nodes, and the three things timed on them.

use super::{
    Gossip, Links, LiveConfig, LiveOutcome, available_bytes, cpu_seconds, raw, reached,
    resident_mib,
};
use crate::SimError;
use crate::rng::SimRng;
use crate::scenario::Scenario;
use crate::year::agenda::{Agenda, Task};
use crate::year::summary::Delivery;
use konsilium_node::federation::{LocalFederation, Member, OrgSpec, wait};
use konsilium_node::node::{
    self, ANTI_ENTROPY_EVERY, GOSSIP_HEARTBEAT, Inspect, NewConsultation, NodeEvent, NodeHandle,
    Target,
};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::content::CaseExtract;
use konsilium_protocol::directory::ConsultantId;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::seal::PackageId;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Consent, ConsentMethod};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a phase may take before the run reports it unfinished.
const PATIENCE: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(250);
/// Between two requests: a burst, as after a morning round, not a flood.
const REQUEST_GAP: Duration = Duration::from_millis(20);
/// After the last use of a connection its node looks again within a few
/// seconds; closing takes a moment more.
const IDLE_CLOSED: Duration = Duration::from_secs(5);

/// What the nodes reported while a phase ran.
#[derive(Default)]
struct Seen {
    /// When each node took the changed record in.
    record: HashMap<usize, Instant>,
    packages: HashMap<PackageId, Instant>,
    custody: u64,
}

fn live(what: impl std::fmt::Display) -> SimError {
    SimError::Live(what.to_string())
}

pub(super) async fn run(
    scenario: &Scenario,
    config: LiveConfig,
    mut progress: impl FnMut(&str),
) -> Result<LiveOutcome, SimError> {
    let wall = Instant::now();
    let tmp = tempfile::tempdir().map_err(|e| live(format!("a directory for the nodes: {e}")))?;
    let orgs = &scenario.orgs;
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let members: Vec<Member> = (orgs.iter())
        .map(|o| {
            let specialties: Vec<_> = o.offers.iter().map(|f| f.specialty).collect();
            fed.enrol(OrgSpec::new(&o.name, o.level, &o.region, &specialties))
        })
        .collect();
    // Each organization knows its region's first regional center (its hub,
    // which districts also relay through), else the first node.
    let hub = |i: usize| {
        (0..i)
            .find(|&j| orgs[j].level == OrgLevel::Regional && orgs[j].region == orgs[i].region)
            .unwrap_or(0)
    };
    let max_resident = available_bytes().unwrap_or(node::MAX_RESIDENT_BYTES);
    let started = Instant::now();
    let mut nodes: Vec<NodeHandle> = Vec::with_capacity(orgs.len());
    let mut addrs: Vec<multiaddr::Multiaddr> = Vec::with_capacity(orgs.len());
    for (i, member) in members.iter().enumerate() {
        let bootstrap = if i == 0 {
            vec![]
        } else {
            vec![addrs[hub(i)].clone()]
        };
        let relay_via = match scenario.relays && orgs[i].level == OrgLevel::District && hub(i) != i
        {
            true => vec![members[hub(i)].org_id()],
            false => vec![],
        };
        let mut setup = member.setup(bootstrap, relay_via);
        setup.anti_entropy_every = ANTI_ENTROPY_EVERY;
        setup.gossip_heartbeat = GOSSIP_HEARTBEAT;
        // Every node in this process sees the process's size: a node's own
        // guard would refuse connections once a few hundred run together.
        setup.max_resident = max_resident;
        setup.keep = config.keep;
        if config.links == Links::Memory {
            setup.listen = vec!["/memory/0".parse().map_err(live)?];
        }
        let handle = node::start(setup)
            .await
            .map_err(|e| live(format!("{} did not start: {e}", orgs[i].name)))?;
        let addr = wait::listen_addr(&handle, PATIENCE).await.map_err(live)?;
        addrs.push(addr);
        nodes.push(handle);
        if (i + 1) % 10 == 0 {
            progress(&format!("{} of {} nodes started", i + 1, orgs.len()));
        }
    }
    let start_s = started.elapsed().as_secs_f64();
    progress("directories filling");
    let full = directories_full(&nodes, &mut progress).await?;
    let directory_p99_s = reached(&full, nodes.len(), 0.99);
    let directory_all_s = reached(&full, nodes.len(), 1.0);
    // Records change in a federation at rest, not while it starts: the
    // connections, lookups and first exchanges settle first, and what the
    // nodes then spend doing nothing is measured.
    let peers_when_full = gossip(&[], &nodes).await?.mean_peers;
    // The connections the start made and no longer uses close first.
    progress("idle connections closing");
    tokio::time::sleep(config.keep.idle + IDLE_CLOSED).await;
    progress("at rest");
    let before = cpu_seconds();
    tokio::time::sleep(config.settle).await;
    let rest_cpu = (before.zip(cpu_seconds())).map(|(a, b)| (b - a) / config.settle.as_secs_f64());

    // One organization changes its record (a second duty consultant).
    let changed = 0;
    let changed_org = nodes[changed].org();
    let (old, _) = record_at(&nodes[changed], changed_org).await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listeners = Listeners::start(
        (nodes.iter().enumerate())
            .map(|(i, n)| listen(i, n.subscribe(), changed_org, old, seen.clone())),
    )?;
    let mut profile = members[changed].setup(vec![], vec![]).profile;
    if let Some(first) = profile.consultants.first().cloned() {
        profile
            .consultants
            .push(konsilium_protocol::directory::Consultant {
                id: ConsultantId(first.id.0 + 1),
                name: format!("Second duty consultant, {}", orgs[changed].name),
                ..first
            });
    }
    let gossip_before = gossip(&nodes[changed..=changed], &nodes).await?;
    let links = links(&nodes).await?;

    let changed_at = Instant::now();
    nodes[changed]
        .reload(profile, vec![])
        .await
        .map_err(|e| live(format!("changing a record: {e}")))?;
    progress("a changed record spreading");
    let others = nodes.len() - 1;
    let end = changed_at + PATIENCE;
    while lock(&seen).record.len() < others && Instant::now() < end {
        tokio::time::sleep(POLL).await;
    }
    let update: Vec<f64> = (lock(&seen).record.values())
        .map(|t| t.duration_since(changed_at).as_secs_f64())
        .collect();
    let update_p99_s = reached(&update, others, 0.99);
    let update_all_s = reached(&update, others, 1.0);
    let after = gossip(&nodes[changed..=changed], &nodes).await?;
    let (_, record_len) = record_at(&nodes[changed], changed_org).await?;
    let gossip = Gossip {
        published: after.published - gossip_before.published,
        accepted: after.accepted - gossip_before.accepted,
        ignored: after.ignored - gossip_before.ignored,
        invalid: after.invalid - gossip_before.invalid,
        mean_peers: after.mean_peers,
        idle_closed: after.idle_closed,
    };

    // The model's own draws of requests (its whole agenda, the same seed
    // and stream), sent by the physicians one after another.
    let mut rng = SimRng::new(config.seed, "agenda");
    let start = node::now();
    let mut agenda = Agenda::plan(scenario, start, &mut rng);
    let mut asks = Vec::new();
    let horizon = start.saturating_add(crate::scenario::DAY * scenario.days);
    while let Some(task) = agenda.pop_due(horizon) {
        if let Task::Ask { .. } = task {
            asks.push(task);
        }
    }
    progress(&format!("{} requests", asks.len()));
    let mut pending: Vec<(PackageId, Instant)> = Vec::new();
    let mut unroutable = 0;
    for task in asks {
        let Task::Ask {
            requester,
            specialty,
            urgency,
            level,
            ..
        } = task
        else {
            continue;
        };
        let asked = Instant::now();
        match nodes[requester]
            .request_consultation(request(specialty, urgency, level), vec![])
            .await
        {
            Ok((_, sent)) => pending.push((sent.id, asked)),
            Err(e) => {
                if unroutable == 0 {
                    progress(&format!("a request went nowhere: {e}"));
                }
                unroutable += 1;
            }
        }
        tokio::time::sleep(REQUEST_GAP).await;
    }
    let end = Instant::now() + PATIENCE;
    while Instant::now() < end {
        if (pending.iter()).all(|(id, _)| lock(&seen).packages.contains_key(id)) {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let (times, undelivered) = {
        let seen = lock(&seen);
        let times: Vec<Duration> = (pending.iter())
            .filter_map(|(id, asked)| seen.packages.get(id).map(|t| t.duration_since(*asked)))
            .collect();
        let undelivered = pending.len() - times.len();
        (times, undelivered)
    };
    let relayed = lock(&seen).custody;
    let resident = resident_mib();
    listeners.stop();
    progress("stopping");
    futures::future::join_all(nodes.into_iter().map(NodeHandle::shutdown)).await;
    progress(&format!(
        "plain gossipsub on the same {} links, a message of {record_len} bytes",
        links.len()
    ));
    let raw = raw::spread(
        members.len(),
        &links,
        record_len,
        config.links,
        GOSSIP_HEARTBEAT,
    )
    .await?;
    Ok(LiveOutcome {
        nodes: members.len(),
        links: config.links,
        raw,
        start_s,
        directory_p99_s,
        directory_all_s,
        peers_when_full,
        rest_cpu,
        update_p99_s,
        update_all_s,
        delivery: Delivery::of(times, undelivered),
        unroutable,
        relayed,
        gossip,
        resident_mib: resident,
        wall_s: wall.elapsed().as_secs_f64(),
    })
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Seconds after the call until each node held every record.
async fn directories_full(
    nodes: &[NodeHandle],
    progress: &mut impl FnMut(&str),
) -> Result<Vec<f64>, SimError> {
    let from = Instant::now();
    let mut full: Vec<Option<f64>> = vec![None; nodes.len()];
    let mut told = Instant::now();
    while full.iter().any(Option::is_none) && from.elapsed() < PATIENCE {
        let mut smallest = nodes.len();
        for (i, n) in nodes.iter().enumerate() {
            if full[i].is_some() {
                continue;
            }
            let status = n.status().await.map_err(live)?;
            smallest = smallest.min(status.directory_size);
            if status.directory_size >= nodes.len() {
                full[i] = Some(from.elapsed().as_secs_f64());
            }
        }
        if told.elapsed() > Duration::from_secs(5) {
            let done = full.iter().flatten().count();
            progress(&format!(
                "{done} of {} directories full, the emptiest holds {smallest}",
                nodes.len()
            ));
            told = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(full.into_iter().flatten().collect())
}

/// Directory gossip counted by every node so far, and its peers now;
/// `published` counts what `publishers` published.
async fn gossip(publishers: &[NodeHandle], nodes: &[NodeHandle]) -> Result<Gossip, SimError> {
    let mut total = Gossip::default();
    for n in publishers {
        let text = n.metrics().await.map_err(live)?;
        total.published += (text.lines())
            .filter(|l| l.starts_with("konsilium_gossip_messages_published_total "))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    for n in nodes {
        let text = n.metrics().await.map_err(live)?;
        for line in text.lines() {
            let value = || {
                line.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            if line.starts_with("konsilium_peers ") {
                total.mean_peers += value() / nodes.len() as f64;
            }
            if line.starts_with("konsilium_idle_connections_closed_total ") {
                total.idle_closed += value() as u64;
            }
            if !(line.starts_with("konsilium_gossip_messages_received_total")
                && line.contains("topic=\"directory\""))
            {
                continue;
            }
            let count = value() as u64;
            if line.contains("outcome=\"accepted\"") {
                total.accepted += count;
            } else if line.contains("outcome=\"ignored\"") {
                total.ignored += count;
            } else if line.contains("outcome=\"invalid\"") {
                total.invalid += count;
            }
        }
    }
    Ok(total)
}

/// Which nodes were linked (admitted each other), as pairs of indices.
async fn links(nodes: &[NodeHandle]) -> Result<Vec<(usize, usize)>, SimError> {
    let index: HashMap<String, usize> = (nodes.iter().enumerate())
        .map(|(i, n)| (n.org().to_string(), i))
        .collect();
    let mut pairs = std::collections::BTreeSet::new();
    for (i, n) in nodes.iter().enumerate() {
        let peers = n.inspect(Inspect::Peers).await.map_err(live)?;
        let admitted = (peers.as_array().into_iter().flatten())
            .filter(|p| p["admission"] == "admitted")
            .filter_map(|p| index.get(p["org"].as_str()?));
        for &j in admitted {
            pairs.insert((i.min(j), i.max(j)));
        }
    }
    Ok(pairs.into_iter().collect())
}

/// `org`'s record as `node` holds it: its sequence and its size on the wire.
async fn record_at(node: &NodeHandle, org: OrgId) -> Result<(u64, usize), SimError> {
    let records = node.records().await.map_err(live)?;
    (records.iter())
        .find_map(|signed| {
            let record = signed.decode_unverified().ok()?;
            let cert = record.chain.org.decode_unverified().ok()?;
            let bytes = konsilium_protocol::wire::encode(signed).ok()?;
            (cert.org == org).then_some((record.sequence, bytes.len()))
        })
        .ok_or_else(|| live("the changed organization's own record is missing"))
}

/// The harness's listeners, on a thread of their own: on the nodes' two
/// workers, a listener woken by a node's event waited behind the nodes'
/// tasks, and the moment it noted came late (at 100 nodes, a changed
/// record's arrival by 8 ms at the median and 18 ms at the last node).
struct Listeners {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Listeners {
    fn start(
        listeners: impl Iterator<Item = impl std::future::Future<Output = ()> + Send + 'static>,
    ) -> Result<Self, SimError> {
        let listeners: Vec<_> = listeners.collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| live(format!("the listeners' runtime: {e}")))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("listeners".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        _ = futures::future::join_all(listeners) => {}
                        _ = stopped => {}
                    }
                })
            })
            .map_err(|e| live(format!("the listeners' thread: {e}")))?;
        Ok(Self { stop, thread })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Notes what node `i` reports: the changed record past `old`, packages
/// it received, packages it handed to a relay.
async fn listen(
    i: usize,
    mut events: tokio::sync::broadcast::Receiver<NodeEvent>,
    changed: OrgId,
    old: u64,
    seen: Arc<Mutex<Seen>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let now = Instant::now();
        let mut seen = lock(&seen);
        match event {
            NodeEvent::RecordAccepted { org, sequence } if org == changed && sequence > old => {
                seen.record.entry(i).or_insert(now);
            }
            NodeEvent::PackageReceived { id, .. } => {
                seen.packages.entry(id).or_insert(now);
            }
            NodeEvent::PackageInCustody { .. } => seen.custody += 1,
            _ => {}
        }
    }
}

/// A request as a physician makes it, for what the agenda drew.
fn request(
    specialty: konsilium_protocol::specialty::Specialty,
    urgency: Urgency,
    level: OrgLevel,
) -> NewConsultation {
    let consent = match urgency {
        Urgency::Emergency => Consent::EmergencyOverride {
            reason: "life-threatening, the patient cannot consent".into(),
        },
        _ => Consent::Given {
            by: "the patient".into(),
            at: node::now(),
            method: ConsentMethod::Written,
            document: None,
        },
    };
    NewConsultation {
        target: Target::Best,
        specialty,
        min_level: level,
        urgency,
        region: None,
        consent,
        physician: "Duty physician".into(),
        entered_by: "Duty physician".into(),
        extract: CaseExtract {
            summary: "Case drawn by the simulation's agenda".into(),
            questions: "Management?".into(),
        },
        escalated_from: None,
    }
}
