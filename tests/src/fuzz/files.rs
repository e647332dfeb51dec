//! What a node reads from its own files and from the hospital's systems:
//! the config file, a FHIR referral, the journal as stored.

use super::*;
use konsilium_node::config::NodeConfig;
use konsilium_node::fhir;

/// A config file. A parsed config promises absolute paths, whatever the
/// text said, so the node behaves the same from any directory.
pub fn config_file(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match NodeConfig::parse(text, std::path::Path::new("/etc/konsilium")) {
        Ok(config) => {
            assert!(config.data_dir.is_absolute());
            assert!(config.certificate_path.is_absolute());
            assert!(config.revocation_paths.iter().all(|p| p.is_absolute()));
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// A FHIR Bundle from a hospital information system, as the API's import
/// reads it. An imported request reads the same again, and its
/// fingerprint (what idempotent retries are matched by) is stable.
pub fn fhir_referral(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match fhir::import_service_request_json(text) {
        Ok(imported) => {
            let again = fhir::import_service_request_json(text).expect("the same text imports");
            assert_eq!(again.fingerprint(), imported.fingerprint());
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// The journal as stored: entries, each a 2-byte big-endian length and
/// the entry's encoding, verified against the fixed journal's signed
/// anchor. Whatever verifies must begin with the anchored entries.
pub fn journal_file(data: &[u8]) -> bool {
    let w = &*WORLD;
    let mut entries = Vec::new();
    let mut rest = data;
    while let [a, b, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        let Some((bytes, tail)) = (len <= tail.len()).then(|| tail.split_at(len)) else {
            return false;
        };
        let Ok(entry) = postcard::from_bytes::<Entry>(bytes) else {
            return false;
        };
        entries.push(entry);
        rest = tail;
    }
    match journal::verify(&entries, std::slice::from_ref(&w.anchor), &w.federal.id()) {
        Ok(v) => {
            let anchored = v.anchored as usize;
            assert!(anchored > 0 && anchored <= entries.len());
            assert_eq!(entries[..anchored], w.journal[..anchored]);
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// The fixed journal in the file format [`journal_file`] reads.
pub(super) fn stored_journal() -> Vec<u8> {
    let mut file = Vec::new();
    for entry in &WORLD.journal {
        let bytes = postcard::to_stdvec(entry).expect("an entry encodes");
        file.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        file.extend_from_slice(&bytes);
    }
    file
}
