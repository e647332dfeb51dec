//! Recovery on the desk: a consultant that lost its state takes it back
//! from the requester's signed history, and nothing else gets in.

use super::tests::{World, conclusion_by, drain, forged_by, notes, opened, package, sent};
use super::*;
use crate::content::{CaseExtract, SharedHistory};
use crate::testkit::NOW;
use crate::urgency::Urgency;

/// A consultation concluded by org 2 for org 0: both desks, its id, and
/// the steps the consultant took.
fn concluded(w: &World, n: u8) -> (Desk, Desk, ConsultationId) {
    let (mut requester, mut consultant) = (w.desk(0), w.desk(2));
    let request = w.request(2, Urgency::Urgent, n);
    let id = request.id;
    let signed = requester
        .open(NOW, request, Some("Dr. Ivanova"), &w.directory)
        .unwrap();
    let from = w.orgs[0].id();
    let taken = consultant.handle_request(NOW, from, package(), signed, &w.fed.trust, &w.directory);
    assert_eq!(taken, Ok(Taken::Taken));
    let at = NOW.saturating_add(Duration::from_secs(600));
    let coordinator = Actor {
        role: Role::Coordinator,
        user: "coordinator",
    };
    for action in [Action::Receive, Action::Accept] {
        let acted = consultant.act(at, id, coordinator, action, None, &w.directory);
        assert!(acted.is_ok(), "{acted:?}");
    }
    let file = conclusion_by(&w.orgs[2], id, at);
    let conclude = Action::Conclude {
        conclusion: file.conclusion.content_hash(),
    };
    let consultant_actor = Actor {
        role: Role::Consultant,
        user: "Dr. Ivanov",
    };
    let acted = consultant.act(at, id, consultant_actor, conclude, Some(file), &w.directory);
    assert!(acted.is_ok(), "{acted:?}");
    let by = w.orgs[2].id();
    for (step, conclusion) in sent(&drain(&mut consultant)) {
        let taken = requester.handle_step(at, by, step, conclusion, &w.fed.trust, &w.directory);
        assert_eq!(taken, Ok(Taken::Taken));
    }
    drain(&mut requester);
    (requester, consultant, id)
}

fn history_of(desk: &Desk, id: &ConsultationId) -> SharedHistory {
    let case = desk.case(id).unwrap();
    SharedHistory {
        request: case.request.clone(),
        extract: CaseExtract {
            summary: "chest pain since the morning".into(),
            questions: "angiography?".into(),
        },
        files: Vec::new(),
        steps: case.consultation.history.clone(),
        conclusion: case.conclusion.clone(),
    }
}

#[test]
fn a_consultant_that_lost_everything_takes_the_whole_consultation_back() {
    let w = World::new();
    let (requester, consultant, id) = concluded(&w, 40);
    let (requester_org, consultant_org) = (w.orgs[0].id(), w.orgs[2].id());
    assert_eq!(requester.shared_with(consultant_org, NOW), vec![id]);
    assert!(requester.shared_with(w.orgs[3].id(), NOW).is_empty());
    let later = NOW.saturating_add(Duration::from_secs(3600));
    assert!(requester.shared_with(consultant_org, later).is_empty());

    let history = history_of(&requester, &id);
    let mut lost = w.desk(2);
    let t = &w.fed.trust;
    let recovered = lost.handle_history(NOW, requester_org, package(), &history, t, &w.directory);
    assert_eq!(recovered, Ok(Recovered::New { steps: 3 }));
    let outputs = drain(&mut lost);
    assert!(notes(&outputs).contains(&journal::Action::Recover {
        consultation: id.0,
        from: requester_org,
        steps: 3,
    }));
    let back = lost.case(&id).unwrap();
    let before = consultant.case(&id).unwrap();
    assert_eq!(back.consultation, before.consultation);
    assert_eq!(back.conclusion, before.conclusion);
    assert_eq!(back.consultation.status, Status::Completed);

    let again = lost.handle_history(NOW, requester_org, package(), &history, t, &w.directory);
    assert_eq!(again, Ok(Recovered::UpToDate));
}

#[test]
fn a_consultant_behind_the_requester_gets_only_the_steps_it_lost() {
    let w = World::new();
    let (requester, consultant, id) = concluded(&w, 41);
    let mut kept = consultant.case(&id).unwrap().clone();
    let mut consultation = Consultation::open(&kept.request).unwrap();
    consultation
        .apply(&kept.consultation.history[0])
        .expect("the first step applies");
    kept.consultation = consultation;
    kept.conclusion = None;
    let mut behind = w.desk(2);
    behind.restore(NOW, kept, &w.directory);
    drain(&mut behind);

    let history = history_of(&requester, &id);
    let (from, t) = (w.orgs[0].id(), &w.fed.trust);
    let recovered = behind.handle_history(NOW, from, package(), &history, t, &w.directory);
    assert_eq!(recovered, Ok(Recovered::Extended { steps: 2 }));
    let case = behind.case(&id).unwrap();
    assert_eq!(case.consultation.status, Status::Completed);
    assert!(case.conclusion.is_some());
    assert!(forged_by(&drain(&mut behind)).is_empty());

    // A shorter history than what the node kept adds nothing.
    let mut short = history.clone();
    short.steps.truncate(1);
    short.conclusion = None;
    let recovered = behind.handle_history(NOW, from, package(), &short, t, &w.directory);
    assert_eq!(recovered, Ok(Recovered::UpToDate));
}

#[test]
fn only_the_counterpart_can_send_a_history_and_it_cannot_alter_one() {
    let w = World::new();
    let (requester, consultant, id) = concluded(&w, 42);
    let history = history_of(&requester, &id);
    let (requester_org, t) = (w.orgs[0].id(), &w.fed.trust);

    // A third organization holds no part of it.
    let stranger = w.orgs[3].id();
    let mut lost = w.desk(2);
    let taken = lost.handle_history(NOW, stranger, package(), &history, t, &w.directory);
    assert!(matches!(
        taken,
        Err(DeskError::Workflow(WorkflowError::Outsider { .. }))
    ));
    assert_eq!(forged_by(&drain(&mut lost)), vec![stranger]);

    // A step re-signed by the requester in the consultant's name.
    let mut altered = history.clone();
    let body = altered.steps[1].decode_unverified().unwrap();
    altered.steps[1] = Signed::sign(&w.orgs[0].identity, &body);
    let taken = lost.handle_history(NOW, requester_org, package(), &altered, t, &w.directory);
    assert!(taken.is_err());
    assert_eq!(forged_by(&drain(&mut lost)), vec![requester_org]);

    // A conclusion that is not the one the consultant concluded with.
    let mut swapped = history.clone();
    let mut file = swapped.conclusion.clone().unwrap();
    let mut text = file.conclusion.decode_unverified().unwrap();
    text.diagnosis = "stable angina".into();
    file.conclusion = text.sign(&w.orgs[2].identity).unwrap();
    swapped.conclusion = Some(file);
    let taken = lost.handle_history(NOW, requester_org, package(), &swapped, t, &w.directory);
    assert_eq!(taken, Err(DeskError::ConclusionMismatch));
    assert!(
        lost.case(&id).is_none(),
        "nothing was taken from a refused history"
    );

    // The consultant kept a step the requester's history does not have
    // (another coordinator's, signed at a different moment): refused
    // without blame, and what it kept stays.
    let mut kept = consultant.case(&id).unwrap().clone();
    let mut consultation = Consultation::open(&kept.request).unwrap();
    let own = consultation.step(
        &w.orgs[2].identity,
        Role::Coordinator,
        "another coordinator",
        NOW.saturating_add(Duration::from_secs(1)),
        Action::Receive,
    );
    consultation.apply(&own).unwrap();
    kept.consultation = consultation.clone();
    let mut forked = w.desk(2);
    forked.restore(NOW, kept, &w.directory);
    drain(&mut forked);
    let taken = forked.handle_history(NOW, requester_org, package(), &history, t, &w.directory);
    assert_eq!(taken, Err(DeskError::Diverged(id)));
    assert!(forged_by(&drain(&mut forked)).is_empty());
    assert_eq!(forked.case(&id).unwrap().consultation, consultation);
}

/// A cancel crossed an accept, and neither step reached the other side
/// before the consultant lost its state and was restored with its accept.
/// The histories the two sides exchange then fork where the race was; each
/// settles it as the race itself would have been settled (the
/// cancellation stands), instead of refusing the other's history.
#[test]
fn a_history_forked_by_a_race_is_settled_as_the_race_would_be() {
    let w = World::new();
    let (mut requester, mut consultant, id) = opened(&w, Urgency::Planned, 43);
    let cancel = Action::Cancel {
        reason: "the patient was transferred".into(),
    };
    let physician = Actor {
        role: Role::Physician,
        user: "Dr. Petrova",
    };
    (requester.act(NOW, id, physician, cancel, None, &w.directory)).unwrap();
    let dr = Actor {
        role: Role::Consultant,
        user: "Dr. Ivanov",
    };
    for action in [Action::Accept, Action::Start] {
        (consultant.act(NOW, id, dr, action, None, &w.directory)).unwrap();
    }
    drain(&mut requester);
    drain(&mut consultant);
    let (requester_org, consultant_org, t) = (w.orgs[0].id(), w.orgs[2].id(), &w.fed.trust);
    let cancelled = history_of(&requester, &id);
    let accepted = history_of(&consultant, &id);

    // The requester's cancellation stands over the accept and the start.
    let taken =
        consultant.handle_history(NOW, requester_org, package(), &cancelled, t, &w.directory);
    assert_eq!(
        taken,
        Ok(Recovered::Settled {
            undone: 2,
            steps: 1
        })
    );
    let case = consultant.case(&id).unwrap();
    assert_eq!(case.consultation.status, Status::Cancelled);
    assert_eq!(case.consultation.history, cancelled.steps);
    let journaled = notes(&drain(&mut consultant));
    let undone: Vec<u32> = (journaled.iter())
        .filter_map(|n| match n {
            journal::Action::Undone { seq, by, .. } if *by == requester_org => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(undone, vec![1, 2], "the accept and the start are undone");
    assert!(
        (journaled.iter()).any(|n| matches!(n, journal::Action::Recover { steps: 1, .. })),
        "{journaled:?}"
    );

    // The requester, sent the consultant's history, keeps its own.
    let kept = requester.case(&id).unwrap().consultation.clone();
    let taken =
        requester.handle_history(NOW, consultant_org, package(), &accepted, t, &w.directory);
    assert_eq!(taken, Ok(Recovered::Stood));
    assert_eq!(requester.case(&id).unwrap().consultation, kept);
    assert!(forged_by(&drain(&mut requester)).is_empty());
}
