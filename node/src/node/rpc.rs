//! Peer RPC: requests sent and what each was for, requests answered, and
//! responses matched back to what asked.

use super::*;
use crate::net::budget::Framed;
use crate::net::codec::{self, Inbound, MalformedFrame};

/// What an outbound request was for.
pub(super) enum Pending {
    /// A request of the directory machine's.
    Sync(SyncToken),
    Revocations,
    Deliver(Token),
    /// A parcel: its packages' tokens, in its order.
    DeliverMany(Vec<Token>),
    Receipt,
    /// A piece of an attachment, for the fetch machine.
    Fetch(PieceToken),
    /// Lost consultation state, asked of this organization.
    Recover(OrgId),
    /// Our offer of a video link in this session to this organization.
    Video(konsilium_protocol::video::SessionId, OrgId),
}

impl Node {
    /// Both sides have admitted each other: requests can flow.
    pub(super) fn ready(&self, peer: &PeerId) -> bool {
        self.admission.is_ready(peer)
    }

    pub(super) fn request(&mut self, peer: PeerId, request: Request, what: Pending) {
        self.keep_used(&peer);
        let id = (self.swarm.behaviour_mut().rpc).send_request(&peer, request.into());
        self.pending.insert(id, (peer, what));
    }

    pub(super) fn on_rpc(
        &mut self,
        event: request_response::Event<Framed<Inbound<Request>>, Framed<Response>>,
    ) {
        if let request_response::Event::Message { peer, .. } = &event {
            self.keep_used(peer);
        }
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request:
                            Framed {
                                frame: Inbound::Malformed(malformed),
                                ..
                            },
                        ..
                    },
                ..
            } => {
                let wire = match &malformed {
                    MalformedFrame::Wire(e) => Some(e),
                    MalformedFrame::TooLarge { .. } => None,
                };
                self.malformed(peer, &malformed, wire);
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request:
                            Framed {
                                frame: Inbound::Frame(request),
                                share,
                            },
                        channel,
                        ..
                    },
                ..
            } => {
                let answer = self.answer(peer, request);
                self.reply(vec![Reply::Channel(channel)], answer);
                // Answered, or handed to what bounds it (a package being
                // opened): the request's bytes are the node's no longer.
                drop(share);
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response:
                            Framed {
                                frame: response, ..
                            },
                    },
                ..
            } => {
                if let Some(reply) = self.candidate_requests.remove(&request_id) {
                    let result = match response {
                        Response::Records(batch) => {
                            let n = self
                                .sync
                                .insert_wanted(self.now(), Some(peer), batch.records, &self.trust)
                                .iter()
                                .filter(|r| r.is_ok())
                                .count();
                            self.drive_sync();
                            Ok(n)
                        }
                        other => Err(NodeError::NoRoute(format!(
                            "regional center answered {other:?}"
                        ))),
                    };
                    let _ = reply.send(result);
                } else if let Some((_, what)) = self.pending.remove(&request_id) {
                    self.on_response(peer, what, response);
                }
            }
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                if let Some(reply) = self.candidate_requests.remove(&request_id) {
                    let _ = reply.send(Err(NodeError::NoRoute(format!(
                        "regional center unreachable: {error}"
                    ))));
                }
                if let Some((_, what)) = self.pending.remove(&request_id) {
                    match what {
                        Pending::Deliver(token) => {
                            self.outbox
                                .handle_failure(self.now(), token, &error.to_string())
                        }
                        Pending::DeliverMany(tokens) => {
                            self.parcel_failed(tokens, &error.to_string())
                        }
                        // The partial file keeps what arrived; the next delivery attempt resumes.
                        Pending::Fetch(token) => {
                            self.fetches.handle_failure(token, &error.to_string());
                            self.drive_fetches();
                        }
                        Pending::Sync(token) => {
                            self.sync.handle_failure(self.now(), token);
                            self.drive_sync();
                        }
                        Pending::Recover(org) => {
                            self.on_recovery_answer(org, Err(error.to_string()))
                        }
                        Pending::Video(session, org) => {
                            self.video_failed(session, org, format!("offer not answered: {error}"))
                        }
                        _ => tracing::debug!(%peer, "request failed: {error}"),
                    }
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound request failed: {error}")
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Answers a request on its stream, within the answers' budget.
    pub(super) fn respond(
        &mut self,
        channel: request_response::ResponseChannel<Framed<Response>>,
        response: Response,
    ) {
        let answer = codec::answer(&self.budgets.answers, response);
        let _ = (self.swarm.behaviour_mut().rpc).send_response(channel, answer);
    }

    pub(super) fn answer(&mut self, peer: PeerId, request: Request) -> Answer {
        // The gate already keeps the RPC closed to unadmitted peers; this
        // covers a peer refused while its stream was being read.
        let Some(from) = self.admission.admitted(&peer) else {
            return Answer::Now(Response::Refused(Refusal::NotAdmitted));
        };
        if self.role == crate::config::NodeRole::Bootstrap
            && matches!(
                request,
                Request::Deliver(_)
                    | Request::DeliverMany(_)
                    | Request::Candidates { .. }
                    | Request::FetchBlob { .. }
                    | Request::Recover { .. }
            )
        {
            return Answer::Now(Response::Refused(Refusal::BootstrapNode));
        }
        let response = match request {
            request @ (Request::SyncDigest(_)
            | Request::SyncOffer(_)
            | Request::PushRecords(_)
            | Request::WantRecords(_)) => {
                let response = self
                    .sync
                    .handle_request(self.now(), peer, request, &self.trust);
                self.drive_sync();
                response
            }
            Request::Deliver(package) => return self.receive_package(from, package),
            Request::DeliverMany(packages) => return self.receive_parcel(from, packages),
            Request::Receipt(receipt) => {
                // Done whatever it was: a receipt for a package delivered
                // already, or a bad one, needs nothing from the sender.
                if let Err(e) = self.outbox.handle_receipt(self.now(), receipt) {
                    tracing::debug!(%from, "receipt: {e}");
                }
                Response::Done
            }
            Request::Candidates {
                specialty,
                min_level,
                urgency,
            } => self.candidates(from, specialty, min_level, urgency),
            Request::FetchBlob { hash, offset, len } => {
                self.serve_piece(from, hash, offset, len.min(MAX_BLOB_CHUNK))
            }
            Request::Recover { since } => self.serve_recovery(from, since),
            Request::VideoOffer(signal) => self.answer_video(from, &signal),
            Request::VideoProbe(signal) => self.answer_probe(from, &signal),
            Request::Revocations(notices) => {
                let now = self.now();
                (self.admission).take_notices(now, from, notices, &mut self.trust);
                self.drive_admission();
                Response::Done
            }
        };
        Answer::Now(response)
    }

    pub(super) fn on_response(&mut self, peer: PeerId, what: Pending, response: Response) {
        match (what, response) {
            (Pending::Sync(token), response) => {
                if let Err(e) = self
                    .sync
                    .handle_response(self.now(), token, response, &self.trust)
                {
                    tracing::debug!(%peer, "directory exchange: {e}");
                }
                self.drive_sync();
            }
            (Pending::Deliver(token), response) => {
                self.outbox.handle_response(self.now(), token, response)
            }
            (Pending::DeliverMany(tokens), response) => {
                self.on_parcel_answer(peer, tokens, response)
            }
            (Pending::Fetch(token), Response::Blob(bytes)) => {
                self.fetches.handle_piece(token, bytes);
                self.drive_fetches();
            }
            (Pending::Fetch(token), other) => {
                tracing::warn!(%peer, "attachment fetch refused: {other:?}");
                self.fetches
                    .handle_failure(token, &format!("{peer} answered {other:?}"));
                self.drive_fetches();
            }
            (Pending::Recover(org), response) => self.on_recovery_answer(org, Ok(response)),
            (Pending::Video(session, org), response) => {
                self.on_video_answer(session, org, response)
            }
            (Pending::Revocations | Pending::Receipt, _) => {}
        }
    }
}
