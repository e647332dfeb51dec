//! Deterministic federations for tests, benchmarks and simulations.
//!
//! Every key is derived from a seed and an index, so a simulation of 20,000
//! organizations is reproducible and two runs can be compared exactly.
//! Compiled only with the `testkit` feature; nodes never use it.

use crate::calendar::{TimeZoneName, WorkingCalendar};
use crate::cert::{
    AuthorityGrant, AuthorityScope, CertChain, Issuer, OrgGrant, OrgLevel, RegionCode,
    RevocationNotice, Trust, Validity,
};
use crate::directory::{
    Consultant, ConsultantId, DirectoryRecord, Language, Service, SignedRecord,
};
use crate::identity::AuthorityKey;
use crate::identity::{IdentityKey, OrgId, SealingKey};
use crate::signed::Signed;
use crate::specialty::Specialty;
use crate::time::Timestamp;
use crate::urgency::{Deadlines, Urgency};
use std::collections::{BTreeMap, BTreeSet};

pub mod directory_node;
pub mod org_node;
pub mod package_crypto;
pub mod simnet;
pub mod site;
pub mod suite;

pub use directory_node::DirectoryNode;
pub use org_node::{OrgNode, PeerChange};
pub use simnet::{Link, NodeId, NodeStats, SimConfig, SimNet, SimNode, Transmit, Violation};
pub use site::Site;

pub const DAY_MS: u64 = 86_400_000;
/// A fixed "now" inside every test certificate's validity (2026-05-28).
pub const NOW: Timestamp = Timestamp::from_unix_millis(1_780_000_000_000);

pub fn seed(label: &str, index: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(label.as_bytes());
    h.update(&index.to_le_bytes());
    *h.finalize().as_bytes()
}

pub fn validity_days(days: u64) -> Validity {
    Validity {
        from: Timestamp::from_unix_millis(NOW.unix_millis() - DAY_MS),
        until: Timestamp::from_unix_millis(NOW.unix_millis() + days * DAY_MS),
    }
}

/// A regional authority for `region` whose certificate names `root` as its
/// issuer but was signed by the authority's own key: what anyone can make,
/// and what every chain check must refuse.
pub fn forged_authority(root: AuthorityKey, region: &str, validity: Validity) -> Issuer {
    let key = IdentityKey::from_seed(seed("forged-authority", 0));
    let claimed = crate::cert::AuthorityCert {
        authority: key.authority_key(),
        name: format!("{region} regional authority"),
        scope: AuthorityScope {
            region: RegionCode::new(region).expect("valid region code"),
            max_level: OrgLevel::Regional,
        },
        validity,
        serial: 900,
        issuer: root,
    };
    let self_signed = Signed::sign(&key, &claimed);
    Issuer::regional(key, self_signed).expect("the key is the certificate's")
}

/// An organization with all its secrets.
pub struct TestOrg {
    pub identity: IdentityKey,
    pub sealing: SealingKey,
    pub chain: CertChain,
    pub level: OrgLevel,
    pub region: RegionCode,
    pub specialties: Vec<Specialty>,
}

impl TestOrg {
    pub fn id(&self) -> OrgId {
        self.identity.org_id()
    }

    /// A directory record offering this org's specialties at all urgencies.
    pub fn record(&self, sequence: u64) -> DirectoryRecord {
        DirectoryRecord {
            chain: self.chain.clone(),
            sealing_key: self.sealing.public(),
            consultants: vec![Consultant {
                id: ConsultantId(1),
                name: format!("Consultant of {}", self.id()),
                specialties: self.specialties.iter().copied().collect(),
                languages: [Language::new("ru").expect("valid tag")].into(),
            }],
            services: self
                .specialties
                .iter()
                .map(|&specialty| Service {
                    specialty,
                    urgencies: Urgency::ALL.into(),
                    deadlines: None,
                })
                .collect(),
            calendar: WorkingCalendar::weekdays(
                TimeZoneName::new("Europe/Moscow").expect("known zone"),
            ),
            deadlines: Deadlines::default(),
            slots: Vec::new(),
            addresses: Vec::new(),
            sequence,
            issued_at: NOW,
        }
    }

    pub fn sign(&self, record: &DirectoryRecord) -> SignedRecord {
        Signed::sign(&self.identity, record)
    }

    /// This organization with a certificate `issuer` grants it instead of
    /// its own (a forged authority's, in tests of what must be refused).
    pub fn certified_by(mut self, issuer: &Issuer, validity: Validity, serial: u64) -> Self {
        let name = (self.chain.org.decode_unverified())
            .expect("a test certificate decodes")
            .name;
        self.chain = issuer
            .certify_org(OrgGrant {
                org: self.id(),
                name,
                level: self.level,
                region: self.region.clone(),
                sealing_key: self.sealing.public(),
                validity,
                serial,
            })
            .expect("grant within the issuer's scope");
        self
    }

    pub fn signed_record(&self, sequence: u64) -> SignedRecord {
        self.sign(&self.record(sequence))
    }
}

/// A root, one regional authority per region, and organizations.
pub struct TestFederation {
    pub root: Issuer,
    pub regions: BTreeMap<RegionCode, Issuer>,
    pub trust: Trust,
    label: String,
    next_serial: u64,
    /// Days from `NOW` that organization certificates stay valid.
    org_validity_days: u64,
    /// Each issuer's last revocation list: its sequence and serials.
    revoked: BTreeMap<AuthorityKey, (u64, BTreeSet<u64>)>,
}

impl TestFederation {
    pub fn new(label: &str) -> Self {
        let root = Issuer::root(IdentityKey::from_seed(seed(label, u64::MAX)));
        let trust = Trust::new([root.key()]);
        Self {
            root,
            regions: BTreeMap::new(),
            trust,
            label: label.to_owned(),
            next_serial: 1,
            org_validity_days: 365,
            revoked: BTreeMap::new(),
        }
    }

    /// The next revocation list of `org`'s issuer, naming its certificate
    /// with every serial that issuer revoked before. `None` if this
    /// federation did not issue it.
    pub fn revoke(&mut self, org: &TestOrg, at: Timestamp) -> Option<RevocationNotice> {
        let cert = org.chain.org.decode_unverified().ok()?;
        let issuer = if self.root.key() == cert.issuer {
            &self.root
        } else {
            self.regions.values().find(|r| r.key() == cert.issuer)?
        };
        let (sequence, serials) = self.revoked.entry(cert.issuer).or_default();
        *sequence += 1;
        serials.insert(cert.serial);
        Some(issuer.revoke(*sequence, at, serials.clone()))
    }

    /// Organizations made from now on are certified for `days` (a year by
    /// default): a simulated year and its tail need longer.
    pub fn certify_for(&mut self, days: u64) {
        self.org_validity_days = days;
    }

    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// The regional authority for `region` (created on first use), allowed up to regional level.
    pub fn region(&mut self, region: &str) -> &Issuer {
        let code = RegionCode::new(region).expect("valid region code");
        if !self.regions.contains_key(&code) {
            let serial = self.serial();
            let key =
                IdentityKey::from_seed(seed(&format!("{}/authority/{region}", self.label), serial));
            let cert = self
                .root
                .certify_authority(AuthorityGrant {
                    authority: key.authority_key(),
                    name: format!("{region} regional authority"),
                    scope: AuthorityScope {
                        region: code.clone(),
                        max_level: OrgLevel::Regional,
                    },
                    validity: validity_days(3650),
                    serial,
                })
                .expect("root certifies authority");
            self.regions.insert(
                code.clone(),
                Issuer::regional(key, cert).expect("key matches"),
            );
        }
        &self.regions[&code]
    }

    /// A new organization. Federal ones are certified by the root, others by
    /// their region's authority.
    pub fn org(
        &mut self,
        index: u64,
        level: OrgLevel,
        region: &str,
        specialties: &[Specialty],
    ) -> TestOrg {
        let identity = IdentityKey::from_seed(seed(&format!("{}/org", self.label), index));
        let sealing = SealingKey::from_seed(seed(&format!("{}/sealing", self.label), index));
        let serial = self.serial();
        let grant = OrgGrant {
            org: identity.org_id(),
            name: format!("{level} hospital {index} ({region})"),
            level,
            region: RegionCode::new(region).expect("valid region code"),
            sealing_key: sealing.public(),
            validity: validity_days(self.org_validity_days),
            serial,
        };
        let chain = if level == OrgLevel::Federal {
            self.root.certify_org(grant)
        } else {
            self.region(region).certify_org(grant)
        }
        .expect("grant within scope");
        TestOrg {
            identity,
            sealing,
            chain,
            level,
            region: RegionCode::new(region).expect("valid"),
            specialties: specialties.to_vec(),
        }
    }
}
