//! Consultations inside the node: the protocol's workflow state machine fed
//! by sealed packages, persisted in sled, and journaled.
//!
//! Every step is applied locally first (so a step the protocol would refuse
//! never leaves the node), then sealed to the other organization, whose node
//! applies the same signed step with the same state machine. Steps that
//! overtake each other on the network wait until the one they follow arrives.

use super::{INTAKE_RETENTION, IntakeKey, Node, NodeError, NodeEvent, Target, random_bytes};
use crate::storage::store::{self, Batch, IntakeRecord, StoredConsultation};
use konsilium_protocol::admission::Offence;
use konsilium_protocol::cert::{OrgLevel, RegionCode};
use konsilium_protocol::conclusion::{Conclusion, ConclusionFile};
use konsilium_protocol::content::{CaseExtract, FileInfo, PackageBody};
use konsilium_protocol::deadline::Deadline;
use konsilium_protocol::desk::{
    self, Actor, Case, Desk, Event as DeskEvent, Output as DeskOutput, Taken,
};
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::journal::{self, Role};
use konsilium_protocol::seal::{BlobRef, PackageId, RoutingHeader};
use konsilium_protocol::signed::Signed;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::wire;
use konsilium_protocol::workflow::{
    self, Action, Consent, Consultation, ConsultationId, ConsultationRequest, Status, WorkflowError,
};
use std::collections::HashMap;
use std::time::Duration;

/// Sign a journal checkpoint after this many entries (and at shutdown).
const CHECKPOINT_EVERY: u64 = 100;
/// Workflow packages live as long as the longest legal deadline allows, with margin.
pub(super) const STEP_LIFETIME: Duration = Duration::from_secs(14 * 86_400);

/// What opening a consultation did.
#[derive(Debug)]
pub enum Opened {
    New(Signed<ConsultationRequest>),
    /// An intake key's identifier had already opened this one.
    Existing(ConsultationId),
}

/// What the attending physician submits.
#[derive(Debug, Clone)]
pub struct NewConsultation {
    pub target: Target,
    pub specialty: Specialty,
    pub min_level: OrgLevel,
    pub urgency: Urgency,
    pub region: Option<RegionCode>,
    pub consent: Consent,
    /// The attending physician, as the request names them.
    pub physician: String,
    /// The API user who entered the request, whom the journal names: the
    /// physician, or a HIS gateway entering requests for many.
    pub entered_by: String,
    pub extract: CaseExtract,
    pub escalated_from: Option<ConsultationId>,
}

/// One step this organization takes.
pub(super) struct LocalStep<'a> {
    pub(super) id: ConsultationId,
    pub(super) role: Role,
    pub(super) user: &'a str,
    pub(super) action: Action,
    pub(super) conclusion: Option<ConclusionText>,
}

/// The conclusion's text, as the consultant writes it.
#[derive(Debug, Clone)]
pub struct ConclusionText {
    pub authors: Vec<String>,
    pub diagnosis: String,
    pub recommendations: String,
    pub treatment_plan: String,
    pub further_studies: String,
    /// Sealed to the requester and named in the signed conclusion by content hash.
    pub attachments: Vec<super::Attachment>,
}

pub(super) fn routing(request: &ConsultationRequest, min_level: OrgLevel) -> RoutingHeader {
    RoutingHeader {
        specialty: request.specialty,
        min_level,
        urgency: request.urgency,
        region: None,
    }
}

impl Node {
    /// Appends to the journal on its own (a read, a login). An operation
    /// whose entry cannot be written must fail: the caller returns this
    /// error instead of the data or the acknowledgement, and the journal's
    /// head stays where the disk has it.
    pub(super) fn append_journal(
        &mut self,
        user: Option<String>,
        role: Option<Role>,
        action: journal::Action,
    ) -> Result<(), NodeError> {
        let before = self.write_journal(user, role, action)?;
        if let Err(e) = self.store.flush() {
            tracing::error!("journal: {e}");
            self.journal = before;
            return Err(NodeError::Journal(e.to_string()));
        }
        Ok(())
    }

    /// Journals a step that already happened and that nothing waits on:
    /// written now, durable at a flush off the event loop a moment later.
    pub(super) fn append_journal_soon(
        &mut self,
        user: Option<String>,
        role: Option<Role>,
        action: journal::Action,
    ) -> Result<(), NodeError> {
        self.write_journal(user, role, action)?;
        self.flush_soon.request();
        Ok(())
    }

    /// Writes the entry without flushing; returns the journal as it was
    /// before, for a caller whose flush then fails.
    fn write_journal(
        &mut self,
        user: Option<String>,
        role: Option<Role>,
        action: journal::Action,
    ) -> Result<journal::Journal, NodeError> {
        let mut batch = Batch::default();
        let before = self.journal.clone();
        self.note(&mut batch, user, role, action);
        if let Err(e) = self.store.write(batch) {
            tracing::error!("journal: {e}");
            self.journal = before;
            return Err(NodeError::Journal(e.to_string()));
        }
        Ok(before)
    }

    /// Adds a journal entry (and every hundredth a signed checkpoint) to
    /// the batch of the operation it records.
    fn note(
        &mut self,
        batch: &mut Batch,
        user: Option<String>,
        role: Option<Role>,
        action: journal::Action,
    ) {
        let entry = self.journal.append(self.now(), user, role, action);
        batch.put_journal(&entry);
        if entry.seq % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1 {
            let checkpoint = self.journal.checkpoint(&self.identity, self.now());
            batch.put_checkpoint(&checkpoint);
        }
    }

    pub(super) fn checkpoint_journal(&mut self) {
        let checkpoint = self.journal.checkpoint(&self.identity, self.now());
        if let Err(e) = self
            .store
            .put_checkpoint(&checkpoint)
            .and_then(|_| self.store.flush())
        {
            tracing::error!("journal checkpoint: {e}");
        }
    }

    /// The consultation `key`'s identifier opened, if it did so within the
    /// retention period; a conflict if it came with a different request.
    pub(super) fn find_intake(&self, key: &IntakeKey) -> Result<Option<ConsultationId>, NodeError> {
        let stored = self
            .store
            .intake(&store::intake_key(&self.me.cert.org, &key.identifier))?;
        let horizon = self.now().saturating_sub(INTAKE_RETENTION);
        match stored {
            Some(record) if record.at < horizon => Ok(None),
            Some(record) if record.fingerprint == key.fingerprint => Ok(Some(record.consultation)),
            Some(record) => Err(NodeError::IntakeConflict(record.consultation)),
            None => Ok(None),
        }
    }

    /// Forgets an identifier whose consultation could not be sent, if it
    /// still points at that consultation.
    pub(super) fn forget_intake(
        &self,
        identifier: &str,
        id: ConsultationId,
    ) -> Result<(), NodeError> {
        let key = store::intake_key(&self.me.cert.org, identifier);
        if self
            .store
            .intake(&key)?
            .is_some_and(|record| record.consultation == id)
        {
            self.store.remove_intake(&key)?;
            self.store.flush()?;
        }
        Ok(())
    }

    /// Signs and stores a new consultation. With an intake key, this is
    /// where idempotency is decided: the event loop runs one command at a
    /// time, so two concurrent retries cannot both miss the record, and
    /// the record is written in the same transaction as the consultation.
    pub(super) fn open_consultation(
        &mut self,
        new: &NewConsultation,
        files: Vec<FileInfo>,
        consultant: OrgId,
        intake: Option<&IntakeKey>,
    ) -> Result<Opened, NodeError> {
        if let Some(key) = intake
            && let Some(existing) = self.find_intake(key)?
        {
            return Ok(Opened::Existing(existing));
        }
        let request = ConsultationRequest {
            id: ConsultationId(random_bytes()),
            requester: self.me.cert.org,
            consultant,
            specialty: new.specialty,
            urgency: new.urgency,
            created: self.now(),
            consent: new.consent.clone(),
            physician: new.physician.clone(),
            escalated_from: new.escalated_from,
        };
        let mut batch = Batch::default();
        if let Some(key) = intake {
            let horizon = request.created.saturating_sub(INTAKE_RETENTION);
            self.store.prune_intake(horizon)?;
            batch.put_intake(
                &store::intake_key(&self.me.cert.org, &key.identifier),
                &IntakeRecord {
                    consultation: request.id,
                    fingerprint: key.fingerprint,
                    at: request.created,
                },
            );
        }
        if let Consent::EmergencyOverride { reason } = &request.consent {
            tracing::warn!(consultation = %request.id, %reason, "consent override (security log)");
        }
        let now = self.now();
        let signed =
            (self.desk).open(now, request, Some(&new.entered_by), self.sync.directory())?;
        let fresh = StoredConsultation::new(signed.clone(), new.extract.clone(), files);
        self.run_desk(batch, Some(fresh), None)?;
        Ok(Opened::New(signed))
    }

    /// The envelopes a step of this consultation goes in, one to each
    /// other participant (the other owner first), routed at the
    /// consultant's level. The other owner's (the requester's, for a
    /// guest) must be made; another participant this node cannot seal to
    /// now (its record gone, say) is left out here and tried again when
    /// the step is sent, so an invited organization never holds up the
    /// owners' consultation.
    pub(super) fn step_plans(
        &mut self,
        id: &ConsultationId,
    ) -> Result<Vec<super::Plan>, NodeError> {
        let (_, c) = self.load_consultation(id)?;
        let me = self.me.cert.org;
        let routing = self.routing_for(&c.request);
        let counterpart = desk::counterpart(&c.request, me);
        let mut plans =
            vec![self.plan(Target::Org(counterpart), routing.clone(), STEP_LIFETIME)?];
        let others = (c.participants().into_iter()).filter(|o| *o != me && *o != counterpart);
        for org in others {
            match self.plan(Target::Org(org), routing.clone(), STEP_LIFETIME) {
                Ok(plan) => plans.push(plan),
                Err(e) => tracing::warn!(consultation = %id, %org, "participant left out: {e}"),
            }
        }
        Ok(plans)
    }

    /// Takes one workflow step as this organization and sends it to the
    /// other participants, in `plans` when a conclusion's attachments were
    /// sealed into them (the first, the other owner's, is what the
    /// conclusion names).
    pub(super) fn act(
        &mut self,
        step: LocalStep<'_>,
        plans: Vec<super::Plan>,
    ) -> Result<Status, NodeError> {
        let LocalStep {
            id,
            role,
            user,
            action,
            conclusion,
        } = step;
        // Made before the step is taken, so that a recipient the directory
        // cannot seal to fails the step instead of losing it.
        let plans = match plans.is_empty() {
            true => self.step_plans(&id)?,
            false => plans,
        };
        let (action, file) = match (action, conclusion) {
            (Action::Conclude { .. }, Some(text)) => {
                let named = plans.first().map(|p| p.header.attachments.clone());
                let file = self.sign_conclusion(id, text, named.unwrap_or_default())?;
                let hash = file.conclusion.content_hash();
                (Action::Conclude { conclusion: hash }, Some(file))
            }
            (action, _) => (action, None),
        };
        let now = self.now();
        let status = self.desk.act(
            now,
            id,
            Actor { role, user },
            action,
            file,
            self.sync.directory(),
        )?;
        self.run_desk(Batch::default(), None, Some((id, plans)))?;
        Ok(status)
    }

    /// Signs the conclusion, naming the attachments already sealed into
    /// the other owner's envelope (the handle seals them off the event loop).
    fn sign_conclusion(
        &mut self,
        id: ConsultationId,
        text: ConclusionText,
        attachments: Vec<BlobRef>,
    ) -> Result<ConclusionFile, NodeError> {
        if !text.attachments.is_empty() {
            return Err(NodeError::Attachment(
                "a conclusion's attachments are sealed before the step is taken".into(),
            ));
        }
        let signed = Conclusion {
            consultation: id,
            consultant_org: self.me.cert.org,
            authors: text.authors,
            diagnosis: text.diagnosis,
            recommendations: text.recommendations,
            treatment_plan: text.treatment_plan,
            further_studies: text.further_studies,
            attachments,
            issued_at: self.now(),
        }
        .sign(&self.identity)?;
        Ok(ConclusionFile {
            conclusion: signed,
            chain: self.chain.clone(),
        })
    }

    /// How steps of a consultation are routed: to the consultant's level.
    pub(super) fn routing_for(&self, request: &ConsultationRequest) -> RoutingHeader {
        let min_level = self
            .directory()
            .get(&request.consultant)
            .map_or(OrgLevel::District, |e| e.level());
        routing(request, min_level)
    }

    /// Carries out what the desk decided. Case records, held steps and
    /// journal notes go into `batch` with whatever the caller put there,
    /// committed in one transaction; only then are steps sealed and sent,
    /// escalations carried out and events told. `fresh` is the record of a
    /// consultation this operation creates; `plan` the prepared envelope
    /// for the step this operation sends, one per recipient (with a
    /// conclusion's attachments).
    pub(super) fn run_desk(
        &mut self,
        batch: Batch,
        fresh: Option<StoredConsultation>,
        plan: Option<(ConsultationId, Vec<super::Plan>)>,
    ) -> Result<(), NodeError> {
        let later = self.commit_desk(batch, fresh)?;
        self.carry_out(later, plan);
        Ok(())
    }

    /// The first half of [`Node::run_desk`]: the one write, flushed.
    /// Returns what is left to carry out once it is on disk.
    fn commit_desk(
        &mut self,
        batch: Batch,
        fresh: Option<StoredConsultation>,
    ) -> Result<Vec<DeskOutput>, NodeError> {
        let before = self.journal.clone();
        let later = self.write_desk(batch, fresh)?;
        if let Err(e) = self.store.flush() {
            self.undo_desk(before, &later);
            return Err(e.into());
        }
        Ok(later)
    }

    /// The desk's write without its flush, for a caller that answers once
    /// a group commit made it durable.
    pub(super) fn write_desk(
        &mut self,
        mut batch: Batch,
        mut fresh: Option<StoredConsultation>,
    ) -> Result<Vec<DeskOutput>, NodeError> {
        let before = self.journal.clone();
        let mut staged: HashMap<ConsultationId, StoredConsultation> = HashMap::new();
        let mut later = Vec::new();
        while let Some(output) = self.desk.poll_output() {
            match output {
                DeskOutput::Persist { id, notes } => {
                    let stored = match staged.remove(&id) {
                        Some(s) => s,
                        None => match fresh.take_if(|f| request_id(f) == Some(id)) {
                            Some(f) => f,
                            None => self
                                .store
                                .consultation(&id)?
                                .ok_or(NodeError::UnknownConsultation(id))?,
                        },
                    };
                    let stored = self.with_case(stored, &id);
                    staged.insert(id, stored);
                    for n in notes {
                        self.note(&mut batch, n.user, n.role, n.action);
                    }
                }
                DeskOutput::Hold(early) => {
                    let id = early.step.decode_unverified()?.consultation;
                    batch.hold_early_step(&id, &early);
                }
                DeskOutput::Release(id) => {
                    for key in self.store.early_step_keys(&id)? {
                        batch.remove_early_step(key);
                    }
                }
                other => later.push(other),
            }
        }
        // Each stored case once more, its notes written: what follows the
        // write (the video schedule) sees the case as the disk has it.
        for (id, stored) in staged {
            batch.put_consultation(&id, &stored);
            if let Some(deadline) = self.desk.case(&id).and_then(|c| c.deadline) {
                batch.put_deadline(&id, &deadline);
            }
            later.push(DeskOutput::Persist {
                id,
                notes: Vec::new(),
            });
        }
        if let Err(e) = self.store.write(batch) {
            self.undo_desk(before, &later);
            return Err(e.into());
        }
        Ok(later)
    }

    /// Memory back to what the disk holds after a write or its flush
    /// failed, so a retry of the same operation is not taken for a
    /// duplicate: the journal as it was, and the cases the write stored.
    pub(super) fn undo_desk(&mut self, journal: journal::Journal, later: &[DeskOutput]) {
        self.journal = journal;
        for output in later {
            if let DeskOutput::Persist { id, .. } = output {
                self.reload_case(id);
            }
        }
    }

    /// The second half of [`Node::run_desk`]: sends, escalations, events.
    pub(super) fn carry_out(
        &mut self,
        later: Vec<DeskOutput>,
        plans: Option<(ConsultationId, Vec<super::Plan>)>,
    ) {
        let (planned, plans) = plans.unzip();
        let mut plans = plans.unwrap_or_default();
        for output in later {
            match output {
                DeskOutput::Send {
                    id,
                    to,
                    step,
                    conclusion,
                } => {
                    // Each recipient's envelope, if the operation prepared
                    // them; otherwise one is made for it here.
                    let prepared = match plans.iter().position(|p| p.header.recipient == to) {
                        Some(at) if planned == Some(id) => Some(plans.swap_remove(at)),
                        _ => None,
                    };
                    if let Err(e) = self.send_step(id, to, prepared, step, conclusion) {
                        tracing::error!(consultation = %id, "step not sent: {e}");
                    }
                }
                DeskOutput::Escalate { from, to, reason } => {
                    if let Err(e) = self.escalate(from, to, reason) {
                        tracing::warn!(consultation = %from, "escalation: {e}; retrying");
                        let now = self.now();
                        self.desk.retry_escalation(now, from, reason);
                    }
                }
                DeskOutput::Invite { id, to } => {
                    if let Err(e) = self.send_history(id, to) {
                        tracing::error!(consultation = %id, %to, "invitation not sent: {e}");
                    }
                }
                DeskOutput::Event(event) => self.on_desk_event(event),
                DeskOutput::Persist { id, .. } => self.schedule_video(&id),
                DeskOutput::Hold(_) | DeskOutput::Release(_) => {}
            }
        }
    }

    /// The stored record with the desk's view of the case written into it.
    fn with_case(&self, mut stored: StoredConsultation, id: &ConsultationId) -> StoredConsultation {
        if let Some(case) = self.desk.case(id) {
            stored.history = case.consultation.history.clone();
            stored.early = case.waiting.clone();
            stored.conclusion = case.conclusion.clone();
            stored.escalated_to = case.escalated_to;
        }
        stored
    }

    /// The desk's case as storage has it (after a failed write), or none.
    fn reload_case(&mut self, id: &ConsultationId) {
        let now = self.now();
        match self.store.consultation(id) {
            Ok(Some(stored)) => match case_of(&stored, self.store.deadline(id)) {
                Ok(case) => self.desk.restore(now, case, self.sync.directory()),
                Err(e) => tracing::error!(consultation = %id, "cannot replay: {e}"),
            },
            _ => self.desk.forget(id),
        }
    }

    /// Seals a step to the other organization and queues it.
    fn send_step(
        &mut self,
        id: ConsultationId,
        to: OrgId,
        plan: Option<super::Plan>,
        step: Signed<workflow::Transition>,
        conclusion: Option<Box<ConclusionFile>>,
    ) -> Result<(), NodeError> {
        let t = step.decode_unverified()?;
        let plan = match plan {
            Some(p) => p,
            None => {
                let request = self
                    .desk
                    .case(&id)
                    .ok_or(NodeError::UnknownConsultation(id))?
                    .consultation
                    .request
                    .clone();
                self.plan(Target::Org(to), self.routing_for(&request), STEP_LIFETIME)?
            }
        };
        let body = wire::encode(&PackageBody::Step { step, conclusion })
            .map_err(|e| NodeError::Network(e.to_string()))?;
        let sent = self.commit(plan, &body)?;
        self.append_journal(
            Some(t.user),
            Some(t.role),
            journal::Action::Send {
                consultation: id.0,
                package: sent.id,
            },
        )
    }

    fn on_desk_event(&mut self, event: DeskEvent) {
        match event {
            DeskEvent::Updated { id, status } => {
                self.emit(NodeEvent::ConsultationUpdated { id, status })
            }
            DeskEvent::Deadline { id, state, due } => {
                tracing::warn!(consultation = %id, ?state, %due, "deadline");
                self.emit(NodeEvent::Deadline { id, state, due });
            }
            DeskEvent::Escalated { from, to } => match to {
                Some((to, consultant)) => {
                    tracing::info!(%from, %to, %consultant, "escalated");
                    self.emit(NodeEvent::Escalated {
                        from,
                        to,
                        consultant,
                    });
                }
                None => tracing::warn!(%from, "escalation: no one left to ask"),
            },
            DeskEvent::StepRefused { id, reason } => {
                tracing::warn!(consultation = %id, "step refused: {reason}")
            }
            DeskEvent::Forged { by, reason } => {
                tracing::warn!(%by, "forged workflow step: {reason}");
                let now = self.now();
                (self.admission).handle_offence(now, by.to_peer_id(), Offence::ForgedStep);
                self.drive_admission();
            }
        }
    }

    /// The legal deadline, in the consulting organization's calendar, as
    /// fixed for the consultation when it was opened or received.
    pub(super) fn deadline(&self, request: &ConsultationRequest) -> Option<Deadline> {
        (self.desk.case(&request.id).and_then(|c| c.deadline))
            .or_else(|| Desk::deadline(request, self.directory()))
    }

    /// A package for us was accepted: its workflow goes to the desk, and
    /// what that changes is written in `batch` with the package itself,
    /// not flushed. Returns what is left to carry out once the caller's
    /// flush made it durable.
    pub(super) fn on_body(
        &mut self,
        mut batch: Batch,
        sender: OrgId,
        package: PackageId,
        body: &[u8],
    ) -> Result<Vec<DeskOutput>, NodeError> {
        let now = self.now();
        let mut fresh = None;
        let taken = match wire::decode::<PackageBody>(body) {
            Ok(PackageBody::Consultation {
                request,
                extract,
                files,
            }) => {
                fresh = Some(StoredConsultation {
                    received_in: Some(package),
                    ..StoredConsultation::new(request.clone(), extract, files)
                });
                self.desk.handle_request(
                    now,
                    sender,
                    package,
                    request,
                    &self.trust,
                    self.sync.directory(),
                )
            }
            Ok(PackageBody::Step { step, conclusion }) => {
                let concluded = step
                    .decode_unverified()
                    .ok()
                    .filter(|_| conclusion.is_some())
                    .map(|t| t.consultation);
                let taken = self.desk.handle_step(
                    now,
                    sender,
                    step,
                    conclusion.map(|c| *c),
                    &self.trust,
                    self.sync.directory(),
                );
                // Its attachments are the conclusion's files, as sealed to us.
                if let (Ok(_), Some(id)) = (&taken, concluded) {
                    batch.put_conclusion_package(&id, &package);
                }
                taken
            }
            Ok(PackageBody::History(history)) => {
                return self.on_history(batch, sender, package, *history);
            }
            Ok(PackageBody::Opaque(_) | PackageBody::Probe { .. }) | Err(_) => Ok(Taken::Taken),
        };
        match taken {
            Ok(Taken::Held) => tracing::info!(%package, "step held until its request arrives"),
            Ok(_) => {}
            Err(e) => tracing::warn!(%sender, %package, "workflow message refused: {e}"),
        }
        self.write_desk(batch, fresh)
    }
}

/// A stored consultation as the desk holds it: its steps replayed, each
/// signature checked once, at start or after a failed write; with the
/// deadline stored for it (one that cannot be read is fixed anew, from
/// the directory, as for a consultation stored before deadlines were).
pub(super) fn case_of(
    stored: &StoredConsultation,
    deadline: Result<Option<Deadline>, crate::storage::store::StoreError>,
) -> Result<Case, WorkflowError> {
    let deadline = deadline.unwrap_or_else(|e| {
        tracing::warn!("a stored deadline does not read, fixed anew: {e}");
        None
    });
    let mut consultation = Consultation::open(&stored.request)?;
    for step in &stored.history {
        consultation.apply(step)?;
    }
    Ok(Case {
        request: stored.request.clone(),
        consultation,
        waiting: stored.early.clone(),
        conclusion: stored.conclusion.clone(),
        escalated_to: stored.escalated_to,
        deadline,
    })
}

pub(super) fn request_id(stored: &StoredConsultation) -> Option<ConsultationId> {
    stored.request.decode_unverified().ok().map(|r| r.id)
}
