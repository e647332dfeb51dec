//! `konsilium probe --video`: whether media gets from this site to another
//! and how (straight to its address, through a NAT's mapping, or not at
//! all), without a consultation. The link carries nothing; the prober
//! closes it once its statistics name the route, and the other side lets
//! it time out. Only admitted organizations may ask, and at most
//! `MAX_ANSWERED` such links are held at once, each for at most
//! `ANSWERED_FOR`.

use super::*;
use konsilium_protocol::video::{Description, SessionId, Signal, accept};
use std::time::{Duration, Instant};

/// Probe links this site answers at once; more are refused.
const MAX_ANSWERED: usize = 4;

/// How long an answered probe link is held: a link that never connects
/// (an offer without candidates) would otherwise keep its place, and four
/// of them would refuse every probe until a restart.
pub(super) const ANSWERED_FOR: Duration = Duration::from_secs(120);

/// The session an answered probe link is held under here, derived from
/// the prober and the id it chose. The media plane and the journal know
/// sessions by id alone: a probe held under the id it named could have
/// named a consultation's, and its link would have sat in that
/// consultation's room (roster, media, chat) and turned its journaling off.
pub(super) fn answered_session(prober: OrgId, named: SessionId) -> SessionId {
    let mut hash = blake3::Hasher::new_derive_key("konsilium video probe answered here v1");
    hash.update(prober.as_bytes());
    hash.update(&named.0);
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash.finalize().as_bytes()[..16]);
    SessionId(id)
}

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
        self.video_probes.contains(session) || self.answered_probes.contains_key(session)
    }

    /// A probe offer from `from`, signed by it, answered like a session's.
    pub(super) fn answer_probe(&mut self, from: OrgId, signed: &Signed<Signal>) -> Response {
        let refuse = |reason: String| Response::Refused(Refusal::Invalid(reason));
        let me = self.me.cert.org;
        let Ok(named) = signed.decode_unverified().map(|s| s.session) else {
            return refuse("video probe: not a signal".into());
        };
        let offer = match accept(signed, me, named, &[me, from]) {
            Ok(Signal {
                from: signer,
                description: Description::Offer(offer),
                ..
            }) if signer == from => offer,
            Ok(_) => return refuse("a probe is an offer signed by who sends it".into()),
            Err(e) => return refuse(e.to_string()),
        };
        let session = answered_session(from, named);
        let now = Instant::now();
        self.close_stale_probes(now);
        if self.open_probes(now) >= MAX_ANSWERED && !self.answered_probes.contains_key(&session) {
            return refuse(format!(
                "{MAX_ANSWERED} video probes are open here already: try again in a minute"
            ));
        }
        let answer = match self.media_plane().map(|m| m.answer(session, from, &offer)) {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return refuse(e.to_string()),
            Err(e) => return refuse(e.to_string()),
        };
        self.answered_probes.entry(session).or_insert(now);
        Response::VideoAnswer(self.signal(named, from, Description::Answer(answer)))
    }

    /// Closes the probe links answered `ANSWERED_FOR` ago or more, and
    /// forgets them after as long again: an event of a closed link may
    /// still be on its way, and must be known as a probe's, not journaled.
    /// At most `MAX_ANSWERED` of them were open `ANSWERED_FOR` ago, so
    /// twice that many are held at most.
    fn close_stale_probes(&mut self, now: Instant) {
        let media = self.media.as_ref();
        self.answered_probes.retain(|session, answered| {
            let age = now.duration_since(*answered);
            if age >= ANSWERED_FOR
                && let Some(media) = media
            {
                media.close(*session);
            }
            age < 2 * ANSWERED_FOR
        });
    }

    /// Probe links answered here and not yet `ANSWERED_FOR` old.
    fn open_probes(&self, now: Instant) -> usize {
        (self.answered_probes.values())
            .filter(|answered| now.duration_since(**answered) < ANSWERED_FOR)
            .count()
    }

    /// A probe link we answered ended: its place is free.
    pub(super) fn probe_ended(&mut self, session: &SessionId) {
        self.answered_probes.remove(session);
    }
}
