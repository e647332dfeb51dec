//! The Bundle as a list of resources (contained ones too), with references
//! resolved inside it and the path of each element for errors.

use super::*;

/// One resource of the Bundle (or one contained in another).
#[derive(Clone)]
pub(super) struct Res<'v> {
    pub(super) path: String,
    pub(super) rtype: &'v str,
    pub(super) obj: &'v Map<String, Value>,
    full_url: Option<&'v str>,
    /// The Bundle entry's resource that holds this one (itself, when it is
    /// not contained) and its path: `#id` references resolve there.
    root: &'v Map<String, Value>,
    root_path: String,
}

impl<'v> Res<'v> {
    pub(super) fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    pub(super) fn str(&self, key: &str) -> Result<Option<&'v str>, FhirError> {
        opt_str(self.obj, key, &self.path)
    }

    pub(super) fn required_str(&self, key: &str, what: &'static str) -> Result<&'v str, FhirError> {
        self.str(key)?.ok_or_else(|| FhirError::Missing {
            path: self.at(key),
            what,
        })
    }

    pub(super) fn array(&self, key: &str) -> Result<&'v [Value], FhirError> {
        opt_array(self.obj, key, &self.path)
    }

    pub(super) fn id(&self) -> Option<&'v str> {
        self.obj.get("id").and_then(Value::as_str)
    }
}

pub(super) struct Doc<'v> {
    pub(super) resources: Vec<Res<'v>>,
}

impl<'v> Doc<'v> {
    pub(super) fn parse(bundle: &'v Value) -> Result<Self, FhirError> {
        let not_bundle = |found: String| FhirError::NotABundle {
            path: "Bundle".into(),
            found,
        };
        let obj = bundle
            .as_object()
            .ok_or_else(|| not_bundle(json_kind(bundle).into()))?;
        match obj.get("resourceType") {
            Some(Value::String(t)) if t == "Bundle" => {}
            Some(Value::String(t)) => return Err(not_bundle(format!("a {t} resource"))),
            Some(other) => return Err(not_bundle(format!("resourceType {}", json_kind(other)))),
            None => return Err(not_bundle("an object without resourceType".into())),
        }
        let mut resources = Vec::new();
        for (i, entry) in opt_array(obj, "entry", "Bundle")?.iter().enumerate() {
            let path = format!("Bundle.entry[{i}]");
            let entry = as_object(entry, &path)?;
            let full_url = opt_str(entry, "fullUrl", &path)?;
            let Some(resource) = opt_obj(entry, "resource", &path)? else {
                continue;
            };
            let rpath = format!("{path}.resource");
            let rtype =
                opt_str(resource, "resourceType", &rpath)?.ok_or_else(|| FhirError::Missing {
                    path: format!("{rpath}.resourceType"),
                    what: "the resource type",
                })?;
            resources.push(Res {
                path: rpath.clone(),
                rtype,
                obj: resource,
                full_url,
                root: resource,
                root_path: rpath,
            });
        }
        Ok(Self { resources })
    }

    /// Resolves a literal reference: a contained `#id`, a `fullUrl`, or
    /// `Type/id` (relative, or the tail of an absolute URL).
    pub(super) fn resolve(&self, reference: &str, container: &Res<'v>) -> Option<Res<'v>> {
        if let Some(local) = reference.strip_prefix('#') {
            let contained = container.root.get("contained")?.as_array()?;
            return contained.iter().enumerate().find_map(|(k, c)| {
                let obj = c.as_object()?;
                (obj.get("id")?.as_str()? == local).then(|| Res {
                    path: format!("{}.contained[{k}]", container.root_path),
                    rtype: obj
                        .get("resourceType")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    obj,
                    full_url: None,
                    root: container.root,
                    root_path: container.root_path.clone(),
                })
            });
        }
        let found = self.resources.iter().find(|r| {
            if r.full_url == Some(reference) {
                return true;
            }
            let Some(id) = r.id() else { return false };
            let relative = format!("{}/{id}", r.rtype);
            reference == relative || reference.ends_with(&format!("/{relative}"))
        })?;
        Some(found.clone())
    }
}
