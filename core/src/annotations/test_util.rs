//! Builders and texts the annotation tests share.

use std::collections::BTreeMap;

use super::{AnnotationError, PoolRequest};

pub(super) const NAME_RULE: &str =
    "a pool name is a lowercase RFC 1123 subdomain (lowercase letters, \
     digits, '-' and '.', starting and ending with a letter or digit, at \
     most 253 characters), or a wildcard pattern using `*`, `?` or `[...]`";

pub(super) fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub(super) fn pr(iface: Option<&str>, v4: &[&str], v6: &[&str], cg: Option<bool>) -> PoolRequest {
    PoolRequest {
        interface: iface.map(str::to_string),
        ipv4: strs(v4),
        ipv6: strs(v6),
        clean_gateway: cg,
    }
}

pub(super) fn annos(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn err_text<T: std::fmt::Debug>(r: Result<T, AnnotationError>) -> String {
    r.unwrap_err().to_string()
}
