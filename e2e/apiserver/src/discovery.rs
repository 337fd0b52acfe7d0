//! Discovery documents and Table responses.

use serde_json::{json, Value};

use crate::resources::{PrinterColumn, ResourceDef};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "aipam-apiserver",
        "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
        "compiler": "gc", "platform": "linux/amd64"
    })
}

/// `/api`.
pub fn api_versions(addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]})
}

fn groups(defs: &[std::sync::Arc<ResourceDef>]) -> Vec<(String, Vec<String>, String)> {
    let mut out: Vec<(String, Vec<String>, String)> = Vec::new();
    for d in defs.iter().filter(|d| !d.group.is_empty()) {
        match out.iter_mut().find(|g| g.0 == d.group) {
            Some(g) => {
                if !g.1.contains(&d.version) {
                    g.1.push(d.version.clone());
                }
                if d.preferred {
                    g.2 = d.version.clone();
                }
            }
            None => out.push((d.group.clone(), vec![d.version.clone()], d.version.clone())),
        }
    }
    out
}

fn group_json(name: &str, versions: &[String], preferred: &str) -> Value {
    json!({
        "name": name,
        "versions": versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect::<Vec<_>>(),
        "preferredVersion": {"groupVersion": format!("{name}/{preferred}"), "version": preferred}
    })
}

/// `/apis`.
pub fn api_group_list(defs: &[std::sync::Arc<ResourceDef>]) -> Value {
    let gs: Vec<Value> = groups(defs)
        .iter()
        .map(|(n, v, p)| group_json(n, v, p))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
}

/// `/apis/{group}`.
pub fn api_group(defs: &[std::sync::Arc<ResourceDef>], group: &str) -> Option<Value> {
    groups(defs).iter().find(|g| g.0 == group).map(|(n, v, p)| {
        let mut g = group_json(n, v, p);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

/// `/api/v1` and `/apis/{group}/{version}`.
pub fn resource_list(
    defs: &[std::sync::Arc<ResourceDef>],
    group: &str,
    version: &str,
) -> Option<Value> {
    let mine: Vec<_> = defs
        .iter()
        .filter(|d| d.group == group && d.version == version)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for d in mine {
        let mut r = json!({
            "name": d.plural, "singularName": d.singular, "namespaced": d.namespaced, "kind": d.kind, "verbs": VERBS,
        });
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        if !d.categories.is_empty() {
            r["categories"] = json!(d.categories);
        }
        resources.push(r);
        if d.status_subresource {
            resources.push(json!({"name": format!("{}/status", d.plural), "singularName": "", "namespaced": d.namespaced, "kind": d.kind, "verbs": ["get", "patch", "update"]}));
        }
        if d.group.is_empty() && d.plural == "pods" {
            resources.push(json!({"name": "pods/binding", "singularName": "", "namespaced": true, "kind": "Binding", "verbs": ["create"]}));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// Evaluates a simple JSONPath (`.a.b`, `[0]`, `[*]`, `[?(@.k=="v")]`) as kubectl/kube-apiserver do for printer columns.
pub fn json_path(obj: &Value, path: &str) -> Vec<Value> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur = vec![obj.clone()];
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                    j += 1;
                }
                let field: String = chars[start..j].iter().collect();
                if !field.is_empty() {
                    cur = cur.iter().filter_map(|v| v.get(&field).cloned()).collect();
                }
                i = j;
            }
            '[' => {
                let mut j = i + 1;
                let mut depth = 1;
                while j < chars.len() {
                    if chars[j] == '[' {
                        depth += 1;
                    }
                    if chars[j] == ']' {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    j += 1;
                }
                let inner: String = chars[i + 1..j.min(chars.len())].iter().collect();
                let inner = inner.trim();
                cur = if inner == "*" {
                    cur.iter()
                        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                        .collect()
                } else if let Some(filter) =
                    inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')'))
                {
                    let (k, want) = filter.split_once("==").unwrap_or((filter, ""));
                    let want = want.trim().trim_matches('"').trim_matches('\'');
                    cur.iter()
                        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                        .filter(|e| {
                            let got = json_path(e, &format!(".{}", k.trim()));
                            got.first().map(|g| match g {
                                Value::String(s) => s.clone(),
                                o => o.to_string(),
                            }) == Some(want.to_string())
                        })
                        .collect()
                } else if let Ok(n) = inner.parse::<i64>() {
                    cur.iter()
                        .filter_map(|v| {
                            let a = v.as_array()?;
                            let idx = if n < 0 { a.len() as i64 + n } else { n };
                            a.get(usize::try_from(idx).ok()?).cloned()
                        })
                        .collect()
                } else {
                    let field = inner.trim_matches('\'').trim_matches('"');
                    cur.iter().filter_map(|v| v.get(field).cloned()).collect()
                };
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    cur
}

/// Kubernetes' `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    let y = d / 365;
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if y < 2 {
        format!("{d}d")
    } else if y < 8 {
        format!("{y}y{}d", d % 365)
    } else {
        format!("{y}y")
    }
}

fn age(ts: &str) -> Option<String> {
    let t: k8s_openapi::jiff::Timestamp = ts.parse().ok()?;
    let now = k8s_openapi::jiff::Timestamp::now();
    Some(human_duration(now.as_second() - t.as_second()))
}

fn cell(col: &PrinterColumn, obj: &Value) -> Value {
    let vals = json_path(obj, &col.json_path);
    if vals.is_empty() {
        return Value::Null;
    }
    if col.type_ == "date" {
        if let Some(a) = vals.first().and_then(Value::as_str).and_then(age) {
            return json!(a);
        }
    }
    if vals.len() == 1 {
        return match &vals[0] {
            Value::Array(_) | Value::Object(_) => json!(vals[0].to_string()),
            v => v.clone(),
        };
    }
    json!(vals
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            o => o.to_string(),
        })
        .collect::<Vec<_>>()
        .join(","))
}

/// Columns of a Table: NAME, the resource's columns, and AGE for built-ins.
pub fn columns(def: &ResourceDef) -> Vec<PrinterColumn> {
    let mut cols = vec![PrinterColumn {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: "Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names".into(),
        priority: 0,
        json_path: ".metadata.name".into(),
    }];
    cols.extend(def.printer_columns.iter().cloned());
    if !def.custom {
        cols.push(PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        });
    }
    cols
}

/// A `meta.k8s.io/v1` Table for a list of objects.
pub fn table(def: &ResourceDef, items: &[Value], rv: &str, include_object: &str) -> Value {
    let cols = columns(def);
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| cell(c, o)).collect();
            let mut row = json!({"cells": cells});
            match include_object {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))})
                }
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv}, "columnDefinitions": defs, "rows": rows})
}

/// `/openapi/v3`: one entry per group version, so that kubectl finds the per-GV documents.
pub fn openapi_v3_root(defs: &[std::sync::Arc<ResourceDef>]) -> Value {
    let mut paths = serde_json::Map::new();
    for d in defs {
        let p = if d.group.is_empty() {
            format!("api/{}", d.version)
        } else {
            format!("apis/{}/{}", d.group, d.version)
        };
        let url = format!("/openapi/v3/{p}?hash=0");
        paths.insert(p, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/{api/v1 | apis/g/v}`: a minimal OpenAPI 3 document that declares, for every
/// resource, its operations with `x-kubernetes-group-version-kind` and the `fieldValidation`
/// query parameter, which is what kubectl looks up to choose server-side field validation.
/// It carries no schemas (objects are not validated against schemas here).
pub fn openapi_v3_gv(
    defs: &[std::sync::Arc<ResourceDef>],
    group: &str,
    version: &str,
) -> Option<Value> {
    let mine: Vec<_> = defs
        .iter()
        .filter(|d| d.group == group && d.version == version)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    for d in mine {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let coll = if d.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", d.plural)
        } else {
            format!("{prefix}/{}", d.plural)
        };
        let gvk = json!({"group": d.group, "version": d.version, "kind": d.kind});
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
        ]);
        let op = |id: &str| json!({"operationId": id, "parameters": params, "responses": {"200": {"description": "OK"}}, "x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": id});
        paths.insert(coll.clone(), json!({"post": op("post"), "get": op("list")}));
        paths.insert(format!("{coll}/{{name}}"), json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths, "components": {"schemas": {}}}),
    )
}

/// `/openapi/v2` as the protobuf `openapi_v2.Document` kubectl ≤1.29 asks for: only `swagger`,
/// `info` and empty `paths` (no schemas, so kubectl validates nothing client-side).
pub fn openapi_v2_protobuf() -> Vec<u8> {
    fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3) | 2];
        let mut n = bytes.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(bytes);
        out
    }
    let mut info = field(1, b"Kubernetes");
    info.extend(field(2, b"v1.33.0"));
    let mut doc = field(1, b"2.0");
    doc.extend(field(2, &info));
    doc.extend(field(8, &[]));
    doc
}

/// `/openapi/v2` as JSON.
pub fn openapi_v2_json() -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": {}, "definitions": {}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths() {
        let o = json!({"spec": {"subnet": "10.0.0.0/24", "ips": ["a", "b"]}, "status": {"current": {"ips": [{"interface": "eth0"}]},
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}]}});
        assert_eq!(json_path(&o, ".spec.subnet"), vec![json!("10.0.0.0/24")]);
        assert_eq!(
            json_path(&o, ".status.current.ips[0].interface"),
            vec![json!("eth0")]
        );
        assert_eq!(json_path(&o, ".spec.ips[*]"), vec![json!("a"), json!("b")]);
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert!(json_path(&o, ".spec.missing").is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(86400 * 3), "3d");
    }
}
