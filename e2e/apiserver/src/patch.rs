//! Patch application: JSON Patch (RFC 6902), JSON merge patch (RFC 7386), a strategic merge patch
//! subset, and the merge used for server-side apply.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// The patch types the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/apply-patch+yaml`
    Apply,
}

impl PatchKind {
    /// From a Content-Type header.
    pub fn from_content_type(ct: &str) -> ApiResult<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            _ => Err(ApiError::unsupported_media_type(ct)),
        }
    }
}

/// Applies a JSON Patch document (all six operations, `~0`/`~1` escapes, array indices and `-`).
pub fn apply_json_patch(doc: &Value, body: &[u8]) -> ApiResult<Value> {
    let patch: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut out = doc.clone();
    // One operation at a time on a copy (the whole patch still applies or nothing does), so
    // that a `test` of `null` on an absent path passes: kube-apiserver's JSON Patch library
    // treats a missing value as null, and clients rely on it (kube-runtime's finalizer helper
    // sends `test /metadata/finalizers == null` before adding the first finalizer).
    for op in patch.0 {
        if let json_patch::PatchOperation::Test(t) = &op {
            if t.value.is_null() && out.pointer(&t.path.to_string()).is_none() {
                continue;
            }
        }
        json_patch::patch(&mut out, &[op])
            .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
    }
    Ok(out)
}

/// Applies an RFC 7386 merge patch.
pub fn apply_merge_patch(doc: &Value, body: &[u8]) -> ApiResult<Value> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "error decoding patch: a merge patch must be a JSON object",
        ));
    }
    let mut out = doc.clone();
    json_patch::merge(&mut out, &patch);
    Ok(out)
}

/// The merge key of well-known lists of objects (as in the Kubernetes strategic merge patch tags).
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "readinessGates" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" => "containerPort",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        _ => return None,
    })
}

/// Fields whose lists of scalars merge as sets.
fn merge_scalar_list(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Applies a strategic merge patch: a merge patch in which well-known keyed lists (containers by
/// name, conditions by type, ...) merge element-wise, `finalizers` merge as a set, `$patch: delete`
/// removes an element or a map, `$patch: replace` replaces, and `$setElementOrder/` and
/// `$retainKeys` directives are ignored.
pub fn apply_strategic(doc: &Value, body: &[u8]) -> ApiResult<Value> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "error decoding patch: a strategic merge patch must be a JSON object",
        ));
    }
    Ok(strategic_merge(doc, &patch, false))
}

/// Merge used by both strategic merge patch and (simplified) server-side apply.
/// With `apply`, nulls in the patch are ignored rather than deleting.
pub fn strategic_merge(doc: &Value, patch: &Value, apply: bool) -> Value {
    merge_value(Some(doc), patch, "", apply).unwrap_or(Value::Null)
}

fn merge_value(doc: Option<&Value>, patch: &Value, field: &str, apply: bool) -> Option<Value> {
    match patch {
        Value::Null => {
            if apply {
                doc.cloned()
            } else {
                None
            }
        }
        Value::Object(pm) => {
            match pm.get("$patch").and_then(Value::as_str) {
                Some("delete") => return None,
                Some("replace") => {
                    let mut m = pm.clone();
                    m.remove("$patch");
                    return Some(Value::Object(m));
                }
                _ => {}
            }
            let mut out: Map<String, Value> = match doc {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            for (k, pv) in pm {
                if let Some(list_field) = k.strip_prefix("$deleteFromPrimitiveList/") {
                    if let (Some(Value::Array(cur)), Some(del)) =
                        (out.get(list_field).cloned(), pv.as_array())
                    {
                        out.insert(
                            list_field.to_string(),
                            Value::Array(cur.into_iter().filter(|v| !del.contains(v)).collect()),
                        );
                    }
                    continue;
                }
                if k.starts_with('$') {
                    continue;
                }
                match merge_value(out.get(k), pv, k, apply) {
                    Some(v) => {
                        out.insert(k.clone(), v);
                    }
                    None => {
                        out.remove(k);
                    }
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(pa) => {
            let cur = doc.and_then(Value::as_array);
            if let (Some(key), Some(cur)) = (merge_key(field), cur) {
                if pa.iter().all(Value::is_object) && cur.iter().all(Value::is_object) {
                    let mut out: Vec<Value> = cur.clone();
                    for pe in pa {
                        let kv = pe.get(key);
                        let deleting = pe.get("$patch").and_then(Value::as_str) == Some("delete");
                        let pos = kv.and_then(|kv| out.iter().position(|e| e.get(key) == Some(kv)));
                        match (pos, deleting) {
                            (Some(i), true) => {
                                out.remove(i);
                            }
                            (None, true) => {}
                            (Some(i), false) => {
                                if let Some(v) = merge_value(Some(&out[i]), pe, "", apply) {
                                    out[i] = v;
                                }
                            }
                            (None, false) => {
                                if let Some(v) = merge_value(None, pe, "", apply) {
                                    out.push(v);
                                }
                            }
                        }
                    }
                    return Some(Value::Array(out));
                }
            }
            if merge_scalar_list(field) && !apply {
                if let Some(cur) = cur {
                    let mut out = cur.clone();
                    for v in pa {
                        if !out.contains(v) {
                            out.push(v.clone());
                        }
                    }
                    return Some(Value::Array(out));
                }
            }
            Some(Value::Array(
                pa.iter()
                    .filter_map(|v| merge_value(None, v, "", apply))
                    .collect(),
            ))
        }
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod null_test_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn test_of_null_passes_on_an_absent_path_as_in_kube_apiserver() {
        let doc = json!({"metadata": {"name": "p"}});
        let body = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}
        ]);
        let out = apply_json_patch(&doc, body.to_string().as_bytes()).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["f"]));
        // A present value still fails a null test, and nothing is written.
        let again = apply_json_patch(&out, body.to_string().as_bytes()).unwrap_err();
        assert_eq!(again.code, 422);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_escapes_and_ops() {
        let doc = json!({"metadata": {"annotations": {"a~b": "1"}}, "spec": {"containers": [{"name": "c", "env": []}]}});
        let p = json!([
            {"op": "add", "path": "/metadata/annotations/ipam.spidernet.io~1ippool", "value": "x"},
            {"op": "test", "path": "/metadata/annotations/a~0b", "value": "1"},
            {"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "E"}},
            {"op": "copy", "from": "/metadata/annotations/a~0b", "path": "/metadata/annotations/copied"},
            {"op": "move", "from": "/metadata/annotations/copied", "path": "/metadata/annotations/moved"},
            {"op": "replace", "path": "/metadata/annotations/moved", "value": "2"},
            {"op": "remove", "path": "/metadata/annotations/a~0b"}
        ]);
        let out = apply_json_patch(&doc, p.to_string().as_bytes()).unwrap();
        assert_eq!(
            out["metadata"]["annotations"],
            json!({"ipam.spidernet.io/ippool": "x", "moved": "2"})
        );
        assert_eq!(out["spec"]["containers"][0]["env"], json!([{"name": "E"}]));
        let failing = json!([{"op": "test", "path": "/metadata/annotations/a~0b", "value": "2"}]);
        assert_eq!(
            apply_json_patch(&doc, failing.to_string().as_bytes())
                .unwrap_err()
                .code,
            422
        );
    }

    #[test]
    fn strategic_merges_keyed_lists() {
        let doc = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}, "metadata": {"finalizers": ["x"]}});
        let p = json!({"$setElementOrder/containers": [{"name": "a"}], "spec": {"containers": [{"name": "b", "image": "2"}, {"name": "a", "$patch": "delete"}]}, "metadata": {"finalizers": ["y"]}});
        let out = apply_strategic(&doc, p.to_string().as_bytes()).unwrap();
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "b", "image": "2"}])
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
    }
}
