//! Deadlines and escalation on the node's side of the consultation timers
//! machine (`konsilium_protocol::timers`): telling it of every change,
//! carrying out what it reports, and, for an escalation, sealing the case
//! anew for the next consultant from the requester's own copy of its files.

use super::consult::{NewConsultation, Opened, STEP_LIFETIME, routing};
use super::{Node, NodeError, NodeEvent, Target, random_bytes};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::content::PackageBody;
use konsilium_protocol::identity::SealingKey;
use konsilium_protocol::journal::Role;
use konsilium_protocol::route::{self, RouteRequest};
use konsilium_protocol::seal::EnvelopeHeader;
use konsilium_protocol::timers::{Escalation, Facts, TimerEvent};
use konsilium_protocol::wire;
use konsilium_protocol::workflow::{Action, ConsultationId};
use std::time::Duration;

/// How soon an escalation that failed (no route yet, a disk error) is tried again.
const ESCALATION_RETRY: Duration = Duration::from_secs(1);

/// Who the journal names for steps the node takes by itself.
const ESCALATION_USER: &str = "konsilium (automatic escalation)";

impl Node {
    /// Tells the consultation timers what a consultation looks like now;
    /// called after every change to it, and for each one at start.
    pub(super) fn watch(&mut self, id: &ConsultationId) {
        let facts = match self.load_consultation(id) {
            Ok((stored, c)) => Facts {
                deadline: self.deadline(&c.request),
                urgency: c.request.urgency,
                status: c.status,
                concluded: c.conclusion.is_some(),
                first_response: c.first_response,
                requesting: c.request.requester == self.me.cert.org,
                forwarded: stored
                    .history
                    .last()
                    .and_then(|s| s.decode_unverified().ok())
                    .is_some_and(|t| matches!(t.action, Action::Reject { forward: true, .. })),
                escalated: stored.escalated_to.is_some(),
            },
            Err(e) => {
                tracing::warn!(consultation = %id, "not watched: {e}");
                self.timers.handle_remove(id);
                return;
            }
        };
        self.timers.handle_update(self.now(), *id, facts);
    }

    /// Carries out what the consultation timers report: deadline alerts,
    /// and escalations. Requesting side: an emergency without a first
    /// response in the consultant's response time, or a request declined
    /// with "forward", goes to the next candidate (same specialty, same or
    /// higher level, never one already asked). The case is sealed anew for
    /// the new consultant; the unanswered consultation is cancelled; when no
    /// one is left, it fails.
    pub(super) fn on_timers(&mut self) {
        self.timers.handle_timeout(self.now());
        while let Some(event) = self.timers.poll_event() {
            match event {
                TimerEvent::Deadline { id, state, due } => {
                    tracing::warn!(consultation = %id, ?state, %due, "deadline");
                    self.emit(NodeEvent::Deadline { id, state, due });
                }
                TimerEvent::Escalate { id, why } => {
                    if let Err(e) = self.escalate(id, why) {
                        tracing::warn!(consultation = %id, "escalation: {e}; retrying");
                        let again = self.now().saturating_add(ESCALATION_RETRY);
                        self.timers.retry_escalation(&id, again);
                    }
                }
            }
        }
    }

    fn escalate(&mut self, id: ConsultationId, why: Escalation) -> Result<(), NodeError> {
        let (stored, c) = self.load_consultation(&id)?;
        let request = c.request.clone();
        let now = self.now();
        let reason = why.reason();
        // Everyone asked so far, oldest first, following the escalation links back.
        let mut tried = vec![request.consultant];
        let mut from = request.escalated_from;
        while let Some(prev) = from {
            let Some(p) = self.store.consultation(&prev)? else {
                break;
            };
            let p = p.request.decode_unverified()?;
            tried.insert(0, p.consultant);
            from = p.escalated_from;
        }
        tried.insert(0, self.me.cert.org);
        let original = RouteRequest {
            specialty: request.specialty,
            min_level: OrgLevel::District,
            urgency: request.urgency,
            region: Some(self.me.cert.region.clone()),
            exclude: [self.me.cert.org].into(),
        };
        let next = route::escalate(self.directory(), &original, &tried, now)
            .best()
            .map(|b| b.org);
        if !c.status.is_final() {
            let step = match next {
                Some(_) => Action::Cancel {
                    reason: format!("escalated: {reason}"),
                },
                None => Action::Fail {
                    reason: format!("{reason}; no one left to escalate to"),
                },
            };
            self.act(request.id, Role::Coordinator, ESCALATION_USER, step, None)?;
        }
        let Some(next) = next else {
            self.mark_escalated(request.id, None)?;
            return Ok(());
        };
        let new = NewConsultation {
            target: Target::Org(next),
            specialty: request.specialty,
            min_level: OrgLevel::District,
            urgency: request.urgency,
            region: None,
            consent: request.consent.clone(),
            physician: request.physician.clone(),
            extract: stored.extract.clone(),
            escalated_from: Some(request.id),
        };
        // Without an intake key a new consultation is always opened.
        let signed = match self.open_consultation(&new, stored.files.clone(), next, None)? {
            Opened::New(signed) => signed,
            Opened::Existing(id) => return Err(NodeError::IntakeConflict(id)),
        };
        let new_id = signed.decode_unverified()?.id;
        let body = wire::encode(&PackageBody::Consultation {
            request: signed,
            extract: new.extract,
            files: stored.files.clone(),
        })
        .map_err(|e| NodeError::Network(e.to_string()))?;
        let min_level = self
            .directory()
            .get(&next)
            .map_or(OrgLevel::District, |e| e.level());
        let mut plan = self.plan(
            Target::Org(next),
            routing(&request, min_level),
            STEP_LIFETIME,
        )?;
        if let Some(own) = &stored.own_copy {
            self.reseal_own_copy(own, &mut plan)?;
            self.keep_own_copy(new_id, own.clone())?;
        }
        self.commit(plan, &body)?;
        self.mark_escalated(request.id, Some(new_id))?;
        tracing::info!(from = %request.id, to = %new_id, consultant = %next, "escalated: {reason}");
        self.emit(NodeEvent::Escalated {
            from: request.id,
            to: new_id,
            consultant: next,
        });
        Ok(())
    }

    /// Keeps the requesting side's self-sealed copy of a consultation's attachments.
    pub(super) fn keep_own_copy(
        &mut self,
        id: ConsultationId,
        header: EnvelopeHeader,
    ) -> Result<(), NodeError> {
        let mut stored = self
            .store
            .consultation(&id)?
            .ok_or(NodeError::UnknownConsultation(id))?;
        stored.own_copy = Some(header);
        self.store.put_consultation(&id, &stored)?;
        Ok(self.store.flush()?)
    }

    /// Opens the self-sealed copy of the attachments and seals each anew
    /// for the plan's recipient. Files pass through the node's `tmp/`.
    fn reseal_own_copy(
        &self,
        own: &EnvelopeHeader,
        plan: &mut super::Plan,
    ) -> Result<(), NodeError> {
        let tmp = self.blobs.scratch()?;
        let me = [self.sealing.public()];
        let failed = |e: std::io::Error| NodeError::Attachment(format!("{}: {e}", tmp.display()));
        for index in 0..own.attachments.len() as u32 {
            // Removed when dropped, on every path out of this loop; what a
            // crash leaves is swept when the blob store opens.
            let plain = tempfile::Builder::new()
                .prefix(&format!("escalation-{}-{index}-", own.id))
                .tempfile_in(&tmp)
                .map_err(failed)?;
            {
                let mut out = std::io::BufWriter::new(plain.reopen().map_err(failed)?);
                self.blobs
                    .open_attachment(own, index, &self.sealing, &me, &mut out)?;
                std::io::Write::flush(&mut out).map_err(failed)?;
            }
            let mut file = plain.reopen().map_err(failed)?;
            let blob = self.blobs.seal_attachment(
                &plan.header,
                index,
                &self.sealing,
                &plan.recipient_key,
                random_bytes(),
                &mut file,
            )?;
            plan.header.attachments.push(blob);
        }
        Ok(())
    }

    /// The keys that open a consultation's case files: the request's
    /// package for the consultant, the self-sealed copy for the requester.
    pub(super) fn case_file_keys(
        &self,
        id: &ConsultationId,
    ) -> Result<super::CaseFileKeys, NodeError> {
        let stored = self
            .store
            .consultation(id)?
            .ok_or(NodeError::UnknownConsultation(*id))?;
        let keys = match (&stored.own_copy, stored.received_in) {
            (Some(own), _) => (
                own.clone(),
                SealingKey::from_seed(*self.sealing.to_seed()),
                vec![self.sealing.public()],
                self.blobs.clone(),
            ),
            (None, Some(package)) => self.attachment_keys(package)?,
            (None, None) => {
                return Err(NodeError::Attachment(format!(
                    "consultation {id} has no files"
                )));
            }
        };
        Ok((keys, stored.files))
    }

    /// Records that a consultation was escalated (to `to`, or to no one).
    fn mark_escalated(
        &mut self,
        id: ConsultationId,
        to: Option<ConsultationId>,
    ) -> Result<(), NodeError> {
        if let Some(mut stored) = self.store.consultation(&id)? {
            // No one left is recorded as escalating to itself, so it is not tried again.
            stored.escalated_to = Some(to.unwrap_or(id));
            self.store.put_consultation(&id, &stored)?;
            self.store.flush()?;
            self.watch(&id);
        }
        Ok(())
    }
}
