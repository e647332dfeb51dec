//! What routing asks of each organization a directory holds, read without
//! opening its record: a case is routed by scanning the whole directory
//! (5,200 organizations in a national federation), and reading each
//! record's level and services meant following two or three pointers per
//! organization, most of them for organizations that take no such case.

use super::Service;
use crate::cert::OrgLevel;
use crate::specialty::Specialty;
use crate::urgency::Urgency;

/// 64-bit words that hold one bit per specialty of the catalogue.
const WORDS: usize = Specialty::ALL.len().div_ceil(64);

/// An organization's level, and which specialties it takes at each
/// urgency, as one bit per specialty. Kept in the directory entry beside
/// the record it is computed from, and never changed apart from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Accepts {
    pub(super) level: OrgLevel,
    taken: [[u64; WORDS]; Urgency::ALL.len()],
}

impl Accepts {
    pub(super) fn of(level: OrgLevel, services: &[Service]) -> Self {
        let mut taken = [[0; WORDS]; Urgency::ALL.len()];
        for service in services {
            let (word, bit) = position(service.specialty);
            for &urgency in &service.urgencies {
                taken[urgency as usize][word] |= bit;
            }
        }
        Self { level, taken }
    }

    pub(super) fn takes(&self, specialty: Specialty, urgency: Urgency) -> bool {
        let (word, bit) = position(specialty);
        self.taken[urgency as usize][word] & bit != 0
    }
}

/// The word and bit of `specialty` (codes start at 1).
fn position(specialty: Specialty) -> (usize, u64) {
    let index = usize::from(specialty.code()) - 1;
    (index / 64, 1 << (index % 64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn service(specialty: Specialty, urgencies: &[Urgency]) -> Service {
        Service {
            specialty,
            urgencies: urgencies.iter().copied().collect::<BTreeSet<_>>(),
            deadlines: None,
        }
    }

    /// The bits say exactly what the services say, for every specialty of
    /// the catalogue at every urgency: the first, the last, and those
    /// offered at some urgencies only.
    #[test]
    fn takes_exactly_what_the_services_offer() {
        let last = *Specialty::ALL.last().expect("a catalogue");
        let services = vec![
            service(Specialty::ALL[0], &[Urgency::Planned]),
            service(Specialty::Cardiology, &Urgency::ALL),
            service(last, &[Urgency::Urgent, Urgency::Emergency]),
        ];
        let accepts = Accepts::of(OrgLevel::Regional, &services);
        assert_eq!(accepts.level, OrgLevel::Regional);
        for &specialty in Specialty::ALL {
            for urgency in Urgency::ALL {
                let offered = services
                    .iter()
                    .any(|s| s.specialty == specialty && s.urgencies.contains(&urgency));
                assert_eq!(
                    accepts.takes(specialty, urgency),
                    offered,
                    "{specialty} at {urgency}"
                );
            }
        }
        assert!(!Accepts::of(OrgLevel::District, &[]).takes(last, Urgency::Emergency));
    }
}
