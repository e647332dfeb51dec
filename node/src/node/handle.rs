//! The handle other tasks (the HTTP API, the admin channel, the CLI, tests)
//! drive a running node through: each call is a command to the event loop,
//! and work that must not block it (sealing and opening attachments) runs
//! on blocking threads here.

use super::*;

/// sled's I/O threads let go of the database's lock within milliseconds of
/// the node's last handle; a loaded machine can take longer, but not this.
const DB_RELEASE_WAIT: Duration = Duration::from_secs(10);

impl NodeHandle {
    /// The time by the node's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn org(&self) -> OrgId {
        self.org
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Seals and queues a package. Returns once it is durably in the
    /// outbox. Attachments are sealed on a blocking thread, streaming, so the
    /// node keeps serving the network meanwhile.
    pub async fn send(&self, request: SendRequest) -> Result<Sent, NodeError> {
        let SendRequest {
            target,
            routing,
            body,
            attachments,
            lifetime,
        } = request;
        let plan = self.plan(target, routing, lifetime).await?;
        self.seal_and_commit(plan, body, attachments).await
    }

    /// Chooses the recipient; a scoped directory that does not know one asks
    /// the regional center for candidates and chooses again.
    async fn plan(
        &self,
        target: Target,
        routing: RoutingHeader,
        lifetime: Duration,
    ) -> Result<Plan, NodeError> {
        let first = self
            .ask(|tx| Command::Plan(target.clone(), routing.clone(), lifetime, tx))
            .await?;
        match first {
            Err(NodeError::NoRoute(_)) if matches!(target, Target::Best) => {
                self.ask(|tx| Command::Candidates(routing.clone(), tx))
                    .await??;
                self.ask(|tx| Command::Plan(target, routing, lifetime, tx))
                    .await?
            }
            other => other,
        }
    }

    async fn seal_and_commit(
        &self,
        mut plan: Plan,
        body: Vec<u8>,
        attachments: Vec<Attachment>,
    ) -> Result<Sent, NodeError> {
        seal_attachments(&mut plan, attachments).await?;
        let Plan {
            header,
            recipient_key,
            sealing,
            recipient_name,
            route,
            ..
        } = plan;
        // Sealed here, beside the other senders' packages, not in the
        // event loop one after the other.
        let package = by_size(body.len(), move || {
            seal::seal(header, &sealing, &recipient_key, random_bytes(), &body)
        })
        .await??;
        let queued = Queued {
            package,
            recipient_name,
            route,
        };
        self.ask(|tx| Command::Queue(Box::new(queued), tx)).await?
    }

    /// Opens a consultation: routes it, signs the request (consent checked),
    /// and sends the case extract and attachments sealed to the consultant.
    pub async fn request_consultation(
        &self,
        new: NewConsultation,
        files: Vec<CaseFile>,
    ) -> Result<(ConsultationId, Sent), NodeError> {
        match self.open_and_send(new, files, None).await? {
            Intake::Opened(id, sent) => Ok((id, sent)),
            Intake::Existing(id) => Err(NodeError::IntakeConflict(id)),
        }
    }

    /// Like [`Self::request_consultation`], but once per client identifier:
    /// a retry with the same request finds the consultation it opened, and
    /// a different request under the same identifier is refused
    /// ([`NodeError::IntakeConflict`]).
    pub async fn request_consultation_once(
        &self,
        new: NewConsultation,
        files: Vec<CaseFile>,
        key: IntakeKey,
    ) -> Result<Intake, NodeError> {
        // Checked first so a retry needs neither a route nor sealing; the
        // check that counts is repeated where the consultation is stored.
        if let Some(id) = self
            .ask(|tx| Command::FindIntake(key.clone(), tx))
            .await??
        {
            return Ok(Intake::Existing(id));
        }
        self.open_and_send(new, files, Some(key)).await
    }

    async fn open_and_send(
        &self,
        new: NewConsultation,
        files: Vec<CaseFile>,
        intake: Option<IntakeKey>,
    ) -> Result<Intake, NodeError> {
        let (infos, attachments): (Vec<FileInfo>, Vec<Attachment>) =
            files.into_iter().map(|f| (f.info, f.content)).unzip();
        let routing = RoutingHeader {
            specialty: new.specialty,
            min_level: new.min_level,
            urgency: new.urgency,
            region: new.region.clone(),
        };
        let plan = self
            .plan(new.target.clone(), routing, REQUEST_LIFETIME)
            .await?;
        let consultant = plan.header.recipient;
        let extract = new.extract.clone();
        let physician = new.physician.clone();
        // A copy of the attachments sealed to ourselves, so an escalation can
        // seal them anew for the next consultant without the originals.
        let own_copy = if attachments.is_empty() {
            None
        } else {
            let mut own = Plan {
                header: EnvelopeHeader {
                    id: PackageId(random_bytes()),
                    recipient: plan.header.sender,
                    attachments: Vec::new(),
                    ..plan.header.clone()
                },
                recipient_key: plan.sealing.public(),
                sealing: plan.sealing.clone(),
                blobs: plan.blobs.clone(),
                recipient_name: String::new(),
                route: None,
            };
            seal_attachments(&mut own, attachments.clone()).await?;
            Some(own.header)
        };
        let identifier = intake.as_ref().map(|k| k.identifier.clone());
        let request = match self
            .ask(|tx| {
                Command::OpenConsultation(Box::new(new), infos.clone(), consultant, intake, tx)
            })
            .await??
        {
            consult::Opened::New(request) => request,
            consult::Opened::Existing(id) => return Ok(Intake::Existing(id)),
        };
        let id = request.decode_unverified()?.id;
        let sending = async {
            if let Some(header) = own_copy {
                self.ask(|tx| Command::KeepOwnCopy(id, Box::new(header), tx))
                    .await??;
            }
            let body = wire::encode(&konsilium_protocol::content::PackageBody::Consultation {
                request,
                extract,
                files: infos,
            })
            .map_err(|e| NodeError::Network(e.to_string()))?;
            self.seal_and_commit(plan, body, attachments).await
        };
        let sent = match sending.await {
            Ok(sent) => sent,
            Err(e) => {
                // The request never left: a retry must open it anew rather
                // than find a consultation the consultant will never see.
                if let Some(identifier) = identifier {
                    let _ = self
                        .ask(|tx| Command::ForgetIntake(identifier, id, tx))
                        .await;
                }
                return Err(e);
            }
        };
        self.record(
            Some(physician),
            Some(Role::Physician),
            konsilium_protocol::journal::Action::Send {
                consultation: id.0,
                package: sent.id,
            },
        )
        .await?;
        Ok(Intake::Opened(id, sent))
    }

    /// Takes one workflow step as this organization.
    /// A conclusion's attachments are sealed here, on blocking threads,
    /// into the envelope the step will go in to each other participant
    /// (an invited organization reads them too); the event loop only signs.
    pub async fn act(&self, mut request: ActRequest) -> Result<WorkflowStatus, NodeError> {
        let attachments = request
            .conclusion
            .as_mut()
            .map(|c| std::mem::take(&mut c.attachments))
            .unwrap_or_default();
        let mut plans = Vec::new();
        if !attachments.is_empty() {
            let id = request.consultation;
            plans = self.ask(|tx| Command::StepPlans(id, tx)).await??;
            for plan in &mut plans {
                super::attachments::seal_attachments(plan, attachments.clone()).await?;
            }
        }
        self.ask(|tx| Command::Act(Box::new(request), plans, tx))
            .await?
    }

    pub async fn consultation(&self, id: ConsultationId) -> Result<ConsultationView, NodeError> {
        self.ask(|tx| Command::Consultation(id, tx)).await?
    }

    pub async fn consultations(&self) -> Result<Vec<ConsultationId>, NodeError> {
        self.ask(Command::Consultations).await?
    }

    /// Up to `limit` consultations in `status` (any, if none), newest
    /// first, after the one `after` names; `UnknownConsultation(after)`
    /// when it is not among them.
    pub async fn consultation_page(
        &self,
        status: Option<WorkflowStatus>,
        after: Option<ConsultationId>,
        limit: usize,
    ) -> Result<ConsultationPage, NodeError> {
        self.ask(|tx| Command::ConsultationPage(status, after, limit, tx))
            .await?
    }

    /// Journals an access or security event (a record opened, a failed
    /// login) and waits until it is on disk. Callers that return health
    /// data do so only after this succeeds.
    pub async fn record(
        &self,
        user: Option<String>,
        role: Option<Role>,
        action: konsilium_protocol::journal::Action,
    ) -> Result<(), NodeError> {
        self.ask(|tx| Command::Record(user, role, action, tx))
            .await?
    }

    /// The journal and its signed checkpoints, for verification and statistics.
    pub async fn journal(&self) -> Result<JournalDump, NodeError> {
        self.ask(Command::Journal).await?
    }

    /// Opens attachment `index` of a received package into a file.
    pub async fn open_attachment(
        &self,
        id: PackageId,
        index: u32,
        dest: PathBuf,
    ) -> Result<u64, NodeError> {
        let keys = self.ask(|tx| Command::AttachmentKeys(id, tx)).await??;
        open_to_file(keys, index, dest, format!("package {id}")).await
    }

    /// Opens file `index` of a consultation's case extract into `dest`,
    /// on either side: the consultant reads the request's package, the
    /// requester its own sealed copy. Returns what the file is and its size.
    pub async fn open_case_file(
        &self,
        id: ConsultationId,
        index: u32,
        dest: PathBuf,
    ) -> Result<(FileInfo, u64), NodeError> {
        let (keys, files) = self.ask(|tx| Command::CaseFileKeys(id, tx)).await??;
        let what = format!("consultation {id}");
        let size = open_to_file(keys, index, dest, what).await?;
        let info = files.get(index as usize).cloned().unwrap_or_default();
        Ok((info, size))
    }

    /// Opens file `index` of a consultation's conclusion into `dest`, at the
    /// requester or an invited organization. Returns its size.
    pub async fn open_conclusion_file(
        &self,
        id: ConsultationId,
        index: u32,
        dest: PathBuf,
    ) -> Result<u64, NodeError> {
        let keys = self.ask(|tx| Command::ConclusionFileKeys(id, tx)).await??;
        let what = format!("the conclusion of consultation {id}");
        open_to_file(keys, index, dest, what).await
    }

    /// Opens a received package.
    pub async fn open(&self, id: PackageId) -> Result<(EnvelopeHeader, Vec<u8>), NodeError> {
        self.ask(|tx| Command::Open(id, tx)).await?
    }

    pub async fn status(&self) -> Result<Status, NodeError> {
        self.ask(Command::Status).await
    }

    /// Puts revocation lists in force here and publishes them to the
    /// federation; returns how many were newer than those in force.
    pub async fn revoke(&self, notices: Vec<RevocationNotice>) -> Result<usize, NodeError> {
        self.ask(|tx| Command::Revoke(notices, tx)).await?
    }

    /// Puts a reloaded configuration's directory profile (services,
    /// consultants, calendar, deadlines) and bootstrap list in force; the
    /// node republishes its record.
    pub async fn reload(
        &self,
        profile: Profile,
        bootstrap: Vec<Multiaddr>,
    ) -> Result<(), NodeError> {
        self.ask(|tx| Command::Reload(Box::new(profile), bootstrap, tx))
            .await
    }

    /// Copies the node's state into the new directory `dest` while it runs.
    pub async fn backup(
        &self,
        dest: PathBuf,
    ) -> Result<crate::storage::backup::Manifest, NodeError> {
        self.ask(|tx| Command::Backup(dest, tx)).await?
    }

    /// Asks `from` (every other organization when empty) for the consultation
    /// state this node lost since `since` (an hour before the last entry its
    /// journal kept when `None`); answers when every one answered or was
    /// given up on.
    pub async fn recover(
        &self,
        since: Option<Timestamp>,
        from: Vec<OrgId>,
    ) -> Result<crate::telemetry::report::RecoveryReport, NodeError> {
        self.ask(|tx| Command::Recover(since, from, tx)).await?
    }

    /// Opens a consultation's video session now, before its appointment
    /// or without one: offers a link to the other organization.
    /// [`NodeEvent::Video`] tells how it goes. `by` is the user who asked,
    /// for the journal.
    pub async fn open_video(
        &self,
        consultation: ConsultationId,
        by: Option<(String, Role)>,
    ) -> Result<konsilium_protocol::video::SessionId, NodeError> {
        self.ask(|tx| Command::OpenVideo(consultation, by, tx))
            .await?
    }

    /// A clinician's browser joins the consultation's video session with
    /// its SDP offer (WHIP/WHEP); returns the seat and the SDP answer. The
    /// session opens if it was not open yet.
    pub async fn join_video(
        &self,
        consultation: ConsultationId,
        by: (String, Role),
        offer: String,
    ) -> Result<(crate::media::SeatId, String), NodeError> {
        self.ask(|tx| Command::JoinVideo(consultation, by, offer, tx))
            .await?
    }

    /// A clinician's browser leaves the session: only the user who joined
    /// with it (`by`) can take it out; to anyone else it is no seat at all.
    pub async fn leave_video(
        &self,
        consultation: ConsultationId,
        seat: crate::media::SeatId,
        by: (String, Role),
    ) -> Result<(), NodeError> {
        self.ask(|tx| Command::LeaveVideo(consultation, seat, by, tx))
            .await?
    }

    /// From now until the session closes, frames other sites send in it
    /// come as [`NodeEvent::Video`] too. Nothing else needs them (the node
    /// forwards them to its browsers), so no session's frames do unless
    /// asked: an application that takes frames itself asks here.
    pub async fn watch_video(
        &self,
        session: konsilium_protocol::video::SessionId,
    ) -> Result<(), NodeError> {
        self.ask(|tx| Command::WatchVideo(session, tx)).await?
    }

    /// Sends a data channel message or a media frame on a video link;
    /// `Ok(false)` when the data channel's buffer is full.
    pub async fn send_video(
        &self,
        session: konsilium_protocol::video::SessionId,
        org: OrgId,
        payload: super::VideoPayload,
    ) -> Result<bool, NodeError> {
        self.ask(|tx| Command::VideoSend(session, org, payload, tx))
            .await?
    }

    /// Replaces the sealing key (a new one under `keys/`, the old one kept
    /// under `keys/retired/`) and republishes the record with it.
    pub async fn rotate_sealing_key(
        &self,
    ) -> Result<crate::telemetry::report::RotationReport, NodeError> {
        self.ask(Command::RotateSealing).await?
    }

    /// Sends a probe package to `to` and waits up to `patience` for its
    /// signed receipt: whether the organization is reachable end to end,
    /// how long it took and how.
    pub async fn probe(
        &self,
        to: OrgId,
        patience: std::time::Duration,
    ) -> Result<crate::telemetry::report::ProbeReport, NodeError> {
        let mut events = self.subscribe();
        let started = std::time::Instant::now();
        let sent = self.ask(|tx| Command::Probe(to, tx)).await??;
        let receipt = async {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::PackageDelivered { id, .. }) if id == sent.id => return Ok(()),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Err(NodeError::Stopped),
                }
            }
        };
        tokio::time::timeout(patience, receipt)
            .await
            .map_err(|_| {
                NodeError::Timeout(format!(
                    "the receipt from {} for {} s (the probe stays queued: `konsilium outbox`)",
                    sent.recipient_name,
                    patience.as_secs()
                ))
            })??;
        let elapsed = started.elapsed();
        let link = if sent.next_hop != to {
            Some(format!("store-and-forward via {}", sent.next_hop))
        } else {
            self.ask(|tx| Command::Link(to, tx)).await?
        };
        Ok(crate::telemetry::report::ProbeReport {
            org: to.to_string(),
            name: sent.recipient_name,
            package: sent.id.to_string(),
            round_trip_ms: elapsed.as_secs_f64() * 1000.0,
            link,
        })
    }

    /// Opens a link to `to` that carries nothing, waits up to `patience`
    /// for it to connect and for its statistics to name the route media
    /// takes, and closes it.
    pub async fn probe_video(
        &self,
        to: OrgId,
        patience: std::time::Duration,
    ) -> Result<crate::telemetry::report::VideoProbeReport, NodeError> {
        let mut events = self.subscribe();
        let started = std::time::Instant::now();
        let session = self.ask(|tx| Command::ProbeVideo(to, tx)).await??;
        let probed = tokio::time::timeout(patience, async {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::Video {
                        session: s, event, ..
                    }) if s == session => match event {
                        konsilium_video::LinkEvent::Connected => break,
                        konsilium_video::LinkEvent::Failed(reason) => {
                            return Err(NodeError::Video(reason));
                        }
                        _ => {}
                    },
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Err(NodeError::Stopped),
                }
            }
            let connect_ms = started.elapsed().as_secs_f64() * 1000.0;
            // Statistics come once a second.
            let name = super::video::probe_label(session);
            loop {
                let view = self.inspect(Inspect::Sessions).await?;
                let report: crate::telemetry::report::SessionsReport =
                    serde_json::from_value(view).map_err(|e| NodeError::Video(e.to_string()))?;
                let link = report.sessions.into_iter().find(|s| s.consultation == name);
                if let Some(link) = link.filter(|l| l.route.is_some()) {
                    return Ok(crate::telemetry::report::VideoProbeReport {
                        org: to.to_string(),
                        name: link.name,
                        connect_ms,
                        route: link.route,
                        remote: link.remote,
                        rtt_ms: link.rtt_ms,
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        })
        .await;
        let _ = self.ask(|tx| Command::CloseProbe(session, tx)).await;
        probed.map_err(|_| {
            NodeError::Timeout(format!(
                "a video link to {to} for {} s: media does not get through",
                patience.as_secs()
            ))
        })?
    }

    /// An operator view (see [`crate::telemetry::report`]), as JSON.
    pub async fn inspect(&self, what: Inspect) -> Result<serde_json::Value, NodeError> {
        self.ask(|tx| Command::Inspect(Box::new(what), tx)).await?
    }

    /// Every metric in the Prometheus text format, gauges fresh.
    pub async fn metrics(&self) -> Result<String, NodeError> {
        self.ask(Command::Metrics).await
    }

    pub async fn outbox(&self) -> Result<Vec<OutboxEntry>, NodeError> {
        self.ask(Command::Outbox).await?
    }

    pub async fn records(&self) -> Result<Vec<SignedRecord>, NodeError> {
        self.ask(Command::Records).await
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        self.commands
            .send(Command::Dial(addr))
            .await
            .map_err(|_| NodeError::Stopped)
    }

    /// Stops the node and waits until its database is closed.
    /// Returns once the database is free again, so the same data directory
    /// can be opened at once (a restart, a backup, `konsilium journal`).
    pub async fn shutdown(self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
        let deadline = tokio::time::Instant::now() + DB_RELEASE_WAIT;
        while !crate::storage::store::is_released(&self.db)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the node abruptly, as a crash would: no goodbye, nothing flushed
    /// beyond what was already durable.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A running node, driven from other tasks.
pub struct NodeHandle {
    pub(super) org: OrgId,
    pub(super) peer_id: PeerId,
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) events: broadcast::Sender<NodeEvent>,
    pub(super) task: tokio::task::JoinHandle<()>,
    /// The database's directory, released before `shutdown` returns.
    pub(super) db: std::path::PathBuf,
    /// The node's own clock, so the API and views judge deadlines by the
    /// same time as the node (a moved clock moves everything).
    pub(super) clock: std::sync::Arc<dyn Clock>,
}
