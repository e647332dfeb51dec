//! The request: the ServiceRequest, and the Consent that covers it (or the
//! emergency override that replaced it).

use super::*;

impl<'r, 'a> Exporter<'r, 'a> {
    pub(super) fn service_request(&self) -> Value {
        let c = self.r.consultation;
        let req = &c.request;
        let replaces = req.escalated_from.map(|from| {
            vec![json!({
                "type": "ServiceRequest",
                "identifier": {"system": CONSULTATION_SYSTEM, "value": from.to_string()},
            })]
        });
        json!({
            "resourceType": "ServiceRequest",
            "identifier": [self.consultation_identifier()],
            "replaces": replaces,
            "status": service_request_status(c.status),
            "intent": "order",
            "category": [{
                "coding": [{"system": SNOMED, "code": "11429006"}],
                "text": "Consultation",
            }],
            "priority": priority_code(req.urgency),
            "code": specialty_concept(req.specialty),
            "subject": self.patient(),
            "authoredOn": instant(req.created),
            "requester": {
                "reference": urn(&self.physician),
                "type": "PractitionerRole",
                "display": fhir_string(&req.physician),
            },
            "performer": [self.org_ref(&req.consultant)],
            // The reason for referral is the case summary the physician
            // wrote; the questions for the consultant travel as the note.
            "reasonCode": fhir_string(&self.r.extract.summary).map(|t| vec![json!({"text": t})]),
            "note": fhir_string(&self.r.extract.questions).map(|t| vec![json!({"text": t})]),
            "supportingInfo": std::iter::once(self.reference(&self.consent))
                .chain((0..self.r.files.len()).map(|i| self.reference(&self.document(i))))
                .collect::<Vec<_>>(),
        })
    }

    pub(super) fn consent(&self) -> Value {
        let req = &self.r.consultation.request;
        let recipient = json!({
            "role": concept(PARTICIPATION_TYPE, "IRCP", "information recipient"),
            "reference": self.org_ref(&req.consultant),
        });
        let mut consent = json!({
            "resourceType": "Consent",
            "status": "active",
            "scope": concept(
                "http://terminology.hl7.org/CodeSystem/consentscope",
                "patient-privacy",
                "Privacy Consent",
            ),
            "patient": self.patient(),
            "organization": [self.org_ref(&req.requester)],
        });
        let Some(map) = consent.as_object_mut() else {
            return consent;
        };
        match &req.consent {
            Consent::Given {
                by,
                at,
                method,
                document,
            } => {
                let (method_code, witness) = match method {
                    ConsentMethod::Written => ("written", None),
                    ConsentMethod::Electronic => ("electronic", None),
                    ConsentMethod::Oral { witness } => ("oral", fhir_string(witness)),
                };
                let mut extensions =
                    vec![json!({"url": CONSENT_METHOD_EXTENSION, "valueCode": method_code})];
                if let Some(witness) = witness {
                    extensions
                        .push(json!({"url": CONSENT_WITNESS_EXTENSION, "valueString": witness}));
                }
                map.insert("extension".into(), Value::Array(extensions));
                map.insert(
                    "category".into(),
                    json!([concept(LOINC, "59284-0", "Patient Consent")]),
                );
                map.insert("dateTime".into(), json!(instant(*at)));
                // A representative is typed so an import reads the role back;
                // nothing else about the giver is known or exported.
                let giver_type = by
                    .starts_with(&consent_given_by(&Giver::Representative, ""))
                    .then_some("RelatedPerson");
                map.insert(
                    "performer".into(),
                    json!([{"type": giver_type, "display": fhir_string(by)}]),
                );
                if let Some(hash) = document {
                    map.insert(
                        "sourceAttachment".into(),
                        json!({
                            "url": format!("{DOCUMENT_URL_PREFIX}{}", hex(hash)),
                            "title": "Signed consent form",
                        }),
                    );
                }
                map.insert(
                    "policyRule".into(),
                    concept(
                        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "OPTIN",
                        "opt-in",
                    ),
                );
                map.insert(
                    "provision".into(),
                    json!({
                        "type": "permit",
                        "actor": [recipient],
                        "purpose": [coding(ACT_REASON, "TREAT", "treatment")],
                    }),
                );
            }
            Consent::EmergencyOverride { reason } => {
                let reason = fhir_string(reason).unwrap_or_else(|| "(no reason given)".into());
                map.insert(
                    "extension".into(),
                    json!([{"url": OVERRIDE_REASON_EXTENSION, "valueString": reason}]),
                );
                map.insert(
                    "category".into(),
                    json!([{
                        "coding": [coding(CONSENT_BASIS_SYSTEM, "emergency-override",
                            "Emergency disclosure without consent")],
                        "text": "Emergency disclosure without the patient's consent",
                    }]),
                );
                map.insert("dateTime".into(), json!(instant(req.created)));
                map.insert(
                    "performer".into(),
                    json!([{
                        "reference": urn(&self.physician),
                        "type": "PractitionerRole",
                        "display": fhir_string(&req.physician),
                    }]),
                );
                map.insert(
                    "policyRule".into(),
                    json!({
                        "coding": [coding(CONSENT_BASIS_SYSTEM, "emergency-override",
                            "Emergency disclosure without consent")],
                        "text": "Emergency exception: the patient's consent could not be obtained",
                    }),
                );
                map.insert(
                    "provision".into(),
                    json!({
                        "type": "permit",
                        "actor": [recipient],
                        "purpose": [coding(ACT_REASON, "ETREAT", "Emergency Treatment")],
                    }),
                );
            }
        }
        consent
    }
}
