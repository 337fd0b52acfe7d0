//! `ipam.spidernet.io/ippool` and `ipam.spidernet.io/ippools`, and the per-interface entry
//! lists they share with the subnet annotations.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::interface::interface_field;
use super::json::{family, known_fields, opt_bool, parse_json};
use super::{validate_pool_name, AnnotationError, ANNO_IPPOOL, ANNO_IPPOOLS};

/// One interface's pool request, from `ippool` (interface optional, defaults applied by the
/// caller) or one entry of `ippools`.
///
/// In `ippools` either every entry names its interface or none does; when none does,
/// `interface` is `None` everywhere and Spiderpool matches entries to the Pod's interfaces in
/// order (first entry: first interface, …).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PoolRequest {
    pub interface: Option<String>,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
    /// `Some(true)`: do not install the pool's gateway as default route on this interface.
    /// Always `None` from `ippool`, which has no such field.
    pub clean_gateway: Option<bool>,
}

const IPPOOL_FIELDS: &[&str] = &["interface", "ipv4", "ipv6"];
const IPPOOLS_FIELDS: &[&str] = &["interface", "ipv4", "ipv6", "cleangateway"];
const OLD_POOL_FIELDS: &[&str] = &["ipv4pools", "ipv6pools"];
const OLD_IPPOOLS_FIELDS: &[&str] = &["ipv4pools", "ipv6pools", "defaultRoute"];
const POOLS_EMPTY: &str = "pool list is empty: name at least one IPv4 or IPv6 pool";

fn pool_families(
    obj: &Map<String, Value>,
    warn: &mut Vec<String>,
) -> Result<(Vec<String>, Vec<String>), String> {
    let ipv4 = family(
        obj,
        "ipv4",
        Some("ipv4pools"),
        "pool",
        validate_pool_name,
        warn,
    )?;
    let ipv6 = family(
        obj,
        "ipv6",
        Some("ipv6pools"),
        "pool",
        validate_pool_name,
        warn,
    )?;
    if ipv4.is_empty() && ipv6.is_empty() {
        return Err(POOLS_EMPTY.to_string());
    }
    Ok((ipv4, ipv6))
}

fn pool_request_from_object(
    v: &Value,
    entry: bool,
    warn: &mut Vec<String>,
) -> Result<PoolRequest, String> {
    let Value::Object(obj) = v else {
        return Err(if entry {
            "must be an object like {\"interface\": \"eth0\", \"ipv4\": [\"pool-a\"]}".to_string()
        } else {
            "must be a JSON object like {\"ipv4\": [\"pool-a\"], \"ipv6\": [\"pool-b\"]}"
                .to_string()
        });
    };
    let before = warn.len();
    let obj = &if entry {
        known_fields(obj, IPPOOLS_FIELDS, OLD_IPPOOLS_FIELDS, warn)
    } else {
        known_fields(obj, IPPOOL_FIELDS, OLD_POOL_FIELDS, warn)
    };
    let interface = interface_field(obj)?;
    let (ipv4, ipv6) = pool_families(obj, warn).map_err(|e| with_ignored(e, &warn[before..]))?;
    let clean_gateway = if entry {
        let clean = opt_bool(obj, "cleangateway")?;
        let default_route = opt_bool(obj, "defaultRoute")?;
        match (clean, default_route) {
            (Some(c), Some(_)) => {
                warn.push(
                    "both `cleangateway` and `defaultRoute` are set: `defaultRoute` is ignored, \
                     keep only `cleangateway`"
                        .to_string(),
                );
                Some(c)
            }
            (Some(c), None) => Some(c),
            (None, Some(_)) => {
                warn.push(
                    "`defaultRoute` is ignored, as Spiderpool 1.x ignores it (the interface's \
                     default route is decided as without it); write `cleangateway`"
                        .to_string(),
                );
                None
            }
            (None, None) => None,
        }
    } else {
        None
    };
    Ok(PoolRequest {
        interface,
        ipv4,
        ipv6,
        clean_gateway,
    })
}

/// An error, followed by the fields that were ignored on the way (a misspelt `ipv4` shows up
/// as "the list is empty" otherwise).
pub(super) fn with_ignored(error: String, ignored: &[String]) -> String {
    if ignored.is_empty() {
        error
    } else {
        format!("{error} ({})", ignored.join("; "))
    }
}

/// Parses `ipam.spidernet.io/ippool`: `{"interface"?, "ipv4": [...], "ipv6": [...]}`; the
/// older `ipv4pools` / `ipv6pools` are read too (not both spellings of one family at once).
pub fn parse_ippool(value: &str) -> Result<PoolRequest, AnnotationError> {
    parse_ippool_noting(value, &mut Vec::new())
}

/// [`parse_ippool`], adding to `warn` what is accepted but probably not meant.
pub fn parse_ippool_noting(
    value: &str,
    warn: &mut Vec<String>,
) -> Result<PoolRequest, AnnotationError> {
    let v = parse_json(ANNO_IPPOOL, value, "{\"ipv4\": [\"pool-a\"]}")?;
    let mut notes = Vec::new();
    let r = pool_request_from_object(&v, false, &mut notes)
        .map_err(|p| AnnotationError::new(ANNO_IPPOOL, p))?;
    warn.extend(
        notes
            .into_iter()
            .map(|n| format!("annotation {ANNO_IPPOOL}: {n}")),
    );
    Ok(r)
}

/// Checks Spiderpool's rule that either every entry names its interface or none does, and
/// that no interface appears twice. `entries` are `(1-based entry number, interface)`.
pub(super) fn check_interfaces<'a>(
    entries: impl Iterator<Item = (usize, Option<&'a str>)>,
    all_or_none: bool,
) -> Result<(), String> {
    let entries: Vec<_> = entries.collect();
    let named = entries.iter().filter(|(_, i)| i.is_some()).count();
    if named != entries.len() && (named > 0 || !all_or_none) {
        if let Some((n, _)) = entries.iter().find(|(_, i)| i.is_none()) {
            return Err(if all_or_none {
                format!(
                    "entry {n} has no `interface`: name the interface in every entry, or in none \
                     (entries are then given to the Pod's interfaces in order)"
                )
            } else {
                format!("entry {n} has no `interface`: every entry must name its interface")
            });
        }
    }
    let mut seen = BTreeSet::new();
    for (_, iface) in entries {
        if let Some(i) = iface {
            if !seen.insert(i) {
                return Err(format!("interface `{i}` appears twice"));
            }
        }
    }
    Ok(())
}

/// A non-empty JSON list of per-interface entries (`ippools`, `subnets`), each read by
/// `entry`; errors name the entry. `example` is what to write, shown when the shape is wrong.
pub(super) fn parse_entry_list<T>(
    key: &str,
    value: &str,
    example: &str,
    entry: impl Fn(&Value, &mut Vec<String>) -> Result<T, String>,
    warn: &mut Vec<String>,
) -> Result<Vec<T>, AnnotationError> {
    let v = parse_json(key, value, example)?;
    let Value::Array(items) = v else {
        return Err(AnnotationError::new(
            key,
            format!("must be a JSON list, one entry per interface, e.g. {example}"),
        ));
    };
    if items.is_empty() {
        return Err(AnnotationError::new(
            key,
            format!("the list is empty: add one entry per interface, e.g. {example}"),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let mut notes = Vec::new();
        let e = entry(item, &mut notes)
            .map_err(|p| AnnotationError::new(key, format!("entry {}: {p}", i + 1)))?;
        warn.extend(
            notes
                .into_iter()
                .map(|n| format!("annotation {key}: entry {}: {n}", i + 1)),
        );
        out.push(e);
    }
    Ok(out)
}

/// Parses `ipam.spidernet.io/ippools`: a non-empty JSON list, one entry per interface, with
/// `interface`, `ipv4`, `ipv6`, `cleangateway` (older `ipv4pools`, `ipv6pools`, `defaultRoute`
/// are read too). Every entry names its interface, or none does (Spiderpool then assigns the
/// entries to the Pod's interfaces in order); no interface twice.
pub fn parse_ippools(value: &str) -> Result<Vec<PoolRequest>, AnnotationError> {
    parse_ippools_noting(value, &mut Vec::new())
}

/// [`parse_ippools`], adding to `warn` what is accepted but probably not meant.
pub fn parse_ippools_noting(
    value: &str,
    warn: &mut Vec<String>,
) -> Result<Vec<PoolRequest>, AnnotationError> {
    let key = ANNO_IPPOOLS;
    let out = parse_entry_list(
        key,
        value,
        "[{\"interface\": \"eth0\", \"ipv4\": [\"pool-a\"]}]",
        |item, w| pool_request_from_object(item, true, w),
        warn,
    )?;
    check_interfaces(
        out.iter()
            .enumerate()
            .map(|(i, r)| (i + 1, r.interface.as_deref())),
        true,
    )
    .map_err(|p| AnnotationError::new(key, p))?;
    Ok(out)
}

/// `ipam.spidernet.io/ippool` JSON for a request (current spellings; no `cleangateway`, which
/// that annotation does not have).
pub fn format_ippool(req: &PoolRequest) -> String {
    pool_json(req, false).to_string()
}

/// `ipam.spidernet.io/ippools` JSON for a list of requests.
pub fn format_ippools(reqs: &[PoolRequest]) -> String {
    Value::Array(reqs.iter().map(|r| pool_json(r, true)).collect()).to_string()
}

pub(super) fn pool_json(req: &PoolRequest, with_clean_gateway: bool) -> Value {
    let mut m = Map::new();
    if let Some(i) = &req.interface {
        m.insert("interface".into(), Value::String(i.clone()));
    }
    if !req.ipv4.is_empty() {
        m.insert("ipv4".into(), strings_json(&req.ipv4));
    }
    if !req.ipv6.is_empty() {
        m.insert("ipv6".into(), strings_json(&req.ipv6));
    }
    if with_clean_gateway {
        if let Some(c) = req.clean_gateway {
            m.insert("cleangateway".into(), Value::Bool(c));
        }
    }
    Value::Object(m)
}

fn strings_json(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

#[cfg(test)]
mod tests;
