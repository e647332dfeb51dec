//! What an idle node costs its host: one `konsilium run` process (its own
//! process, so the kernel's CPU and memory accounting is its alone)
//! connected to 150 certified peers, none of them sending anything but what
//! the protocol sends on its own (pings, gossip heartbeats, anti-entropy
//! rounds). The peers run in this process with the production timings a
//! config file gives a node. Target: under 1% of one core and under 150 MiB
//! resident.
//!
//! Run with `cargo bench -p konsilium-node --bench idle` (`-- --quick`
//! watches for 20 s instead of 60 s).

#[path = "../tests/process/mod.rs"]
mod process;

use konsilium_node::federation::{LocalFederation, OrgSpec, wait};
use konsilium_node::node::{self, NodeHandle};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::testkit::suite::{self, SuiteRow};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use process::{Options, ProcessNode};
use std::time::Duration;
use tokio::time::Instant;

const PEERS: usize = 150;
const CPU_BUDGET: f64 = 0.01;
const RESIDENT_BUDGET: u64 = 150 << 20;
/// Connecting 150 peers and their first directory exchanges are not idle.
const SETTLE: Duration = Duration::from_secs(20);
const PATIENCE: Duration = Duration::from_secs(300);

/// User + system CPU time of `pid` so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat format") + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let per_second = rustix::param::clock_ticks_per_second();
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// Until every peer counts the watched node among its certified peers.
async fn all_linked(peers: &[NodeHandle], watched: konsilium_protocol::identity::OrgId) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut linked = 0;
        for p in peers {
            linked += usize::from(
                p.status()
                    .await
                    .expect("peer running")
                    .peers
                    .contains(&watched),
            );
        }
        if linked == peers.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {linked} of {} peers linked to the watched node",
            peers.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let window = Duration::from_secs(if quick { 20 } else { 60 });
    let tmp = tempfile::tempdir().expect("temporary directory");
    let mut fed = LocalFederation::new(tmp.path(), node::now());

    let watched = fed.enrol(OrgSpec::new(
        "Idle regional center",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let port = process::free_port();
    let config = process::write_config(
        &watched,
        &fed,
        &Options {
            bootstrap: &[],
            api_port: None,
            directory: process::CARDIOLOGY,
            log_level: "warn",
            listen_port: port,
        },
    );
    let child = ProcessNode::spawn(&config, &tmp.path().join("watched.log"));
    let entry: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}")
        .parse::<Multiaddr>()
        .expect("address")
        .with(Protocol::P2p(watched.org_id().to_peer_id()));

    println!(
        "starting {PEERS} peers bootstrapping from the watched node (pid {})",
        child.pid()
    );
    let regions = ["RU-VLG", "RU-ARK", "RU-KO", "RU-MOW", "RU-SPE"];
    let mut peers = Vec::with_capacity(PEERS);
    for i in 0..PEERS {
        let level = if i % 10 == 0 {
            OrgLevel::Federal
        } else {
            OrgLevel::District
        };
        let member = fed.enrol(OrgSpec::new(
            &format!("Idle peer {i}"),
            level,
            regions[i % regions.len()],
            &[Specialty::ALL[i % Specialty::ALL.len()]],
        ));
        let mut setup = member.setup(vec![entry.clone()], vec![]);
        // What a config file gives a node, not the tests' fast timings.
        setup.gossip_heartbeat = node::GOSSIP_HEARTBEAT;
        setup.anti_entropy_every = node::ANTI_ENTROPY_EVERY;
        peers.push(node::start(setup).await.expect("peer starts"));
    }
    all_linked(&peers, watched.org_id()).await;
    wait::converged(&peers.iter().collect::<Vec<_>>(), PEERS + 1, PATIENCE)
        .await
        .expect("directories converge");
    println!("all {PEERS} peers linked and converged; settling for {SETTLE:?}");
    tokio::time::sleep(SETTLE).await;

    let before = cpu_time(child.pid());
    let mut resident = 0u64;
    let start = Instant::now();
    while start.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        resident = resident.max(child.rss_bytes());
    }
    let busy = cpu_time(child.pid()) - before;
    let share = busy.as_secs_f64() / start.elapsed().as_secs_f64();
    // Still linked at the end: the figure is for a node holding its peers.
    all_linked(&peers, watched.org_id()).await;

    let mib = resident as f64 / f64::from(1 << 20);
    let met_cpu = share < CPU_BUDGET;
    let met_memory = resident < RESIDENT_BUDGET;
    println!(
        "idle node, {PEERS} certified peers, {:.0} s: {:.2}% of one core ({}), peak {mib:.0} MiB resident ({})",
        window.as_secs_f64(),
        share * 100.0,
        if met_cpu { "ok" } else { "MISSED" },
        if met_memory { "ok" } else { "MISSED" },
    );
    let rows = [
        SuiteRow {
            row: format!("idle node with {PEERS} certified peers: CPU"),
            measured: format!(
                "{:.2} s CPU in {:.0} s",
                busy.as_secs_f64(),
                window.as_secs_f64()
            ),
            baseline: "-".into(),
            limit: "budget: 1% of one core".into(),
            judged: format!("{:.2}% of one core", share * 100.0),
            context: "-".into(),
            target: "< 1%".into(),
            met: met_cpu,
        },
        SuiteRow {
            row: format!("idle node with {PEERS} certified peers: memory"),
            measured: format!("peak {mib:.0} MiB resident"),
            baseline: "-".into(),
            limit: "budget: 150 MiB".into(),
            judged: format!("{mib:.0} MiB"),
            context: "-".into(),
            target: "< 150 MiB".into(),
            met: met_memory,
        },
    ];
    if let Some(path) = suite::record("5-idle", &rows).expect("write the suite rows") {
        println!("rows written to {}", path.display());
    }
    for p in peers {
        p.shutdown().await;
    }
    drop(child);
}
