//! Deadlines and escalations: an unanswered emergency escalated level by
//! level, an escalation asked for again or after a restart, and a
//! deadline that stays fixed whatever the directory does.

use super::tests::{World, drain, opened, sent};
use super::*;
use crate::cert::OrgLevel;
use crate::testkit::NOW;
use crate::timers::Escalation;
use crate::urgency::Urgency;

/// An emergency nobody answers in time goes to the next level, twice, and
/// fails when no one is left, all under a clock moved by the test.
#[test]
fn an_unanswered_emergency_is_escalated_twice_then_fails() {
    let w = World::new();
    let mut requester = w.desk(0);
    let request = w.request(1, Urgency::Emergency, 30);
    let first = request.id;
    requester
        .open(NOW, request, Some("Dr. Ivanova"), &w.directory)
        .unwrap();
    drain(&mut requester);
    let mut current = first;
    let mut asked = vec![w.orgs[1].id()];
    for round in 0..3 {
        let due = requester.poll_timeout().expect("a first-response deadline");
        requester.handle_timeout(due, &w.directory);
        let outputs = drain(&mut requester);
        let cancelled = sent(&outputs);
        assert_eq!(
            cancelled.len(),
            1,
            "round {round}: the unanswered one is closed"
        );
        let escalate = outputs.iter().find_map(|o| match o {
            Output::Escalate { from, to, .. } => Some((*from, *to)),
            _ => None,
        });
        if round == 2 {
            // District, regional and federal were asked: no one left.
            assert_eq!(escalate, None);
            assert!(
                outputs
                    .iter()
                    .any(|o| matches!(o, Output::Event(Event::Escalated { to: None, .. })))
            );
            assert_eq!(
                requester.case(&current).unwrap().consultation.status,
                Status::Failed
            );
            break;
        }
        let (from, to) = escalate.expect("escalated");
        assert_eq!(from, current);
        assert_eq!(
            requester.case(&current).unwrap().consultation.status,
            Status::Cancelled
        );
        assert!(!asked.contains(&to), "never the same consultant twice");
        asked.push(to);
        // The driver opens the next consultation and reports it.
        let mut next = w.request(0, Urgency::Emergency, 31 + round);
        next.consultant = to;
        next.created = due;
        next.escalated_from = Some(current);
        let next_id = next.id;
        requester.open(due, next, None, &w.directory).unwrap();
        requester.handle_escalated(due, current, Some(next_id), &w.directory);
        let reported = drain(&mut requester);
        assert!(reported.iter().any(|o| matches!(o,
            Output::Event(Event::Escalated { from, to: Some((_, c)) }) if *from == current && *c == to)));
        current = next_id;
    }
    let levels: Vec<OrgLevel> = asked
        .iter()
        .map(|o| w.directory.get(o).unwrap().level())
        .collect();
    assert_eq!(
        levels,
        [OrgLevel::District, OrgLevel::Regional, OrgLevel::Federal]
    );
    assert_eq!(requester.poll_timeout(), None, "nothing left to watch");
}

/// An emergency nobody answered, whose first escalation was just asked for.
fn escalated_once(w: &World, n: u8) -> (Desk, ConsultationId, Timestamp) {
    let mut requester = w.desk(0);
    let request = w.request(1, Urgency::Emergency, n);
    let id = request.id;
    requester
        .open(NOW, request, Some("Dr. Ivanova"), &w.directory)
        .unwrap();
    let due = requester.poll_timeout().unwrap();
    requester.handle_timeout(due, &w.directory);
    assert!(
        drain(&mut requester)
            .iter()
            .any(|o| matches!(o, Output::Escalate { .. }))
    );
    (requester, id, due)
}

#[test]
fn an_escalation_the_driver_could_not_carry_out_is_asked_for_again() {
    let w = World::new();
    let (mut requester, id, due) = escalated_once(&w, 40);
    let reason = Escalation::NoFirstResponse.reason();
    requester.retry_escalation(due, id, reason);
    let again = requester.poll_timeout().unwrap();
    assert_eq!(
        again,
        due.saturating_add(Config::default().escalation_retry)
    );
    requester.handle_timeout(again, &w.directory);
    let outputs = drain(&mut requester);
    // Already cancelled: only the escalation is asked for again.
    assert!(sent(&outputs).is_empty());
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Escalate { from, .. } if *from == id))
    );
}

#[test]
fn an_escalation_cut_short_by_a_restart_is_carried_out_after_it() {
    let w = World::new();
    let (requester, id, due) = escalated_once(&w, 50);
    // The node stops before it opens the next consultation: what storage
    // holds is the cancelled case without an escalation link.
    let stored = requester.case(&id).unwrap().clone();
    assert_eq!(stored.escalated_to, None);
    let mut restarted = w.desk(0);
    restarted.restore(due, stored, &w.directory);
    assert_eq!(restarted.poll_timeout(), Some(due));
    restarted.handle_timeout(due, &w.directory);
    let outputs = drain(&mut restarted);
    assert!(sent(&outputs).is_empty(), "already cancelled");
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Escalate { from, .. } if *from == id)),
        "the escalation is asked for again"
    );
    // A case cancelled by a clinician is not escalated after a restart.
    let mut other = w.desk(0);
    let request = w.request(1, Urgency::Emergency, 51);
    let cancelled = request.id;
    other
        .open(NOW, request, Some("Dr. Ivanova"), &w.directory)
        .unwrap();
    let physician = Actor {
        role: Role::Physician,
        user: "Dr. Petrova",
    };
    let cancel = Action::Cancel {
        reason: "transferred".into(),
    };
    other
        .act(NOW, cancelled, physician, cancel, None, &w.directory)
        .unwrap();
    let mut restarted = w.desk(0);
    restarted.restore(NOW, other.case(&cancelled).unwrap().clone(), &w.directory);
    drain(&mut restarted);
    let later = NOW.saturating_add(Duration::from_secs(86_400));
    restarted.handle_timeout(later, &w.directory);
    let outputs = drain(&mut restarted);
    assert!(!outputs.iter().any(|o| matches!(o, Output::Escalate { .. })));
}

/// A case's deadline is fixed when it is opened: the consulting
/// organization's record leaving the directory afterwards (revoked,
/// lapsed) neither drops the deadline nor the alarms it brings.
#[test]
fn a_deadline_stays_when_the_consultant_leaves_the_directory() {
    let w = World::new();
    let (mut requester, mut consultant, id) = opened(&w, Urgency::Urgent, 50);
    let fixed = requester
        .case(&id)
        .unwrap()
        .deadline
        .expect("fixed when opened");
    let trust = &w.fed.trust;
    let coordinator = Actor {
        role: Role::Coordinator,
        user: "coordinator",
    };
    (consultant.act(NOW, id, coordinator, Action::Accept, None, &w.directory)).unwrap();
    let (accept, _) = sent(&drain(&mut consultant)).pop().unwrap();
    drain(&mut requester);
    // From here on the consultant's record is gone.
    let mut without = Directory::new();
    for o in [&w.orgs[0], &w.orgs[1], &w.orgs[3]] {
        without.insert(o.signed_record(1), trust, NOW).unwrap();
    }
    let consultant_org = w.orgs[2].id();
    (requester.handle_step(NOW, consultant_org, accept, None, trust, &without)).unwrap();
    assert_eq!(requester.case(&id).unwrap().deadline, Some(fixed));
    drain(&mut requester);
    requester.handle_timeout(fixed.due, &without);
    let breached = drain(&mut requester).into_iter().any(|o| {
        matches!(o, Output::Event(Event::Deadline { state: DeadlineState::Breached, due, .. })
            if due == fixed.due)
    });
    assert!(breached, "the deadline is still watched");
}
