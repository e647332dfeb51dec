//! Replays the fuzzing corpora on the stable toolchain, through the same
//! entry functions the libFuzzer targets call, so every input the fuzzer
//! kept (crash regressions included) is re-checked by `cargo test`.

use konsilium_tests::fuzz::{TARGETS, seeds};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_replays_without_panicking() {
    for (target, run) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(target));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{target} is missing or empty"
        );
        let artifacts = files(&fuzz_dir().join("artifacts").join(target));
        for path in corpus.iter().chain(&artifacts) {
            let data = std::fs::read(path).expect("readable corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
        }
    }
}

#[test]
fn every_target_has_a_corpus_directory_and_nothing_else_does() {
    let mut dirs: Vec<String> = std::fs::read_dir(fuzz_dir().join("corpus"))
        .expect("fuzz/corpus exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(dirs, names);
}

/// The seeds reach past decoding: each is accepted by every check of its
/// target, so the fuzzer starts from inputs that exercise the real logic.
#[test]
fn seeds_are_accepted_by_their_targets() {
    for (target, name, data) in seeds() {
        let run = TARGETS
            .iter()
            .find(|(n, _)| *n == target)
            .map(|(_, f)| f)
            .unwrap_or_else(|| panic!("no target {target}"));
        assert!(run(&data), "{target} refused its seed {name}");
    }
}

/// A corrupted seed is refused, so the targets' verdicts mean something.
#[test]
fn a_flipped_signature_byte_is_refused() {
    for (target, name, mut data) in seeds() {
        // Frames that end in something other than a signature or an
        // authenticated chunk: a flipped last byte is a different valid value.
        if matches!(
            (target, name),
            ("wire_frame" | "hello", _)
                // A Binding request has no integrity to break: its last
                // bytes are the transaction id, or the client's name.
                | ("stun_datagram", _)
                // A description's integrity is its signature (video_signal's).
                | ("sdp_offer", _)
                | ("directory_record", "offer" | "regional_offer" | "summaries")
        ) {
            continue;
        }
        let run = TARGETS.iter().find(|(n, _)| *n == target).unwrap().1;
        let last = data.len() - 1;
        data[last] ^= 0x01;
        assert!(!run(&data), "{target} accepted corrupted seed {name}");
    }
}
