//! An authority directory and what its key issues.

use crate::BootstrapError;
use crate::files::{
    check_output_free, encode_authority_cert, read_authority_cert, read_notice, replace_atomically,
    write_new,
};
use konsilium_keyfile::{KeyFileError, random_seed, read_key_file, write_key_file};
use konsilium_protocol::cert::{
    AuthorityCert, AuthorityGrant, AuthorityScope, CertError, Issuer, OrgCert, OrgGrant, OrgLevel,
    RegionCode, RevocationList, Validity,
};
use konsilium_protocol::identity::{AuthorityKey, IdentityKey, OrgId, SealingPublicKey};
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::wire;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const ROOT_KEY_FILE: &str = "root.key";
pub const REGIONAL_KEY_FILE: &str = "regional.key";
pub const SERIALS_FILE: &str = "serials";
pub const LATEST_NOTICE_FILE: &str = "latest.notice";

/// New certificates start this long before the moment of issuance: a
/// hospital's node whose clock runs a few minutes behind the authority's
/// would otherwise refuse its own fresh certificate as not yet valid.
pub const BACKDATE: Duration = Duration::from_secs(10 * 60);

const DAY: Duration = Duration::from_secs(86_400);

const SERIALS_HEADER: &str = "\
# Serials this authority has issued: serial, kind, subject, end of validity, name.
# konsilium-authority refuses to reuse any of them: revocation lists name serials, so a
# reused serial would revoke two certificates at once. Back this file up with the key.
";

/// Which kind of authority a directory holds. One directory, one issuer:
/// the serials register and revocation state belong to a single key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Root,
    Regional,
}

impl Role {
    pub fn key_file(self) -> &'static str {
        match self {
            Role::Root => ROOT_KEY_FILE,
            Role::Regional => REGIONAL_KEY_FILE,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Root => "root",
            Role::Regional => "regional",
        })
    }
}

/// Best effort at not leaving seeds in freed stack memory (as the node does
/// with its own keys); `black_box` keeps the writes from being optimised out.
fn wipe(seed: &mut [u8; 32]) {
    seed.fill(0);
    std::hint::black_box(seed);
}

fn role_in(dir: &Path) -> Option<Role> {
    [Role::Root, Role::Regional]
        .into_iter()
        .find(|role| fs::symlink_metadata(dir.join(role.key_file())).is_ok())
}

/// Creates a new authority key in `dir` (made 0700 if it does not exist) and
/// an empty serials register, and returns the public key to hand out: a
/// root's goes into every node's `federation.roots`, a regional one's to the
/// root for `root certify-authority`. Refuses a directory that already holds
/// any authority's files, so running init twice cannot replace a key.
pub fn init_authority(dir: &Path, role: Role) -> Result<AuthorityKey, BootstrapError> {
    for file in [
        ROOT_KEY_FILE,
        REGIONAL_KEY_FILE,
        SERIALS_FILE,
        LATEST_NOTICE_FILE,
    ] {
        if fs::symlink_metadata(dir.join(file)).is_ok() {
            return Err(BootstrapError::AlreadyInitialized {
                dir: dir.to_owned(),
                file,
            });
        }
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(BootstrapError::io("cannot create directory", dir))?;

    let mut seed = random_seed()?;
    let key = IdentityKey::from_seed(seed);
    let key_path = dir.join(role.key_file());
    let written = write_key_file(&key_path, &seed);
    wipe(&mut seed);
    written.map_err(|e| match e {
        KeyFileError::Exists { .. } => BootstrapError::AlreadyInitialized {
            dir: dir.to_owned(),
            file: role.key_file(),
        },
        other => other.into(),
    })?;

    let serials_path = dir.join(SERIALS_FILE);
    let register = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&serials_path)
        .and_then(|mut f| {
            f.write_all(SERIALS_HEADER.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| File::open(dir)?.sync_all());
    if let Err(e) = register {
        // A key without a register could issue duplicate serials later.
        let _ = fs::remove_file(&key_path);
        let _ = fs::remove_file(&serials_path);
        return Err(BootstrapError::io("cannot create", &serials_path)(e));
    }
    Ok(key.authority_key())
}

fn load_key(dir: &Path, role: Role) -> Result<IdentityKey, BootstrapError> {
    let path = dir.join(role.key_file());
    let mut seed = read_key_file(&path).map_err(|e| match e {
        KeyFileError::Missing { path } => BootstrapError::NoKey { path, role },
        other => other.into(),
    })?;
    let key = IdentityKey::from_seed(seed);
    wipe(&mut seed);
    Ok(key)
}

/// The public key of the authority in `dir`, for when the output of `init`
/// was lost: it can always be derived again from the key file.
pub fn public_key(dir: &Path) -> Result<(Role, AuthorityKey), BootstrapError> {
    let role = role_in(dir).ok_or_else(|| BootstrapError::NoKey {
        path: dir.join(ROOT_KEY_FILE),
        role: Role::Root,
    })?;
    Ok((role, load_key(dir, role)?.authority_key()))
}

/// A loaded issuer, with its own certificate when it is a regional authority
/// (needed to keep what it issues inside that certificate's validity).
struct LoadedIssuer {
    issuer: Issuer,
    authority: Option<AuthorityCert>,
}

fn load_root(dir: &Path) -> Result<Issuer, BootstrapError> {
    if role_in(dir) == Some(Role::Regional) {
        return Err(BootstrapError::WrongRole {
            dir: dir.to_owned(),
            found: Role::Regional,
            wanted: Role::Root,
            hint: "only a federation root can certify authorities: pass the root's directory",
        });
    }
    Ok(Issuer::root(load_key(dir, Role::Root)?))
}

/// A root issues on its own; a regional authority issues under the
/// certificate the root gave it, which is checked to be for this key and
/// valid now, since anything issued under an expired or foreign certificate
/// would be refused by every node.
fn load_issuer(
    dir: &Path,
    issuer_cert: Option<&Path>,
    now: Timestamp,
) -> Result<LoadedIssuer, BootstrapError> {
    let Some(cert_path) = issuer_cert else {
        if role_in(dir) == Some(Role::Regional) {
            return Err(BootstrapError::WrongRole {
                dir: dir.to_owned(),
                found: Role::Regional,
                wanted: Role::Root,
                hint: "a regional authority issues under its certificate: add \
                       --issuer-cert <the .cert file the root issued to it>",
            });
        }
        return Ok(LoadedIssuer {
            issuer: load_root(dir)?,
            authority: None,
        });
    };
    if role_in(dir) == Some(Role::Root) {
        return Err(BootstrapError::WrongRole {
            dir: dir.to_owned(),
            found: Role::Root,
            wanted: Role::Regional,
            hint: "a root issues on its own authority: drop --issuer-cert",
        });
    }
    let key = load_key(dir, Role::Regional)?;
    let signed = read_authority_cert(cert_path)?;
    let cert = signed
        .decode_unverified()
        .map_err(|e| BootstrapError::BadAuthorityCert {
            path: cert_path.to_owned(),
            reason: e.to_string(),
        })?;
    if cert.authority != key.authority_key() {
        return Err(BootstrapError::IssuerCertMismatch {
            cert: cert_path.to_owned(),
            dir: dir.to_owned(),
            cert_key: cert.authority.to_string(),
            dir_key: key.authority_key().to_string(),
        });
    }
    let not_valid = |reason| BootstrapError::IssuerCertNotValid {
        path: cert_path.to_owned(),
        reason,
    };
    const WHAT: &str = "authority certificate";
    if now < cert.validity.from {
        return Err(not_valid(CertError::NotYetValid {
            what: WHAT,
            from: cert.validity.from,
            now,
        }));
    }
    if now >= cert.validity.until {
        return Err(not_valid(CertError::Expired {
            what: WHAT,
            until: cert.validity.until,
            now,
        }));
    }
    Ok(LoadedIssuer {
        issuer: Issuer::regional(key, signed)?,
        authority: Some(cert),
    })
}

/// The validity of a new certificate: from shortly before `now` (see
/// `BACKDATE`) for `days` days, kept inside the issuing authority's own
/// validity, because a certificate that outlives its issuer is refused.
fn validity(
    now: Timestamp,
    days: u32,
    authority: Option<&AuthorityCert>,
) -> Result<Validity, BootstrapError> {
    if days == 0 {
        return Err(BootstrapError::ZeroDays);
    }
    let mut from = now.saturating_sub(BACKDATE);
    let until = now.saturating_add(DAY * days);
    if let Some(a) = authority {
        from = from.max(a.validity.from);
        if until > a.validity.until {
            return Err(BootstrapError::OutlivesAuthority {
                days,
                until,
                authority_until: a.validity.until,
                max_days: a.validity.until.since(now).as_secs() / DAY.as_secs(),
            });
        }
    }
    Ok(Validity { from, until })
}

/// The issuer's register of used serials (`serials` in its directory).
///
/// Appended to before the certificate is written, so a crash in between
/// wastes a serial rather than allowing it to be issued twice.
struct Serials {
    path: PathBuf,
    used: BTreeMap<u64, String>,
}

impl Serials {
    fn load(dir: &Path) -> Result<Self, BootstrapError> {
        let path = dir.join(SERIALS_FILE);
        let text = fs::read_to_string(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BootstrapError::SerialsMissing { path: path.clone() },
            _ => BootstrapError::io("cannot read", &path)(e),
        })?;
        let mut used = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or_default();
            let serial = first
                .parse::<u64>()
                .map_err(|_| BootstrapError::SerialsDamaged {
                    path: path.clone(),
                    line: i + 1,
                    text: line.to_owned(),
                })?;
            used.insert(serial, line.to_owned());
        }
        Ok(Self { path, used })
    }

    fn check_unused(&self, serial: u64) -> Result<(), BootstrapError> {
        match self.used.get(&serial) {
            Some(entry) => Err(BootstrapError::SerialUsed {
                serial,
                path: self.path.clone(),
                entry: entry.clone(),
                next_free: self.next_free(),
            }),
            None => Ok(()),
        }
    }

    fn next_free(&self) -> u64 {
        self.used
            .keys()
            .next_back()
            .map_or(1, |max| max.saturating_add(1))
    }

    fn check_issued(&self, serial: u64) -> Result<(), BootstrapError> {
        if self.used.contains_key(&serial) {
            Ok(())
        } else {
            Err(BootstrapError::UnknownSerial {
                serial,
                path: self.path.clone(),
            })
        }
    }

    fn record(&self, serial: u64, entry: &str) -> Result<(), BootstrapError> {
        OpenOptions::new()
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                writeln!(f, "{serial} {entry}")?;
                f.sync_all()
            })
            .map_err(BootstrapError::io(
                "cannot record the serial in",
                &self.path,
            ))
    }
}

/// What a root grants a regional authority, as the operator states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityRequest {
    pub authority: AuthorityKey,
    pub name: String,
    pub region: RegionCode,
    pub max_level: OrgLevel,
    pub days: u32,
    pub serial: u64,
}

/// Certifies a regional authority with the root key in `root_dir` and writes
/// the certificate to `out` (the `KSAUTH1` format, see `files`). The
/// certificate is fully checked before the serial is recorded and the file
/// written, so a refused request spends nothing.
pub fn certify_authority(
    root_dir: &Path,
    request: AuthorityRequest,
    now: Timestamp,
    out: &Path,
) -> Result<AuthorityCert, BootstrapError> {
    let root = load_root(root_dir)?;
    let serials = Serials::load(root_dir)?;
    serials.check_unused(request.serial)?;
    check_output_free(out)?;
    let signed = root.certify_authority(AuthorityGrant {
        authority: request.authority,
        name: request.name,
        scope: AuthorityScope {
            region: request.region,
            max_level: request.max_level,
        },
        validity: validity(now, request.days, None)?,
        serial: request.serial,
    })?;
    let cert = signed.decode_unverified().map_err(CertError::from)?;
    serials.record(
        cert.serial,
        &format!(
            "authority {} {} up-to-{} until {} {}",
            cert.authority, cert.scope.region, cert.scope.max_level, cert.validity.until, cert.name
        ),
    )?;
    write_new(out, &encode_authority_cert(&signed))?;
    Ok(cert)
}

/// What an organization is certified as, as the operator states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRequest {
    pub org: OrgId,
    pub name: String,
    pub level: OrgLevel,
    pub region: RegionCode,
    pub sealing_key: SealingPublicKey,
    pub days: u32,
    pub serial: u64,
}

/// Certifies an organization and writes its chain to `out` as a wire frame,
/// the file a node's `organization.certificate` names. The issuer is the
/// root in `issuer_dir`, or the regional authority there when `issuer_cert`
/// is given; a grant outside a regional authority's region or above its
/// level is refused with the protocol's own error, the one nodes would give.
pub fn certify_org(
    issuer_dir: &Path,
    issuer_cert: Option<&Path>,
    request: OrgRequest,
    now: Timestamp,
    out: &Path,
) -> Result<OrgCert, BootstrapError> {
    let loaded = load_issuer(issuer_dir, issuer_cert, now)?;
    let serials = Serials::load(issuer_dir)?;
    serials.check_unused(request.serial)?;
    check_output_free(out)?;
    let chain = loaded.issuer.certify_org(OrgGrant {
        org: request.org,
        name: request.name,
        level: request.level,
        region: request.region,
        sealing_key: request.sealing_key,
        validity: validity(now, request.days, loaded.authority.as_ref())?,
        serial: request.serial,
    })?;
    let bytes = wire::encode(&chain).map_err(|source| BootstrapError::Wire {
        path: out.to_owned(),
        what: "certificate chain",
        source,
    })?;
    let cert = chain.org.decode_unverified().map_err(CertError::from)?;
    serials.record(
        cert.serial,
        &format!(
            "org {} {} {} until {} {}",
            cert.org, cert.region, cert.level, cert.validity.until, cert.name
        ),
    )?;
    write_new(out, &bytes)?;
    Ok(cert)
}

/// The outcome of `revoke`: the complete list as signed, and which serials it
/// adds to the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub list: RevocationList,
    pub added: BTreeSet<u64>,
}

/// Signs a new revocation list and writes it to `out` as a wire frame (what
/// a node's `federation.revocations` loads).
///
/// A node keeps only each issuer's newest list, so a list that forgot an
/// earlier serial would reinstate that certificate everywhere. The list
/// signed here is therefore the previous one (`latest.notice` in the issuer
/// directory) plus `serials`; the sequence must exceed the previous one's,
/// and every serial must be one this authority issued, so a typo cannot
/// revoke nothing (or a certificate that does not exist yet).
pub fn revoke(
    issuer_dir: &Path,
    issuer_cert: Option<&Path>,
    sequence: u64,
    serials: &BTreeSet<u64>,
    now: Timestamp,
    out: &Path,
) -> Result<Revocation, BootstrapError> {
    let loaded = load_issuer(issuer_dir, issuer_cert, now)?;
    let register = Serials::load(issuer_dir)?;
    for &serial in serials {
        register.check_issued(serial)?;
    }
    let latest_path = issuer_dir.join(LATEST_NOTICE_FILE);
    let mut revoked = BTreeSet::new();
    if fs::symlink_metadata(&latest_path).is_ok() {
        let previous = read_notice(&latest_path)?
            .list
            .decode_unverified()
            .map_err(CertError::from)?;
        if previous.issuer != loaded.issuer.key() {
            return Err(BootstrapError::ForeignNotice {
                path: latest_path,
                found: previous.issuer.to_string(),
                expected: loaded.issuer.key().to_string(),
            });
        }
        if sequence <= previous.sequence {
            return Err(BootstrapError::StaleSequence {
                sequence,
                previous: previous.sequence,
                path: latest_path,
            });
        }
        revoked = previous.revoked;
    }
    let added: BTreeSet<u64> = serials.difference(&revoked).copied().collect();
    revoked.extend(serials);
    check_output_free(out)?;
    let notice = loaded.issuer.revoke(sequence, now, revoked);
    let bytes = wire::encode(&notice).map_err(|source| BootstrapError::Wire {
        path: out.to_owned(),
        what: "revocation notice",
        source,
    })?;
    // The state first: if writing `out` then fails, the next list still
    // carries these serials and needs a higher sequence, never a lower one.
    replace_atomically(&latest_path, &bytes)?;
    write_new(out, &bytes)?;
    let list = notice.list.decode_unverified().map_err(CertError::from)?;
    Ok(Revocation { list, added })
}
