//! Federation certificates: who may take part, at which level, in which region.
//!
//! A root authority (for instance the federal telemedicine center) certifies
//! regional authorities and organizations; a regional authority certifies
//! organizations of its own region up to the level it was granted. Every node
//! holds the root keys and verifies chains itself, so no online service has to
//! be asked whether a peer is genuine. Revocations are signed lists, one per
//! issuer, replaced by a higher sequence number.

use crate::identity::{AuthorityKey, IdentityKey, KeyError, OrgId, SealingPublicKey};
use crate::limits::{FieldError, MAX_REVOKED_SERIALS, check_count, check_name};
use crate::signed::{Signable, SignatureCheck, Signed, SignedError, verify_all};
use crate::time::Timestamp;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

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
    pub authority: Option<AuthorityCert>,
}

/// A regional authority whose certificate checked out (signature pending).
#[derive(Debug, Clone)]
struct CheckedAuthority {
    cert: AuthorityCert,
    key: VerifyingKey,
}

/// Authority certificates already checked within one batch, by content hash.
#[derive(Debug, Default)]
pub(crate) struct AuthorityCache(HashMap<[u8; 32], CheckedAuthority>);

/// The federation's trust anchors and the revocations known so far.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Root keys, decompressed once.
    roots: BTreeMap<AuthorityKey, VerifyingKey>,
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
            .filter_map(|k| Some((k, k.verifying_key().ok()?)))
            .collect();
        Self {
            roots,
            revocations: BTreeMap::new(),
        }
    }

    pub fn roots(&self) -> impl Iterator<Item = &AuthorityKey> {
        self.roots.keys()
    }

    fn root(&self, what: &'static str, issuer: AuthorityKey) -> Result<VerifyingKey, CertError> {
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
            .verifying_key()
            .map_err(|e| CertError::BadKey {
                what: WHAT,
                reason: e,
            })?;
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
    /// batch: a region's authority certifies many organizations.
    pub(crate) fn verify_chain_deferred<'c>(
        &self,
        chain: &'c CertChain,
        now: Timestamp,
        checks: &mut Vec<SignatureCheck<'c>>,
        cache: &mut AuthorityCache,
    ) -> Result<VerifiedOrg, CertError> {
        const WHAT: &str = "organization certificate";
        let cert = chain.org.decode_unverified()?;
        check_name("organization certificate name", &cert.name)?;
        let (authority, issuer_key) = match &chain.authority {
            None => (None, self.root(WHAT, cert.issuer)?),
            Some(signed_authority) => {
                let id = signed_authority.content_hash();
                let checked = match cache.0.get(&id) {
                    Some(known) => known.clone(),
                    None => {
                        let (checked, check) = self.check_authority(signed_authority, now)?;
                        checks.push(check);
                        cache.0.insert(id, checked.clone());
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
        checks.push(chain.org.check_by(issuer_key));
        Ok(VerifiedOrg { cert, authority })
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
        let list = notice.list.open(&issuer_key)?;
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
pub(crate) mod tests {
    use super::*;
    use crate::identity::SealingKey;
    use proptest::prelude::*;

    pub const DAY: u64 = 86_400_000;
    pub const NOW: Timestamp = Timestamp::from_unix_millis(1_780_000_000_000);

    pub fn year() -> Validity {
        Validity {
            from: Timestamp::from_unix_millis(NOW.unix_millis() - DAY),
            until: Timestamp::from_unix_millis(NOW.unix_millis() + 365 * DAY),
        }
    }

    pub fn grant(seed: u8, level: OrgLevel, region: &str, serial: u64) -> OrgGrant {
        OrgGrant {
            org: IdentityKey::from_seed([seed; 32]).org_id(),
            name: format!("Hospital {seed}"),
            level,
            region: RegionCode::new(region).unwrap(),
            sealing_key: SealingKey::from_seed([seed.wrapping_add(100); 32]).public(),
            validity: year(),
            serial,
        }
    }

    /// A root, and a regional authority for RU-VLG that may certify up to regional level.
    pub fn federation() -> (Issuer, Issuer, Trust) {
        let root = Issuer::root(IdentityKey::from_seed([200; 32]));
        let regional_key = IdentityKey::from_seed([201; 32]);
        let authority_cert = root
            .certify_authority(AuthorityGrant {
                authority: regional_key.authority_key(),
                name: "Vologda regional telemedicine center".into(),
                scope: AuthorityScope {
                    region: RegionCode::new("RU-VLG").unwrap(),
                    max_level: OrgLevel::Regional,
                },
                validity: Validity {
                    from: Timestamp::from_unix_millis(NOW.unix_millis() - 10 * DAY),
                    until: Timestamp::from_unix_millis(NOW.unix_millis() + 1000 * DAY),
                },
                serial: 1,
            })
            .unwrap();
        let regional = Issuer::regional(regional_key, authority_cert).unwrap();
        let trust = Trust::new([root.key()]);
        (root, regional, trust)
    }

    #[test]
    fn root_and_regional_chains_verify() {
        let (root, regional, trust) = federation();
        let federal = root
            .certify_org(grant(1, OrgLevel::Federal, "RU-MOW", 10))
            .unwrap();
        let district = regional
            .certify_org(grant(2, OrgLevel::District, "RU-VLG", 10))
            .unwrap();
        let v = trust.verify_chain(&federal, NOW).unwrap();
        assert_eq!(v.cert.level, OrgLevel::Federal);
        assert!(v.authority.is_none());
        let v = trust.verify_chain(&district, NOW).unwrap();
        assert_eq!(v.authority.unwrap().scope.region.as_str(), "RU-VLG");
    }

    #[test]
    fn regional_authority_cannot_exceed_scope() {
        let (root, regional, trust) = federation();
        assert!(matches!(
            regional.certify_org(grant(3, OrgLevel::District, "RU-ARK", 11)),
            Err(CertError::OutsideRegion { .. })
        ));
        assert!(matches!(
            regional.certify_org(grant(3, OrgLevel::Federal, "RU-VLG", 11)),
            Err(CertError::LevelTooHigh {
                granted: OrgLevel::Federal,
                max: OrgLevel::Regional
            })
        ));
        assert_eq!(
            regional.certify_authority(AuthorityGrant {
                authority: IdentityKey::from_seed([9; 32]).authority_key(),
                name: "x".into(),
                scope: AuthorityScope {
                    region: RegionCode::new("RU-VLG").unwrap(),
                    max_level: OrgLevel::District
                },
                validity: year(),
                serial: 2,
            }),
            Err(CertError::NotARoot)
        );
        // A rogue authority that signs out of scope anyway is caught at verification.
        let rogue_cert = OrgCert {
            org: IdentityKey::from_seed([4; 32]).org_id(),
            name: "Rogue".into(),
            level: OrgLevel::Federal,
            region: RegionCode::new("RU-VLG").unwrap(),
            sealing_key: SealingKey::from_seed([4; 32]).public(),
            validity: year(),
            serial: 99,
            issuer: regional.key(),
        };
        let chain = CertChain {
            authority: regional.cert.as_ref().map(|(s, _)| s.clone()),
            org: Signed::sign(&regional.key, &rogue_cert),
        };
        assert!(matches!(
            trust.verify_chain(&chain, NOW),
            Err(CertError::LevelTooHigh { .. })
        ));
        let mut out_of_region = rogue_cert;
        out_of_region.level = OrgLevel::District;
        out_of_region.region = RegionCode::new("RU-ARK").unwrap();
        let chain = CertChain {
            authority: regional.cert.as_ref().map(|(s, _)| s.clone()),
            org: Signed::sign(&regional.key, &out_of_region),
        };
        assert!(matches!(
            trust.verify_chain(&chain, NOW),
            Err(CertError::OutsideRegion { .. })
        ));
        drop(root);
    }

    #[test]
    fn self_signed_and_foreign_roots_fail() {
        let (_, _, trust) = federation();
        let impostor = Issuer::root(IdentityKey::from_seed([66; 32]));
        let chain = impostor
            .certify_org(grant(5, OrgLevel::Federal, "RU-MOW", 1))
            .unwrap();
        assert!(matches!(
            trust.verify_chain(&chain, NOW),
            Err(CertError::UnknownRoot { .. })
        ));
        // Claiming a real root as issuer without its signature fails the signature check.
        let (root, _, _) = federation();
        let mut cert = chain.org.decode_unverified().unwrap();
        cert.issuer = root.key();
        let forged = CertChain {
            authority: None,
            org: Signed::sign(&impostor.key, &cert),
        };
        assert!(matches!(
            trust.verify_chain(&forged, NOW),
            Err(CertError::Signed(SignedError::BadSignature { .. }))
        ));
    }

    #[test]
    fn expiry_and_not_yet_valid() {
        let (root, _, trust) = federation();
        let chain = root
            .certify_org(grant(1, OrgLevel::Federal, "RU-MOW", 10))
            .unwrap();
        let v = year();
        assert!(matches!(
            trust.verify_chain(&chain, v.until),
            Err(CertError::Expired { .. })
        ));
        assert!(matches!(
            trust.verify_chain(
                &chain,
                Timestamp::from_unix_millis(v.from.unix_millis() - 1)
            ),
            Err(CertError::NotYetValid { .. })
        ));
        assert!(trust.verify_chain(&chain, v.from).is_ok());
    }

    #[test]
    fn revocation_of_org_and_of_authority() {
        let (root, regional, mut trust) = federation();
        let a = regional
            .certify_org(grant(1, OrgLevel::District, "RU-VLG", 10))
            .unwrap();
        let b = regional
            .certify_org(grant(2, OrgLevel::District, "RU-VLG", 11))
            .unwrap();
        trust
            .apply_revocations(&regional.revoke(1, NOW, [10].into()), NOW)
            .unwrap();
        assert!(matches!(
            trust.verify_chain(&a, NOW),
            Err(CertError::Revoked { serial: 10, .. })
        ));
        assert!(trust.verify_chain(&b, NOW).is_ok());
        // Same or older sequence is refused and changes nothing.
        assert!(matches!(
            trust.apply_revocations(&regional.revoke(1, NOW, BTreeSet::new()), NOW),
            Err(CertError::StaleRevocations {
                have: 1,
                got: 1,
                ..
            })
        ));
        assert!(trust.verify_chain(&a, NOW).is_err());
        // The root revokes the regional authority itself: everything it issued fails.
        trust
            .apply_revocations(&root.revoke(1, NOW, [1].into()), NOW)
            .unwrap();
        assert!(matches!(
            trust.verify_chain(&b, NOW),
            Err(CertError::Revoked {
                what: "authority certificate",
                ..
            })
        ));
        // ...and its revocation lists are no longer accepted.
        assert!(
            trust
                .apply_revocations(&regional.revoke(2, NOW, BTreeSet::new()), NOW)
                .is_err()
        );
        assert_eq!(trust.revocation_notices().count(), 2);
    }

    #[test]
    fn revocations_from_strangers_refused() {
        let (_, _, mut trust) = federation();
        let stranger = Issuer::root(IdentityKey::from_seed([77; 32]));
        assert!(matches!(
            trust.apply_revocations(&stranger.revoke(1, NOW, [1].into()), NOW),
            Err(CertError::UnknownRoot { .. })
        ));
    }

    #[test]
    fn an_unsigned_list_is_refused_before_its_serials_are_decoded() {
        let (root, _, mut trust) = federation();
        // A stranger's list claiming the root as issuer, its serial set cut
        // off mid-way: decoding it whole would fail as malformed, so a
        // signature error shows the set was never built.
        let stranger = IdentityKey::from_seed([77; 32]);
        let list = RevocationList {
            issuer: root.key(),
            sequence: 9,
            issued_at: NOW,
            revoked: (0..100_000).collect(),
        };
        let notice = RevocationNotice {
            authority: None,
            list: Signed::sign(&stranger, &list),
        };
        let signed_len = notice.list.signed_bytes().len();
        let body = &notice.list.signed_bytes()[..signed_len - 1000];
        let forged: Signed<RevocationList> =
            postcard::from_bytes(&postcard::to_stdvec(&(body, notice.list.signature())).unwrap())
                .unwrap();
        assert!(matches!(
            forged.decode_unverified(),
            Err(SignedError::Malformed { .. })
        ));
        let notice = RevocationNotice {
            authority: None,
            list: forged,
        };
        assert!(matches!(
            trust.apply_revocations(&notice, NOW),
            Err(CertError::Signed(SignedError::BadSignature { .. }))
        ));
        // A replayed older list is refused as stale, also before decoding.
        trust
            .apply_revocations(&root.revoke(5, NOW, BTreeSet::new()), NOW)
            .unwrap();
        let mut old = root.revoke(4, NOW, (0..1000).collect());
        let old_len = old.list.signed_bytes().len();
        old.list = postcard::from_bytes(
            &postcard::to_stdvec(&(
                &old.list.signed_bytes()[..old_len - 100],
                old.list.signature(),
            ))
            .unwrap(),
        )
        .unwrap();
        assert!(matches!(
            trust.apply_revocations(&old, NOW),
            Err(CertError::StaleRevocations {
                have: 5,
                got: 4,
                ..
            })
        ));
    }

    #[test]
    fn level_and_region_parsing() {
        assert_eq!("Federal".parse::<OrgLevel>().unwrap(), OrgLevel::Federal);
        assert_eq!("2".parse::<OrgLevel>().unwrap(), OrgLevel::Regional);
        assert!(
            "4".parse::<OrgLevel>()
                .unwrap_err()
                .to_string()
                .contains("district|regional|federal")
        );
        assert!(postcard::from_bytes::<OrgLevel>(&[4]).is_err());
        assert!(RegionCode::new("ru-vlg").is_err());
        assert!(RegionCode::new("R").is_err());
        assert!(RegionCode::new("9X").is_err());
        assert_eq!(OrgLevel::District.above(), Some(OrgLevel::Regional));
        assert_eq!(OrgLevel::Federal.above(), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any altered byte of an encoded chain makes it fail to decode or to verify.
        #[test]
        fn altered_chain_bytes_fail(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let (_, regional, trust) = federation();
            let chain = regional.certify_org(grant(1, OrgLevel::District, "RU-VLG", 10)).unwrap();
            let mut bytes = postcard::to_stdvec(&chain).unwrap();
            let i = pos.index(bytes.len());
            bytes[i] ^= flip;
            if let Ok(altered) = postcard::from_bytes::<CertChain>(&bytes) {
                prop_assert!(trust.verify_chain(&altered, NOW).is_err(), "byte {} accepted", i);
            }
        }
    }
}
