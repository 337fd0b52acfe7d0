//! Reading annotation values as JSON: errors that say where, and fields checked one by one.

use serde_json::{Map, Value};

use super::AnnotationError;

pub(super) fn json_problem(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    format!(
        "invalid JSON at line {} column {}: {msg}",
        e.line(),
        e.column()
    )
}

pub(super) fn parse_json(key: &str, value: &str, example: &str) -> Result<Value, AnnotationError> {
    if value.trim().is_empty() {
        return Err(AnnotationError::new(
            key,
            format!("the value is empty: write JSON like {example}"),
        ));
    }
    serde_json::from_str(value).map_err(|e| AnnotationError::new(key, json_problem(&e)))
}

pub(super) fn backticked(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses fields outside `shown` and `also`; the message names `shown` only (the current
/// spellings), `also` holds older spellings that are still read.
pub(super) fn check_fields(
    obj: &Map<String, Value>,
    shown: &[&str],
    also: &[&str],
) -> Result<(), String> {
    match obj
        .keys()
        .find(|k| !shown.contains(&k.as_str()) && !also.contains(&k.as_str()))
    {
        Some(k) => Err(format!(
            "unknown field `{k}`, expected one of {}",
            backticked(shown)
        )),
        None => Ok(()),
    }
}

/// A present, non-null field.
pub(super) fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

pub(super) fn opt_string(
    obj: &Map<String, Value>,
    name: &str,
    example: &str,
) -> Result<Option<String>, String> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{name}` must be a string, e.g. {example}")),
    }
}

pub(super) fn opt_bool(obj: &Map<String, Value>, name: &str) -> Result<Option<bool>, String> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("`{name}` must be true or false (without quotes)")),
    }
}

/// A list of names under `name`, each checked by `check`, no duplicates.
pub(super) fn name_list(
    obj: &Map<String, Value>,
    name: &str,
    what: &str,
    check: fn(&str) -> Result<(), String>,
) -> Result<Option<Vec<String>>, String> {
    let Some(v) = field(obj, name) else {
        return Ok(None);
    };
    string_list(v, Some(&format!("`{name}`")), what, check).map(Some)
}

/// A JSON list of names, each checked by `check`, no empty name, no duplicate. `label` names
/// the list in messages (`None` when the list is the whole annotation).
pub(super) fn string_list(
    v: &Value,
    label: Option<&str>,
    what: &str,
    check: fn(&str) -> Result<(), String>,
) -> Result<Vec<String>, String> {
    let prefix = label.map(|l| format!("{l}: ")).unwrap_or_default();
    let Value::Array(items) = v else {
        return Err(format!(
            "{}must be a list of {what} names, e.g. [\"{what}-a\", \"{what}-b\"]",
            label.map(|l| format!("{l} ")).unwrap_or_default()
        ));
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::String(s) = item else {
            return Err(format!(
                "{prefix}entry {} must be a string (a {what} name)",
                i + 1
            ));
        };
        if s.is_empty() {
            return Err(format!(
                "{prefix}an empty {what} name is listed: remove it or write the {what}'s name"
            ));
        }
        check(s).map_err(|why| format!("{prefix}{why}"))?;
        if out.contains(s) {
            return Err(format!("{prefix}{what} `{s}` is listed twice"));
        }
        out.push(s.clone());
    }
    Ok(out)
}

/// Reads a family under its current name or its older name, refusing both at once.
pub(super) fn family(
    obj: &Map<String, Value>,
    current: &str,
    old: Option<&str>,
    what: &str,
    check: fn(&str) -> Result<(), String>,
) -> Result<Vec<String>, String> {
    let new_v = name_list(obj, current, what, check)?;
    let old_v = match old {
        Some(o) => name_list(obj, o, what, check)?,
        None => None,
    };
    match (new_v, old_v, old) {
        (Some(_), Some(_), Some(o)) => Err(format!(
            "both `{current}` and `{o}` are set: they mean the same thing, keep only `{current}`"
        )),
        (Some(v), _, _) | (None, Some(v), _) => Ok(v),
        (None, None, _) => Ok(Vec::new()),
    }
}
