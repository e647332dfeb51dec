use super::*;
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::content::CaseExtract;
use konsilium_protocol::journal::{ConsultationRef, Journal};
use konsilium_protocol::seal::{BlobRef, PackageId};
use konsilium_protocol::testkit::{NOW, TestFederation, TestOrg};
use konsilium_protocol::urgency::Deadlines;
use konsilium_protocol::workflow::{self, ConsultationRequest};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

// -- Validation ---------------------------------------------------------
//
// The official HL7 FHIR R4 JSON schema (fhir.schema.json, CC0) checks
// structure, datatypes, primitive formats and unknown elements. The
// overlay generated from the R4 StructureDefinitions and ValueSets by
// tests/data/fhir-r4/make_overlay.py adds what the schema leaves out by
// design: mandatory elements (min >= 1) and required code bindings.

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fhir-r4")
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(data_dir().join(name)).expect("test data present");
    serde_json::from_str(&text).expect("test data is JSON")
}

/// The schema with every overlay fragment joined to its definition.
fn r4_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut schema = read_json("fhir.schema.json");
        let overlay = read_json("fhir.overlay.json");
        let defs = schema["definitions"].as_object_mut().expect("definitions");
        for (name, fragment) in overlay["definitions"].as_object().expect("overlay") {
            let original = defs
                .remove(name)
                .expect("overlay names a schema definition");
            defs.insert(name.clone(), json!({"allOf": [original, fragment]}));
        }
        schema
    })
}

/// A validator for one resource type (rooted at its definition).
fn validator(resource_type: &str) -> Option<Arc<jsonschema::Validator>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().expect("lock");
    if let Some(v) = cache.get(resource_type) {
        return Some(v.clone());
    }
    let mut schema = r4_schema().clone();
    schema["definitions"].get(resource_type)?;
    let root = schema.as_object_mut()?;
    root.remove("oneOf");
    root.remove("discriminator");
    root.insert(
        "allOf".into(),
        json!([{"$ref": format!("#/definitions/{resource_type}")}]),
    );
    let v = Arc::new(jsonschema::draft6::new(&schema).expect("schema compiles"));
    cache.insert(resource_type.to_owned(), v.clone());
    Some(v)
}

/// Schema errors of one resource, each with its JSON pointer.
fn schema_errors(resource: &Value) -> Vec<String> {
    let Some(rtype) = resource.get("resourceType").and_then(Value::as_str) else {
        return vec!["no resourceType".into()];
    };
    let Some(v) = validator(rtype) else {
        return vec![format!("{rtype} is not an R4 resource type")];
    };
    v.iter_errors(resource)
        .map(|e| {
            let at = e.schema_path().to_string();
            let what = match mandatory_names(&at) {
                Some(names) => format!("missing mandatory element {names}"),
                None => e.masked().to_string(),
            };
            let mut msg = format!("{rtype}{}: {what} [{at}]", e.instance_path());
            msg.truncate(400);
            msg
        })
        .collect()
}

/// For an overlay's `anyOf` of `required`: the element's JSON names.
fn mandatory_names(schema_path: &str) -> Option<String> {
    let alternatives = r4_schema().pointer(schema_path)?.as_array()?;
    let names: Option<Vec<&str>> = alternatives
        .iter()
        .map(|a| a.get("required")?.get(0)?.as_str())
        .collect();
    Some(names?.join(" or "))
}

/// Everything wrong with a Bundle: the Bundle itself against the schema
/// (which reaches every entry through ResourceList), each entry on its
/// own for precise messages, references that do not resolve inside the
/// Bundle, and the invariants this mapping must keep that JSON schema
/// cannot express.
fn r4_errors(bundle: &Value) -> Vec<String> {
    let bundle = &with_reference_types(bundle);
    let mut errors = schema_errors(bundle);
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let mut full_urls = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let resource = &entry["resource"];
        errors.extend(
            schema_errors(resource)
                .into_iter()
                .map(|e| format!("entry[{i}] {e}")),
        );
        let full_url = entry["fullUrl"].as_str().unwrap_or_default();
        if !full_urls.insert(full_url.to_owned()) {
            errors.push(format!("entry[{i}]: duplicate fullUrl {full_url}"));
        }
        // A fullUrl names its resource: urn:uuid:<id>, or a URL ending Type/id.
        if let (Some(id), Some(rtype)) =
            (resource["id"].as_str(), resource["resourceType"].as_str())
            && full_url != urn(id)
            && !full_url.ends_with(&format!("/{rtype}/{id}"))
        {
            errors.push(format!(
                "entry[{i}]: fullUrl {full_url} does not name {rtype}/{id}"
            ));
        }
        errors.extend(
            invariant_errors(resource)
                .into_iter()
                .map(|e| format!("entry[{i}] {e}")),
        );
    }
    let mut references = Vec::new();
    collect_references(bundle, &mut references);
    for r in references {
        if r.starts_with("urn:uuid:") && !full_urls.contains(&r) {
            errors.push(format!("reference {r} does not resolve in the Bundle"));
        }
    }
    errors
}

/// A copy in which every reference to a Bundle entry states the type it
/// points at, so the overlay's target-type rules check every reference.
fn with_reference_types(bundle: &Value) -> Value {
    let types: HashMap<String, String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| {
            let rtype = e["resource"]["resourceType"].as_str().unwrap_or_default();
            let url = e["fullUrl"].as_str().map(str::to_owned);
            let relative = e["resource"]["id"]
                .as_str()
                .map(|id| format!("{rtype}/{id}"));
            [url, relative]
                .into_iter()
                .flatten()
                .map(move |key| (key, rtype.to_owned()))
        })
        .collect();
    fn annotate(v: &mut Value, types: &HashMap<String, String>) {
        match v {
            Value::Object(map) => {
                let target = map
                    .get("reference")
                    .and_then(Value::as_str)
                    .and_then(|r| types.get(r));
                if let Some(t) = target
                    && !map.contains_key("type")
                {
                    map.insert("type".into(), json!(t));
                }
                map.values_mut().for_each(|item| annotate(item, types));
            }
            Value::Array(items) => items.iter_mut().for_each(|i| annotate(i, types)),
            _ => {}
        }
    }
    let mut annotated = bundle.clone();
    annotate(&mut annotated, &types);
    annotated
}

fn collect_references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, item) in map {
                if k == "reference"
                    && let Some(s) = item.as_str()
                {
                    out.push(s.to_owned());
                }
                collect_references(item, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_references(i, out)),
        _ => {}
    }
}

/// A dateTime with a time, for comparisons; the schema reports bad ones.
fn time(v: &Value) -> Option<jiff::Timestamp> {
    v.as_str()?.parse().ok()
}

/// The R4 invariants (FHIRPath constraints) that the resources here can
/// break and JSON schema does not check.
fn invariant_errors(r: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            errors.push(what.to_owned());
        }
    };
    match r["resourceType"].as_str() {
        Some("Appointment") => {
            let status = r["status"].as_str().unwrap_or_default();
            let has_start = r.get("start").is_some();
            check(
                has_start == r.get("end").is_some(),
                "app-2: either start and end are specified, or neither",
            );
            check(
                has_start || matches!(status, "proposed" | "cancelled" | "waitlist"),
                "app-3: only proposed or cancelled appointments can miss start/end",
            );
            check(
                r.get("cancelationReason").is_none() || matches!(status, "cancelled" | "noshow"),
                "app-4: cancelationReason only for cancelled appointments",
            );
            for p in r["participant"].as_array().into_iter().flatten() {
                check(
                    p.get("type").is_some() || p.get("actor").is_some(),
                    "app-1: a participant needs a type or an actor",
                );
            }
        }
        Some("Consent") => check(
            r.get("policy").is_some() || r.get("policyRule").is_some(),
            "ppc-1: either a policy or a policyRule",
        ),
        Some("Task") => {
            if let (Some(a), Some(m)) = (time(&r["authoredOn"]), time(&r["lastModified"])) {
                check(m >= a, "tsk-1: lastModified >= authoredOn");
            }
            let p = &r["executionPeriod"];
            if let (Some(s), Some(e)) = (time(&p["start"]), time(&p["end"])) {
                check(s <= e, "per-1: period start <= end");
            }
        }
        Some("Organization") => check(
            r.get("identifier").is_some() || r.get("name").is_some(),
            "org-1: a name or an identifier",
        ),
        _ => {}
    }
    errors
}

#[track_caller]
fn assert_valid(bundle: &Value) {
    let errors = r4_errors(bundle);
    assert!(
        errors.is_empty(),
        "not valid FHIR R4:\n{}",
        errors.join("\n")
    );
}

// -- A consultation to export --------------------------------------------

const CID: ConsultationId = ConsultationId([0x42; 16]);

struct Case {
    district: TestOrg,
    federal: TestOrg,
    consultation: Consultation,
    deadline: Deadline,
    conclusion: Option<Signed<Conclusion>>,
    journal: Vec<Entry>,
    extract: CaseExtract,
}

impl Case {
    fn record(&self) -> ConsultationRecord<'_> {
        ConsultationRecord {
            consultation: &self.consultation,
            extract: &self.extract,
            requester_name: "Kirillov central district hospital",
            consultant_name: "Federal center of cardiology",
            deadline: Some(&self.deadline),
            conclusion: self.conclusion.as_ref(),
            journal: &self.journal,
            files: &[],
        }
    }

    fn export(&self) -> Value {
        export_bundle(&self.record())
    }

    fn step(&mut self, consulting: bool, role: Role, minutes: u64, action: Action) {
        let key = if consulting {
            &self.federal.identity
        } else {
            &self.district.identity
        };
        let user = match role {
            Role::Physician => "Dr. Anna Ivanova",
            Role::Coordinator => "coordinator Orlova",
            Role::Consultant => "Prof. Petrov",
            Role::Operator => "operator",
        };
        let step = self.consultation.step(key, role, user, at(minutes), action);
        self.consultation.apply(&step).expect("a valid step");
    }
}

fn at(minutes: u64) -> Timestamp {
    NOW.saturating_add(Duration::from_secs(minutes * 60))
}

fn slot(hours: u64) -> Slot {
    Slot {
        start: at(hours * 60),
        end: at(hours * 60 + 45),
    }
}

fn written_consent() -> Consent {
    Consent::Given {
        by: "Ivan Petrovich Sidorov".into(),
        at: NOW.saturating_sub(Duration::from_secs(600)),
        method: ConsentMethod::Written,
        document: Some([0xab; 32]),
    }
}

fn open(urgency: Urgency, consent: Consent) -> Case {
    let mut fed = TestFederation::new("fhir");
    let district = fed.org(1, OrgLevel::District, "RU-VLG", &[]);
    let federal = fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]);
    let request = ConsultationRequest {
        id: CID,
        requester: district.id(),
        consultant: federal.id(),
        specialty: Specialty::Cardiology,
        urgency,
        created: NOW,
        consent,
        physician: "Dr. Anna Ivanova".into(),
        escalated_from: Some(ConsultationId([0x41; 16])),
    };
    let signed = workflow::request(&district.identity, request).expect("request");
    let consultation = Consultation::open(&signed).expect("opens");
    let deadline = Deadline::compute(
        urgency,
        NOW,
        &federal.record(1).calendar,
        &Deadlines::default(),
    );
    Case {
        district,
        federal,
        consultation,
        deadline,
        conclusion: None,
        journal: Vec::new(),
        extract: CaseExtract {
            summary: "Syncope twice this month; bradycardia 38/min on Holter.".into(),
            questions: "Is a pacemaker indicated?".into(),
        },
    }
}

/// Request with consent; received, accepted, started; more examinations
/// asked and supplied; a video consilium proposed and confirmed; an oral
/// note; the signed conclusion; acknowledged. With its journal.
fn full_case() -> Case {
    use Role::*;
    let mut case = open(Urgency::Urgent, written_consent());
    case.step(true, Coordinator, 5, Action::Receive);
    case.step(true, Coordinator, 10, Action::Accept);
    case.step(true, Consultant, 20, Action::Start);
    case.step(
        true,
        Consultant,
        30,
        Action::AskMore {
            questions: "Echocardiography, please".into(),
        },
    );
    case.step(
        false,
        Physician,
        90,
        Action::Supply {
            note: "Echo attached: EF 35%".into(),
        },
    );
    case.step(
        true,
        Coordinator,
        100,
        Action::ProposeSlots {
            slots: vec![slot(4), slot(5)],
        },
    );
    case.step(false, Physician, 110, Action::ConfirmSlot { slot: slot(5) });
    case.step(
        true,
        Consultant,
        120,
        Action::Note {
            text: "Preliminary: no indication for emergency surgery".into(),
        },
    );
    let conclusion = Conclusion {
        consultation: CID,
        consultant_org: case.federal.id(),
        authors: vec!["Prof. Petrov".into(), "Dr. Smirnova".into()],
        diagnosis: "Ischemic cardiomyopathy, NYHA III".into(),
        recommendations: "CRT-D implantation".into(),
        treatment_plan: "Optimise heart failure therapy first".into(),
        further_studies: String::new(),
        attachments: vec![BlobRef {
            hash: [9; 32],
            size: 123_456,
        }],
        issued_at: at(360),
    }
    .sign(&case.federal.identity)
    .expect("signs");
    case.step(
        true,
        Consultant,
        360,
        Action::Conclude {
            conclusion: conclusion.content_hash(),
        },
    );
    case.step(false, Physician, 400, Action::Acknowledge);
    case.conclusion = Some(conclusion);
    let mut journal = Journal::new();
    let id = CID.0;
    let user = |s: &str| Some(s.to_owned());
    case.journal = vec![
        journal.append(
            NOW,
            user("dr.ivanova"),
            Some(Physician),
            JournalAction::Create(ConsultationRef {
                id,
                requester: case.district.id(),
                consultant: case.federal.id(),
                specialty: Specialty::Cardiology,
                urgency: Urgency::Urgent,
            }),
        ),
        journal.append(
            at(1),
            None,
            None,
            JournalAction::Send {
                consultation: id,
                package: PackageId([1; 16]),
            },
        ),
        journal.append(
            at(91),
            None,
            None,
            JournalAction::Receive {
                consultation: id,
                package: PackageId([2; 16]),
            },
        ),
        journal.append(
            at(95),
            user("prof.petrov"),
            Some(Consultant),
            JournalAction::Open { consultation: id },
        ),
        journal.append(
            at(360),
            None,
            None,
            JournalAction::Transition {
                consultation: id,
                from: "in-progress".into(),
                to: "completed".into(),
            },
        ),
        journal.append(
            at(361),
            None,
            None,
            JournalAction::Conclusion {
                consultation: id,
                deadline_met: false,
            },
        ),
        journal.append(
            at(2),
            None,
            None,
            JournalAction::Login {
                user: "dr.ivanova".into(),
            },
        ),
        // A user name typed by whoever tried, control characters included.
        journal.append(
            at(3),
            None,
            None,
            JournalAction::FailedLogin {
                user: "mallory\u{7}\u{1b}[2J".into(),
            },
        ),
        // About another consultation: not exported.
        journal.append(
            at(4),
            None,
            None,
            JournalAction::Open {
                consultation: [7; 16],
            },
        ),
    ];
    case
}

fn resources<'b>(bundle: &'b Value, rtype: &str) -> Vec<&'b Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == rtype)
        .collect()
}

fn one<'b>(bundle: &'b Value, rtype: &str) -> &'b Value {
    let found = resources(bundle, rtype);
    assert_eq!(found.len(), 1, "one {rtype}");
    found[0]
}

fn b64(v: &Value) -> Vec<u8> {
    BASE64
        .decode(v.as_str().expect("base64 string"))
        .expect("base64")
}

// -- Export ---------------------------------------------------------------

#[test]
fn full_consultation_exports_as_valid_fhir_r4() {
    let case = full_case();
    let bundle = case.export();
    assert_valid(&bundle);
    assert_eq!(bundle["type"], "collection");
    assert_eq!(bundle, case.export(), "the export is deterministic");

    let count = |t| resources(&bundle, t).len();
    assert_eq!(count("Organization"), 2);
    assert_eq!(count("ServiceRequest"), 1);
    assert_eq!(count("Task"), 1);
    assert_eq!(count("Appointment"), 1);
    assert_eq!(count("Communication"), 1);
    assert_eq!(count("DiagnosticReport"), 1);
    assert_eq!(count("Consent"), 1);
    // One per signed step, and one for the conclusion.
    assert_eq!(count("Provenance"), case.consultation.history.len() + 1);
    // The entry about another consultation is left out.
    assert_eq!(count("AuditEvent"), case.journal.len() - 1);

    let sr = one(&bundle, "ServiceRequest");
    assert_eq!(sr["intent"], "order");
    assert_eq!(sr["status"], "completed");
    assert_eq!(sr["code"]["coding"][0]["system"], SNOMED);
    assert_eq!(sr["code"]["coding"][0]["code"], "394579002");
    assert_eq!(sr["code"]["coding"][1]["system"], SPECIALTY_SYSTEM);
    assert_eq!(sr["code"]["coding"][1]["code"], "cardiology");
    assert_eq!(sr["replaces"][0]["identifier"]["value"], "41".repeat(16));

    let task = one(&bundle, "Task");
    assert_eq!(task["status"], "completed");
    assert_eq!(task["intent"], "order");
    assert_eq!(task["priority"], "urgent");
    assert_eq!(
        task["focus"]["reference"],
        json!(urn(sr["id"].as_str().unwrap()))
    );
    assert_eq!(
        task["restriction"]["period"]["end"],
        json!(instant(case.deadline.due))
    );
    assert_eq!(task["executionPeriod"]["start"], json!(instant(at(20))));
    assert_eq!(task["executionPeriod"]["end"], json!(instant(at(360))));
    assert_eq!(task["businessStatus"]["coding"][0]["code"], "acknowledge");
    let notes: Vec<&str> = task["note"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        notes,
        [
            "More examinations requested: Echocardiography, please",
            "More materials supplied: Echo attached: EF 35%"
        ]
    );
    let orgs: Vec<&Value> = resources(&bundle, "Organization");
    let requester = orgs
        .iter()
        .find(|o| o["identifier"][0]["value"] == case.district.id().to_string())
        .expect("requesting organization");
    assert_eq!(requester["identifier"][0]["system"], ORG_SYSTEM);
    assert_eq!(
        task["requester"]["reference"],
        json!(urn(requester["id"].as_str().unwrap()))
    );

    let appointment = one(&bundle, "Appointment");
    assert_eq!(appointment["status"], "booked");
    assert_eq!(appointment["start"], json!(instant(slot(5).start)));

    let report = one(&bundle, "DiagnosticReport");
    assert_eq!(report["status"], "final");
    let text = report["conclusion"].as_str().unwrap();
    assert!(
        text.contains("Diagnosis:\nIschemic cardiomyopathy, NYHA III"),
        "{text}"
    );
    assert!(
        text.contains("Recommendations:\nCRT-D implantation"),
        "{text}"
    );
    assert!(
        !text.contains("Further studies"),
        "empty sections are left out"
    );
    let form = String::from_utf8(b64(&report["presentedForm"][0]["data"])).unwrap();
    assert!(form.contains("Prof. Petrov, Dr. Smirnova"), "{form}");

    // The conclusion's Provenance carries its exact signature and bytes.
    let signed = case.conclusion.as_ref().unwrap();
    let report_ref = json!(urn(report["id"].as_str().unwrap()));
    let provenance = resources(&bundle, "Provenance")
        .into_iter()
        .find(|p| p["target"][0]["reference"] == report_ref)
        .expect("the conclusion's provenance");
    let sig = &provenance["signature"][0];
    assert_eq!(sig["type"][0]["code"], AUTHORS_SIGNATURE);
    assert_eq!(sig["sigFormat"], SIG_FORMAT);
    assert_eq!(b64(&sig["data"]), signed.signature().to_bytes());
    assert_eq!(
        b64(&sig["extension"][0]["valueBase64Binary"]),
        signed.signed_bytes()
    );
    let consultant_ref = json!(urn(orgs
        .iter()
        .find(|o| o["identifier"][0]["value"] == case.federal.id().to_string())
        .unwrap()["id"]
        .as_str()
        .unwrap()));
    assert_eq!(sig["who"]["reference"], consultant_ref);

    // Journal entries: types, times, and no control characters.
    let audits = resources(&bundle, "AuditEvent");
    assert_eq!(audits[0]["recorded"], json!(instant(NOW)));
    assert_eq!(audits[0]["type"]["code"], "110110");
    assert_eq!(audits[0]["action"], "C");
    let failed = audits
        .iter()
        .find(|a| a["outcome"] == "4")
        .expect("the failed login");
    assert_eq!(failed["subtype"][0]["code"], "110122");
    let name = failed["agent"][0]["name"].as_str().unwrap();
    assert!(!name.chars().any(|c| c.is_control()), "{name:?}");

    let consent = one(&bundle, "Consent");
    assert_eq!(consent["scope"]["coding"][0]["code"], "patient-privacy");
    assert_eq!(consent["provision"]["type"], "permit");
    assert_eq!(consent["extension"][0]["valueCode"], "written");
}

/// The validation is real: breaking one element of one resource fails it.
#[test]
fn validation_catches_broken_resources() {
    let bundle = full_case().export();
    assert_valid(&bundle);
    type Mutation = fn(&mut Map<String, Value>);
    let cases: &[(&str, &str, Mutation)] = &[
        ("Task", "Task.intent removed", |r| {
            r.remove("intent");
        }),
        ("Task", "Task.status removed", |r| {
            r.remove("status");
        }),
        ("Task", "Task.priority high", |r| {
            r.insert("priority".into(), json!("high"));
        }),
        ("ServiceRequest", "ServiceRequest.priority high", |r| {
            r.insert("priority".into(), json!("high"));
        }),
        ("ServiceRequest", "ServiceRequest.intent removed", |r| {
            r.remove("intent");
        }),
        ("ServiceRequest", "ServiceRequest.subject removed", |r| {
            r.remove("subject");
        }),
        ("Appointment", "Appointment.status confirmed", |r| {
            r.insert("status".into(), json!("confirmed"));
        }),
        (
            "Appointment",
            "Appointment.participant.status removed",
            |r| {
                if let Some(p) = r["participant"][0].as_object_mut() {
                    p.remove("status");
                }
            },
        ),
        ("AuditEvent", "AuditEvent.recorded not an instant", |r| {
            r.insert("recorded".into(), json!("yesterday"));
        }),
        ("AuditEvent", "AuditEvent.agent.requestor removed", |r| {
            if let Some(a) = r["agent"][0].as_object_mut() {
                a.remove("requestor");
            }
        }),
        ("Provenance", "Provenance.signature.type removed", |r| {
            if let Some(s) = r["signature"][0].as_object_mut() {
                s.remove("type");
            }
        }),
        ("Provenance", "Provenance.target removed", |r| {
            r.remove("target");
        }),
        ("DiagnosticReport", "DiagnosticReport.status done", |r| {
            r.insert("status".into(), json!("done"));
        }),
        ("Consent", "Consent.scope removed", |r| {
            r.remove("scope");
        }),
        ("Appointment", "an Organization as a participant", |r| {
            r.insert(
                "participant".into(),
                json!([{
                    "actor": {"type": "Organization", "display": "Federal center"},
                    "status": "accepted",
                }]),
            );
        }),
        ("Task", "Task.owner pointing at the ServiceRequest", |r| {
            let focus = r["focus"].clone();
            r.insert("owner".into(), focus);
        }),
        ("Organization", "an element R4 does not have", |r| {
            r.insert("nickname".into(), json!("the district"));
        }),
        ("Communication", "Communication.sent a date in words", |r| {
            r.insert("sent".into(), json!("28 May 2026"));
        }),
    ];
    for (rtype, what, mutate) in cases {
        let mut broken = bundle.clone();
        let entry = broken["entry"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|e| e["resource"]["resourceType"] == *rtype)
            .unwrap();
        mutate(entry["resource"].as_object_mut().unwrap());
        let errors = r4_errors(&broken);
        assert!(!errors.is_empty(), "{what}: accepted as valid");
        assert!(
            errors.iter().any(|e| e.contains(rtype)),
            "{what}: errors do not name {rtype}: {errors:?}"
        );
    }
    let mut broken = bundle.clone();
    broken["type"] = json!("pile");
    assert!(!r4_errors(&broken).is_empty(), "Bundle.type pile");
    let mut dangling = bundle;
    dangling["entry"].as_array_mut().unwrap().remove(0);
    assert!(
        r4_errors(&dangling)
            .iter()
            .any(|e| e.contains("does not resolve")),
        "a reference to a removed Organization"
    );
}

#[test]
fn priority_follows_urgency() {
    for (urgency, code) in [
        (Urgency::Planned, "routine"),
        (Urgency::Urgent, "urgent"),
        (Urgency::Emergency, "stat"),
    ] {
        assert_eq!(priority_code(urgency), code);
        assert_eq!(urgency_from_priority(code), Some(urgency));
        let bundle = open(urgency, written_consent()).export();
        assert_valid(&bundle);
        assert_eq!(one(&bundle, "ServiceRequest")["priority"], code);
        assert_eq!(one(&bundle, "Task")["priority"], code);
    }
    assert_eq!(urgency_from_priority("asap"), Some(Urgency::Emergency));
    assert_eq!(urgency_from_priority("high"), None);
    assert_eq!(
        urgency_from_priority("STAT"),
        None,
        "FHIR codes are case-sensitive"
    );
}

#[test]
fn task_status_follows_the_workflow() {
    use Role::*;
    type Steps = fn(&mut Case);
    let scenarios: &[(Steps, &str, &str)] = &[
        (|_| {}, "requested", "active"),
        (
            |c| c.step(true, Coordinator, 1, Action::Receive),
            "received",
            "active",
        ),
        (
            |c| c.step(true, Coordinator, 1, Action::Accept),
            "accepted",
            "active",
        ),
        (
            |c| {
                c.step(true, Coordinator, 1, Action::Accept);
                c.step(true, Consultant, 2, Action::Start);
            },
            "in-progress",
            "active",
        ),
        (
            |c| {
                c.step(true, Coordinator, 1, Action::Accept);
                c.step(
                    true,
                    Consultant,
                    2,
                    Action::AskMore {
                        questions: "MRI".into(),
                    },
                );
            },
            "on-hold",
            "on-hold",
        ),
        (
            |c| {
                c.step(true, Coordinator, 1, Action::Accept);
                c.step(
                    true,
                    Consultant,
                    2,
                    Action::Conclude {
                        conclusion: [1; 32],
                    },
                );
            },
            "completed",
            "completed",
        ),
        (
            |c| {
                c.step(
                    true,
                    Coordinator,
                    1,
                    Action::Reject {
                        reason: "no capacity this week".into(),
                        forward: true,
                    },
                )
            },
            "rejected",
            "revoked",
        ),
        (
            |c| {
                c.step(
                    false,
                    Physician,
                    1,
                    Action::Cancel {
                        reason: "transferred".into(),
                    },
                )
            },
            "cancelled",
            "revoked",
        ),
        (
            |c| {
                c.step(
                    false,
                    Operator,
                    1,
                    Action::Fail {
                        reason: "deadline missed".into(),
                    },
                )
            },
            "failed",
            "revoked",
        ),
    ];
    for (steps, task_status, request_status) in scenarios {
        let mut case = open(Urgency::Planned, written_consent());
        steps(&mut case);
        assert_eq!(case.consultation.status.fhir_code(), *task_status);
        let bundle = case.export();
        assert_valid(&bundle);
        let task = one(&bundle, "Task");
        assert_eq!(task["status"], *task_status);
        assert_eq!(one(&bundle, "ServiceRequest")["status"], *request_status);
        if *task_status == "rejected" {
            assert_eq!(task["statusReason"]["text"], "no capacity this week");
            assert_eq!(task["executionPeriod"]["end"], json!(instant(at(1))));
        }
    }
    // A conclusion hash without the signed conclusion: no report, no output.
    let mut case = open(Urgency::Planned, written_consent());
    case.step(true, Coordinator, 1, Action::Accept);
    case.step(
        true,
        Consultant,
        2,
        Action::Conclude {
            conclusion: [1; 32],
        },
    );
    let bundle = case.export();
    assert!(resources(&bundle, "DiagnosticReport").is_empty());
    assert!(one(&bundle, "Task").get("output").is_none());
}

/// Empty and control-character strings and the largest timestamps still
/// give valid FHIR (FHIR strings are never empty and hold no controls).
#[test]
fn odd_values_still_export_valid_fhir() {
    let mut fed = TestFederation::new("fhir-odd");
    let district = fed.org(1, OrgLevel::District, "RU-VLG", &[]);
    let federal = fed.org(2, OrgLevel::Federal, "RU-MOW", &[]);
    let far = Timestamp::from_unix_millis(u64::MAX - 1);
    let farthest = Timestamp::from_unix_millis(u64::MAX);
    let request = ConsultationRequest {
        id: CID,
        requester: district.id(),
        consultant: federal.id(),
        specialty: Specialty::ALL[Specialty::ALL.len() - 1],
        urgency: Urgency::Emergency,
        created: far,
        consent: Consent::Given {
            by: " \u{0} ".into(),
            at: far,
            method: ConsentMethod::Oral {
                witness: String::new(),
            },
            document: None,
        },
        physician: "\u{1b}[31m".into(),
        escalated_from: None,
    };
    let mut consultation =
        Consultation::open(&workflow::request(&district.identity, request).unwrap()).unwrap();
    for (key, role, action) in [
        (&federal.identity, Role::Consultant, Action::Accept),
        (
            &federal.identity,
            Role::Consultant,
            Action::Note { text: "\n".into() },
        ),
        (
            &federal.identity,
            Role::Coordinator,
            Action::ProposeSlots {
                slots: vec![Slot {
                    start: far,
                    end: farthest,
                }],
            },
        ),
        (
            &district.identity,
            Role::Physician,
            Action::CancelAppointment {
                reason: "\t".into(),
            },
        ),
    ] {
        let step = consultation.step(key, role, "", far, action);
        consultation.apply(&step).unwrap();
    }
    let deadline = Deadline::compute(
        Urgency::Emergency,
        far,
        &federal.record(1).calendar,
        &Deadlines::default(),
    );
    let journal = vec![Journal::new().append(
        far,
        Some("\u{7}".into()),
        None,
        JournalAction::FailedLogin {
            user: String::new(),
        },
    )];
    let bundle = export_bundle(&ConsultationRecord {
        consultation: &consultation,
        extract: &CaseExtract {
            summary: " \u{0}\u{1b} ".into(),
            questions: "\t\u{7}?".into(),
        },
        requester_name: "",
        consultant_name: "\u{0}",
        deadline: Some(&deadline),
        conclusion: None,
        journal: &journal,
        files: &[],
    });
    assert_valid(&bundle);
    assert_eq!(
        one(&bundle, "Task")["authoredOn"],
        json!(jiff::Timestamp::MAX.to_string())
    );
}

#[test]
fn a_conclusion_that_does_not_verify_is_not_exported() {
    let mut case = full_case();
    // Signed by the requesting organization, not the consulting one.
    let forged = Signed::sign(
        &case.district.identity,
        &case
            .conclusion
            .as_ref()
            .unwrap()
            .decode_unverified()
            .unwrap(),
    );
    case.conclusion = Some(forged);
    let bundle = case.export();
    assert_valid(&bundle);
    assert!(resources(&bundle, "DiagnosticReport").is_empty());
}

#[test]
fn appointment_status_mapping() {
    use Role::*;
    let none = open(Urgency::Urgent, written_consent());
    assert!(resources(&none.export(), "Appointment").is_empty());

    let mut case = open(Urgency::Urgent, written_consent());
    case.step(true, Coordinator, 1, Action::Accept);
    case.step(
        true,
        Coordinator,
        2,
        Action::ProposeSlots {
            slots: vec![slot(3), slot(4)],
        },
    );
    let bundle = case.export();
    assert_valid(&bundle);
    let a = one(&bundle, "Appointment");
    assert_eq!(a["status"], "proposed");
    assert!(a.get("start").is_none());
    assert_eq!(a["requestedPeriod"].as_array().unwrap().len(), 2);
    assert_eq!(
        a["requestedPeriod"][1]["start"],
        json!(instant(slot(4).start))
    );
    assert_eq!(a["participant"][1]["status"], "needs-action");
    assert_eq!(a["created"], json!(instant(at(2))));

    case.step(false, Physician, 3, Action::ConfirmSlot { slot: slot(4) });
    let bundle = case.export();
    assert_valid(&bundle);
    let a = one(&bundle, "Appointment");
    assert_eq!(a["status"], "booked");
    assert_eq!(a["start"], json!(instant(slot(4).start)));
    assert_eq!(a["end"], json!(instant(slot(4).end)));
    assert_eq!(a["participant"][1]["status"], "accepted");

    let mut ended = case.clone_consultation();
    ended.step(
        false,
        Physician,
        4,
        Action::Cancel {
            reason: "transferred".into(),
        },
    );
    let bundle = ended.export();
    assert_valid(&bundle);
    let a = one(&bundle, "Appointment");
    assert_eq!(a["status"], "cancelled", "the consultation ended");
    assert_eq!(a["cancelationReason"]["text"], "transferred");

    case.step(
        false,
        Physician,
        4,
        Action::CancelAppointment {
            reason: "patient too ill to travel".into(),
        },
    );
    let bundle = case.export();
    assert_valid(&bundle);
    let a = one(&bundle, "Appointment");
    assert_eq!(a["status"], "cancelled");
    assert_eq!(a["cancelationReason"]["text"], "patient too ill to travel");
    assert_eq!(
        a["start"],
        json!(instant(slot(4).start)),
        "the booked time stays"
    );
    assert_eq!(a["participant"][1]["status"], "declined");

    for (appointment, status, expected) in [
        (Appointment::None, Status::InProgress, None),
        (
            Appointment::Proposed(vec![slot(1)]),
            Status::Accepted,
            Some("proposed"),
        ),
        (
            Appointment::Confirmed(slot(1)),
            Status::InProgress,
            Some("booked"),
        ),
        (
            Appointment::Confirmed(slot(1)),
            Status::Completed,
            Some("booked"),
        ),
        (
            Appointment::Cancelled,
            Status::InProgress,
            Some("cancelled"),
        ),
        (
            Appointment::Confirmed(slot(1)),
            Status::Failed,
            Some("cancelled"),
        ),
    ] {
        assert_eq!(appointment_status(&appointment, status), expected);
    }
}

impl Case {
    fn clone_consultation(&self) -> Case {
        let mut fed = TestFederation::new("fhir");
        Case {
            district: fed.org(1, OrgLevel::District, "RU-VLG", &[]),
            federal: fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]),
            consultation: self.consultation.clone(),
            deadline: self.deadline,
            conclusion: self.conclusion.clone(),
            journal: self.journal.clone(),
            extract: self.extract.clone(),
        }
    }
}

#[test]
fn emergency_override_exports_and_imports() {
    let reason = "unconscious, no relatives reachable";
    let mut case = open(
        Urgency::Emergency,
        Consent::EmergencyOverride {
            reason: reason.into(),
        },
    );
    case.step(true, Role::Consultant, 1, Action::Accept);
    case.step(
        true,
        Role::Consultant,
        4,
        Action::Note {
            text: "Oral conclusion: thrombolysis now".into(),
        },
    );
    let mut journal = Journal::new();
    case.journal = vec![journal.append(
        NOW,
        Some("dr.ivanova".into()),
        Some(Role::Physician),
        JournalAction::ConsentOverride {
            consultation: CID.0,
            reason: reason.into(),
        },
    )];
    let bundle = case.export();
    assert_valid(&bundle);
    let consent = one(&bundle, "Consent");
    assert_eq!(consent["extension"][0]["url"], OVERRIDE_REASON_EXTENSION);
    assert_eq!(consent["extension"][0]["valueString"], reason);
    assert_eq!(consent["provision"]["purpose"][0]["code"], "ETREAT");
    let task = one(&bundle, "Task");
    assert_eq!(task["priority"], "stat");
    assert_eq!(
        task["input"][0]["valueInstant"],
        json!(instant(case.deadline.first_response_due.unwrap()))
    );
    let note = one(&bundle, "Communication");
    assert_eq!(
        note["payload"][0]["contentString"],
        "Oral conclusion: thrombolysis now"
    );
    assert_eq!(
        task["output"][0]["valueReference"]["reference"],
        json!(urn(note["id"].as_str().unwrap()))
    );
    let audit = one(&bundle, "AuditEvent");
    assert_eq!(audit["type"]["code"], "110113");
    assert_eq!(audit["subtype"][0]["code"], "110127");
    assert_eq!(audit["entity"][0]["detail"][0]["valueString"], reason);

    // The request as exported before anyone answered imports back.
    let fresh = open(
        Urgency::Emergency,
        Consent::EmergencyOverride {
            reason: reason.into(),
        },
    );
    let imported = import_service_request(&fresh.export()).expect("imports");
    assert_eq!(imported.urgency, Urgency::Emergency);
    assert_eq!(
        imported.consent,
        Some(Consent::EmergencyOverride {
            reason: reason.into()
        })
    );
}

#[test]
fn export_round_trips_through_import() {
    let physician = "Dr. Anna Ivanova";
    for consent in [
        Consent::Given {
            by: consent_given_by(&Giver::Patient, physician),
            at: NOW.saturating_sub(Duration::from_secs(600)),
            method: ConsentMethod::Written,
            document: Some([0xab; 32]),
        },
        Consent::Given {
            by: consent_given_by(&Giver::Representative, physician),
            at: at(1),
            method: ConsentMethod::Oral {
                witness: "nurse Kuznetsova".into(),
            },
            document: None,
        },
        Consent::Given {
            by: consent_given_by(&Giver::Patient, physician),
            at: Timestamp::from_unix_millis(1_780_000_000_123),
            method: ConsentMethod::Electronic,
            document: None,
        },
    ] {
        let case = open(Urgency::Urgent, consent.clone());
        let bundle = case.export();
        assert_valid(&bundle);
        let imported = import_service_request(&bundle).expect("imports");
        assert_eq!(
            imported,
            ImportedRequest {
                specialty: Specialty::Cardiology,
                urgency: Urgency::Urgent,
                target: Some(case.federal.id()),
                physician: physician.into(),
                questions: case.extract.questions.clone(),
                case_summary: case.extract.summary.clone(),
                attachments: Vec::new(),
                identifier: Some(format!("{CONSULTATION_SYSTEM}|{CID}")),
                consent: Some(consent),
            }
        );
    }
}

// -- Import ----------------------------------------------------------------

/// A request as a hospital information system would write it: SNOMED CT
/// cardiology, priority stat, the physician and the patient as resources
/// referenced by `Type/id`, the target organization by its Konsilium id.
fn his_bundle(target: &OrgId) -> Value {
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

fn target() -> OrgId {
    let mut fed = TestFederation::new("fhir-import");
    fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology])
        .id()
}

#[test]
fn imports_a_hand_written_request() {
    let target = target();
    let bundle = his_bundle(&target);
    // The fixture itself is valid FHIR R4, so the import is tested on
    // what a conformant system sends (and the validator accepts it).
    assert_valid(&bundle);

    let imported = import_service_request(&bundle).expect("imports");
    assert_eq!(
        imported,
        ImportedRequest {
            specialty: Specialty::Cardiology,
            urgency: Urgency::Emergency,
            target: Some(target),
            physician: "Dr. Anna Ivanova".into(),
            questions: "Is CRT-D indicated?\n\nWhich anticoagulation before the procedure?".into(),
            case_summary: "Heart failure NYHA III, EF 35% on echo\nAtrial fibrillation".into(),
            attachments: Vec::new(),
            identifier: Some("https://his.kirillov-crh.example/fhir/sid/order|42".into()),
            consent: Some(Consent::Given {
                // The Consent's performer is the Patient: not read.
                by: "the patient; recorded by Dr. Anna Ivanova".into(),
                at: Timestamp::from_unix_millis(
                    "2026-05-28T06:30:00Z"
                        .parse::<jiff::Timestamp>()
                        .unwrap()
                        .as_millisecond() as u64
                ),
                method: ConsentMethod::Electronic,
                document: None,
            }),
        }
    );
    let text = serde_json::to_string(&bundle).unwrap();
    assert_eq!(import_service_request_json(&text), Ok(imported));
}

#[test]
fn import_variants() {
    let target = target();
    // The Konsilium code alone; priority absent means routine; a
    // PractitionerRole with a display; no performer and no consent.
    let mut bundle = his_bundle(&target);
    let sr = bundle["entry"][0]["resource"].as_object_mut().unwrap();
    sr.insert(
        "code".into(),
        json!({"coding": [{"system": SPECIALTY_SYSTEM, "code": "neonatology"}]}),
    );
    sr.remove("priority");
    sr.remove("performer");
    sr.remove("supportingInfo");
    sr.insert(
        "requester".into(),
        json!({"reference": "#role", "display": "Dr. Olga Belova"}),
    );
    bundle["entry"].as_array_mut().unwrap().truncate(3);
    let imported = import_service_request(&bundle).expect("imports");
    assert_eq!(imported.specialty, Specialty::Neonatology);
    assert_eq!(imported.urgency, Urgency::Planned);
    assert_eq!(imported.target, None);
    assert_eq!(imported.physician, "Dr. Olga Belova");
    assert_eq!(imported.consent, None);

    // Contained PractitionerRole → contained Practitioner; performer as a
    // logical reference by identifier; priority asap.
    let mut bundle = his_bundle(&target);
    let sr = bundle["entry"][0]["resource"].as_object_mut().unwrap();
    sr.insert(
        "contained".into(),
        json!([
            {"resourceType": "Practitioner", "id": "p", "name": [{"text": "Dr. Ilya Orlov"}]},
            {"resourceType": "PractitionerRole", "id": "r", "practitioner": {"reference": "#p"}}
        ]),
    );
    sr.insert("requester".into(), json!({"reference": "#r"}));
    sr.insert(
        "performer".into(),
        json!([{"type": "Organization",
                "identifier": {"system": ORG_SYSTEM, "value": target.to_string()}}]),
    );
    sr.insert("priority".into(), json!("asap"));
    let imported = import_service_request(&bundle).expect("imports");
    assert_eq!(imported.physician, "Dr. Ilya Orlov");
    assert_eq!(imported.target, Some(target));
    assert_eq!(imported.urgency, Urgency::Emergency);

    // A date-only consent date counts from midnight UTC.
    let mut bundle = his_bundle(&target);
    bundle["entry"][4]["resource"]["dateTime"] = json!("2026-05-28");
    let Some(Consent::Given { at, .. }) = import_service_request(&bundle).unwrap().consent else {
        panic!("consent given")
    };
    assert_eq!(instant(at), "2026-05-28T00:00:00Z");
}

#[track_caller]
fn import_error(bundle: &Value) -> FhirError {
    match import_service_request(bundle) {
        Ok(imported) => panic!("imported {imported:?}"),
        Err(e) => e,
    }
}

#[test]
fn import_errors_name_the_element() {
    let target = target();
    type Mutation = fn(&mut Value);
    let cases: &[(Mutation, &str, &str)] = &[
        (
            |b| {
                b["entry"][0]["resource"]
                    .as_object_mut()
                    .unwrap()
                    .remove("code");
            },
            "Bundle.entry[0].resource.code",
            "specialty",
        ),
        (
            |b| b["entry"][0]["resource"]["code"]["coding"][0]["code"] = json!("394582007x"),
            "Bundle.entry[0].resource.code.coding[0].code",
            "unknown code \"394582007x\"",
        ),
        (
            // Allergy and immunology exists, but not this SNOMED concept.
            |b| b["entry"][0]["resource"]["code"]["coding"][0]["code"] = json!("22298006"),
            "Bundle.entry[0].resource.code.coding[0].code",
            "SNOMED CT clinical specialty",
        ),
        (
            |b| {
                b["entry"][0]["resource"]["code"] = json!({"coding": [
                    {"system": "http://snomed.info/sct", "code": "394579002"},
                    {"system": SPECIALTY_SYSTEM, "code": "oncology"}
                ]})
            },
            "Bundle.entry[0].resource.code.coding[1]",
            "oncology",
        ),
        (
            |b| b["entry"][0]["resource"]["code"] = json!({"text": "cardiology"}),
            "Bundle.entry[0].resource.code.coding",
            "missing",
        ),
        (
            |b| b["entry"][0]["resource"]["priority"] = json!("high"),
            "Bundle.entry[0].resource.priority",
            "routine, urgent, asap or stat",
        ),
        (
            |b| b["entry"][0]["resource"]["priority"] = json!(3),
            "Bundle.entry[0].resource.priority",
            "expected a string",
        ),
        (
            |b| b["entry"][0]["resource"]["status"] = json!("revoked"),
            "Bundle.entry[0].resource.status",
            "active",
        ),
        (
            |b| {
                b["entry"][0]["resource"]
                    .as_object_mut()
                    .unwrap()
                    .remove("intent");
            },
            "Bundle.entry[0].resource.intent",
            "missing",
        ),
        (
            |b| {
                b["entry"][0]["resource"]
                    .as_object_mut()
                    .unwrap()
                    .remove("requester");
            },
            "Bundle.entry[0].resource.requester",
            "physician",
        ),
        (
            |b| b["entry"][0]["resource"]["requester"] = json!({"reference": "Organization/fcc"}),
            "Bundle.entry[0].resource.requester",
            "physician",
        ),
        (
            |b| b["entry"][3]["resource"]["identifier"][1]["value"] = json!("not-a-peer-id"),
            "Bundle.entry[3].resource.identifier[1].value",
            "not an organization id",
        ),
        (
            |b| {
                b["entry"][3]["resource"]["identifier"]
                    .as_array_mut()
                    .unwrap()
                    .remove(1);
            },
            "Bundle.entry[0].resource.performer",
            ORG_SYSTEM,
        ),
        (
            |b| b["entry"][4]["resource"]["status"] = json!("rejected"),
            "Bundle.entry[4].resource.status",
            "only an active consent",
        ),
        (
            |b| b["entry"][4]["resource"]["provision"]["type"] = json!("deny"),
            "Bundle.entry[4].resource.provision.type",
            "denied",
        ),
        (
            |b| {
                b["entry"][4]["resource"]
                    .as_object_mut()
                    .unwrap()
                    .remove("dateTime");
            },
            "Bundle.entry[4].resource.dateTime",
            "missing",
        ),
        (
            |b| b["entry"][4]["resource"]["dateTime"] = json!("28.05.2026"),
            "Bundle.entry[4].resource.dateTime",
            "not a FHIR dateTime",
        ),
        (
            |b| {
                b["entry"][4]["resource"]["extension"] =
                    json!([{"url": CONSENT_METHOD_EXTENSION, "valueCode": "telepathic"}])
            },
            "Bundle.entry[4].resource.extension[0].valueCode",
            "written, electronic or oral",
        ),
        (
            |b| {
                b["entry"][4]["resource"]["extension"] =
                    json!([{"url": OVERRIDE_REASON_EXTENSION, "valueString": "unconscious"}]);
                b["entry"][0]["resource"]["priority"] = json!("routine");
            },
            "Bundle.entry[0].resource.priority",
            "emergency override",
        ),
        (
            |b| {
                let second = b["entry"][0].clone();
                b["entry"].as_array_mut().unwrap().push(second);
            },
            "Bundle.entry[5].resource",
            "second ServiceRequest",
        ),
        (
            |b| {
                b["entry"].as_array_mut().unwrap().remove(0);
            },
            "Bundle.entry",
            "ServiceRequest",
        ),
        (
            |b| b["entry"][2]["resource"] = json!("Patient"),
            "Bundle.entry[2].resource",
            "expected an object",
        ),
    ];
    for (mutate, path, message) in cases {
        let mut bundle = his_bundle(&target);
        mutate(&mut bundle);
        let e = import_error(&bundle);
        assert_eq!(e.path(), *path, "{e}");
        let text = e.to_string();
        assert!(text.starts_with(path), "{text}");
        assert!(
            text.contains(message),
            "{text:?} does not mention {message:?}"
        );
    }
}

#[test]
fn import_refuses_non_bundles_and_garbage_without_panicking() {
    for garbage in [
        json!(null),
        json!(42),
        json!("Bundle"),
        json!([{"resourceType": "Bundle"}]),
        json!({}),
        json!({"resourceType": 7}),
        json!({"resourceType": "Patient", "id": "p"}),
        json!({"resourceType": "ServiceRequest", "status": "active"}),
    ] {
        assert!(
            matches!(import_error(&garbage), FhirError::NotABundle { .. }),
            "{garbage}"
        );
    }
    for text in ["", "{", "{\"resourceType\": \"Bundle\",}", "\u{0}", "[1, 2"] {
        assert!(matches!(
            import_service_request_json(text),
            Err(FhirError::NotJson(_))
        ));
    }
    assert!(matches!(
        import_error(&json!({"resourceType": "Bundle", "entry": 5})),
        FhirError::Invalid { .. }
    ));
    assert!(matches!(
        import_error(&json!({"resourceType": "Bundle", "type": "collection"})),
        FhirError::Missing { .. }
    ));
    // Every element of a valid request replaced by every kind of wrong
    // value: an error or a result, never a panic.
    let bundle = his_bundle(&target());
    let mut pointers = Vec::new();
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, c)| {
                walk(c, format!("{at}/{k}"), out);
            }),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| {
                walk(c, format!("{at}/{i}"), out);
            }),
            _ => {}
        }
        out.push(at);
    }
    walk(&bundle, String::new(), &mut pointers);
    let replacements = [
        json!(null),
        json!(-1),
        json!(""),
        json!("#"),
        json!("urn:uuid:0"),
        json!([]),
        json!([null]),
        json!({}),
        json!({"reference": "#x"}),
    ];
    let mut outcomes = 0;
    for pointer in &pointers {
        for replacement in &replacements {
            let mut mutated = bundle.clone();
            match mutated.pointer_mut(pointer) {
                Some(slot) => *slot = replacement.clone(),
                None => continue,
            }
            let _ = import_service_request(&mutated);
            outcomes += 1;
        }
    }
    assert!(outcomes > 500, "{outcomes}");
}

// -- Round trip, mapping and the patient's name ---------------------------------

/// One consultation's request as the generator draws it.
#[derive(Debug, Clone)]
struct Drawn {
    specialty: Specialty,
    urgency: Urgency,
    physician: String,
    consent: Consent,
    extract: CaseExtract,
    files: Vec<(FileInfo, Vec<u8>)>,
}

/// A FHIR `string` as an export leaves it: not blank, no surrounding
/// whitespace. Latin and Cyrillic, several lines.
fn fhir_text() -> impl proptest::strategy::Strategy<Value = String> {
    "[A-Za-zА-Яа-я0-9][A-Za-zА-Яа-я0-9 ,.:;%/()?\n-]{0,120}[A-Za-zА-Яа-я0-9.?)]"
}

fn optional_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![1 => Just(String::new()), 4 => fhir_text()]
}

fn drawn() -> impl proptest::strategy::Strategy<Value = Drawn> {
    use proptest::prelude::*;
    let name = "(Dr\\. |Prof\\. )?[A-ZА-Я][a-zа-я]{1,10}( [A-ZА-Я][a-zа-я]{1,12}){0,2}";
    let method = prop_oneof![
        Just(ConsentMethod::Written),
        Just(ConsentMethod::Electronic),
        name.prop_map(|witness| ConsentMethod::Oral { witness }),
    ];
    let giver = prop_oneof![Just(Giver::Patient), Just(Giver::Representative)];
    // Any millisecond from 1970 to the end of year 9999 (FHIR's range).
    let given = (
        giver,
        0u64..253_402_300_799_999,
        method,
        proptest::option::of(any::<[u8; 32]>()),
    );
    let urgency = prop_oneof![
        Just(Urgency::Planned),
        Just(Urgency::Urgent),
        Just(Urgency::Emergency)
    ];
    (
        proptest::sample::select(Specialty::ALL.to_vec()),
        urgency,
        name,
        given,
        proptest::option::of(fhir_text()),
        optional_text(),
        optional_text(),
        proptest::collection::vec(case_file(), 0..3),
    )
        .prop_map(
            |(specialty, urgency, physician, given, override_reason, summary, questions, files)| {
                let (giver, ms, method, document) = given;
                let consent = match override_reason {
                    Some(reason) if urgency == Urgency::Emergency => {
                        Consent::EmergencyOverride { reason }
                    }
                    _ => Consent::Given {
                        by: consent_given_by(&giver, &physician),
                        at: Timestamp::from_unix_millis(ms),
                        method,
                        document,
                    },
                };
                Drawn {
                    specialty,
                    urgency,
                    physician,
                    consent,
                    extract: CaseExtract { summary, questions },
                    files,
                }
            },
        )
}

/// A file of a case extract: a one-line title or none, a media type, bytes.
fn case_file() -> impl proptest::strategy::Strategy<Value = (FileInfo, Vec<u8>)> {
    use proptest::prelude::*;
    let content_type = proptest::sample::select(vec![
        "application/pdf",
        "application/dicom",
        "image/jpeg",
        "application/octet-stream",
    ]);
    (
        proptest::option::of("[A-Za-zА-Яа-я0-9][A-Za-zА-Яа-я0-9 .()-]{0,40}[A-Za-z0-9)]"),
        content_type,
        proptest::collection::vec(any::<u8>(), 1..512),
    )
        .prop_map(|(title, content_type, data)| {
            let info = FileInfo {
                title,
                content_type: content_type.into(),
            };
            (info, data)
        })
}

/// The export of a newly opened consultation with `drawn`'s content.
fn export_drawn(district: &TestOrg, consultant: OrgId, drawn: &Drawn) -> Value {
    let request = ConsultationRequest {
        id: CID,
        requester: district.id(),
        consultant,
        specialty: drawn.specialty,
        urgency: drawn.urgency,
        created: NOW,
        consent: drawn.consent.clone(),
        physician: drawn.physician.clone(),
        escalated_from: None,
    };
    let signed = workflow::request(&district.identity, request).expect("a valid request");
    let consultation = Consultation::open(&signed).expect("opens");
    let files: Vec<ExportedFile> = drawn
        .files
        .iter()
        .enumerate()
        .map(|(i, (info, data))| ExportedFile {
            info: info.clone(),
            // Standing in for the sealed blob: the same bytes give the same reference.
            blob: BlobRef {
                hash: *blake3::hash(data).as_bytes(),
                size: konsilium_protocol::seal::sealed_len(data.len()) as u64,
            },
            url: format!("/consultations/{CID}/files/{i}"),
            data: Some(data.clone()),
        })
        .collect();
    export_bundle(&ConsultationRecord {
        consultation: &consultation,
        extract: &drawn.extract,
        requester_name: "Kirillov central district hospital",
        consultant_name: "Federal center of cardiology",
        deadline: None,
        conclusion: None,
        journal: &[],
        files: &files,
    })
}

#[test]
fn export_import_export_is_stable() {
    use proptest::test_runner::{Config, TestRunner};
    let mut fed = TestFederation::new("fhir-roundtrip");
    let district = fed.org(1, OrgLevel::District, "RU-VLG", &[]);
    let federal = fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&drawn(), |drawn| {
            let first = export_drawn(&district, federal.id(), &drawn);
            assert_valid(&first);
            let imported = import_service_request(&first)
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            // Each part lands where it came from.
            proptest::prop_assert_eq!(imported.specialty, drawn.specialty);
            proptest::prop_assert_eq!(imported.urgency, drawn.urgency);
            proptest::prop_assert_eq!(&imported.physician, &drawn.physician);
            proptest::prop_assert_eq!(&imported.case_summary, &drawn.extract.summary);
            proptest::prop_assert_eq!(&imported.questions, &drawn.extract.questions);
            proptest::prop_assert_eq!(imported.consent.as_ref(), Some(&drawn.consent));
            proptest::prop_assert_eq!(imported.target, Some(federal.id()));
            let files: Vec<(FileInfo, Vec<u8>)> = imported
                .attachments
                .iter()
                .map(|a| {
                    let info = FileInfo {
                        title: a.title.clone(),
                        content_type: a.content_type.clone(),
                    };
                    (info, a.data.clone())
                })
                .collect();
            proptest::prop_assert_eq!(&files, &drawn.files);
            // And what the import opens exports to the same Bundle.
            let again = Drawn {
                specialty: imported.specialty,
                urgency: imported.urgency,
                physician: imported.physician.clone(),
                consent: imported.consent.clone().expect("consent"),
                extract: CaseExtract {
                    summary: imported.case_summary.clone(),
                    questions: imported.questions.clone(),
                },
                files,
            };
            let target = imported.target.expect("a performer");
            let second = export_drawn(&district, target, &again);
            proptest::prop_assert_eq!(&first, &second);
            Ok(())
        })
        .unwrap();
}

#[test]
fn import_reads_reason_questions_and_documents_where_fhir_puts_them() {
    let target = target();
    let pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n".to_vec();
    let mut bundle = his_bundle(&target);
    bundle["entry"][0]["resource"]["supportingInfo"] = json!([
        {"reference": "Consent/consent-7"},
        {"reference": "DocumentReference/echo", "type": "DocumentReference"},
        {"reference": "Binary/ecg"},
        {"reference": "Observation/bp"}
    ]);
    bundle["entry"][0]["resource"]["reasonReference"] =
        json!([{"reference": "Condition/hf"}, {"display": "Syncope"}]);
    let entries = bundle["entry"].as_array_mut().unwrap();
    entries.push(json!({
        "fullUrl": "https://his.kirillov-crh.example/fhir/DocumentReference/echo",
        "resource": {
            "resourceType": "DocumentReference",
            "id": "echo",
            "status": "current",
            "description": "Echocardiography report",
            "content": [{"attachment": {
                "contentType": "application/pdf",
                "data": BASE64.encode(&pdf),
            }}]
        }
    }));
    entries.push(json!({
        "fullUrl": "https://his.kirillov-crh.example/fhir/Binary/ecg",
        "resource": {"resourceType": "Binary", "id": "ecg",
                     "contentType": "application/octet-stream", "data": BASE64.encode([1u8, 2, 3])}
    }));
    entries.push(json!({
        "fullUrl": "https://his.kirillov-crh.example/fhir/Condition/hf",
        "resource": {"resourceType": "Condition", "id": "hf",
                     "code": {"text": "Chronic heart failure"},
                     "subject": {"reference": "Patient/p-7"}}
    }));
    entries.push(json!({
        "fullUrl": "https://his.kirillov-crh.example/fhir/Observation/bp",
        "resource": {"resourceType": "Observation", "id": "bp", "status": "final",
                     "code": {"text": "Blood pressure"}}
    }));
    assert_valid(&bundle);
    let imported = import_service_request(&bundle).expect("imports");
    assert_eq!(
        imported.case_summary,
        "Heart failure NYHA III, EF 35% on echo\nAtrial fibrillation\n\
         Chronic heart failure\nSyncope"
    );
    assert_eq!(
        imported.questions,
        "Is CRT-D indicated?\n\nWhich anticoagulation before the procedure?"
    );
    assert_eq!(
        imported.attachments,
        vec![
            ImportedAttachment {
                title: Some("Echocardiography report".into()),
                content_type: "application/pdf".into(),
                data: pdf,
            },
            ImportedAttachment {
                title: None,
                content_type: "application/octet-stream".into(),
                data: vec![1, 2, 3],
            },
        ]
    );

    // The explicit extension wins over note.
    bundle["entry"][0]["resource"]["extension"] =
        json!([{"url": QUESTIONS_EXTENSION, "valueString": "CRT-D: yes or no?"}]);
    assert_eq!(
        import_service_request(&bundle).unwrap().questions,
        "CRT-D: yes or no?"
    );

    // The specialty may come from performerType alone.
    let sr = bundle["entry"][0]["resource"].as_object_mut().unwrap();
    sr.remove("code");
    sr.insert(
        "performerType".into(),
        json!({"coding": [{"system": SNOMED, "code": "394579002"}]}),
    );
    assert_eq!(
        import_service_request(&bundle).unwrap().specialty,
        Specialty::Cardiology
    );

    // A document whose bytes are not in the Bundle cannot be sealed.
    bundle["entry"][5]["resource"]["content"][0]["attachment"] =
        json!({"contentType": "application/pdf", "url": "https://his.example/docs/1.pdf"});
    let e = import_error(&bundle);
    assert_eq!(
        e.path(),
        "Bundle.entry[5].resource.content[0].attachment.data",
        "{e}"
    );
    bundle["entry"][5]["resource"]["content"][0]["attachment"]["data"] = json!("not base64!");
    let e = import_error(&bundle);
    assert!(
        matches!(&e, FhirError::Invalid { path, .. } if path.ends_with("attachment.data")),
        "{e}"
    );
    bundle["entry"][0]["resource"]["supportingInfo"][1] =
        json!({"reference": "DocumentReference/missing", "type": "DocumentReference"});
    let e = import_error(&bundle);
    assert_eq!(
        e.path(),
        "Bundle.entry[0].resource.supportingInfo[1].reference",
        "{e}"
    );
}

#[test]
fn a_consent_given_by_the_patient_records_no_name() {
    let target = target();
    let mut bundle = his_bundle(&target);
    // The Patient named by reference, by display, and by contained resource.
    for performer in [
        json!({"reference": "Patient/p-7"}),
        json!({"reference": "Patient/p-7", "display": "Ivan Petrovich Sidorov"}),
        json!({"type": "Patient", "display": "Ivan Petrovich Sidorov"}),
        json!({"display": "Ivan Petrovich Sidorov"}),
        Value::Null,
    ] {
        // Null: no performer at all (it is optional in R4).
        bundle["entry"][4]["resource"]["performer"] = json!([performer]);
        if performer.is_null() {
            let consent = bundle["entry"][4]["resource"].as_object_mut().unwrap();
            consent.remove("performer");
        }
        let imported = import_service_request(&bundle).expect("imports");
        let Some(Consent::Given { by, .. }) = &imported.consent else {
            panic!("consent given")
        };
        assert_eq!(by, "the patient; recorded by Dr. Anna Ivanova");
        assert!(!format!("{imported:?}").contains("Sidorov"), "{imported:?}");
    }
    // A representative is recorded as one, and exported as one.
    bundle["entry"][4]["resource"]["performer"] =
        json!([{"type": "RelatedPerson", "display": "Maria Sidorova (daughter)"}]);
    let imported = import_service_request(&bundle).expect("imports");
    let consent = imported.consent.clone().unwrap();
    let Consent::Given { by, .. } = &consent else {
        panic!("consent given")
    };
    assert_eq!(
        by,
        "the patient's legal representative; recorded by Dr. Anna Ivanova"
    );
    let case = open(Urgency::Urgent, consent.clone());
    let exported = case.export();
    assert_valid(&exported);
    assert_eq!(
        one(&exported, "Consent")["performer"][0]["type"],
        "RelatedPerson"
    );
    assert_eq!(
        import_service_request(&exported).unwrap().consent,
        Some(consent)
    );

    // The Patient is never taken for the requesting physician.
    bundle["entry"][0]["resource"]["requester"] =
        json!({"reference": "Patient/p-7", "display": "Dr. Who"});
    let e = import_error(&bundle);
    assert_eq!(e.path(), "Bundle.entry[0].resource.requester", "{e}");
    assert!(e.to_string().contains("Patient"), "{e}");
}

#[test]
fn who_asked_and_who_answered_are_practitioners_with_roles() {
    let case = full_case();
    let bundle = case.export();
    assert_valid(&bundle);
    let resources: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let by_url: HashMap<String, &Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["fullUrl"].as_str().unwrap().to_owned(), &e["resource"]))
        .collect();
    let roles: Vec<(String, String, String)> = resources
        .iter()
        .filter(|r| r["resourceType"] == "PractitionerRole")
        .map(|r| {
            let practitioner = by_url[r["practitioner"]["reference"].as_str().unwrap()];
            let org = by_url[r["organization"]["reference"].as_str().unwrap()];
            (
                practitioner["name"][0]["text"].as_str().unwrap().to_owned(),
                r["code"][0]["coding"][0]["code"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                org["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        (
            "Dr. Anna Ivanova",
            "physician",
            "Kirillov central district hospital",
        ),
        ("Prof. Petrov", "consultant", "Federal center of cardiology"),
        (
            "coordinator Orlova",
            "coordinator",
            "Federal center of cardiology",
        ),
    ] {
        assert!(
            roles
                .iter()
                .any(|(n, r, o)| (n.as_str(), r.as_str(), o.as_str()) == want),
            "{want:?} in {roles:?}"
        );
    }
    // The conclusion names its authors by their PractitionerRole.
    let report = one(&bundle, "DiagnosticReport");
    let interpreter = report["resultsInterpreter"][0]["reference"]
        .as_str()
        .unwrap();
    assert_eq!(by_url[interpreter]["resourceType"], "PractitionerRole");
    // Every signed step of the consulting side names its signer's PractitionerRole.
    for provenance in resources
        .iter()
        .filter(|r| r["resourceType"] == "Provenance")
    {
        let who = &provenance["agent"][0]["who"];
        if let Some(reference) = who["reference"].as_str()
            && who["type"] == "PractitionerRole"
        {
            assert_eq!(by_url[reference]["resourceType"], "PractitionerRole");
        }
    }
    assert!(
        resources.iter().any(|r| r["resourceType"] == "Provenance"
            && r["agent"][0]["who"]["type"] == "PractitionerRole"
            && r["agent"][0]["who"]["display"] == "Prof. Petrov"),
        "the consultant's steps name their PractitionerRole"
    );
    // The requester reads back through PractitionerRole → Practitioner, even
    // without the display.
    let mut stripped = open(Urgency::Urgent, written_consent()).export();
    for entry in stripped["entry"].as_array_mut().unwrap() {
        let r = &mut entry["resource"];
        if r["resourceType"] == "ServiceRequest" {
            r["requester"].as_object_mut().unwrap().remove("display");
        }
        if r["resourceType"] == "PractitionerRole" {
            r["practitioner"].as_object_mut().unwrap().remove("display");
        }
    }
    assert_eq!(
        import_service_request(&stripped).unwrap().physician,
        "Dr. Anna Ivanova"
    );
}

#[test]
fn the_fingerprint_is_the_request_content_not_its_wrapping() {
    let target = target();
    let bundle = his_bundle(&target);
    let first = import_service_request(&bundle).unwrap();
    let mut rewrapped = bundle.clone();
    rewrapped["id"] = json!("another-bundle-id");
    rewrapped["timestamp"] = json!("2026-05-28T10:00:00+03:00");
    rewrapped["entry"].as_array_mut().unwrap().swap(1, 3);
    assert_eq!(
        import_service_request(&rewrapped).unwrap().fingerprint(),
        first.fingerprint()
    );
    let mut changed = bundle.clone();
    changed["entry"][0]["resource"]["note"][0]["text"] = json!("Is CRT-P enough?");
    let changed = import_service_request(&changed).unwrap();
    assert_eq!(changed.identifier, first.identifier);
    assert_ne!(changed.fingerprint(), first.fingerprint());
}
