//! The signed conclusion: its DiagnosticReport and the Provenance that
//! carries its signature.

use super::*;

impl<'r, 'a> Exporter<'r, 'a> {
    pub(super) fn diagnostic_report(
        &self,
        conclusion: &Conclusion,
        signed: &Signed<Conclusion>,
    ) -> Value {
        let req = &self.r.consultation.request;
        let sections: Vec<String> = [
            ("Diagnosis", &conclusion.diagnosis),
            ("Recommendations", &conclusion.recommendations),
            ("Treatment plan", &conclusion.treatment_plan),
            ("Further studies", &conclusion.further_studies),
        ]
        .into_iter()
        .filter_map(|(heading, text)| fhir_string(text).map(|t| format!("{heading}:\n{t}")))
        .collect();
        let summary = sections.join("\n\n");
        let authors: Vec<String> = conclusion
            .authors
            .iter()
            .filter_map(|a| fhir_string(a))
            .collect();
        let document = format!(
            "Teleconsultation conclusion\nConsultation: {}\nSpecialty: {}\nIssued: {} by {}\nAuthors: {}\n\n{}\n",
            self.cid_hex(),
            req.specialty.name(Lang::En),
            instant(conclusion.issued_at),
            fhir_string(self.r.consultant_name).unwrap_or_else(|| req.consultant.to_string()),
            authors.join(", "),
            summary,
        );
        let mut forms = vec![json!({
            "contentType": "text/plain; charset=utf-8",
            "data": BASE64.encode(document.as_bytes()),
            "title": "Teleconsultation conclusion",
            "creation": instant(conclusion.issued_at),
        })];
        for (i, blob) in conclusion.attachments.iter().enumerate() {
            forms.push(json!({
                "url": format!("{BLOB_URL_PREFIX}{}", blob.hex()),
                // unsignedInt stops at 2^31 - 1; a larger size is left out.
                "size": i32::try_from(blob.size).ok(),
                "title": format!("Attachment {} (BLAKE3 {})", i + 1, blob.hex()),
            }));
        }
        let interpreters: Vec<Value> = authors
            .iter()
            .map(|a| self.person_ref(a, Role::Consultant))
            .collect();
        json!({
            "resourceType": "DiagnosticReport",
            "identifier": [{
                "system": CONCLUSION_SYSTEM,
                "value": hex(&signed.content_hash()),
            }],
            "basedOn": [self.reference(&self.service_request)],
            "status": "final",
            "code": {
                "coding": [coding(LOINC, "11488-4", "Consult note")],
                "text": "Teleconsultation conclusion",
            },
            "subject": self.patient(),
            "effectiveDateTime": instant(conclusion.issued_at),
            "issued": instant(conclusion.issued_at),
            "performer": [self.org_ref(&req.consultant)],
            "resultsInterpreter": interpreters,
            "conclusion": fhir_string(&summary),
            "presentedForm": forms,
        })
    }

    pub(super) fn conclusion_provenance(
        &self,
        conclusion: &Conclusion,
        signed: &Signed<Conclusion>,
    ) -> Value {
        let org = self.org_ref(&conclusion.consultant_org);
        let mut agents: Vec<Value> = conclusion
            .authors
            .iter()
            .filter_map(|a| fhir_string(a))
            .map(|a| {
                json!({
                    "type": concept(
                        "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                        "author",
                        "Author",
                    ),
                    "role": [role_concept(Role::Consultant)],
                    "who": self.person_ref(&a, Role::Consultant),
                    "onBehalfOf": org.clone(),
                })
            })
            .collect();
        if agents.is_empty() {
            agents.push(json!({
                "type": concept(
                    "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "author",
                    "Author",
                ),
                "who": org.clone(),
            }));
        }
        json!({
            "resourceType": "Provenance",
            "target": [self.reference(&self.report)],
            "occurredDateTime": instant(conclusion.issued_at),
            "recorded": instant(conclusion.issued_at),
            "activity": concept(
                "http://terminology.hl7.org/CodeSystem/v3-DocumentCompletion",
                "LA",
                "legally authenticated",
            ),
            "agent": agents,
            "signature": [signature(
                org,
                conclusion.issued_at,
                signed.signature().to_bytes(),
                signed.signed_bytes(),
            )],
        })
    }
}
