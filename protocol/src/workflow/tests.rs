use super::*;
use crate::cert::OrgLevel;
use crate::testkit::{NOW, TestFederation, TestOrg};
use Role::*;
use proptest::prelude::*;
use std::time::Duration;

struct Parties {
    district: TestOrg,
    federal: TestOrg,
    stranger: TestOrg,
}

fn parties() -> Parties {
    let mut fed = TestFederation::new("workflow");
    Parties {
        district: fed.org(1, OrgLevel::District, "RU-VLG", &[]),
        federal: fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]),
        stranger: fed.org(3, OrgLevel::Regional, "RU-VLG", &[Specialty::Cardiology]),
    }
}

fn consent() -> Consent {
    Consent::Given {
        by: "the patient".into(),
        at: NOW,
        method: ConsentMethod::Written,
        document: None,
    }
}

fn open(p: &Parties, urgency: Urgency) -> Consultation {
    let req = ConsultationRequest {
        id: ConsultationId([7; 16]),
        requester: p.district.id(),
        consultant: p.federal.id(),
        specialty: Specialty::Cardiology,
        urgency,
        created: NOW,
        consent: consent(),
        physician: "Dr. Ivanova".into(),
        escalated_from: None,
    };
    Consultation::open(&request(&p.district.identity, req).unwrap()).unwrap()
}

fn at(minutes: u64) -> Timestamp {
    NOW.saturating_add(Duration::from_secs(minutes * 60))
}

fn slot(h: u64) -> Slot {
    Slot {
        start: at(h * 60),
        end: at(h * 60 + 30),
    }
}

#[test]
fn planned_consultation_answered_in_writing() {
    let p = parties();
    let mut c = open(&p, Urgency::Planned);
    let (d, f) = (&p.district.identity, &p.federal.identity);
    for (key, role, action, expect) in [
        (f, Coordinator, Action::Receive, Status::Received),
        (f, Coordinator, Action::Accept, Status::Accepted),
        (
            f,
            Coordinator,
            Action::Assign {
                consultant: "Prof. Petrov".into(),
            },
            Status::Accepted,
        ),
        (f, Consultant, Action::Start, Status::InProgress),
        (
            f,
            Consultant,
            Action::AskMore {
                questions: "echocardiography, please".into(),
            },
            Status::OnHold,
        ),
        (
            d,
            Physician,
            Action::Supply {
                note: "echo attached".into(),
            },
            Status::InProgress,
        ),
        (
            f,
            Consultant,
            Action::Conclude {
                conclusion: [1; 32],
            },
            Status::Completed,
        ),
        (d, Physician, Action::Acknowledge, Status::Completed),
    ] {
        let step = c.step(key, role, "someone", at(5), action);
        assert_eq!(c.apply(&step), Ok(expect));
    }
    assert!(c.acknowledged);
    assert_eq!(c.assigned.as_deref(), Some("Prof. Petrov"));
    assert_eq!(c.conclusion, Some([1; 32]));
    assert_eq!(c.first_response, Some(at(5)));
    assert_eq!(c.status.fhir_code(), "completed");
    let again = c.step(d, Physician, "x", at(6), Action::Acknowledge);
    assert!(matches!(
        c.apply(&again),
        Err(WorkflowError::WrongState { .. })
    ));
}

#[test]
fn video_consilium_waits_for_the_requesters_confirmation() {
    let p = parties();
    let mut c = open(&p, Urgency::Urgent);
    let (d, f) = (&p.district.identity, &p.federal.identity);
    c.apply(&c.step(f, Coordinator, "coord", at(1), Action::Accept))
        .unwrap();
    c.apply(&c.step(f, Consultant, "dr", at(2), Action::Start))
        .unwrap();
    c.apply(&c.step(
        f,
        Coordinator,
        "coord",
        at(3),
        Action::ProposeSlots {
            slots: vec![slot(2), slot(3)],
        },
    ))
    .unwrap();
    let early = c.step(
        f,
        Consultant,
        "dr",
        at(4),
        Action::Conclude {
            conclusion: [2; 32],
        },
    );
    assert!(
        matches!(c.apply(&early), Err(WorkflowError::Appointment { .. })),
        "pending until confirmed"
    );
    let wrong = c.step(
        d,
        Physician,
        "dr i",
        at(5),
        Action::ConfirmSlot { slot: slot(9) },
    );
    assert!(matches!(
        c.apply(&wrong),
        Err(WorkflowError::Appointment { .. })
    ));
    c.apply(&c.step(
        d,
        Physician,
        "dr i",
        at(5),
        Action::ConfirmSlot { slot: slot(3) },
    ))
    .unwrap();
    assert_eq!(c.appointment, Appointment::Confirmed(slot(3)));
    // Rescheduling replaces the proposal; the requester must confirm again.
    c.apply(&c.step(
        f,
        Consultant,
        "dr",
        at(6),
        Action::ProposeSlots {
            slots: vec![slot(4)],
        },
    ))
    .unwrap();
    c.apply(&c.step(
        d,
        Coordinator,
        "coord d",
        at(7),
        Action::ConfirmSlot { slot: slot(4) },
    ))
    .unwrap();
    c.apply(&c.step(
        f,
        Consultant,
        "dr",
        at(300),
        Action::Conclude {
            conclusion: [2; 32],
        },
    ))
    .unwrap();
    assert_eq!(c.status, Status::Completed);
}

#[test]
fn either_side_reschedules_and_the_other_confirms() {
    let p = parties();
    let mut c = open(&p, Urgency::Urgent);
    let (d, f) = (&p.district.identity, &p.federal.identity);
    c.apply(&c.step(f, Coordinator, "coord", at(1), Action::Accept))
        .unwrap();
    c.apply(&c.step(
        f,
        Coordinator,
        "coord",
        at(2),
        Action::ProposeSlots {
            slots: vec![slot(2)],
        },
    ))
    .unwrap();
    c.apply(&c.step(
        d,
        Physician,
        "dr i",
        at(3),
        Action::ConfirmSlot { slot: slot(2) },
    ))
    .unwrap();
    // The requesting side cannot make it at that time and proposes others.
    c.apply(&c.step(
        d,
        Physician,
        "dr i",
        at(4),
        Action::ProposeSlots {
            slots: vec![slot(5), slot(6)],
        },
    ))
    .unwrap();
    assert_eq!(c.proposed_by, Some(Side::Requesting));
    let own = c.step(
        d,
        Physician,
        "dr i",
        at(5),
        Action::ConfirmSlot { slot: slot(5) },
    );
    assert!(
        matches!(c.apply(&own), Err(WorkflowError::Appointment { .. })),
        "a side does not confirm its own proposal"
    );
    c.apply(&c.step(
        f,
        Consultant,
        "dr",
        at(6),
        Action::ConfirmSlot { slot: slot(6) },
    ))
    .unwrap();
    assert_eq!(c.appointment, Appointment::Confirmed(slot(6)));
}

#[test]
fn roles_and_sides_are_enforced() {
    let p = parties();
    let mut c = open(&p, Urgency::Planned);
    let (d, f) = (&p.district.identity, &p.federal.identity);
    let e = c
        .apply(&c.step(f, Physician, "x", at(1), Action::Accept))
        .unwrap_err();
    assert_eq!(
        e,
        WorkflowError::NotPermitted {
            role: Physician,
            side: Side::Consulting,
            action: "accept"
        }
    );
    assert!(
        e.to_string()
            .contains("physician of the consulting organization may not accept")
    );
    assert!(matches!(
        c.apply(&c.step(d, Coordinator, "x", at(1), Action::Accept)),
        Err(WorkflowError::NotPermitted { .. })
    ));
    assert!(matches!(
        c.apply(&c.step(
            &p.stranger.identity,
            Coordinator,
            "x",
            at(1),
            Action::Accept
        )),
        Err(WorkflowError::Outsider { .. })
    ));
    c.apply(&c.step(f, Coordinator, "x", at(1), Action::Accept))
        .unwrap();
    assert!(matches!(
        c.apply(&c.step(
            f,
            Coordinator,
            "x",
            at(2),
            Action::Conclude {
                conclusion: [0; 32]
            }
        )),
        Err(WorkflowError::NotPermitted { .. })
    ));
    assert!(matches!(
        c.apply(&c.step(
            d,
            Operator,
            "x",
            at(2),
            Action::Cancel { reason: "r".into() }
        )),
        Err(WorkflowError::NotPermitted { .. })
    ));
    assert_eq!(
        c.apply(&c.step(
            d,
            Physician,
            "x",
            at(2),
            Action::Cancel {
                reason: "transferred".into()
            }
        )),
        Ok(Status::Cancelled)
    );
    assert!(matches!(
        c.apply(&c.step(f, Consultant, "x", at(3), Action::Start)),
        Err(WorkflowError::WrongState {
            status: Status::Cancelled,
            ..
        })
    ));
}

#[test]
fn an_invited_organization_takes_part_and_gives_its_opinion_only() {
    let p = parties();
    let mut c = open(&p, Urgency::Planned);
    let (d, f, g) = (
        &p.district.identity,
        &p.federal.identity,
        &p.stranger.identity,
    );
    let guest = p.stranger.id();
    let invite = Action::Invite { org: guest };
    assert!(
        matches!(
            c.apply(&c.step(f, Coordinator, "x", at(1), invite.clone())),
            Err(WorkflowError::WrongState { .. })
        ),
        "nobody is invited before the request is accepted"
    );
    c.apply(&c.step(f, Coordinator, "x", at(1), Action::Accept))
        .unwrap();
    assert!(matches!(
        c.apply(&c.step(d, Physician, "x", at(2), invite.clone())),
        Err(WorkflowError::NotPermitted {
            side: Side::Requesting,
            ..
        })
    ));
    let note = |text: &str| Action::Note { text: text.into() };
    assert!(
        matches!(
            c.apply(&c.step(g, Consultant, "x", at(2), note("uninvited"))),
            Err(WorkflowError::Outsider { .. })
        ),
        "an organization not yet invited is an outsider"
    );
    assert!(matches!(
        c.apply(&c.step(
            f,
            Consultant,
            "x",
            at(2),
            Action::Invite {
                org: p.district.id()
            }
        )),
        Err(WorkflowError::Invite { .. })
    ));
    c.apply(&c.step(f, Consultant, "Prof. Petrov", at(2), invite.clone()))
        .unwrap();
    assert_eq!(c.guests, vec![guest]);
    assert_eq!(
        c.participants(),
        vec![p.district.id(), p.federal.id(), guest]
    );
    assert_eq!(c.side_of(guest), Some(Side::Invited));
    assert!(
        matches!(
            c.apply(&c.step(f, Consultant, "x", at(3), invite)),
            Err(WorkflowError::Invite { .. })
        ),
        "invited twice"
    );
    let first_response = c.first_response;
    assert_eq!(
        c.apply(&c.step(g, Consultant, "Dr. Guest", at(3), note("agree: PCI"))),
        Ok(Status::Accepted)
    );
    assert_eq!(
        c.first_response, first_response,
        "a guest's note is not the consultant's answer"
    );
    for (role, action) in [
        (Coordinator, note("a coordinator's note")),
        (Consultant, Action::Start),
        (
            Consultant,
            Action::Conclude {
                conclusion: [1; 32],
            },
        ),
        (
            Consultant,
            Action::ProposeSlots {
                slots: vec![slot(1)],
            },
        ),
    ] {
        assert!(
            matches!(
                c.apply(&c.step(g, role, "x", at(4), action.clone())),
                Err(WorkflowError::NotPermitted {
                    side: Side::Invited,
                    ..
                })
            ),
            "a guest may not {action:?} as {role}"
        );
    }
}

#[test]
fn steps_must_be_chained_in_order_and_signed_by_their_actor() {
    let p = parties();
    let mut a = open(&p, Urgency::Planned);
    let f = &p.federal.identity;
    let first = a.step(f, Coordinator, "x", at(1), Action::Receive);
    let mut ahead = a.clone();
    ahead.apply(&first).unwrap();
    let second = ahead.step(f, Coordinator, "x", at(2), Action::Accept);
    assert_eq!(
        a.apply(&second),
        Err(WorkflowError::OutOfOrder {
            expected: 1,
            got: 2
        })
    );
    // A competing first step (a fork) is refused once the first is in.
    let fork = a.step(f, Coordinator, "y", at(1), Action::Accept);
    a.apply(&first).unwrap();
    let mut relabelled = fork.decode_unverified().unwrap();
    relabelled.seq = 2;
    assert_eq!(
        a.apply(&Signed::sign(f, &relabelled)),
        Err(WorkflowError::NotChained { seq: 2 })
    );
    // Claiming to be the consulting organization without its key.
    let mut forged = a
        .step(
            &p.district.identity,
            Coordinator,
            "x",
            at(2),
            Action::Accept,
        )
        .decode_unverified()
        .unwrap();
    forged.actor = p.federal.id();
    assert!(matches!(
        a.apply(&Signed::sign(&p.district.identity, &forged)),
        Err(WorkflowError::Signed(_))
    ));
    let before = a.clone();
    assert!(a.apply(&fork).is_err());
    assert_eq!(a, before, "a refused step changes nothing");
}

#[test]
fn consent_or_an_emergency_override() {
    let p = parties();
    let mut req = open(&p, Urgency::Planned).request;
    req.consent = Consent::EmergencyOverride {
        reason: "unconscious, no relatives".into(),
    };
    assert_eq!(
        request(&p.district.identity, req.clone()).unwrap_err(),
        WorkflowError::ConsentRequired
    );
    req.urgency = Urgency::Emergency;
    let signed = request(&p.district.identity, req.clone()).unwrap();
    assert_eq!(
        Consultation::open(&signed).unwrap().status,
        Status::Requested
    );
    req.consent = Consent::EmergencyOverride { reason: " ".into() };
    assert!(request(&p.district.identity, req.clone()).is_err());
    // A peer that skips the check is caught when the request is opened.
    let unchecked = Signed::sign(
        &p.district.identity,
        &ConsultationRequest {
            urgency: Urgency::Urgent,
            consent: Consent::EmergencyOverride { reason: "x".into() },
            ..req
        },
    );
    assert_eq!(
        Consultation::open(&unchecked).unwrap_err(),
        WorkflowError::ConsentRequired
    );
}

/// A random step: who acts, in which role, doing what.
fn arb_step() -> impl Strategy<Value = (u8, u8, u8, u8)> {
    (0u8..3, 0u8..4, 0u8..16, 0u8..4)
}

fn make_action(kind: u8, slot_pick: u8, guest: OrgId) -> Action {
    let s = slot(u64::from(slot_pick) + 1);
    match kind {
        0 => Action::Receive,
        1 => Action::Accept,
        2 => Action::Reject {
            reason: "no capacity".into(),
            forward: slot_pick.is_multiple_of(2),
        },
        3 => Action::Start,
        4 => Action::AskMore {
            questions: "MRI".into(),
        },
        5 => Action::Supply {
            note: "MRI attached".into(),
        },
        6 => Action::ProposeSlots {
            slots: vec![slot(1), slot(2)],
        },
        7 => Action::ConfirmSlot { slot: s },
        8 => Action::CancelAppointment {
            reason: "ill".into(),
        },
        9 => Action::Note {
            text: "oral conclusion given".into(),
        },
        10 => Action::Conclude {
            conclusion: [slot_pick; 32],
        },
        11 => Action::Acknowledge,
        12 => Action::Cancel {
            reason: "patient transferred".into(),
        },
        13 => Action::Assign {
            consultant: "Prof. Petrov".into(),
        },
        14 => Action::Invite { org: guest },
        _ => Action::Fail {
            reason: "deadline missed".into(),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Both ends agree, whatever the history: one takes each step
    /// (`take`, its signature not checked again), the other applies the
    /// step as signed, and both decide alike. A third party replaying the
    /// accepted history, even in shuffled arrival order (buffering what
    /// is early), reaches the same state.
    #[test]
    fn both_ends_agree_on_random_histories(steps in prop::collection::vec(arb_step(), 1..40), shuffle in any::<prop::sample::Index>()) {
        let p = parties();
        let mut requester_view = open(&p, Urgency::Urgent);
        let mut consultant_view = requester_view.clone();
        let guest = p.stranger.id();
        for (i, (actor, role, kind, pick)) in steps.into_iter().enumerate() {
            let key = [&p.district.identity, &p.federal.identity, &p.stranger.identity][actor as usize];
            let role = [Physician, Coordinator, Consultant, Operator][role as usize];
            let action = make_action(kind, pick, guest);
            let step = requester_view.step(key, role, "user", at(i as u64), action.clone());
            let a = requester_view.take(key, role, "user", at(i as u64), action);
            if let Ok((_, taken)) = &a {
                prop_assert_eq!(taken.content_hash(), step.content_hash());
            }
            let b = consultant_view.apply(&step);
            prop_assert_eq!(a.map(|(status, _)| status), b);
            prop_assert_eq!(&requester_view, &consultant_view);
        }
        let history = requester_view.history.clone();
        let mut arrivals = history.clone();
        if !arrivals.is_empty() {
            let k = shuffle.index(arrivals.len());
            arrivals.rotate_left(k);
            arrivals.reverse();
        }
        let mut late = open(&p, Urgency::Urgent);
        let mut waiting = arrivals;
        while !waiting.is_empty() {
            let before = waiting.len();
            waiting.retain(|s| late.apply(s).is_err());
            prop_assert!(waiting.len() < before, "stuck with {} steps", waiting.len());
        }
        prop_assert_eq!(late, requester_view);
    }
}
