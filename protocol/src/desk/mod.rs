//! The consultation desk: every consultation this organization takes part
//! in, moved by what its clinicians do and what the network brings.
//!
//! A sans-I/O machine like the others: the driver hands in requests and
//! steps that arrived (`handle_*`), local actions (`open`, `act`), and wakes
//! it at [`Desk::poll_timeout`]; it answers with [`Desk::poll_output`]:
//! cases to store together with their journal notes (one write each, so a
//! crash leaves all of an operation or none of it), steps to seal to the
//! other organization, escalations to carry out, and events. It holds steps
//! that overtake the request they follow, applies steps in order whatever
//! order they come in, watches deadlines through the consultation timers,
//! and decides escalations. It never reads a clock or a disk; the
//! directory it routes and computes deadlines with is an argument.

mod escalation;
#[cfg(test)]
mod escalation_tests;
mod list;
mod race;
#[cfg(test)]
mod race_tests;
mod recover;
#[cfg(test)]
mod recover_tests;
#[cfg(test)]
mod sim_tests;
mod steps;
#[cfg(test)]
mod tests;

use crate::cert::{RegionCode, Trust};
use crate::conclusion::{ConclusionError, ConclusionFile};
use crate::deadline::{Deadline, DeadlineState};
use crate::directory::Directory;
use crate::identity::{IdentityKey, OrgId};
use crate::journal::{self, ConsultationRef, Role};
use crate::route::{self, RouteRequest};
use crate::seal::PackageId;
use crate::signed::{Signed, SignedError};
use crate::time::Timestamp;
use crate::timers::{ConsultationTimers, Facts, TimerEvent};
use crate::workflow::{
    self, Action, Consent, Consultation, ConsultationId, ConsultationRequest, Status, Transition,
    WorkflowError,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

pub use list::Page;
pub use recover::Recovered;
use steps::{apply_waiting, step_notes};

/// Why an escalation is carried out again after a restart.
const INTERRUPTED: &str = "escalation interrupted by a restart";

/// Who the journal names for the steps the desk takes by itself.
pub const ESCALATION: Actor<'static> = Actor {
    role: Role::Coordinator,
    user: "konsilium (automatic escalation)",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Steps held for requests that have not arrived, over all peers: a
    /// peer cannot fill memory or disk with steps for requests never sent.
    pub max_early_steps: usize,
    /// How soon an escalation the driver could not carry out is tried again.
    pub escalation_retry: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_early_steps: 4096,
            escalation_retry: Duration::from_secs(1),
        }
    }
}

/// One consultation as the desk keeps it.
#[derive(Debug, Clone)]
pub struct Case {
    pub request: Signed<ConsultationRequest>,
    /// The state after every applied step; its `history` is what is stored.
    pub consultation: Consultation,
    /// Steps that arrived before the ones they follow.
    pub waiting: Vec<Signed<Transition>>,
    pub conclusion: Option<ConclusionFile>,
    /// The consultation this one was escalated to; itself when no one was
    /// left to ask, so it is never escalated again.
    pub escalated_to: Option<ConsultationId>,
    /// The deadlines, fixed when the case was opened or received from the
    /// consulting organization's calendar and deadlines then (the driver
    /// stores them): a later change of either, or its record leaving the
    /// directory (revoked, lapsed), must not move or drop a deadline the
    /// requester was promised. `None` until the consulting organization's
    /// record is known.
    pub deadline: Option<Deadline>,
}

impl Case {
    pub fn id(&self) -> ConsultationId {
        self.consultation.id()
    }
}

/// Who takes a step at this organization.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub role: Role,
    pub user: &'a str,
}

/// A step held until the request it belongs to arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyStep {
    pub sender: OrgId,
    pub step: Signed<Transition>,
    pub conclusion: Option<ConclusionFile>,
}

/// A journal entry to write with the case it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub user: Option<String>,
    pub role: Option<Role>,
    pub action: journal::Action,
}

#[derive(Debug, Clone)]
pub enum Output {
    /// Store the case as it is now, and append the notes to the journal, in
    /// one write, before anything that caused it is acknowledged.
    Persist {
        id: ConsultationId,
        notes: Vec<Note>,
    },
    /// Keep this step until its request arrives.
    Hold(Box<EarlyStep>),
    /// The steps held for this consultation were taken: forget them.
    Release(ConsultationId),
    /// Seal this step to another participant.
    Send {
        id: ConsultationId,
        to: OrgId,
        step: Signed<Transition>,
        conclusion: Option<Box<ConclusionFile>>,
    },
    /// `to` was invited: seal it the case (extract, files) and its whole
    /// history, the invitation included, as for a recovering participant.
    Invite {
        id: ConsultationId,
        to: OrgId,
    },
    /// Ask `to` in place of `from`'s consultant: open a consultation with
    /// [`Desk::open`] (escalated from `from`), seal the case to `to`, then
    /// report with [`Desk::handle_escalated`], or [`Desk::retry_escalation`]
    /// if it could not be done.
    Escalate {
        from: ConsultationId,
        to: OrgId,
        reason: &'static str,
    },
    Event(Event),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Updated {
        id: ConsultationId,
        status: Status,
    },
    Deadline {
        id: ConsultationId,
        state: DeadlineState,
        due: Timestamp,
    },
    /// The case went to a further consultant, or (`to: None`) no one was left.
    Escalated {
        from: ConsultationId,
        to: Option<(ConsultationId, OrgId)>,
    },
    /// A step that could not be applied, for the log.
    StepRefused {
        id: ConsultationId,
        reason: WorkflowError,
    },
    /// `by` sent a step (or conclusion) its own node could never have
    /// signed honestly: the driver scores it as misconduct.
    Forged {
        by: OrgId,
        reason: DeskError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeskError {
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Signed(#[from] SignedError),
    #[error(transparent)]
    Conclusion(#[from] ConclusionError),
    #[error(
        "the conclusion file does not match the step it came with (another hash, consultation or organization, or a step that concludes nothing)"
    )]
    ConclusionMismatch,
    #[error("unknown consultation {0}")]
    Unknown(ConsultationId),
    #[error("too many steps held for consultations that have not arrived")]
    TooManyHeld,
    #[error(
        "consultation {0}: the counterpart's history contradicts the steps this node kept; nothing was changed"
    )]
    Diverged(ConsultationId),
}

impl DeskError {
    /// Whether the sender must have made this up. An honest node checks
    /// signatures, parties and roles before it signs a step, so a failure of
    /// those is forgery; order, state, a certificate that expired on the way
    /// and unknown cases happen to honest nodes acting at the same time.
    pub fn is_forgery(&self) -> bool {
        match self {
            DeskError::Workflow(w) => w.is_forgery(),
            DeskError::Signed(_) | DeskError::ConclusionMismatch => true,
            DeskError::Conclusion(c) => !matches!(c, ConclusionError::Chain(_)),
            DeskError::Unknown(_) | DeskError::TooManyHeld | DeskError::Diverged(_) => false,
        }
    }
}

impl WorkflowError {
    fn is_forgery(&self) -> bool {
        matches!(
            self,
            WorkflowError::Signed(_)
                | WorkflowError::Outsider { .. }
                | WorkflowError::NotPermitted { .. }
                | WorkflowError::WrongConsultation { .. }
        )
    }
}

/// What a step or request handed in did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Applied, or waiting in the case for the step it follows.
    Taken,
    /// Already had it.
    Duplicate,
    /// Held until its request arrives.
    Held,
}

pub struct Desk {
    config: Config,
    identity: IdentityKey,
    me: OrgId,
    region: RegionCode,
    cases: BTreeMap<ConsultationId, Case>,
    early: BTreeMap<ConsultationId, Vec<EarlyStep>>,
    held: usize,
    timers: ConsultationTimers,
    /// Escalations the driver could not carry out, and when to ask again.
    retries: BTreeMap<ConsultationId, (Timestamp, &'static str)>,
    /// Steps of other organizations that did not follow a case's history,
    /// the latest [`race::MAX_ASIDE`] of each: the steps that followed a
    /// rival step, should a race turn out that step to be the one that
    /// stands.
    aside: BTreeMap<ConsultationId, VecDeque<Signed<Transition>>>,
    out: VecDeque<Output>,
}

impl Desk {
    pub fn new(config: Config, identity: IdentityKey, region: RegionCode) -> Self {
        Self {
            config,
            me: identity.org_id(),
            identity,
            region,
            cases: BTreeMap::new(),
            early: BTreeMap::new(),
            held: 0,
            timers: ConsultationTimers::new(),
            retries: BTreeMap::new(),
            aside: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// A case as storage kept it, at start.
    /// A case closed by an escalation that never reached the next
    /// consultant (the node stopped in between) is escalated again.
    pub fn restore(&mut self, now: Timestamp, case: Case, directory: &Directory) {
        let id = case.id();
        let interrupted = case.escalated_to.is_none()
            && case.consultation.request.requester == self.me
            && case
                .consultation
                .history
                .last()
                .and_then(|s| s.decode_unverified().ok())
                .is_some_and(|t| {
                    t.user == ESCALATION.user && matches!(t.action, Action::Cancel { .. })
                });
        self.cases.insert(id, case);
        if interrupted {
            self.retries.insert(id, (now, INTERRUPTED));
        }
        self.watch(now, id, directory);
    }

    /// A case storage no longer has (its first write failed).
    pub fn forget(&mut self, id: &ConsultationId) {
        self.cases.remove(id);
        self.timers.handle_remove(id);
        self.retries.remove(id);
        self.aside.remove(id);
    }

    /// A held step as storage kept it, at start.
    pub fn restore_held(&mut self, early: EarlyStep) {
        if let Ok(t) = early.step.decode_unverified() {
            self.held += 1;
            self.early.entry(t.consultation).or_default().push(early);
        }
    }

    pub fn case(&self, id: &ConsultationId) -> Option<&Case> {
        self.cases.get(id)
    }

    pub fn cases(&self) -> impl Iterator<Item = &Case> {
        self.cases.values()
    }

    /// How many consultations are in each deadline state, for metrics.
    pub fn deadline_states(&self) -> impl Iterator<Item = DeadlineState> + '_ {
        self.timers.deadline_states()
    }

    /// The legal deadline, in the consulting organization's calendar, when
    /// it is in the directory: what a case's deadline is fixed to when it
    /// is opened or received.
    pub fn deadline(request: &ConsultationRequest, directory: &Directory) -> Option<Deadline> {
        let consultant = directory.get(&request.consultant)?;
        Some(Deadline::compute(
            request.urgency,
            request.created,
            &consultant.record().calendar,
            &consultant.deadlines_for(request.specialty),
        ))
    }

    /// Signs and registers a new request from this organization, entered
    /// by a physician's user (`None`: the node opened it itself, as when it
    /// escalates). The journal names that user, who may not be the
    /// physician the request names as attending (a HIS gateway enters
    /// requests for many).
    pub fn open(
        &mut self,
        now: Timestamp,
        request: ConsultationRequest,
        entered_by: Option<&str>,
        directory: &Directory,
    ) -> Result<Signed<ConsultationRequest>, DeskError> {
        let signed = workflow::request(&self.identity, request)?;
        let consultation = Consultation::open(&signed)?;
        let request = consultation.request.clone();
        let user = entered_by.map(str::to_owned);
        let role = entered_by.map(|_| Role::Physician);
        let mut notes = vec![Note {
            user: user.clone(),
            role,
            action: journal::Action::Create(reference(&request)),
        }];
        if let Consent::EmergencyOverride { reason } = &request.consent {
            notes.push(Note {
                user,
                role,
                action: journal::Action::ConsentOverride {
                    consultation: request.id.0,
                    reason: reason.clone(),
                },
            });
        }
        let id = request.id;
        self.cases.insert(
            id,
            Case {
                request: signed.clone(),
                deadline: Self::deadline(&consultation.request, directory),
                consultation,
                waiting: Vec::new(),
                conclusion: None,
                escalated_to: None,
            },
        );
        self.out.push_back(Output::Persist { id, notes });
        self.watch(now, id, directory);
        Ok(signed)
    }

    /// Takes one step as this organization: applied here first, so a step
    /// the workflow refuses never leaves; then sealed to every other
    /// participant.
    pub fn act(
        &mut self,
        now: Timestamp,
        id: ConsultationId,
        actor: Actor<'_>,
        action: Action,
        conclusion: Option<ConclusionFile>,
        directory: &Directory,
    ) -> Result<Status, DeskError> {
        let Actor { role, user } = actor;
        if let Action::Invite { org } = &action
            && directory.get(org).is_none()
        {
            let why = "the organization is not in the directory (not certified, or revoked)";
            return Err(WorkflowError::Invite { why }.into());
        }
        let case = self.cases.get_mut(&id).ok_or(DeskError::Unknown(id))?;
        let from = case.consultation.status;
        let (status, step) = (case.consultation).take(&self.identity, role, user, now, action)?;
        if conclusion.is_some() {
            case.conclusion = conclusion.clone();
        }
        let notes = step_notes(case, from, user, role, &step);
        self.out.push_back(Output::Persist { id, notes });
        let invited = match step.decode_unverified()?.action {
            Action::Invite { org } => Some(org),
            _ => None,
        };
        let others = (case.consultation.participants().into_iter())
            .filter(|org| *org != self.me && Some(*org) != invited);
        for to in others {
            self.out.push_back(Output::Send {
                id,
                to,
                step: step.clone(),
                conclusion: conclusion.clone().map(Box::new),
            });
        }
        if let Some(to) = invited {
            self.out.push_back(Output::Invite { id, to });
        }
        self.out
            .push_back(Output::Event(Event::Updated { id, status }));
        self.watch(now, id, directory);
        Ok(status)
    }

    /// A request `sender` sealed to this organization, in package `package`.
    pub fn handle_request(
        &mut self,
        now: Timestamp,
        sender: OrgId,
        package: PackageId,
        request: Signed<ConsultationRequest>,
        trust: &Trust,
        directory: &Directory,
    ) -> Result<Taken, DeskError> {
        let consultation = Consultation::open(&request)?;
        let body = &consultation.request;
        if body.requester != sender || body.consultant != self.me {
            return Err(WorkflowError::Outsider { actor: sender }.into());
        }
        let id = body.id;
        if self.cases.contains_key(&id) {
            return Ok(Taken::Duplicate);
        }
        let notes = vec![
            steps::receive_note(id, package),
            Note {
                user: None,
                role: None,
                action: journal::Action::Create(reference(body)),
            },
        ];
        self.cases.insert(
            id,
            Case {
                request,
                deadline: Self::deadline(&consultation.request, directory),
                consultation,
                waiting: Vec::new(),
                conclusion: None,
                escalated_to: None,
            },
        );
        self.out.push_back(Output::Persist { id, notes });
        self.out.push_back(Output::Event(Event::Updated {
            id,
            status: Status::Requested,
        }));
        self.release_early(now, id, trust, directory);
        self.watch(now, id, directory);
        Ok(Taken::Taken)
    }

    /// The steps held for a consultation that has just arrived are taken.
    fn release_early(
        &mut self,
        now: Timestamp,
        id: ConsultationId,
        trust: &Trust,
        directory: &Directory,
    ) {
        if let Some(held) = self.early.remove(&id) {
            self.held -= held.len();
            self.out.push_back(Output::Release(id));
            for early in held {
                let _ = self.handle_step(
                    now,
                    early.sender,
                    early.step,
                    early.conclusion,
                    trust,
                    directory,
                );
            }
        }
    }

    /// A step the other organization sent, with the conclusion when it concludes.
    pub fn handle_step(
        &mut self,
        now: Timestamp,
        sender: OrgId,
        step: Signed<Transition>,
        conclusion: Option<ConclusionFile>,
        trust: &Trust,
        directory: &Directory,
    ) -> Result<Taken, DeskError> {
        let taken = self.take_step(now, sender, step, conclusion, trust, directory);
        self.blame(sender, &taken);
        taken
    }

    /// Reports `sender` when what it sent was refused as forgery.
    fn blame<T>(&mut self, sender: OrgId, result: &Result<T, DeskError>) {
        if let Err(reason) = result
            && reason.is_forgery()
        {
            let forged = Event::Forged {
                by: sender,
                reason: reason.clone(),
            };
            self.out.push_back(Output::Event(forged));
        }
    }

    fn take_step(
        &mut self,
        now: Timestamp,
        sender: OrgId,
        step: Signed<Transition>,
        conclusion: Option<ConclusionFile>,
        trust: &Trust,
        directory: &Directory,
    ) -> Result<Taken, DeskError> {
        let t = step.decode_unverified()?;
        if t.actor != sender {
            return Err(WorkflowError::Outsider { actor: sender }.into());
        }
        // A conclusion file travels with the step that concludes with it,
        // signed by the organization that sends the step, for this case:
        // any other is refused, never kept to be shown as the case's.
        match (&t.action, &conclusion) {
            (Action::Conclude { conclusion: hash }, Some(file)) => {
                let (concluded, _) = file.verify_from(&sender, trust, directory, now)?;
                if file.conclusion.content_hash() != *hash
                    || concluded.consultation != t.consultation
                    || concluded.consultant_org != sender
                {
                    return Err(DeskError::ConclusionMismatch);
                }
            }
            (_, Some(_)) => return Err(DeskError::ConclusionMismatch),
            (_, None) => {}
        }
        let id = t.consultation;
        let Some(case) = self.cases.get_mut(&id) else {
            // The request may still be on its way (its attachments are
            // fetched before it is handed over): hold the step for it.
            step.verify_by(sender.checked_key())?;
            if self.held >= self.config.max_early_steps {
                return Err(DeskError::TooManyHeld);
            }
            let early = EarlyStep {
                sender,
                step,
                conclusion,
            };
            self.held += 1;
            self.early.entry(id).or_default().push(early.clone());
            self.out.push_back(Output::Hold(Box::new(early)));
            return Ok(Taken::Held);
        };
        let hash = step.content_hash();
        if case
            .consultation
            .history
            .iter()
            .chain(&case.waiting)
            .chain(self.aside.get(&id).into_iter().flatten())
            .any(|s| s.content_hash() == hash)
        {
            return Ok(Taken::Duplicate);
        }
        let mut notes = Vec::new();
        match race::settle(case, &step, &t)? {
            race::Race::Lost { undone, from } => {
                notes = race::undone_notes(id, &undone, t.actor);
                notes.extend(step_notes(case, from, &t.user, t.role, &step));
                // What followed the rival step may have come before it.
                case.waiting
                    .extend(self.aside.remove(&id).unwrap_or_default());
            }
            race::Race::None => match race::off_the_history(case, &t) {
                Some(reason) => {
                    self.out
                        .push_back(Output::Event(Event::StepRefused { id, reason }));
                    let aside = self.aside.entry(id).or_default();
                    if aside.len() == race::MAX_ASIDE {
                        aside.pop_front();
                    }
                    aside.push_back(step);
                }
                None => case.waiting.push(step),
            },
        }
        if conclusion.is_some() {
            case.conclusion = conclusion;
        }
        notes.extend(apply_waiting(case, &mut self.out));
        let status = case.consultation.status;
        self.out.push_back(Output::Persist { id, notes });
        self.out
            .push_back(Output::Event(Event::Updated { id, status }));
        self.watch(now, id, directory);
        Ok(Taken::Taken)
    }

    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let retry = self.retries.values().map(|(at, _)| *at).min();
        [self.timers.poll_timeout(), retry]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Timestamp, directory: &Directory) {
        let due: Vec<(ConsultationId, &'static str)> = self
            .retries
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, (_, reason))| (*id, *reason))
            .collect();
        for (id, reason) in due {
            self.retries.remove(&id);
            self.escalate(now, id, reason, directory);
        }
        self.timers.handle_timeout(now);
        while let Some(event) = self.timers.poll_event() {
            match event {
                TimerEvent::Deadline { id, state, due } => self
                    .out
                    .push_back(Output::Event(Event::Deadline { id, state, due })),
                TimerEvent::Escalate { id, why } => self.escalate(now, id, why.reason(), directory),
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Tells the timers what a consultation looks like now.
    fn watch(&mut self, now: Timestamp, id: ConsultationId, directory: &Directory) {
        let Some(case) = self.cases.get_mut(&id) else {
            self.timers.handle_remove(&id);
            return;
        };
        let c = &case.consultation;
        if case.deadline.is_none() {
            case.deadline = Self::deadline(&c.request, directory);
        }
        let facts = Facts {
            deadline: case.deadline,
            urgency: c.request.urgency,
            status: c.status,
            concluded: c.conclusion.is_some(),
            first_response: c.first_response,
            requesting: c.request.requester == self.me,
            forwarded: c
                .history
                .last()
                .and_then(|s| s.decode_unverified().ok())
                .is_some_and(|t| matches!(t.action, Action::Reject { forward: true, .. })),
            escalated: case.escalated_to.is_some(),
        };
        self.timers.handle_update(now, id, facts);
    }
}

fn reference(request: &ConsultationRequest) -> ConsultationRef {
    ConsultationRef {
        id: request.id.0,
        requester: request.requester,
        consultant: request.consultant,
        specialty: request.specialty,
        urgency: request.urgency,
    }
}

/// The other organization of a consultation, seen from `me`: for an
/// invited organization, the requester whose case it is.
pub fn counterpart(request: &ConsultationRequest, me: OrgId) -> OrgId {
    if request.requester == me {
        request.consultant
    } else {
        request.requester
    }
}
