//! The baseline for a changed record's spread: plain gossipsub swarms, one
//! per node, linked as the nodes were when the record changed, with the
//! node's own gossipsub settings, carrying one message of the record's
//! size. What the nodes take beyond this is theirs: re-signing and storing
//! the record, checking each copy's certificate chain and signature before
//! passing it on, their event loops.

use super::{Links, reached};
use crate::SimError;
use futures::StreamExt;
use konsilium_node::net::behaviour::{DIRECTORY_TOPIC, gossipsub};
use konsilium_node::net::in_process;
use libp2p::gossipsub::{Event, IdentTopic, MessageAcceptance};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm, noise, tcp, yamux};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How long the swarms may take to form their meshes, and the message to
/// reach everyone.
const PATIENCE: Duration = Duration::from_secs(120);
/// Heartbeats between every swarm knowing a peer on the topic and the
/// message.
const SETTLE_HEARTBEATS: u32 = 10;
/// Links dialled at once.
const DIAL_BATCH: usize = 256;

/// When 99 % and all of the other swarms held the message, in seconds after
/// it was published.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RawSpread {
    pub p99_s: Option<f64>,
    pub all_s: Option<f64>,
}

fn raw(what: impl std::fmt::Display) -> SimError {
    SimError::Live(format!("raw gossipsub: {what}"))
}

/// `n` swarms joined by `links` (pairs of indices); swarm 0 publishes
/// `message_len` bytes once every swarm knows a peer on the topic and the
/// meshes settled.
pub async fn spread(
    n: usize,
    links: &[(usize, usize)],
    message_len: usize,
    over: Links,
    heartbeat: Duration,
) -> Result<RawSpread, SimError> {
    let topic = IdentTopic::new(DIRECTORY_TOPIC);
    let mut swarms = Vec::with_capacity(n);
    let mut addrs = Vec::with_capacity(n);
    for _ in 0..n {
        let mut swarm = swarm(over, heartbeat)?;
        (swarm.behaviour_mut().subscribe(&topic)).map_err(raw)?;
        let listen: Multiaddr = match over {
            Links::Tcp => "/ip4/127.0.0.1/tcp/0",
            Links::Memory => "/memory/0",
        }
        .parse()
        .map_err(raw)?;
        swarm.listen_on(listen).map_err(raw)?;
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        addrs.push(addr);
        swarms.push(swarm);
    }
    let seen = Arc::new(Seen {
        on_topic: AtomicUsize::new(0),
        dialled: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        got: Mutex::new(vec![None; n]),
    });
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::with_capacity(n);
    let mut commands = Vec::with_capacity(n);
    for (i, swarm) in swarms.into_iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        commands.push(tx);
        tasks.push(tokio::spawn(drive(
            i,
            swarm,
            topic.clone(),
            seen.clone(),
            stop.clone(),
            rx,
        )));
    }
    let stop_all = |why: String| {
        let _ = stop_tx.send(true);
        raw(why)
    };
    // Links come up a batch at a time, as the nodes' did while they
    // started one by one: all at once, the handshakes outlast libp2p's
    // upgrade timeout on two cores.
    for (done, batch) in (links.chunks(DIAL_BATCH)).enumerate() {
        for &(a, b) in batch {
            let _ = commands[a].send(Command::Dial(addrs[b].clone()));
        }
        let sent = done * DIAL_BATCH + batch.len();
        let deadline = Instant::now() + PATIENCE;
        while seen.dialled.load(Ordering::Relaxed) + seen.failed.load(Ordering::Relaxed) < sent
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let failed = seen.failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(stop_all(format!(
            "{failed} of {} links failed",
            links.len()
        )));
    }
    let deadline = Instant::now() + PATIENCE;
    while seen.on_topic.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = seen.on_topic.load(Ordering::Relaxed);
    if ready < n {
        return Err(stop_all(format!(
            "only {ready} of {n} swarms knew a peer on the topic after {} s",
            PATIENCE.as_secs()
        )));
    }
    // Meshes form and settle over heartbeats, as the nodes' had long before
    // the record changed.
    tokio::time::sleep(heartbeat * SETTLE_HEARTBEATS).await;
    let message: Vec<u8> = (0..message_len).map(|i| (i % 251) as u8).collect();
    let published = Instant::now();
    let (done, sent) = oneshot::channel();
    let _ = commands[0].send(Command::Publish(message, done));
    match sent.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(stop_all(e)),
        Err(e) => return Err(stop_all(e.to_string())),
    }
    let others = n - 1;
    let deadline = Instant::now() + PATIENCE;
    let count = || lock(&seen.got).iter().skip(1).flatten().count();
    while count() < others && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let times: Vec<f64> = (lock(&seen.got).iter().skip(1).flatten())
        .map(|t| t.duration_since(published).as_secs_f64())
        .collect();
    Ok(RawSpread {
        p99_s: reached(&times, others, 0.99),
        all_s: reached(&times, others, 1.0),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn swarm(
    over: Links,
    heartbeat: Duration,
) -> Result<Swarm<libp2p::gossipsub::Behaviour>, SimError> {
    let builder = libp2p::SwarmBuilder::with_new_identity().with_tokio();
    let behaviour = |key: &libp2p::identity::Keypair| {
        gossipsub(key, heartbeat).map_err(Box::<dyn std::error::Error + Send + Sync>::from)
    };
    // The nodes' own swarm settings.
    let settings = konsilium_node::net::swarm_config;
    Ok(match over {
        Links::Tcp => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(raw)?
            .with_behaviour(behaviour)
            .map_err(raw)?
            .with_swarm_config(settings)
            .build(),
        Links::Memory => builder
            .with_other_transport(|key| {
                in_process(key).map_err(Box::<dyn std::error::Error + Send + Sync>::from)
            })
            .map_err(raw)?
            .with_behaviour(behaviour)
            .map_err(raw)?
            .with_swarm_config(settings)
            .build(),
    })
}

/// What the swarms report, shared with the harness.
struct Seen {
    /// Swarms that know a peer on the topic.
    on_topic: AtomicUsize,
    /// Links dialled and up, or failed.
    dialled: AtomicUsize,
    failed: AtomicUsize,
    /// When each swarm first held the published message.
    got: Mutex<Vec<Option<Instant>>>,
}

enum Command {
    Dial(Multiaddr),
    /// A message to publish, and where to say whether it could be.
    Publish(Vec<u8>, oneshot::Sender<Result<(), String>>),
}

/// One swarm's loop: every message accepted at once (the node checks
/// first; the baseline has nothing to check), its first copy of the
/// published message noted.
async fn drive(
    i: usize,
    mut swarm: Swarm<libp2p::gossipsub::Behaviour>,
    topic: IdentTopic,
    seen: Arc<Seen>,
    mut stop: watch::Receiver<bool>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let hash = topic.hash();
    let mut counted = false;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            Some(command) = commands.recv() => match command {
                Command::Dial(addr) => {
                    if swarm.dial(addr).is_err() {
                        seen.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Command::Publish(message, done) => {
                    let result = swarm.behaviour_mut().publish(topic.clone(), message);
                    let _ = done.send(result.map(drop).map_err(|e| format!("publish failed: {e}")));
                }
            },
            _ = tick.tick() => {
                if !counted && swarm.behaviour().all_peers().any(|(_, topics)| topics.contains(&&hash)) {
                    counted = true;
                    seen.on_topic.fetch_add(1, Ordering::Relaxed);
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { endpoint, .. } if endpoint.is_dialer() => {
                    seen.dialled.fetch_add(1, Ordering::Relaxed);
                }
                SwarmEvent::OutgoingConnectionError { .. } => {
                    seen.failed.fetch_add(1, Ordering::Relaxed);
                }
                SwarmEvent::Behaviour(Event::Message { propagation_source, message_id, .. }) => {
                    lock(&seen.got)[i].get_or_insert_with(Instant::now);
                    let _ = swarm.behaviour_mut().report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Accept,
                    );
                }
                _ => {}
            },
        }
    }
}
