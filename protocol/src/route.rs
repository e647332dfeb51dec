//! Choosing which organization a request goes to.
//!
//! The rules follow the source documents: the specialty must be offered and
//! the urgency accepted; the level must be at least the one asked for; the
//! same region comes first, and the lowest sufficient level before higher
//! ones (district -> regional -> federal), so federal centers are not asked
//! what a regional center can answer. Every organization not chosen gets a
//! reason, so an operator can see why a route was or was not taken.

use crate::cert::{OrgLevel, RegionCode};
use crate::directory::{Directory, DirectoryEntry};
use crate::identity::OrgId;
use crate::specialty::Specialty;
use crate::time::Timestamp;
use crate::urgency::Urgency;
use std::collections::BTreeSet;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRequest {
    pub specialty: Specialty,
    pub min_level: OrgLevel,
    pub urgency: Urgency,
    /// Preferred region, usually the requester's own.
    pub region: Option<RegionCode>,
    /// The requester, and organizations already tried (after a decline or escalation).
    pub exclude: BTreeSet<OrgId>,
    /// What is being routed (a consultation's or package's id). Equally good
    /// organizations are ordered by a hash of it with their id: a level's
    /// centers share its cases instead of the lowest id taking every one,
    /// and the same case ranked again (an escalation, a retry) meets the
    /// same order.
    pub case: [u8; 16],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    Excluded,
    SpecialtyNotOffered,
    LevelTooLow { level: OrgLevel },
    UrgencyNotAccepted,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Excluded => f.write_str("excluded (the requester, or already tried)"),
            SkipReason::SpecialtyNotOffered => f.write_str("does not offer the specialty"),
            SkipReason::LevelTooLow { level } => {
                write!(f, "level {} ({level}) is below the minimum", level.number())
            }
            SkipReason::UrgencyNotAccepted => {
                f.write_str("does not accept this urgency for the specialty")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub org: OrgId,
    pub name: String,
    pub level: OrgLevel,
    pub region: RegionCode,
    pub same_region: bool,
    /// Start of the earliest future availability slot for the specialty.
    pub next_slot: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDecision {
    /// Best first.
    pub candidates: Vec<Candidate>,
    pub skipped: Vec<(OrgId, String, SkipReason)>,
}

impl RouteDecision {
    pub fn best(&self) -> Option<&Candidate> {
        self.candidates.first()
    }
}

fn judge(e: &DirectoryEntry, req: &RouteRequest) -> Result<(), SkipReason> {
    if req.exclude.contains(&e.org()) {
        return Err(SkipReason::Excluded);
    }
    let service = e
        .service(req.specialty)
        .ok_or(SkipReason::SpecialtyNotOffered)?;
    if e.level() < req.min_level {
        return Err(SkipReason::LevelTooLow { level: e.level() });
    }
    if !service.urgencies.contains(&req.urgency) {
        return Err(SkipReason::UrgencyNotAccepted);
    }
    Ok(())
}

/// Where a candidate stands, compared field by field in this order; the id
/// last makes every standing distinct, so `rank` and `best` agree.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Standing {
    place: Place,
    /// Then the case's share among equals.
    share: [u8; 8],
    org: OrgId,
}

/// The part of a standing that costs no hashing to learn.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    /// The requester's own region first.
    elsewhere: bool,
    /// Then the lowest sufficient level.
    level: OrgLevel,
    /// Then whoever has a slot for the specialty, the earliest first.
    no_slot: bool,
    next_slot: Option<Timestamp>,
}

fn place(e: &DirectoryEntry, req: &RouteRequest, now: Timestamp) -> Result<Place, SkipReason> {
    judge(e, req)?;
    Ok(place_of(e, req, now))
}

/// Where a qualifying organization stands for `req`.
fn place_of(e: &DirectoryEntry, req: &RouteRequest, now: Timestamp) -> Place {
    let next_slot = (e.record().slots.iter())
        .filter(|s| s.specialty == req.specialty && s.end > now)
        .map(|s| s.start.max(now))
        .min();
    Place {
        elsewhere: req.region.as_ref() != Some(e.region()),
        level: e.level(),
        no_slot: next_slot.is_none(),
        next_slot,
    }
}

fn standing(e: &DirectoryEntry, req: &RouteRequest, place: Place) -> Standing {
    Standing {
        place,
        share: share(&req.case, &e.org()),
        org: e.org(),
    }
}

fn candidate(e: &DirectoryEntry, standing: &Standing) -> Candidate {
    Candidate {
        org: e.org(),
        name: e.name().to_owned(),
        level: e.level(),
        region: e.region().clone(),
        same_region: !standing.place.elsewhere,
        next_slot: standing.place.next_slot,
    }
}

/// Ranks every organization in the directory for `req` at time `now`, with
/// the reason each one left out was left out.
pub fn rank(directory: &Directory, req: &RouteRequest, now: Timestamp) -> RouteDecision {
    let mut decision = RouteDecision::default();
    let mut ranked = Vec::new();
    for e in directory.entries() {
        match place(e, req, now) {
            Err(reason) => decision
                .skipped
                .push((e.org(), e.name().to_owned(), reason)),
            Ok(place) => ranked.push((standing(e, req, place), e)),
        }
    }
    ranked.sort_unstable_by_key(|a| a.0);
    decision.candidates = ranked.iter().map(|(s, e)| candidate(e, s)).collect();
    decision
}

/// `rank`'s first candidate in one pass, explaining nothing: what routing a
/// case or escalating it needs. Ranking a national directory named and
/// sorted thousands of organizations to keep one; hashing each one's share
/// of the case was still a tenth of a national year, so the share is
/// computed only for those placed no worse than the best so far.
pub fn best(directory: &Directory, req: &RouteRequest, now: Timestamp) -> Option<Candidate> {
    let mut best: Option<(Standing, &DirectoryEntry)> = None;
    let taking = directory.taking(req.specialty, req.urgency, req.min_level);
    for e in taking.filter(|e| !req.exclude.contains(&e.org())) {
        let place = place_of(e, req, now);
        if best.as_ref().is_some_and(|(b, _)| place > b.place) {
            continue;
        }
        let standing = standing(e, req, place);
        if best.as_ref().is_none_or(|(b, _)| standing < *b) {
            best = Some((standing, e));
        }
    }
    best.map(|(s, e)| candidate(e, &s))
}

/// Rendezvous order of `org` for `case`: uniform over organizations, fixed
/// for a case.
fn share(case: &[u8; 16], org: &OrgId) -> [u8; 8] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(case);
    hasher.update(org.as_bytes());
    let mut order = [0; 8];
    order.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    order
}

/// The request for the next organization after one declined with "forward"
/// or did not answer in time: same specialty and urgency, level at least the
/// last one tried (district -> regional -> federal), nobody already tried.
/// `tried` holds the requester and every organization asked so far, in order.
pub fn escalation(directory: &Directory, original: &RouteRequest, tried: &[OrgId]) -> RouteRequest {
    let last_level = tried
        .last()
        .and_then(|o| directory.get(o))
        .map(|e| e.level());
    RouteRequest {
        min_level: last_level.map_or(original.min_level, |l| l.max(original.min_level)),
        exclude: original.exclude.iter().chain(tried).copied().collect(),
        ..original.clone()
    }
}

/// Who a case goes to next after `tried` (see [`escalation`]).
pub fn escalate(
    directory: &Directory,
    original: &RouteRequest,
    tried: &[OrgId],
    now: Timestamp,
) -> Option<Candidate> {
    best(directory, &escalation(directory, original, tried), now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{ConsultantId, Slot};
    use crate::testkit::{NOW, TestFederation};
    use std::time::Duration;

    #[test]
    fn escalation_climbs_district_regional_federal_and_never_repeats() {
        let mut fed = TestFederation::new("escalate");
        let requester = fed.org(1, OrgLevel::District, "RU-VLG", &[]);
        let district = fed.org(2, OrgLevel::District, "RU-VLG", &[Specialty::Neurology]);
        let regional = fed.org(3, OrgLevel::Regional, "RU-VLG", &[Specialty::Neurology]);
        let federal = fed.org(4, OrgLevel::Federal, "RU-MOW", &[Specialty::Neurology]);
        let mut dir = Directory::new();
        for o in [&requester, &district, &regional, &federal] {
            dir.insert(o.signed_record(1), &fed.trust, NOW).unwrap();
        }
        let original = RouteRequest {
            specialty: Specialty::Neurology,
            min_level: OrgLevel::District,
            urgency: Urgency::Emergency,
            region: Some(RegionCode::new("RU-VLG").unwrap()),
            exclude: [requester.id()].into(),
            case: [7; 16],
        };
        let mut tried = vec![requester.id()];
        let mut path = Vec::new();
        while let Some(next) = escalate(&dir, &original, &tried, NOW).map(|c| c.org) {
            path.push(next);
            tried.push(next);
        }
        assert_eq!(path, vec![district.id(), regional.id(), federal.id()]);
        // After a regional center declined, a district hospital is never next.
        let tried = [requester.id(), regional.id()];
        let after_regional = rank(&dir, &escalation(&dir, &original, &tried), NOW);
        assert_eq!(
            after_regional
                .candidates
                .iter()
                .map(|c| c.org)
                .collect::<Vec<_>>(),
            vec![federal.id()]
        );
    }

    #[test]
    fn ranks_same_region_then_lowest_sufficient_level_and_explains_skips() {
        let mut fed = TestFederation::new("route");
        let requester = fed.org(1, OrgLevel::District, "RU-VLG", &[]);
        let local_regional = fed.org(2, OrgLevel::Regional, "RU-VLG", &[Specialty::Cardiology]);
        let far_regional = fed.org(3, OrgLevel::Regional, "RU-ARK", &[Specialty::Cardiology]);
        let federal = fed.org(4, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]);
        let district = fed.org(5, OrgLevel::District, "RU-VLG", &[Specialty::Cardiology]);
        let planned_only = fed.org(6, OrgLevel::Federal, "RU-SPE", &[Specialty::Cardiology]);
        let mut dir = Directory::new();
        for o in [
            &requester,
            &local_regional,
            &far_regional,
            &federal,
            &district,
        ] {
            dir.insert(o.signed_record(1), &fed.trust, NOW).unwrap();
        }
        let mut rec = planned_only.record(1);
        rec.services[0].urgencies = [Urgency::Planned].into();
        dir.insert(planned_only.sign(&rec), &fed.trust, NOW)
            .unwrap();

        let req = RouteRequest {
            specialty: Specialty::Cardiology,
            min_level: OrgLevel::Regional,
            urgency: Urgency::Urgent,
            region: Some(RegionCode::new("RU-VLG").unwrap()),
            exclude: [requester.id()].into(),
            case: [7; 16],
        };
        let d = rank(&dir, &req, NOW);
        assert_eq!(best(&dir, &req, NOW).as_ref(), d.best());
        let order: Vec<_> = d.candidates.iter().map(|c| c.org).collect();
        assert_eq!(
            order,
            vec![local_regional.id(), far_regional.id(), federal.id()]
        );
        let reason = |o: OrgId| d.skipped.iter().find(|s| s.0 == o).map(|s| s.2.clone());
        assert_eq!(reason(requester.id()), Some(SkipReason::Excluded));
        assert_eq!(
            reason(district.id()),
            Some(SkipReason::LevelTooLow {
                level: OrgLevel::District
            })
        );
        assert_eq!(
            reason(planned_only.id()),
            Some(SkipReason::UrgencyNotAccepted)
        );
        // `best` skips by the entry's bits what `rank` skips by its
        // services: with the others excluded, only the federal center that
        // takes planned cases alone is left, and not for an urgent one.
        let only_planned_left = |urgency| RouteRequest {
            urgency,
            exclude: [requester.id(), local_regional.id(), far_regional.id()]
                .into_iter()
                .chain([federal.id(), district.id()])
                .collect(),
            ..req.clone()
        };
        assert_eq!(best(&dir, &only_planned_left(Urgency::Urgent), NOW), None);
        let planned = best(&dir, &only_planned_left(Urgency::Planned), NOW);
        assert_eq!(planned.map(|c| c.org), Some(planned_only.id()));
        assert!(
            reason(district.id())
                .unwrap()
                .to_string()
                .contains("below the minimum")
        );

        // Escalation: the regional center declined, so it is excluded next time.
        let mut next = req.clone();
        next.exclude.insert(local_regional.id());
        next.region = None;
        let d = rank(&dir, &next, NOW);
        assert_eq!(d.best().unwrap().level, OrgLevel::Regional);
        assert_eq!(d.best().unwrap().org, far_regional.id());

        // Among equals, an earlier availability slot wins.
        let mut rec = federal.record(2);
        rec.slots.push(Slot {
            consultant: ConsultantId(1),
            specialty: Specialty::Cardiology,
            start: NOW.saturating_add(Duration::from_secs(3600)),
            end: NOW.saturating_add(Duration::from_secs(7200)),
        });
        dir.insert(federal.sign(&rec), &fed.trust, NOW).unwrap();
        let fed2 = fed.org(7, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]);
        dir.insert(fed2.signed_record(1), &fed.trust, NOW).unwrap();
        let only_federal = RouteRequest {
            min_level: OrgLevel::Federal,
            region: None,
            ..req
        };
        let d = rank(&dir, &only_federal, NOW);
        assert_eq!(d.best().unwrap().org, federal.id());
        assert!(d.best().unwrap().next_slot.is_some());
    }

    #[test]
    fn equally_good_centers_share_the_cases_and_a_case_keeps_its_order() {
        let mut fed = TestFederation::new("share");
        let requester = fed.org(1, OrgLevel::District, "RU-VLG", &[]);
        let centers: Vec<_> = (2..6)
            .map(|i| fed.org(i, OrgLevel::Federal, "RU-MOW", &[Specialty::Oncology]))
            .collect();
        let mut dir = Directory::new();
        for o in std::iter::once(&requester).chain(&centers) {
            dir.insert(o.signed_record(1), &fed.trust, NOW).unwrap();
        }
        let request = |case: u8| RouteRequest {
            specialty: Specialty::Oncology,
            min_level: OrgLevel::Federal,
            urgency: Urgency::Planned,
            region: Some(RegionCode::new("RU-VLG").unwrap()),
            exclude: [requester.id()].into(),
            case: [case; 16],
        };
        let mut chosen = std::collections::BTreeMap::<OrgId, u32>::new();
        for case in 0..200u8 {
            let first = rank(&dir, &request(case), NOW);
            let again = rank(&dir, &request(case), NOW);
            assert_eq!(first.candidates, again.candidates, "case {case}");
            assert_eq!(best(&dir, &request(case), NOW).as_ref(), first.best());
            *chosen.entry(first.best().unwrap().org).or_default() += 1;
        }
        // Four equal centers, 200 cases: each takes a share, none takes all.
        assert_eq!(chosen.len(), 4, "{chosen:?}");
        assert!(
            chosen.values().all(|&n| (20..=80).contains(&n)),
            "{chosen:?}"
        );
    }

    /// `best` skips the share of anyone placed worse than the best so far:
    /// over a directory of every level, three regions, some with slots and
    /// some without, in every scan order the ids give, it must still pick
    /// what `rank` puts first.
    #[test]
    fn the_best_is_the_first_of_the_ranking_whatever_the_places() {
        let mut fed = TestFederation::new("best");
        let regions = ["RU-VLG", "RU-MOW", "RU-SPE"];
        let levels = [OrgLevel::District, OrgLevel::Regional, OrgLevel::Federal];
        let mut dir = Directory::new();
        for i in 0..36u64 {
            // Some offer one of the two specialties asked for, some both,
            // and some take planned cases only.
            let offered = [
                &[Specialty::Cardiology][..],
                &[Specialty::Cardiology, Specialty::Neurology],
                &[Specialty::Neurology],
                &[Specialty::Cardiology],
                &[Specialty::Neurology, Specialty::Cardiology],
            ][(i % 5) as usize];
            let org = fed.org(
                i + 1,
                levels[(i % 3) as usize],
                regions[(i / 3 % 3) as usize],
                offered,
            );
            let mut rec = org.record(1);
            if i % 7 == 6 {
                for service in &mut rec.services {
                    service.urgencies = [Urgency::Planned].into();
                }
            }
            // Every fourth one has a slot, at one of two times: ties in the
            // slot too, decided by the share.
            if i % 4 == 0 {
                rec.slots.push(Slot {
                    consultant: ConsultantId(1),
                    specialty: Specialty::Cardiology,
                    start: NOW.saturating_add(Duration::from_secs(3600 * (1 + i % 8 / 4))),
                    end: NOW.saturating_add(Duration::from_secs(86_400)),
                });
            }
            dir.insert(org.sign(&rec), &fed.trust, NOW).unwrap();
        }
        let ids: Vec<OrgId> = dir.entries().map(|e| e.org()).collect();
        for case in 0..120u8 {
            let req = RouteRequest {
                specialty: [Specialty::Cardiology, Specialty::Neurology][usize::from(case % 2)],
                min_level: levels[usize::from(case % 3)],
                urgency: Urgency::ALL[usize::from(case / 2 % 3)],
                region: (case % 4 != 3)
                    .then(|| RegionCode::new(regions[usize::from(case % 4)]).unwrap()),
                // Some of the best placed already tried.
                exclude: ids
                    .iter()
                    .copied()
                    .skip(usize::from(case) % 7)
                    .step_by(5)
                    .collect(),
                case: [case; 16],
            };
            let ranked = rank(&dir, &req, NOW);
            assert!(ranked.candidates.len() > 1, "case {case}");
            assert_eq!(best(&dir, &req, NOW).as_ref(), ranked.best(), "case {case}");
        }
    }
}
