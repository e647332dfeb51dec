//! The keys a thread validated lately.
//!
//! Validating a key (decompressing it to a curve point and testing that
//! the point is not of small order) costs about half a signature check,
//! and the same ids come back again and again: each gossiped record and
//! each package header carries them. A national federation's working set
//! is about 5,200 keys.
//!
//! Only the key's bytes are kept: checks take keys as bytes, and the few
//! that need the point decompress it. The cache is a fixed table, four
//! keys to a set, the least recently used of a set giving way to a new
//! key: a lookup reads one set and allocates nothing, so a cold start,
//! whose 20,000 keys are each new once, pays a few comparisons per key for
//! it (a two-generation hash map of points cost 8 ms of such a start's
//! ~520). Keys chosen to fall into one set can only push each other out,
//! which costs a validation each time, never more than no cache would.

/// Keys per set.
const WAYS: usize = 4;
/// Sets in the table: 16,384 keys in all, 512 KiB per thread (touched as
/// used), three times the keys of a national federation: few of its sets
/// would hold more than four of them.
const SETS: usize = 4096;
/// How many keys the table holds.
#[cfg(test)]
pub(super) const CAPACITY: usize = WAYS * SETS;

/// An empty slot. All zero bytes are a point of small order (y = 0, of
/// order 4), which never passes validation, so no validated key is mistaken
/// for an empty slot; and a lookup of these bytes must not find one.
const EMPTY: [u8; 32] = [0; 32];

pub(super) struct Recent {
    sets: Vec<[[u8; 32]; WAYS]>,
}

impl Default for Recent {
    fn default() -> Self {
        Self {
            sets: vec![[EMPTY; WAYS]; SETS],
        }
    }
}

impl Recent {
    /// Whether `bytes` were validated lately; a key found moves to the
    /// front of its set, to stay longest.
    pub(super) fn holds(&mut self, bytes: &[u8; 32]) -> bool {
        if *bytes == EMPTY {
            return false;
        }
        let set = &mut self.sets[set_of(bytes)];
        match set.iter().position(|k| k == bytes) {
            Some(way) => {
                set[..=way].rotate_right(1);
                true
            }
            None => false,
        }
    }

    /// Records a key that passed validation, in place of its set's least
    /// recently used.
    pub(super) fn insert(&mut self, bytes: [u8; 32]) {
        debug_assert_ne!(bytes, EMPTY, "all zeros is never a valid key");
        let set = &mut self.sets[set_of(&bytes)];
        set.rotate_right(1);
        set[0] = bytes;
    }

    #[cfg(test)]
    pub(super) fn contains(&self, bytes: &[u8; 32]) -> bool {
        *bytes != EMPTY && self.sets[set_of(bytes)].contains(bytes)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.sets.iter().flatten().filter(|k| **k != EMPTY).count()
    }
}

/// A key's set: from bytes of its encoded y coordinate, uniform for
/// honestly made keys.
fn set_of(bytes: &[u8; 32]) -> usize {
    usize::from(u16::from_le_bytes([bytes[0], bytes[1]])) % SETS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct keys that all fall into one set.
    fn in_one_set(n: u8) -> Vec<[u8; 32]> {
        (1..=n)
            .map(|i| {
                let mut k = [0u8; 32];
                k[0] = 7;
                k[31] = i;
                k
            })
            .collect()
    }

    #[test]
    fn a_set_keeps_its_most_recently_used_keys() {
        let mut recent = Recent::default();
        let keys = in_one_set(WAYS as u8 + 1);
        for k in &keys[..WAYS] {
            recent.insert(*k);
        }
        // The first key used again, then one more: the second, now the
        // least recently used, gives way.
        assert!(recent.holds(&keys[0]));
        recent.insert(keys[WAYS]);
        assert!(recent.contains(&keys[0]));
        assert!(!recent.contains(&keys[1]));
        assert!(recent.holds(&keys[WAYS]));
        assert!(!recent.holds(&keys[1]));
        assert_eq!(recent.len(), WAYS);
    }

    #[test]
    fn an_empty_slot_is_never_found() {
        let mut recent = Recent::default();
        assert!(!recent.holds(&EMPTY));
        assert_eq!(recent.len(), 0);
    }
}
