//! Federation certificates: who may take part, at which level, in which region.
//!
//! A root authority (for instance the federal telemedicine center) certifies
//! regional authorities and organizations; a regional authority certifies
//! organizations of its own region up to the level it was granted. Every node
//! holds the root keys and verifies chains itself, so no online service has to
//! be asked whether a peer is genuine. Revocations are signed lists, one per
//! issuer, replaced by a higher sequence number.

use crate::identity::{AuthorityKey, CheckedKey, IdentityKey, KeyError, OrgId, SealingPublicKey};
use crate::limits::{FieldError, MAX_REVOKED_SERIALS, check_count, check_name};
use crate::signed::{Signable, SignatureCheck, Signed, SignedError, verify_all};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Level of care. The order matters: escalation goes upward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum OrgLevel {
    /// District and central-area hospitals, polyclinics, rural units.
    District = 1,
    /// Regional (oblast, city) hospitals and regional consultation centers.
    Regional = 2,
    /// Federal centers and national medical research centers.
    Federal = 3,
}

impl OrgLevel {
    pub const ALL: [OrgLevel; 3] = [OrgLevel::District, OrgLevel::Regional, OrgLevel::Federal];

    pub fn number(self) -> u8 {
        self as u8
    }

    /// The next level up, for escalation.
    pub fn above(self) -> Option<OrgLevel> {
        match self {
            OrgLevel::District => Some(OrgLevel::Regional),
            OrgLevel::Regional => Some(OrgLevel::Federal),
            OrgLevel::Federal => None,
        }
    }
}

impl TryFrom<u8> for OrgLevel {
    type Error = FieldError;
    fn try_from(n: u8) -> Result<Self, FieldError> {
        match n {
            1 => Ok(OrgLevel::District),
            2 => Ok(OrgLevel::Regional),
            3 => Ok(OrgLevel::Federal),
            _ => Err(FieldError::Invalid {
                field: "level",
                reason: format!(
                    "{n} is not a level: use 1 (district), 2 (regional) or 3 (federal)"
                ),
            }),
        }
    }
}

impl From<OrgLevel> for u8 {
    fn from(l: OrgLevel) -> u8 {
        l as u8
    }
}

impl fmt::Display for OrgLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OrgLevel::District => "district",
            OrgLevel::Regional => "regional",
            OrgLevel::Federal => "federal",
        })
    }
}

impl FromStr for OrgLevel {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "1" | "district" => Ok(OrgLevel::District),
            "2" | "regional" => Ok(OrgLevel::Regional),
            "3" | "federal" => Ok(OrgLevel::Federal),
            other => Err(FieldError::Invalid {
                field: "level",
                reason: format!("{other:?} is not a level: use district|regional|federal or 1|2|3"),
            }),
        }
    }
}

/// A region code such as ISO 3166-2 `RU-VLG` or `UA-32`: uppercase ASCII
/// letters, digits and '-', 2 to 16 characters, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegionCode(String);

impl RegionCode {
    pub fn new(code: impl Into<String>) -> Result<Self, FieldError> {
        let code = code.into();
        let ok_len = (2..=16).contains(&code.len());
        let ok_chars = code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
        let ok_start = code.bytes().next().is_some_and(|b| b.is_ascii_uppercase());
        if ok_len && ok_chars && ok_start {
            Ok(Self(code))
        } else {
            Err(FieldError::Invalid {
                field: "region",
                reason: format!(
                    "{code:?} is not a region code: use 2-16 uppercase letters, digits or '-', like RU-VLG"
                ),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RegionCode {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        Self::new(s)
    }
}

impl From<RegionCode> for String {
    fn from(r: RegionCode) -> String {
        r.0
    }
}

impl FromStr for RegionCode {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::new(s)
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a regional authority may grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityScope {
    pub region: RegionCode,
    pub max_level: OrgLevel,
}

/// A validity window, `from` inclusive, `until` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    pub from: Timestamp,
    pub until: Timestamp,
}

impl Validity {
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.until
    }

    fn within(&self, outer: &Validity) -> bool {
        outer.from <= self.from && self.until <= outer.until
    }
}

/// A root's grant of certification power to a regional authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityCert {
    pub authority: AuthorityKey,
    pub name: String,
    pub scope: AuthorityScope,
    pub validity: Validity,
    pub serial: u64,
    pub issuer: AuthorityKey,
}

impl Signable for AuthorityCert {
    const DOMAIN: &'static [u8] = b"konsilium/authority-cert/v1\0";
}

/// An organization's membership in the federation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgCert {
    pub org: OrgId,
    pub name: String,
    pub level: OrgLevel,
    pub region: RegionCode,
    /// The sealing key at enrolment; the directory record may carry a rotated one.
    pub sealing_key: SealingPublicKey,
    pub validity: Validity,
    /// Unique per issuer; what revocation lists name.
    pub serial: u64,
    pub issuer: AuthorityKey,
}

impl Signable for OrgCert {
    const DOMAIN: &'static [u8] = b"konsilium/org-cert/v1\0";
}

/// What an organization presents: its certificate, and the regional
/// authority's certificate when a regional authority issued it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertChain {
    pub authority: Option<Signed<AuthorityCert>>,
    pub org: Signed<OrgCert>,
}

/// One issuer's complete list of revoked serials, replacing its predecessor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    pub issuer: AuthorityKey,
    pub sequence: u64,
    pub issued_at: Timestamp,
    pub revoked: BTreeSet<u64>,
}

impl Signable for RevocationList {
    const DOMAIN: &'static [u8] = b"konsilium/revocations/v1\0";
}

/// The leading fields of a [`RevocationList`], in its order.
#[derive(Deserialize)]
struct RevocationListHead {
    issuer: AuthorityKey,
    sequence: u64,
}

/// A revocation list as gossiped: a regional authority's list travels with
/// its certificate so any node can check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationNotice {
    pub authority: Option<Signed<AuthorityCert>>,
    pub list: Signed<RevocationList>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    Signed(#[from] SignedError),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("{what} was issued by {issuer}, which is not a configured federation root")]
    UnknownRoot {
        what: &'static str,
        issuer: AuthorityKey,
    },
    #[error("{what} is not valid before {from} (now {now})")]
    NotYetValid {
        what: &'static str,
        from: Timestamp,
        now: Timestamp,
    },
    #[error("{what} expired at {until} (now {now})")]
    Expired {
        what: &'static str,
        until: Timestamp,
        now: Timestamp,
    },
    #[error("{what}: validity must start before it ends")]
    EmptyValidity { what: &'static str },
    #[error("{what}: validity reaches beyond its issuer's certificate")]
    OutlivesIssuer { what: &'static str },
    #[error(
        "organization certificate for region {cert_region} issued by an authority scoped to {authority_region}"
    )]
    OutsideRegion {
        authority_region: RegionCode,
        cert_region: RegionCode,
    },
    #[error(
        "organization certificate grants level {granted}, above the issuing authority's limit {max}"
    )]
    LevelTooHigh { granted: OrgLevel, max: OrgLevel },
    #[error("organization certificate names issuer {named}, but the chain's authority is {actual}")]
    IssuerMismatch {
        named: AuthorityKey,
        actual: AuthorityKey,
    },
    #[error("only a federation root can certify authorities")]
    NotARoot,
    #[error("{what} serial {serial} was revoked by {issuer}")]
    Revoked {
        what: &'static str,
        issuer: AuthorityKey,
        serial: u64,
    },
    #[error(
        "revocation list sequence {got} from {issuer} is not newer than the {have} already known"
    )]
    StaleRevocations {
        issuer: AuthorityKey,
        have: u64,
        got: u64,
    },
    #[error("the key does not match the certificate it is paired with")]
    KeyMismatch,
    #[error("{what}: {reason}")]
    BadKey {
        what: &'static str,
        reason: KeyError,
    },
}

/// An organization whose chain checked out at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedOrg {
    pub cert: OrgCert,
    /// Shared by every organization the authority certified in one batch.
    pub authority: Option<Arc<AuthorityCert>>,
}

/// A regional authority whose certificate checked out (signature pending).
#[derive(Debug, Clone)]
struct CheckedAuthority {
    cert: Arc<AuthorityCert>,
    key: CheckedKey,
}

/// Authority certificates already checked within one batch, found by their
/// signature and matched by their signed bytes: hashing 64 bytes per
/// record instead of the whole certificate.
#[derive(Debug, Default)]
pub(crate) struct AuthorityCache<'c>(HashMap<[u8; 64], (&'c [u8], CheckedAuthority)>);

impl<'c> AuthorityCache<'c> {
    fn get(&self, signed: &Signed<AuthorityCert>) -> Option<&CheckedAuthority> {
        let (bytes, checked) = self.0.get(&signed.signature().to_bytes())?;
        (*bytes == signed.signed_bytes()).then_some(checked)
    }

    fn insert(&mut self, signed: &'c Signed<AuthorityCert>, checked: CheckedAuthority) {
        (self.0).insert(
            signed.signature().to_bytes(),
            (signed.signed_bytes(), checked),
        );
    }
}

/// The federation's trust anchors and the revocations known so far.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Root keys, decompressed once.
    roots: BTreeMap<AuthorityKey, CheckedKey>,
    revocations: BTreeMap<AuthorityKey, (RevocationList, RevocationNotice)>,
}

fn check_validity(what: &'static str, v: &Validity, now: Timestamp) -> Result<(), CertError> {
    if v.from >= v.until {
        return Err(CertError::EmptyValidity { what });
    }
    if now < v.from {
        return Err(CertError::NotYetValid {
            what,
            from: v.from,
            now,
        });
    }
    if now >= v.until {
        return Err(CertError::Expired {
            what,
            until: v.until,
            now,
        });
    }
    Ok(())
}

impl Trust {
    /// Keys that fail to decompress are left out: they could verify nothing.
    pub fn new(roots: impl IntoIterator<Item = AuthorityKey>) -> Self {
        let roots = roots
            .into_iter()
            .filter_map(|k| Some((k, k.checked_key().ok()?)))
            .collect();
        Self {
            roots,
            revocations: BTreeMap::new(),
        }
    }

    pub fn roots(&self) -> impl Iterator<Item = &AuthorityKey> {
        self.roots.keys()
    }

    fn root(&self, what: &'static str, issuer: AuthorityKey) -> Result<CheckedKey, CertError> {
        self.roots
            .get(&issuer)
            .copied()
            .ok_or(CertError::UnknownRoot { what, issuer })
    }

    pub fn is_revoked(&self, issuer: &AuthorityKey, serial: u64) -> bool {
        self.revocations
            .get(issuer)
            .is_some_and(|(l, _)| l.revoked.contains(&serial))
    }

    fn not_revoked(
        &self,
        what: &'static str,
        issuer: AuthorityKey,
        serial: u64,
    ) -> Result<(), CertError> {
        if self.is_revoked(&issuer, serial) {
            return Err(CertError::Revoked {
                what,
                issuer,
                serial,
            });
        }
        Ok(())
    }

    /// Checks a regional authority's certificate against the roots; its
    /// signature check is handed back to run with the others.
    fn check_authority<'c>(
        &self,
        signed: &'c Signed<AuthorityCert>,
        now: Timestamp,
    ) -> Result<(CheckedAuthority, SignatureCheck<'c>), CertError> {
        const WHAT: &str = "authority certificate";
        let cert = signed.decode_unverified()?;
        let root = self.root(WHAT, cert.issuer)?;
        check_validity(WHAT, &cert.validity, now)?;
        self.not_revoked(WHAT, cert.issuer, cert.serial)?;
        let key = cert
            .authority
            .checked_key()
            .map_err(|e| CertError::BadKey {
                what: WHAT,
                reason: e,
            })?;
        let cert = Arc::new(cert);
        Ok((CheckedAuthority { cert, key }, signed.check_by(root)))
    }

    /// Verifies a whole chain at `now`: signatures, validity windows, the
    /// authority's region and level scope, and revocations.
    pub fn verify_chain(
        &self,
        chain: &CertChain,
        now: Timestamp,
    ) -> Result<VerifiedOrg, CertError> {
        let mut checks = Vec::with_capacity(2);
        let verified =
            self.verify_chain_deferred(chain, now, &mut checks, &mut AuthorityCache::default())?;
        verify_all(&checks)?;
        Ok(verified)
    }

    /// Everything `verify_chain` does except the signature checks, which are
    /// appended to `checks` so a caller ingesting many records can batch
    /// them. The result must not be trusted until those checks pass.
    /// `cache` remembers authority certificates seen earlier in the same
    /// batch: a region's authority certifies many organizations. A chain
    /// that fails adds nothing to either: a batch whose first record
    /// carried a forged authority certificate and failed on its own
    /// certificate's dates must not leave that authority cached with its
    /// signature check dropped.
    pub(crate) fn verify_chain_deferred<'c>(
        &self,
        chain: &'c CertChain,
        now: Timestamp,
        checks: &mut Vec<SignatureCheck<'c>>,
        cache: &mut AuthorityCache<'c>,
    ) -> Result<VerifiedOrg, CertError> {
        self.judge_chain(chain, now, checks, cache)
            .map_err(|error| self.confirmed(chain, error))
    }

    /// An error that says something about a certificate an authority
    /// issued (expired, revoked, out of its scope) once the chain's
    /// signatures hold, its signature's error otherwise. Dates and
    /// revocations are judged before the signatures, which a batch checks
    /// later: unconfirmed, anyone could send an unsigned certificate naming
    /// an organization, dated in the past, and have nodes remember that
    /// organization as expired and refuse to send it anything. Only a
    /// chain that failed pays for the checks here, at most two.
    fn confirmed(&self, chain: &CertChain, error: CertError) -> CertError {
        match error {
            CertError::Signed(_) | CertError::Field(_) | CertError::UnknownRoot { .. } => error,
            _ => self.signatures_hold(chain).err().unwrap_or(error),
        }
    }

    /// Whether the chain's certificates carry their issuers' signatures,
    /// whatever their dates, scope or revocations.
    fn signatures_hold(&self, chain: &CertChain) -> Result<(), CertError> {
        const WHAT: &str = "authority certificate";
        let cert = chain.org.decode_unverified()?;
        let issuer_key = match &chain.authority {
            None => self.root("organization certificate", cert.issuer)?,
            Some(signed) => {
                let authority = signed.decode_unverified()?;
                signed
                    .check_by(self.root(WHAT, authority.issuer)?)
                    .verify()?;
                (authority.authority.checked_key()).map_err(|e| CertError::BadKey {
                    what: WHAT,
                    reason: e,
                })?
            }
        };
        Ok(chain.org.check_by(issuer_key).verify()?)
    }

    fn judge_chain<'c>(
        &self,
        chain: &'c CertChain,
        now: Timestamp,
        checks: &mut Vec<SignatureCheck<'c>>,
        cache: &mut AuthorityCache<'c>,
    ) -> Result<VerifiedOrg, CertError> {
        const WHAT: &str = "organization certificate";
        let cert = chain.org.decode_unverified()?;
        check_name("organization certificate name", &cert.name)?;
        // An authority met for the first time in this batch: its check and
        // its place in the cache, both kept only if the whole chain holds.
        let mut first_seen = None;
        let (authority, issuer_key) = match &chain.authority {
            None => (None, self.root(WHAT, cert.issuer)?),
            Some(signed_authority) => {
                let checked = match cache.get(signed_authority) {
                    Some(known) => known.clone(),
                    None => {
                        let (checked, check) = self.check_authority(signed_authority, now)?;
                        first_seen = Some((signed_authority, checked.clone(), check));
                        checked
                    }
                };
                if cert.issuer != checked.cert.authority {
                    return Err(CertError::IssuerMismatch {
                        named: cert.issuer,
                        actual: checked.cert.authority,
                    });
                }
                check_scope(&checked.cert, &cert)?;
                (Some(checked.cert), checked.key)
            }
        };
        check_validity(WHAT, &cert.validity, now)?;
        self.not_revoked(WHAT, cert.issuer, cert.serial)?;
        if let Some((signed_authority, checked, check)) = first_seen {
            checks.push(check);
            cache.insert(signed_authority, checked);
        }
        checks.push(chain.org.check_by(issuer_key));
        Ok(VerifiedOrg { cert, authority })
    }

    /// `verify_chain`, unless `known` is the organization as this node
    /// verified it when it took a directory record carrying this very
    /// chain (`Directory::verified_chain`): its signatures held then and
    /// cannot have changed, so only time and revocations are checked again.
    /// Federal centers are dialled and sent conclusions by the same
    /// organizations again and again; each chain would otherwise cost two
    /// or three signature checks every time.
    pub fn verify_chain_unless_known(
        &self,
        chain: &CertChain,
        known: Option<&VerifiedOrg>,
        now: Timestamp,
    ) -> Result<VerifiedOrg, CertError> {
        match known {
            Some(known) => self.still_valid(known, now).map(|()| known.clone()),
            None => self.verify_chain(chain, now),
        }
    }

    /// Re-checks an already verified organization against time and the
    /// revocations known now, without repeating signature checks: used when a
    /// revocation list arrives or a certificate may have expired.
    pub fn still_valid(&self, org: &VerifiedOrg, now: Timestamp) -> Result<(), CertError> {
        if let Some(a) = &org.authority {
            check_validity("authority certificate", &a.validity, now)?;
            self.not_revoked("authority certificate", a.issuer, a.serial)?;
        }
        check_validity("organization certificate", &org.cert.validity, now)?;
        self.not_revoked("organization certificate", org.cert.issuer, org.cert.serial)
    }

    /// Adopts a newer revocation list. Returns the list's issuer so the caller
    /// can re-check what that issuer certified.
    pub fn apply_revocations(
        &mut self,
        notice: &RevocationNotice,
        now: Timestamp,
    ) -> Result<AuthorityKey, CertError> {
        // Who signed it and which version it is, read without building the
        // serial set: a list is only decoded whole once its signature holds
        // and it is newer than ours, so unsigned or replayed lists (which
        // anyone can put in a Hello) cost no more than their bytes.
        let head: RevocationListHead = notice.list.decode_head_unverified()?;
        if let Some((have, _)) = self.revocations.get(&head.issuer)
            && have.sequence >= head.sequence
        {
            return Err(CertError::StaleRevocations {
                issuer: head.issuer,
                have: have.sequence,
                got: head.sequence,
            });
        }
        let issuer_key = match &notice.authority {
            None => self.root("revocation list", head.issuer)?,
            Some(a) => {
                let (authority, check) = self.check_authority(a, now)?;
                check.verify()?;
                if authority.cert.authority != head.issuer {
                    return Err(CertError::IssuerMismatch {
                        named: head.issuer,
                        actual: authority.cert.authority,
                    });
                }
                authority.key
            }
        };
        let list = notice.list.open_by(issuer_key)?;
        check_count("revoked serials", list.revoked.len(), MAX_REVOKED_SERIALS)?;
        let issuer = list.issuer;
        self.revocations.insert(issuer, (list, notice.clone()));
        Ok(issuer)
    }

    /// Every adopted list, for persisting and for passing on to peers.
    pub fn revocation_notices(&self) -> impl Iterator<Item = &RevocationNotice> {
        self.revocations.values().map(|(_, n)| n)
    }

    pub fn revocation_sequence(&self, issuer: &AuthorityKey) -> Option<u64> {
        self.revocations.get(issuer).map(|(l, _)| l.sequence)
    }
}

fn check_scope(authority: &AuthorityCert, cert: &OrgCert) -> Result<(), CertError> {
    if cert.region != authority.scope.region {
        return Err(CertError::OutsideRegion {
            authority_region: authority.scope.region.clone(),
            cert_region: cert.region.clone(),
        });
    }
    if cert.level > authority.scope.max_level {
        return Err(CertError::LevelTooHigh {
            granted: cert.level,
            max: authority.scope.max_level,
        });
    }
    if !cert.validity.within(&authority.validity) {
        return Err(CertError::OutlivesIssuer {
            what: "organization certificate",
        });
    }
    Ok(())
}

/// What an organization asks to be certified as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgGrant {
    pub org: OrgId,
    pub name: String,
    pub level: OrgLevel,
    pub region: RegionCode,
    pub sealing_key: SealingPublicKey,
    pub validity: Validity,
    pub serial: u64,
}

/// What a root grants a regional authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityGrant {
    pub authority: AuthorityKey,
    pub name: String,
    pub scope: AuthorityScope,
    pub validity: Validity,
    pub serial: u64,
}

/// A root or regional authority able to issue certificates. Issuance applies
/// the same scope rules as verification, so an authority cannot produce a
/// certificate that the federation would refuse.
#[derive(Debug)]
pub struct Issuer {
    key: IdentityKey,
    cert: Option<(Signed<AuthorityCert>, AuthorityCert)>,
}

impl Issuer {
    pub fn root(key: IdentityKey) -> Self {
        Self { key, cert: None }
    }

    pub fn regional(key: IdentityKey, cert: Signed<AuthorityCert>) -> Result<Self, CertError> {
        let body = cert.decode_unverified()?;
        if body.authority != key.authority_key() {
            return Err(CertError::KeyMismatch);
        }
        Ok(Self {
            key,
            cert: Some((cert, body)),
        })
    }

    pub fn key(&self) -> AuthorityKey {
        self.key.authority_key()
    }

    pub fn certify_authority(
        &self,
        grant: AuthorityGrant,
    ) -> Result<Signed<AuthorityCert>, CertError> {
        if self.cert.is_some() {
            return Err(CertError::NotARoot);
        }
        check_name("authority name", &grant.name)?;
        if grant.validity.from >= grant.validity.until {
            return Err(CertError::EmptyValidity {
                what: "authority certificate",
            });
        }
        let cert = AuthorityCert {
            authority: grant.authority,
            name: grant.name,
            scope: grant.scope,
            validity: grant.validity,
            serial: grant.serial,
            issuer: self.key(),
        };
        Ok(Signed::sign(&self.key, &cert))
    }

    pub fn certify_org(&self, grant: OrgGrant) -> Result<CertChain, CertError> {
        check_name("organization name", &grant.name)?;
        if grant.validity.from >= grant.validity.until {
            return Err(CertError::EmptyValidity {
                what: "organization certificate",
            });
        }
        let cert = OrgCert {
            org: grant.org,
            name: grant.name,
            level: grant.level,
            region: grant.region,
            sealing_key: grant.sealing_key,
            validity: grant.validity,
            serial: grant.serial,
            issuer: self.key(),
        };
        if let Some((_, authority)) = &self.cert {
            check_scope(authority, &cert)?;
        }
        Ok(CertChain {
            authority: self.cert.as_ref().map(|(s, _)| s.clone()),
            org: Signed::sign(&self.key, &cert),
        })
    }

    /// Signs this issuer's complete revocation list.
    pub fn revoke(
        &self,
        sequence: u64,
        issued_at: Timestamp,
        revoked: BTreeSet<u64>,
    ) -> RevocationNotice {
        let list = RevocationList {
            issuer: self.key(),
            sequence,
            issued_at,
            revoked,
        };
        RevocationNotice {
            authority: self.cert.as_ref().map(|(s, _)| s.clone()),
            list: Signed::sign(&self.key, &list),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
