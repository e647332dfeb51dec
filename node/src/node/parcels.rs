//! Packages to one hop leave a turn together (`Request::DeliverMany`), and
//! a parcel a peer sent is answered once every package in it is: the
//! delivery machine still decides each package alone
//! (`konsilium_protocol::outbox::parcel`).

use super::*;
use konsilium_protocol::outbox::{MAX_PARCEL, Parcel, Token};
use konsilium_protocol::rpc::DeliveryAnswer;

/// Parcels peers sent us whose answers are not all in yet.
#[derive(Default)]
pub(super) struct Gathering {
    next: u64,
    parcels: HashMap<u64, Gathered>,
}

/// A parcel being answered: where its answers go, and those in so far.
struct Gathered {
    replies: Vec<Reply>,
    answers: Vec<Option<DeliveryAnswer>>,
    left: usize,
}

impl Node {
    /// A package the delivery machine sends now: it joins its hop's
    /// parcel, which leaves when full or at the turn's end.
    pub(super) fn send_package(&mut self, token: Token, to: OrgId, id: PackageId) {
        match self.store.outbox_entry(&id) {
            Ok(Some(stored)) => {
                let bytes = stored.package.body.len();
                for parcel in self.parcels.add(to, token, stored.package, bytes) {
                    self.send_parcel(parcel);
                }
            }
            Ok(None) => {
                let reason = "the package is missing from storage";
                self.outbox.handle_failure(self.now(), token, reason)
            }
            Err(e) => self
                .outbox
                .handle_failure(self.now(), token, &e.to_string()),
        }
    }

    /// The turn is over: every parcel still open leaves.
    pub(super) fn send_parcels(&mut self) {
        for parcel in self.parcels.take() {
            self.send_parcel(parcel);
        }
    }

    fn send_parcel(&mut self, parcel: Parcel<seal::SealedPackage>) {
        let peer = parcel.to.to_peer_id();
        let mut items = parcel.items;
        if items.len() == 1
            && let Some((token, package)) = items.pop()
        {
            return self.request(peer, Request::Deliver(package), Pending::Deliver(token));
        }
        let (tokens, packages) = items.into_iter().unzip();
        let request = Request::DeliverMany(packages);
        self.request(peer, request, Pending::DeliverMany(tokens));
    }

    /// The answer to a parcel we sent: each package's own, or one for the
    /// whole parcel (a refusal of it, say by a bootstrap node).
    pub(super) fn on_parcel_answer(
        &mut self,
        peer: PeerId,
        tokens: Vec<Token>,
        response: Response,
    ) {
        let now = self.now();
        match response {
            Response::Answers(answers) if answers.len() == tokens.len() => {
                let answers = (tokens.into_iter())
                    .zip(answers.into_iter().map(Response::from))
                    .collect();
                self.outbox.handle_answers(now, answers);
            }
            Response::Answers(answers) => {
                let reason = format!(
                    "{peer} answered {} of a parcel's {} packages",
                    answers.len(),
                    tokens.len()
                );
                self.parcel_failed(tokens, &reason);
            }
            whole => {
                let answers = tokens.into_iter().map(|t| (t, whole.clone())).collect();
                self.outbox.handle_answers(now, answers);
            }
        }
    }

    /// A parcel we sent got no answer: none of its packages did.
    pub(super) fn parcel_failed(&mut self, tokens: Vec<Token>, reason: &str) {
        let now = self.now();
        for token in tokens {
            self.outbox.handle_failure(now, token, reason);
        }
    }

    /// A parcel a peer sent: each package is received as if it came alone.
    /// One too large is refused whole, as transient: its packages are not
    /// refused for good by a limit the sender may not know, it retries.
    pub(super) fn receive_parcel(
        &mut self,
        from: OrgId,
        packages: Vec<seal::SealedPackage>,
    ) -> Answer {
        if packages.len() > MAX_PARCEL {
            return Answer::Now(Response::Refused(Refusal::Transient(format!(
                "a parcel of {} packages: at most {MAX_PARCEL} go in one",
                packages.len()
            ))));
        }
        let answers = packages
            .into_iter()
            .map(|package| self.receive_package(from, package))
            .collect();
        Answer::Parcel(answers)
    }

    /// Answers a parcel once each of its packages' answers is in.
    pub(super) fn gather(&mut self, replies: Vec<Reply>, answers: Vec<Answer>) {
        let n = answers.len();
        let id = self.gathering.next;
        self.gathering.next += 1;
        let gathered = Gathered {
            replies,
            answers: vec![None; n],
            left: n,
        };
        self.gathering.parcels.insert(id, gathered);
        if n == 0 {
            return self.answer_gathered(id);
        }
        for (i, answer) in answers.into_iter().enumerate() {
            self.reply(vec![Reply::Part(id, i)], answer);
        }
    }

    /// One package's answer in parcel `id`; the last sends them all.
    pub(super) fn gathered(&mut self, id: u64, i: usize, response: Response) {
        let Some(gathered) = self.gathering.parcels.get_mut(&id) else {
            return;
        };
        let answer = DeliveryAnswer::try_from(response).unwrap_or_else(|other| {
            tracing::error!("a delivery was answered with {other:?}");
            DeliveryAnswer::Refused(Refusal::Transient("the package was not answered".into()))
        });
        if let Some(slot @ None) = gathered.answers.get_mut(i) {
            *slot = Some(answer);
            gathered.left -= 1;
        }
        if gathered.left == 0 {
            self.answer_gathered(id);
        }
    }

    fn answer_gathered(&mut self, id: u64) {
        let Some(gathered) = self.gathering.parcels.remove(&id) else {
            return;
        };
        let answers = gathered.answers.into_iter().flatten().collect();
        self.send_answer(gathered.replies, Response::Answers(answers));
    }
}
