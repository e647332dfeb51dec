//! Packages bound for the same hop in one turn leave together, as one
//! request (`Request::DeliverMany`), answered with one answer each.
//!
//! Every request costs both nodes a stream, a timer, a frame and a wake-up
//! of each side's connection task, whatever it carries; under a burst those
//! cost more than a small package's own handling. The delivery machine
//! still decides each package's attempt, window place and answer on its
//! own ([`super::Output::Deliver`]); a parcel only groups the sends of one
//! turn of the node's loop. A turn with one package sends it alone.

use super::Token;
use crate::identity::OrgId;
use std::collections::BTreeMap;

/// Packages a parcel carries at most. A hop's window (`WINDOW`, 64) is
/// four parcels: the recipient opens and stores one while the next
/// travels, where one parcel of the whole window would leave each side
/// idle while the other works. A recipient refuses a larger parcel.
pub const MAX_PARCEL: usize = 16;

/// Sealed bytes a parcel carries at most: a larger package leaves alone,
/// so a big body never holds small ones behind it.
pub const MAX_PARCEL_BYTES: usize = 256 << 10;

/// Sends for one hop, in the order the machine gave them.
#[derive(Debug)]
pub struct Parcel<T> {
    pub to: OrgId,
    pub items: Vec<(Token, T)>,
    bytes: usize,
}

/// The parcels being filled during one turn, one for each hop.
#[derive(Debug)]
pub struct Parcels<T> {
    open: BTreeMap<OrgId, Parcel<T>>,
}

impl<T> Default for Parcels<T> {
    fn default() -> Self {
        Self {
            open: BTreeMap::new(),
        }
    }
}

impl<T> Parcels<T> {
    /// Adds a send of `bytes` sealed bytes for `to`. Returns the parcels
    /// to send now: the open one if the item would take it over its
    /// bytes, and the item's own if that is now full.
    pub fn add(
        &mut self,
        to: OrgId,
        token: Token,
        item: T,
        bytes: usize,
    ) -> impl Iterator<Item = Parcel<T>> + use<T> {
        let over =
            (self.open.get(&to)).is_some_and(|p| p.bytes.saturating_add(bytes) > MAX_PARCEL_BYTES);
        let before = if over { self.open.remove(&to) } else { None };
        let parcel = self.open.entry(to).or_insert_with(|| Parcel {
            to,
            items: Vec::new(),
            bytes: 0,
        });
        parcel.items.push((token, item));
        parcel.bytes = parcel.bytes.saturating_add(bytes);
        let full = parcel.items.len() >= MAX_PARCEL || parcel.bytes >= MAX_PARCEL_BYTES;
        let this = if full { self.open.remove(&to) } else { None };
        before.into_iter().chain(this)
    }

    /// Every parcel still open: the turn is over, they all leave.
    pub fn take(&mut self) -> impl Iterator<Item = Parcel<T>> + use<T> {
        std::mem::take(&mut self.open).into_values()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::OrgLevel;
    use crate::specialty::Specialty;
    use crate::testkit::TestFederation;

    fn two_hops() -> (OrgId, OrgId) {
        let mut fed = TestFederation::new("parcels");
        let cardio = [Specialty::Cardiology];
        let a = fed.org(1, OrgLevel::Regional, "RU-VLG", &cardio).id();
        let b = fed.org(2, OrgLevel::Federal, "RU-MOW", &cardio).id();
        (a, b)
    }

    fn tokens<T>(parcel: &Parcel<T>) -> Vec<u64> {
        parcel.items.iter().map(|(t, _)| t.raw()).collect()
    }

    #[test]
    fn a_turns_sends_go_in_one_parcel_for_each_hop_in_order() {
        let (a, b) = two_hops();
        let mut parcels = Parcels::default();
        for n in 0..6 {
            let to = if n % 2 == 0 { a } else { b };
            assert_eq!(parcels.add(to, Token(n), (), 1024).count(), 0);
        }
        let sent: Vec<_> = parcels.take().collect();
        assert!(parcels.is_empty());
        assert_eq!(sent.len(), 2);
        let of = |hop| sent.iter().find(|p| p.to == hop).unwrap();
        assert_eq!(tokens(of(a)), [0, 2, 4]);
        assert_eq!(tokens(of(b)), [1, 3, 5]);
    }

    #[test]
    fn a_full_parcel_leaves_at_once_and_the_next_one_starts() {
        let (a, _) = two_hops();
        let mut parcels = Parcels::default();
        let mut full = Vec::new();
        for n in 0..(MAX_PARCEL as u64 * 2 + 3) {
            full.extend(parcels.add(a, Token(n), (), 100));
        }
        assert_eq!(full.len(), 2);
        assert!(full.iter().all(|p| p.items.len() == MAX_PARCEL));
        assert_eq!(tokens(&full[1])[0], MAX_PARCEL as u64);
        let rest: Vec<_> = parcels.take().collect();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].items.len(), 3);
    }

    #[test]
    fn a_large_package_never_waits_behind_small_ones_nor_holds_them() {
        let (a, _) = two_hops();
        let mut parcels = Parcels::default();
        assert_eq!(parcels.add(a, Token(0), "small", 1024).count(), 0);
        // Too large to join: the small one's parcel leaves, then the
        // large one, full on its own.
        let sent: Vec<_> = parcels
            .add(a, Token(1), "large", MAX_PARCEL_BYTES)
            .collect();
        assert_eq!(sent.len(), 2);
        assert_eq!(tokens(&sent[0]), [0]);
        assert_eq!(tokens(&sent[1]), [1]);
        assert!(parcels.is_empty());
        // Alone, a large package leaves as soon as it is added.
        let alone: Vec<_> = parcels
            .add(a, Token(2), "large", MAX_PARCEL_BYTES * 2)
            .collect();
        assert_eq!(alone.len(), 1);
        assert_eq!(tokens(&alone[0]), [2]);
        // A small one after it starts a parcel of its own.
        assert_eq!(parcels.add(a, Token(3), "small", 1024).count(), 0);
        assert_eq!(parcels.take().count(), 1);
    }
}
