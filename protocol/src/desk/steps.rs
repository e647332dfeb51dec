//! Journal notes and the in-order application of steps, shared by the
//! desk's handling of steps that arrive and histories that come back.

use super::*;

/// The journal's note for a package that brought a consultation.
pub(super) fn receive_note(id: ConsultationId, package: PackageId) -> Note {
    Note {
        user: None,
        role: None,
        action: journal::Action::Receive {
            consultation: id.0,
            package,
        },
    }
}

/// Applies whatever of a case's waiting steps now follows in order, and
/// keeps the rest waiting; returns the journal's notes for what applied.
pub(super) fn apply_waiting(case: &mut Case, out: &mut VecDeque<Output>) -> Vec<Note> {
    let id = case.id();
    let mut notes = Vec::new();
    loop {
        let before = case.waiting.len();
        for s in std::mem::take(&mut case.waiting) {
            let from = case.consultation.status;
            match case.consultation.apply(&s) {
                Ok(_) => {
                    if let Ok(t) = s.decode_unverified() {
                        notes.extend(step_notes(case, from, &t.user, t.role, &s));
                    }
                }
                Err(WorkflowError::OutOfOrder { expected, got }) if got > expected => {
                    case.waiting.push(s)
                }
                Err(reason) => {
                    // A waiting step's actor was checked to be the
                    // organization that sent it when it was handed in.
                    if let (true, Ok(t)) = (reason.is_forgery(), s.decode_unverified()) {
                        let forged = Event::Forged {
                            by: t.actor,
                            reason: reason.clone().into(),
                        };
                        out.push_back(Output::Event(forged));
                    }
                    out.push_back(Output::Event(Event::StepRefused { id, reason }));
                }
            }
        }
        if case.waiting.is_empty() || case.waiting.len() == before {
            return notes;
        }
    }
}

/// The journal's notes for one applied step: the transition, and for a
/// conclusion whether it came within the deadline.
pub(super) fn step_notes(
    case: &Case,
    from: Status,
    user: &str,
    role: Role,
    step: &Signed<Transition>,
) -> Vec<Note> {
    let c = &case.consultation;
    let consultation = c.id().0;
    let mut notes = vec![Note {
        user: Some(user.to_owned()),
        role: Some(role),
        action: journal::Action::Transition {
            consultation,
            from: from.to_string(),
            to: c.status.to_string(),
        },
    }];
    let Ok(t) = step.decode_unverified() else {
        return notes;
    };
    if let Action::Invite { org } = t.action {
        notes.push(Note {
            user: Some(user.to_owned()),
            role: Some(role),
            action: journal::Action::Invite { consultation, org },
        });
    }
    if matches!(t.action, Action::Conclude { .. }) {
        let deadline_met = case.deadline.is_none_or(|d| t.at <= d.due);
        notes.push(Note {
            user: Some(user.to_owned()),
            role: Some(role),
            action: journal::Action::Conclusion {
                consultation,
                deadline_met,
            },
        });
    }
    notes
}
