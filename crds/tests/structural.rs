//! The generated schemas obey the API server's rules for CRD schemas (apiextensions.k8s.io/v1):
//! structural, no references, known formats, defaults valid against their schema.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use serde_json::Value;

const KNOWN_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
    "int32",
    "int64",
    "float",
    "double",
];
const TYPES: &[&str] = &["object", "array", "string", "integer", "number", "boolean"];
const FORBIDDEN: &[&str] = &[
    "$ref",
    "definitions",
    "$schema",
    "id",
    "additionalItems",
    "patternProperties",
    "dependencies",
];

fn schemas() -> Vec<(String, Value)> {
    aipam_crds::all_crds()
        .into_iter()
        .map(|c| {
            let schema = c.spec.versions[0]
                .schema
                .clone()
                .and_then(|s| s.open_api_v3_schema)
                .expect("every CRD has a schema");
            (
                c.spec.names.kind.clone(),
                serde_json::to_value(schema).unwrap(),
            )
        })
        .collect()
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => false,
    }
}

/// Checks `value` (a default or an enum member) against `node`; returns what is wrong.
fn validate_value(node: &Value, value: &Value) -> Option<String> {
    if let Some(ty) = node.get("type").and_then(Value::as_str) {
        if !type_matches(ty, value) {
            return Some(format!("{value} is not of type {ty}"));
        }
    }
    if let Some(en) = node.get("enum").and_then(Value::as_array) {
        if !en.contains(value) {
            return Some(format!("{value} is not one of the enum {en:?}"));
        }
    }
    if let (Some(min), Some(x)) = (node.get("minimum").and_then(Value::as_f64), value.as_f64()) {
        if x < min {
            return Some(format!("{value} < minimum {min}"));
        }
    }
    if let (Some(max), Some(x)) = (node.get("maximum").and_then(Value::as_f64), value.as_f64()) {
        if x > max {
            return Some(format!("{value} > maximum {max}"));
        }
    }
    None
}

fn check(node: &Value, path: &str, in_junctor: bool, errs: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        errs.push(format!("{path}: schema node is not an object"));
        return;
    };
    for key in FORBIDDEN {
        if obj.contains_key(*key) {
            errs.push(format!("{path}: `{key}` is not allowed in a CRD schema"));
        }
    }
    if obj.get("uniqueItems") == Some(&Value::Bool(true)) {
        errs.push(format!("{path}: uniqueItems: true is not allowed"));
    }
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields");
    if let Some(p) = preserve {
        if p != &Value::Bool(true) {
            errs.push(format!(
                "{path}: x-kubernetes-preserve-unknown-fields must be true"
            ));
        }
    }
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let ty = obj.get("type").and_then(Value::as_str);
    if in_junctor {
        for key in [
            "type",
            "description",
            "default",
            "nullable",
            "additionalProperties",
        ] {
            if obj.contains_key(key) {
                errs.push(format!(
                    "{path}: `{key}` inside allOf/anyOf/oneOf/not is not structural"
                ));
            }
        }
    } else if ty.is_none() && !int_or_string && preserve.is_none() {
        errs.push(format!("{path}: no `type` (structural schemas need one)"));
    }
    if let Some(t) = obj.get("type") {
        match t.as_str() {
            Some(t) if TYPES.contains(&t) => {}
            _ => errs.push(format!("{path}: invalid type {t}")),
        }
    }
    if obj.contains_key("nullable") && ty.is_none() {
        errs.push(format!("{path}: nullable without type"));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        errs.push(format!("{path}: both properties and additionalProperties"));
    }
    if let Some(f) = obj.get("format").and_then(Value::as_str) {
        if !KNOWN_FORMATS.contains(&f) {
            errs.push(format!("{path}: format {f:?} is not known to Kubernetes"));
        }
    }
    if let Some(en) = obj.get("enum") {
        match en.as_array() {
            Some(members) if !members.is_empty() => {
                if let Some(t) = ty {
                    for m in members {
                        if !type_matches(t, m) {
                            errs.push(format!("{path}: enum member {m} is not of type {t}"));
                        }
                    }
                }
            }
            _ => errs.push(format!("{path}: enum must be a non-empty list")),
        }
    }
    if let Some(d) = obj.get("default") {
        if let Some(why) = validate_value(node, d) {
            errs.push(format!("{path}: default invalid: {why}"));
        }
    }
    if let Some(req) = obj.get("required") {
        let props = obj.get("properties").and_then(Value::as_object);
        for r in req.as_array().into_iter().flatten() {
            let name = r.as_str().unwrap_or_default();
            if !props.is_some_and(|p| p.contains_key(name)) {
                errs.push(format!("{path}: required {name:?} is not a property"));
            }
        }
    }
    if let Some(lt) = obj.get("x-kubernetes-list-type").and_then(Value::as_str) {
        if !["atomic", "set", "map"].contains(&lt) || ty != Some("array") {
            errs.push(format!("{path}: bad x-kubernetes-list-type {lt:?}"));
        }
    }
    if let Some(mt) = obj.get("x-kubernetes-map-type").and_then(Value::as_str) {
        if !["atomic", "granular"].contains(&mt) || ty != Some("object") {
            errs.push(format!("{path}: bad x-kubernetes-map-type {mt:?}"));
        }
    }
    for rule in obj
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if rule
            .get("rule")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            errs.push(format!(
                "{path}: x-kubernetes-validations entry without a rule"
            ));
        }
    }
    if ty == Some("array") && !obj.contains_key("items") {
        errs.push(format!("{path}: array without items"));
    }
    if let Some(items) = obj.get("items") {
        if items.is_array() {
            errs.push(format!("{path}: items must be a single schema"));
        } else {
            check(items, &format!("{path}.items"), in_junctor, errs);
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        if ty != Some("object") && !in_junctor {
            errs.push(format!("{path}: properties on a non-object"));
        }
        for (k, v) in props {
            check(v, &format!("{path}.properties.{k}"), in_junctor, errs);
        }
    }
    match obj.get("additionalProperties") {
        Some(Value::Bool(false)) => errs.push(format!(
            "{path}: additionalProperties: false is not allowed"
        )),
        Some(v @ Value::Object(_)) => {
            check(v, &format!("{path}.additionalProperties"), in_junctor, errs)
        }
        _ => {}
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (i, sub) in obj
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            check(sub, &format!("{path}.{junctor}[{i}]"), true, errs);
        }
    }
    if let Some(not) = obj.get("not") {
        check(not, &format!("{path}.not"), true, errs);
    }
}

fn check_root(kind: &str, root: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let path = format!("{kind}.openAPIV3Schema");
    if root.get("type").and_then(Value::as_str) != Some("object") {
        errs.push(format!("{path}: root type must be object"));
    }
    if let Some(meta) = root.pointer("/properties/metadata") {
        if meta.get("type").and_then(Value::as_str) != Some("object") {
            errs.push(format!("{path}.properties.metadata: type must be object"));
        }
        if let Some(props) = meta.get("properties").and_then(Value::as_object) {
            for k in props.keys() {
                if k != "name" && k != "generateName" {
                    errs.push(format!(
                        "{path}.properties.metadata: only name and generateName may be specified, not {k}"
                    ));
                }
            }
        }
        for key in [
            "default",
            "additionalProperties",
            "x-kubernetes-validations",
        ] {
            if meta.get(key).is_some() {
                errs.push(format!("{path}.properties.metadata: `{key}` not allowed"));
            }
        }
    }
    check(root, &path, false, &mut errs);
    errs
}

#[test]
fn schemas_are_structural_and_valid() {
    let mut all = Vec::new();
    for (kind, root) in schemas() {
        all.extend(check_root(&kind, &root));
    }
    assert!(
        all.is_empty(),
        "CRD schemas rejected:\n  {}",
        all.join("\n  ")
    );
}

#[test]
fn checker_catches_bad_schemas() {
    let bad = serde_json::json!({
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            "a": {"description": "no type"},
            "b": {"$ref": "#/definitions/X", "type": "object"},
            "c": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
            "d": {"nullable": true},
            "e": {"type": "integer", "enum": [4, 6], "default": 5},
            "f": {"type": "string", "format": "ip"},
            "g": {"type": "object", "anyOf": [{"type": "string"}]},
            "h": {"type": "array"}
        }
    });
    let errs = check_root("Bad", &bad);
    for needle in [
        "metadata: only name and generateName",
        "properties.a: no `type`",
        "properties.b: `$ref`",
        "properties.c: both properties and additionalProperties",
        "properties.d: nullable without type",
        "properties.e: default invalid",
        "properties.f: format \"ip\"",
        "properties.g.anyOf[0]: `type` inside",
        "properties.h: array without items",
    ] {
        assert!(
            errs.iter().any(|e| e.contains(needle)),
            "checker missed {needle:?}; got {errs:#?}"
        );
    }
}

#[test]
fn spiderpool_validations_are_present() {
    let schemas = schemas();
    let get = |kind: &str, ptr: &str| -> Value {
        let root = &schemas.iter().find(|(k, _)| k == kind).unwrap().1;
        root.pointer(ptr)
            .unwrap_or_else(|| panic!("{kind}: nothing at {ptr}"))
            .clone()
    };
    for kind in ["SpiderIPPool", "SpiderSubnet", "SpiderReservedIP"] {
        assert_eq!(
            get(kind, "/properties/spec/properties/ipVersion/enum"),
            serde_json::json!([4, 6])
        );
    }
    for kind in ["SpiderIPPool", "SpiderSubnet"] {
        assert_eq!(
            get(kind, "/properties/spec/required"),
            serde_json::json!(["subnet"])
        );
        let vlan = get(kind, "/properties/spec/properties/vlan");
        assert_eq!(vlan["minimum"].as_f64(), Some(0.0));
        assert_eq!(vlan["maximum"].as_f64(), Some(4094.0));
        assert_eq!(
            get(kind, "/properties/status/properties/totalIPCount/minimum").as_f64(),
            Some(0.0)
        );
        assert_eq!(
            get(kind, "/properties/spec/properties/routes/items/required"),
            serde_json::json!(["dst", "gw"])
        );
    }
    assert_eq!(
        get(
            "SpiderIPPool",
            "/properties/spec/properties/default/default"
        ),
        Value::Bool(false)
    );
    assert_eq!(
        get(
            "SpiderIPPool",
            "/properties/spec/properties/disable/default"
        ),
        Value::Bool(false)
    );
    assert_eq!(
        get(
            "SpiderIPPool",
            "/properties/spec/properties/podAffinity/x-kubernetes-map-type"
        ),
        Value::String("atomic".into())
    );
    // SpiderEndpoint: no spec at all, status with Spiderpool's required fields.
    let ep = &schemas
        .iter()
        .find(|(k, _)| k == "SpiderEndpoint")
        .unwrap()
        .1;
    assert!(ep.pointer("/properties/spec").is_none());
    assert_eq!(
        get("SpiderEndpoint", "/properties/status/required"),
        serde_json::json!(["current", "ownerControllerName", "ownerControllerType"])
    );
    assert_eq!(
        get(
            "SpiderEndpoint",
            "/properties/status/properties/current/required"
        ),
        serde_json::json!(["ips", "node", "uid"])
    );
    assert_eq!(
        get(
            "SpiderEndpoint",
            "/properties/status/properties/current/properties/ips/items/properties/vlan/default"
        ),
        serde_json::json!(0)
    );
    // SpiderIPClaim.
    assert_eq!(
        get("SpiderIPClaim", "/properties/spec/required"),
        serde_json::json!([
            "address",
            "interface",
            "ipVersion",
            "namespace",
            "pool",
            "reservation"
        ])
    );
    // Written once: no status, no binding fields.
    let claim_root = &schemas
        .iter()
        .find(|(k, _)| k == "SpiderIPClaim")
        .unwrap()
        .1;
    assert!(claim_root.pointer("/properties/status").is_none());
    assert!(claim_root
        .pointer("/properties/spec/properties/podUID")
        .is_none());
    // Descriptions everywhere in our own kind.
    let claim = &schemas
        .iter()
        .find(|(k, _)| k == "SpiderIPClaim")
        .unwrap()
        .1;
    for part in ["spec"] {
        for (name, prop) in claim
            .pointer(&format!("/properties/{part}/properties"))
            .and_then(Value::as_object)
            .unwrap()
        {
            assert!(
                prop.get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.is_empty()),
                "SpiderIPClaim .{part}.{name} has no description"
            );
        }
    }
    // No nullable anywhere (as in Spiderpool's CRDs).
    for (kind, root) in &schemas {
        assert!(
            !root.to_string().contains("\"nullable\""),
            "{kind}: schema has nullable"
        );
    }
}
