//! Escalation on the node's side of the consultation desk
//! (`konsilium_protocol::desk`): waking it when its timers are due, and
//! carrying out the escalations it decides by sealing the case anew for
//! the next consultant from the requester's own copy of its files.

use super::consult::{STEP_LIFETIME, routing};
use super::{AttachmentKeys, Command, Node, NodeError, Target, random_bytes};
use crate::storage::store::{Batch, StoredConsultation};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::content::PackageBody;
use konsilium_protocol::identity::OrgId;
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
    /// as a consultation escalated from the one that went unanswered. The
    /// files are re-sealed on a blocking thread; the loop hears back with
    /// `Command::Resealed`.
    pub(super) fn escalate(
        &mut self,
        from: ConsultationId,
        to: OrgId,
        reason: &'static str,
    ) -> Result<(), NodeError> {
        let (stored, c) = self.load_consultation(&from)?;
        let min_level = self
            .directory()
            .get(&to)
            .map_or(OrgLevel::District, |e| e.level());
        let plan = self.plan(
            Target::Org(to),
            routing(&c.request, min_level),
            STEP_LIFETIME,
        )?;
        let Some(own) = stored.own_copy else {
            return self.finish_escalation(from, to, reason, plan);
        };
        let keys = (
            own,
            self.keyring.clone(),
            self.keyring.public_keys(),
            self.blobs.clone(),
        );
        self.reseal_off_loop(keys, plan, move |plan| Command::Resealed {
            from,
            to,
            reason,
            plan,
        });
        Ok(())
    }

    /// Seals the attachments `keys` open anew into `plan`, on a blocking
    /// thread; the loop hears back with the command `done` makes.
    pub(super) fn reseal_off_loop(
        &self,
        keys: AttachmentKeys,
        plan: super::Plan,
        done: impl FnOnce(Result<Box<super::Plan>, NodeError>) -> Command + Send + 'static,
    ) {
        let back = self.loopback.clone();
        tokio::spawn(async move {
            let resealed = tokio::task::spawn_blocking(move || reseal(&keys, plan))
                .await
                .unwrap_or_else(|e| Err(NodeError::Attachment(e.to_string())));
            let _ = back.send(done(resealed.map(Box::new)));
        });
    }

    /// The case files are sealed for the next consultant (or could not be).
    pub(super) fn on_resealed(
        &mut self,
        from: ConsultationId,
        to: OrgId,
        reason: &'static str,
        plan: Result<Box<super::Plan>, NodeError>,
    ) {
        let done = plan.and_then(|plan| self.finish_escalation(from, to, reason, *plan));
        if let Err(e) = done {
            tracing::warn!(consultation = %from, "escalation: {e}; retrying");
            let now = self.now();
            self.desk.retry_escalation(now, from, reason);
        }
    }

    /// Opens the consultation with the next consultant, queues its package
    /// in `plan` (which holds the re-sealed files), and tells the desk.
    fn finish_escalation(
        &mut self,
        from: ConsultationId,
        to: OrgId,
        reason: &'static str,
        plan: super::Plan,
    ) -> Result<(), NodeError> {
        let (stored, c) = self.load_consultation(&from)?;
        let request = c.request;
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
        let signed = self.desk.open(now, next, None, self.sync.directory())?;
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
                self.keyring.clone(),
                self.keyring.public_keys(),
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

/// Opens a package's attachments (the requester's self-sealed copy, or
/// the package that brought them) and seals each anew for the plan's
/// recipient, listing them in its header. Files pass through the blob
/// store's scratch directory and are removed on every path.
fn reseal(keys: &AttachmentKeys, mut plan: super::Plan) -> Result<super::Plan, NodeError> {
    let (own, keyring, senders, blobs) = keys;
    let tmp = blobs.scratch()?;
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
            blobs.open_attachment(own, index, keyring, senders, &mut out)?;
            std::io::Write::flush(&mut out).map_err(failed)?;
        }
        let mut file = plain.reopen().map_err(failed)?;
        let blob = blobs.seal_attachment(
            &plan.header,
            index,
            keyring.current(),
            &plan.recipient_key,
            random_bytes(),
            &mut file,
        )?;
        plan.header.attachments.push(blob);
    }
    Ok(plan)
}
