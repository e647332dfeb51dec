//! Two organizations taking a step of one consultation at the same moment
//! (a cancel crossing an accept): both steps carry the same number and
//! follow the same step, and each side first applied its own. Every
//! participant keeps the step `workflow::outranks` puts first, and the
//! side whose step lost undoes it (and what it built on it), so the
//! consultation does not split in two.

use super::*;

/// How many steps that do not follow the history a case holds are kept
/// aside, in case a race's outcome makes them follow it.
pub(super) const MAX_ASIDE: usize = 16;

/// What a step that does not follow the history did to it.
pub(super) enum Race {
    /// Not a rival of the step held at its place: handled like any other.
    None,
    /// The rival stood: the case now holds it, and these steps were undone.
    Lost {
        undone: Vec<Signed<Transition>>,
        /// The status just before the rival's step.
        from: Status,
    },
}

/// Settles a race between `rival` (decoded as `t`) and the step the case
/// holds at its place. A race it is only when the rival follows the same
/// step, and when its organization took none of the steps it would undo
/// (a side that built on the step at that place had seen it: forking
/// from behind it is no race). A conclusion is never undone.
pub(super) fn settle(
    case: &mut Case,
    rival: &Signed<Transition>,
    t: &Transition,
) -> Result<Race, WorkflowError> {
    let history = &case.consultation.history;
    let place = t.seq as usize;
    if place == 0 || place > history.len() {
        return Ok(Race::None);
    }
    let before = match place {
        1 => case.request.content_hash(),
        _ => history[place - 2].content_hash(),
    };
    if t.prev != before {
        return Ok(Race::None);
    }
    let held = &history[place - 1..];
    if !stands_over(rival, t.actor, held) {
        return Ok(Race::None);
    }
    let mut rebuilt = case.consultation.before(&case.request, t.seq)?;
    let from = rebuilt.status;
    rebuilt.apply(rival)?;
    let undone = held.to_vec();
    case.consultation = rebuilt;
    Ok(Race::Lost { undone, from })
}

/// Whether `rival`, taken by `actor` at the place where `held` begins (and
/// following the same step), stands over the steps held there: none of
/// them taken by `actor`, none a conclusion, and `rival` outranking the
/// first.
pub(super) fn stands_over(
    rival: &Signed<Transition>,
    actor: OrgId,
    held: &[Signed<Transition>],
) -> bool {
    let racing = held.iter().all(|s| {
        s.decode_unverified()
            .is_ok_and(|h| h.actor != actor && !matches!(h.action, Action::Conclude { .. }))
    });
    racing
        && held
            .first()
            .is_some_and(|first| workflow::outranks(rival, first))
}

/// Why `t` cannot follow the case's history where it stands, if it
/// cannot and is not a step for later: a step of a branch the case does
/// not hold (yet).
pub(super) fn off_the_history(case: &Case, t: &Transition) -> Option<WorkflowError> {
    match case.consultation.follows(t) {
        Err(WorkflowError::OutOfOrder { expected, got }) if got > expected => None,
        Err(reason) => Some(reason),
        Ok(()) => None,
    }
}

/// The journal's notes for steps a race undid.
pub(super) fn undone_notes(
    id: ConsultationId,
    undone: &[Signed<Transition>],
    by: OrgId,
) -> Vec<Note> {
    undone
        .iter()
        .filter_map(|s| s.decode_unverified().ok())
        .map(|u| Note {
            user: Some(u.user),
            role: Some(u.role),
            action: journal::Action::Undone {
                consultation: id.0,
                seq: u.seq,
                by,
            },
        })
        .collect()
}
