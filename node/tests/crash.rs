//! Crash safety: a regional node, run as its own `konsilium run` process,
//! is killed with SIGKILL at random moments while it answers API requests,
//! takes packages in, relays packages for a district hospital and writes
//! its journal, then started again, over and over. After every kill the
//! journal verifies against its anchor and the database opens; after every
//! restart nothing the node acknowledged is missing: no consultation whose
//! id its API returned, no package whose receipt it signed, no package it
//! took custody of (those reach their recipient).
//!
//! `KONSILIUM_CRASH_KILLS` sets the number of kills (200 by default, as CI
//! runs it) and `KONSILIUM_CRASH_SEED` the seed of the kill moments.

#![cfg(feature = "local-federation")]

mod process;

use konsilium_node::federation::{LocalFederation, Member, OrgSpec, wait};
use konsilium_node::node::{self, NewConsultation, NodeEvent, NodeHandle, SendRequest, Target};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::content::CaseExtract;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::seal::PackageId;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Consent, ConsentMethod, ConsultationId};
use libp2p::Multiaddr;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use process::{CARDIOLOGY, Options, ProcessNode, TOKEN, journal_verifies};

const PATIENCE: Duration = Duration::from_secs(60);
/// Consultations opened through the API between two kills, at most: the
/// kill usually comes first.
const API_REQUESTS_PER_ROUND: usize = 12;

/// Kill moments from a seed, so a failing run can be repeated.
struct Moments(u64);

impl Moments {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % below
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn consultation_exists(http: &reqwest::Client, base: &str, id: &str) -> bool {
    let got = http
        .get(format!("{base}/consultations/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await;
    got.is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
}

/// What the victim acknowledged, as its clients saw it.
#[derive(Default)]
struct Acknowledged {
    /// Consultations whose id the victim's API returned (201).
    opened: Vec<String>,
    /// Consultations the district opened at the victim, receipted by it.
    received: Vec<ConsultationId>,
    /// Packages for the federal center the victim took custody of.
    custody: BTreeSet<PackageId>,
}

/// Opens consultations through the victim's API, for the federal center,
/// until the victim dies; returns the ids it acknowledged.
async fn api_load(http: reqwest::Client, base: String, federal: String) -> Vec<String> {
    let mut opened = Vec::new();
    for _ in 0..API_REQUESTS_PER_ROUND {
        let body = json!({
            "target": federal,
            "specialty": "cardiology",
            "min_level": "federal",
            "urgency": "planned",
            "consent": {"by": "the patient", "method": "written"},
            "summary": "54-year-old, unstable angina",
            "questions": "Coronary angiography?"
        });
        let sent = http
            .post(format!("{base}/consultations"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await;
        let Ok(response) = sent else {
            return opened;
        };
        if response.status() == reqwest::StatusCode::CREATED
            && let Ok(body) = response.json::<Value>().await
            && let Some(id) = body["id"].as_str()
        {
            opened.push(id.to_owned());
        }
    }
    opened
}

fn district_request(victim: &Member) -> NewConsultation {
    NewConsultation {
        target: Target::Org(victim.org_id()),
        specialty: Specialty::Cardiology,
        min_level: OrgLevel::Regional,
        urgency: Urgency::Urgent,
        region: None,
        consent: Consent::Given {
            by: "the patient".into(),
            at: node::now(),
            method: ConsentMethod::Written,
            document: None,
        },
        physician: "Dr. Smirnova".into(),
        entered_by: "Dr. Smirnova".into(),
        extract: CaseExtract {
            summary: "47-year-old, chest pain at rest".into(),
            questions: "Refer for angiography?".into(),
        },
        escalated_from: None,
    }
}

fn relayed_package(federal: &Member, n: u64) -> SendRequest {
    process::planned_for(federal, format!("relayed package {n}").into_bytes())
}

/// Follows the district's events: which of its packages the victim
/// receipted (by request package) or took custody of.
fn watch_district(
    district: &NodeHandle,
    acks: Arc<Mutex<(BTreeSet<PackageId>, BTreeSet<PackageId>)>>,
) {
    let mut events = district.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            let mut acks = acks.lock().unwrap();
            match event {
                NodeEvent::PackageDelivered { id, .. } => {
                    acks.0.insert(id);
                }
                NodeEvent::PackageInCustody { id, .. } => {
                    acks.1.insert(id);
                }
                _ => {}
            }
        }
    });
}

async fn start(member: &Member, bootstrap: Vec<Multiaddr>, relay_via: Vec<OrgId>) -> NodeHandle {
    let started = node::start(member.setup(bootstrap, relay_via)).await;
    started.unwrap_or_else(|e| panic!("cannot start {}: {e}", member.spec.name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_at_random_moments_loses_nothing_it_acknowledged() {
    let kills = env_number("KONSILIUM_CRASH_KILLS", 200);
    let seed = env_number("KONSILIUM_CRASH_SEED", 7);
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let spec = |name, level, region, specialties: &[Specialty]| {
        OrgSpec::new(name, level, region, specialties)
    };
    let district = fed.enrol(spec("Kirillov CDH", OrgLevel::District, "RU-VLG", &[]));
    let victim = fed.enrol(spec(
        "Vologda regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let federal = fed.enrol(spec(
        "Federal cardiology center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Cardiology],
    ));
    let f = start(&federal, vec![], vec![]).await;
    let d = start(&district, vec![], vec![victim.org_id()]).await;
    let bootstrap = vec![
        wait::listen_addr(&d, PATIENCE).await.unwrap(),
        wait::listen_addr(&f, PATIENCE).await.unwrap(),
    ];
    let api_port = process::free_port();
    let options = Options {
        bootstrap: &bootstrap,
        api_port: Some(api_port),
        directory: CARDIOLOGY,
        log_level: "warn",
        listen_port: 0,
    };
    let config = process::write_config(&victim, &fed, &options);
    let log = tmp.path().join("victim.log");
    let base = format!("http://127.0.0.1:{api_port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let district_acks = Arc::new(Mutex::new((BTreeSet::new(), BTreeSet::new())));
    watch_district(&d, district_acks.clone());

    let mut moments = Moments(seed);
    let mut acked = Acknowledged::default();
    // Consultations the district opened at the victim, by request package.
    let mut asked: Vec<(ConsultationId, PackageId)> = Vec::new();
    let mut checked = (0, 0);
    let mut relayed = 0u64;
    let started = Instant::now();
    for round in 0..kills {
        let mut child = ProcessNode::spawn(&config, &log);
        child.api_up(&http, &base).await;
        // Everything acknowledged before the last kill is still there.
        for id in &acked.opened[checked.0..] {
            assert!(
                consultation_exists(&http, &base, id).await,
                "round {round}: consultation {id} opened through the API is gone"
            );
        }
        for id in &acked.received[checked.1..] {
            assert!(
                consultation_exists(&http, &base, &id.to_string()).await,
                "round {round}: consultation {id} receipted from the district is gone"
            );
        }
        checked = (acked.opened.len(), acked.received.len());

        let load = tokio::spawn(api_load(
            http.clone(),
            base.clone(),
            federal.org_id().to_string(),
        ));
        for _ in 0..2 {
            if let Ok((id, sent)) = d
                .request_consultation(district_request(&victim), vec![])
                .await
            {
                asked.push((id, sent.id));
            }
            relayed += 1;
            let _ = d.send(relayed_package(&federal, relayed)).await;
        }
        tokio::time::sleep(Duration::from_millis(20 + moments.next(400))).await;
        child.kill();
        acked.opened.extend(load.await.unwrap());
        {
            let acks = district_acks.lock().unwrap();
            let already: BTreeSet<ConsultationId> = acked.received.iter().copied().collect();
            let fresh = asked
                .iter()
                .filter(|(id, package)| acks.0.contains(package) && !already.contains(id))
                .map(|(id, _)| *id)
                .collect::<Vec<_>>();
            acked.received.extend(fresh);
            acked.custody.extend(acks.1.iter().copied());
        }
        journal_verifies(&victim.data_dir);
    }

    // Up once more: everything acknowledged is there, and every package
    // the victim took custody of reaches the federal center.
    let mut child = ProcessNode::spawn(&config, &log);
    child.api_up(&http, &base).await;
    for id in &acked.opened {
        assert!(
            consultation_exists(&http, &base, id).await,
            "consultation {id} is gone"
        );
    }
    for id in &acked.received {
        assert!(
            consultation_exists(&http, &base, &id.to_string()).await,
            "consultation {id} is gone"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let missing: Vec<PackageId> = {
            let acks = district_acks.lock().unwrap();
            acked
                .custody
                .iter()
                .filter(|id| !acks.0.contains(id))
                .copied()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} packages in the victim's custody never reached the federal center: {missing:?}",
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.kill();
    journal_verifies(&victim.data_dir);
    println!(
        "crash safety: {kills} SIGKILLs in {:.0} s; acknowledged and found after restart: {} API consultations, {} receipted consultations, {} packages relayed under custody; journal verified after every kill",
        started.elapsed().as_secs_f64(),
        acked.opened.len(),
        acked.received.len(),
        acked.custody.len(),
    );
    assert!(
        !acked.opened.is_empty() && !acked.received.is_empty() && !acked.custody.is_empty(),
        "the load reached the node"
    );
    d.shutdown().await;
    f.shutdown().await;
}
