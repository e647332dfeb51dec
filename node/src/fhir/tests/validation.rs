//! The FHIR R4 validator every export is checked against: the official
//! JSON schema, its overlay, and the invariants JSON schema cannot express.

use super::*;

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
pub(super) fn r4_errors(bundle: &Value) -> Vec<String> {
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
pub(super) fn assert_valid(bundle: &Value) {
    let errors = r4_errors(bundle);
    assert!(
        errors.is_empty(),
        "not valid FHIR R4:\n{}",
        errors.join("\n")
    );
}
