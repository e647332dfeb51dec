//! The outbox delivery machine: which hop a package goes to, when it is
//! tried again, custody at relays, and receipts back to the sender.
//!
//! It decides; the node carries out. The node feeds in what happened
//! (`handle_*`, `enqueue`), then drains [`Outbox::poll_output`] and sleeps
//! until [`Outbox::poll_timeout`], when it calls [`Outbox::handle_timeout`].
//! The machine holds only package ids and small metadata; the node keeps the
//! bytes and sends them when told to. Nothing here reads a clock, a socket
//! or a file, so tests drive several machines against each other in
//! simulated time.
//!
//! A package's life: queued (due now) -> sent to its next hop when that
//! peer is ready, or the peer is dialled and the attempt counted -> answered
//! with a receipt (delivered: removed), custody (a relay holds it: a
//! relay's own entry is removed, a sender's waits for the receipt), progress
//! (ask again soon), a transient refusal or failure (backoff), or a
//! permanent refusal (kept, without attempts, until it expires) -> removed
//! at expiry if never delivered. A package addressed to its own recipient
//! that stays unreachable goes to the regional relay instead. At most
//! [`WINDOW`] requests are out to one hop; due packages beyond it wait for
//! answers, not for a retry.

mod custody;
mod entry;
mod parcel;
mod relay;
mod retry;
#[cfg(test)]
mod tests;

pub use custody::Custody;
pub use entry::{Entry, Event, Failure, Origin, OutboxError, Output, PackageMeta, Status, Token};
pub use parcel::{MAX_PARCEL, MAX_PARCEL_BYTES, Parcel, Parcels};
pub use relay::Directory;
pub use retry::{CUSTODY_RECHECK, MAX_HELD_RECEIPTS, PROGRESS_RECHECK, UNREACHABLE_AFTER};

use crate::cert::RegionCode;
use crate::delivery::{self, Receipt};
use crate::identity::OrgId;
use crate::rpc::{Refusal, Response};
use crate::seal::{PackageId, SealedPackage};
use crate::signed::Signed;
use crate::time::Timestamp;
use retry::Jitter;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Who this node is, for routing.
#[derive(Debug, Clone)]
pub struct Config {
    pub me: OrgId,
    pub region: RegionCode,
    /// The regional relay (store-and-forward center) packages for other
    /// regions and unreachable recipients go through, if any.
    pub relay: Option<OrgId>,
    /// What this node holds at most for each organization it relays for.
    pub custody: Custody,
}

/// Requests out to one hop at once. A connection carries 128 request
/// streams at a time, both ways and of every kind (the node's limit); a
/// burst of queued packages beyond that would fail for want of a stream and
/// each wait out a retry, so half of them is the window, the other half
/// left to receipts, attachment pieces and the directory. The rest wait,
/// due, and go as answers come back. A sustained burst is bound by the
/// window over each package's round trip (the recipient's flush inside
/// it): 64 keep two cores busier than 32 did.
pub const WINDOW: usize = 64;

/// What to do with a `Request::Deliver` a peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Addressed to this organization: the inbox decides (seen, open, receipt).
    ForUs,
    /// Answer with this now: a refusal, or custody of a package already held.
    Answer(Response),
    /// Carry it: once its attachments are here, store the package with
    /// [`Outbox::entry_for`]'s entry, [`Outbox::enqueue`] it and answer
    /// `Response::Custody`.
    Relay,
}

/// One package the machine tracks: its persisted entry and, while a
/// request for it is out, that request.
#[derive(Debug)]
struct Tracked {
    entry: Entry,
    flight: Option<Flight>,
    /// Its key in [`Outbox::schedule`], if it has one.
    wake: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    token: Token,
    to: OrgId,
}

#[derive(Debug)]
pub struct Outbox {
    config: Config,
    entries: BTreeMap<PackageId, Tracked>,
    /// When each package not in flight next needs the machine.
    schedule: BTreeSet<(Timestamp, PackageId)>,
    /// Each request out: its package and the hop it went to.
    in_flight: BTreeMap<Token, (PackageId, OrgId)>,
    /// Requests out per hop, at most [`WINDOW`].
    flights: BTreeMap<OrgId, usize>,
    /// Due packages that wait for a hop's window, oldest first. An id whose
    /// package was delivered or dropped meanwhile is skipped.
    held: BTreeMap<OrgId, VecDeque<PackageId>>,
    /// Peers admitted both ways: requests can go to them.
    ready: BTreeSet<OrgId>,
    /// Receipts for senders that were not ready, oldest first.
    held_receipts: VecDeque<(OrgId, Signed<Receipt>)>,
    /// What is held for each organization this node relays for.
    carried: custody::Carried,
    next_token: u64,
    jitter: Jitter,
    out: VecDeque<Output>,
}

impl Outbox {
    /// A machine holding `entries`, as the node read them from storage.
    /// Nothing was in flight before a restart: each entry is due at its
    /// `next_attempt`. `seed` drives the retry jitter.
    pub fn new(config: Config, seed: u64, entries: impl IntoIterator<Item = Entry>) -> Self {
        let mut outbox = Outbox {
            config,
            entries: BTreeMap::new(),
            schedule: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            flights: BTreeMap::new(),
            held: BTreeMap::new(),
            ready: BTreeSet::new(),
            held_receipts: VecDeque::new(),
            carried: custody::Carried::default(),
            next_token: 0,
            jitter: Jitter::new(seed),
            out: VecDeque::new(),
        };
        for entry in entries {
            outbox.track(entry);
        }
        outbox
    }

    /// Starts tracking `entry` (in place of one with its id), scheduled.
    fn track(&mut self, entry: Entry) {
        let id = entry.id();
        self.unschedule(id);
        self.carried.add(&entry);
        let tracked = Tracked {
            entry,
            flight: None,
            wake: None,
        };
        if let Some(old) = self.entries.insert(id, tracked) {
            self.carried.remove(&old.entry);
        }
        self.reschedule(id);
    }

    /// The entry for a package to queue: our own goes to its first hop, one
    /// we relay straight to its recipient. The node stores it with the
    /// package's bytes, then calls [`Outbox::enqueue`].
    pub fn entry_for(&self, now: Timestamp, package: PackageMeta, dir: &impl Directory) -> Entry {
        let (origin, next_hop) = if package.sender == self.config.me {
            let hop = relay::first_hop(
                self.config.me,
                &self.config.region,
                self.config.relay,
                package.recipient,
                dir,
            );
            (Origin::Local, hop)
        } else {
            (Origin::Relay, package.recipient)
        };
        Entry {
            package,
            origin,
            next_hop,
            attempts: 0,
            next_attempt: now,
            status: Status::Queued,
            last_error: None,
            queued_at: now,
        }
    }

    /// Starts delivering a package the node has stored durably; due ones
    /// (this one among them) go out at once.
    pub fn enqueue(&mut self, now: Timestamp, entry: Entry) -> Result<(), OutboxError> {
        let id = entry.id();
        if self.entries.contains_key(&id) {
            return Err(OutboxError::AlreadyQueued(id));
        }
        if entry.package.expires <= now {
            let expires = entry.package.expires;
            return Err(OutboxError::Expired { id, expires });
        }
        self.track(entry);
        self.handle_timeout(now);
        Ok(())
    }

    /// Decides on a package a peer delivered to us: ours to take into the
    /// inbox, one to carry for others, or one to refuse. A relay takes a
    /// package only from its sender (the one hop before a relay), within
    /// what it holds for that sender ([`Custody`]): the header is not signed
    /// for the relay, so the peer that delivers is the one charged.
    pub fn inbound(
        &self,
        now: Timestamp,
        from: OrgId,
        package: &SealedPackage,
        dir: &impl Directory,
    ) -> Inbound {
        let header = &package.header;
        if let Err(e) = header.check(now) {
            return Inbound::Answer(Response::Refused(e.into()));
        }
        if header.recipient == self.config.me {
            return Inbound::ForUs;
        }
        let refused = |refusal| Inbound::Answer(Response::Refused(refusal));
        if let Err(refusal) = relay::relay_policy(&self.config.region, from, header.recipient, dir)
        {
            return refused(refusal);
        }
        if header.sender != from {
            return refused(Refusal::NotRelayed {
                recipient: header.recipient,
                policy: format!("this relay takes a package only from its sender, not from {from}"),
            });
        }
        match self.entries.get(&header.id).map(|t| &t.entry.status) {
            // A sender checking back on a package refused further on
            // learns why, and stops.
            Some(Status::Refused(refusal)) => refused(refusal.clone()),
            Some(_) => Inbound::Answer(Response::Custody),
            None => match (self.carried).room(
                self.config.custody,
                from,
                header.recipient,
                entry::held_bytes(package),
            ) {
                Ok(()) => Inbound::Relay,
                Err(refusal) => refused(refusal),
            },
        }
    }

    /// Packages and bytes this node holds for `sender` as its relay.
    #[cfg(test)]
    pub(crate) fn carried_for(&self, sender: &OrgId) -> (usize, u64) {
        self.carried.of(sender)
    }

    /// Sends what is due, dials next hops that are not ready, drops what expired.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let mut dial = BTreeSet::new();
        while let Some(&(at, id)) = self.schedule.first() {
            if at > now {
                break;
            }
            self.unschedule(id);
            if let Some(hop) = self.attempt(now, id) {
                dial.insert(hop);
            }
        }
        self.out
            .extend(dial.into_iter().map(|to| Output::Dial { to }));
    }

    /// `org` is admitted both ways: what waits for it goes now.
    pub fn handle_peer_ready(&mut self, now: Timestamp, org: OrgId) {
        self.ready.insert(org);
        for id in self.waiting_for(org) {
            self.update(id, |e| e.next_attempt = now);
        }
        let (theirs, others) = std::mem::take(&mut self.held_receipts)
            .into_iter()
            .partition::<VecDeque<_>, _>(|(to, _)| *to == org);
        self.held_receipts = others;
        for (to, receipt) in theirs {
            self.out.push_back(Output::SendReceipt { to, receipt });
        }
        self.handle_timeout(now);
    }

    /// Packages whose next hop is `org` and that wait for it: not in
    /// flight, and not refused for good (those are never sent again).
    fn waiting_for(&self, org: OrgId) -> Vec<PackageId> {
        self.entries
            .values()
            .filter(|t| {
                t.entry.next_hop == org
                    && t.flight.is_none()
                    && !matches!(t.entry.status, Status::Refused(_))
            })
            .map(|t| t.entry.id())
            .collect()
    }

    /// The last connection to `org` closed; its requests in flight fail on
    /// their own (`handle_failure`).
    pub fn handle_peer_gone(&mut self, org: OrgId) {
        self.ready.remove(&org);
        self.release_held(org, true);
    }

    /// A dial to `org` failed. The attempt was counted when the dial was
    /// asked for; this only records why, for the operator.
    pub fn handle_dial_failed(&mut self, org: OrgId, reason: &str) {
        for id in self.waiting_for(org) {
            let error = Failure::Unreachable {
                hop: org,
                reason: reason.to_owned(),
            };
            self.update(id, |e| e.last_error = Some(error.to_string()));
            self.event(Event::Retry { id, error });
        }
    }

    /// The answer to a `Request::Deliver` this machine asked for.
    pub fn handle_response(&mut self, now: Timestamp, token: Token, response: Response) {
        self.answer(now, token, response, Signatures::Unchecked);
        self.send_released(now);
    }

    /// The answers to a parcel (`Request::DeliverMany`), in its order. The
    /// receipts' signatures, all by the one recipient, are checked in one
    /// batch, in about half the time of checking each; if the batch fails,
    /// each receipt is checked alone, so a bad one fails only its package.
    pub fn handle_answers(&mut self, now: Timestamp, answers: Vec<(Token, Response)>) {
        let checks: Vec<_> = (answers.iter())
            .filter_map(|(token, response)| {
                let Response::Receipt(receipt) = response else {
                    return None;
                };
                let (id, _) = self.in_flight.get(token)?;
                let entry = &self.entries.get(id)?.entry;
                Some(receipt.check_by(entry.package.recipient.checked_key()))
            })
            .collect();
        let signatures = match crate::signed::verify_all(&checks) {
            Ok(()) => Signatures::Checked,
            Err(_) => Signatures::Unchecked,
        };
        for (token, response) in answers {
            self.answer(now, token, response, signatures);
        }
        self.send_released(now);
    }

    fn answer(&mut self, now: Timestamp, token: Token, response: Response, sigs: Signatures) {
        let Some((id, hop)) = self.land(token) else {
            return;
        };
        match response {
            Response::Receipt(receipt) => {
                let entry = &self.entries[&id].entry;
                match check(entry, &receipt, sigs) {
                    Ok(()) => self.delivered(id, receipt),
                    Err(error) => self.failed(now, id, Failure::BadReceipt { hop, error }),
                }
            }
            Response::Custody => self.custody(now, id, hop),
            Response::Refused(reason) if reason.is_permanent() => self.refused(id, reason),
            Response::Refused(reason) => self.failed(now, id, Failure::Refused { hop, reason }),
            Response::Fetching { have, total } => {
                self.update(id, |e| {
                    e.next_attempt = now.saturating_add(PROGRESS_RECHECK);
                });
                self.event(Event::Progress { id, have, total });
            }
            _ => self.failed(now, id, Failure::Unexpected { hop }),
        }
    }

    /// A `Request::Deliver` this machine asked for got no answer.
    pub fn handle_failure(&mut self, now: Timestamp, token: Token, reason: &str) {
        if let Some((id, hop)) = self.land(token) {
            let reason = reason.to_owned();
            self.failed(now, id, Failure::Request { hop, reason });
        }
        self.send_released(now);
    }

    /// An answer (or a receipt that came another way) made room in its
    /// hop's window: the package held for it goes in the same step. Left
    /// to the next timeout, it waited for the node's timer (a millisecond's
    /// tick), and under a burst a window's answers arrive together, so the
    /// whole window waited for that tick and went out together again,
    /// round after round.
    fn send_released(&mut self, now: Timestamp) {
        if self.schedule.first().is_some_and(|&(at, _)| at <= now) {
            self.handle_timeout(now);
        }
    }

    /// A receipt a peer sent us (`Request::Receipt`): the recipient's
    /// answer to a package we sent through a relay, or one we relayed.
    /// Receipts for packages no longer here (delivered already) change
    /// nothing; answer `Response::Done` whatever this returns.
    pub fn handle_receipt(
        &mut self,
        now: Timestamp,
        receipt: Signed<Receipt>,
    ) -> Result<(), OutboxError> {
        let id = receipt
            .decode_unverified()
            .map_err(OutboxError::Unreadable)?
            .package;
        let tracked = self.entries.get(&id).ok_or(OutboxError::NotQueued(id))?;
        check(&tracked.entry, &receipt, Signatures::Unchecked)
            .map_err(|error| OutboxError::BadReceipt { id, error })?;
        if let Some(flight) = tracked.flight {
            // The answer to that request no longer matters.
            self.ground(flight.token);
        }
        self.delivered(id, receipt);
        self.send_released(now);
        Ok(())
    }

    /// The next thing for the node to do, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call [`Outbox::handle_timeout`] next: the earliest attempt or
    /// expiry due. `None` while nothing waits on time.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.schedule.first().map(|&(at, _)| at)
    }

    pub fn get(&self, id: &PackageId) -> Option<&Entry> {
        self.entries.get(id).map(|t| &t.entry)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().map(|t| &t.entry)
    }

    /// Whether a request for `id` is out now.
    pub fn is_in_flight(&self, id: &PackageId) -> bool {
        self.entries.get(id).is_some_and(|t| t.flight.is_some())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One due package: sent, dialled for (returned), or dropped.
    fn attempt(&mut self, now: Timestamp, id: PackageId) -> Option<OrgId> {
        let entry = &self.entries.get(&id)?.entry;
        if entry.package.expires <= now {
            let origin = entry.origin;
            if !matches!(entry.status, Status::Refused(_)) {
                self.event(Event::Expired { id, origin });
            }
            self.remove(id);
            return None;
        }
        if entry.next_attempt > now || matches!(entry.status, Status::Refused(_)) {
            self.reschedule(id);
            return None;
        }
        let hop = entry.next_hop;
        if self.ready.contains(&hop) {
            if self.flights.get(&hop).copied().unwrap_or(0) >= WINDOW {
                self.held.entry(hop).or_default().push_back(id);
            } else {
                self.send(id, hop);
            }
            return None;
        }
        let relay = self.config.relay.filter(|&r| r != self.config.me);
        let jitter = self.jitter.next();
        self.update(id, |e| {
            e.attempts += 1;
            e.next_attempt = delivery::next_attempt(now, e.attempts, jitter);
            // An unreachable recipient: let the regional center hold it and
            // forward it later.
            if let Some(relay) = relay
                && e.origin == Origin::Local
                && e.next_hop == e.package.recipient
                && e.attempts >= UNREACHABLE_AFTER
                && relay != e.next_hop
            {
                e.next_hop = relay;
                e.next_attempt = now;
            }
        });
        Some(hop)
    }

    fn send(&mut self, id: PackageId, to: OrgId) {
        let token = Token(self.next_token);
        self.next_token += 1;
        self.unschedule(id);
        if let Some(t) = self.entries.get_mut(&id) {
            t.flight = Some(Flight { token, to });
        }
        self.in_flight.insert(token, (id, to));
        *self.flights.entry(to).or_default() += 1;
        self.out.push_back(Output::Deliver { token, to, id });
    }

    /// The package and hop a request was for, if it still matters.
    fn land(&mut self, token: Token) -> Option<(PackageId, OrgId)> {
        let (id, _) = self.ground(token)?;
        let flight = self.entries.get_mut(&id)?.flight.take()?;
        Some((id, flight.to))
    }

    /// A request is no longer out: its hop's window has room for the
    /// oldest package held for it, due now.
    fn ground(&mut self, token: Token) -> Option<(PackageId, OrgId)> {
        let (id, hop) = self.in_flight.remove(&token)?;
        match self.flights.get_mut(&hop) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                self.flights.remove(&hop);
            }
        }
        // A hop gone releases everything held for it: no answer will come
        // back from it to release the rest one by one.
        self.release_held(hop, !self.ready.contains(&hop));
        Some((id, hop))
    }

    /// Puts the oldest package held for `hop` (or all of them) back on the
    /// schedule, due.
    fn release_held(&mut self, hop: OrgId, all: bool) {
        let Some(mut held) = self.held.remove(&hop) else {
            return;
        };
        while let Some(next) = held.pop_front() {
            let waiting =
                (self.entries.get(&next)).is_some_and(|t| t.flight.is_none() && t.wake.is_none());
            if waiting {
                self.reschedule(next);
                if !all {
                    break;
                }
            }
        }
        if !held.is_empty() {
            self.held.insert(hop, held);
        }
    }

    fn delivered(&mut self, id: PackageId, receipt: Signed<Receipt>) {
        let Some(tracked) = self.entries.get(&id) else {
            return;
        };
        let entry = &tracked.entry;
        let (origin, sender) = (entry.origin, entry.package.sender);
        self.event(Event::Delivered {
            id,
            recipient: entry.package.recipient,
            origin,
            attempts: entry.attempts,
            receipt: receipt.clone(),
        });
        self.remove(id);
        if origin == Origin::Relay {
            self.forward_receipt(sender, receipt);
        }
    }

    /// Receipts travel back to the sender through the relay that carried
    /// the package: sent now if the sender is ready, else held and the
    /// sender dialled.
    fn forward_receipt(&mut self, to: OrgId, receipt: Signed<Receipt>) {
        if self.ready.contains(&to) {
            self.out.push_back(Output::SendReceipt { to, receipt });
            return;
        }
        if self.held_receipts.len() >= MAX_HELD_RECEIPTS {
            self.held_receipts.pop_front();
        }
        self.held_receipts.push_back((to, receipt));
        self.out.push_back(Output::Dial { to });
    }

    fn custody(&mut self, now: Timestamp, id: PackageId, relay: OrgId) {
        let Some(tracked) = self.entries.get(&id) else {
            return;
        };
        match tracked.entry.origin {
            // Our own package: keep it until the recipient's receipt; the
            // relay holds it durably, so check back rarely.
            Origin::Local => self.update(id, |e| {
                e.status = Status::InCustody { relay };
                e.next_attempt = now.saturating_add(CUSTODY_RECHECK);
            }),
            Origin::Relay => self.remove(id),
        }
        self.event(Event::Custody { id, relay });
    }

    fn refused(&mut self, id: PackageId, reason: Refusal) {
        self.update(id, |e| {
            e.attempts += 1;
            e.last_error = Some(reason.to_string());
            e.status = Status::Refused(reason.clone());
            // Looked at again only to drop it once it has expired.
            e.next_attempt = e.package.expires;
        });
        self.event(Event::Refused { id, reason });
    }

    fn failed(&mut self, now: Timestamp, id: PackageId, error: Failure) {
        let jitter = self.jitter.next();
        self.update(id, |e| {
            e.attempts += 1;
            e.next_attempt = delivery::next_attempt(now, e.attempts, jitter);
            e.last_error = Some(error.to_string());
        });
        self.event(Event::Retry { id, error });
    }

    /// Changes an entry, persists it and puts it back on the schedule.
    fn update(&mut self, id: PackageId, change: impl FnOnce(&mut Entry)) {
        let Some(tracked) = self.entries.get_mut(&id) else {
            return;
        };
        change(&mut tracked.entry);
        self.out.push_back(Output::Persist(tracked.entry.clone()));
        self.reschedule(id);
    }

    fn remove(&mut self, id: PackageId) {
        self.unschedule(id);
        if let Some(tracked) = self.entries.remove(&id) {
            self.carried.remove(&tracked.entry);
            if let Some(flight) = tracked.flight {
                self.ground(flight.token);
            }
            self.out.push_back(Output::Remove(id));
        }
    }

    fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    /// Puts a package on the schedule at its next attempt, or its expiry if
    /// sooner; one in flight waits for its answer instead, and a refused one
    /// only for its expiry.
    fn reschedule(&mut self, id: PackageId) {
        self.unschedule(id);
        let Some(tracked) = self.entries.get_mut(&id) else {
            return;
        };
        if tracked.flight.is_some() {
            return;
        }
        let entry = &tracked.entry;
        let at = match entry.status {
            Status::Refused(_) => entry.package.expires,
            _ => entry.next_attempt.min(entry.package.expires),
        };
        tracked.wake = Some(at);
        self.schedule.insert((at, id));
    }

    fn unschedule(&mut self, id: PackageId) {
        if let Some(at) = self.entries.get_mut(&id).and_then(|t| t.wake.take()) {
            self.schedule.remove(&(at, id));
        }
    }
}

/// Whether the receipts of a parcel's answers were found signed by their
/// recipient already, together.
#[derive(Debug, Clone, Copy)]
enum Signatures {
    Checked,
    Unchecked,
}

/// A receipt is good for an entry when the package's recipient signed it
/// over this package's id and exact bytes; a relay cannot fake one.
fn check(
    entry: &Entry,
    receipt: &Signed<Receipt>,
    signatures: Signatures,
) -> Result<(), delivery::ReceiptError> {
    let p = &entry.package;
    let content = match signatures {
        Signatures::Checked => delivery::check_receipt_content,
        Signatures::Unchecked => delivery::check_receipt_for,
    };
    content(receipt, p.id, p.recipient, &p.body_hash).map(drop)
}
