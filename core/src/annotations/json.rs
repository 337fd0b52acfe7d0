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

/// The fields of `obj` as Spiderpool reads them (Go's `encoding/json`): a field outside
/// `shown` and `also` is ignored, and one that differs from a known field only in case is read
/// as that field. Each such field adds a warning to `warn`; `shown` are the current spellings
/// (named in the warning), `also` older spellings that are still read.
pub(super) fn known_fields(
    obj: &Map<String, Value>,
    shown: &[&str],
    also: &[&str],
    warn: &mut Vec<String>,
) -> Map<String, Value> {
    let known = |k: &str| shown.contains(&k) || also.contains(&k);
    let mut out = Map::new();
    for (k, v) in obj {
        if known(k) {
            out.insert(k.clone(), v.clone());
            continue;
        }
        match shown.iter().chain(also).find(|f| f.eq_ignore_ascii_case(k)) {
            Some(f) if !obj.contains_key(*f) => {
                warn.push(format!(
                    "field `{k}` read as `{f}` (Spiderpool matches field names without regard \
                     to case); write `{f}`"
                ));
                out.insert((*f).to_string(), v.clone());
            }
            Some(f) => warn.push(format!("field `{k}` ignored: `{f}` is set too")),
            None => warn.push(format!(
                "unknown field `{k}` ignored, as Spiderpool ignores it (the fields are {})",
                backticked(shown)
            )),
        }
    }
    out
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

/// A list of names under `name`, each checked by `check`; a repeat is dropped with a warning.
pub(super) fn name_list(
    obj: &Map<String, Value>,
    name: &str,
    what: &str,
    check: fn(&str) -> Result<(), String>,
    warn: &mut Vec<String>,
) -> Result<Option<Vec<String>>, String> {
    let Some(v) = field(obj, name) else {
        return Ok(None);
    };
    string_list(v, Some(&format!("`{name}`")), what, check, warn).map(Some)
}

/// A JSON list of names, each checked by `check`, no empty name; a name listed again is
/// dropped with a warning (Spiderpool tries it twice, which changes nothing). `label` names the
/// list in messages (`None` when the list is the whole annotation).
pub(super) fn string_list(
    v: &Value,
    label: Option<&str>,
    what: &str,
    check: fn(&str) -> Result<(), String>,
    warn: &mut Vec<String>,
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
            warn.push(format!(
                "{prefix}{what} `{s}` is listed twice; the repeat is ignored"
            ));
            continue;
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
    warn: &mut Vec<String>,
) -> Result<Vec<String>, String> {
    let new_v = name_list(obj, current, what, check, warn)?;
    let old_v = match (old, &new_v) {
        // Spiderpool 1.x reads only the current spelling: the older one is ignored.
        (Some(o), Some(_)) if field(obj, o).is_some() => {
            warn.push(format!(
                "both `{current}` and `{o}` are set: `{o}` is ignored, keep only `{current}`"
            ));
            None
        }
        (Some(o), None) => {
            let old_v = name_list(obj, o, what, check, warn)?;
            if old_v.is_some() {
                warn.push(format!(
                    "`{o}` is an older Spiderpool spelling, which Spiderpool 1.x ignores; read \
                     as `{current}` here, rename it"
                ));
            }
            old_v
        }
        _ => None,
    };
    Ok(new_v.or(old_v).unwrap_or_default())
}
