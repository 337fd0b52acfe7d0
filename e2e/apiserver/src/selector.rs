//! Label selectors (string syntax and `metav1.LabelSelector`) and field selectors.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    /// `key=value`, `key==value`, `key in (a,b)`.
    In(String, Vec<String>),
    /// `key!=value`, `key notin (a,b)` (also matches objects without the key).
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
    /// `key>n`.
    Gt(String, i64),
    /// `key<n`.
    Lt(String, i64),
}

/// A parsed label selector; empty selects everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(pub Vec<Requirement>);

fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '(' => {
                depth += 1;
                cur.push(ch)
            }
            ')' => {
                depth -= 1;
                cur.push(ch)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    out.push(cur);
    out
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_set(rest: &str, sel: &str) -> ApiResult<Vec<String>> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: found '{rest}', expected: '(' in {sel:?}"
            ))
        })?;
    let vals: Vec<String> = inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if vals.iter().any(|v| !valid_value(v)) {
        return Err(ApiError::bad_request(format!(
            "unable to parse requirement: invalid label value in {sel:?}"
        )));
    }
    Ok(vals)
}

impl LabelSelector {
    /// Parses the `labelSelector` query syntax.
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self(reqs));
        }
        for term in split_top(s) {
            let t = term.trim();
            let bad = || {
                ApiError::bad_request(format!(
                    "unable to parse requirement: invalid label selector {s:?}"
                ))
            };
            if t.is_empty() {
                return Err(bad());
            }
            let req = if let Some(k) = t.strip_prefix('!') {
                let k = k.trim();
                if !valid_key(k) {
                    return Err(bad());
                }
                Requirement::DoesNotExist(k.to_string())
            } else if let Some((k, v)) = t.split_once("!=") {
                Requirement::NotIn(k.trim().to_string(), vec![v.trim().to_string()])
            } else if let Some((k, v)) = t.split_once("==") {
                Requirement::In(k.trim().to_string(), vec![v.trim().to_string()])
            } else if let Some((k, v)) = t.split_once('=') {
                Requirement::In(k.trim().to_string(), vec![v.trim().to_string()])
            } else if let Some((k, v)) = t.split_once('>') {
                Requirement::Gt(k.trim().to_string(), v.trim().parse().map_err(|_| bad())?)
            } else if let Some((k, v)) = t.split_once('<') {
                Requirement::Lt(k.trim().to_string(), v.trim().parse().map_err(|_| bad())?)
            } else if let Some(idx) = t.find(" notin ") {
                Requirement::NotIn(t[..idx].trim().to_string(), parse_set(&t[idx + 7..], s)?)
            } else if let Some(idx) = t.find(" in ") {
                Requirement::In(t[..idx].trim().to_string(), parse_set(&t[idx + 4..], s)?)
            } else if let Some(idx) = t.find("notin(") {
                Requirement::NotIn(t[..idx].trim().to_string(), parse_set(&t[idx + 5..], s)?)
            } else if let Some(idx) = t.find("in(") {
                Requirement::In(t[..idx].trim().to_string(), parse_set(&t[idx + 2..], s)?)
            } else {
                if !valid_key(t) {
                    return Err(bad());
                }
                Requirement::Exists(t.to_string())
            };
            let key = match &req {
                Requirement::In(k, v) | Requirement::NotIn(k, v) => {
                    if v.iter().any(|x| !valid_value(x)) {
                        return Err(bad());
                    }
                    k
                }
                Requirement::Exists(k)
                | Requirement::DoesNotExist(k)
                | Requirement::Gt(k, _)
                | Requirement::Lt(k, _) => k,
            };
            if !valid_key(key) {
                return Err(bad());
            }
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// Builds a selector from a `metav1.LabelSelector` object (matchLabels, matchExpressions).
    pub fn from_object(sel: &Value) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                reqs.push(Requirement::In(
                    k.clone(),
                    vec![v.as_str().unwrap_or_default().to_string()],
                ));
            }
        }
        if let Some(me) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in me {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                reqs.push(match op {
                    "In" => Requirement::In(key, values),
                    "NotIn" => Requirement::NotIn(key, values),
                    "Exists" => Requirement::Exists(key),
                    "DoesNotExist" => Requirement::DoesNotExist(key),
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "{other:?} is not a valid label selector operator"
                        )))
                    }
                });
            }
        }
        Ok(Self(reqs))
    }

    /// Whether the selector is empty (selects everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Matches a label map.
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
            Requirement::Gt(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Requirement::Lt(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        })
    }

    /// Matches an object's `metadata.labels`.
    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_labels(&labels_of(obj))
    }
}

/// The labels of an object.
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A parsed field selector: conjunction of `field=value` / `field!=value`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `fieldSelector`, accepting `metadata.name`, `metadata.namespace` and the resource's extra labels.
    pub fn parse(s: &str, allowed: &[&str], kind: &str, api_version: &str) -> ApiResult<Self> {
        let mut out = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self(out));
        }
        for term in s.split(',') {
            let t = term.trim();
            let (field, eq, value) = if let Some((f, v)) = t.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = t.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = t.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{t}'"
                )));
            };
            let field = field.trim();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !allowed.contains(&field)
            {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field} (kind {kind}, apiVersion {api_version})"
                )));
            }
            out.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(Self(out))
    }

    /// Matches an object: a missing field has the value "".
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, eq, want)| {
            let mut cur = obj;
            let mut found = true;
            for part in field.split('.') {
                match cur.get(part) {
                    Some(v) => cur = v,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            let got = if !found {
                String::new()
            } else {
                match cur {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                }
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}})
    }

    #[test]
    fn label_selector_syntax() {
        let o = obj(json!({"app": "web", "tier": "fe"}));
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (web,db)", true),
            ("app notin (web,db)", false),
            ("missing notin (a)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=fe", true),
            ("app=web,tier=be", false),
            ("app in (db), tier", false),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&o),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b c").is_err());
    }

    #[test]
    fn match_expressions() {
        let sel = LabelSelector::from_object(&json!({"matchLabels": {"a": "1"}, "matchExpressions": [
            {"key": "b", "operator": "NotIn", "values": ["x"]}, {"key": "c", "operator": "DoesNotExist"}]}))
        .unwrap();
        assert!(sel.matches(&obj(json!({"a": "1"}))));
        assert!(!sel.matches(&obj(json!({"a": "1", "b": "x"}))));
        assert!(!sel.matches(&obj(json!({"a": "1", "c": ""}))));
    }

    #[test]
    fn field_selector() {
        let p = json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"nodeName": "node1"}});
        let f = FieldSelector::parse(
            "spec.nodeName=node1,metadata.name!=q",
            &["spec.nodeName"],
            "Pod",
            "v1",
        )
        .unwrap();
        assert!(f.matches(&p));
        let f = FieldSelector::parse("spec.nodeName=", &["spec.nodeName"], "Pod", "v1").unwrap();
        assert!(!f.matches(&p));
        assert!(f.matches(&json!({"metadata": {"name": "x"}})));
        assert!(FieldSelector::parse("spec.foo=1", &[], "Pod", "v1").is_err());
    }
}
