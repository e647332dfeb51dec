//! Floods against a node run as its own `konsilium run` process, so that its
//! resident memory is the kernel's figure: 10,000 Hello streams from
//! strangers carrying oversized and truncated frames, a certified insider's
//! oversized RPC frames, another's malformed gossip, and a certified peer
//! that stops reading its socket. The node answers none of it, bans both
//! insiders, keeps serving an honest member and its API, and stays under
//! 256 MiB resident throughout.

use super::*;
use process::{Options, ProcessNode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::time::Instant;

const STRANGERS: usize = 20;
const STREAMS_PER_STRANGER: usize = 500;
const INSIDER_FRAMES: usize = 10_000;
const GOSSIP_FLOOD: usize = 10_000;
const RESIDENT_LIMIT: u64 = 256 << 20;

/// A frame announcing `len` bytes, followed by 64 KiB of them.
fn announcing(len: u32) -> Vec<u8> {
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0x4b; 64 << 10]);
    frame
}

/// A whole frame of 1 KiB that is not a frame of any kind.
fn junk() -> Vec<u8> {
    let mut frame = 1024u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0x4b; 1024]);
    frame
}

/// A frame announcing 1,000 bytes that ends after ten.
fn truncated() -> Vec<u8> {
    let mut frame = 1000u32.to_be_bytes().to_vec();
    frame.extend_from_slice(b"KS\x01\x01garbl");
    frame
}

#[derive(NetworkBehaviour)]
struct Flooder {
    raw: request_response::Behaviour<RawCodec>,
}

/// One stranger (a fresh key, no certificate) opens its streams on the
/// Hello protocol all at once, half announcing 512 MiB, half truncated,
/// and never answers the node's own Hello. Returns how many of its frames
/// got an answer.
async fn stranger_flood(addr: Multiaddr, node: PeerId) -> usize {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| Flooder {
            raw: request_response::Behaviour::new(
                [(HELLO_PROTOCOL, request_response::ProtocolSupport::Outbound)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(20))
                    .with_max_concurrent_streams(STREAMS_PER_STRANGER),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.dial(addr).unwrap();
    for n in 0..STREAMS_PER_STRANGER {
        let frame = if n % 2 == 0 {
            announcing(512 << 20)
        } else {
            truncated()
        };
        swarm.behaviour_mut().raw.send_request(&node, frame);
    }
    let (mut settled, mut answered) = (0, 0);
    let deadline = Instant::now() + PATIENCE;
    while settled < STREAMS_PER_STRANGER {
        let Ok(event) = tokio::time::timeout_at(deadline, swarm.select_next_some()).await else {
            break;
        };
        match event {
            SwarmEvent::Behaviour(FlooderEvent::Raw(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            })) => {
                settled += 1;
                answered += usize::from(!response.is_empty());
            }
            SwarmEvent::Behaviour(FlooderEvent::Raw(
                request_response::Event::OutboundFailure { .. },
            )) => settled += 1,
            _ => {}
        }
    }
    answered
}

/// Samples the process's resident memory until told to stop; the peak.
fn sample_resident(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let peak = AtomicU64::new(0);
        while !stop.load(Ordering::Relaxed) {
            peak.fetch_max(process::rss_of(pid), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak.into_inner()
    })
}

/// Asks the node's API for its consultations twice a second until told to
/// stop; how many answers were 200 and how many were not.
fn poll_api(base: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(usize, usize)> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            let answer = http
                .get(format!("{base}/consultations"))
                .bearer_auth(process::TOKEN)
                .send()
                .await;
            match answer {
                Ok(r) if r.status() == reqwest::StatusCode::OK => ok += 1,
                _ => failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (ok, failed)
    })
}

/// Why the node at `data` refused `org`, from `konsilium peers`.
fn refusal(data: &std::path::Path, org: OrgId) -> Option<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_konsilium"))
        .args(["peers", "--json", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (peers.as_array()?.iter())
        .filter(|p| p["admission"] == "refused" && p["org"] == org.to_string())
        .find_map(|p| p["reason"].as_str().map(str::to_owned))
}

/// The node cuts `insider`, keeps `member` out, and `konsilium peers`
/// gives malformed frames as the reason.
async fn banned_for_malformed_frames(
    mut insider: Insider,
    member: &Member,
    victim: &Member,
    addr: &Multiaddr,
) {
    let name = &member.spec.name;
    assert!(insider.closed().await, "{name} is cut");
    let node = insider.node;
    drop(insider);
    let again = Insider::try_connect(member, addr.clone(), node).await;
    assert!(again.is_err(), "{name} stays out");
    let why = refusal(&victim.data_dir, member.org_id()).unwrap_or_default();
    assert!(why.contains("malformed frames"), "{name}'s refusal: {why}");
}

impl Insider {
    /// Publishes malformed frames on the directory topic once the node
    /// listens to it, until the node cuts the connection; how many went out.
    async fn flood_gossip(&mut self, count: usize) -> usize {
        let topic = gossipsub::IdentTopic::new(DIRECTORY_TOPIC);
        let deadline = Instant::now() + PATIENCE;
        while !(self.swarm.behaviour().gossip.all_peers())
            .any(|(p, topics)| *p == self.node && topics.contains(&&topic.hash()))
        {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .expect("the node subscribes within a minute");
            self.on_event(event);
        }
        let mut published = 0;
        for n in 0..count {
            let junk = format!("KS\x01\x03 not a record {n}").into_bytes();
            match self
                .swarm
                .behaviour_mut()
                .gossip
                .publish(topic.clone(), junk)
            {
                Ok(_) => published += 1,
                Err(_) => break,
            }
            // Let the swarm send what is queued, and hear of a cut.
            if n % 100 == 0
                && let Ok(Some(event)) =
                    tokio::time::timeout(Duration::from_millis(5), self.swarm.next()).await
            {
                self.on_event(event);
            }
        }
        published
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_oversized_frames_and_a_stalled_reader_leave_the_node_serving_under_256_mib() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let enrol_district = |fed: &mut LocalFederation, name: &str| {
        fed.enrol(OrgSpec::new(name, OrgLevel::District, "RU-VLG", &[]))
    };
    let federal = federal_center(&mut fed);
    let regional = vologda_regional(&mut fed, &[]);
    let framer = enrol_district(&mut fed, "Kirillov CDH");
    let gossiper = enrol_district(&mut fed, "Belozersk CDH");
    let staller = enrol_district(&mut fed, "Vytegra CDH");

    let (port, api_port) = (process::free_port(), process::free_port());
    let options = Options {
        bootstrap: &[],
        api_port: Some(api_port),
        directory: "",
        log_level: "info",
        listen_port: port,
    };
    let config = process::write_config(&federal, &fed, &options);
    let mut victim = ProcessNode::spawn(&config, &dir.path().join("victim.log"));
    let base = format!("http://127.0.0.1:{api_port}");
    victim.api_up(&reqwest::Client::new(), &base).await;
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let node = federal.org_id().to_peer_id();
    let honest = start(&regional, vec![addr.clone()]).await;
    wait::converged(&[&honest], 2, PATIENCE).await.unwrap();
    let baseline = victim.rss_bytes();

    let stop = Arc::new(AtomicBool::new(false));
    let peak = sample_resident(victim.pid(), stop.clone());
    let api = poll_api(base, stop.clone());
    let strangers: Vec<_> = (0..STRANGERS)
        .map(|_| tokio::spawn(stranger_flood(addr.clone(), node)))
        .collect();

    // A certified insider sends RPC frames over any kind's limit, and
    // frames of no kind.
    let mut insider = Insider::connect(&framer, addr.clone(), node).await;
    for n in 0..INSIDER_FRAMES {
        let frame = if n % 2 == 0 {
            announcing(1 << 30)
        } else {
            junk()
        };
        insider.swarm.behaviour_mut().raw.send_request(&node, frame);
    }
    banned_for_malformed_frames(insider, &framer, &federal, &addr).await;

    // Another floods the directory topic with malformed frames.
    let mut insider = Insider::connect(&gossiper, addr.clone(), node).await;
    let published = insider.flood_gossip(GOSSIP_FLOOD).await;
    banned_for_malformed_frames(insider, &gossiper, &federal, &addr).await;

    // A third asks for records and then never reads its socket again,
    // while the honest member sends the node a package.
    let mut stalled = Insider::connect(&staller, addr.clone(), node).await;
    let everyone = konsilium_protocol::wire::RecordRequest {
        orgs: vec![federal.org_id(), regional.org_id(), staller.org_id()],
    };
    for _ in 0..64 {
        let request = Request::WantRecords(everyone.clone()).into();
        stalled
            .swarm
            .behaviour_mut()
            .rpc
            .send_request(&node, request);
    }
    let _ = tokio::time::timeout(Duration::from_millis(200), stalled.swarm.next()).await;
    let mut events = honest.subscribe();
    let sent_at = Instant::now();
    let package = honest
        .send(process::planned_for(
            &federal,
            b"during the floods".to_vec(),
        ))
        .await
        .unwrap();
    let delivered = tokio::time::timeout(PATIENCE, async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::PackageDelivered { id, .. }) if id == package.id => return,
                Ok(_) => {}
                Err(e) => panic!("the honest member's events: {e}"),
            }
        }
    })
    .await;
    assert!(delivered.is_ok(), "the honest package is receipted");
    let honest_latency = sent_at.elapsed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    drop(stalled);

    let mut answered = 0;
    for s in strangers {
        answered += s.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.unwrap();
    let (api_ok, api_failed) = api.await.unwrap();
    println!(
        "floods: {} Hello streams sent by {STRANGERS} strangers ({answered} answered); \
         {INSIDER_FRAMES} oversized or junk RPC frames queued by one insider and \
         {published} malformed gossip messages published by another, both banned; \
         a peer stalled 10 s; honest package receipted in {honest_latency:?}; API \
         {api_ok} answered, {api_failed} failed; resident {} MiB before, {} MiB at the \
         peak (limit {} MiB)",
        STRANGERS * STREAMS_PER_STRANGER,
        baseline >> 20,
        peak >> 20,
        RESIDENT_LIMIT >> 20,
    );
    assert_eq!(answered, 0, "no stranger's frame is answered");
    assert!(published >= 2, "the flood reached the node");
    assert_eq!(api_failed, 0, "the API answered throughout");
    assert!(api_ok > 0);
    assert!(peak < RESIDENT_LIMIT, "peak resident {peak} bytes");
    // Still the same process, still serving.
    victim
        .api_up(
            &reqwest::Client::new(),
            &format!("http://127.0.0.1:{api_port}"),
        )
        .await;
    honest.shutdown().await;
    victim.kill();
}
