//! `konsilium probe --video`: whether media gets from this site to another
//! and how (straight to its address, through a NAT's mapping, or not at
//! all), without a consultation. The link carries nothing; the prober
//! closes it once its statistics name the route, and the other side lets
//! it time out. Only admitted organizations may ask, and at most
//! `MAX_ANSWERED` such links are held at once.

use super::*;
use konsilium_protocol::video::{Description, SessionId, Signal, accept};

/// Probe links this site answers at once; more are refused.
const MAX_ANSWERED: usize = 4;

impl Node {
    /// Starts a probe link to `to`; how it goes comes as video events of
    /// the returned session.
    pub(super) fn probe_video(&mut self, to: OrgId) -> Result<SessionId, NodeError> {
        if !self.ready(&to.to_peer_id()) {
            self.dial_hop(to);
            return Err(NodeError::Video(format!(
                "not connected to {} yet: try again in a moment",
                self.org_name(&to)
            )));
        }
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| NodeError::Video(format!("no randomness: {e}")))?;
        let session = SessionId(id);
        self.video_probes.insert(session);
        if let Err(e) = self.media_plane()?.offer(session, to) {
            self.video_probes.remove(&session);
            return Err(e.into());
        }
        Ok(session)
    }

    pub(super) fn close_probe(&mut self, session: SessionId) {
        if self.video_probes.remove(&session)
            && let Some(media) = &self.media
        {
            media.close(session);
        }
    }

    /// Whether the session is a probe's (ours or one we answered): not
    /// journaled, never retried.
    pub(super) fn is_probe(&self, session: &SessionId) -> bool {
        self.video_probes.contains(session) || self.answered_probes.contains(session)
    }

    /// A probe offer from `from`, signed by it, answered like a session's.
    pub(super) fn answer_probe(&mut self, from: OrgId, signed: &Signed<Signal>) -> Response {
        let refuse = |reason: String| Response::Refused(Refusal::Invalid(reason));
        let me = self.me.cert.org;
        let Ok(session) = signed.decode_unverified().map(|s| s.session) else {
            return refuse("video probe: not a signal".into());
        };
        let offer = match accept(signed, me, session, &[me, from]) {
            Ok(Signal {
                from: signer,
                description: Description::Offer(offer),
                ..
            }) if signer == from => offer,
            Ok(_) => return refuse("a probe is an offer signed by who sends it".into()),
            Err(e) => return refuse(e.to_string()),
        };
        if self.answered_probes.len() >= MAX_ANSWERED {
            return refuse(format!(
                "{MAX_ANSWERED} video probes are open here already: try again in a minute"
            ));
        }
        let answer = match self.media_plane().map(|m| m.answer(session, from, &offer)) {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return refuse(e.to_string()),
            Err(e) => return refuse(e.to_string()),
        };
        self.answered_probes.insert(session);
        Response::VideoAnswer(self.signal(session, from, Description::Answer(answer)))
    }

    /// A probe link we answered ended: its place is free.
    pub(super) fn probe_ended(&mut self, session: &SessionId) {
        self.answered_probes.remove(session);
    }
}
