//! Power cuts: what the store acknowledged (a flush returned) is on the
//! device, not only in the kernel's page cache. The crash test kills the
//! node's process, which leaves the page cache to finish the job; a power
//! cut does not.
//!
//! The store lives on an ext4 file system in a loop device. After each
//! acknowledged write the test copies the loop device's backing file: the
//! copy holds what the file system sent to the device by then, and nothing
//! of what sat dirty in its page cache, as a disk would after losing power
//! at that moment. The copy is then mounted (ext4 replays its journal) and
//! the store opened on it must hold every write acknowledged before it,
//! the attachment store every attachment it completed, and the journal
//! verify against its anchor, which covers every entry flushed.
//!
//! Needs root (losetup, mount) and `mkfs.ext4`: ignored by default, run by
//! `.ci/run` as `cargo test --workspace --test power_cut -- --ignored`.
//!
//! Without the store's own syncs after sled's flush (see
//! `storage/store/durable.rs`) this fails at the first write, and without
//! the directory's sync after an attachment's rename
//! (`datadir::rename_durably`), at the first attachment, and without the
//! anchor's `fdatasync`, at the first write.

use konsilium_node::storage::anchor;
use konsilium_node::storage::blobs::BlobStore;
use konsilium_node::storage::store::{Anchoring, Store};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::identity::{IdentityKey, OrgId};
use konsilium_protocol::journal::{self, Action, Journal};
use konsilium_protocol::seal::{BlobRef, SealedPackage};
use konsilium_protocol::seal::{EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader};
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes acknowledged, each followed by a cut.
const WRITES: u8 = 6;
/// A package body sled stores as a file of its own (over a quarter of its
/// 512 KiB segment).
const LARGE: usize = 300 << 10;
const IMAGE_BYTES: u64 = 64 << 20;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} does not run (needs root and util-linux): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A file system image attached to a loop device and mounted; detached
/// and unmounted when dropped.
struct Mounted {
    device: String,
    at: PathBuf,
}

impl Mounted {
    fn new(image: &Path, at: &Path) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let image = image.to_str().unwrap();
        let device = run("losetup", &["--find", "--show", image]);
        let mounted = Self {
            device,
            at: at.to_owned(),
        };
        run("mount", &[&mounted.device, at.to_str().unwrap()]);
        mounted
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // sled's flusher thread lets go of its files a moment after the
        // last handle drops.
        for _ in 0..50 {
            let unmounted = Command::new("umount").arg(&self.at).status();
            if unmounted.is_ok_and(|s| s.success()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// An attachment fetched in full: its bytes, and what its package says of it.
fn attachment(n: u8) -> (Vec<u8>, BlobRef) {
    let bytes = vec![n; (64 << 10) + usize::from(n)];
    let blob = BlobRef {
        hash: *blake3::hash(&bytes).as_bytes(),
        size: bytes.len() as u64,
    };
    (bytes, blob)
}

fn package(n: u8, sender: OrgId, recipient: OrgId) -> SealedPackage {
    SealedPackage {
        header: EnvelopeHeader {
            version: PACKAGE_VERSION,
            id: PackageId([n; 16]),
            sender,
            recipient,
            routing: RoutingHeader {
                specialty: Specialty::Neonatology,
                min_level: OrgLevel::Federal,
                urgency: Urgency::Emergency,
                region: None,
            },
            created: Timestamp::from_unix_millis(1_000),
            expires: Timestamp::from_unix_millis(2_000),
            attachments: Vec::new(),
        },
        // Large and small in turn: sled keeps the small ones in its log.
        body: vec![n; if n.is_multiple_of(2) { LARGE } else { 1_000 }],
    }
}

#[test]
#[ignore = "needs root: a loop device and a mount"]
fn every_acknowledged_write_survives_a_power_cut_after_it() {
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(IMAGE_BYTES))
        .unwrap();
    run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
    let (sender, relay) = (
        IdentityKey::from_seed([1; 32]).org_id(),
        IdentityKey::from_seed([2; 32]).org_id(),
    );
    let me = || IdentityKey::from_seed([3; 32]);
    let at = || Timestamp::from_unix_millis(1_000);
    // Each cut: its image, the attachments completed and the packages
    // flushed before it.
    let mut cuts: Vec<(PathBuf, u8, u8)> = Vec::new();
    let mut cut = |completed: u8, flushed: u8| {
        // The power goes now: the device keeps what it was sent.
        let image_now = work.path().join(format!("cut-{}.img", cuts.len()));
        std::fs::copy(&image, &image_now).unwrap();
        cuts.push((image_now, completed, flushed));
    };
    {
        let disk = Mounted::new(&image, &work.path().join("disk"));
        let mut store = Store::open(&disk.at.join("db")).unwrap();
        store.anchor_journal(Anchoring::new(me(), &disk.at, at));
        let blobs = BlobStore::open(&disk.at.join("blobs")).unwrap();
        let mut journal = Journal::new();
        for n in 1..=WRITES {
            let (bytes, blob) = attachment(n);
            let mut partial = blobs.begin(&blob).unwrap();
            partial.append(0, &bytes).unwrap();
            partial.complete().unwrap();
            cut(n, n - 1);
            store
                .put_waiting(&package(n, sender, relay), &relay)
                .unwrap();
            store.set_meta_u64("acknowledged", u64::from(n)).unwrap();
            let user = format!("clinician {n}");
            let entry = journal.append(at(), None, None, Action::Login { user });
            store.put_journal(&entry).unwrap();
            store.flush().unwrap();
            cut(n, n);
        }
    }
    for (i, (image_then, completed, flushed)) in cuts.into_iter().enumerate() {
        let after = format!("after the cut following {completed} attachments and {flushed} writes");
        let disk = Mounted::new(&image_then, &work.path().join(format!("after-{i}")));
        let store = Store::open(&disk.at.join("db")).unwrap_or_else(|e| panic!("{after}: {e}"));
        let blobs = BlobStore::open(&disk.at.join("blobs")).unwrap();
        for n in 1..=completed {
            let (bytes, blob) = attachment(n);
            assert!(blobs.has(&blob), "attachment {n}, {after}");
            assert_eq!(blobs.read(&blob.hash, 0, blob.size as u32).unwrap(), bytes);
        }
        let entries = store.journal().unwrap();
        let mut checkpoints = store.checkpoints().unwrap();
        let anchored = anchor::read(&disk.at).unwrap_or_else(|e| panic!("{after}: {e}"));
        checkpoints.extend(anchored);
        let verified = journal::verify(&entries, &checkpoints, &me().org_id())
            .unwrap_or_else(|e| panic!("the journal, {after}: {e}"));
        assert!(
            verified.anchored >= u64::from(flushed),
            "{after}: {verified:?}"
        );
        let held = store.meta_u64("acknowledged").unwrap();
        assert!(
            held >= Some(u64::from(flushed)) || flushed == 0,
            "{after}, the store says {held:?}"
        );
        for n in 1..=flushed {
            let id = PackageId([n; 16]);
            let taken =
                (store.take_waiting(&id)).unwrap_or_else(|e| panic!("package {n}, {after}: {e}"));
            assert_eq!(
                taken,
                Some((package(n, sender, relay), relay)),
                "package {n}, {after}"
            );
        }
    }
}
