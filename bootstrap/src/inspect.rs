//! `inspect`: what a certificate, chain or revocation notice says, for the
//! people who hand these files around and need to know, before installing
//! one on a hospital's node, whom it certifies and whether it will be accepted.

use crate::BootstrapError;
use crate::files::{AuthorityFile, read_authority_file};
use crate::hex::sealing_key_hex;
use konsilium_protocol::cert::{
    AuthorityCert, CertChain, CertError, OrgCert, RevocationNotice, Trust, Validity,
};
use konsilium_protocol::identity::AuthorityKey;
use konsilium_protocol::signed::{Signable, Signed};
use konsilium_protocol::time::Timestamp;
use std::fmt::Write as _;
use std::path::Path;

/// Beyond this many, a revocation list's serials are summarised: a list may
/// hold up to a million.
const SHOWN_SERIALS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Human-readable description, ending with the verification result.
    pub report: String,
    /// `None` when no root was given to verify against.
    pub verification: Option<Result<(), CertError>>,
}

pub fn inspect_file(
    path: &Path,
    root: Option<AuthorityKey>,
    now: Timestamp,
) -> Result<Inspection, BootstrapError> {
    Ok(inspect(&read_authority_file(path)?, root, now))
}

/// Describes `file` and, given a root, verifies it the way a node would at
/// `now`: chains with `Trust::verify_chain`, notices with
/// `Trust::apply_revocations`, authority certificates by the root's
/// signature and validity. Names are printed escaped, because the file may
/// come from anywhere and a name must not be able to forge terminal lines.
pub fn inspect(file: &AuthorityFile, root: Option<AuthorityKey>, now: Timestamp) -> Inspection {
    let mut out = String::new();
    let verification = match file {
        AuthorityFile::AuthorityCert(signed) => {
            out.push_str("authority certificate\n");
            describe_authority(&mut out, signed, now);
            root.map(|root| verify_authority(signed, root, now))
        }
        AuthorityFile::CertChain(chain) => {
            describe_chain(&mut out, chain, now);
            root.map(|root| Trust::new([root]).verify_chain(chain, now).map(drop))
        }
        AuthorityFile::RevocationNotice(notice) => {
            describe_notice(&mut out, notice, now);
            root.map(|root| Trust::new([root]).apply_revocations(notice, now).map(drop))
        }
    };
    match (&verification, root) {
        (None, _) | (_, None) => out.push_str(
            "not verified: pass --root <root public key> to check it the way a node will\n",
        ),
        (Some(Ok(())), Some(root)) => {
            let _ = writeln!(out, "verified against root {root} at {now}: accepted");
        }
        (Some(Err(e)), Some(root)) => {
            let _ = writeln!(out, "verified against root {root} at {now}: REFUSED: {e}");
        }
    }
    Inspection {
        report: out,
        verification,
    }
}

fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "  {label:<12} {value}");
}

fn validity_line(out: &mut String, v: &Validity, now: Timestamp) {
    let status = if now < v.from {
        "not yet valid"
    } else if now >= v.until {
        "expired"
    } else {
        "valid now"
    };
    line(
        out,
        "valid",
        format!("{} to {} ({status})", v.from, v.until),
    );
}

/// Checks the signature against the key the object itself names as its
/// signer: proves the file is intact, not that the signer is trusted.
fn signature_line<T: Signable>(out: &mut String, signed: &Signed<T>, named: &AuthorityKey) {
    let intact = named
        .verifying_key()
        .is_ok_and(|key| signed.verify(&key).is_ok());
    line(
        out,
        "signature",
        if intact {
            "intact (matches the issuer it names)"
        } else {
            "DOES NOT MATCH the issuer it names: damaged or forged"
        },
    );
}

fn describe_authority(out: &mut String, signed: &Signed<AuthorityCert>, now: Timestamp) {
    let cert = match signed.decode_unverified() {
        Ok(cert) => cert,
        Err(e) => {
            line(out, "unreadable", e);
            return;
        }
    };
    line(out, "name", format!("{:?}", cert.name));
    line(out, "key", cert.authority);
    line(
        out,
        "scope",
        format!(
            "region {}, may certify levels up to {}",
            cert.scope.region, cert.scope.max_level
        ),
    );
    validity_line(out, &cert.validity, now);
    line(out, "serial", cert.serial);
    line(out, "issuer", format!("{} (a root)", cert.issuer));
    signature_line(out, signed, &cert.issuer);
}

fn describe_org(out: &mut String, signed: &Signed<OrgCert>, now: Timestamp) {
    let cert = match signed.decode_unverified() {
        Ok(cert) => cert,
        Err(e) => {
            line(out, "unreadable", e);
            return;
        }
    };
    line(out, "name", format!("{:?}", cert.name));
    line(out, "id", cert.org);
    line(out, "level", cert.level);
    line(out, "region", &cert.region);
    line(out, "sealing key", sealing_key_hex(&cert.sealing_key));
    validity_line(out, &cert.validity, now);
    line(out, "serial", cert.serial);
    line(out, "issuer", cert.issuer);
    signature_line(out, signed, &cert.issuer);
}

fn describe_chain(out: &mut String, chain: &CertChain, now: Timestamp) {
    out.push_str("certificate chain\norganization certificate\n");
    describe_org(out, &chain.org, now);
    match &chain.authority {
        None => out.push_str("issued directly by a root (no regional authority)\n"),
        Some(authority) => {
            out.push_str("issued by regional authority\n");
            describe_authority(out, authority, now);
        }
    }
}

fn describe_notice(out: &mut String, notice: &RevocationNotice, now: Timestamp) {
    out.push_str("revocation notice\n");
    match notice.list.decode_unverified() {
        Ok(list) => {
            line(out, "issuer", list.issuer);
            line(out, "sequence", list.sequence);
            line(out, "issued at", list.issued_at);
            let mut shown: Vec<String> = list
                .revoked
                .iter()
                .take(SHOWN_SERIALS)
                .map(u64::to_string)
                .collect();
            if list.revoked.len() > SHOWN_SERIALS {
                shown.push(format!("and {} more", list.revoked.len() - SHOWN_SERIALS));
            }
            line(
                out,
                "revoked",
                format!("{} serial(s): {}", list.revoked.len(), shown.join(", ")),
            );
            signature_line(out, &notice.list, &list.issuer);
        }
        Err(e) => line(out, "unreadable", e),
    }
    match &notice.authority {
        None => out.push_str("signed by a root (no regional authority)\n"),
        Some(authority) => {
            out.push_str("signed by regional authority\n");
            describe_authority(out, authority, now);
        }
    }
}

/// What a node checks of a regional authority's certificate, minus
/// revocations (which `inspect` is not given).
fn verify_authority(
    signed: &Signed<AuthorityCert>,
    root: AuthorityKey,
    now: Timestamp,
) -> Result<(), CertError> {
    const WHAT: &str = "authority certificate";
    let cert = signed.decode_unverified()?;
    if cert.issuer != root {
        return Err(CertError::UnknownRoot {
            what: WHAT,
            issuer: cert.issuer,
        });
    }
    let key = root.verifying_key().map_err(|reason| CertError::BadKey {
        what: "root key",
        reason,
    })?;
    signed.verify(&key)?;
    if now < cert.validity.from {
        return Err(CertError::NotYetValid {
            what: WHAT,
            from: cert.validity.from,
            now,
        });
    }
    if now >= cert.validity.until {
        return Err(CertError::Expired {
            what: WHAT,
            until: cert.validity.until,
            now,
        });
    }
    Ok(())
}
