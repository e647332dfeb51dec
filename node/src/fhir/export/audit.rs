//! The journal: one AuditEvent per entry about the consultation.

use super::*;

impl<'r, 'a> Exporter<'r, 'a> {
    pub(super) fn audit_event(&self, entry: &Entry) -> Value {
        struct Kind {
            type_code: (&'static str, &'static str),
            subtype: Option<(&'static str, &'static str)>,
            action: &'static str,
            outcome: &'static str,
            journal: &'static str,
        }
        let kind = |type_code, subtype, action, outcome, journal| Kind {
            type_code,
            subtype,
            action,
            outcome,
            journal,
        };
        const RECORD: (&str, &str) = ("110110", "Patient Record");
        const LOGIN: (&str, &str) = ("110122", "Login");
        const AUTH: (&str, &str) = ("110114", "User Authentication");
        let k = match &entry.action {
            JournalAction::Create(_) => kind(RECORD, None, "C", "0", "create"),
            JournalAction::Send { .. } => kind(("110106", "Export"), None, "R", "0", "send"),
            JournalAction::Receive { .. } => kind(("110107", "Import"), None, "C", "0", "receive"),
            JournalAction::Open { .. } => kind(RECORD, None, "R", "0", "open"),
            JournalAction::Transition { .. } => kind(RECORD, None, "U", "0", "transition"),
            JournalAction::Conclusion { .. } => kind(RECORD, None, "C", "0", "conclusion"),
            JournalAction::ConsentOverride { .. } => kind(
                ("110113", "Security Alert"),
                Some(("110127", "Emergency Override Started")),
                "E",
                "0",
                "consent-override",
            ),
            JournalAction::FailedLogin { .. } => kind(AUTH, Some(LOGIN), "E", "4", "failed-login"),
            JournalAction::Login { .. } => kind(AUTH, Some(LOGIN), "E", "0", "login"),
            JournalAction::Recover { .. } => kind(("110107", "Import"), None, "U", "0", "recover"),
            JournalAction::Gap { .. } => kind(("110113", "Security Alert"), None, "E", "8", "gap"),
            JournalAction::Video {
                step: VideoStep::Refused { .. },
                ..
            } => kind(
                ("110113", "Security Alert"),
                None,
                "E",
                "4",
                "video-refused",
            ),
            JournalAction::Video { .. } => {
                kind(("110100", "Application Activity"), None, "E", "0", "video")
            }
            // Disclosing the case to a further organization.
            JournalAction::Invite { .. } => kind(("110106", "Export"), None, "U", "0", "invite"),
            JournalAction::Undone { .. } => kind(RECORD, None, "U", "0", "undone"),
        };
        let mut subtypes = Vec::new();
        if let Some((code, display)) = k.subtype {
            subtypes.push(coding(DCM, code, display));
        }
        subtypes.push(json!({"system": JOURNAL_SYSTEM, "code": k.journal}));
        let detail = |name: &str, value: &str| {
            fhir_string(value).map(|v| json!({"type": name, "valueString": v}))
        };
        let task_entity = |details: Vec<Option<Value>>| {
            json!({
                "what": self.reference(&self.task),
                "type": coding(
                    "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "2",
                    "System Object",
                ),
                "detail": details,
            })
        };
        let package_entity = |package: &[u8]| {
            json!({
                "what": {
                    "type": "Binary",
                    "identifier": {"system": PACKAGE_SYSTEM, "value": hex(package)},
                },
                "type": coding(
                    "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "2",
                    "System Object",
                ),
            })
        };
        let mut purpose = None;
        let mut outcome_desc = None;
        let entities = match &entry.action {
            JournalAction::Create(_) | JournalAction::Open { .. } => vec![task_entity(vec![])],
            JournalAction::Send { package, .. } | JournalAction::Receive { package, .. } => {
                vec![task_entity(vec![]), package_entity(&package.0)]
            }
            JournalAction::Transition { from, to, .. } => {
                vec![task_entity(vec![detail("from", from), detail("to", to)])]
            }
            JournalAction::Conclusion { deadline_met, .. } => {
                if !deadline_met {
                    outcome_desc = Some("Conclusion delivered after the deadline");
                }
                vec![task_entity(vec![detail(
                    "deadline-met",
                    if *deadline_met { "true" } else { "false" },
                )])]
            }
            JournalAction::ConsentOverride { reason, .. } => {
                purpose = Some(vec![concept(ACT_REASON, "ETREAT", "Emergency Treatment")]);
                vec![json!({
                    "what": self.reference(&self.consent),
                    "type": coding(
                        "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                        "2",
                        "System Object",
                    ),
                    "detail": [detail("reason", reason)],
                })]
            }
            JournalAction::Recover { from, steps, .. } => vec![task_entity(vec![
                detail("from", &from.to_string()),
                detail("steps", &steps.to_string()),
            ])],
            JournalAction::Video { org, step, .. } => vec![task_entity(vec![
                detail("site", &org.to_string()),
                detail("step", &step.to_string()),
            ])],
            JournalAction::Invite { org, .. } => {
                vec![task_entity(vec![detail("organization", &org.to_string())])]
            }
            JournalAction::Undone { seq, by, .. } => vec![task_entity(vec![
                detail("step", &seq.to_string()),
                detail("standing", &by.to_string()),
            ])],
            JournalAction::FailedLogin { .. }
            | JournalAction::Login { .. }
            | JournalAction::Gap { .. } => vec![],
        };
        let user = match &entry.action {
            JournalAction::FailedLogin { user } | JournalAction::Login { user } => {
                fhir_string(user)
            }
            _ => entry.actor.as_deref().and_then(fhir_string),
        };
        let agent = match user {
            Some(user) => json!({
                "role": entry.role.map(|r| vec![role_concept(r)]),
                "who": {"display": user.clone()},
                "name": user,
                "requestor": true,
            }),
            None => json!({
                "type": concept(DCM, "110150", "Application"),
                "role": entry.role.map(|r| vec![role_concept(r)]),
                "who": {"type": "Device", "display": "Konsilium node"},
                "requestor": false,
            }),
        };
        json!({
            "resourceType": "AuditEvent",
            "type": coding(DCM, k.type_code.0, k.type_code.1),
            "subtype": subtypes,
            "action": k.action,
            "recorded": instant(entry.at),
            "outcome": k.outcome,
            "outcomeDesc": outcome_desc,
            "purposeOfEvent": purpose,
            "agent": [agent],
            "source": {
                "site": format!("Konsilium journal, entry {}", entry.seq),
                "observer": {"type": "Device", "display": "Konsilium node"},
                "type": [coding(
                    "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "4",
                    "Application Server",
                )],
            },
            "entity": entities,
        })
    }
}
