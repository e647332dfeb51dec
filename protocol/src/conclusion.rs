//! The consultant's signed conclusion: the consultation's result.
//!
//! Signed with the consulting organization's identity key over a canonical
//! encoding, so anyone holding the directory (or just the federation's root
//! keys and the conclusion's embedded certificate chain) can check offline
//! who concluded what, and that not a byte changed since.

use crate::cert::{CertChain, CertError, Trust, VerifiedOrg};
use crate::directory::Directory;
use crate::identity::{IdentityKey, OrgId};
use crate::limits::{FieldError, check_name};
use crate::seal::BlobRef;
use crate::signed::{Signable, Signed, SignedError};
use crate::time::Timestamp;
use crate::workflow::ConsultationId;
use serde::{Deserialize, Serialize};

/// Longest free-text field, in characters.
pub const MAX_TEXT: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conclusion {
    pub consultation: ConsultationId,
    pub consultant_org: OrgId,
    /// The consultant(s) who wrote it.
    pub authors: Vec<String>,
    pub diagnosis: String,
    pub recommendations: String,
    pub treatment_plan: String,
    pub further_studies: String,
    pub attachments: Vec<BlobRef>,
    pub issued_at: Timestamp,
}

impl Signable for Conclusion {
    const DOMAIN: &'static [u8] = b"konsilium/conclusion/v1\0";
}

/// What `konsilium verify` reads: the signed conclusion and the chain that
/// certifies its signer, so it can be checked with the root keys alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConclusionFile {
    pub conclusion: Signed<Conclusion>,
    pub chain: CertChain,
}

impl ConclusionFile {
    /// Whether this is the conclusion `consultation` reached: a file may
    /// arrive with a conclude step that is then refused or still waits for
    /// the steps before it, and must not be shown as the case's before.
    pub fn concludes(&self, consultation: &crate::workflow::Consultation) -> bool {
        consultation.conclusion == Some(self.conclusion.content_hash())
    }
}

/// Stored and exchanged as a wire frame, so `konsilium verify` reads exactly what nodes send.
impl crate::wire::WireMessage for ConclusionFile {
    const KIND: crate::wire::MessageKind = crate::wire::MessageKind::ConclusionFile;
    const MAX_LEN: usize = 1 << 20;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConclusionError {
    #[error("conclusion: {0}")]
    Signed(#[from] SignedError),
    #[error("conclusion: the signer's certificate: {0}")]
    Chain(#[from] CertError),
    #[error("conclusion: {0}")]
    Field(#[from] FieldError),
    #[error("conclusion names {named} as its organization, but the certificate is for {certified}")]
    WrongOrganization { named: OrgId, certified: OrgId },
}

impl Conclusion {
    pub fn check(&self) -> Result<(), FieldError> {
        if self.authors.is_empty() {
            return Err(FieldError::Empty {
                field: "conclusion.authors",
            });
        }
        for a in &self.authors {
            check_name("conclusion.authors", a)?;
        }
        for (field, text) in [
            ("conclusion.diagnosis", &self.diagnosis),
            ("conclusion.recommendations", &self.recommendations),
            ("conclusion.treatment_plan", &self.treatment_plan),
            ("conclusion.further_studies", &self.further_studies),
        ] {
            let len = text.chars().count();
            if len > MAX_TEXT {
                return Err(FieldError::TooLong {
                    field,
                    len,
                    max: MAX_TEXT,
                });
            }
        }
        if self.diagnosis.trim().is_empty() && self.recommendations.trim().is_empty() {
            return Err(FieldError::Empty {
                field: "conclusion.diagnosis or conclusion.recommendations",
            });
        }
        Ok(())
    }

    /// Signs a conclusion as the consulting organization.
    pub fn sign(self, key: &IdentityKey) -> Result<Signed<Conclusion>, ConclusionError> {
        self.check()?;
        if self.consultant_org != key.org_id() {
            return Err(ConclusionError::WrongOrganization {
                named: self.consultant_org,
                certified: key.org_id(),
            });
        }
        Ok(Signed::sign(key, &self))
    }
}

impl ConclusionFile {
    /// Verifies offline at `now`: the chain against the roots (and
    /// revocations) in `trust`, the signature against the certified key.
    /// Returns the conclusion and the certified signer's name.
    pub fn verify(
        &self,
        trust: &Trust,
        now: Timestamp,
    ) -> Result<(Conclusion, String), ConclusionError> {
        self.signed_by(trust.verify_chain(&self.chain, now)?)
    }

    /// `verify`, for a file that came from `sender`: when its chain is the
    /// one `sender`'s directory record carries, the chain's signatures are
    /// not checked again (`Trust::verify_chain_unless_known`). Every
    /// conclusion an organization sends carries the same chain.
    pub fn verify_from(
        &self,
        sender: &OrgId,
        trust: &Trust,
        directory: &Directory,
        now: Timestamp,
    ) -> Result<(Conclusion, String), ConclusionError> {
        let known = directory.verified_chain(sender, &self.chain);
        self.signed_by(trust.verify_chain_unless_known(&self.chain, known, now)?)
    }

    fn signed_by(&self, org: VerifiedOrg) -> Result<(Conclusion, String), ConclusionError> {
        let conclusion = self.conclusion.open_by(org.cert.org.checked_key())?;
        if conclusion.consultant_org != org.cert.org {
            return Err(ConclusionError::WrongOrganization {
                named: conclusion.consultant_org,
                certified: org.cert.org,
            });
        }
        conclusion.check()?;
        Ok((conclusion, org.cert.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::OrgLevel;
    use crate::specialty::Specialty;
    use crate::testkit::{NOW, TestFederation};

    fn conclusion(org: OrgId) -> Conclusion {
        Conclusion {
            consultation: ConsultationId([4; 16]),
            consultant_org: org,
            authors: vec!["Prof. Petrov".into()],
            diagnosis: "Stage II adenocarcinoma, confirmed".into(),
            recommendations: "Resection; adjuvant chemotherapy".into(),
            treatment_plan: "FOLFOX x 6".into(),
            further_studies: "PET-CT in 3 months".into(),
            attachments: vec![],
            issued_at: NOW,
        }
    }

    #[test]
    fn verifies_offline_and_every_flipped_byte_fails() {
        let mut fed = TestFederation::new("conclusion");
        let federal = fed.org(1, OrgLevel::Federal, "RU-MOW", &[Specialty::Oncology]);
        let file = ConclusionFile {
            conclusion: conclusion(federal.id()).sign(&federal.identity).unwrap(),
            chain: federal.chain.clone(),
        };
        let (c, signer) = file.verify(&fed.trust, NOW).unwrap();
        assert_eq!(c.diagnosis, "Stage II adenocarcinoma, confirmed");
        assert!(signer.contains("federal"));
        let bytes = postcard::to_stdvec(&file).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            if let Ok(altered) = postcard::from_bytes::<ConclusionFile>(&b) {
                assert!(
                    altered.verify(&fed.trust, NOW).is_err(),
                    "flip at {i} accepted"
                );
            }
        }
    }

    /// A sender whose record the directory holds with the same chain is
    /// not checked for the chain's signatures again, and is decided as a
    /// full check decides: the conclusion's own signature, the time and
    /// revocations still count, and any other chain is checked whole.
    #[test]
    fn a_known_senders_file_is_decided_as_a_full_check_decides() {
        let mut fed = TestFederation::new("conclusion-known");
        let federal = fed.org(1, OrgLevel::Federal, "RU-MOW", &[Specialty::Oncology]);
        let other = fed.org(2, OrgLevel::Regional, "RU-VLG", &[]);
        let forger = fed.org(3, OrgLevel::Regional, "RU-VLG", &[]);
        let mut directory = Directory::new();
        directory
            .insert(federal.signed_record(1), &fed.trust, NOW)
            .unwrap();
        let file = ConclusionFile {
            conclusion: conclusion(federal.id()).sign(&federal.identity).unwrap(),
            chain: federal.chain.clone(),
        };
        let from = |file: &ConclusionFile, trust: &Trust, now: Timestamp| {
            let known = file.verify_from(&federal.id(), trust, &directory, now);
            assert_eq!(known, file.verify(trust, now));
            known
        };
        assert!(
            directory
                .verified_chain(&federal.id(), &file.chain)
                .is_some()
        );
        let (concluded, signer) = from(&file, &fed.trust, NOW).unwrap();
        assert_eq!(concluded.consultant_org, federal.id());
        assert!(signer.contains("federal"));
        // Every altered byte of the conclusion, under the known chain.
        let bytes = postcard::to_stdvec(&file.conclusion).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            if let Ok(conclusion) = postcard::from_bytes(&b) {
                let altered = ConclusionFile {
                    conclusion,
                    chain: file.chain.clone(),
                };
                assert!(from(&altered, &fed.trust, NOW).is_err(), "flip at {i}");
            }
        }
        // Past the certificate's validity.
        let late = Timestamp::from_unix_millis(NOW.unix_millis() + 400 * 86_400_000);
        assert!(matches!(
            from(&file, &fed.trust, late),
            Err(ConclusionError::Chain(_))
        ));
        // Signed by the federal center with another organization's chain:
        // not the record's, so checked whole, and refused.
        let borrowed = ConclusionFile {
            conclusion: file.conclusion.clone(),
            chain: other.chain.clone(),
        };
        assert!(
            directory
                .verified_chain(&federal.id(), &borrowed.chain)
                .is_none()
        );
        assert!(from(&borrowed, &fed.trust, NOW).is_err());
        // A chain the directory never verified, with a forged certificate.
        let mut forged_chain = forger.chain.clone();
        forged_chain.org = Signed::sign(
            &forger.identity,
            &forger.chain.org.decode_unverified().unwrap(),
        );
        let forged = ConclusionFile {
            conclusion: conclusion(forger.id()).sign(&forger.identity).unwrap(),
            chain: forged_chain,
        };
        assert!(matches!(
            from(&forged, &fed.trust, NOW),
            Err(ConclusionError::Chain(_))
        ));
        // Revoked since the record was taken.
        let mut trust = fed.trust.clone();
        let notice = fed.revoke(&federal, NOW).unwrap();
        trust.apply_revocations(&notice, NOW).unwrap();
        assert!(matches!(
            from(&file, &trust, NOW),
            Err(ConclusionError::Chain(_))
        ));
    }

    #[test]
    fn signer_must_be_the_named_certified_organization() {
        let mut fed = TestFederation::new("conclusion2");
        let a = fed.org(1, OrgLevel::Federal, "RU-MOW", &[]);
        let b = fed.org(2, OrgLevel::Regional, "RU-VLG", &[]);
        assert!(matches!(
            conclusion(a.id()).sign(&b.identity),
            Err(ConclusionError::WrongOrganization { .. })
        ));
        let signed_by_b = Signed::sign(&b.identity, &conclusion(a.id()));
        let file = ConclusionFile {
            conclusion: signed_by_b.clone(),
            chain: a.chain.clone(),
        };
        assert!(matches!(
            file.verify(&fed.trust, NOW),
            Err(ConclusionError::Signed(_))
        ));
        let file = ConclusionFile {
            conclusion: signed_by_b,
            chain: b.chain.clone(),
        };
        assert!(matches!(
            file.verify(&fed.trust, NOW),
            Err(ConclusionError::WrongOrganization { .. })
        ));
        let mut empty = conclusion(a.id());
        empty.diagnosis.clear();
        empty.recommendations.clear();
        assert!(matches!(
            empty.sign(&a.identity),
            Err(ConclusionError::Field(_))
        ));
    }
}
