//! The consultation workflow, from request to acknowledged conclusion.
//!
//! States follow FHIR R4 `Task.status`. Every step is a transition signed by
//! the acting organization, naming the acting person's role, and chained to
//! the previous step by hash. Both organizations apply the same transitions
//! with this same state machine, so for the same history they reach the same
//! state; a step that the role may not take, that does not fit the current
//! state, or that does not follow the last accepted step is refused.

use crate::identity::{IdentityKey, OrgId};
use crate::journal::Role;
use crate::signed::{Signable, Signed, SignedError};
use crate::specialty::Specialty;
use crate::time::Timestamp;
use crate::urgency::Urgency;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How many organizations may be invited into one consilium: every step
/// is sealed to each participant and every site links to every other, so
/// the count bounds both.
pub const MAX_GUESTS: usize = 6;

/// A consultation's id, drawn at random by the requesting organization.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConsultationId(pub [u8; 16]);

impl fmt::Display for ConsultationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::str::FromStr for ConsultationId {
    type Err = crate::limits::FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || crate::limits::FieldError::Invalid {
            field: "consultation id",
            reason: format!("{s:?} is not 32 hexadecimal digits"),
        };
        let mut id = [0u8; 16];
        hex::decode_to_slice(s, &mut id).map_err(|_| bad())?;
        Ok(Self(id))
    }
}

impl fmt::Debug for ConsultationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConsultationId({self})")
    }
}

/// FHIR R4 `Task.status`, restricted to the states a consultation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
// The HTTP API shows a status as its FHIR code (`fhir_code`), not as serde spells it.
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(rename_all = "kebab-case")
)]
pub enum Status {
    Requested,
    Received,
    Accepted,
    Rejected,
    InProgress,
    OnHold,
    Completed,
    Cancelled,
    Failed,
}

impl Status {
    /// The FHIR code, as it appears in `Task.status`.
    pub fn fhir_code(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Received => "received",
            Status::Accepted => "accepted",
            Status::Rejected => "rejected",
            Status::InProgress => "in-progress",
            Status::OnHold => "on-hold",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
        }
    }

    /// Every state, in workflow order.
    pub const ALL: [Status; 9] = [
        Status::Requested,
        Status::Received,
        Status::Accepted,
        Status::Rejected,
        Status::InProgress,
        Status::OnHold,
        Status::Completed,
        Status::Cancelled,
        Status::Failed,
    ];

    pub fn from_fhir_code(code: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.fhir_code() == code)
    }

    /// No step leaves these states (acknowledging a conclusion changes nothing but the flag).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Rejected | Status::Completed | Status::Cancelled | Status::Failed
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.fhir_code())
    }
}

/// How the patient's consent was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsentMethod {
    Written,
    Electronic,
    /// Oral, witnessed: the witness is named.
    Oral {
        witness: String,
    },
}

/// The patient's informed consent to the consultation, or the emergency
/// override that replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consent {
    Given {
        /// The patient, or their legal representative.
        by: String,
        at: Timestamp,
        method: ConsentMethod,
        /// Hash of a scanned form, when there is one.
        document: Option<[u8; 32]>,
    },
    /// Only for emergencies, when consent cannot be obtained; the reason is
    /// kept and written to the security log.
    EmergencyOverride { reason: String },
}

/// The request that opens a consultation, signed by the requesting organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsultationRequest {
    pub id: ConsultationId,
    pub requester: OrgId,
    pub consultant: OrgId,
    pub specialty: Specialty,
    pub urgency: Urgency,
    pub created: Timestamp,
    pub consent: Consent,
    /// The attending physician who asks.
    pub physician: String,
    /// When this request continues one declined or unanswered elsewhere.
    pub escalated_from: Option<ConsultationId>,
}

impl Signable for ConsultationRequest {
    const DOMAIN: &'static [u8] = b"konsilium/consultation-request/v1\0";
}

/// A time proposed for a video consilium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Slot {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// The video consilium's scheduling, alongside the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Appointment {
    None,
    /// Proposed by the consulting side; the consultation waits for the requester.
    Proposed(Vec<Slot>),
    Confirmed(Slot),
    Cancelled,
}

/// What a step does.
///
/// Its kind ([`ActionKind`]) is the one name of each action everywhere: the
/// journal, the operator views, the HTTP API (snake_case) and the FHIR
/// codes (the same words, hyphenated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ActionKind),
    derive(
        Hash,
        PartialOrd,
        Ord,
        strum::EnumString,
        strum::IntoStaticStr,
        strum::EnumIter,
        strum::Display
    ),
    strum(serialize_all = "snake_case")
)]
#[cfg_attr(
    feature = "openapi",
    strum_discriminants(
        derive(utoipa::ToSchema),
        schema(
            rename_all = "snake_case",
            description = "What a step does, by its one name"
        )
    )
)]
pub enum Action {
    /// The consulting coordinator registered the request.
    Receive,
    Accept,
    /// The coordinator passes the request to a consultant of the right profile.
    Assign {
        consultant: String,
    },
    /// Declined; with `forward`, the requester should try the next candidate.
    Reject {
        reason: String,
        forward: bool,
    },
    Start,
    /// The consultant needs more examinations.
    AskMore {
        questions: String,
    },
    /// The requester answers with more materials (sent as a package).
    Supply {
        note: String,
    },
    /// Propose (or re-propose, to reschedule) video consilium times.
    ProposeSlots {
        slots: Vec<Slot>,
    },
    ConfirmSlot {
        slot: Slot,
    },
    CancelAppointment {
        reason: String,
    },
    /// An oral conclusion or other note; for an emergency it is a first response.
    Note {
        text: String,
    },
    /// The signed conclusion, by the hash of its signed bytes.
    Conclude {
        conclusion: [u8; 32],
    },
    Acknowledge,
    Cancel {
        reason: String,
    },
    /// Deadline missed with no one left to escalate to.
    Fail {
        reason: String,
    },
    /// The consulting side asks a further organization into the consilium
    /// (a federal center's specialist joining a regional consultation): it
    /// receives the case and every step from then on, joins the video
    /// session, and may add its opinion as notes.
    Invite {
        org: OrgId,
    },
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        ActionKind::from(self)
    }

    /// The action's name: `ask_more`, `propose_slots`, `conclude`, ...
    pub fn name(&self) -> &'static str {
        self.kind().into()
    }
}

impl ActionKind {
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Whether step `a` stands over `b`, two steps signed at the same place in
/// a consultation's history by two organizations that had not seen each
/// other's (a cancel crossing an accept): every participant decides
/// alike, and the step that does not stand is undone where it was taken.
/// A conclusion stands over anything, a signed opinion never being undone
/// by a race; then a cancellation, the requester having withdrawn; then
/// the step whose signed bytes hash higher, which every side computes
/// the same.
pub(crate) fn outranks(a: &Signed<Transition>, b: &Signed<Transition>) -> bool {
    fn rank(step: &Signed<Transition>) -> (u8, [u8; 32]) {
        let weight = match step.decode_unverified().map(|t| t.action) {
            Ok(Action::Conclude { .. }) => 2,
            Ok(Action::Cancel { .. }) => 1,
            _ => 0,
        };
        (weight, step.content_hash())
    }
    rank(a) > rank(b)
}

/// One step, signed by the acting organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub consultation: ConsultationId,
    /// 1 for the first step after the request.
    pub seq: u32,
    /// Hash of the previous step (or of the request, for the first).
    pub prev: [u8; 32],
    pub actor: OrgId,
    pub role: Role,
    /// The person who acted, for the journal.
    pub user: String,
    pub at: Timestamp,
    pub action: Action,
}

impl Signable for Transition {
    const DOMAIN: &'static [u8] = b"konsilium/consultation-transition/v1\0";
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error(transparent)]
    Signed(#[from] SignedError),
    #[error("a request without consent can only go out as an emergency with an override reason")]
    ConsentRequired,
    #[error("the step belongs to consultation {got}, not {expected}")]
    WrongConsultation {
        expected: ConsultationId,
        got: ConsultationId,
    },
    #[error("step {got} arrived out of order: step {expected} comes next")]
    OutOfOrder { expected: u32, got: u32 },
    #[error("step {seq} does not follow the last accepted step (its previous-step hash differs)")]
    NotChained { seq: u32 },
    #[error("{actor} takes no part in this consultation")]
    Outsider { actor: OrgId },
    #[error("a {role} of the {side} organization may not {action}")]
    NotPermitted {
        role: Role,
        side: Side,
        action: &'static str,
    },
    #[error("cannot {action} a consultation that is {status}")]
    WrongState {
        action: &'static str,
        status: Status,
    },
    #[error("cannot invite: {why}")]
    Invite { why: &'static str },
    #[error("cannot {action}: {why}")]
    Appointment {
        action: &'static str,
        why: &'static str,
    },
}

/// Which organization acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(rename_all = "lowercase")
)]
pub enum Side {
    Requesting,
    Consulting,
    /// An organization the consulting side invited into the consilium.
    Invited,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Requesting => "requesting",
            Side::Consulting => "consulting",
            Side::Invited => "invited",
        })
    }
}

/// Who may take a step: the documents' division of labour. An invited
/// organization gives its opinion (a consultant's note); the request, the
/// schedule and the conclusion stay with the two organizations that own them.
fn permitted(action: &Action, side: Side, role: Role) -> bool {
    use Role::*;
    use Side::*;
    if side == Invited {
        return matches!(action, Action::Note { .. }) && role == Consultant;
    }
    match action {
        // Registering a request is the coordinator's job (it gives the request its place in the queue).
        Action::Receive | Action::Assign { .. } => side == Consulting && role == Coordinator,
        Action::Accept | Action::Reject { .. } => {
            side == Consulting && matches!(role, Coordinator | Consultant)
        }
        Action::Start | Action::Conclude { .. } | Action::Note { .. } => {
            side == Consulting && role == Consultant
        }
        Action::AskMore { .. } => side == Consulting && matches!(role, Coordinator | Consultant),
        Action::Supply { .. } | Action::Cancel { .. } => {
            side == Requesting && matches!(role, Physician | Coordinator)
        }
        // Either side may propose (or re-propose, to reschedule) times; the
        // other side confirms one.
        Action::ProposeSlots { .. } | Action::ConfirmSlot { .. } => match side {
            Consulting => matches!(role, Coordinator | Consultant),
            Requesting => matches!(role, Physician | Coordinator),
            Invited => false,
        },
        Action::Acknowledge => side == Requesting && role == Physician,
        Action::CancelAppointment { .. } => matches!(role, Physician | Coordinator | Consultant),
        Action::Fail { .. } => side == Requesting && matches!(role, Operator | Coordinator),
        Action::Invite { .. } => side == Consulting && matches!(role, Coordinator | Consultant),
    }
}

/// One consultation as both organizations track it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consultation {
    pub request: ConsultationRequest,
    pub status: Status,
    pub appointment: Appointment,
    /// The accepted signed steps, in order: the history both sides share.
    pub history: Vec<Signed<Transition>>,
    pub conclusion: Option<[u8; 32]>,
    pub acknowledged: bool,
    /// The consultant the coordinator passed the request to.
    pub assigned: Option<String>,
    /// Which side made the current video consilium proposal.
    pub proposed_by: Option<Side>,
    /// When the consulting side first answered (accepted, noted or concluded).
    pub first_response: Option<Timestamp>,
    /// The organizations invited into the consilium, in the order invited.
    pub guests: Vec<OrgId>,
    head: [u8; 32],
}

impl Consultation {
    /// Opens a consultation from its signed request.
    pub fn open(request: &Signed<ConsultationRequest>) -> Result<Self, WorkflowError> {
        let body = request.decode_unverified()?;
        request.verify_by(body.requester.checked_key())?;
        match &body.consent {
            Consent::EmergencyOverride { reason }
                if body.urgency != Urgency::Emergency || reason.trim().is_empty() =>
            {
                return Err(WorkflowError::ConsentRequired);
            }
            _ => {}
        }
        Ok(Self {
            request: body,
            status: Status::Requested,
            appointment: Appointment::None,
            history: Vec::new(),
            conclusion: None,
            acknowledged: false,
            assigned: None,
            proposed_by: None,
            first_response: None,
            guests: Vec::new(),
            head: request.content_hash(),
        })
    }

    pub fn id(&self) -> ConsultationId {
        self.request.id
    }

    /// Every organization taking part: requester, consultant, then the
    /// invited ones. Each step goes to all of them.
    pub fn participants(&self) -> Vec<OrgId> {
        let owners = [self.request.requester, self.request.consultant];
        owners
            .into_iter()
            .chain(self.guests.iter().copied())
            .collect()
    }

    /// How `org` takes part, if it does.
    pub fn side_of(&self, org: OrgId) -> Option<Side> {
        if org == self.request.requester {
            Some(Side::Requesting)
        } else if org == self.request.consultant {
            Some(Side::Consulting)
        } else if self.guests.contains(&org) {
            Some(Side::Invited)
        } else {
            None
        }
    }

    fn next_seq(&self) -> u32 {
        self.history.len() as u32 + 1
    }

    /// Signs the next step as `key`'s organization. The step is checked by
    /// `apply` like any other; this only fills in the chaining.
    pub fn step(
        &self,
        key: &IdentityKey,
        role: Role,
        user: &str,
        at: Timestamp,
        action: Action,
    ) -> Signed<Transition> {
        Signed::sign(key, &self.transition(key, role, user, at, action))
    }

    fn transition(
        &self,
        key: &IdentityKey,
        role: Role,
        user: &str,
        at: Timestamp,
        action: Action,
    ) -> Transition {
        Transition {
            consultation: self.id(),
            seq: self.next_seq(),
            prev: self.head,
            actor: key.org_id(),
            role,
            user: user.to_owned(),
            at,
            action,
        }
    }

    /// Takes the next step as `key`'s organization: signed and applied,
    /// with every check of [`Consultation::apply`] but the signature's,
    /// made here by the key of the actor the step names: checking it cost
    /// one verification per step an organization took, which no other
    /// party needed. On error nothing changes and nothing is signed.
    pub fn take(
        &mut self,
        key: &IdentityKey,
        role: Role,
        user: &str,
        at: Timestamp,
        action: Action,
    ) -> Result<(Status, Signed<Transition>), WorkflowError> {
        let t = self.transition(key, role, user, at, action);
        let side = self.admit(&t)?;
        let (status, appointment) = self.permit(&t, side)?;
        let signed = Signed::sign(key, &t);
        self.commit(&signed, t, side, status, appointment);
        Ok((status, signed))
    }

    /// Applies one signed step; on error nothing changes.
    pub fn apply(&mut self, signed: &Signed<Transition>) -> Result<Status, WorkflowError> {
        let t = signed.decode_unverified()?;
        let side = self.admit(&t)?;
        signed.verify_by(t.actor.checked_key())?;
        let (status, appointment) = self.permit(&t, side)?;
        self.commit(signed, t, side, status, appointment);
        Ok(status)
    }

    /// Whether `t` belongs here, next in the history, from a participant:
    /// how its actor takes part.
    fn admit(&self, t: &Transition) -> Result<Side, WorkflowError> {
        if t.consultation != self.id() {
            return Err(WorkflowError::WrongConsultation {
                expected: self.id(),
                got: t.consultation,
            });
        }
        self.follows(t)?;
        (self.side_of(t.actor)).ok_or(WorkflowError::Outsider { actor: t.actor })
    }

    /// Whether `side` may take `t`'s action now: the status and
    /// appointment it leads to.
    fn permit(&self, t: &Transition, side: Side) -> Result<(Status, Appointment), WorkflowError> {
        let action = t.action.name();
        if !permitted(&t.action, side, t.role) {
            return Err(WorkflowError::NotPermitted {
                role: t.role,
                side,
                action,
            });
        }
        self.next(&t.action, side)
    }

    /// Records a step every check passed.
    fn commit(
        &mut self,
        signed: &Signed<Transition>,
        t: Transition,
        side: Side,
        status: Status,
        appointment: Appointment,
    ) {
        // An invited organization's opinion is not the consultant's answer.
        if matches!(
            t.action,
            Action::Accept | Action::Note { .. } | Action::Conclude { .. }
        ) && side == Side::Consulting
            && self.first_response.is_none()
        {
            self.first_response = Some(t.at);
        }
        match t.action {
            Action::Conclude { conclusion } => self.conclusion = Some(conclusion),
            Action::Assign { consultant } => self.assigned = Some(consultant),
            Action::ProposeSlots { .. } => self.proposed_by = Some(side),
            Action::Acknowledge => self.acknowledged = true,
            Action::Invite { org } => self.guests.push(org),
            _ => {}
        }
        self.status = status;
        self.appointment = appointment;
        self.head = signed.content_hash();
        self.history.push(signed.clone());
    }

    /// Whether `t` takes the next place in the history: the next number,
    /// chained to the last step.
    pub(crate) fn follows(&self, t: &Transition) -> Result<(), WorkflowError> {
        if t.seq != self.next_seq() {
            return Err(WorkflowError::OutOfOrder {
                expected: self.next_seq(),
                got: t.seq,
            });
        }
        if t.prev != self.head {
            return Err(WorkflowError::NotChained { seq: t.seq });
        }
        Ok(())
    }

    /// The consultation as it stood before step `seq` (1 for the first):
    /// its request and the steps before that one, applied again.
    pub(crate) fn before(
        &self,
        request: &Signed<ConsultationRequest>,
        seq: u32,
    ) -> Result<Consultation, WorkflowError> {
        let mut c = Consultation::open(request)?;
        let kept = (seq as usize).saturating_sub(1).min(self.history.len());
        for step in &self.history[..kept] {
            c.apply(step)?;
        }
        Ok(c)
    }

    /// The state after `action`, or why it cannot happen now.
    fn next(&self, action: &Action, side: Side) -> Result<(Status, Appointment), WorkflowError> {
        use Status::*;
        let name = action.name();
        let wrong = || WorkflowError::WrongState {
            action: name,
            status: self.status,
        };
        let keep = self.appointment.clone();
        let s = self.status;
        let open = !s.is_final();
        let working = matches!(s, Accepted | InProgress | OnHold);
        Ok(match action {
            Action::Receive if s == Requested => (Received, keep),
            Action::Accept if matches!(s, Requested | Received) => (Accepted, keep),
            Action::Assign { consultant }
                if matches!(s, Received | Accepted | InProgress | OnHold) =>
            {
                if consultant.trim().is_empty() {
                    return Err(WorkflowError::WrongState {
                        action: name,
                        status: s,
                    });
                }
                (s, keep)
            }
            Action::Reject { .. } if matches!(s, Requested | Received | Accepted) => {
                (Rejected, keep)
            }
            Action::Start if s == Accepted => (InProgress, keep),
            Action::AskMore { .. } if matches!(s, Accepted | InProgress) => (OnHold, keep),
            Action::Supply { .. } if s == OnHold => (InProgress, keep),
            Action::ProposeSlots { slots } if working => {
                if slots.is_empty() || slots.iter().any(|sl| sl.end <= sl.start) {
                    return Err(WorkflowError::Appointment {
                        action: name,
                        why: "propose at least one slot that ends after it starts",
                    });
                }
                (s, Appointment::Proposed(slots.clone()))
            }
            Action::ConfirmSlot { .. } if working && self.proposed_by == Some(side) => {
                return Err(WorkflowError::Appointment {
                    action: name,
                    why: "the other side confirms a proposal",
                });
            }
            Action::ConfirmSlot { slot } if working => match &self.appointment {
                Appointment::Proposed(slots) if slots.contains(slot) => {
                    (s, Appointment::Confirmed(*slot))
                }
                Appointment::Proposed(_) => {
                    return Err(WorkflowError::Appointment {
                        action: name,
                        why: "the slot was not among those proposed",
                    });
                }
                _ => {
                    return Err(WorkflowError::Appointment {
                        action: name,
                        why: "no slots are proposed",
                    });
                }
            },
            Action::CancelAppointment { .. } if working => match self.appointment {
                Appointment::Proposed(_) | Appointment::Confirmed(_) => (s, Appointment::Cancelled),
                _ => {
                    return Err(WorkflowError::Appointment {
                        action: name,
                        why: "there is no appointment",
                    });
                }
            },
            Action::Note { .. } if open => (s, keep),
            Action::Conclude { .. } if matches!(s, Accepted | InProgress) => {
                if matches!(self.appointment, Appointment::Proposed(_)) {
                    return Err(WorkflowError::Appointment {
                        action: name,
                        why: "a proposed video consilium waits for the requester's confirmation; confirm or cancel it first",
                    });
                }
                (Completed, keep)
            }
            Action::Acknowledge if s == Completed && !self.acknowledged => (Completed, keep),
            Action::Cancel { .. } if open => (Cancelled, keep),
            Action::Fail { .. } if open => (Failed, keep),
            Action::Invite { org } if working => {
                if self.side_of(*org).is_some() {
                    return Err(WorkflowError::Invite {
                        why: "the organization already takes part",
                    });
                }
                if self.guests.len() >= MAX_GUESTS {
                    return Err(WorkflowError::Invite {
                        why: "the consilium has as many invited organizations as it may",
                    });
                }
                (s, keep)
            }
            _ => return Err(wrong()),
        })
    }
}

/// Signs a new request, refusing one without consent unless it is an
/// emergency with an override reason.
pub fn request(
    key: &IdentityKey,
    request: ConsultationRequest,
) -> Result<Signed<ConsultationRequest>, WorkflowError> {
    if let Consent::EmergencyOverride { reason } = &request.consent
        && (request.urgency != Urgency::Emergency || reason.trim().is_empty())
    {
        return Err(WorkflowError::ConsentRequired);
    }
    Ok(Signed::sign(key, &request))
}

#[cfg(test)]
mod tests;
