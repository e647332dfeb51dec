//! Two real nodes on 127.0.0.1 with media planes, a district hospital and
//! the federal center it consults, and consultations between them: what
//! the video benches open sessions in. Each node may run on a runtime of
//! its own, so a bench can count one node's CPU by its threads' names.

use konsilium_node::config::VideoConfig;
use konsilium_node::federation::{LocalFederation, OrgSpec, wait};
use konsilium_node::node::{self, NewConsultation, NodeEvent, NodeHandle, NodeSetup, Target};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::content::CaseExtract;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Consent, ConsentMethod, ConsultationId, Status};
use std::time::Duration;
use tokio::runtime::Handle;

/// Only guards against hangs.
pub const PATIENCE: Duration = Duration::from_secs(60);

fn new_consultation() -> NewConsultation {
    NewConsultation {
        target: Target::Best,
        specialty: Specialty::Cardiology,
        min_level: OrgLevel::Federal,
        urgency: Urgency::Urgent,
        region: None,
        consent: Consent::Given {
            by: "the patient".into(),
            at: node::now(),
            method: ConsentMethod::Written,
            document: None,
        },
        physician: "Dr. Ivanova".into(),
        entered_by: "Dr. Ivanova".into(),
        extract: CaseExtract {
            summary: "bench".into(),
            questions: "video".into(),
        },
        escalated_from: None,
    }
}

pub struct Pair {
    pub _tmp: tempfile::TempDir,
    pub district: NodeHandle,
    pub federal: NodeHandle,
}

/// Starts a node on `runtime`, or on the current one.
async fn start(setup: NodeSetup, runtime: Option<&Handle>) -> NodeHandle {
    let started = match runtime {
        Some(rt) => rt.spawn(node::start(setup)).await.expect("the start task"),
        None => node::start(setup).await,
    };
    started.expect("the node starts")
}

/// The district node (on `district_rt` when given) and the federal node
/// (on `federal_rt`), connected, their directories converged.
pub async fn pair(district_rt: Option<&Handle>, federal_rt: Option<&Handle>) -> Pair {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let f = fed.enrol(OrgSpec::new(
        "Federal cardiology center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Cardiology],
    ));
    let d = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let video = Some(VideoConfig::on("127.0.0.1:0".parse().expect("an address")));
    let mut setup = f.setup(vec![], vec![]);
    setup.video = video.clone();
    let federal = start(setup, federal_rt).await;
    let fa = wait::listen_addr(&federal, PATIENCE)
        .await
        .expect("it listens");
    let mut setup = d.setup(vec![fa], vec![]);
    setup.video = video;
    let district = start(setup, district_rt).await;
    wait::converged(&[&district, &federal], 2, PATIENCE)
        .await
        .expect("the two directories converge");
    Pair {
        _tmp: tmp,
        district,
        federal,
    }
}

/// `n` consultations the federal center holds, ready for a session each.
pub async fn consultations(pair: &Pair, n: usize) -> Vec<ConsultationId> {
    let mut at_federal = pair.federal.subscribe();
    let mut ids = Vec::new();
    for _ in 0..n {
        let (id, _) = (pair.district)
            .request_consultation(new_consultation(), vec![])
            .await
            .expect("a consultation is requested");
        ids.push(id);
    }
    let mut arrived = 0;
    wait::event(
        &mut at_federal,
        "the requests at the center",
        PATIENCE,
        |e| {
            if let NodeEvent::ConsultationUpdated { id, status } = e
                && *status == Status::Requested
                && ids.contains(id)
            {
                arrived += 1;
            }
            (arrived == n).then_some(())
        },
    )
    .await
    .expect("every request arrives");
    ids
}
