//! The authority workflow end to end, on real files in a temporary directory.

use konsilium_bootstrap::{
    AuthorityRequest, BootstrapError, OrgRequest, REGIONAL_KEY_FILE, ROOT_KEY_FILE, Role,
    SERIALS_FILE, certify_authority, certify_org, init_authority, inspect_file,
    parse_authority_key, public_key, read_authority_cert, revoke, sealing_key_hex,
};
use konsilium_protocol::cert::{
    CertChain, CertError, OrgLevel, RegionCode, RevocationNotice, Trust,
};
use konsilium_protocol::identity::{AuthorityKey, IdentityKey, SealingKey};
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::wire;
use std::collections::BTreeSet;
use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

const DAY_MS: u64 = 86_400_000;
const NOW: Timestamp = Timestamp::from_unix_millis(1_780_000_000_000);

fn later(days: u64) -> Timestamp {
    Timestamp::from_unix_millis(NOW.unix_millis() + days * DAY_MS)
}

/// A root, and a regional authority for RU-VLG certified up to regional level.
struct Federation {
    tmp: TempDir,
    root: AuthorityKey,
    root_dir: PathBuf,
    regional_dir: PathBuf,
    regional_cert: PathBuf,
}

impl Federation {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root_dir = tmp.path().join("root");
        let regional_dir = tmp.path().join("vologda");
        let root = init_authority(&root_dir, Role::Root).unwrap();
        let regional = init_authority(&regional_dir, Role::Regional).unwrap();
        let regional_cert = tmp.path().join("vologda.cert");
        certify_authority(
            &root_dir,
            AuthorityRequest {
                authority: regional,
                name: "Vologda regional telemedicine center".into(),
                region: RegionCode::new("RU-VLG").unwrap(),
                max_level: OrgLevel::Regional,
                days: 3650,
                serial: 1,
            },
            NOW,
            &regional_cert,
        )
        .unwrap();
        Self {
            tmp,
            root,
            root_dir,
            regional_dir,
            regional_cert,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Certifies hospital `seed` through the regional authority.
    fn certify(
        &self,
        seed: u8,
        level: OrgLevel,
        region: &str,
        serial: u64,
        out: &str,
    ) -> Result<PathBuf, BootstrapError> {
        let out = self.path(out);
        certify_org(
            &self.regional_dir,
            Some(&self.regional_cert),
            request(seed, level, region, serial),
            NOW,
            &out,
        )?;
        Ok(out)
    }

    fn trust(&self) -> Trust {
        Trust::new([self.root])
    }
}

fn request(seed: u8, level: OrgLevel, region: &str, serial: u64) -> OrgRequest {
    OrgRequest {
        org: IdentityKey::from_seed([seed; 32]).org_id(),
        name: format!("Kirillov central district hospital {seed}"),
        level,
        region: RegionCode::new(region).unwrap(),
        sealing_key: SealingKey::from_seed([seed ^ 0x55; 32]).public(),
        days: 365,
        serial,
    }
}

fn chain(path: &Path) -> CertChain {
    wire::decode(&fs::read(path).unwrap()).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn root_regional_org_chain_verifies() {
    let fed = Federation::new();
    let out = fed
        .certify(1, OrgLevel::District, "RU-VLG", 10, "kirillov.chain")
        .unwrap();
    let chain = chain(&out);
    let verified = fed.trust().verify_chain(&chain, NOW).unwrap();
    assert_eq!(verified.cert.org, IdentityKey::from_seed([1; 32]).org_id());
    assert_eq!(verified.cert.level, OrgLevel::District);
    assert_eq!(verified.cert.serial, 10);
    let authority = verified.authority.unwrap();
    assert_eq!(authority.scope.max_level, OrgLevel::Regional);
    assert_eq!(authority.issuer, fed.root);
    // Valid a little before issuance (clock skew) and for the days asked.
    assert!(fed.trust().verify_chain(&chain, later(364)).is_ok());
    assert!(fed.trust().verify_chain(&chain, later(365)).is_err());
    let just_before = Timestamp::from_unix_millis(NOW.unix_millis() - 60_000);
    assert!(fed.trust().verify_chain(&chain, just_before).is_ok());
    // Another federation's root does not accept it.
    let stranger = IdentityKey::from_seed([99; 32]).authority_key();
    assert!(Trust::new([stranger]).verify_chain(&chain, NOW).is_err());
}

#[test]
fn root_certifies_a_federal_center_directly() {
    let fed = Federation::new();
    let out = fed.path("nmrc.chain");
    certify_org(
        &fed.root_dir,
        None,
        request(2, OrgLevel::Federal, "RU-MOW", 2),
        NOW,
        &out,
    )
    .unwrap();
    let verified = fed.trust().verify_chain(&chain(&out), NOW).unwrap();
    assert!(verified.authority.is_none());
    assert_eq!(verified.cert.level, OrgLevel::Federal);
}

#[test]
fn regional_authority_is_held_to_its_scope() {
    let fed = Federation::new();
    let e = fed
        .certify(3, OrgLevel::Federal, "RU-VLG", 11, "federal.chain")
        .unwrap_err();
    assert!(
        matches!(
            e,
            BootstrapError::Cert(CertError::LevelTooHigh {
                granted: OrgLevel::Federal,
                max: OrgLevel::Regional
            })
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("level federal, above the issuing authority's limit regional"),
        "{e}"
    );
    let e = fed
        .certify(3, OrgLevel::District, "RU-ARK", 11, "arkhangelsk.chain")
        .unwrap_err();
    assert!(
        matches!(e, BootstrapError::Cert(CertError::OutsideRegion { .. })),
        "{e}"
    );
    assert!(
        e.to_string().contains("RU-ARK") && e.to_string().contains("scoped to RU-VLG"),
        "{e}"
    );
    // A refused grant writes nothing and spends no serial.
    assert!(!fed.path("federal.chain").exists());
    assert!(!fed.path("arkhangelsk.chain").exists());
    fed.certify(3, OrgLevel::Regional, "RU-VLG", 11, "ok.chain")
        .unwrap();
    // Nor can it outlive its own certificate, and the message says how long it may be.
    let mut long = request(4, OrgLevel::District, "RU-VLG", 12);
    long.days = 4000;
    let e = certify_org(
        &fed.regional_dir,
        Some(&fed.regional_cert),
        long,
        NOW,
        &fed.path("long.chain"),
    )
    .unwrap_err();
    assert!(
        matches!(e, BootstrapError::OutlivesAuthority { max_days: 3650, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("--days 3650 or less"), "{e}");
    // A regional authority cannot certify authorities.
    let e = certify_authority(
        &fed.regional_dir,
        AuthorityRequest {
            authority: IdentityKey::from_seed([5; 32]).authority_key(),
            name: "Sub-authority".into(),
            region: RegionCode::new("RU-VLG").unwrap(),
            max_level: OrgLevel::District,
            days: 10,
            serial: 50,
        },
        NOW,
        &fed.path("sub.cert"),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("only a federation root can certify"),
        "{e}"
    );
}

#[test]
fn serial_reuse_is_refused_per_issuer() {
    let fed = Federation::new();
    fed.certify(1, OrgLevel::District, "RU-VLG", 10, "a.chain")
        .unwrap();
    let e = fed
        .certify(2, OrgLevel::District, "RU-VLG", 10, "b.chain")
        .unwrap_err();
    assert!(
        matches!(
            e,
            BootstrapError::SerialUsed {
                serial: 10,
                next_free: 11,
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("serial 10 was already issued") && msg.contains("such as 11"),
        "{msg}"
    );
    assert!(!fed.path("b.chain").exists());
    // The root's serial 1 went to the regional authority's certificate.
    let e = certify_org(
        &fed.root_dir,
        None,
        request(6, OrgLevel::Federal, "RU-MOW", 1),
        NOW,
        &fed.path("c.chain"),
    )
    .unwrap_err();
    assert!(
        matches!(e, BootstrapError::SerialUsed { serial: 1, .. }),
        "{e}"
    );
    // Serials are per issuer: the root may use 10 although the region did.
    certify_org(
        &fed.root_dir,
        None,
        request(6, OrgLevel::Federal, "RU-MOW", 10),
        NOW,
        &fed.path("c.chain"),
    )
    .unwrap();
    // An existing output is never replaced, and the serial is not spent.
    let e = fed
        .certify(7, OrgLevel::District, "RU-VLG", 12, "a.chain")
        .unwrap_err();
    assert!(matches!(e, BootstrapError::OutputExists { .. }), "{e}");
    let e = fed
        .certify(7, OrgLevel::District, "RU-VLG", 12, "no-such-dir/d.chain")
        .unwrap_err();
    assert!(e.to_string().contains("no-such-dir does not exist"), "{e}");
    fed.certify(7, OrgLevel::District, "RU-VLG", 12, "d.chain")
        .unwrap();
    // A damaged register stops issuance rather than risk reuse.
    let serials = fed.regional_dir.join(SERIALS_FILE);
    let mut text = fs::read_to_string(&serials).unwrap();
    text.push_str("twelve org\n");
    fs::write(&serials, text).unwrap();
    let e = fed
        .certify(8, OrgLevel::District, "RU-VLG", 13, "e.chain")
        .unwrap_err();
    assert!(matches!(e, BootstrapError::SerialsDamaged { .. }), "{e}");
    fs::remove_file(&serials).unwrap();
    let e = fed
        .certify(8, OrgLevel::District, "RU-VLG", 13, "e.chain")
        .unwrap_err();
    assert!(e.to_string().contains("restore it from the backup"), "{e}");
}

#[test]
fn revocation_notice_is_accepted_and_revokes_the_chain() {
    let fed = Federation::new();
    let a = chain(
        &fed.certify(1, OrgLevel::District, "RU-VLG", 10, "a.chain")
            .unwrap(),
    );
    let b = chain(
        &fed.certify(2, OrgLevel::District, "RU-VLG", 11, "b.chain")
            .unwrap(),
    );
    let first = fed.path("rev-1.notice");
    let outcome = revoke(
        &fed.regional_dir,
        Some(&fed.regional_cert),
        1,
        &[10].into(),
        NOW,
        &first,
    )
    .unwrap();
    assert_eq!(outcome.list.revoked, BTreeSet::from([10]));
    let notice: RevocationNotice = wire::decode(&fs::read(&first).unwrap()).unwrap();
    let mut trust = fed.trust();
    trust.apply_revocations(&notice, NOW).unwrap();
    assert!(matches!(
        trust.verify_chain(&a, NOW),
        Err(CertError::Revoked { serial: 10, .. })
    ));
    assert!(trust.verify_chain(&b, NOW).is_ok());

    // Same sequence again: refused, naming the next usable one.
    let e = revoke(
        &fed.regional_dir,
        Some(&fed.regional_cert),
        1,
        &[11].into(),
        NOW,
        &fed.path("rev-x.notice"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("use --sequence 2"), "{e}");
    // A serial this authority never issued: refused.
    let e = revoke(
        &fed.regional_dir,
        Some(&fed.regional_cert),
        2,
        &[77].into(),
        NOW,
        &fed.path("rev-x.notice"),
    )
    .unwrap_err();
    assert!(
        matches!(e, BootstrapError::UnknownSerial { serial: 77, .. }),
        "{e}"
    );
    // The next list keeps serial 10 revoked while adding 11.
    let second = fed.path("rev-2.notice");
    let outcome = revoke(
        &fed.regional_dir,
        Some(&fed.regional_cert),
        2,
        &[11].into(),
        later(1),
        &second,
    )
    .unwrap();
    assert_eq!(outcome.list.revoked, BTreeSet::from([10, 11]));
    assert_eq!(outcome.added, BTreeSet::from([11]));
    let notice: RevocationNotice = wire::decode(&fs::read(&second).unwrap()).unwrap();
    trust.apply_revocations(&notice, later(1)).unwrap();
    assert!(trust.verify_chain(&a, later(1)).is_err());
    assert!(trust.verify_chain(&b, later(1)).is_err());

    // The root revokes the regional authority itself (its serial 1).
    let root_notice = fed.path("root-1.notice");
    revoke(&fed.root_dir, None, 1, &[1].into(), NOW, &root_notice).unwrap();
    let mut fresh = fed.trust();
    let notice: RevocationNotice = wire::decode(&fs::read(&root_notice).unwrap()).unwrap();
    fresh.apply_revocations(&notice, NOW).unwrap();
    assert!(matches!(
        fresh.verify_chain(&b, NOW),
        Err(CertError::Revoked {
            what: "authority certificate",
            ..
        })
    ));
}

#[test]
fn inspect_names_the_organization_and_verifies() {
    let fed = Federation::new();
    let out = fed
        .certify(1, OrgLevel::District, "RU-VLG", 10, "kirillov.chain")
        .unwrap();
    let org = IdentityKey::from_seed([1; 32]).org_id();
    let sealing = SealingKey::from_seed([1 ^ 0x55; 32]).public();

    let report = inspect_file(&out, Some(fed.root), NOW).unwrap();
    assert_eq!(report.verification, Some(Ok(())));
    let text = &report.report;
    for expected in [
        "Kirillov central district hospital 1",
        &org.to_string(),
        "district",
        "RU-VLG",
        &sealing_key_hex(&sealing),
        "serial       10",
        "Vologda regional telemedicine center",
        "may certify levels up to regional",
        &fed.root.to_string(),
        "accepted",
        // Validity as RFC 3339.
        &later(365).to_string(),
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(later(365).to_string().ends_with('Z'));

    let unverified = inspect_file(&out, None, NOW).unwrap();
    assert_eq!(unverified.verification, None);
    assert!(unverified.report.contains("not verified"));

    let stranger = IdentityKey::from_seed([99; 32]).authority_key();
    let refused = inspect_file(&out, Some(stranger), NOW).unwrap();
    assert!(matches!(
        refused.verification,
        Some(Err(CertError::UnknownRoot { .. }))
    ));
    assert!(refused.report.contains("REFUSED"), "{}", refused.report);

    let cert = inspect_file(&fed.regional_cert, Some(fed.root), NOW).unwrap();
    assert_eq!(cert.verification, Some(Ok(())));
    assert!(cert.report.contains("authority certificate"));
    let expired = inspect_file(&fed.regional_cert, Some(fed.root), later(4000)).unwrap();
    assert!(matches!(
        expired.verification,
        Some(Err(CertError::Expired { .. }))
    ));

    let notice = fed.path("rev.notice");
    revoke(
        &fed.regional_dir,
        Some(&fed.regional_cert),
        1,
        &[10].into(),
        NOW,
        &notice,
    )
    .unwrap();
    let report = inspect_file(&notice, Some(fed.root), NOW).unwrap();
    assert_eq!(report.verification, Some(Ok(())));
    assert!(
        report.report.contains("1 serial(s): 10"),
        "{}",
        report.report
    );

    fs::write(fed.path("junk"), b"hello").unwrap();
    let e = inspect_file(&fed.path("junk"), None, NOW).unwrap_err();
    assert!(matches!(e, BootstrapError::UnknownFile { .. }), "{e}");
}

#[test]
fn key_files_are_private_and_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("root");
    let key = init_authority(&dir, Role::Root).unwrap();
    let key_path = dir.join(ROOT_KEY_FILE);
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(fs::metadata(&key_path).unwrap().len(), 32);
    let before = fs::read(&key_path).unwrap();

    let e = init_authority(&dir, Role::Root).unwrap_err();
    assert!(
        matches!(e, BootstrapError::AlreadyInitialized { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("root.key"), "{e}");
    let e = init_authority(&dir, Role::Regional).unwrap_err();
    assert!(
        matches!(e, BootstrapError::AlreadyInitialized { .. }),
        "{e}"
    );
    assert!(!dir.join(REGIONAL_KEY_FILE).exists());
    assert_eq!(fs::read(&key_path).unwrap(), before);
    assert_eq!(public_key(&dir).unwrap(), (Role::Root, key));

    // A loosened key is refused before it signs anything.
    fs::set_permissions(&key_path, Permissions::from_mode(0o644)).unwrap();
    let e = certify_org(
        &dir,
        None,
        request(1, OrgLevel::Federal, "RU-MOW", 1),
        NOW,
        &tmp.path().join("x.chain"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("chmod 600"), "{e}");

    // A directory without a key says how to create one.
    let e = certify_org(
        &tmp.path().join("nowhere"),
        None,
        request(1, OrgLevel::Federal, "RU-MOW", 1),
        NOW,
        &tmp.path().join("x.chain"),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("konsilium-authority root init --dir"),
        "{e}"
    );
}

#[test]
fn wrong_directory_for_the_role_is_explained() {
    let fed = Federation::new();
    let e = certify_org(
        &fed.regional_dir,
        None,
        request(1, OrgLevel::District, "RU-VLG", 10),
        NOW,
        &fed.path("x.chain"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("add --issuer-cert"), "{e}");
    let e = certify_org(
        &fed.root_dir,
        Some(&fed.regional_cert),
        request(1, OrgLevel::District, "RU-VLG", 10),
        NOW,
        &fed.path("x.chain"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("drop --issuer-cert"), "{e}");
    // A certificate issued to a different regional authority.
    let other_dir = fed.path("arkhangelsk");
    init_authority(&other_dir, Role::Regional).unwrap();
    let e = certify_org(
        &other_dir,
        Some(&fed.regional_cert),
        request(1, OrgLevel::District, "RU-VLG", 10),
        NOW,
        &fed.path("x.chain"),
    )
    .unwrap_err();
    assert!(
        matches!(e, BootstrapError::IssuerCertMismatch { .. }),
        "{e}"
    );
    // An expired authority certificate cannot issue.
    let e = certify_org(
        &fed.regional_dir,
        Some(&fed.regional_cert),
        request(1, OrgLevel::District, "RU-VLG", 10),
        later(3651),
        &fed.path("x.chain"),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("expired") && e.to_string().contains("new certificate"),
        "{e}"
    );
}

#[test]
fn corrupted_authority_cert_is_refused_clearly() {
    let fed = Federation::new();
    let good = fs::read(&fed.regional_cert).unwrap();
    assert!(read_authority_cert(&fed.regional_cert).is_ok());
    let damaged = fed.path("damaged.cert");
    let use_it = |path: &Path| {
        certify_org(
            &fed.regional_dir,
            Some(path),
            request(1, OrgLevel::District, "RU-VLG", 10),
            NOW,
            &fed.path("x.chain"),
        )
        .unwrap_err()
        .to_string()
    };

    // A flipped byte inside the signed name: decodes, but the signature breaks.
    let name_at = good.windows(7).position(|w| w == b"Vologda").unwrap();
    let mut bytes = good.clone();
    bytes[name_at] ^= 0x20;
    fs::write(&damaged, &bytes).unwrap();
    let msg = use_it(&damaged);
    assert!(
        msg.contains("damaged.cert")
            && msg.contains("damaged (its signature does not match")
            && msg.contains("fresh copy"),
        "{msg}"
    );

    // Truncated.
    fs::write(&damaged, &good[..good.len() - 10]).unwrap();
    let msg = use_it(&damaged);
    assert!(
        msg.contains("damaged (") && msg.contains("fresh copy"),
        "{msg}"
    );

    // Every single-byte change is refused, one way or another.
    for i in 0..good.len() {
        let mut bytes = good.clone();
        bytes[i] ^= 0x01;
        fs::write(&damaged, &bytes).unwrap();
        assert!(read_authority_cert(&damaged).is_err(), "byte {i} accepted");
    }

    // The wrong kind of file, and a newer format.
    let chain_path = fed
        .certify(1, OrgLevel::District, "RU-VLG", 10, "a.chain")
        .unwrap();
    let msg = use_it(&chain_path);
    assert!(
        msg.contains("this is a CertChain file") && msg.contains("certify-authority"),
        "{msg}"
    );
    let mut newer = good.clone();
    newer[6] = b'2';
    fs::write(&damaged, &newer).unwrap();
    assert!(use_it(&damaged).contains("upgrade konsilium-authority"));
    let msg = use_it(&fed.path("missing.cert"));
    assert!(
        msg.contains("missing.cert") && msg.contains("cannot read"),
        "{msg}"
    );
}

#[test]
fn binary_runs_the_whole_flow() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_konsilium-authority"))
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            output.status.success(),
            "{args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    };
    let root = run(&["root", "init", "--dir", "root"]);
    let root = root.trim();
    parse_authority_key(root).unwrap();
    let regional = run(&["regional", "init", "--dir", "vologda"]);
    run(&[
        "root",
        "certify-authority",
        "--root-dir",
        "root",
        "--authority",
        regional.trim(),
        "--name",
        "Vologda regional telemedicine center",
        "--region",
        "RU-VLG",
        "--max-level",
        "regional",
        "--days",
        "3650",
        "--serial",
        "1",
        "--out",
        "vologda.cert",
    ]);
    let org = IdentityKey::from_seed([1; 32]).org_id().to_string();
    let sealing = sealing_key_hex(&SealingKey::from_seed([2; 32]).public());
    let printed = run(&[
        "certify-org",
        "--issuer-dir",
        "vologda",
        "--issuer-cert",
        "vologda.cert",
        "--org",
        &org,
        "--sealing-key",
        &sealing,
        "--name",
        "Kirillov central district hospital",
        "--level",
        "1",
        "--region",
        "RU-VLG",
        "--days",
        "365",
        "--serial",
        "7",
        "--out",
        "kirillov.chain",
    ]);
    assert!(
        printed.contains("kirillov.chain") && printed.contains(&org),
        "{printed}"
    );
    let report = run(&["inspect", "kirillov.chain", "--root", root]);
    assert!(
        report.contains("Kirillov central district hospital") && report.contains("accepted"),
        "{report}"
    );
    run(&[
        "revoke",
        "--issuer-dir",
        "vologda",
        "--issuer-cert",
        "vologda.cert",
        "--sequence",
        "1",
        "--serial",
        "7",
        "--out",
        "vologda-1.notice",
    ]);
    let report = run(&["inspect", "vologda-1.notice", "--root", root]);
    assert!(report.contains("1 serial(s): 7"), "{report}");
    assert_eq!(run(&["public-key", "--dir", "root"]).trim(), root);

    // The files are what a node loads.
    let chain: CertChain = wire::decode(&fs::read(dir.join("kirillov.chain")).unwrap()).unwrap();
    let notice: RevocationNotice =
        wire::decode(&fs::read(dir.join("vologda-1.notice")).unwrap()).unwrap();
    let now = konsilium_bootstrap::timestamp(std::time::SystemTime::now());
    let mut trust = Trust::new([parse_authority_key(root).unwrap()]);
    assert!(trust.verify_chain(&chain, now).is_ok());
    trust.apply_revocations(&notice, now).unwrap();
    assert!(trust.verify_chain(&chain, now).is_err());

    // A failure exits non-zero with the reason on stderr.
    let output = Command::new(env!("CARGO_BIN_EXE_konsilium-authority"))
        .args(["root", "init", "--dir", "root"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("refusing to create another authority"),
        "{stderr}"
    );
}
