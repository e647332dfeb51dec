//! Escalation on the node's side of the consultation desk
//! (`konsilium_protocol::desk`): waking it when its timers are due, and
//! carrying out the escalations it decides by sealing the case anew for
//! the next consultant from the requester's own copy of its files.

use super::consult::{STEP_LIFETIME, routing};
use super::{Node, NodeError, Target, random_bytes};
use crate::storage::store::{Batch, StoredConsultation};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::content::PackageBody;
use konsilium_protocol::identity::{OrgId, SealingKey};
use konsilium_protocol::seal::EnvelopeHeader;
use konsilium_protocol::wire;
use konsilium_protocol::workflow::{ConsultationId, ConsultationRequest};

impl Node {
    /// Wakes the desk: deadline alerts, and escalations it decides.
    pub(super) fn on_timers(&mut self) {
        let now = self.now();
        if self.desk.poll_timeout().is_some_and(|t| t <= now) {
            self.desk.handle_timeout(now, self.sync.directory());
            if let Err(e) = self.run_desk(Batch::default(), None, None) {
                tracing::error!("consultation timers: {e}");
            }
        }
    }

    /// Carries out an escalation the desk decided: the case is sealed anew
    /// for the next consultant, from the requester's own copy of its files,
    /// as a consultation escalated from the one that went unanswered.
    pub(super) fn escalate(
        &mut self,
        from: ConsultationId,
        to: OrgId,
        reason: &'static str,
    ) -> Result<(), NodeError> {
        let (stored, c) = self.load_consultation(&from)?;
        let request = c.request;
        let min_level = self
            .directory()
            .get(&to)
            .map_or(OrgLevel::District, |e| e.level());
        let mut plan = self.plan(Target::Org(to), routing(&request, min_level), STEP_LIFETIME)?;
        if let Some(own) = &stored.own_copy {
            self.reseal_own_copy(own, &mut plan)?;
        }
        let now = self.now();
        let next = ConsultationRequest {
            id: ConsultationId(random_bytes()),
            requester: self.me.cert.org,
            consultant: to,
            specialty: request.specialty,
            urgency: request.urgency,
            created: now,
            consent: request.consent.clone(),
            physician: request.physician.clone(),
            escalated_from: Some(from),
        };
        let signed = self.desk.open(now, next, self.sync.directory())?;
        let new_id = signed.decode_unverified()?.id;
        let body = wire::encode(&PackageBody::Consultation {
            request: signed.clone(),
            extract: stored.extract.clone(),
            files: stored.files.clone(),
        })
        .map_err(|e| NodeError::Network(e.to_string()))?;
        let fresh = StoredConsultation {
            own_copy: stored.own_copy.clone(),
            ..StoredConsultation::new(signed, stored.extract, stored.files)
        };
        self.run_desk(Batch::default(), Some(fresh), None)?;
        self.commit(plan, &body)?;
        tracing::info!(%from, to = %new_id, consultant = %to, "escalating: {reason}");
        self.desk
            .handle_escalated(now, from, Some(new_id), self.sync.directory());
        self.run_desk(Batch::default(), None, None)
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
}
