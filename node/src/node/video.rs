//! Video links between the sites of a consultation: offers and answers,
//! signed by each organization and checked against who takes part, travel
//! in the RPC; the links themselves run in the media plane
//! (`crate::media`). A consultation's session has its two organizations as
//! participants.

use super::*;
use crate::media::MediaEvent;
use konsilium_protocol::video::{Description, SessionId, Signal, accept};
use konsilium_video::LinkEvent;

impl Node {
    /// The video session of a consultation, and the organization at the other end.
    fn video_session(&self, id: &ConsultationId) -> Result<(SessionId, OrgId), NodeError> {
        let (_, c) = self.load_consultation(id)?;
        let other = konsilium_protocol::desk::counterpart(&c.request, self.me.cert.org);
        Ok((SessionId(id.0), other))
    }

    fn media(&self) -> Result<&crate::media::MediaPlane, NodeError> {
        (self.media.as_ref())
            .ok_or_else(|| NodeError::Video("video is off at this site: no video address".into()))
    }

    fn signal(&self, session: SessionId, to: OrgId, description: Description) -> Signed<Signal> {
        let signal = Signal {
            session,
            from: self.me.cert.org,
            to,
            description,
            at: self.now(),
        };
        Signed::sign(&self.identity, &signal)
    }

    pub(super) fn open_video(&mut self, id: ConsultationId) -> Result<SessionId, NodeError> {
        let (session, to) = self.video_session(&id)?;
        let peer = to.to_peer_id();
        if !self.ready(&peer) {
            self.dial_hop(to);
            return Err(NodeError::Video(format!(
                "not connected to {} yet: try again in a moment",
                self.org_name(&to)
            )));
        }
        let offer = self.media()?.offer(session, to)?;
        let signal = self.signal(session, to, Description::Offer(offer));
        self.request(
            peer,
            Request::VideoOffer(signal),
            Pending::Video(session, to),
        );
        Ok(session)
    }

    /// An offer from `from`: taken only for a consultation the two share,
    /// signed by `from` itself; answered with our signed description.
    pub(super) fn answer_video(&mut self, from: OrgId, signed: &Signed<Signal>) -> Response {
        let refuse = |reason: String| Response::Refused(Refusal::Invalid(reason));
        let session = match signed.decode_unverified() {
            Ok(signal) => signal.session,
            Err(e) => return refuse(format!("video signal: {e}")),
        };
        let me = self.me.cert.org;
        let participants = match self.video_session(&ConsultationId(session.0)) {
            Ok((_, other)) => [me, other],
            Err(_) => return refuse("no consultation of ours has this video session".into()),
        };
        let signal = match accept(signed, me, session, &participants) {
            Ok(signal) if signal.from == from => signal,
            Ok(signal) => {
                return refuse(format!(
                    "the offer is signed by {}, not by {from} who sent it",
                    signal.from
                ));
            }
            Err(e) => {
                tracing::warn!(%from, "video offer refused: {e}");
                return refuse(e.to_string());
            }
        };
        let Description::Offer(offer) = signal.description else {
            return refuse("expected an offer".into());
        };
        let answer = match self.media().map(|m| m.answer(session, from, &offer)) {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return refuse(e.to_string()),
            Err(e) => return refuse(e.to_string()),
        };
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
                    return self.video_failed(session, org, e.to_string());
                }
            },
            Response::Refused(reason) => {
                return self.video_failed(session, org, format!("refused: {reason}"));
            }
            other => return self.video_failed(session, org, format!("answered {other:?}")),
        };
        let applied = self
            .media()
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
        let media = self.media()?;
        Ok(match payload {
            VideoPayload::Data(bytes) => media.send_data(session, org, &bytes)?,
            VideoPayload::Frame(frame) => media.send_frame(session, org, &frame).map(|()| true)?,
        })
    }

    /// `konsilium sessions`: every video link, by consultation.
    pub(super) fn sessions_report(&self) -> crate::telemetry::report::SessionsReport {
        use crate::telemetry::report::{SessionReport, SessionsReport};
        let Some(media) = &self.media else {
            return SessionsReport {
                sessions: Vec::new(),
                note: Some("video is off at this site: no [video] listen address".into()),
            };
        };
        let sessions = (media.links().into_iter())
            .map(|(session, org, connected)| SessionReport {
                consultation: ConsultationId(session.0).to_string(),
                peer: org.to_string(),
                state: if connected { "connected" } else { "connecting" }.into(),
                // Link statistics are not collected yet.
                rtt_ms: None,
                loss: None,
                bitrate_bps: None,
            })
            .collect();
        SessionsReport {
            sessions,
            note: None,
        }
    }

    pub(super) fn on_media(&mut self, e: MediaEvent) {
        self.emit(NodeEvent::Video {
            session: e.session,
            org: e.org,
            event: e.event,
        });
    }
}
