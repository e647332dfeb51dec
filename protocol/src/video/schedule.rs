//! When a consultation's video session opens and ends. The workflow
//! already agrees the time (the consulting side proposes slots, the
//! requester confirms one); this machine turns the confirmed slot into
//! "open now" and the end of the consultation into "end now", so the node
//! only carries them out.
//!
//! A session opens `lead` before its slot (sites connect before the
//! clinicians sit down) and either side may open it earlier by hand; an
//! offer that could not go out is tried again while the session is open. It
//! ends when the consultation reaches a final state, when the appointment
//! is cancelled, or `OVERRUN` after the slot's end: a meeting may run
//! late, but a forgotten one must not hold links for days.

use super::{SessionId, offers_to};
use crate::identity::OrgId;
use crate::time::Timestamp;
use crate::workflow::{Appointment, Consultation, Slot, Status};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// How long after its slot's end a scheduled session is ended.
pub const OVERRUN: Duration = Duration::from_secs(2 * 3600);
/// How long after an offer that could not be sent (the other site not
/// connected yet) it is tried again, while the session is open.
pub const OFFER_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleOutput {
    /// Open the session: send offers to `offer_to`; the other participants
    /// send theirs to us.
    Open {
        session: SessionId,
        offer_to: Vec<OrgId>,
    },
    /// End the session: close every link it has.
    End {
        session: SessionId,
        reason: EndReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The consultation reached this final state.
    Closed(Status),
    AppointmentCancelled,
    /// `OVERRUN` after the slot's end.
    TimeOver,
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::Closed(status) => write!(f, "the consultation is {status}"),
            EndReason::AppointmentCancelled => f.write_str("the appointment was cancelled"),
            EndReason::TimeOver => write!(
                f,
                "{} h past the appointment's end",
                OVERRUN.as_secs() / 3600
            ),
        }
    }
}

#[derive(Debug)]
struct Planned {
    participants: Vec<OrgId>,
    slot: Option<Slot>,
    open: bool,
}

#[derive(Debug)]
pub struct Schedule {
    me: OrgId,
    lead: Duration,
    sessions: BTreeMap<SessionId, Planned>,
    retries: BTreeMap<(SessionId, OrgId), Timestamp>,
    out: VecDeque<ScheduleOutput>,
}

impl Schedule {
    pub fn new(me: OrgId, lead: Duration) -> Self {
        Self {
            me,
            lead,
            sessions: BTreeMap::new(),
            retries: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// The consultation as it stands now: after each of its steps, and
    /// for every consultation when the node starts.
    pub fn handle_consultation(&mut self, now: Timestamp, c: &Consultation) {
        let session = SessionId(c.request.id.0);
        if c.status.is_final() {
            self.end(session, EndReason::Closed(c.status));
            return;
        }
        let slot = match c.appointment {
            Appointment::Confirmed(slot) => Some(slot),
            Appointment::Cancelled => {
                self.end(session, EndReason::AppointmentCancelled);
                return;
            }
            Appointment::None | Appointment::Proposed(_) => None,
        };
        let participants = c.participants();
        let planned = self.sessions.entry(session).or_insert(Planned {
            participants: participants.clone(),
            slot: None,
            open: false,
        });
        // An organization invited while the session is open is offered by
        // every site already in it: it cannot know the session is open.
        let me = self.me;
        let joined: Vec<OrgId> = (participants.iter().copied())
            .filter(|o| *o != me && !planned.participants.contains(o))
            .collect();
        planned.participants = participants;
        if planned.open && !joined.is_empty() {
            (self.out).push_back(ScheduleOutput::Open {
                session,
                offer_to: joined,
            });
        }
        planned.slot = slot;
        if planned.slot.is_none() && !planned.open {
            self.sessions.remove(&session);
        }
        self.handle_timeout(now);
    }

    /// A participant opened the session by hand, before its time or with
    /// no appointment, or another site's offer opened it here: it stays
    /// open until the consultation ends, and this site offers to the sites
    /// it offers to (the others offer to it), so every pair links. False
    /// when it was open already.
    pub fn handle_opened(&mut self, session: SessionId, participants: Vec<OrgId>) -> bool {
        let planned = self.sessions.entry(session).or_insert(Planned {
            participants,
            slot: None,
            open: false,
        });
        let opened = !std::mem::replace(&mut planned.open, true);
        if opened {
            let offer_to = self.offer_to(&self.sessions[&session].participants);
            if !offer_to.is_empty() {
                (self.out).push_back(ScheduleOutput::Open { session, offer_to });
            }
        }
        opened
    }

    /// The participants this site offers to: of each pair, one offers.
    fn offer_to(&self, participants: &[OrgId]) -> Vec<OrgId> {
        let me = self.me;
        (participants.iter().copied())
            .filter(|&other| other != me && offers_to(me, other))
            .collect()
    }

    /// Our offer to `org` could not be sent: it goes again after
    /// `OFFER_RETRY` if the session is still open then.
    pub fn handle_offer_failed(&mut self, now: Timestamp, session: SessionId, org: OrgId) {
        if self.is_open(&session) {
            (self.retries).insert((session, org), now.saturating_add(OFFER_RETRY));
        }
    }

    pub fn handle_timeout(&mut self, now: Timestamp) {
        let due: Vec<_> = (self.retries.iter())
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| *key)
            .collect();
        for (session, org) in due {
            self.retries.remove(&(session, org));
            if self.is_open(&session) {
                self.out.push_back(ScheduleOutput::Open {
                    session,
                    offer_to: vec![org],
                });
            }
        }
        let mut ended = Vec::new();
        let mut opened = Vec::new();
        for (&session, planned) in &mut self.sessions {
            let Some(slot) = planned.slot else { continue };
            let over = slot.end.saturating_add(OVERRUN);
            if now >= over {
                ended.push(session);
            } else if !planned.open && now >= slot.start.saturating_sub(self.lead) {
                planned.open = true;
                opened.push(session);
            }
        }
        for session in opened {
            let offer_to = self.offer_to(&self.sessions[&session].participants);
            self.out
                .push_back(ScheduleOutput::Open { session, offer_to });
        }
        for session in ended {
            self.end(session, EndReason::TimeOver);
        }
    }

    /// When the next session opens or ends, or an offer is tried again.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let sessions = (self.sessions.values()).filter_map(|p| {
            let slot = p.slot?;
            Some(if p.open {
                slot.end.saturating_add(OVERRUN)
            } else {
                slot.start.saturating_sub(self.lead)
            })
        });
        sessions.chain(self.retries.values().copied()).min()
    }

    pub fn poll_output(&mut self) -> Option<ScheduleOutput> {
        self.out.pop_front()
    }

    pub fn is_open(&self, session: &SessionId) -> bool {
        self.sessions.get(session).is_some_and(|p| p.open)
    }

    fn end(&mut self, session: SessionId, reason: EndReason) {
        self.retries.retain(|(s, _), _| *s != session);
        if let Some(planned) = self.sessions.remove(&session)
            && planned.open
        {
            self.out.push_back(ScheduleOutput::End { session, reason });
        }
    }
}

#[cfg(test)]
mod tests;
