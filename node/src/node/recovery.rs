//! Recovery on the node's side: asking counterparts for lost consultation
//! state (`konsilium_protocol::recovery`), answering them from the desk,
//! and handing the histories that come back to the desk.

use super::consult::STEP_LIFETIME;
use super::*;
use crate::storage::store::{Batch, StoredConsultation};
use crate::telemetry::report::{RecoveryAsk, RecoveryReport};
use konsilium_protocol::content::{PackageBody, SharedHistory};
use konsilium_protocol::desk::Recovered;
use konsilium_protocol::journal;
use konsilium_protocol::recovery::{Ask, Failure, Output as RecoveryOutput, Report};

/// How soon one organization may have its histories queued again: each
/// answer seals and queues a package per shared consultation, which a
/// certified but careless or hostile peer must not be able to repeat at
/// will.
pub(super) const RECOVERY_COOLDOWN: Duration = Duration::from_secs(60);

/// How far before the last journal entry kept a round asks from by
/// default: a step is dated by the clock of the node that took it and may
/// have been on its way when the entry was written, so what arrived just
/// after it can carry an earlier time. Asking for more costs only
/// histories that come back `UpToDate`.
const RECOVERY_MARGIN: Duration = Duration::from_secs(3600);

/// Where a round asks from when the operator names no time.
pub(super) fn default_since(last_kept: Option<Timestamp>) -> Timestamp {
    last_kept
        .unwrap_or_default()
        .saturating_sub(RECOVERY_MARGIN)
}

impl Node {
    /// Starts a recovery round: `from` (every other organization in the
    /// directory when empty) is asked for what moved since `since` (an
    /// hour before the last entry the journal kept when `None`).
    pub(super) fn start_recovery(
        &mut self,
        since: Option<Timestamp>,
        from: Vec<OrgId>,
    ) -> Result<(), NodeError> {
        let since = match since {
            Some(t) => t,
            None => default_since(self.store.journal_last_at()?),
        };
        let orgs: Vec<OrgId> = if from.is_empty() {
            let me = self.me.cert.org;
            self.directory()
                .entries()
                .map(|e| e.org())
                .filter(|o| *o != me)
                .collect()
        } else {
            from
        };
        tracing::info!(%since, organizations = orgs.len(), "asking counterparts for lost consultation state");
        let now = self.now();
        self.recovery.start(now, since, orgs);
        self.drive_recovery();
        Ok(())
    }

    pub(super) fn drive_recovery(&mut self) {
        while let Some(output) = self.recovery.poll_output() {
            match output {
                RecoveryOutput::Ask { org, since } => {
                    let peer = org.to_peer_id();
                    if self.ready(&peer) {
                        self.request(peer, Request::Recover { since }, Pending::Recover(org));
                    } else {
                        self.dial_hop(org);
                        let failure = Failure {
                            reason: "not connected".into(),
                            permanent: false,
                        };
                        let now = self.now();
                        self.recovery.handle_answer(now, org, Err(failure));
                    }
                }
                RecoveryOutput::Finished(report) => {
                    tracing::info!(
                        consultations = report.consultations(),
                        "recovery round finished"
                    );
                    let view = self.recovery_view(&report);
                    for waiter in self.recovery_waiters.drain(..) {
                        let _ = waiter.send(Ok(view.clone()));
                    }
                }
            }
        }
    }

    /// What an organization asked answered, or why it was not.
    pub(super) fn on_recovery_answer(&mut self, org: OrgId, answer: Result<Response, String>) {
        let answer = match answer {
            Ok(Response::Recovering { consultations }) => Ok(consultations),
            Ok(Response::Refused(r)) => Err(Failure {
                permanent: r.is_permanent(),
                reason: r.to_string(),
            }),
            Ok(other) => Err(Failure {
                reason: format!("answered {other:?} instead of Recovering"),
                permanent: true,
            }),
            Err(reason) => Err(Failure {
                reason,
                permanent: false,
            }),
        };
        let now = self.now();
        self.recovery.handle_answer(now, org, answer);
        self.drive_recovery();
    }

    /// `from` lost state since `since`: every consultation we share with
    /// it that moved since then is sealed to it as its history.
    pub(super) fn serve_recovery(&mut self, from: OrgId, since: Timestamp) -> Response {
        let now = self.now();
        if let Some(last) = self.recoveries_served.get(&from)
            && now.since(*last) < RECOVERY_COOLDOWN
        {
            let again = last.saturating_add(RECOVERY_COOLDOWN);
            return Response::Refused(Refusal::Transient(format!(
                "histories were queued for this organization at {last}; ask again after {again}"
            )));
        }
        self.recoveries_served.insert(from, now);
        let mut queued = 0;
        for id in self.desk.shared_with(from, since) {
            match self.send_history(id, from) {
                Ok(()) => queued += 1,
                Err(e) => tracing::warn!(consultation = %id, %from, "history not sent: {e}"),
            }
        }
        tracing::info!(%from, %since, queued, "recovery: histories queued");
        Response::Recovering {
            consultations: queued,
        }
    }

    /// Seals a consultation's history to `to`, with its case files sealed
    /// anew (off the event loop) when this node holds them: for a
    /// participant that lost it, and for an organization just invited.
    pub(super) fn send_history(&mut self, id: ConsultationId, to: OrgId) -> Result<(), NodeError> {
        let plan = self.history_plan(id, to)?;
        match self.case_file_keys(&id) {
            Ok((keys, _)) if !keys.0.attachments.is_empty() => {
                self.reseal_off_loop(keys, plan, move |plan| Command::HistoryResealed {
                    id,
                    to,
                    plan,
                });
                Ok(())
            }
            _ => self.commit_history(id, plan),
        }
    }

    fn history_plan(&mut self, id: ConsultationId, to: OrgId) -> Result<Plan, NodeError> {
        let (_, c) = self.load_consultation(&id)?;
        self.plan(Target::Org(to), self.routing_for(&c.request), STEP_LIFETIME)
    }

    /// The case files of a history were sealed anew, or could not be: then
    /// the history goes without them, since its steps matter most.
    pub(super) fn on_history_resealed(
        &mut self,
        id: ConsultationId,
        to: OrgId,
        plan: Result<Box<Plan>, NodeError>,
    ) {
        let sent = match plan {
            Ok(plan) => self.commit_history(id, *plan),
            Err(e) => {
                tracing::warn!(consultation = %id, "case files not sealed anew: {e}; the history goes without them");
                self.history_plan(id, to)
                    .and_then(|plan| self.commit_history(id, plan))
            }
        };
        if let Err(e) = sent {
            tracing::warn!(consultation = %id, %to, "history not sent: {e}");
        }
    }

    fn commit_history(&mut self, id: ConsultationId, plan: Plan) -> Result<(), NodeError> {
        let (stored, _) = self.load_consultation(&id)?;
        let history = SharedHistory {
            request: stored.request,
            extract: stored.extract,
            files: stored.files,
            steps: stored.history,
            conclusion: stored.conclusion,
        };
        let body = wire::encode(&PackageBody::History(Box::new(history)))
            .map_err(|e| NodeError::Network(e.to_string()))?;
        let sent = self.commit(plan, &body)?;
        self.append_journal(
            None,
            None,
            journal::Action::Send {
                consultation: id.0,
                package: sent.id,
            },
        )
    }

    /// A history we asked for arrived in `package`: the desk checks it and
    /// takes what we lost. Written, not flushed: returns what is left to
    /// carry out once the caller's flush made it durable.
    pub(super) fn on_history(
        &mut self,
        batch: Batch,
        sender: OrgId,
        package: PackageId,
        history: SharedHistory,
    ) -> Result<Vec<konsilium_protocol::desk::Output>, NodeError> {
        let now = self.now();
        let id = history.request.decode_unverified()?.id;
        let fresh = self.desk.case(&id).is_none().then(|| StoredConsultation {
            received_in: Some(package),
            ..StoredConsultation::new(
                history.request.clone(),
                history.extract.clone(),
                history.files.clone(),
            )
        });
        let recovered = self.desk.handle_history(
            now,
            sender,
            package,
            &history,
            &self.trust,
            self.sync.directory(),
        );
        match recovered {
            Ok(Recovered::New { steps } | Recovered::Extended { steps }) => {
                tracing::info!(consultation = %id, %sender, steps, "consultation state recovered")
            }
            Ok(Recovered::Settled { undone, steps }) => tracing::info!(
                consultation = %id,
                %sender,
                undone,
                steps,
                "consultation state recovered: steps taken here lost a race to the counterpart's and were undone"
            ),
            Ok(Recovered::Stood) => tracing::info!(
                consultation = %id,
                %sender,
                "the counterpart's history forked in a race this node's step won: kept as it is"
            ),
            Ok(Recovered::UpToDate) => {}
            Err(e) => tracing::warn!(consultation = %id, %sender, "history refused: {e}"),
        }
        self.write_desk(batch, fresh)
    }

    /// The round as the operator sees it.
    pub(super) fn recovery_view(&self, report: &Report) -> RecoveryReport {
        let counterparts = report
            .asks
            .iter()
            .map(|(org, ask)| {
                let (state, consultations, reason) = match ask {
                    Ask::Due { attempt, .. } => (format!("retrying (asked {attempt}x)"), 0, None),
                    Ask::Asked { .. } => ("asked".to_owned(), 0, None),
                    Ask::Answered { consultations } => {
                        ("answered".to_owned(), *consultations, None)
                    }
                    Ask::Failed { reason } => ("failed".to_owned(), 0, Some(reason.clone())),
                };
                RecoveryAsk {
                    org: org.to_string(),
                    name: self
                        .directory()
                        .get(org)
                        .map(|e| e.name().to_owned())
                        .unwrap_or_default(),
                    state,
                    consultations,
                    reason,
                }
            })
            .collect();
        RecoveryReport {
            since: report.since.to_string(),
            finished: report.is_finished(),
            consultations: report.consultations(),
            counterparts,
        }
    }
}
