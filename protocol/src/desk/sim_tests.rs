//! Consultations end to end on the simulated network: every organization a
//! `testkit::Site` (admission, directory, outbox and desk, as the node wires
//! them), simulated time, lossy links. A day of a consultation's life runs
//! in milliseconds.

use super::*;
use crate::cert::OrgLevel;
use crate::conclusion::Conclusion;
use crate::directory::{Scope, SyncConfig};
use crate::specialty::Specialty;
use crate::testkit::{Link, NOW, SimConfig, SimNet, Site, TestFederation, TestOrg, seed};
use crate::urgency::Urgency;
use crate::workflow::ConsentMethod;

const REQUESTER: usize = 0;
const DISTRICT: usize = 1;
const REGIONAL: usize = 2;
const FEDERAL: usize = 3;

struct Federation {
    orgs: Vec<TestOrg>,
    net: SimNet<Site>,
}

/// A district hospital asking, and cardiology at district, regional and
/// federal level; every directory already complete, everyone admitted.
fn federation() -> Federation {
    let mut fed = TestFederation::new("desk-sim");
    let cardiology = [Specialty::Cardiology];
    let orgs = vec![
        fed.org(1, OrgLevel::District, "RU-VLG", &[]),
        fed.org(2, OrgLevel::District, "RU-VLG", &cardiology),
        fed.org(3, OrgLevel::Regional, "RU-VLG", &cardiology),
        fed.org(4, OrgLevel::Federal, "RU-MOW", &cardiology),
    ];
    let records: Vec<_> = orgs.iter().map(|o| o.signed_record(1)).collect();
    let sim = SimConfig {
        link: Link {
            latency: Duration::from_millis(40),
            jitter: Duration::from_millis(20),
            loss: 0.0,
        },
        failure_after: Duration::from_secs(10),
        seed: 3,
    };
    let mut net = SimNet::new(sim, NOW);
    for (i, o) in orgs.iter().enumerate() {
        let config = SyncConfig::new(Scope::Federation, seed("desk-sim", i as u64));
        net.add(Site::of(o, &fed.trust, records.clone(), config, NOW));
    }
    net.connect_all();
    net.run_for(Duration::from_secs(1));
    Federation { orgs, net }
}

fn conclusion(f: &Federation, by: usize, id: ConsultationId, at: Timestamp) -> ConclusionFile {
    ConclusionFile {
        conclusion: Conclusion {
            consultation: id,
            consultant_org: f.orgs[by].id(),
            authors: vec!["Dr. Sokolov".into()],
            diagnosis: "acute myocardial infarction".into(),
            recommendations: "primary PCI within 120 minutes".into(),
            treatment_plan: "transfer to the regional vascular center".into(),
            further_studies: "troponin, echocardiography".into(),
            attachments: vec![],
            issued_at: at,
        }
        .sign(&f.orgs[by].identity)
        .unwrap(),
        chain: f.orgs[by].chain.clone(),
    }
}

/// The consultant answers: accepts, then concludes.
fn answer(f: &mut Federation, by: usize, id: ConsultationId) {
    act_as_coordinator(f, by, id, Action::Accept);
    conclude(f, by, id);
}

fn act_as_coordinator(f: &mut Federation, by: usize, id: ConsultationId, action: Action) {
    let now = f.net.now();
    let coordinator = Actor {
        role: Role::Coordinator,
        user: "coordinator",
    };
    let site = f.net.node_mut(by);
    site.act(now, id, coordinator, action, None).unwrap();
}

/// The consultant signs a conclusion and concludes.
fn conclude(f: &mut Federation, by: usize, id: ConsultationId) {
    let now = f.net.now();
    let file = conclusion(f, by, id, now);
    let conclude = Action::Conclude {
        conclusion: file.conclusion.content_hash(),
    };
    let consultant = Actor {
        role: Role::Consultant,
        user: "Dr. Sokolov",
    };
    let site = f.net.node_mut(by);
    site.act(now, id, consultant, conclude, Some(file)).unwrap();
}

fn status(f: &Federation, site: usize, id: &ConsultationId) -> Option<Status> {
    f.net
        .node(site)
        .desk()
        .case(id)
        .map(|c| c.consultation.status)
}

fn acknowledge(f: &mut Federation, id: ConsultationId) {
    let now = f.net.now();
    let physician = Actor {
        role: Role::Physician,
        user: "attending physician",
    };
    let site = f.net.node_mut(REQUESTER);
    site.act(now, id, physician, Action::Acknowledge, None)
        .unwrap();
}

/// The requesting hospital asks the district hospital's cardiologist.
fn ask_district(f: &mut Federation, urgency: Urgency, consent: Consent) -> ConsultationId {
    let now = f.net.now();
    let consultant = f.orgs[DISTRICT].id();
    f.net
        .node_mut(REQUESTER)
        .ask(now, consultant, urgency, consent, Specialty::Cardiology)
        .unwrap()
}

/// Written consent, as a planned or urgent request carries it.
fn written_consent() -> Consent {
    Consent::Given {
        by: "the patient".into(),
        at: NOW,
        method: ConsentMethod::Written,
        document: None,
    }
}

#[test]
fn an_urgent_consultation_runs_to_an_acknowledged_conclusion_over_lossy_links() {
    let mut f = federation();
    f.net.set_default_loss(0.2);
    let id = ask_district(&mut f, Urgency::Urgent, written_consent());
    let arrived = f.net.run_until(Duration::from_secs(3600), |net| {
        net.node(DISTRICT).desk().case(&id).is_some()
    });
    assert!(arrived, "the request reached the consultant");
    answer(&mut f, DISTRICT, id);
    let concluded = f.net.run_until(Duration::from_secs(3600), |net| {
        net.node(REQUESTER)
            .desk()
            .case(&id)
            .is_some_and(|c| c.consultation.status == Status::Completed && c.conclusion.is_some())
    });
    assert!(concluded, "the conclusion reached the requester");
    acknowledge(&mut f, id);
    let acknowledged = f.net.run_until(Duration::from_secs(3600), |net| {
        net.node(DISTRICT)
            .desk()
            .case(&id)
            .is_some_and(|c| c.consultation.acknowledged)
    });
    assert!(acknowledged, "the acknowledgement reached the consultant");
    let (a, b) = (f.net.node(REQUESTER), f.net.node(DISTRICT));
    assert_eq!(
        a.desk().case(&id).unwrap().consultation.history,
        b.desk().case(&id).unwrap().consultation.history
    );
    assert!(f.net.total().lost > 0, "messages were lost on the way");
    // Every package was receipted in the end: nothing left to deliver.
    f.net.run_for(Duration::from_secs(3600));
    for i in 0..4 {
        assert!(
            f.net.node(i).outbox().is_empty(),
            "site {i} still has packages"
        );
    }
    assert_eq!(f.net.violations(), &[]);
}

/// The documents' emergency: nobody at district or regional level answers
/// in time, so the case goes up twice and the federal center concludes.
#[test]
fn an_unanswered_emergency_is_escalated_twice_and_concluded_at_the_federal_center() {
    let mut f = federation();
    f.net.set_default_loss(0.1);
    let consent = Consent::EmergencyOverride {
        reason: "unconscious, no relative reachable".into(),
    };
    let first = ask_district(&mut f, Urgency::Emergency, consent);
    let federal = f.orgs[FEDERAL].id();
    let reached = f.net.run_until(Duration::from_secs(6 * 3600), |net| {
        net.node(FEDERAL).desk().cases().next().is_some()
    });
    assert!(reached, "the case reached the federal center");
    let last = f.net.node(FEDERAL).desk().cases().next().unwrap().id();
    answer(&mut f, FEDERAL, last);
    let concluded = f.net.run_until(Duration::from_secs(3600), |net| {
        net.node(REQUESTER)
            .desk()
            .case(&last)
            .is_some_and(|c| c.consultation.status == Status::Completed)
    });
    assert!(concluded);
    acknowledge(&mut f, last);
    f.net.run_for(Duration::from_secs(600));

    // The requester's chain: district -> regional -> federal.
    let escalations: Vec<(ConsultationId, OrgId)> = f
        .net
        .node(REQUESTER)
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Escalated {
                to: Some((id, org)),
                ..
            } => Some((*id, *org)),
            _ => None,
        })
        .collect();
    assert_eq!(escalations.len(), 2, "{escalations:?}");
    assert_eq!(escalations[0].1, f.orgs[REGIONAL].id());
    assert_eq!(escalations[1], (last, federal));
    let second = escalations[0].0;
    // The unanswered ones were cancelled on both sides.
    assert_eq!(status(&f, REQUESTER, &first), Some(Status::Cancelled));
    assert_eq!(status(&f, DISTRICT, &first), Some(Status::Cancelled));
    assert_eq!(status(&f, REQUESTER, &second), Some(Status::Cancelled));
    assert_eq!(status(&f, REGIONAL, &second), Some(Status::Cancelled));
    assert_eq!(status(&f, REQUESTER, &last), Some(Status::Completed));
    assert!(
        f.net
            .node(FEDERAL)
            .desk()
            .case(&last)
            .unwrap()
            .consultation
            .acknowledged,
        "the federal center saw the acknowledgement"
    );
    let escalated_from = f
        .net
        .node(FEDERAL)
        .desk()
        .case(&last)
        .unwrap()
        .consultation
        .request
        .escalated_from;
    assert_eq!(escalated_from, Some(second));
}

#[test]
fn a_conclusion_sent_during_a_partition_reaches_the_requester_after_the_heal() {
    let mut f = federation();
    let id = ask_district(&mut f, Urgency::Urgent, written_consent());
    let arrived = f.net.run_until(Duration::from_secs(600), |net| {
        net.node(DISTRICT).desk().case(&id).is_some()
    });
    assert!(arrived, "the request reached the consultant");
    // The requesting hospital drops off the network; the consultant
    // concludes meanwhile.
    f.net.partition(|n| usize::from(n == REQUESTER));
    answer(&mut f, DISTRICT, id);
    f.net.run_for(Duration::from_secs(1800));
    assert_eq!(status(&f, DISTRICT, &id), Some(Status::Completed));
    assert_ne!(
        status(&f, REQUESTER, &id),
        Some(Status::Completed),
        "nothing crosses the split"
    );
    assert!(
        !f.net.node(DISTRICT).outbox().is_empty(),
        "the steps wait to be delivered"
    );
    f.net.heal();
    let concluded = f.net.run_until(Duration::from_secs(3600), |net| {
        net.node(REQUESTER)
            .desk()
            .case(&id)
            .is_some_and(|c| c.consultation.status == Status::Completed && c.conclusion.is_some())
    });
    assert!(concluded, "the conclusion arrived after the heal");
    let (a, b) = (f.net.node(REQUESTER), f.net.node(DISTRICT));
    assert_eq!(
        a.desk().case(&id).unwrap().consultation.history,
        b.desk().case(&id).unwrap().consultation.history
    );
    assert_eq!(f.net.violations(), &[]);
}

/// Found by the Vologda simulation: a decline with forward is escalated at
/// once, also when the requester's desk has no other consultation whose
/// timer would have woken it.
#[test]
fn a_case_declined_with_forward_goes_to_the_next_consultant_at_once() {
    let mut f = federation();
    let id = ask_district(&mut f, Urgency::Planned, written_consent());
    let arrived = f.net.run_until(Duration::from_secs(600), |net| {
        net.node(DISTRICT).desk().case(&id).is_some()
    });
    assert!(arrived, "the request reached the consultant");
    let now = f.net.now();
    let coordinator = Actor {
        role: Role::Coordinator,
        user: "coordinator",
    };
    let decline = Action::Reject {
        reason: "every cardiologist is booked past the deadline".into(),
        forward: true,
    };
    f.net
        .node_mut(DISTRICT)
        .act(now, id, coordinator, decline, None)
        .unwrap();
    // A planned case has days before any deadline timer: only the decline
    // itself can move it on.
    let forwarded = f.net.run_until(Duration::from_secs(60), |net| {
        net.node(REGIONAL).desk().cases().next().is_some()
    });
    assert!(
        forwarded,
        "the regional center got the case within a minute"
    );
    assert_eq!(status(&f, REQUESTER, &id), Some(Status::Rejected));
    let next = f.net.node(REGIONAL).desk().cases().next().unwrap();
    assert_eq!(next.consultation.request.escalated_from, Some(id));
}

/// The district's cardiologist invites the federal center into the
/// consilium: the center receives the case with its history, gives its
/// opinion, and every step from then on reaches all three sites, over
/// lossy links, in the same order everywhere.
#[test]
fn an_invited_organization_receives_the_case_and_every_step_from_then_on() {
    let mut f = federation();
    f.net.set_default_loss(0.2);
    let id = ask_district(&mut f, Urgency::Urgent, written_consent());
    let arrived = f.net.run_until(Duration::from_secs(3600), |net| {
        net.node(DISTRICT).desk().case(&id).is_some()
    });
    assert!(arrived, "the request reached the consultant");
    let federal = f.orgs[FEDERAL].id();
    act_as_coordinator(&mut f, DISTRICT, id, Action::Accept);
    act_as_coordinator(&mut f, DISTRICT, id, Action::Invite { org: federal });
    let joined = f.net.run_until(Duration::from_secs(3600), |net| {
        net.node(FEDERAL).desk().case(&id).is_some()
    });
    assert!(joined, "the invitation reached the federal center");
    let guest = f.net.node(FEDERAL).desk().case(&id).unwrap();
    assert_eq!(guest.consultation.guests, vec![federal]);
    assert_eq!(
        guest.consultation.history.len(),
        2,
        "the accept and the invitation"
    );
    let now = f.net.now();
    let opinion = Action::Note {
        text: "agree: primary PCI".into(),
    };
    let consultant = Actor {
        role: Role::Consultant,
        user: "Prof. Orlov",
    };
    (f.net.node_mut(FEDERAL))
        .act(now, id, consultant, opinion, None)
        .unwrap();
    let heard = f.net.run_until(Duration::from_secs(3600), |net| {
        [REQUESTER, DISTRICT].iter().all(|&s| {
            net.node(s)
                .desk()
                .case(&id)
                .unwrap()
                .consultation
                .history
                .len()
                == 3
        })
    });
    assert!(heard, "the guest's opinion reached both owners");
    conclude(&mut f, DISTRICT, id);
    let everywhere = f.net.run_until(Duration::from_secs(3600), |net| {
        [REQUESTER, DISTRICT, FEDERAL].iter().all(|&s| {
            let case = net.node(s).desk().case(&id).unwrap();
            case.consultation.status == Status::Completed && case.conclusion.is_some()
        })
    });
    assert!(everywhere, "the conclusion reached all three");
    let histories: Vec<_> = [REQUESTER, DISTRICT, FEDERAL]
        .iter()
        .map(|&s| {
            f.net
                .node(s)
                .desk()
                .case(&id)
                .unwrap()
                .consultation
                .history
                .clone()
        })
        .collect();
    assert_eq!(histories[0], histories[1]);
    assert_eq!(histories[0], histories[2]);
    // A site that was never invited holds nothing of the case.
    assert!(f.net.node(REGIONAL).desk().case(&id).is_none());
    assert_eq!(f.net.violations(), &[]);
}
