//! The parties: the two Organizations, and who asked and who answered as
//! Practitioners with the PractitionerRoles they acted in.

use super::*;

impl<'r, 'a> Exporter<'r, 'a> {
    pub(super) fn organization(&self, org: &OrgId, name: &str) -> Value {
        json!({
            "resourceType": "Organization",
            "identifier": [{"system": ORG_SYSTEM, "value": org.to_string()}],
            "active": true,
            "type": [concept(
                "http://terminology.hl7.org/CodeSystem/organization-type",
                "prov",
                "Healthcare Provider",
            )],
            "name": fhir_string(name),
        })
    }

    /// Who asked and who answered, each as a Practitioner with the
    /// PractitionerRole they acted in: the attending physician first, then
    /// everyone of the consulting organization who took a step or signed
    /// the conclusion, once per (name, role).
    pub(super) fn people(&self) -> Vec<Person> {
        let req = &self.r.consultation.request;
        let mut people = vec![Person::new(
            self.cid,
            &req.physician,
            Role::Physician,
            req.requester,
        )];
        people[0].role_id.clone_from(&self.physician);
        let mut add = |name: &str, role: Role, org: OrgId| {
            let Some(name) = fhir_string(name) else {
                return;
            };
            if !people
                .iter()
                .any(|p| p.name == name && p.role == role && p.org == org)
            {
                people.push(Person::new(self.cid, &name, role, org));
            }
        };
        for step in &self.steps {
            if step.t.actor == req.consultant {
                add(&step.t.user, step.t.role, step.t.actor);
            }
        }
        if let Some((conclusion, _)) = &self.conclusion {
            for author in &conclusion.authors {
                add(author, Role::Consultant, req.consultant);
            }
        }
        people
    }

    /// The PractitionerRole of a consulting-side person, when exported.
    pub(super) fn person_ref(&self, name: &str, role: Role) -> Value {
        let req = &self.r.consultation.request;
        match fhir_string(name) {
            Some(name) => {
                let person = Person::new(self.cid, &name, role, req.consultant);
                json!({"reference": urn(&person.role_id), "type": "PractitionerRole",
                       "display": name})
            }
            None => json!({"type": "Practitioner", "display": name}),
        }
    }
}

/// A practitioner who asked or answered, with the ids of their resources.
pub(super) struct Person {
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) org: OrgId,
    pub(super) practitioner_id: String,
    pub(super) role_id: String,
}

impl Person {
    pub(super) fn new(cid: ConsultationId, name: &str, role: Role, org: OrgId) -> Self {
        let key = |kind: &[u8]| {
            stable_uuid(&[
                &cid.0,
                kind,
                org.as_bytes(),
                role.as_str().as_bytes(),
                name.as_bytes(),
            ])
        };
        Self {
            name: name.to_owned(),
            role,
            org,
            practitioner_id: key(b"practitioner"),
            role_id: key(b"practitioner-role"),
        }
    }

    pub(super) fn practitioner(&self) -> Value {
        json!({
            "resourceType": "Practitioner",
            "active": true,
            "name": [{"text": fhir_string(&self.name)}],
        })
    }

    pub(super) fn role_resource(&self, organization: Value, practitioner_id: &str) -> Value {
        json!({
            "resourceType": "PractitionerRole",
            "active": true,
            "practitioner": {
                "reference": urn(practitioner_id),
                "type": "Practitioner",
                "display": fhir_string(&self.name),
            },
            "organization": organization,
            "code": [role_concept(self.role)],
        })
    }
}
