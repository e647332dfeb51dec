//! Confidentiality through a relay: a district hospital sends packages to a
//! federal center in another region, each holding a known canary string,
//! through its regional center run as a `konsilium run` process. The canary
//! must appear nowhere at the relay: not in its storage, not in its log
//! (at debug level), not in its memory (what a core dump would hold).
//!
//! `KONSILIUM_CANARY_PACKAGES` sets the number of packages (10,000 by
//! default).

#![cfg(feature = "local-federation")]

mod process;

use konsilium_node::federation::{LocalFederation, Member, OrgSpec, wait};
use konsilium_node::node::{self, NodeEvent, NodeHandle, SendRequest};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::seal::PackageId;
use konsilium_protocol::specialty::Specialty;
use libp2p::Multiaddr;
use process::{Options, ProcessNode};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const CANARY: &[u8] = b"KONSILIUM-CANARY-5e1f0c77-patient-Ivanov-I.I.-1961";
/// Sends kept in flight at once; more would only queue at the sender.
const WINDOW: usize = 64;

async fn start(member: &Member, bootstrap: Vec<Multiaddr>, relay_via: Vec<OrgId>) -> NodeHandle {
    let started = node::start(member.setup(bootstrap, relay_via)).await;
    started.unwrap_or_else(|e| panic!("cannot start {}: {e}", member.spec.name))
}

fn with_canary(federal: &Member, n: usize) -> SendRequest {
    let mut body = format!("case {n}: ").into_bytes();
    body.extend_from_slice(CANARY);
    body.extend_from_slice(&[b'.'; 200]);
    process::planned_for(federal, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_carrying_canary_packages_holds_the_canary_nowhere() {
    let count: usize = std::env::var("KONSILIUM_CANARY_PACKAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let district = fed.enrol(OrgSpec::new(
        "Kirillov CDH",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let regional = fed.enrol(OrgSpec::new(
        "Vologda regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[],
    ));
    let federal = fed.enrol(OrgSpec::new(
        "Federal cardiology center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Cardiology],
    ));
    let f = start(&federal, vec![], vec![]).await;
    let d = start(&district, vec![], vec![regional.org_id()]).await;
    let bootstrap = [
        wait::listen_addr(&d, Duration::from_secs(60))
            .await
            .unwrap(),
        wait::listen_addr(&f, Duration::from_secs(60))
            .await
            .unwrap(),
    ];
    let options = Options {
        bootstrap: &bootstrap,
        api_port: None,
        directory: "",
        log_level: "debug",
        listen_port: 0,
    };
    let config = process::write_config(&regional, &fed, &options);
    let log = tmp.path().join("relay.log");
    let relay = ProcessNode::spawn(&config, &log);
    wait::converged(&[&d, &f], 3, Duration::from_secs(60))
        .await
        .unwrap();

    let started = Instant::now();
    let mut events = d.subscribe();
    let mut sent = BTreeSet::new();
    let mut delivered: BTreeSet<PackageId> = BTreeSet::new();
    let mut in_custody = 0;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while delivered.len() < count {
        while sent.len() < count && sent.len() - delivered.len() < WINDOW {
            let package = d.send(with_canary(&federal, sent.len())).await.unwrap();
            assert_eq!(package.next_hop, regional.org_id(), "through the relay");
            sent.insert(package.id);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(NodeEvent::PackageDelivered { id, .. })) if sent.contains(&id) => {
                delivered.insert(id);
            }
            Ok(Ok(NodeEvent::PackageInCustody { .. })) => in_custody += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("the sender's events: {e}"),
            Err(_) => panic!("{} of {count} delivered in 30 minutes", delivered.len()),
        }
    }
    let elapsed = started.elapsed();
    // The recipient opened them: the canary travelled.
    let (_, body) = f.open(*sent.first().unwrap()).await.unwrap();
    assert!(body.windows(CANARY.len()).any(|w| w == CANARY));

    let in_memory = relay.memory_contains(CANARY);
    // The scans find what is there: the relay's own name is in its
    // certificate, in memory and on disk.
    let name = regional.spec.name.as_bytes();
    assert!(
        relay.memory_contains(name),
        "the memory scan reads the relay"
    );
    assert!(process::dir_contains(&regional.data_dir, name));
    let rss = relay.rss_bytes();
    relay.kill();
    let logged = std::fs::read(&log).unwrap();
    assert!(!logged.is_empty(), "the relay logged at debug level");
    assert!(
        !logged.windows(CANARY.len()).any(|w| w == CANARY),
        "the canary is in the relay's log"
    );
    assert!(
        !process::dir_contains(&regional.data_dir, CANARY),
        "the canary is in the relay's storage"
    );
    assert!(!in_memory, "the canary is in the relay's memory");
    println!(
        "confidentiality: {count} canary packages relayed in {:.0} s ({in_custody} custody events); the canary is in none of the relay's storage ({} bytes of log read), log or memory (resident {} MiB when scanned)",
        elapsed.as_secs_f64(),
        logged.len(),
        rss >> 20
    );
    d.shutdown().await;
    f.shutdown().await;
}
