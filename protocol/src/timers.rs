//! The consultation timers: when a deadline turns at risk or breached, and
//! when an unanswered emergency must go to the next consultant.
//!
//! A sans-I/O machine in the style of quinn-proto's `Connection`: the node
//! tells it what each consultation looks like whenever that changes
//! ([`ConsultationTimers::handle_update`]) and wakes it at
//! [`ConsultationTimers::poll_timeout`]; it answers with
//! [`ConsultationTimers::poll_event`]. It keeps its own index, so nothing
//! scans storage to find what is due, and it never reads a clock: a test
//! moves time by passing a later `now`.

use crate::deadline::{Deadline, DeadlineState};
use crate::time::Timestamp;
use crate::urgency::Urgency;
use crate::workflow::{ConsultationId, Status};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What the timers need to know about one consultation, as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// `None` when the consulting organization's calendar is unknown here.
    pub deadline: Option<Deadline>,
    pub urgency: Urgency,
    pub status: Status,
    pub concluded: bool,
    /// When the consultant first accepted or answered.
    pub first_response: Option<Timestamp>,
    /// Whether this organization asked: only the requester escalates.
    pub requesting: bool,
    /// The consultant declined and asked for the case to be forwarded.
    pub forwarded: bool,
    /// Already escalated (or found no one left): never escalated twice.
    pub escalated: bool,
}

impl Facts {
    /// Settled consultations have no deadline left to watch.
    fn settled(&self) -> bool {
        self.status.is_final() || self.concluded
    }

    fn deadline_state(&self, now: Timestamp) -> DeadlineState {
        match self.deadline {
            Some(d) if !self.settled() => d.state(now),
            _ => DeadlineState::OnTrack,
        }
    }

    /// Why this consultation must go to the next consultant now, if it must.
    fn escalation(&self, now: Timestamp) -> Option<Escalation> {
        if !self.requesting || self.escalated {
            return None;
        }
        if self.forwarded {
            return Some(Escalation::DeclinedWithForward);
        }
        let unanswered = self.urgency == Urgency::Emergency
            && matches!(self.status, Status::Requested | Status::Received);
        let breached = self
            .deadline
            .and_then(|d| d.first_response_state(now, self.first_response))
            == Some(DeadlineState::Breached);
        (unanswered && breached).then_some(Escalation::NoFirstResponse)
    }

    /// The next instant at which something above can change by time alone.
    fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        let d = self.deadline?;
        let mut next = None;
        if !self.settled() {
            next = [d.at_risk_from, d.due].into_iter().find(|t| *t > now);
        }
        if self.requesting && !self.escalated && self.urgency == Urgency::Emergency {
            let response = d.first_response_due.filter(|t| *t > now);
            next = match (next, response) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next
    }
}

/// Why a consultation is escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    DeclinedWithForward,
    NoFirstResponse,
}

impl Escalation {
    pub fn reason(&self) -> &'static str {
        match self {
            Escalation::DeclinedWithForward => "declined with forward",
            Escalation::NoFirstResponse => "no first response within the emergency response time",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerEvent {
    /// A deadline became at risk or breached; reported once per state.
    Deadline {
        id: ConsultationId,
        state: DeadlineState,
        due: Timestamp,
    },
    /// The requester should send the case to the next consultant. Reported
    /// once; the node answers with an update saying it escalated.
    Escalate { id: ConsultationId, why: Escalation },
}

struct Watched {
    facts: Facts,
    reported: DeadlineState,
    escalation_reported: bool,
    wake: Option<Timestamp>,
}

/// Every open consultation's timers, woken only when one is due.
#[derive(Default)]
pub struct ConsultationTimers {
    watched: BTreeMap<ConsultationId, Watched>,
    /// `(when, id)` for each consultation with a future change.
    queue: BTreeSet<(Timestamp, ConsultationId)>,
    events: VecDeque<TimerEvent>,
    /// When the oldest event not yet polled was reported: an update can
    /// report at once (a decline with forward), and the driver only polls
    /// at a timeout, so pending events make one due.
    pending_since: Option<Timestamp>,
}

impl ConsultationTimers {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many consultations are watched.
    pub fn len(&self) -> usize {
        self.watched.len()
    }

    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }

    /// A consultation was opened, changed, or loaded at start. What is due
    /// already is reported at once; a deadline state already reported (for
    /// example before a restart, when `reported` is given) is not repeated.
    pub fn handle_update(&mut self, now: Timestamp, id: ConsultationId, facts: Facts) {
        let (reported, escalation_reported) = self
            .watched
            .get(&id)
            .map_or((DeadlineState::OnTrack, false), |w| {
                (w.reported, w.escalation_reported && !facts.escalated)
            });
        if let Some(w) = self.watched.get(&id)
            && let Some(t) = w.wake
        {
            self.queue.remove(&(t, id));
        }
        let mut w = Watched {
            facts,
            reported,
            escalation_reported,
            wake: None,
        };
        self.check(now, id, &mut w);
        self.watched.insert(id, w);
    }

    /// The consultation is gone (removed from storage): forget it.
    pub fn handle_remove(&mut self, id: &ConsultationId) {
        if let Some(w) = self.watched.remove(id)
            && let Some(t) = w.wake
        {
            self.queue.remove(&(t, *id));
        }
    }

    /// Reports what has become due by `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(&(t, id)) = self.queue.first() {
            if t > now {
                break;
            }
            self.queue.pop_first();
            if let Some(mut w) = self.watched.remove(&id) {
                w.wake = None;
                self.check(now, id, &mut w);
                self.watched.insert(id, w);
            }
        }
    }

    /// An escalation could not be carried out (no route yet, a disk
    /// error): report it again at `at` if it is still due then.
    pub fn retry_escalation(&mut self, id: &ConsultationId, at: Timestamp) {
        let Some(w) = self.watched.get_mut(id) else {
            return;
        };
        w.escalation_reported = false;
        if w.wake.is_none_or(|t| t > at) {
            if let Some(t) = w.wake {
                self.queue.remove(&(t, *id));
            }
            w.wake = Some(at);
            self.queue.insert((at, *id));
        }
    }

    /// The deadline state last reported for each watched consultation.
    pub fn deadline_states(&self) -> impl Iterator<Item = DeadlineState> + '_ {
        self.watched.values().map(|w| w.reported)
    }

    pub fn poll_event(&mut self) -> Option<TimerEvent> {
        let event = self.events.pop_front();
        if self.events.is_empty() {
            self.pending_since = None;
        }
        event
    }

    /// When [`Self::handle_timeout`] next has something to report: at
    /// once while events wait to be polled.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let next = self.queue.first().map(|(t, _)| *t);
        match (self.pending_since, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn check(&mut self, now: Timestamp, id: ConsultationId, w: &mut Watched) {
        let state = w.facts.deadline_state(now);
        if state != w.reported {
            if state != DeadlineState::OnTrack
                && let Some(d) = w.facts.deadline
            {
                self.events.push_back(TimerEvent::Deadline {
                    id,
                    state,
                    due: d.due,
                });
                self.pending_since.get_or_insert(now);
            }
            w.reported = state;
        }
        if !w.escalation_reported
            && let Some(why) = w.facts.escalation(now)
        {
            self.events.push_back(TimerEvent::Escalate { id, why });
            self.pending_since.get_or_insert(now);
            w.escalation_reported = true;
        }
        w.wake = w.facts.next_change(now);
        if let Some(t) = w.wake {
            self.queue.insert((t, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T0: Timestamp = Timestamp::from_unix_millis(1_780_000_000_000);
    const MIN: u64 = 60_000;

    fn at(minutes: u64) -> Timestamp {
        Timestamp::from_unix_millis(T0.unix_millis() + minutes * MIN)
    }

    /// An emergency due in 180 minutes, first response due in 30.
    fn emergency() -> Facts {
        Facts {
            deadline: Some(Deadline {
                requested: T0,
                due: at(180),
                first_response_due: Some(at(30)),
                at_risk_from: at(135),
            }),
            urgency: Urgency::Emergency,
            status: Status::Requested,
            concluded: false,
            first_response: None,
            requesting: true,
            forwarded: false,
            escalated: false,
        }
    }

    fn drain(t: &mut ConsultationTimers) -> Vec<TimerEvent> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    const ID: ConsultationId = ConsultationId([7; 16]);

    #[test]
    fn an_unanswered_emergency_escalates_once_when_its_response_time_passes() {
        let mut t = ConsultationTimers::new();
        t.handle_update(T0, ID, emergency());
        assert!(drain(&mut t).is_empty());
        assert_eq!(t.poll_timeout(), Some(at(30)));
        t.handle_timeout(at(29));
        assert!(drain(&mut t).is_empty(), "not before it is due");
        t.handle_timeout(at(30));
        assert_eq!(
            drain(&mut t),
            [TimerEvent::Escalate {
                id: ID,
                why: Escalation::NoFirstResponse
            }]
        );
        // Not again, even woken later, until the node says it escalated.
        t.handle_timeout(at(60));
        assert!(drain(&mut t).is_empty());
        let done = Facts {
            escalated: true,
            status: Status::Cancelled,
            ..emergency()
        };
        t.handle_update(at(61), ID, done);
        assert!(drain(&mut t).is_empty());
        assert_eq!(
            t.poll_timeout(),
            None,
            "a settled consultation is not woken"
        );
    }

    #[test]
    fn an_answered_emergency_does_not_escalate_but_its_deadline_is_watched() {
        let mut t = ConsultationTimers::new();
        let answered = Facts {
            status: Status::InProgress,
            first_response: Some(at(10)),
            ..emergency()
        };
        t.handle_update(at(10), ID, answered);
        t.handle_timeout(at(30));
        assert!(drain(&mut t).is_empty());
        assert_eq!(t.poll_timeout(), Some(at(135)));
        t.handle_timeout(at(135));
        t.handle_timeout(at(180));
        assert_eq!(
            drain(&mut t),
            [
                TimerEvent::Deadline {
                    id: ID,
                    state: DeadlineState::AtRisk,
                    due: at(180)
                },
                TimerEvent::Deadline {
                    id: ID,
                    state: DeadlineState::Breached,
                    due: at(180)
                },
            ]
        );
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn a_forward_escalates_at_once_and_only_on_the_requesting_side() {
        let mut t = ConsultationTimers::new();
        let forwarded = Facts {
            forwarded: true,
            status: Status::Rejected,
            urgency: Urgency::Planned,
            ..emergency()
        };
        t.handle_update(
            T0,
            ID,
            Facts {
                requesting: false,
                ..forwarded
            },
        );
        assert!(drain(&mut t).is_empty());
        assert_eq!(
            t.poll_timeout(),
            None,
            "nothing to wake the consulting side for"
        );
        t.handle_update(at(5), ID, forwarded);
        // A driver polls events when woken: the escalation makes the timers
        // due at once, though the rejected case has no deadline left.
        assert_eq!(t.poll_timeout(), Some(at(5)));
        assert_eq!(
            drain(&mut t),
            [TimerEvent::Escalate {
                id: ID,
                why: Escalation::DeclinedWithForward
            }]
        );
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn a_moved_clock_reports_what_it_jumped_over_once() {
        let mut t = ConsultationTimers::new();
        let consulting = Facts {
            requesting: false,
            ..emergency()
        };
        t.handle_update(T0, ID, consulting);
        // Loaded late (a restart): the breach is reported at once, once.
        let mut late = ConsultationTimers::new();
        late.handle_update(at(200), ID, consulting);
        assert_eq!(
            drain(&mut late),
            [TimerEvent::Deadline {
                id: ID,
                state: DeadlineState::Breached,
                due: at(180)
            }]
        );
        late.handle_update(at(201), ID, consulting);
        assert!(drain(&mut late).is_empty(), "an update repeats nothing");
        // A concluded consultation is never late.
        t.handle_update(
            at(100),
            ID,
            Facts {
                concluded: true,
                status: Status::Completed,
                ..consulting
            },
        );
        t.handle_timeout(at(500));
        assert!(drain(&mut t).is_empty());
    }

    #[test]
    fn many_consultations_wake_in_order_of_their_next_change() {
        let mut t = ConsultationTimers::new();
        for i in 0..100u8 {
            let shift = Duration::from_secs(60 * u64::from(100 - i));
            let mut f = emergency();
            let d = f.deadline.as_mut().unwrap();
            d.first_response_due = d.first_response_due.map(|x| x.saturating_add(shift));
            t.handle_update(T0, ConsultationId([i; 16]), f);
        }
        assert_eq!(t.len(), 100);
        let mut order = Vec::new();
        while let Some(when) = t.poll_timeout() {
            if when > at(200) {
                break;
            }
            t.handle_timeout(when);
            for e in drain(&mut t) {
                if let TimerEvent::Escalate { id, .. } = e {
                    order.push(id.0[0]);
                }
            }
        }
        let expected: Vec<u8> = (0..100u8).rev().collect();
        assert_eq!(order, expected);
        t.handle_remove(&ConsultationId([5; 16]));
        assert_eq!(t.len(), 99);
    }

    #[test]
    fn a_failed_escalation_is_reported_again_when_retried() {
        let mut t = ConsultationTimers::new();
        t.handle_update(at(31), ID, emergency());
        assert_eq!(drain(&mut t).len(), 1);
        t.retry_escalation(&ID, at(32));
        assert_eq!(t.poll_timeout(), Some(at(32)));
        t.handle_timeout(at(31));
        assert!(drain(&mut t).is_empty(), "not before the retry");
        t.handle_timeout(at(32));
        assert_eq!(
            drain(&mut t),
            [TimerEvent::Escalate {
                id: ID,
                why: Escalation::NoFirstResponse
            }]
        );
    }
}
