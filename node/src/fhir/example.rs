//! A referral as a hospital information system sends it: a FHIR R4
//! Bundle with the ServiceRequest, its requester, patient, performer and
//! the patient's Consent. Kept in the library so the import tests, the
//! fuzzing seeds and anyone integrating a HIS start from the same,
//! validator-checked document.

use super::ORG_SYSTEM;
use konsilium_protocol::identity::OrgId;
use serde_json::{Value, json};

/// An emergency cardiology referral to `target`, with written consent.
pub fn referral(target: &OrgId) -> Value {
    let base = "https://his.kirillov-crh.example/fhir";
    json!({
        "resourceType": "Bundle",
        "id": "req-2026-0042",
        "type": "collection",
        "timestamp": "2026-05-28T09:45:00+03:00",
        "entry": [
            {
                "fullUrl": format!("{base}/ServiceRequest/sr-42"),
                "resource": {
                    "resourceType": "ServiceRequest",
                    "id": "sr-42",
                    "identifier": [{"system": format!("{base}/sid/order"), "value": "42"}],
                    "status": "active",
                    "intent": "order",
                    "priority": "stat",
                    "code": {
                        "coding": [{
                            "system": "http://snomed.info/sct",
                            "code": "394579002",
                            "display": "Cardiology"
                        }],
                        "text": "Cardiology teleconsultation"
                    },
                    "subject": {"reference": "Patient/p-7"},
                    "authoredOn": "2026-05-28T09:40:00+03:00",
                    "requester": {"reference": "Practitioner/dr-ivanova"},
                    "performer": [{"reference": "Organization/fcc"}],
                    "reasonCode": [
                        {"text": "Heart failure NYHA III, EF 35% on echo"},
                        {"coding": [{
                            "system": "http://snomed.info/sct",
                            "code": "49436004",
                            "display": "Atrial fibrillation"
                        }]}
                    ],
                    "supportingInfo": [{"reference": "Consent/consent-7"}],
                    "note": [
                        {"text": "Is CRT-D indicated?"},
                        {"text": "Which anticoagulation before the procedure?"}
                    ]
                }
            },
            {
                "fullUrl": format!("{base}/Practitioner/dr-ivanova"),
                "resource": {
                    "resourceType": "Practitioner",
                    "id": "dr-ivanova",
                    "name": [{"family": "Ivanova", "given": ["Anna"], "prefix": ["Dr."]}]
                }
            },
            {
                "fullUrl": format!("{base}/Patient/p-7"),
                "resource": {
                    "resourceType": "Patient",
                    "id": "p-7",
                    "name": [{"family": "Sidorov", "given": ["Ivan", "Petrovich"]}],
                    "gender": "male",
                    "birthDate": "1954-02-11"
                }
            },
            {
                "fullUrl": format!("{base}/Organization/fcc"),
                "resource": {
                    "resourceType": "Organization",
                    "id": "fcc",
                    "identifier": [
                        {"system": "urn:oid:1.2.643.5.1.13", "value": "1.2.643.5.1.13.13.12.2.77.7974"},
                        {"system": ORG_SYSTEM, "value": target.to_string()}
                    ],
                    "name": "Federal center of cardiology"
                }
            },
            {
                "fullUrl": format!("{base}/Consent/consent-7"),
                "resource": {
                    "resourceType": "Consent",
                    "id": "consent-7",
                    "status": "active",
                    "scope": {"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "patient-privacy"
                    }]},
                    "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                    "patient": {"reference": "Patient/p-7"},
                    "dateTime": "2026-05-28T09:30:00+03:00",
                    "performer": [{"reference": "Patient/p-7"}],
                    "policyRule": {"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "OPTIN"
                    }]},
                    "provision": {"type": "permit"}
                }
            }
        ]
    })
}
