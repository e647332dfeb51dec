//! The three sites most consultation and video tests run between: a
//! district hospital, its regional hospital and a federal cardiology
//! center, on 127.0.0.1; and the requests they exchange.

#![allow(dead_code, reason = "each test binary uses its own part")]

use konsilium_node::federation::{LocalFederation, OrgSpec, wait};
use konsilium_node::node::{self, ActRequest, NewConsultation, NodeEvent, NodeHandle, Target};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::content::CaseExtract;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::journal::Role;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Action, Consent, ConsentMethod, ConsultationId, Status};
use std::time::Duration;
use tokio::sync::broadcast;

pub const PATIENCE: Duration = Duration::from_secs(60);

pub async fn status_reaches(
    rx: &mut broadcast::Receiver<NodeEvent>,
    id: ConsultationId,
    want: Status,
) {
    wait::event(rx, &format!("consultation to become {want}"), PATIENCE, |e| {
        matches!(e, NodeEvent::ConsultationUpdated { id: got, status } if *got == id && *status == want).then_some(())
    })
    .await
    .unwrap();
}

pub fn consent() -> Consent {
    Consent::Given {
        by: "the patient".into(),
        at: node::now(),
        method: ConsentMethod::Written,
        document: None,
    }
}

pub fn new_consultation(urgency: Urgency, consent: Consent) -> NewConsultation {
    NewConsultation {
        target: Target::Best,
        specialty: Specialty::Cardiology,
        min_level: OrgLevel::Federal,
        urgency,
        region: None,
        consent,
        physician: "Dr. Ivanova".into(),
        entered_by: "Dr. Ivanova".into(),
        extract: CaseExtract {
            summary: "62-year-old, recurrent syncope, ECG attached".into(),
            questions: "Pacemaker indicated?".into(),
        },
        escalated_from: None,
    }
}

pub fn act(id: ConsultationId, role: Role, user: &str, action: Action) -> ActRequest {
    ActRequest {
        consultation: id,
        role,
        user: user.into(),
        action,
        conclusion: None,
    }
}

/// The consultant's conclusion of `id`, signed by the node; the hash in
/// the step is the node's to fill in.
pub fn conclude(id: ConsultationId, text: node::ConclusionText) -> ActRequest {
    ActRequest {
        conclusion: Some(text),
        ..act(
            id,
            Role::Consultant,
            "Prof. Petrov",
            Action::Conclude {
                conclusion: [0; 32],
            },
        )
    }
}

pub struct Three {
    pub _tmp: tempfile::TempDir,
    pub fed: LocalFederation,
    /// The district's, the regional's and the federal center's members.
    pub members: [konsilium_node::federation::Member; 3],
    pub district: NodeHandle,
    pub regional: NodeHandle,
    pub federal: NodeHandle,
}

pub async fn three() -> Three {
    three_with(None).await
}

/// A media plane on an ephemeral loopback port, nothing else configured.
pub fn loopback_video() -> konsilium_node::config::VideoConfig {
    konsilium_node::config::VideoConfig::on("127.0.0.1:0".parse().unwrap())
}

/// Three sites, each with a media plane as `video` says when given; then
/// the regional node also answers STUN, and the others ask it.
pub async fn three_with(video: Option<konsilium_node::config::VideoConfig>) -> Three {
    three_each(|_, _| video.clone()).await
}

/// Three sites, each with the media plane `video` gives for its
/// organization, knowing all three (district, regional, federal).
pub async fn three_each(
    video: impl Fn(OrgId, [OrgId; 3]) -> Option<konsilium_node::config::VideoConfig>,
) -> Three {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let f = fed.enrol(OrgSpec::new(
        "Federal cardiology center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Cardiology],
    ));
    let r = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let d = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let mut stun = Vec::new();
    let orgs = [d.org_id(), r.org_id(), f.org_id()];
    let with_video = |mut setup: node::NodeSetup, stun: &[String], org: OrgId| {
        setup.video = video(org, orgs).map(|mut v| {
            v.stun = stun.to_vec();
            v
        });
        setup
    };
    let mut regional_setup = with_video(r.setup(vec![], vec![]), &[], orgs[1]);
    if regional_setup.video.is_some() {
        regional_setup.stun_listen = Some("127.0.0.1:0".parse().unwrap());
    }
    let regional_setup_had_video = regional_setup.video.is_some();
    let regional = node::start(regional_setup).await.unwrap();
    if regional_setup_had_video {
        let status = regional.inspect(node::Inspect::Status).await.unwrap();
        stun.push(status["stun_service"].as_str().unwrap().to_owned());
    }
    let ra = wait::listen_addr(&regional, PATIENCE).await.unwrap();
    let federal = node::start(with_video(
        f.setup(vec![ra.clone()], vec![]),
        &stun,
        orgs[2],
    ))
    .await
    .unwrap();
    let district_setup = d.setup(vec![ra], vec![r.org_id()]);
    let district = node::start(with_video(district_setup, &stun, orgs[0]))
        .await
        .unwrap();
    wait::converged(&[&district, &regional, &federal], 3, PATIENCE)
        .await
        .unwrap();
    Three {
        _tmp: tmp,
        fed,
        members: [d, r, f],
        district,
        regional,
        federal,
    }
}
