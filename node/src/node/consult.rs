//! Consultations inside the node: the protocol's workflow state machine fed
//! by sealed packages, persisted in sled, and journaled.
//!
//! Every step is applied locally first (so a step the protocol would refuse
//! never leaves the node), then sealed to the other organization, whose node
//! applies the same signed step with the same state machine. Steps that
//! overtake each other on the network wait until the one they follow arrives.

use super::{INTAKE_RETENTION, IntakeKey, Node, NodeError, NodeEvent, Target, random_bytes};
use crate::storage::store::{self, EarlyStep, IntakeRecord, StoredConsultation};
use konsilium_protocol::cert::{OrgLevel, RegionCode};
use konsilium_protocol::conclusion::{Conclusion, ConclusionFile};
use konsilium_protocol::content::{CaseExtract, FileInfo, PackageBody};
use konsilium_protocol::deadline::Deadline;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::journal::{self, ConsultationRef, Role};
use konsilium_protocol::seal::{BlobRef, PackageId, RoutingHeader};
use konsilium_protocol::signed::Signed;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::wire;
use konsilium_protocol::workflow::{
    self, Action, Consent, Consultation, ConsultationId, ConsultationRequest, Side, Status,
    WorkflowError,
};
use std::time::Duration;

/// Sign a journal checkpoint after this many entries (and at shutdown).
const CHECKPOINT_EVERY: u64 = 100;
/// Workflow packages live as long as the longest legal deadline allows, with margin.
/// Steps held for consultations that have not arrived yet, across all peers.
const MAX_EARLY_STEPS: usize = 4096;
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
    pub physician: String,
    pub extract: CaseExtract,
    pub escalated_from: Option<ConsultationId>,
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

/// One consultation as this node sees it.
#[derive(Debug, Clone)]
pub struct ConsultationView {
    pub consultation: Consultation,
    pub extract: CaseExtract,
    pub conclusion: Option<ConclusionFile>,
    pub side: Side,
    pub counterpart: OrgId,
    /// From the consulting organization's calendar and deadlines, when it is in the directory.
    pub deadline: Option<Deadline>,
    /// The case extract's files: what each is, and its sealed blob.
    pub files: Vec<(FileInfo, BlobRef)>,
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
    pub(super) fn load_consultation(
        &self,
        id: &ConsultationId,
    ) -> Result<(StoredConsultation, Consultation), NodeError> {
        let stored = self
            .store
            .consultation(id)?
            .ok_or(NodeError::UnknownConsultation(*id))?;
        if let Some((steps, c)) = self.replayed.borrow().get(id)
            && *steps == stored.history.len()
        {
            return Ok((stored, c.clone()));
        }
        let mut c = Consultation::open(&stored.request)?;
        for step in &stored.history {
            c.apply(step)?;
        }
        self.replayed
            .borrow_mut()
            .insert(*id, (stored.history.len(), c.clone()));
        Ok((stored, c))
    }

    /// Appends to the journal. An operation whose entry cannot be written
    /// must fail: the caller returns this error instead of the data or the
    /// acknowledgement, and the journal's head stays where the disk has it.
    pub(super) fn append_journal(
        &mut self,
        user: Option<String>,
        role: Option<Role>,
        action: journal::Action,
    ) -> Result<(), NodeError> {
        let before = self.journal.clone();
        let entry = self.journal.append(self.now(), user, role, action);
        let mut result = self.store.put_journal(&entry);
        if entry.seq % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1 {
            let checkpoint = self.journal.checkpoint(&self.identity, self.now());
            result = result.and_then(|_| self.store.put_checkpoint(&checkpoint));
        }
        if let Err(e) = result {
            tracing::error!("journal: {e}");
            self.journal = before;
            return Err(NodeError::Journal(e.to_string()));
        }
        Ok(())
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

    fn journal_ref(request: &ConsultationRequest) -> ConsultationRef {
        ConsultationRef {
            id: request.id.0,
            requester: request.requester,
            consultant: request.consultant,
            specialty: request.specialty,
            urgency: request.urgency,
        }
    }

    /// Signs and records a new consultation for `consultant`.
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
    /// the record is stored and flushed together with the consultation.
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
        let signed = workflow::request(&self.identity, request.clone())?;
        let stored = StoredConsultation::new(signed.clone(), new.extract.clone(), files);
        match intake {
            Some(key) => {
                let horizon = request.created.saturating_sub(INTAKE_RETENTION);
                self.store.prune_intake(horizon)?;
                self.store.put_consultation_with_intake(
                    &request.id,
                    &stored,
                    &store::intake_key(&self.me.cert.org, &key.identifier),
                    &IntakeRecord {
                        consultation: request.id,
                        fingerprint: key.fingerprint,
                        at: request.created,
                    },
                )?;
            }
            None => self.store.put_consultation(&request.id, &stored)?,
        }
        let physician = Some(new.physician.clone());
        self.append_journal(
            physician.clone(),
            Some(Role::Physician),
            journal::Action::Create(Self::journal_ref(&request)),
        )?;
        if let Consent::EmergencyOverride { reason } = &request.consent {
            tracing::warn!(consultation = %request.id, %reason, "consent override (security log)");
            self.append_journal(
                physician,
                Some(Role::Physician),
                journal::Action::ConsentOverride {
                    consultation: request.id.0,
                    reason: reason.clone(),
                },
            )?;
        }
        self.store.flush()?;
        self.watch(&request.id);
        Ok(Opened::New(signed))
    }

    /// Takes one workflow step as this organization and sends it to the other.
    pub(super) fn act(
        &mut self,
        id: ConsultationId,
        role: Role,
        user: &str,
        action: Action,
        conclusion: Option<ConclusionText>,
    ) -> Result<Status, NodeError> {
        let (mut stored, mut c) = self.load_consultation(&id)?;
        let counterpart = if c.request.requester == self.me.cert.org {
            c.request.consultant
        } else {
            c.request.requester
        };
        let min_level = self
            .directory()
            .get(&c.request.consultant)
            .map_or(OrgLevel::District, |e| e.level());
        let mut plan = self.plan(
            Target::Org(counterpart),
            routing(&c.request, min_level),
            STEP_LIFETIME,
        )?;
        let (action, file) = match (action, conclusion) {
            (Action::Conclude { .. }, Some(text)) => {
                for (index, attachment) in text.attachments.into_iter().enumerate() {
                    let mut source: Box<dyn std::io::Read> = match attachment {
                        super::Attachment::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes)),
                        super::Attachment::File(path) => {
                            Box::new(std::fs::File::open(&path).map_err(|e| {
                                NodeError::Attachment(format!("{}: {e}", path.display()))
                            })?)
                        }
                    };
                    let blob = self.blobs.seal_attachment(
                        &plan.header,
                        index as u32,
                        &self.sealing,
                        &plan.recipient_key,
                        random_bytes(),
                        &mut source,
                    )?;
                    plan.header.attachments.push(blob);
                }
                let signed = Conclusion {
                    consultation: id,
                    consultant_org: self.me.cert.org,
                    authors: text.authors,
                    diagnosis: text.diagnosis,
                    recommendations: text.recommendations,
                    treatment_plan: text.treatment_plan,
                    further_studies: text.further_studies,
                    attachments: plan.header.attachments.clone(),
                    issued_at: self.now(),
                }
                .sign(&self.identity)?;
                let hash = signed.content_hash();
                (
                    Action::Conclude { conclusion: hash },
                    Some(ConclusionFile {
                        conclusion: signed,
                        chain: self.chain.clone(),
                    }),
                )
            }
            (action, _) => (action, None),
        };
        let from = c.status;
        let step = c.step(&self.identity, role, user, self.now(), action);
        let status = c.apply(&step)?;
        stored.history.push(step.clone());
        if file.is_some() {
            stored.conclusion = file.clone();
        }
        self.store.put_consultation(&id, &stored)?;
        self.watch(&id);
        self.journal_step(&c, from, user, role, &step)?;
        let body = wire::encode(&PackageBody::Step {
            step,
            conclusion: file.map(Box::new),
        })
        .map_err(|e| NodeError::Network(e.to_string()))?;
        let sent = self.commit(plan, &body)?;
        self.append_journal(
            Some(user.to_owned()),
            Some(role),
            journal::Action::Send {
                consultation: id.0,
                package: sent.id,
            },
        )?;
        self.emit(NodeEvent::ConsultationUpdated { id, status });
        Ok(status)
    }

    fn journal_step(
        &mut self,
        c: &Consultation,
        from: Status,
        user: &str,
        role: Role,
        step: &Signed<workflow::Transition>,
    ) -> Result<(), NodeError> {
        let consultation = c.id().0;
        self.append_journal(
            Some(user.to_owned()),
            Some(role),
            journal::Action::Transition {
                consultation,
                from: from.to_string(),
                to: c.status.to_string(),
            },
        )?;
        if let Ok(t) = step.decode_unverified()
            && matches!(t.action, Action::Conclude { .. })
        {
            let deadline_met = self.deadline(&c.request).is_none_or(|d| t.at <= d.due);
            self.append_journal(
                Some(user.to_owned()),
                Some(role),
                journal::Action::Conclusion {
                    consultation,
                    deadline_met,
                },
            )?;
        }
        Ok(())
    }

    /// The legal deadline, in the consulting organization's calendar.
    pub(super) fn deadline(&self, request: &ConsultationRequest) -> Option<Deadline> {
        let consultant = self.directory().get(&request.consultant)?;
        Some(Deadline::compute(
            request.urgency,
            request.created,
            &consultant.record().calendar,
            &consultant.deadlines_for(request.specialty),
        ))
    }

    /// A package for us was accepted: if it carries workflow, apply it.
    pub(super) fn on_body(&mut self, sender: OrgId, package: PackageId, body: &[u8]) {
        let Ok(content) = wire::decode::<PackageBody>(body) else {
            return;
        };
        let result = match content {
            PackageBody::Consultation {
                request,
                extract,
                files,
            } => self.receive_request(sender, package, request, extract, files),
            PackageBody::Step { step, conclusion } => {
                self.receive_step(sender, step, conclusion.map(|c| *c))
            }
            PackageBody::Opaque(_) => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(%sender, %package, "workflow message refused: {e}");
        }
    }

    fn receive_request(
        &mut self,
        sender: OrgId,
        package: PackageId,
        request: Signed<ConsultationRequest>,
        extract: CaseExtract,
        files: Vec<FileInfo>,
    ) -> Result<(), NodeError> {
        let c = Consultation::open(&request)?;
        if c.request.requester != sender || c.request.consultant != self.me.cert.org {
            return Err(NodeError::Workflow(WorkflowError::Outsider {
                actor: sender,
            }));
        }
        if self.store.consultation(&c.id())?.is_some() {
            return Ok(());
        }
        let stored = StoredConsultation {
            received_in: Some(package),
            ..StoredConsultation::new(request, extract, files)
        };
        self.store.put_consultation(&c.id(), &stored)?;
        self.watch(&c.id());
        self.append_journal(
            None,
            None,
            journal::Action::Receive {
                consultation: c.id().0,
                package,
            },
        )?;
        self.append_journal(
            None,
            None,
            journal::Action::Create(Self::journal_ref(&c.request)),
        )?;
        self.store.flush()?;
        self.emit(NodeEvent::ConsultationUpdated {
            id: c.id(),
            status: c.status,
        });
        for early in self.store.take_early_steps(&c.id())? {
            if let Err(e) = self.receive_step(early.sender, early.step, early.conclusion) {
                tracing::warn!(consultation = %c.id(), "held step refused: {e}");
            }
        }
        self.store.flush()?;
        Ok(())
    }

    fn receive_step(
        &mut self,
        sender: OrgId,
        step: Signed<workflow::Transition>,
        conclusion: Option<ConclusionFile>,
    ) -> Result<(), NodeError> {
        let t = step.decode_unverified()?;
        if t.actor != sender {
            return Err(NodeError::Workflow(WorkflowError::Outsider {
                actor: sender,
            }));
        }
        if let (Action::Conclude { conclusion: hash }, Some(file)) = (&t.action, &conclusion) {
            file.verify(&self.trust, self.now())?;
            if file.conclusion.content_hash() != *hash {
                return Err(NodeError::Conclusion(
                    "the conclusion does not match the step that concludes".into(),
                ));
            }
        }
        let id = t.consultation;
        let (mut stored, mut c) = match self.load_consultation(&id) {
            Err(NodeError::UnknownConsultation(_)) => {
                // The request may still be on its way (its attachments are
                // fetched before it is handed over): hold the step for it.
                step.verify(&sender.verifying_key())?;
                let early = EarlyStep {
                    sender,
                    step,
                    conclusion,
                };
                if !self.store.hold_early_step(&id, &early, MAX_EARLY_STEPS)? {
                    return Err(NodeError::UnknownConsultation(id));
                }
                self.store.flush()?;
                tracing::info!(consultation = %id, "step held until its request arrives");
                return Ok(());
            }
            other => other?,
        };
        if conclusion.is_some() {
            stored.conclusion = conclusion;
        }
        stored.early.push(step);
        // Apply whatever now follows in order; keep the rest waiting.
        loop {
            let before = stored.early.len();
            let mut waiting = Vec::new();
            for s in std::mem::take(&mut stored.early) {
                let from = c.status;
                match c.apply(&s) {
                    Ok(_) => {
                        let t = s.decode_unverified()?;
                        self.journal_step(&c, from, &t.user, t.role, &s)?;
                        stored.history.push(s);
                    }
                    Err(WorkflowError::OutOfOrder { expected, got }) if got > expected => {
                        waiting.push(s)
                    }
                    Err(e) => tracing::warn!(consultation = %id, "step refused: {e}"),
                }
            }
            stored.early = waiting;
            if stored.early.is_empty() || stored.early.len() == before {
                break;
            }
        }
        self.store.put_consultation(&id, &stored)?;
        self.store.flush()?;
        self.watch(&id);
        self.emit(NodeEvent::ConsultationUpdated {
            id,
            status: c.status,
        });
        Ok(())
    }

    pub(super) fn consultation_view(
        &self,
        id: &ConsultationId,
    ) -> Result<ConsultationView, NodeError> {
        let (stored, c) = self.load_consultation(id)?;
        let side = if c.request.requester == self.me.cert.org {
            Side::Requesting
        } else {
            Side::Consulting
        };
        let counterpart = match side {
            Side::Requesting => c.request.consultant,
            Side::Consulting => c.request.requester,
        };
        let blobs = match (&stored.own_copy, stored.received_in) {
            (Some(own), _) => own.attachments.clone(),
            (None, Some(package)) => self.received(package)?.0.attachments,
            (None, None) => Vec::new(),
        };
        let files = blobs
            .into_iter()
            .enumerate()
            .map(|(i, blob)| (stored.files.get(i).cloned().unwrap_or_default(), blob))
            .collect();
        Ok(ConsultationView {
            files,
            deadline: self.deadline(&c.request),
            consultation: c,
            extract: stored.extract,
            conclusion: stored.conclusion,
            side,
            counterpart,
        })
    }

    pub(super) fn consultation_ids(&self) -> Result<Vec<ConsultationId>, NodeError> {
        Ok(self
            .store
            .consultations()?
            .into_iter()
            .filter_map(|c| c.request.decode_unverified().ok().map(|r| r.id))
            .collect())
    }
}
