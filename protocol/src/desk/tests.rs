//! The desk alone: two organizations' desks handing each other what the
//! network would carry, in the order a test chooses.

use super::*;
use crate::cert::OrgLevel;
use crate::conclusion::Conclusion;
use crate::specialty::Specialty;
use crate::testkit::{NOW, TestFederation, TestOrg};
use crate::urgency::Urgency;
use crate::workflow::Consent;

pub(super) struct World {
    pub(super) fed: TestFederation,
    pub(super) orgs: Vec<TestOrg>,
    pub(super) directory: Directory,
}

impl World {
    /// A district requester, then consultants at district, regional and federal level.
    pub(super) fn new() -> Self {
        let mut fed = TestFederation::new("desk");
        let cardiology = [Specialty::Cardiology];
        let orgs = vec![
            fed.org(1, OrgLevel::District, "RU-VLG", &[]),
            fed.org(2, OrgLevel::District, "RU-VLG", &cardiology),
            fed.org(3, OrgLevel::Regional, "RU-VLG", &cardiology),
            fed.org(4, OrgLevel::Federal, "RU-MOW", &cardiology),
        ];
        let mut directory = Directory::new();
        for o in &orgs {
            directory
                .insert(o.signed_record(1), &fed.trust, NOW)
                .unwrap();
        }
        World {
            fed,
            orgs,
            directory,
        }
    }

    pub(super) fn desk(&self, i: usize) -> Desk {
        let o = &self.orgs[i];
        Desk::new(
            Config::default(),
            IdentityKey::from_seed(*o.identity.to_seed()),
            o.region.clone(),
        )
    }

    pub(super) fn request(&self, to: usize, urgency: Urgency, n: u8) -> ConsultationRequest {
        ConsultationRequest {
            id: ConsultationId([n; 16]),
            requester: self.orgs[0].id(),
            consultant: self.orgs[to].id(),
            specialty: Specialty::Cardiology,
            urgency,
            created: NOW,
            consent: match urgency {
                Urgency::Emergency => Consent::EmergencyOverride {
                    reason: "unconscious, no relative reachable".into(),
                },
                _ => Consent::Given {
                    by: "the patient".into(),
                    at: NOW,
                    method: crate::workflow::ConsentMethod::Written,
                    document: None,
                },
            },
            physician: "Dr. Petrova".into(),
            escalated_from: None,
        }
    }
}

pub(super) fn drain(desk: &mut Desk) -> Vec<Output> {
    std::iter::from_fn(|| desk.poll_output()).collect()
}

pub(super) fn sent(outputs: &[Output]) -> Vec<(Signed<Transition>, Option<ConclusionFile>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                step, conclusion, ..
            } => Some((step.clone(), conclusion.as_deref().cloned())),
            _ => None,
        })
        .collect()
}

pub(super) fn notes(outputs: &[Output]) -> Vec<journal::Action> {
    outputs
        .iter()
        .flat_map(|o| match o {
            Output::Persist { notes, .. } => notes.iter().map(|n| n.action.clone()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// A conclusion signed by `org`'s consultant for consultation `id`.
pub(super) fn conclusion_by(org: &TestOrg, id: ConsultationId, at: Timestamp) -> ConclusionFile {
    ConclusionFile {
        conclusion: Conclusion {
            consultation: id,
            consultant_org: org.id(),
            authors: vec!["Dr. Ivanov".into()],
            diagnosis: "NSTEMI".into(),
            recommendations: "transfer for angiography".into(),
            treatment_plan: "dual antiplatelet therapy".into(),
            further_studies: "troponin in 3 h".into(),
            attachments: vec![],
            issued_at: at,
        }
        .sign(&org.identity)
        .unwrap(),
        chain: org.chain.clone(),
    }
}

pub(super) fn package() -> PackageId {
    PackageId([7; 16])
}

/// A requester (org 0) and a consultant (org 2) holding one consultation,
/// the consultant having received it, both desks drained.
pub(super) fn opened(w: &World, urgency: Urgency, n: u8) -> (Desk, Desk, ConsultationId) {
    let (mut requester, mut consultant) = (w.desk(0), w.desk(2));
    let request = w.request(2, urgency, n);
    let id = request.id;
    let signed = (requester.open(NOW, request, Some("Dr. Petrova"), &w.directory)).unwrap();
    let (from, trust) = (w.orgs[0].id(), &w.fed.trust);
    consultant
        .handle_request(NOW, from, package(), signed, trust, &w.directory)
        .unwrap();
    drain(&mut requester);
    drain(&mut consultant);
    (requester, consultant, id)
}

#[test]
fn a_consultation_runs_from_request_to_acknowledged_conclusion() {
    let w = World::new();
    let (mut requester, mut consultant) = (w.desk(0), w.desk(2));
    let request = w.request(2, Urgency::Urgent, 1);
    let id = request.id;
    let signed = requester
        .open(NOW, request, Some("Dr. Ivanova"), &w.directory)
        .unwrap();
    let opened = drain(&mut requester);
    assert!(matches!(notes(&opened)[..], [journal::Action::Create(_)]));

    let taken = consultant
        .handle_request(
            NOW,
            w.orgs[0].id(),
            package(),
            signed.clone(),
            &w.fed.trust,
            &w.directory,
        )
        .unwrap();
    assert_eq!(taken, Taken::Taken);
    let received = drain(&mut consultant);
    assert!(matches!(
        notes(&received)[..],
        [journal::Action::Receive { .. }, journal::Action::Create(_)]
    ));
    // The same request again changes nothing.
    let again = consultant.handle_request(
        NOW,
        w.orgs[0].id(),
        package(),
        signed,
        &w.fed.trust,
        &w.directory,
    );
    assert_eq!(again, Ok(Taken::Duplicate));
    assert!(consultant.poll_output().is_none());

    let at = NOW.saturating_add(Duration::from_secs(600));
    consultant
        .act(
            at,
            id,
            Actor {
                role: Role::Coordinator,
                user: "coordinator",
            },
            Action::Accept,
            None,
            &w.directory,
        )
        .unwrap();
    let file = conclusion_by(&w.orgs[2], id, at);
    let conclude = Action::Conclude {
        conclusion: file.conclusion.content_hash(),
    };
    consultant
        .act(
            at,
            id,
            Actor {
                role: Role::Consultant,
                user: "Dr. Ivanov",
            },
            conclude,
            Some(file),
            &w.directory,
        )
        .unwrap();
    let acted = drain(&mut consultant);
    let steps = sent(&acted);
    assert_eq!(steps.len(), 2);
    assert!(notes(&acted).contains(&journal::Action::Conclusion {
        consultation: id.0,
        deadline_met: true
    }));

    for (step, conclusion) in steps {
        requester
            .handle_step(
                at,
                w.orgs[2].id(),
                step,
                conclusion,
                &w.fed.trust,
                &w.directory,
            )
            .unwrap();
    }
    let case = requester.case(&id).unwrap();
    assert_eq!(case.consultation.status, Status::Completed);
    assert!(case.conclusion.is_some());
    drain(&mut requester);
    requester
        .act(
            at,
            id,
            Actor {
                role: Role::Physician,
                user: "Dr. Petrova",
            },
            Action::Acknowledge,
            None,
            &w.directory,
        )
        .unwrap();
    let (ack, _) = sent(&drain(&mut requester)).pop().unwrap();
    consultant
        .handle_step(at, w.orgs[0].id(), ack, None, &w.fed.trust, &w.directory)
        .unwrap();
    assert!(consultant.case(&id).unwrap().consultation.acknowledged);
    assert_eq!(
        requester.case(&id).unwrap().consultation.history,
        consultant.case(&id).unwrap().consultation.history,
        "both sides hold the same signed history"
    );
}

#[test]
fn steps_out_of_order_and_before_their_request_are_applied_in_order() {
    let w = World::new();
    let (mut requester, mut consultant, mut second) = (w.desk(0), w.desk(2), w.desk(2));
    let request = w.request(2, Urgency::Planned, 2);
    let id = request.id;
    let signed = requester
        .open(NOW, request, Some("Dr. Ivanova"), &w.directory)
        .unwrap();
    consultant
        .handle_request(
            NOW,
            w.orgs[0].id(),
            package(),
            signed.clone(),
            &w.fed.trust,
            &w.directory,
        )
        .unwrap();
    for action in [Action::Receive, Action::Accept] {
        consultant
            .act(
                NOW,
                id,
                Actor {
                    role: Role::Coordinator,
                    user: "coordinator",
                },
                action,
                None,
                &w.directory,
            )
            .unwrap();
    }
    let steps = sent(&drain(&mut consultant));
    drain(&mut requester);
    // Second step first: it waits for the first.
    requester
        .handle_step(
            NOW,
            w.orgs[2].id(),
            steps[1].0.clone(),
            None,
            &w.fed.trust,
            &w.directory,
        )
        .unwrap();
    assert_eq!(
        requester.case(&id).unwrap().consultation.status,
        Status::Requested
    );
    assert_eq!(requester.case(&id).unwrap().waiting.len(), 1);
    requester
        .handle_step(
            NOW,
            w.orgs[2].id(),
            steps[0].0.clone(),
            None,
            &w.fed.trust,
            &w.directory,
        )
        .unwrap();
    assert_eq!(
        requester.case(&id).unwrap().consultation.status,
        Status::Accepted
    );
    let applied = notes(&drain(&mut requester));
    assert_eq!(applied.len(), 2, "{applied:?}");
    // A replayed step is a duplicate, not an error.
    let replay = requester.handle_step(
        NOW,
        w.orgs[2].id(),
        steps[0].0.clone(),
        None,
        &w.fed.trust,
        &w.directory,
    );
    assert_eq!(replay, Ok(Taken::Duplicate));

    // A desk that gets the steps before the request holds them.
    let mut other = w.desk(0);
    for (step, _) in &steps {
        let held = other.handle_step(
            NOW,
            w.orgs[2].id(),
            step.clone(),
            None,
            &w.fed.trust,
            &w.directory,
        );
        assert_eq!(held, Ok(Taken::Held));
    }
    assert_eq!(
        drain(&mut other)
            .iter()
            .filter(|o| matches!(o, Output::Hold(_)))
            .count(),
        2
    );
    // Nothing can be done on a consultation a desk does not have.
    let unknown = other.act(
        NOW,
        id,
        Actor {
            role: Role::Physician,
            user: "x",
        },
        Action::Acknowledge,
        None,
        &w.directory,
    );
    assert_eq!(unknown, Err(DeskError::Unknown(id)));
    // A second consultant's desk gets the requester's cancel before the
    // request: it is held, then waits in the case for steps 1 and 2.
    let cancel = requester.case(&id).unwrap().consultation.step(
        &w.orgs[0].identity,
        Role::Physician,
        "Dr. Petrova",
        NOW,
        Action::Cancel {
            reason: "resolved".into(),
        },
    );
    second
        .handle_step(
            NOW,
            w.orgs[0].id(),
            cancel,
            None,
            &w.fed.trust,
            &w.directory,
        )
        .unwrap();
    second
        .handle_request(
            NOW,
            w.orgs[0].id(),
            package(),
            signed,
            &w.fed.trust,
            &w.directory,
        )
        .unwrap();
    let outputs = drain(&mut second);
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Release(r) if *r == id))
    );
    // The held cancel cannot apply before steps 1 and 2: it waits in the case.
    assert_eq!(second.case(&id).unwrap().waiting.len(), 1);
}

#[test]
fn held_steps_are_bounded_and_outsiders_are_refused() {
    let w = World::new();
    let mut consultant = Desk::new(
        Config {
            max_early_steps: 2,
            ..Config::default()
        },
        IdentityKey::from_seed(*w.orgs[2].identity.to_seed()),
        w.orgs[2].region.clone(),
    );
    let mut requester = w.desk(0);
    let mut steps = Vec::new();
    for n in 0..3 {
        let request = w.request(2, Urgency::Planned, 10 + n);
        let id = request.id;
        requester
            .open(NOW, request, Some("Dr. Ivanova"), &w.directory)
            .unwrap();
        let c = &requester.case(&id).unwrap().consultation;
        steps.push(c.step(
            &w.orgs[0].identity,
            Role::Physician,
            "p",
            NOW,
            Action::Cancel { reason: "x".into() },
        ));
    }
    let mut results: Vec<_> = steps
        .into_iter()
        .map(|s| consultant.handle_step(NOW, w.orgs[0].id(), s, None, &w.fed.trust, &w.directory))
        .collect();
    assert_eq!(results.pop(), Some(Err(DeskError::TooManyHeld)));
    assert!(results.iter().all(|r| *r == Ok(Taken::Held)));

    // A request sent by someone other than its requester.
    let signed = requester
        .open(
            NOW,
            w.request(2, Urgency::Planned, 20),
            Some("Dr. Ivanova"),
            &w.directory,
        )
        .unwrap();
    let outsider = consultant.handle_request(
        NOW,
        w.orgs[3].id(),
        package(),
        signed,
        &w.fed.trust,
        &w.directory,
    );
    assert!(matches!(
        outsider,
        Err(DeskError::Workflow(WorkflowError::Outsider { .. }))
    ));
    // A request for someone else.
    let signed = requester
        .open(
            NOW,
            w.request(3, Urgency::Planned, 21),
            Some("Dr. Ivanova"),
            &w.directory,
        )
        .unwrap();
    let elsewhere = consultant.handle_request(
        NOW,
        w.orgs[0].id(),
        package(),
        signed,
        &w.fed.trust,
        &w.directory,
    );
    assert!(elsewhere.is_err());
}

pub(super) fn forged_by(outputs: &[Output]) -> Vec<OrgId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(Event::Forged { by, .. }) => Some(*by),
            _ => None,
        })
        .collect()
}

/// Steps only a forger could send are reported against their sender, on
/// a case the desk holds and on one it does not; an honest race (two
/// steps with the same number) is refused without blame.
#[test]
fn forged_steps_are_reported_against_their_sender_and_honest_races_are_not() {
    let w = World::new();
    let requester_org = w.orgs[0].id();
    let mut requester = w.desk(0);
    let mut consultant = w.desk(2);
    let request = w.request(2, Urgency::Planned, 30);
    let id = request.id;
    let signed = requester
        .open(NOW, request, Some("Dr. Ivanova"), &w.directory)
        .unwrap();
    let taken = consultant.handle_request(
        NOW,
        requester_org,
        package(),
        signed,
        &w.fed.trust,
        &w.directory,
    );
    assert_eq!(taken, Ok(Taken::Taken));
    drain(&mut consultant);
    let c = requester.case(&id).unwrap().consultation.clone();
    let cancel = |reason: &str| Action::Cancel {
        reason: reason.into(),
    };
    let honest = c.step(&w.orgs[0].identity, Role::Physician, "p", NOW, cancel("a"));

    // Signed by another organization's key in the requester's name.
    let body = honest.decode_unverified().unwrap();
    let wrong_key = Signed::sign(&w.orgs[3].identity, &body);
    let handed = consultant.handle_step(
        NOW,
        requester_org,
        wrong_key,
        None,
        &w.fed.trust,
        &w.directory,
    );
    assert_eq!(handed, Ok(Taken::Taken), "it waits in the case, then fails");
    assert_eq!(forged_by(&drain(&mut consultant)), vec![requester_org]);
    assert_eq!(
        consultant.case(&id).unwrap().consultation.status,
        Status::Requested
    );

    // A step whose actor is not the organization that sent it.
    let other = c.step(&w.orgs[3].identity, Role::Physician, "p", NOW, cancel("b"));
    let handed =
        consultant.handle_step(NOW, requester_org, other, None, &w.fed.trust, &w.directory);
    assert!(matches!(
        handed,
        Err(DeskError::Workflow(WorkflowError::Outsider { .. }))
    ));
    assert_eq!(forged_by(&drain(&mut consultant)), vec![requester_org]);

    // The same, for a consultation the desk has never seen.
    let unseen = w.request(2, Urgency::Planned, 31);
    let mut elsewhere = w.desk(0);
    elsewhere
        .open(NOW, unseen.clone(), Some("Dr. Ivanova"), &w.directory)
        .unwrap();
    let unseen_case = elsewhere.case(&unseen.id).unwrap().consultation.clone();
    let early = unseen_case.step(&w.orgs[0].identity, Role::Physician, "p", NOW, cancel("c"));
    let forged_early = Signed::sign(&w.orgs[1].identity, &early.decode_unverified().unwrap());
    let handed = consultant.handle_step(
        NOW,
        requester_org,
        forged_early,
        None,
        &w.fed.trust,
        &w.directory,
    );
    assert!(matches!(handed, Err(DeskError::Signed(_))));
    assert_eq!(forged_by(&drain(&mut consultant)), vec![requester_org]);

    // Honest: the cancel applies; a second step with the same number
    // (another user of the requester acting at the same moment) is refused
    // without blame.
    let handed =
        consultant.handle_step(NOW, requester_org, honest, None, &w.fed.trust, &w.directory);
    assert_eq!(handed, Ok(Taken::Taken));
    let race = c.step(&w.orgs[0].identity, Role::Physician, "q", NOW, cancel("d"));
    let handed = consultant.handle_step(NOW, requester_org, race, None, &w.fed.trust, &w.directory);
    assert_eq!(handed, Ok(Taken::Taken));
    let outputs = drain(&mut consultant);
    assert!(forged_by(&outputs).is_empty(), "{outputs:?}");
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Event(Event::StepRefused { .. }))),
        "the race is refused: {outputs:?}"
    );
    assert_eq!(
        consultant.case(&id).unwrap().consultation.status,
        Status::Cancelled
    );
}

/// A conclusion file comes only with the conclude step it names, signed
/// by the organization that sends the step, for the same consultation:
/// otherwise the step is refused as forged and nothing of the file is kept
/// (it was kept as the case's conclusion, and shown, whatever came with it).
#[test]
fn a_conclusion_file_is_taken_only_with_its_own_conclude_step() {
    let w = World::new();
    let (mut requester, mut consultant, id) = opened(&w, Urgency::Urgent, 1);
    let them = w.orgs[2].id();
    let at = NOW.saturating_add(Duration::from_secs(600));
    let as_role = |role, user| Actor { role, user };
    let mut step = |action, file| {
        let file: Option<ConclusionFile> = file;
        let role = match action {
            Action::Accept => Role::Coordinator,
            _ => Role::Consultant,
        };
        consultant
            .act(
                at,
                id,
                as_role(role, "Dr. Ivanov"),
                action,
                file,
                &w.directory,
            )
            .unwrap();
        sent(&drain(&mut consultant)).pop().unwrap().0
    };
    let accept = step(Action::Accept, None);
    // Another consultation's conclusion, genuinely signed by the consultant,
    // named by a conclude step of this one.
    let elsewhere = conclusion_by(&w.orgs[2], ConsultationId([9; 16]), at);
    let conclude = step(
        Action::Conclude {
            conclusion: elsewhere.conclusion.content_hash(),
        },
        Some(elsewhere.clone()),
    );
    let genuine = conclusion_by(&w.orgs[2], id, at);

    // The accept step with this consultation's own conclusion attached.
    let take = |requester: &mut Desk, step: &Signed<Transition>, file: Option<&ConclusionFile>| {
        let taken = requester.handle_step(
            at,
            them,
            step.clone(),
            file.cloned(),
            &w.fed.trust,
            &w.directory,
        );
        drain(requester);
        taken
    };
    assert_eq!(
        take(&mut requester, &accept, Some(&genuine)),
        Err(DeskError::ConclusionMismatch)
    );
    assert!(requester.case(&id).unwrap().conclusion.is_none());
    assert_eq!(take(&mut requester, &accept, None), Ok(Taken::Taken));
    assert_eq!(
        take(&mut requester, &conclude, Some(&elsewhere)),
        Err(DeskError::ConclusionMismatch)
    );
    let case = requester.case(&id).unwrap();
    assert!(case.conclusion.is_none());
    assert_eq!(case.consultation.status, Status::Accepted);
}
