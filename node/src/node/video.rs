//! Video links between the sites of a consultation: offers and answers,
//! signed by each organization and checked against who takes part, travel
//! in the RPC; the links themselves run in the media plane
//! (`crate::media`). A consultation's session has its two organizations as
//! participants. The schedule machine says when a session opens (its
//! confirmed appointment) and ends (conclusion, cancellation); this module
//! carries that out and journals every step.

use super::*;
use crate::media::{MediaError, MediaEvent, Person, SeatId};
use konsilium_protocol::journal::{Action as JournalAction, VideoStep};
use konsilium_protocol::video::{
    Description, ScheduleOutput, SessionId, Signal, accept, offers_to,
};
use konsilium_video::LinkEvent;

/// One line of `konsilium sessions`: a link to a site or a browser here.
fn report_row(
    consultation: String,
    peer: String,
    name: String,
    state: &str,
    s: konsilium_video::LinkStats,
) -> crate::telemetry::report::SessionReport {
    crate::telemetry::report::SessionReport {
        consultation,
        peer,
        name,
        // A site whose path is thin gets a smaller picture, or only the voices.
        state: match s.quality {
            konsilium_video::Quality::Full => state.into(),
            q => format!("{state}, {}", q.as_str()),
        },
        route: s.remote.map(|(_, route)| route.to_string()),
        remote: s.remote.map(|(addr, _)| addr.to_string()),
        rtt_ms: s.rtt.map(|d| d.as_secs_f64() * 1000.0),
        loss: s.loss.map(f64::from),
        receive_bps: s.rx_bps,
        send_bps: s.tx_bps,
        receive_fps: s.rx_fps,
        send_fps: s.tx_fps,
    }
}

/// How `konsilium sessions` names a probe's link: it has no consultation.
pub(super) fn probe_label(session: SessionId) -> String {
    format!("probe {}", ConsultationId(session.0))
}

/// How long before its appointment a session opens, so the sites are
/// connected when the clinicians sit down.
pub(super) const LEAD: std::time::Duration = std::time::Duration::from_secs(5 * 60);

impl Node {
    /// The video session of a consultation, and the other sites in it:
    /// the other owner and every invited organization.
    fn video_session(&self, id: &ConsultationId) -> Result<(SessionId, Vec<OrgId>), NodeError> {
        let (_, c) = self.load_consultation(id)?;
        let me = self.me.cert.org;
        let others = c.participants().into_iter().filter(|o| *o != me);
        Ok((SessionId(id.0), others.collect()))
    }

    pub(super) fn media_plane(&self) -> Result<&crate::media::MediaPlane, NodeError> {
        (self.media.as_ref())
            .ok_or_else(|| NodeError::Video("video is off at this site: no video address".into()))
    }

    pub(super) fn signal(
        &self,
        session: SessionId,
        to: OrgId,
        description: Description,
    ) -> Signed<Signal> {
        let signal = Signal {
            session,
            from: self.me.cert.org,
            to,
            description,
            at: self.now(),
        };
        Signed::sign(&self.identity, &signal)
    }

    /// Journals a step of a session; the step happened whether or not the
    /// disk took it, so a failure is logged, not returned. Durable a moment
    /// later, off the event loop: signalling crosses both sites' loops
    /// several times, and a flush on each crossing doubled the setup.
    fn journal_video(&mut self, session: SessionId, org: OrgId, step: VideoStep) {
        if self.is_probe(&session) {
            return;
        }
        let action = JournalAction::Video {
            consultation: session.0,
            org,
            step,
        };
        if let Err(e) = self.append_journal_soon(None, None, action) {
            tracing::error!(consultation = %ConsultationId(session.0), "video step not journaled: {e}");
        }
    }

    /// Journals a clinician's own step (joined or left from a browser).
    fn journal_person(&mut self, session: SessionId, who: &Person, step: VideoStep) {
        let action = JournalAction::Video {
            consultation: session.0,
            org: self.me.cert.org,
            step,
        };
        if let Err(e) = self.append_journal_soon(Some(who.person.clone()), Some(who.role), action) {
            tracing::error!(consultation = %ConsultationId(session.0), "video step not journaled: {e}");
        }
    }

    /// A clinician's browser joins with its offer; the session opens now
    /// if it had not (the link to the other site comes up meanwhile).
    pub(super) fn join_video(
        &mut self,
        id: ConsultationId,
        (person, role): (String, Role),
        offer: &str,
    ) -> Result<(SeatId, String), NodeError> {
        let (session, others) = self.video_session(&id)?;
        self.still_open(&id)?;
        let media = self.media_plane()?;
        if !others.iter().all(|o| media.is_linked(session, *o))
            && let Err(e) = self.open_video(id, Some((person.clone(), role)))
        {
            tracing::info!(consultation = %id, "video: the browser joins, the other site later: {e}");
        }
        let who = Person {
            person,
            role,
            org: self.me.cert.name.clone(),
        };
        Ok(self.media_plane()?.join(session, who, offer)?)
    }

    pub(super) fn leave_video(
        &mut self,
        id: ConsultationId,
        seat: SeatId,
        by: (String, Role),
    ) -> Result<(), NodeError> {
        let (session, _) = self.video_session(&id)?;
        let who = self.media_plane()?.leave(session, seat, by)?;
        let reason = "left the room".to_owned();
        self.journal_person(session, &who, VideoStep::Left { reason });
        Ok(())
    }

    /// Every consultation as the node starts: sessions whose time is now open.
    pub(super) fn schedule_all(&mut self) {
        let now = self.now();
        for case in self.desk.cases() {
            self.schedule.handle_consultation(now, &case.consultation);
        }
        self.drive_schedule();
    }

    /// The consultation changed: its session may open or end.
    pub(super) fn schedule_video(&mut self, id: &ConsultationId) {
        let now = self.now();
        if let Some(case) = self.desk.case(id) {
            self.schedule.handle_consultation(now, &case.consultation);
        }
        self.drive_schedule();
    }

    pub(super) fn drive_schedule(&mut self) {
        while let Some(output) = self.schedule.poll_output() {
            match output {
                ScheduleOutput::Open { session, offer_to } => {
                    tracing::info!(consultation = %ConsultationId(session.0), "video session opens");
                    if self.media.is_none() {
                        tracing::warn!("a video session opens but video is off at this site");
                        continue;
                    }
                    for org in offer_to {
                        if !self.ready(&org.to_peer_id()) {
                            self.dial_hop(org);
                            let now = self.now();
                            self.schedule.handle_offer_failed(now, session, org);
                        } else {
                            match self.offer_video(session, org) {
                                // Opened by hand before its time.
                                Ok(()) | Err(NodeError::Media(MediaError::Exists { .. })) => {}
                                Err(e) => tracing::warn!(%org, "video offer not sent: {e}"),
                            }
                        }
                    }
                }
                ScheduleOutput::End { session, reason } => {
                    let seats = (self.media.as_ref()).map(|m| m.seats()).unwrap_or_default();
                    for seat in seats.into_iter().filter(|s| s.session == session) {
                        let reason = format!("session ended: {reason}");
                        self.journal_person(session, &seat.who, VideoStep::Left { reason });
                    }
                    let closed = (self.media.as_ref()).map(|m| m.close(session));
                    for org in closed.unwrap_or_default() {
                        let reason = format!("session ended: {reason}");
                        self.journal_video(session, org, VideoStep::Left { reason });
                    }
                }
            }
        }
    }

    /// Refuses a closed consultation's session.
    fn still_open(&self, id: &ConsultationId) -> Result<(), NodeError> {
        let status = self.desk.case(id).map(|c| c.consultation.status);
        match status.filter(|s| s.is_final()) {
            Some(status) => Err(NodeError::Video(format!(
                "the consultation is {status}: its video session is over"
            ))),
            None => Ok(()),
        }
    }

    /// Opens the consultation's session now, before its appointment or
    /// without one: offers go to every other site. A site not connected
    /// yet is offered again while the session is open; when none is, the
    /// session stays closed and the error says so.
    pub(super) fn open_video(
        &mut self,
        id: ConsultationId,
        by: Option<(String, Role)>,
    ) -> Result<SessionId, NodeError> {
        let (session, others) = self.video_session(&id)?;
        self.still_open(&id)?;
        self.media_plane()?;
        let mut offered = Vec::new();
        let mut failed = Vec::new();
        let mut first_error = None;
        for &to in &others {
            match self.offer_video(session, to) {
                Ok(()) => offered.push(to),
                // Linked already: nothing to do for that site.
                Err(e @ NodeError::Media(MediaError::Exists { .. })) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    failed.push(to);
                    first_error.get_or_insert(e);
                }
            }
        }
        if offered.is_empty()
            && let Some(e) = first_error
        {
            // Open already (a site invited since is still offered again).
            if self.schedule.is_open(&session) {
                let now = self.now();
                for org in failed {
                    self.schedule.handle_offer_failed(now, session, org);
                }
            }
            return Err(e);
        }
        let (user, role) = by.unzip();
        for &org in &offered {
            let step = VideoStep::Opened;
            let action = JournalAction::Video {
                consultation: session.0,
                org,
                step,
            };
            self.append_journal_soon(user.clone(), role, action)?;
        }
        let participants = std::iter::once(self.me.cert.org).chain(others).collect();
        self.schedule.handle_opened(session, participants);
        let now = self.now();
        for org in failed {
            self.schedule.handle_offer_failed(now, session, org);
        }
        self.drive_schedule();
        Ok(session)
    }

    fn offer_video(&mut self, session: SessionId, to: OrgId) -> Result<(), NodeError> {
        let peer = to.to_peer_id();
        if !self.ready(&peer) {
            self.dial_hop(to);
            return Err(NodeError::Video(format!(
                "not connected to {} yet: try again in a moment",
                self.org_name(&to)
            )));
        }
        let media = self.media_plane()?;
        media.name_site(to, self.org_name(&to));
        // The offer comes back as an event once its socket is ready.
        media.offer(session, to)?;
        Ok(())
    }

    /// The media plane wrote our offer: signed and sent.
    fn send_offer(&mut self, session: SessionId, to: OrgId, offer: Result<String, MediaError>) {
        let offer = match offer {
            Ok(offer) => offer,
            // Linked meanwhile by the other site's offer: nothing to send.
            Err(MediaError::Exists { .. }) => return,
            Err(e) => return self.offer_failed(session, to, e.to_string()),
        };
        let peer = to.to_peer_id();
        if !self.ready(&peer) {
            self.close_link(session, to);
            return self.offer_failed(session, to, "the other site disconnected".into());
        }
        let signal = self.signal(session, to, Description::Offer(offer));
        if self.is_probe(&session) {
            let request = Request::VideoProbe(signal);
            return self.request(peer, request, Pending::Video(session, to));
        }
        self.request(
            peer,
            Request::VideoOffer(signal),
            Pending::Video(session, to),
        );
        self.journal_video(session, to, VideoStep::Offered);
    }

    /// Our offer did not go out: said, and tried again while the session
    /// is open.
    fn offer_failed(&mut self, session: SessionId, to: OrgId, reason: String) {
        self.video_failed(session, to, reason);
        let now = self.now();
        self.schedule.handle_offer_failed(now, session, to);
    }

    fn close_link(&self, session: SessionId, org: OrgId) {
        if let Some(media) = &self.media {
            media.close_link(session, org);
        }
    }

    /// An offer from `from`: taken only for a consultation the two share,
    /// signed by `from` itself; answered with our signed description.
    /// Refusals of what was signed go to the journal as security events.
    pub(super) fn answer_video(&mut self, from: OrgId, signed: &Signed<Signal>) -> Response {
        let refuse = |reason: String| Response::Refused(Refusal::Invalid(reason));
        let session = match signed.decode_unverified() {
            Ok(signal) => signal.session,
            Err(e) => return refuse(format!("video signal: {e}")),
        };
        let me = self.me.cert.org;
        let id = ConsultationId(session.0);
        let participants: Vec<OrgId> = match self.video_session(&id) {
            Ok((_, others)) => std::iter::once(me).chain(others).collect(),
            Err(_) => return refuse("no consultation of ours has this video session".into()),
        };
        if let Err(e) = self.still_open(&id) {
            return refuse(e.to_string());
        }
        let checked = match accept(signed, me, session, &participants) {
            Ok(signal) if signal.from == from => Ok(signal),
            Ok(signal) => Err(format!(
                "the offer is signed by {}, not by {from} who sent it",
                signal.from
            )),
            Err(e) => Err(e.to_string()),
        };
        let signal = match checked {
            Ok(signal) => signal,
            Err(reason) => {
                tracing::warn!(%from, "video offer refused: {reason}");
                self.journal_video(
                    session,
                    from,
                    VideoStep::Refused {
                        reason: reason.clone(),
                    },
                );
                return refuse(reason);
            }
        };
        let Description::Offer(offer) = signal.description else {
            return refuse("expected an offer".into());
        };
        let Ok(media) = self.media_plane() else {
            return refuse("video is off at this site".into());
        };
        // Both sides opened at once: the smaller id's offer stands, whether
        // it still waits for its answer or was answered before this one
        // came (answering this would replace a link the other site has
        // just set up with us). An ICE restart of a link is not a crossing.
        if offers_to(me, from)
            && media.is_linked(session, from)
            && !media.is_restart(session, from, &offer)
        {
            return refuse("our offer crossed yours and stands: answer it".into());
        }
        media.name_site(from, self.org_name(&from));
        let answer = match media.answer(session, from, &offer) {
            Ok(answer) => answer,
            Err(e) => return refuse(e.to_string()),
        };
        // Opened here by this offer: the sites this one offers to are
        // offered now, so three or more sites all link to each other.
        self.schedule.handle_opened(session, participants);
        self.drive_schedule();
        self.journal_video(session, from, VideoStep::Answered);
        Response::VideoAnswer(self.signal(session, from, Description::Answer(answer)))
    }

    pub(super) fn on_video_answer(&mut self, session: SessionId, org: OrgId, response: Response) {
        let me = self.me.cert.org;
        let answer = match response {
            Response::VideoAnswer(signed) => match accept(&signed, me, session, &[me, org]) {
                Ok(Signal {
                    from,
                    description: Description::Answer(answer),
                    ..
                }) if from == org => answer,
                Ok(_) => return self.video_failed(session, org, "not an answer from it".into()),
                Err(e) => {
                    tracing::warn!(%org, "video answer refused: {e}");
                    let reason = e.to_string();
                    self.journal_video(session, org, VideoStep::Refused { reason });
                    return self.video_failed(session, org, e.to_string());
                }
            },
            // Our offer crossed theirs and we answered theirs: nothing failed.
            Response::Refused(_)
                if !self
                    .media_plane()
                    .is_ok_and(|m| m.is_offering(session, org)) =>
            {
                return;
            }
            // Nobody will answer the offering link: it goes (when our offer
            // crossed theirs, theirs sets up the link when it comes).
            Response::Refused(reason) => {
                self.close_link(session, org);
                return self.video_failed(session, org, format!("refused: {reason}"));
            }
            other => return self.video_failed(session, org, format!("answered {other:?}")),
        };
        let applied = self
            .media_plane()
            .and_then(|m| Ok(m.answered(session, org, &answer)?));
        if let Err(e) = applied {
            self.video_failed(session, org, e.to_string());
        }
    }

    pub(super) fn video_failed(&mut self, session: SessionId, org: OrgId, reason: String) {
        tracing::warn!(%org, "video link failed: {reason}");
        self.emit(NodeEvent::Video {
            session,
            org,
            event: LinkEvent::Failed(reason),
        });
    }

    pub(super) fn video_send(
        &mut self,
        session: SessionId,
        org: OrgId,
        payload: VideoPayload,
    ) -> Result<bool, NodeError> {
        let media = self.media_plane()?;
        Ok(match payload {
            VideoPayload::Data(bytes) => media.send_data(session, org, &bytes)?,
            VideoPayload::Frame(frame) => media.send_frame(session, org, &frame).map(|()| true)?,
        })
    }

    /// `konsilium sessions`: every video link, by consultation.
    pub(super) fn sessions_report(&self) -> crate::telemetry::report::SessionsReport {
        use crate::telemetry::report::SessionsReport;
        let Some(media) = &self.media else {
            return SessionsReport {
                sessions: Vec::new(),
                note: Some("video is off at this site: no [video] listen address".into()),
            };
        };
        let links = media.links().into_iter().map(|link| {
            let consultation = match self.is_probe(&link.session) {
                true => probe_label(link.session),
                false => ConsultationId(link.session.0).to_string(),
            };
            let (peer, name) = (link.org.to_string(), self.org_name(&link.org));
            report_row(consultation, peer, name, link.state.as_str(), link.stats)
        });
        let seats = media.seats().into_iter().map(|seat| {
            let consultation = ConsultationId(seat.session.0).to_string();
            let peer = format!("browser {}", seat.seat);
            let name = format!("{} ({})", seat.who.person, seat.who.role.as_str());
            let state = if seat.connected {
                "connected"
            } else {
                "connecting"
            };
            report_row(consultation, peer, name, state, seat.stats)
        });
        let sessions = links.chain(seats).collect();
        SessionsReport {
            sessions,
            note: None,
        }
    }

    pub(super) fn set_video_metrics(&self) {
        let m = &self.metrics;
        let links = (self.media.as_ref()).map(|m| m.links()).unwrap_or_default();
        let seats = (self.media.as_ref()).map(|m| m.seats()).unwrap_or_default();
        for state in konsilium_video::LinkState::ALL {
            let n = (links.iter()).filter(|l| l.state == state).count();
            (m.video_links.with_label_values(&[state.as_str()])).set(n as i64);
        }
        for gauge in [
            &m.video_rtt,
            &m.video_loss,
            &m.video_receive_bps,
            &m.video_send_bps,
            &m.video_receive_fps,
            &m.video_send_fps,
        ] {
            gauge.reset();
        }
        // A browser is labelled by its seat, not its user's name: metrics
        // leave the node, names stay in the journal.
        let rows = (links.iter())
            .map(|l| (l.session, l.org.to_string(), l.stats))
            .chain((seats.iter()).map(|s| (s.session, format!("browser {}", s.seat), s.stats)));
        for (session, site, s) in rows {
            let consultation = ConsultationId(session.0).to_string();
            let labels = [consultation.as_str(), site.as_str()];
            if let Some(rtt) = s.rtt {
                m.video_rtt
                    .with_label_values(&labels)
                    .set(rtt.as_secs_f64());
            }
            if let Some(loss) = s.loss {
                m.video_loss.with_label_values(&labels).set(f64::from(loss));
            }
            (m.video_receive_bps.with_label_values(&labels)).set(s.rx_bps as f64);
            (m.video_send_bps.with_label_values(&labels)).set(s.tx_bps as f64);
            (m.video_receive_fps.with_label_values(&labels)).set(s.rx_fps);
            (m.video_send_fps.with_label_values(&labels)).set(s.tx_fps);
        }
    }

    pub(super) fn on_media(&mut self, e: MediaEvent) {
        let (session, org, event) = match e {
            MediaEvent::Seat {
                session, who, left, ..
            } => {
                let step = match left {
                    None => VideoStep::Joined,
                    Some(reason) => VideoStep::Left { reason },
                };
                return self.journal_person(session, &who, step);
            }
            MediaEvent::Offer {
                session,
                org,
                offer,
            } => return self.send_offer(session, org, offer),
            MediaEvent::Link {
                session,
                org,
                event,
            } => (session, org, event),
        };
        match &event {
            LinkEvent::Connected => self.journal_video(session, org, VideoStep::Joined),
            // The path was lost: the side that offered the link looks for a
            // new one over the same DTLS session; the link gives up by
            // itself if none is found in time.
            LinkEvent::Disconnected => {
                if let Ok(Err(e)) = self.media_plane().map(|m| m.restart(session, org)) {
                    tracing::warn!(%org, "video: no ICE restart: {e}");
                }
            }
            LinkEvent::Failed(reason) => {
                let reason = reason.clone();
                self.journal_video(session, org, VideoStep::Left { reason });
                self.probe_ended(&session);
                // The offering side sets a lost link up again while the
                // session is open (a restarted site, a changed network).
                if offers_to(self.me.cert.org, org) {
                    let now = self.now();
                    self.schedule.handle_offer_failed(now, session, org);
                }
            }
            _ => {}
        }
        self.emit(NodeEvent::Video {
            session,
            org,
            event,
        });
    }
}
