//! The schedule against consultations moved through their states: a
//! confirmed slot opens the session once, at its lead, with offers from the
//! smaller organization id; conclusion, cancellation and the overrun end it.

use super::*;
use crate::cert::OrgLevel;
use crate::specialty::Specialty;
use crate::testkit::{NOW, TestFederation};
use crate::urgency::Urgency;
use crate::workflow::{Consent, ConsentMethod, ConsultationId, ConsultationRequest, request};

const LEAD: Duration = Duration::from_secs(300);

fn at(minutes: u64) -> Timestamp {
    NOW.saturating_add(Duration::from_secs(minutes * 60))
}

/// A consultation between two organizations, and the schedule of each.
fn consultation() -> (Consultation, Schedule, Schedule) {
    let mut fed = TestFederation::new("schedule");
    let district = fed.org(1, OrgLevel::District, "RU-VLG", &[]);
    let federal = fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]);
    let req = ConsultationRequest {
        id: ConsultationId([7; 16]),
        requester: district.id(),
        consultant: federal.id(),
        specialty: Specialty::Cardiology,
        urgency: Urgency::Urgent,
        created: NOW,
        consent: Consent::Given {
            by: "the patient".into(),
            at: NOW,
            method: ConsentMethod::Written,
            document: None,
        },
        physician: "Dr. Ivanova".into(),
        escalated_from: None,
    };
    let c = Consultation::open(&request(&district.identity, req).unwrap()).unwrap();
    (
        c,
        Schedule::new(district.id(), LEAD),
        Schedule::new(federal.id(), LEAD),
    )
}

fn slot(from_minute: u64) -> Slot {
    Slot {
        start: at(from_minute),
        end: at(from_minute + 30),
    }
}

fn outputs(s: &mut Schedule) -> Vec<ScheduleOutput> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

#[test]
fn a_confirmed_slot_opens_the_session_at_its_lead_once_with_one_offer_per_pair() {
    let (mut c, mut a, mut b) = consultation();
    let session = SessionId(c.request.id.0);
    c.appointment = Appointment::Proposed(vec![slot(60)]);
    a.handle_consultation(at(1), &c);
    assert_eq!(a.poll_timeout(), None, "nothing before a confirmation");
    c.appointment = Appointment::Confirmed(slot(60));
    for s in [&mut a, &mut b] {
        s.handle_consultation(at(2), &c);
        assert_eq!(s.poll_timeout(), Some(at(55)));
        s.handle_timeout(at(54));
        assert_eq!(outputs(s), vec![]);
        s.handle_timeout(at(55));
        assert!(s.is_open(&session));
    }
    let (requester, consultant) = (c.request.requester, c.request.consultant);
    let (offerer, offered) = if requester < consultant {
        (&mut a, consultant)
    } else {
        (&mut b, requester)
    };
    assert_eq!(
        outputs(offerer),
        vec![ScheduleOutput::Open {
            session,
            offer_to: vec![offered],
        }]
    );
    let answerer = if requester < consultant {
        &mut b
    } else {
        &mut a
    };
    assert_eq!(
        outputs(answerer),
        vec![ScheduleOutput::Open {
            session,
            offer_to: vec![],
        }]
    );
    // Later steps of the same consultation open nothing again.
    a.handle_consultation(at(70), &c);
    a.handle_timeout(at(71));
    assert_eq!(outputs(&mut a), vec![]);
    assert_eq!(a.poll_timeout(), Some(at(90).saturating_add(OVERRUN)));
}

#[test]
fn conclusion_cancellation_and_overrun_end_an_open_session() {
    let (mut c, mut a, _) = consultation();
    let session = SessionId(c.request.id.0);
    let ended = |reason| vec![ScheduleOutput::End { session, reason }];

    c.appointment = Appointment::Confirmed(slot(60));
    a.handle_consultation(at(60), &c);
    assert!(matches!(
        &outputs(&mut a)[..],
        [ScheduleOutput::Open { .. }]
    ));
    c.status = Status::Completed;
    a.handle_consultation(at(80), &c);
    assert_eq!(outputs(&mut a), ended(EndReason::Closed(Status::Completed)));
    assert!(!a.is_open(&session));

    c.status = Status::InProgress;
    a.handle_consultation(at(60), &c);
    outputs(&mut a);
    c.appointment = Appointment::Cancelled;
    a.handle_consultation(at(61), &c);
    assert_eq!(outputs(&mut a), ended(EndReason::AppointmentCancelled));

    c.appointment = Appointment::Confirmed(slot(60));
    a.handle_consultation(at(60), &c);
    outputs(&mut a);
    let over = at(90).saturating_add(OVERRUN);
    a.handle_timeout(over.saturating_sub(Duration::from_millis(1)));
    assert_eq!(outputs(&mut a), vec![]);
    a.handle_timeout(over);
    assert_eq!(outputs(&mut a), ended(EndReason::TimeOver));
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn a_session_opened_by_hand_stays_open_until_the_consultation_ends() {
    let (mut c, mut a, _) = consultation();
    let session = SessionId(c.request.id.0);
    let participants = vec![c.request.requester, c.request.consultant];
    assert!(a.handle_opened(session, participants.clone()));
    let offers = outputs(&mut a);
    assert!(!a.handle_opened(session, participants), "open already");
    assert_eq!(outputs(&mut a), vec![], "opened once, offered once");
    let other = c.request.consultant;
    let expected = match offers_to(c.request.requester, other) {
        true => vec![ScheduleOutput::Open {
            session,
            offer_to: vec![other],
        }],
        false => vec![],
    };
    assert_eq!(offers, expected, "only the smaller id offers");
    // Steps with no appointment do not close it.
    c.status = Status::InProgress;
    a.handle_consultation(at(5), &c);
    assert!(a.is_open(&session));
    assert_eq!(outputs(&mut a), vec![]);
    c.status = Status::Cancelled;
    a.handle_consultation(at(6), &c);
    assert_eq!(
        outputs(&mut a),
        vec![ScheduleOutput::End {
            session,
            reason: EndReason::Closed(Status::Cancelled),
        }]
    );
}

#[test]
fn a_slot_long_past_opens_nothing_when_the_node_starts() {
    let (mut c, mut a, _) = consultation();
    c.appointment = Appointment::Confirmed(slot(60));
    a.handle_consultation(at(90).saturating_add(OVERRUN), &c);
    assert_eq!(outputs(&mut a), vec![]);
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn an_offer_that_could_not_go_out_is_tried_again_while_the_session_is_open() {
    let (mut c, mut a, _) = consultation();
    let session = SessionId(c.request.id.0);
    let other = c.request.consultant;
    c.appointment = Appointment::Confirmed(slot(60));
    a.handle_consultation(at(60), &c);
    outputs(&mut a);
    a.handle_offer_failed(at(60), session, other);
    let again = at(60).saturating_add(OFFER_RETRY);
    assert_eq!(a.poll_timeout(), Some(again));
    a.handle_timeout(again);
    assert_eq!(
        outputs(&mut a),
        vec![ScheduleOutput::Open {
            session,
            offer_to: vec![other],
        }]
    );
    // Ended before its retry: nothing is offered.
    a.handle_offer_failed(again, session, other);
    c.status = Status::Completed;
    a.handle_consultation(again, &c);
    outputs(&mut a);
    a.handle_timeout(again.saturating_add(OFFER_RETRY));
    assert_eq!(outputs(&mut a), vec![]);
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn an_organization_invited_into_an_open_session_is_offered_by_every_site() {
    let (mut c, mut a, mut b) = consultation();
    let mut fed = TestFederation::new("schedule-guest");
    let guest = fed.org(3, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]);
    let session = SessionId(c.request.id.0);
    c.status = Status::Accepted;
    let owners = vec![c.request.requester, c.request.consultant];
    for s in [&mut a, &mut b] {
        s.handle_opened(session, owners.clone());
        outputs(s);
    }
    // The consulting side's invitation, as the workflow applies it.
    c.guests.push(guest.id());
    for s in [&mut a, &mut b] {
        s.handle_consultation(at(2), &c);
        assert_eq!(
            outputs(s),
            vec![ScheduleOutput::Open {
                session,
                offer_to: vec![guest.id()],
            }],
            "whichever id is smaller, the guest cannot know the session is open"
        );
        s.handle_consultation(at(3), &c);
        assert_eq!(outputs(s), vec![], "offered once");
    }
    // At the guest, the first offer opens the session; it offers to the
    // sites it is the smaller id of, and so each pair is offered once.
    let mut g = Schedule::new(guest.id(), LEAD);
    let everyone = c.participants();
    assert!(g.handle_opened(session, everyone.clone()));
    let expected: Vec<OrgId> = (owners.iter().copied())
        .filter(|o| offers_to(guest.id(), *o))
        .collect();
    let offered = match &outputs(&mut g)[..] {
        [ScheduleOutput::Open { offer_to, .. }] => offer_to.clone(),
        [] => vec![],
        other => panic!("{other:?}"),
    };
    assert_eq!(offered, expected);
}
