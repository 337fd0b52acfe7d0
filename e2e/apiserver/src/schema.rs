//! Structural-schema handling of custom resources, as kube-apiserver does it: defaulting,
//! pruning of unknown fields, and validation of `type`, `enum`, `required`, `nullable`,
//! `minimum`/`maximum` (and exclusive forms), `minLength`/`maxLength`, `minItems`/`maxItems`.
//! Not handled: `pattern`, `format`, `x-kubernetes-validations` (CEL), list-type uniqueness,
//! `oneOf`/`anyOf`/`allOf`/`not`.

use serde_json::{Map, Value};

fn preserve(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
        || schema
            .get("x-kubernetes-embedded-resource")
            .and_then(Value::as_bool)
            == Some(true)
}

/// Applies defaults and prunes unknown fields, in place. `root` keeps apiVersion/kind/metadata.
pub fn default_and_prune(v: &mut Value, schema: &Value, root: bool) {
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if let Some(props) = props {
                for (k, ps) in props {
                    if !m.contains_key(k) {
                        if let Some(d) = ps.get("default") {
                            m.insert(k.clone(), d.clone());
                        }
                    } else if m.get(k).is_some_and(Value::is_null)
                        && ps.get("nullable").and_then(Value::as_bool) != Some(true)
                    {
                        match ps.get("default") {
                            Some(d) => {
                                m.insert(k.clone(), d.clone());
                            }
                            None => {
                                m.remove(k);
                            }
                        }
                    }
                }
            }
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if root && (k == "apiVersion" || k == "kind" || k == "metadata") {
                    continue;
                }
                let sub = props.and_then(|p| p.get(&k)).or(additional);
                match sub {
                    Some(s) => {
                        if let Some(child) = m.get_mut(&k) {
                            default_and_prune(child, s, false);
                        }
                    }
                    None => {
                        if !preserve(schema) {
                            m.remove(&k);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for it in items.iter_mut() {
                    default_and_prune(it, is, false);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Validates a value; returns Kubernetes-style field errors (`path: message`).
pub fn validate(v: &Value, schema: &Value, path: &str, errs: &mut Vec<String>) {
    let at = |p: &str| {
        if p.is_empty() {
            "<root>".to_string()
        } else {
            p.to_string()
        }
    };
    if v.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) && !path.is_empty() {
            errs.push(format!(
                "{}: Invalid value: \"null\": {} in body must be of type {}: \"null\"",
                at(path),
                at(path),
                schema
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("object")
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let got = type_name(v);
        let ok = got == t
            || (t == "number" && got == "integer")
            || (int_or_string && (got == "integer" || got == "string"));
        if !ok {
            errs.push(format!(
                "{}: Invalid value: \"{got}\": {} in body must be of type {t}: \"{got}\"",
                at(path),
                at(path)
            ));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            let allowed: Vec<String> = e
                .iter()
                .map(|x| {
                    format!(
                        "\"{}\"",
                        x.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| x.to_string())
                    )
                })
                .collect();
            errs.push(format!(
                "{}: Unsupported value: {}: supported values: {}",
                at(path),
                show(v),
                allowed.join(", ")
            ));
        }
    }
    if let Some(n) = v.as_f64() {
        let excl_min = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
        let excl_max = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min || (excl_min && n == min) {
                let rel = if excl_min {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                errs.push(format!(
                    "{}: Invalid value: {}: {} in body should be {rel} {min}",
                    at(path),
                    show(v),
                    at(path)
                ));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max || (excl_max && n == max) {
                let rel = if excl_max {
                    "less than"
                } else {
                    "less than or equal to"
                };
                errs.push(format!(
                    "{}: Invalid value: {}: {} in body should be {rel} {max}",
                    at(path),
                    show(v),
                    at(path)
                ));
            }
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                errs.push(format!(
                    "{}: Too long: may not be more than {max} bytes",
                    at(path)
                ));
            }
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                errs.push(format!(
                    "{}: Invalid value: {}: {} in body should be at least {min} chars long",
                    at(path),
                    show(v),
                    at(path)
                ));
            }
        }
    }
    match v {
        Value::Object(m) => {
            if let Some(req) = schema.get("required").and_then(Value::as_array) {
                for r in req.iter().filter_map(Value::as_str) {
                    if !m.contains_key(r) {
                        errs.push(format!("{}: Required value", join(path, r)));
                    }
                }
            }
            let props: Option<&Map<String, Value>> =
                schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m {
                if path.is_empty() && (k == "apiVersion" || k == "kind" || k == "metadata") {
                    continue;
                }
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    validate(child, s, &join(path, k), errs);
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if n > max {
                    errs.push(format!(
                        "{}: Too many: {n}: must have at most {max} items",
                        at(path)
                    ));
                }
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if n < min {
                    errs.push(format!(
                        "{}: Invalid value: {n}: {} in body should have at least {min} items",
                        at(path),
                        at(path)
                    ));
                }
            }
            if let Some(is) = schema.get("items") {
                for (i, it) in items.iter().enumerate() {
                    validate(it, is, &format!("{}[{i}]", at(path)), errs);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["subnet"], "properties": {
                "subnet": {"type": "string"},
                "ipVersion": {"type": "integer", "enum": [4, 6]},
                "default": {"type": "boolean", "default": false},
                "vlan": {"type": "integer", "minimum": 0, "maximum": 4094},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            }}
        }})
    }

    #[test]
    fn defaults_and_pruning() {
        let mut v = json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "x"}, "junk": 1,
            "spec": {"subnet": "s", "unknown": 1, "free": {"any": {"thing": 1}}, "labels": {"a": "b"}}});
        default_and_prune(&mut v, &schema(), true);
        assert_eq!(
            v,
            json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "x"},
            "spec": {"subnet": "s", "default": false, "free": {"any": {"thing": 1}}, "labels": {"a": "b"}}})
        );
    }

    #[test]
    fn validation_errors() {
        let mut errs = vec![];
        validate(
            &json!({"spec": {"ipVersion": 5, "vlan": 5000, "labels": {"a": 1}}}),
            &schema(),
            "",
            &mut errs,
        );
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs.contains(&"spec.subnet: Required value".to_string()));
        assert!(errs.contains(
            &"spec.ipVersion: Unsupported value: 5: supported values: \"4\", \"6\"".to_string()
        ));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("spec.vlan: Invalid value: 5000")));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("spec.labels.a: Invalid value: \"integer\"")));
    }
}
