//! Two organizations taking a step of one consultation at the same moment:
//! each side first applies its own, and once each has the other's, both
//! hold the same history, whatever order the steps arrive in.

use super::tests::{World, drain, notes, opened, sent};
use super::*;
use crate::testkit::NOW;
use crate::urgency::Urgency;
use crate::workflow::Slot;

const PHYSICIAN: Actor<'static> = Actor {
    role: Role::Physician,
    user: "Dr. Petrova",
};

fn consultant_as(user: &str) -> Actor<'_> {
    Actor {
        role: Role::Consultant,
        user,
    }
}

/// The same, accepted at both sides.
fn accepted(w: &World, n: u8) -> (Desk, Desk, ConsultationId) {
    let (mut requester, mut consultant, id) = opened(w, Urgency::Planned, n);
    let dr = consultant_as("Dr. Ivanov");
    (consultant.act(NOW, id, dr, Action::Accept, None, &w.directory)).unwrap();
    let accept = sent(&drain(&mut consultant)).pop().unwrap().0;
    deliver(w, &mut requester, 2, &[accept]);
    (requester, consultant, id)
}

/// Hands `steps` from `from`'s organization to `to`, in that order.
fn deliver(w: &World, to: &mut Desk, from: usize, steps: &[Signed<Transition>]) -> Vec<Output> {
    for step in steps {
        let sender = w.orgs[from].id();
        (to.handle_step(NOW, sender, step.clone(), None, &w.fed.trust, &w.directory)).unwrap();
    }
    drain(to)
}

fn history(desk: &Desk, id: &ConsultationId) -> Vec<Signed<Transition>> {
    desk.case(id).unwrap().consultation.history.clone()
}

fn undone(outputs: &[Output]) -> Vec<(u32, OrgId)> {
    notes(outputs)
        .into_iter()
        .filter_map(|n| match n {
            journal::Action::Undone { seq, by, .. } => Some((seq, by)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cancel_crossing_an_accept_cancels_at_both_sides() {
    let w = World::new();
    let (mut requester, mut consultant, id) = opened(&w, Urgency::Planned, 40);
    let cancel = Action::Cancel {
        reason: "the patient was transferred".into(),
    };
    (requester.act(NOW, id, PHYSICIAN, cancel, None, &w.directory)).unwrap();
    let ours = sent(&drain(&mut requester));
    let dr = consultant_as("Dr. Ivanov");
    (consultant.act(NOW, id, dr, Action::Accept, None, &w.directory)).unwrap();
    (consultant.act(NOW, id, dr, Action::Start, None, &w.directory)).unwrap();
    let theirs = sent(&drain(&mut consultant));
    let steps =
        |s: &[(Signed<Transition>, _)]| s.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>();

    let at_requester = deliver(&w, &mut requester, 2, &steps(&theirs));
    assert_eq!(undone(&at_requester), vec![], "the cancellation stands");
    let at_consultant = deliver(&w, &mut consultant, 0, &steps(&ours));
    let requester_org = w.orgs[0].id();
    assert_eq!(
        undone(&at_consultant),
        vec![(1, requester_org), (2, requester_org)],
        "the accept and the start built on it are undone, and journaled"
    );
    for desk in [&requester, &consultant] {
        assert_eq!(
            desk.case(&id).unwrap().consultation.status,
            Status::Cancelled
        );
    }
    assert_eq!(history(&requester, &id), history(&consultant, &id));
    assert_eq!(history(&consultant, &id), steps(&ours));
}

#[test]
fn the_step_that_stands_is_taken_even_after_the_step_that_follows_it() {
    let w = World::new();
    let (mut requester, mut consultant, id) = accepted(&w, 41);
    let at = |h: u64| NOW.saturating_add(Duration::from_secs(h * 3600));
    let slots = |h: u64| Action::ProposeSlots {
        slots: vec![Slot {
            start: at(h),
            end: at(h + 1),
        }],
    };
    (requester.act(NOW, id, PHYSICIAN, slots(24), None, &w.directory)).unwrap();
    let proposed = sent(&drain(&mut requester)).pop().unwrap().0;
    // Both propose at once; the consultant's proposal is to stand (the
    // consultant is chosen among several so that it does), followed by a
    // note, and the requester gets the note first.
    let consultation = &consultant.case(&id).unwrap().consultation;
    let identity = &w.orgs[2].identity;
    let user = (0..64)
        .map(|n| format!("Dr. Ivanov {n}"))
        .find(|u| {
            let rival = consultation.step(identity, Role::Consultant, u, NOW, slots(48));
            crate::workflow::outranks(&rival, &proposed)
        })
        .expect("one of 64 hashes ranks higher");
    let dr = consultant_as(&user);
    (consultant.act(NOW, id, dr, slots(48), None, &w.directory)).unwrap();
    let note = Action::Note {
        text: "bring the Holter record".into(),
    };
    (consultant.act(NOW, id, dr, note, None, &w.directory)).unwrap();
    let mut theirs: Vec<_> = sent(&drain(&mut consultant))
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    theirs.reverse();

    let at_requester = deliver(&w, &mut requester, 2, &theirs);
    assert_eq!(undone(&at_requester), vec![(2, w.orgs[2].id())]);
    let at_consultant = deliver(&w, &mut consultant, 0, std::slice::from_ref(&proposed));
    assert_eq!(undone(&at_consultant), vec![]);
    assert_eq!(history(&requester, &id), history(&consultant, &id));
    assert_eq!(history(&requester, &id).len(), 3);
    assert!(!history(&requester, &id).contains(&proposed));
}

#[test]
fn a_step_from_behind_what_its_own_side_built_on_is_refused() {
    let w = World::new();
    let (mut requester, mut consultant, id) = accepted(&w, 42);
    let proposal = Action::ProposeSlots {
        slots: vec![Slot {
            start: NOW.saturating_add(Duration::from_secs(3600)),
            end: NOW.saturating_add(Duration::from_secs(7200)),
        }],
    };
    (requester.act(NOW, id, PHYSICIAN, proposal, None, &w.directory)).unwrap();
    let proposed = sent(&drain(&mut requester)).pop().unwrap().0;
    deliver(&w, &mut consultant, 0, &[proposed]);
    let held = history(&consultant, &id);
    // The requester, having built on the accept, signs a cancellation in
    // its place: it had seen the accept, so this is no race.
    let opened_case = Consultation::open(&requester.case(&id).unwrap().request).unwrap();
    let cancel = Action::Cancel {
        reason: "rewritten".into(),
    };
    let behind = opened_case.step(&w.orgs[0].identity, Role::Physician, "x", NOW, cancel);
    let refused = deliver(&w, &mut consultant, 0, &[behind]);
    assert_eq!(undone(&refused), vec![]);
    assert!(
        refused
            .iter()
            .any(|o| matches!(o, Output::Event(Event::StepRefused { .. })))
    );
    assert_eq!(history(&consultant, &id), held, "nothing was undone");
    assert_eq!(
        consultant.case(&id).unwrap().consultation.status,
        Status::Accepted
    );
}
