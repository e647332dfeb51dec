//! The conduct of admitted organizations. A certified node can still send
//! what no honest node ever would: forged records, forged revocation
//! lists, tampered packages. Each costs the receiver work, so each is
//! scored against the organization; past the limit its connections are
//! refused and cut, and its Hellos refused, until the ban ends.
//!
//! Scores fade (one point a minute), so an honest node that now and then
//! relays something damaged on its way is never banned for it.

use crate::identity::OrgId;
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// What an admitted peer sent that an honest node never would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// A directory record whose signature or chain does not verify.
    ForgedRecord,
    /// A revocation list not signed by the authority it names.
    ForgedRevocation,
    /// A package whose body or header was altered, or that is not what it
    /// claims to be; a relay can carry one damaged in storage, so it
    /// weighs less.
    BadPackage,
    /// A workflow step or conclusion with a broken signature, a forged
    /// actor or a role its organization does not grant.
    ForgedStep,
    /// A frame that is not of the kind its protocol carries, or over that
    /// kind's limit. Honest nodes never send one and validate gossip before
    /// they forward it, so it comes from the peer itself. Gossipsub stops
    /// listening to a peer after two invalid messages, so two of these must
    /// be enough to ban it.
    Malformed,
}

impl Offence {
    fn points(self) -> u32 {
        match self {
            Offence::ForgedRecord | Offence::ForgedRevocation | Offence::ForgedStep => 10,
            Offence::BadPackage => 5,
            Offence::Malformed => LIMIT / 2,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Offence::ForgedRecord => "forged directory records",
            Offence::ForgedRevocation => "forged revocation lists",
            Offence::BadPackage => "tampered packages",
            Offence::ForgedStep => "forged workflow steps",
            Offence::Malformed => "malformed frames",
        }
    }
}

/// Points past which an organization is banned: five forgeries in a row.
pub const LIMIT: u32 = 50;
/// How long a ban lasts.
pub const BAN: Duration = Duration::from_secs(3600);
const FADE: Duration = Duration::from_secs(60);
/// Organizations scored at once, at most: only admitted (certified) ones
/// are, but a federation is finite and this table must be too.
const MAX_SCORED: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct Conduct {
    scores: BTreeMap<OrgId, (u32, Timestamp)>,
    bans: BTreeMap<OrgId, (Timestamp, String)>,
}

impl Conduct {
    /// Scores the offence; returns the ban's reason when this one crossed
    /// the limit.
    pub(super) fn offend(
        &mut self,
        now: Timestamp,
        org: OrgId,
        offence: Offence,
    ) -> Option<String> {
        if self.banned(now, &org).is_some() {
            return None;
        }
        if self.scores.len() >= MAX_SCORED && !self.scores.contains_key(&org) {
            self.scores
                .retain(|_, (points, at)| faded(*points, *at, now) > 0);
        }
        if self.scores.len() >= MAX_SCORED && !self.scores.contains_key(&org) {
            return None;
        }
        let (points, at) = self.scores.entry(org).or_insert((0, now));
        *points = faded(*points, *at, now) + offence.points();
        *at = now;
        if *points < LIMIT {
            return None;
        }
        self.scores.remove(&org);
        let until = now.saturating_add(BAN);
        let reason = format!(
            "banned until {until} for {}: an honest node never sends them",
            offence.describe()
        );
        self.bans.insert(org, (until, reason.clone()));
        Some(reason)
    }

    /// The reason an organization is banned now, if it is.
    pub(super) fn banned(&self, now: Timestamp, org: &OrgId) -> Option<&str> {
        self.bans
            .get(org)
            .filter(|(until, _)| *until > now)
            .map(|(_, reason)| reason.as_str())
    }

    /// Bans that ended by `now`, forgotten as they are reported.
    pub(super) fn bans_over(&mut self, now: Timestamp) -> Vec<OrgId> {
        let over: Vec<OrgId> = (self.bans.iter())
            .filter(|(_, (until, _))| *until <= now)
            .map(|(org, _)| *org)
            .collect();
        for org in &over {
            self.bans.remove(org);
        }
        over
    }

    pub(super) fn next_ban_end(&self) -> Option<Timestamp> {
        self.bans.values().map(|(until, _)| *until).min()
    }

    pub(super) fn score(&self, now: Timestamp, org: &OrgId) -> u32 {
        self.scores
            .get(org)
            .map_or(0, |(points, at)| faded(*points, *at, now))
    }
}

fn faded(points: u32, at: Timestamp, now: Timestamp) -> u32 {
    let minutes = now.since(at).as_secs() / FADE.as_secs();
    points.saturating_sub(u32::try_from(minutes).unwrap_or(u32::MAX))
}
