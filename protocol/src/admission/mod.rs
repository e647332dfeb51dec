//! Peer admission: who may use the federation's protocols on a connection.
//!
//! Any key can open a connection; only an organization whose certificate
//! chain verifies may then ask anything of the node. Both sides send a Hello
//! (certificate chain, directory record, revocations); each admits the other
//! on its own, and requests flow only once both have (`Output::Ready`). A
//! peer that presents no valid chain within the timeout, or a bad one, is
//! refused: it hears why, then its connections are cut after a short grace.
//! An admitted peer whose certificate expires or is revoked later is refused
//! the same way.
//!
//! A sans-I/O machine like quinn-proto's `Connection`: the driver reports
//! connections and Hellos (`handle_*`), carries out [`Admission::poll_output`]
//! and wakes it at [`Admission::poll_timeout`]. It never reads a clock; the
//! peer type is the driver's (a libp2p `PeerId` in the node, an index in the
//! simulated network).

mod conduct;
#[cfg(test)]
mod tests;

pub use conduct::{BAN, LIMIT as MISCONDUCT_LIMIT, Offence};

use crate::cert::{CertError, RevocationNotice, Trust, VerifiedOrg};
use crate::directory::{Directory, SignedRecord};
use crate::identity::{KeyError, OrgId};
use crate::limits::MAX_REVOCATION_NOTICES;
use crate::rpc::Hello;
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How long a connected peer has to present a valid chain.
    pub hello_timeout: Duration,
    /// How long a refused peer stays connected, so it hears why.
    pub refusal_grace: Duration,
    /// How long a cut peer's connections are then refused outright. A
    /// refusal is not a verdict: the peer may have been slow (a Hello that
    /// outlived the timeout on a loaded machine, or a clock that stepped
    /// forward), or its certificate may be renewed since. Only a ban keeps a
    /// peer out longer.
    pub refusal_cooldown: Duration,
    /// Hellos sent in a row before pausing for `hello_timeout`. A peer
    /// that got none of them cuts the connection by its own timeout; one
    /// that admitted us and whose answers were all lost does not, so the
    /// Hellos start again after the pause for as long as the connection
    /// lasts.
    pub hello_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            hello_timeout: Duration::from_secs(10),
            refusal_grace: Duration::from_millis(500),
            refusal_cooldown: Duration::from_secs(30),
            hello_attempts: 3,
        }
    }
}

/// Why a peer is not admitted; the text is what the peer and the operator read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("{0}")]
    Chain(#[from] CertError),
    #[error("the connection's key is not an organization key: {0}")]
    Key(#[from] KeyError),
    #[error("certificate is for {certified}, but the connection is from {connected}")]
    WrongPeer { certified: OrgId, connected: OrgId },
    #[error("no valid federation certificate presented within {} s", .0.as_secs())]
    Silent(Duration),
    #[error("{0}")]
    Other(String),
}

/// What the driver must do.
#[derive(Debug, Clone)]
pub enum Output<P> {
    /// Send this node's Hello to the peer.
    SendHello(P),
    /// A newer revocation list came in a Hello and is now in force: persist
    /// it and let the directory re-check its records.
    RevocationAdopted {
        issuer: crate::identity::AuthorityKey,
        notice: crate::cert::RevocationNotice,
    },
    /// The peer's chain verified: open the node's protocols to it. Its
    /// record, if it sent one, goes to the directory.
    Admitted {
        peer: P,
        org: Box<VerifiedOrg>,
        record: Option<Box<SignedRecord>>,
        /// The peer's clock minus ours, in milliseconds.
        clock_skew_ms: i64,
    },
    /// Both sides admitted each other: requests may go to the peer.
    Ready { peer: P, org: OrgId },
    /// The peer is refused: close the node's protocols to it, tell it why
    /// (an inbound Hello gets the refusal as its answer), and stop sending.
    /// `org` is who its certificate named, when it could be read.
    Refused {
        peer: P,
        reason: Refusal,
        org: Option<(OrgId, String)>,
    },
    /// The grace after a refusal is over: block the peer and disconnect it.
    Cut(P),
    /// The cool-down after a cut is over: the peer's connections may be
    /// accepted again (it is unblocked). A banned organization's peers
    /// stay blocked until it is [`Output::Pardoned`] instead.
    Uncut(P),
    /// The peer refused this node.
    RefusedBy { peer: P, reason: String },
    /// The organization's ban is over: its connections may be accepted
    /// again (what `Cut` blocked for the ban is unblocked).
    Pardoned(OrgId),
}

#[derive(Debug)]
enum State {
    /// Connected; its Hello has not verified yet.
    Waiting {
        due: Timestamp,
    },
    Admitted {
        org: Box<VerifiedOrg>,
    },
    Refused {
        cut_at: Timestamp,
    },
}

#[derive(Debug)]
struct Peer {
    /// The organization the connection's key belongs to.
    key: Result<OrgId, KeyError>,
    state: State,
    /// The peer answered our Hello with its own: its protocols are open to us.
    welcomed: bool,
    /// Our Hello is out (or was answered).
    hello_out: bool,
    hello_attempts: u32,
    /// When our Hellos start again, after a run of them failed.
    hello_again: Option<Timestamp>,
}

impl Peer {
    /// Starts a run of our Hellos, unless one is out, or it was answered,
    /// or the peer is refused.
    fn start_hellos(&mut self) -> bool {
        let start =
            !self.welcomed && !self.hello_out && !matches!(self.state, State::Refused { .. });
        if start {
            self.hello_out = true;
            self.hello_attempts = 1;
        }
        start
    }

    /// When this peer next needs the machine: a Hello due, a cut due, an
    /// admitted certificate's end, our Hellos due again.
    fn deadline(&self) -> Timestamp {
        let state = match &self.state {
            State::Waiting { due } => *due,
            State::Refused { cut_at } => *cut_at,
            State::Admitted { org } => {
                let until = org.cert.validity.until;
                match &org.authority {
                    Some(a) => until.min(a.validity.until),
                    None => until,
                }
            }
        };
        self.hello_again.map_or(state, |again| again.min(state))
    }
}

#[derive(Debug)]
pub struct Admission<P> {
    config: Config,
    peers: BTreeMap<P, Peer>,
    /// Every peer's deadline, so `poll_timeout`, asked after every input,
    /// does not walk all peers.
    deadlines: BTreeSet<(Timestamp, P)>,
    out: VecDeque<Output<P>>,
    conduct: conduct::Conduct,
    /// Cut peers and when their cool-down ends, soonest first.
    cooling: BTreeSet<(Timestamp, P)>,
}

/// Cut peers cooling down at once, at most. Anyone can make up a peer
/// identity, so the set must not grow with them: past this the longest
/// cooling peer is let go early, which costs only a refused Hello later.
const MAX_COOLING: usize = 4096;

impl<P: Copy + Ord + Debug> Admission<P> {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            peers: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            out: VecDeque::new(),
            conduct: conduct::Conduct::default(),
            cooling: BTreeSet::new(),
        }
    }

    /// A peer's first connection is up. `key` is the organization its
    /// connection key belongs to, as the transport authenticated it.
    pub fn handle_connected(&mut self, now: Timestamp, peer: P, key: Result<OrgId, KeyError>) {
        let due = now.saturating_add(self.config.hello_timeout);
        let deadlines = &mut self.deadlines;
        let p = self.peers.entry(peer).or_insert_with(|| {
            deadlines.insert((due, peer));
            Peer {
                key,
                state: State::Waiting { due },
                welcomed: false,
                hello_out: false,
                hello_attempts: 0,
                hello_again: None,
            }
        });
        if p.start_hellos() {
            self.out.push_back(Output::SendHello(peer));
        }
    }

    /// The peer's last connection closed: everything about it is forgotten.
    pub fn handle_disconnected(&mut self, peer: P) {
        self.forget(peer);
    }

    fn forget(&mut self, peer: P) {
        if let Some(p) = self.peers.remove(&peer) {
            self.deadlines.remove(&(p.deadline(), peer));
        }
    }

    /// Moves a known peer to `state`, keeping its deadline indexed.
    fn set_state(&mut self, peer: P, state: State) {
        self.update(peer, |p| p.state = state);
    }

    /// Changes a known peer, keeping its deadline indexed; `None` for a
    /// peer not known.
    fn update<R>(&mut self, peer: P, change: impl FnOnce(&mut Peer) -> R) -> Option<R> {
        let p = self.peers.get_mut(&peer)?;
        self.deadlines.remove(&(p.deadline(), peer));
        let changed = change(p);
        self.deadlines.insert((p.deadline(), peer));
        Some(changed)
    }

    /// The peer's Hello. Returns whether it is admitted; a refusal's text is
    /// the answer the peer gets. `directory` is what this node holds: a
    /// chain it verified when it took the peer's record is not verified
    /// again (see `Trust::verify_chain_unless_known`).
    pub fn handle_hello(
        &mut self,
        now: Timestamp,
        peer: P,
        hello: Hello,
        trust: &mut Trust,
        directory: &Directory,
    ) -> Result<OrgId, Refusal> {
        let Some(p) = self.peers.get(&peer) else {
            return Err(Refusal::Other("not connected".into()));
        };
        if let Ok(org) = &p.key
            && let Some(ban) = self.conduct.banned(now, org)
        {
            let reason = Refusal::Other(ban.to_owned());
            if !matches!(p.state, State::Refused { .. }) {
                self.refuse(now, peer, reason.clone(), None);
            }
            return Err(reason);
        }
        if matches!(p.state, State::Refused { .. }) {
            return Err(Refusal::Other("already refused".into()));
        }
        let key = p.key.clone();
        let Hello {
            chain,
            record,
            revocations,
            time,
        } = hello;
        // An admitted peer's Hello is read for its notices: it is how a
        // peer that refuses us tells us why.
        match self.peers.get(&peer).map(|p| &p.state) {
            Some(State::Admitted { org }) => {
                let org = org.cert.org;
                self.take_notices(now, org, revocations, trust);
                return Ok(org);
            }
            Some(State::Refused { .. }) | None => {
                return Err(Refusal::Other("already refused".into()));
            }
            Some(State::Waiting { .. }) => {}
        }
        let key = match key {
            Ok(k) => k,
            Err(e) => {
                let reason = Refusal::Key(e);
                self.refuse(now, peer, reason.clone(), None);
                return Err(reason);
            }
        };
        let known = directory.verified_chain(&key, &chain);
        let checked = trust.verify_chain_unless_known(&chain, known, now);
        let verified = match checked {
            Ok(v) => v,
            Err(e) => {
                // Who the certificate names, for the operator.
                let named = chain.org.decode_unverified().ok().map(|c| (c.org, c.name));
                let reason = Refusal::Chain(e);
                self.refuse(now, peer, reason.clone(), named);
                return Err(reason);
            }
        };
        if verified.cert.org != key {
            let reason = Refusal::WrongPeer {
                certified: verified.cert.org,
                connected: key,
            };
            self.refuse(now, peer, reason.clone(), None);
            return Err(reason);
        }
        // Its notices once it is known to be certified, so a stranger's
        // cost no signature check; before it is admitted, so a peer whose
        // own notices revoke its certificate is not.
        if self.take_notices(now, key, revocations, trust)
            && let Err(e) = trust.still_valid(&verified, now)
        {
            let named = Some((key, verified.cert.name.clone()));
            let reason = Refusal::Chain(e);
            self.refuse(now, peer, reason.clone(), named);
            return Err(reason);
        }
        if let Some(ban) = self.conduct.banned(now, &key) {
            let reason = Refusal::Other(ban.to_owned());
            self.refuse(now, peer, reason.clone(), None);
            return Err(reason);
        }
        let skew = time.unix_millis() as i128 - now.unix_millis() as i128;
        self.set_state(
            peer,
            State::Admitted {
                org: Box::new(verified.clone()),
            },
        );
        let welcomed = self.peers.get(&peer).expect("checked above").welcomed;
        self.out.push_back(Output::Admitted {
            peer,
            org: Box::new(verified),
            record: record.map(Box::new),
            clock_skew_ms: skew.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        });
        if welcomed {
            self.out.push_back(Output::Ready { peer, org: key });
        }
        Ok(key)
    }

    /// Takes in the revocation notices a certified organization sent (at
    /// most [`MAX_REVOCATION_NOTICES`] of them): each newer list is
    /// adopted; the first not signed by the authority it names is charged
    /// to `org` and ends the reading, so a peer's notices cost a bounded
    /// number of signature checks before its ban. True when a list was
    /// adopted (admitted peers were checked against it).
    pub fn take_notices(
        &mut self,
        now: Timestamp,
        org: OrgId,
        notices: Vec<RevocationNotice>,
        trust: &mut Trust,
    ) -> bool {
        let mut adopted = false;
        for notice in notices.into_iter().take(MAX_REVOCATION_NOTICES) {
            match trust.apply_revocations(&notice, now) {
                Ok(issuer) => {
                    adopted = true;
                    (self.out).push_back(Output::RevocationAdopted { issuer, notice });
                }
                Err(CertError::Signed(_) | CertError::UnknownRoot { .. }) => {
                    if let Some(ban) = (self.conduct).offend(now, org, Offence::ForgedRevocation) {
                        self.refuse_org(now, org, &ban);
                    }
                    break;
                }
                Err(_) => {}
            }
        }
        if adopted {
            self.handle_trust_changed(now, trust);
        }
        adopted
    }

    /// The peer answered our Hello with its own.
    pub fn handle_welcome(
        &mut self,
        now: Timestamp,
        peer: P,
        hello: Hello,
        trust: &mut Trust,
        directory: &Directory,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.welcomed {
            return;
        }
        p.welcomed = true;
        match &p.state {
            State::Admitted { org } => {
                let org = org.cert.org;
                self.out.push_back(Output::Ready { peer, org });
            }
            State::Waiting { .. } => {
                // Its Hello to us may still be on its way; this one is the same.
                let _ = self.handle_hello(now, peer, hello, trust, directory);
            }
            State::Refused { .. } => {}
        }
    }

    /// The peer refused our Hello.
    pub fn handle_refused_by(&mut self, peer: P, reason: String) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.hello_out = true;
            self.out.push_back(Output::RefusedBy { peer, reason });
        }
    }

    /// Our Hello got no answer (lost, timed out, the stream failed).
    pub fn handle_hello_failed(&mut self, now: Timestamp, peer: P) {
        let attempts = self.config.hello_attempts;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.welcomed || matches!(p.state, State::Refused { .. }) {
            return;
        }
        if p.hello_attempts < attempts {
            p.hello_attempts += 1;
            self.out.push_back(Output::SendHello(peer));
        } else {
            // A new connection tries again at once; this one after a pause.
            p.hello_out = false;
            let again = now.saturating_add(self.config.hello_timeout);
            self.update(peer, |p| p.hello_again = Some(again));
        }
    }

    /// Refuses a peer for a reason found outside the Hello (its directory
    /// record was dropped, say).
    pub fn refuse_org(&mut self, now: Timestamp, org: OrgId, reason: &str) {
        let peers: Vec<P> = self.peers_of(org).collect();
        for peer in peers {
            self.refuse(now, peer, Refusal::Other(reason.to_string()), None);
        }
    }

    /// An admitted peer sent something an honest node never would. Past
    /// the limit its organization is banned: every connection of it is
    /// refused and cut, and its Hellos refused until the ban ends.
    pub fn handle_offence(&mut self, now: Timestamp, peer: P, offence: Offence) {
        let Some(org) = self.admitted(&peer) else {
            return;
        };
        if let Some(reason) = self.conduct.offend(now, org, offence) {
            self.refuse_org(now, org, &reason);
        }
    }

    /// The organization's misconduct points now (they fade).
    pub fn misconduct(&self, now: Timestamp, org: &OrgId) -> u32 {
        self.conduct.score(now, org)
    }

    /// Revocations or time moved: admitted peers whose certificate no
    /// longer holds are refused, and each is sent our Hello first: it
    /// carries the lists in force, so a revoked organization learns of its
    /// revocation (and keeps it) before its connections are cut, instead of
    /// only reading a refusal's text on its next attempt.
    pub fn handle_trust_changed(&mut self, now: Timestamp, trust: &Trust) {
        let lapsed: Vec<(P, CertError, OrgId, String)> = self
            .peers
            .iter()
            .filter_map(|(peer, p)| match &p.state {
                State::Admitted { org } => trust
                    .still_valid(org, now)
                    .err()
                    .map(|e| (*peer, e, org.cert.org, org.cert.name.clone())),
                _ => None,
            })
            .collect();
        for (peer, error, org, name) in lapsed {
            self.refuse(now, peer, Refusal::Chain(error), Some((org, name)));
            self.out.push_back(Output::SendHello(peer));
        }
    }

    pub fn handle_timeout(&mut self, now: Timestamp, trust: &Trust) {
        let mut silent = Vec::new();
        let mut cut = Vec::new();
        let mut again = Vec::new();
        for (peer, p) in &self.peers {
            match p.state {
                State::Waiting { due } if due <= now => silent.push(*peer),
                State::Refused { cut_at } if cut_at <= now => cut.push(*peer),
                _ => {}
            }
            if p.hello_again.is_some_and(|at| at <= now) {
                again.push(*peer);
            }
        }
        for peer in silent {
            let reason = Refusal::Silent(self.config.hello_timeout);
            self.refuse(now, peer, reason, None);
        }
        for peer in cut {
            self.cut(now, peer);
        }
        for peer in again {
            self.hello_again(peer);
        }
        while let Some(&(until, peer)) = self.cooling.first()
            && until <= now
        {
            self.cooling.pop_first();
            self.out.push_back(Output::Uncut(peer));
        }
        for org in self.conduct.bans_over(now) {
            self.out.push_back(Output::Pardoned(org));
        }
        self.handle_trust_changed(now, trust);
    }

    /// Starts a new run of Hellos on a connection whose last run failed,
    /// unless it was answered or refused meanwhile.
    fn hello_again(&mut self, peer: P) {
        let send = self.update(peer, |p| {
            p.hello_again = None;
            p.start_hellos()
        });
        if send == Some(true) {
            self.out.push_back(Output::SendHello(peer));
        }
    }

    /// The earliest of: a Hello due, a cut due, an admitted certificate's
    /// end, our Hellos due again, a cool-down's end, a ban's end.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let first = self.deadlines.first().map(|(t, _)| *t);
        let cooled = self.cooling.first().map(|(t, _)| *t);
        (first.into_iter())
            .chain(cooled)
            .chain(self.conduct.next_ban_end())
            .min()
    }

    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.out.pop_front()
    }

    /// The organization a peer proved to be, once admitted by this node.
    pub fn admitted(&self, peer: &P) -> Option<OrgId> {
        match &self.peers.get(peer)?.state {
            State::Admitted { org } => Some(org.cert.org),
            _ => None,
        }
    }

    /// Both sides admitted each other: requests may go to the peer.
    pub fn is_ready(&self, peer: &P) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.welcomed && matches!(p.state, State::Admitted { .. }))
    }

    /// Admitted peers and their organizations.
    pub fn admitted_peers(&self) -> impl Iterator<Item = (P, OrgId)> + '_ {
        self.peers.iter().filter_map(|(peer, p)| match &p.state {
            State::Admitted { org } => Some((*peer, org.cert.org)),
            _ => None,
        })
    }

    /// Connected peers still to present a valid chain, with when they are due.
    pub fn waiting(&self) -> impl Iterator<Item = (P, Timestamp)> + '_ {
        self.peers.iter().filter_map(|(peer, p)| match p.state {
            State::Waiting { due } => Some((*peer, due)),
            _ => None,
        })
    }

    fn peers_of(&self, org: OrgId) -> impl Iterator<Item = P> + '_ {
        self.peers
            .iter()
            .filter_map(move |(peer, p)| match &p.state {
                State::Admitted { org: o } if o.cert.org == org => Some(*peer),
                _ => None,
            })
    }

    /// Forgets the peer and blocks it: for the cool-down, or for as long as
    /// its organization is banned.
    fn cut(&mut self, now: Timestamp, peer: P) {
        let banned = (self.peers.get(&peer))
            .and_then(|p| p.key.as_ref().ok())
            .is_some_and(|org| self.conduct.banned(now, org).is_some());
        self.forget(peer);
        self.out.push_back(Output::Cut(peer));
        if banned {
            return;
        }
        if self.cooling.len() >= MAX_COOLING
            && let Some((_, oldest)) = self.cooling.pop_first()
        {
            self.out.push_back(Output::Uncut(oldest));
        }
        let until = now.saturating_add(self.config.refusal_cooldown);
        self.cooling.insert((until, peer));
    }

    fn refuse(&mut self, now: Timestamp, peer: P, reason: Refusal, org: Option<(OrgId, String)>) {
        let grace = self.config.refusal_grace;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if matches!(p.state, State::Refused { .. }) {
            return;
        }
        let cut_at = now.saturating_add(grace);
        self.set_state(peer, State::Refused { cut_at });
        self.out.push_back(Output::Refused { peer, reason, org });
    }
}
