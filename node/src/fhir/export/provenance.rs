//! The signed workflow steps, each a Provenance on the Task carrying its
//! signature.

use super::*;

impl<'r, 'a> Exporter<'r, 'a> {
    pub(super) fn step_provenance(&self, step: &Step<'_>) -> Value {
        let t = &step.t;
        let org = self.org_ref(&t.actor);
        let (code, display) = action_code(&t.action);
        // Consulting-side people are exported as PractitionerRoles; the
        // requesting side's users other than the physician are not.
        let consulting = t.actor == self.r.consultation.request.consultant;
        let who = match fhir_string(&t.user) {
            Some(user) if consulting => self.person_ref(&user, t.role),
            Some(user) => json!({"type": "Practitioner", "display": user}),
            None => org.clone(),
        };
        json!({
            "resourceType": "Provenance",
            "target": [self.reference(&self.task)],
            "occurredDateTime": instant(t.at),
            "recorded": instant(t.at),
            "reason": action_text(&t.action)
                .filter(|_| !matches!(t.action, Action::Note { .. }))
                .and_then(fhir_string)
                .map(|r| vec![json!({"text": r})]),
            "activity": concept(ACTION_SYSTEM, &code, display),
            "agent": [{
                "type": concept(
                    "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "author",
                    "Author",
                ),
                "role": [role_concept(t.role)],
                "who": who,
                "onBehalfOf": org.clone(),
            }],
            "signature": [signature(
                org,
                t.at,
                step.signed.signature().to_bytes(),
                step.signed.signed_bytes(),
            )],
        })
    }
}
