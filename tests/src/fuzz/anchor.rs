//! The journal's signed anchor, read from its file and checked against the
//! fixed journal.

use super::*;

/// A journal anchor file's bytes, read as the node reads them (two slots,
/// or an older node's single checkpoint), checked against the fixed journal.
pub fn journal_anchor(data: &[u8]) -> bool {
    let w = &*WORLD;
    use konsilium_node::storage::anchor::{FILE, parse};
    let at = std::path::Path::new(FILE);
    let Ok(Some(anchor)) = parse(at, data) else {
        return false;
    };
    let org = w.federal.id();
    let result = journal::verify(&w.journal, std::slice::from_ref(&anchor), &org);
    // With the genuine anchor alongside, the verdict on the journal is the same
    // or the new anchor's fault.
    let both = journal::verify(&w.journal, &[w.anchor.clone(), anchor], &org);
    assert_eq!(result.is_ok(), both.is_ok());
    match result {
        Ok(v) => {
            assert_eq!(v.entries, w.journal.len() as u64);
            assert!(v.anchored <= v.entries);
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}
