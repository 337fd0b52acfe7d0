//! Codecs for every annotation the IPAM reads, with Spiderpool's spellings and meanings.
//!
//! Pod annotations (Spiderpool `docs/reference/annotation.md`, `pkg/types/k8s.go`):
//! * [`ANNO_IPPOOL`] `{"interface"?, "ipv4": [...], "ipv6": [...]}` — the older `ipv4pools` /
//!   `ipv6pools` spellings are read too;
//! * [`ANNO_IPPOOLS`] `[{"interface", "ipv4", "ipv6", "cleangateway"}, ...]` — wins over
//!   [`ANNO_IPPOOL`]; the older `defaultRoute` is read too (`defaultRoute: true` is
//!   `cleangateway: false`);
//! * [`ANNO_SUBNET`] / [`ANNO_SUBNETS`] — same shapes, naming SpiderSubnets; subnets win over
//!   subnet, and both win over the pool annotations;
//! * [`ANNO_IPPOOL_IP_NUMBER`] (`5` fixed, `+2` replicas plus two; default `+1`) and
//!   [`ANNO_IPPOOL_RECLAIM`] (default `true`);
//! * [`ANNO_ROUTES`] `[{"dst": "10.0.0.0/16", "gw": "192.168.1.1"}, ...]`.
//!
//! Namespace annotations: [`ANNO_NS_DEFAULT_IPV4_IPPOOL`] / [`ANNO_NS_DEFAULT_IPV6_IPPOOL`]
//! (JSON lists of pool names), and the older [`ANNO_NS_DEFAULT_V4_IPPOOL_OLD`] /
//! [`ANNO_NS_DEFAULT_V6_IPPOOL_OLD`].
//!
//! Multus: [`MULTUS_NETWORKS`] (`ns/name@iface, ...` or a JSON list of network selection
//! elements) and [`MULTUS_DEFAULT_NETWORK`] (exactly one network, either form).
//!
//! Pool names in every list may be Spiderpool wildcards (`*`, `?`, `[...]`, Go's
//! `filepath.Match` syntax), expanded by the caller against existing pools of the right IP
//! version: see [`is_wildcard`] and [`wildcard_match`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::names::{is_dns1123_label, is_dns1123_subdomain, is_dns1123_subdomain_char};

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// Pod: pools for one interface.
pub const ANNO_IPPOOL: &str = "ipam.spidernet.io/ippool";
/// Pod: pools per interface; wins over [`ANNO_IPPOOL`].
pub const ANNO_IPPOOLS: &str = "ipam.spidernet.io/ippools";
/// Pod: SpiderSubnet for one interface (an automatic pool is made for the application).
pub const ANNO_SUBNET: &str = "ipam.spidernet.io/subnet";
/// Pod: SpiderSubnets per interface; wins over [`ANNO_SUBNET`].
pub const ANNO_SUBNETS: &str = "ipam.spidernet.io/subnets";
/// Pod: size of the automatic pool (`N` fixed, `+N` replicas plus N; default `+1`).
pub const ANNO_IPPOOL_IP_NUMBER: &str = "ipam.spidernet.io/ippool-ip-number";
/// Pod: delete the automatic pool with its application (default `true`). Also a pool label.
pub const ANNO_IPPOOL_RECLAIM: &str = "ipam.spidernet.io/ippool-reclaim";
/// Pod: extra routes.
pub const ANNO_ROUTES: &str = "ipam.spidernet.io/routes";
/// Namespace: default IPv4 pools.
pub const ANNO_NS_DEFAULT_IPV4_IPPOOL: &str = "ipam.spidernet.io/default-ipv4-ippool";
/// Namespace: default IPv6 pools.
pub const ANNO_NS_DEFAULT_IPV6_IPPOOL: &str = "ipam.spidernet.io/default-ipv6-ippool";
/// Namespace, older spelling of [`ANNO_NS_DEFAULT_IPV4_IPPOOL`].
pub const ANNO_NS_DEFAULT_V4_IPPOOL_OLD: &str = "ipam.spidernet.io/defaultv4ippool";
/// Namespace, older spelling of [`ANNO_NS_DEFAULT_IPV6_IPPOOL`].
pub const ANNO_NS_DEFAULT_V6_IPPOOL_OLD: &str = "ipam.spidernet.io/defaultv6ippool";
/// Short alias of [`ANNO_NS_DEFAULT_IPV4_IPPOOL`].
pub const ANNO_NS_DEFAULT_IPV4: &str = ANNO_NS_DEFAULT_IPV4_IPPOOL;
/// Short alias of [`ANNO_NS_DEFAULT_IPV6_IPPOOL`].
pub const ANNO_NS_DEFAULT_IPV6: &str = ANNO_NS_DEFAULT_IPV6_IPPOOL;
/// Short alias of [`ANNO_NS_DEFAULT_V4_IPPOOL_OLD`].
pub const ANNO_NS_DEFAULT_IPV4_OLD: &str = ANNO_NS_DEFAULT_V4_IPPOOL_OLD;
/// Short alias of [`ANNO_NS_DEFAULT_V6_IPPOOL_OLD`].
pub const ANNO_NS_DEFAULT_IPV6_OLD: &str = ANNO_NS_DEFAULT_V6_IPPOOL_OLD;
/// Multus: additional networks of a Pod.
pub const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
/// Multus: replaces the cluster default network of a Pod.
pub const MULTUS_DEFAULT_NETWORK: &str = "v1.multus-cni.io/default-network";
/// Multus: status written after the networks are set up (read-only for the IPAM).
pub const MULTUS_NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";
/// Alias of [`MULTUS_NETWORKS`].
pub const ANNO_MULTUS_NETWORKS: &str = MULTUS_NETWORKS;
/// Alias of [`MULTUS_DEFAULT_NETWORK`].
pub const ANNO_MULTUS_DEFAULT_NETWORK: &str = MULTUS_DEFAULT_NETWORK;
/// Pod (Spiderpool coordinator): which interface carries the default route.
pub const ANNO_DEFAULT_ROUTE_NIC: &str = "ipam.spidernet.io/default-route-nic";
/// Pod: DNS settings (declared by Spiderpool, not used for pool selection).
pub const ANNO_DNS: &str = "ipam.spidernet.io/dns";

/// Labels Spiderpool puts on automatic pools made from a SpiderSubnet; the pool of an
/// application is found by these labels.
pub const LABEL_OWNER_SPIDER_SUBNET: &str = "ipam.spidernet.io/owner-spider-subnet";
pub const LABEL_OWNER_APPLICATION_GV: &str = "ipam.spidernet.io/owner-application-gv";
pub const LABEL_OWNER_APPLICATION_KIND: &str = "ipam.spidernet.io/owner-application-kind";
pub const LABEL_OWNER_APPLICATION_NAMESPACE: &str = "ipam.spidernet.io/owner-application-namespace";
pub const LABEL_OWNER_APPLICATION_NAME: &str = "ipam.spidernet.io/owner-application-name";
pub const LABEL_OWNER_APPLICATION_UID: &str = "ipam.spidernet.io/owner-application-uid";
/// Interface an automatic pool serves.
pub const LABEL_IPPOOL_INTERFACE: &str = "ipam.spidernet.io/interface";
/// IP version of an automatic pool: `IPv4` or `IPv6`.
pub const LABEL_IPPOOL_IP_VERSION: &str = "ipam.spidernet.io/ip-version";
pub const LABEL_IPPOOL_CIDR: &str = "ipam.spidernet.io/ippool-cidr";
pub const LABEL_SUBNET_CIDR: &str = "ipam.spidernet.io/subnet-cidr";
/// `podAffinity.matchLabels` keys Spiderpool writes into automatic pools; they are matched
/// against the application, not against Pod labels.
pub const AUTO_POOL_AFFINITY_APP_API_GROUP: &str = "ipam.spidernet.io/app-api-group";
pub const AUTO_POOL_AFFINITY_APP_API_VERSION: &str = "ipam.spidernet.io/app-api-version";
pub const AUTO_POOL_AFFINITY_APP_KIND: &str = "ipam.spidernet.io/app-kind";
pub const AUTO_POOL_AFFINITY_APP_NAMESPACE: &str = "ipam.spidernet.io/app-namespace";
pub const AUTO_POOL_AFFINITY_APP_NAME: &str = "ipam.spidernet.io/app-name";

/// Longest Linux interface name (IFNAMSIZ − 1).
pub const INTERFACE_NAME_MAX_LEN: usize = 15;

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// An annotation that cannot be used, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: {problem}")]
pub struct AnnotationError {
    pub key: String,
    pub problem: String,
}

impl AnnotationError {
    fn new(key: &str, problem: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            problem: problem.into(),
        }
    }
}

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

/// One interface's SpiderSubnet request. Spiderpool uses only the first subnet of each family.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SubnetRequest {
    pub interface: Option<String>,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
}

/// Size of an automatic pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpNumber {
    /// Exactly this many addresses (`"5"`).
    Fixed(u64),
    /// The application's replicas plus this many (`"+2"`).
    Flexible(u64),
}

impl Default for IpNumber {
    /// Spiderpool's default, `+1`.
    fn default() -> Self {
        IpNumber::Flexible(1)
    }
}

impl IpNumber {
    /// Addresses the automatic pool should hold for an application of `replicas` replicas.
    pub fn desired(self, replicas: u64) -> u64 {
        match self {
            IpNumber::Fixed(n) => n,
            IpNumber::Flexible(n) => replicas.saturating_add(n),
        }
    }
}

/// One extra route.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Route {
    pub dst: ipnet::IpNet,
    pub gw: IpAddr,
}

/// Everything IPAM-relevant on a Pod, keys resolved with precedence (ippools over ippool;
/// subnets over subnet). A key that loses is not read at all, as in Spiderpool.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PodIpamAnnotations {
    pub ippools: Option<Vec<PoolRequest>>,
    pub ippool: Option<PoolRequest>,
    pub subnets: Option<Vec<SubnetRequest>>,
    pub subnet: Option<SubnetRequest>,
    pub ip_number: Option<IpNumber>,
    pub reclaim: Option<bool>,
    pub routes: Vec<Route>,
}

/// A Namespace's default pools. The new key wins over the old one; `None` when absent or
/// when the list is empty (Spiderpool then falls through to the next rule).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NamespaceDefaults {
    pub ipv4: Option<Vec<String>>,
    pub ipv6: Option<Vec<String>>,
}

/// One network named by a Multus annotation. `namespace: None` means Multus's default: the
/// Pod's namespace for [`MULTUS_NETWORKS`], Multus's own namespace (usually `kube-system`) for
/// [`MULTUS_DEFAULT_NETWORK`]. `interface: None` means Multus names it (`net1`, `net2`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSelection {
    pub namespace: Option<String>,
    pub name: String,
    pub interface: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// Spiderpool's test for a wildcard pool name (`HasWildcardInStr`): it contains `*` or `?`,
/// or both `[` and `]`.
pub fn is_wildcard(name: &str) -> bool {
    name.contains('*') || name.contains('?') || (name.contains('[') && name.contains(']'))
}

#[derive(Debug)]
enum Tok {
    Star,
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Lit(char),
}

/// Compiles Go's `filepath.Match` syntax; the error says what is malformed.
fn compile_pattern(pattern: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                toks.push(Tok::Star);
                i += 1;
            }
            '?' => {
                toks.push(Tok::Any);
                i += 1;
            }
            '\\' => {
                let Some(&c) = chars.get(i + 1) else {
                    return Err("it ends with a lone `\\`".to_string());
                };
                toks.push(Tok::Lit(c));
                i += 2;
            }
            '[' => {
                i += 1;
                let mut negated = false;
                if chars.get(i) == Some(&'^') {
                    negated = true;
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    match chars.get(i) {
                        None => return Err("a `[` is not closed by `]`".to_string()),
                        Some(']') if !ranges.is_empty() => {
                            i += 1;
                            break;
                        }
                        Some(_) => {
                            let (lo, next) = class_char(&chars, i)?;
                            i = next;
                            let mut hi = lo;
                            if chars.get(i) == Some(&'-') {
                                let (h, next) = class_char(&chars, i + 1)?;
                                if h < lo {
                                    return Err(format!("the range `{lo}-{h}` is backwards"));
                                }
                                hi = h;
                                i = next;
                            }
                            ranges.push((lo, hi));
                        }
                    }
                }
                toks.push(Tok::Class { negated, ranges });
            }
            c => {
                toks.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    Ok(toks)
}

/// One character inside `[...]` (Go's `getEsc`).
fn class_char(chars: &[char], i: usize) -> Result<(char, usize), String> {
    match chars.get(i) {
        None => Err("a `[` is not closed by `]`".to_string()),
        Some('-') | Some(']') => Err(
            "a character class `[...]` is empty or has a misplaced `-` or `]` (escape them with \
             `\\`)"
                .to_string(),
        ),
        Some('\\') => chars
            .get(i + 1)
            .map(|&c| (c, i + 2))
            .ok_or_else(|| "a `[` is not closed by `]`".to_string()),
        Some(&c) => Ok((c, i + 1)),
    }
}

fn match_toks(toks: &[Tok], name: &[char]) -> bool {
    // Classic backtracking on the last `*`; names are short.
    let (mut t, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let c = name[n];
        let step = match toks.get(t) {
            Some(Tok::Star) => {
                star = Some((t, n));
                t += 1;
                continue;
            }
            Some(Tok::Any) => c != '/',
            Some(Tok::Lit(l)) => *l == c,
            Some(Tok::Class { negated, ranges }) => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
            None => false,
        };
        if step {
            t += 1;
            n += 1;
        } else if let Some((st, sn)) = star {
            if name[sn] == '/' {
                return false;
            }
            star = Some((st, sn + 1));
            t = st + 1;
            n = sn + 1;
        } else {
            return false;
        }
    }
    toks[t.min(toks.len())..]
        .iter()
        .all(|tok| matches!(tok, Tok::Star))
}

/// Spiderpool's wildcard match (Go's `filepath.Match`): `*` any run of characters, `?` one
/// character, `[a-z]` / `[^0-9]` a class, `\` escapes. The whole name must match. A malformed
/// pattern matches nothing.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    match compile_pattern(pattern) {
        Ok(toks) => match_toks(&toks, &name.chars().collect::<Vec<_>>()),
        Err(_) => false,
    }
}

const POOL_NAME_RULE: &str = "a pool name is a lowercase RFC 1123 subdomain (lowercase letters, \
                              digits, '-' and '.', starting and ending with a letter or digit, at \
                              most 253 characters), or a wildcard pattern using `*`, `?` or \
                              `[...]`";

/// Checks a pool name as written in an annotation: a Kubernetes object name, or a wildcard
/// pattern whose syntax is valid and whose literal characters can occur in a pool name.
pub fn validate_pool_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an empty pool name".to_string());
    }
    if is_wildcard(name) {
        let toks = compile_pattern(name)
            .map_err(|why| format!("`{name}` is not a valid wildcard pattern: {why}"))?;
        let bad = toks.iter().find_map(|t| match t {
            Tok::Lit(c) if !is_dns1123_subdomain_char(*c) => Some(*c),
            _ => None,
        });
        if let Some(c) = bad {
            return Err(format!(
                "`{name}` can never match a pool: pool names have no `{c}` (only lowercase \
                 letters, digits, '-' and '.')"
            ));
        }
        return Ok(());
    }
    if is_dns1123_subdomain(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid pool name: {POOL_NAME_RULE}"
        ))
    }
}

/// Checks a SpiderSubnet name (a Kubernetes object name; no wildcards).
fn validate_subnet_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an empty subnet name".to_string());
    }
    if is_dns1123_subdomain(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid subnet name: a SpiderSubnet name is a lowercase RFC 1123 \
             subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter \
             or digit, at most 253 characters); wildcards are not supported for subnets"
        ))
    }
}

/// Checks a Linux interface name: non-empty, at most 15 bytes, not `.` or `..`, no `/`, `:`
/// or whitespace.
pub fn validate_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the interface name is empty: write it, e.g. \"eth0\" or \"net1\"".to_string());
    }
    if name.len() > INTERFACE_NAME_MAX_LEN {
        return Err(format!(
            "interface name `{name}` is longer than {INTERFACE_NAME_MAX_LEN} characters (Linux \
             limit)"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a usable interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "interface name `{name}` contains {}, which Linux does not allow",
            describe_char(c)
        ));
    }
    Ok(())
}

fn describe_char(c: char) -> String {
    if c.is_whitespace() {
        "whitespace".to_string()
    } else {
        format!("`{c}`")
    }
}

// ---------------------------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------------------------

fn json_problem(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    format!(
        "invalid JSON at line {} column {}: {msg}",
        e.line(),
        e.column()
    )
}

fn parse_json(key: &str, value: &str, example: &str) -> Result<Value, AnnotationError> {
    if value.trim().is_empty() {
        return Err(AnnotationError::new(
            key,
            format!("the value is empty: write JSON like {example}"),
        ));
    }
    serde_json::from_str(value).map_err(|e| AnnotationError::new(key, json_problem(&e)))
}

fn backticked(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses fields outside `shown` and `also`; the message names `shown` only (the current
/// spellings), `also` holds older spellings that are still read.
fn check_fields(obj: &Map<String, Value>, shown: &[&str], also: &[&str]) -> Result<(), String> {
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
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn opt_string(
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

fn opt_bool(obj: &Map<String, Value>, name: &str) -> Result<Option<bool>, String> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("`{name}` must be true or false (without quotes)")),
    }
}

/// A list of names under `name`, each checked by `check`, no duplicates.
fn name_list(
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
fn string_list(
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
fn family(
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

fn interface_field(obj: &Map<String, Value>) -> Result<Option<String>, String> {
    let iface = opt_string(obj, "interface", "\"eth0\"")?;
    if let Some(name) = &iface {
        validate_interface_name(name)?;
    }
    Ok(iface)
}

// ---------------------------------------------------------------------------------------------
// ippool / ippools
// ---------------------------------------------------------------------------------------------

const IPPOOL_FIELDS: &[&str] = &["interface", "ipv4", "ipv6"];
const IPPOOLS_FIELDS: &[&str] = &["interface", "ipv4", "ipv6", "cleangateway"];
const OLD_POOL_FIELDS: &[&str] = &["ipv4pools", "ipv6pools"];
const OLD_IPPOOLS_FIELDS: &[&str] = &["ipv4pools", "ipv6pools", "defaultRoute"];
const POOLS_EMPTY: &str = "pool list is empty: name at least one IPv4 or IPv6 pool";

fn pool_families(obj: &Map<String, Value>) -> Result<(Vec<String>, Vec<String>), String> {
    let ipv4 = family(obj, "ipv4", Some("ipv4pools"), "pool", validate_pool_name)?;
    let ipv6 = family(obj, "ipv6", Some("ipv6pools"), "pool", validate_pool_name)?;
    if ipv4.is_empty() && ipv6.is_empty() {
        return Err(POOLS_EMPTY.to_string());
    }
    Ok((ipv4, ipv6))
}

fn pool_request_from_object(v: &Value, entry: bool) -> Result<PoolRequest, String> {
    let Value::Object(obj) = v else {
        return Err(if entry {
            "must be an object like {\"interface\": \"eth0\", \"ipv4\": [\"pool-a\"]}".to_string()
        } else {
            "must be a JSON object like {\"ipv4\": [\"pool-a\"], \"ipv6\": [\"pool-b\"]}"
                .to_string()
        });
    };
    if entry {
        check_fields(obj, IPPOOLS_FIELDS, OLD_IPPOOLS_FIELDS)?;
    } else {
        check_fields(obj, IPPOOL_FIELDS, OLD_POOL_FIELDS)?;
    }
    let interface = interface_field(obj)?;
    let (ipv4, ipv6) = pool_families(obj)?;
    let clean_gateway = if entry {
        let clean = opt_bool(obj, "cleangateway")?;
        let default_route = opt_bool(obj, "defaultRoute")?;
        match (clean, default_route) {
            (Some(_), Some(_)) => {
                return Err("both `cleangateway` and `defaultRoute` are set: keep only \
                            `cleangateway` (`defaultRoute: true` is `cleangateway: false`)"
                    .to_string())
            }
            (Some(c), None) => Some(c),
            (None, Some(d)) => Some(!d),
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

/// Parses `ipam.spidernet.io/ippool`: `{"interface"?, "ipv4": [...], "ipv6": [...]}`; the
/// older `ipv4pools` / `ipv6pools` are read too (not both spellings of one family at once).
pub fn parse_ippool(value: &str) -> Result<PoolRequest, AnnotationError> {
    let v = parse_json(ANNO_IPPOOL, value, "{\"ipv4\": [\"pool-a\"]}")?;
    pool_request_from_object(&v, false).map_err(|p| AnnotationError::new(ANNO_IPPOOL, p))
}

/// Checks Spiderpool's rule that either every entry names its interface or none does, and
/// that no interface appears twice. `entries` are `(1-based entry number, interface)`.
fn check_interfaces<'a>(
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
fn parse_entry_list<T>(
    key: &str,
    value: &str,
    example: &str,
    entry: impl Fn(&Value) -> Result<T, String>,
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
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            entry(item).map_err(|p| AnnotationError::new(key, format!("entry {}: {p}", i + 1)))
        })
        .collect()
}

/// Parses `ipam.spidernet.io/ippools`: a non-empty JSON list, one entry per interface, with
/// `interface`, `ipv4`, `ipv6`, `cleangateway` (older `ipv4pools`, `ipv6pools`, `defaultRoute`
/// are read too). Every entry names its interface, or none does (Spiderpool then assigns the
/// entries to the Pod's interfaces in order); no interface twice.
pub fn parse_ippools(value: &str) -> Result<Vec<PoolRequest>, AnnotationError> {
    let key = ANNO_IPPOOLS;
    let out = parse_entry_list(
        key,
        value,
        "[{\"interface\": \"eth0\", \"ipv4\": [\"pool-a\"]}]",
        |item| pool_request_from_object(item, true),
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

fn pool_json(req: &PoolRequest, with_clean_gateway: bool) -> Value {
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

// ---------------------------------------------------------------------------------------------
// subnet / subnets
// ---------------------------------------------------------------------------------------------

const SUBNET_FIELDS: &[&str] = &["interface", "ipv4", "ipv6"];
const SUBNETS_EMPTY: &str = "subnet list is empty: name at least one IPv4 or IPv6 subnet";

fn subnet_request_from_object(v: &Value, entry: bool) -> Result<SubnetRequest, String> {
    let Value::Object(obj) = v else {
        return Err(if entry {
            "must be an object like {\"interface\": \"eth0\", \"ipv4\": [\"subnet-a\"]}".to_string()
        } else {
            "must be a JSON object like {\"ipv4\": [\"subnet-a\"], \"ipv6\": [\"subnet-b\"]}"
                .to_string()
        });
    };
    check_fields(obj, SUBNET_FIELDS, &[])?;
    let interface = interface_field(obj)?;
    let ipv4 = family(obj, "ipv4", None, "subnet", validate_subnet_name)?;
    let ipv6 = family(obj, "ipv6", None, "subnet", validate_subnet_name)?;
    if ipv4.is_empty() && ipv6.is_empty() {
        return Err(SUBNETS_EMPTY.to_string());
    }
    Ok(SubnetRequest {
        interface,
        ipv4,
        ipv6,
    })
}

/// Parses `ipam.spidernet.io/subnet`: `{"interface"?, "ipv4": [...], "ipv6": [...]}`.
/// Spiderpool uses the first subnet of each family, and `eth0` when no interface is named.
pub fn parse_subnet(value: &str) -> Result<SubnetRequest, AnnotationError> {
    let v = parse_json(ANNO_SUBNET, value, "{\"ipv4\": [\"subnet-a\"]}")?;
    subnet_request_from_object(&v, false).map_err(|p| AnnotationError::new(ANNO_SUBNET, p))
}

/// Parses `ipam.spidernet.io/subnets`: a non-empty JSON list; every entry names its
/// interface; no interface twice; no (first) subnet shared by two interfaces.
pub fn parse_subnets(value: &str) -> Result<Vec<SubnetRequest>, AnnotationError> {
    let key = ANNO_SUBNETS;
    let out = parse_entry_list(
        key,
        value,
        "[{\"interface\": \"eth0\", \"ipv4\": [\"subnet-a\"]}]",
        |item| subnet_request_from_object(item, true),
    )?;
    check_interfaces(
        out.iter()
            .enumerate()
            .map(|(i, r)| (i + 1, r.interface.as_deref())),
        false,
    )
    .map_err(|p| AnnotationError::new(key, p))?;
    let families: [fn(&SubnetRequest) -> Option<String>; 2] =
        [|r| r.ipv4.first().cloned(), |r| r.ipv6.first().cloned()];
    for fam in families {
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        for r in &out {
            let (Some(s), Some(i)) = (fam(r), r.interface.clone()) else {
                continue;
            };
            if let Some(first) = owner.insert(s.clone(), i.clone()) {
                return Err(AnnotationError::new(
                    key,
                    format!(
                        "subnet `{s}` is used by two interfaces (`{first}` and `{i}`): each \
                         interface needs its own subnet"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// `ipam.spidernet.io/subnet` JSON for a request.
pub fn format_subnet(req: &SubnetRequest) -> String {
    subnet_json(req).to_string()
}

/// `ipam.spidernet.io/subnets` JSON for a list of requests.
pub fn format_subnets(reqs: &[SubnetRequest]) -> String {
    Value::Array(reqs.iter().map(subnet_json).collect()).to_string()
}

fn subnet_json(req: &SubnetRequest) -> Value {
    pool_json(
        &PoolRequest {
            interface: req.interface.clone(),
            ipv4: req.ipv4.clone(),
            ipv6: req.ipv6.clone(),
            clean_gateway: None,
        },
        false,
    )
}

// ---------------------------------------------------------------------------------------------
// ip-number, reclaim
// ---------------------------------------------------------------------------------------------

/// Parses `ipam.spidernet.io/ippool-ip-number`: `N` (a fixed number of addresses, at least 1)
/// or `+N` (the application's replicas plus N, N ≥ 0). Surrounding whitespace is ignored.
pub fn parse_ip_number(value: &str) -> Result<IpNumber, AnnotationError> {
    let key = ANNO_IPPOOL_IP_NUMBER;
    let hint = "write a number of addresses like `5` (fixed) or `+2` (the application's \
                replicas plus 2)";
    let v = value.trim();
    let (flexible, digits) = match v.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(AnnotationError::new(
            key,
            format!("`{value}` is not a pool size: {hint}"),
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| AnnotationError::new(key, format!("`{value}` is too large: {hint}")))?;
    if flexible {
        Ok(IpNumber::Flexible(n))
    } else if n == 0 {
        Err(AnnotationError::new(
            key,
            "a fixed pool of 0 addresses cannot serve any Pod: write a positive number, or `+0` \
             for exactly as many addresses as replicas",
        ))
    } else {
        Ok(IpNumber::Fixed(n))
    }
}

/// Parses `ipam.spidernet.io/ippool-reclaim` with Go's `strconv.ParseBool` spellings
/// (`true`, `True`, `TRUE`, `t`, `T`, `1`, and the same for false).
pub fn parse_reclaim(value: &str) -> Result<bool, AnnotationError> {
    match value {
        "1" | "t" | "T" | "true" | "True" | "TRUE" => Ok(true),
        "0" | "f" | "F" | "false" | "False" | "FALSE" => Ok(false),
        _ => Err(AnnotationError::new(
            ANNO_IPPOOL_RECLAIM,
            format!("`{value}` is not a boolean: write `true` or `false`"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// routes
// ---------------------------------------------------------------------------------------------

/// Parses `ipam.spidernet.io/routes`: a JSON list of `{"dst": "<CIDR>", "gw": "<IP>"}`, `dst`
/// and `gw` of the same IP family, no destination twice. `[]` is no routes.
pub fn parse_routes(value: &str) -> Result<Vec<Route>, AnnotationError> {
    let key = ANNO_ROUTES;
    let example = "[{\"dst\": \"10.0.0.0/16\", \"gw\": \"192.168.1.1\"}]";
    let v = parse_json(key, value, example)?;
    let Value::Array(items) = v else {
        return Err(AnnotationError::new(
            key,
            format!("must be a JSON list of routes, e.g. {example}"),
        ));
    };
    let mut out: Vec<Route> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let route = route_from(item, example)
            .map_err(|p| AnnotationError::new(key, format!("entry {}: {p}", i + 1)))?;
        if out.iter().any(|r| r.dst == route.dst) {
            return Err(AnnotationError::new(
                key,
                format!(
                    "entry {}: destination `{}` is given twice; keep one route per destination",
                    i + 1,
                    route.dst
                ),
            ));
        }
        out.push(route);
    }
    Ok(out)
}

fn route_from(v: &Value, example: &str) -> Result<Route, String> {
    let Value::Object(obj) = v else {
        return Err(format!(
            "must be an object like {}",
            &example[1..example.len() - 1]
        ));
    };
    check_fields(obj, &["dst", "gw"], &[])?;
    let dst = opt_string(obj, "dst", "\"10.0.0.0/16\"")?.ok_or_else(|| {
        "`dst` is missing: write the destination CIDR, e.g. \"10.0.0.0/16\"".to_string()
    })?;
    let gw = opt_string(obj, "gw", "\"192.168.1.1\"")?.ok_or_else(|| {
        "`gw` is missing: write the next-hop address, e.g. \"192.168.1.1\"".to_string()
    })?;
    let dst: ipnet::IpNet = dst.trim().parse().map_err(|_| {
        format!(
            "`dst` `{dst}` is not a CIDR: write an address and prefix length, e.g. \"10.0.0.0/16\""
        )
    })?;
    let gw: IpAddr = gw
        .trim()
        .parse()
        .map_err(|_| format!("`gw` `{gw}` is not an IP address: write e.g. \"192.168.1.1\""))?;
    if dst.addr().is_ipv4() != gw.is_ipv4() {
        return Err(format!(
            "`dst` `{dst}` and `gw` `{gw}` are of different IP families: use an {} gateway",
            if dst.addr().is_ipv4() { "IPv4" } else { "IPv6" }
        ));
    }
    Ok(Route { dst, gw })
}

// ---------------------------------------------------------------------------------------------
// Namespace defaults
// ---------------------------------------------------------------------------------------------

/// Parses a JSON list of pool names (Namespace default pools): valid names or wildcards, no
/// empty name, no duplicate. `[]` gives an empty list. `key` is only used in errors.
pub fn parse_pool_list(key: &str, value: &str) -> Result<Vec<String>, AnnotationError> {
    let v = parse_json(key, value, "[\"pool-a\", \"pool-b\"]")?;
    string_list(&v, None, "pool", validate_pool_name).map_err(|p| AnnotationError::new(key, p))
}

/// Reads a Namespace's default pools: `default-ipv4-ippool` / `default-ipv6-ippool`, else the
/// older `defaultv4ippool` / `defaultv6ippool`. An empty list counts as absent.
pub fn namespace_defaults(
    annotations: &BTreeMap<String, String>,
) -> Result<NamespaceDefaults, AnnotationError> {
    let read = |new: &str, old: &str| -> Result<Option<Vec<String>>, AnnotationError> {
        let found = match (annotations.get(new), annotations.get(old)) {
            (Some(v), _) => Some(parse_pool_list(new, v)?),
            (None, Some(v)) => Some(parse_pool_list(old, v)?),
            (None, None) => None,
        };
        Ok(found.filter(|l| !l.is_empty()))
    };
    Ok(NamespaceDefaults {
        ipv4: read(ANNO_NS_DEFAULT_IPV4_IPPOOL, ANNO_NS_DEFAULT_V4_IPPOOL_OLD)?,
        ipv6: read(ANNO_NS_DEFAULT_IPV6_IPPOOL, ANNO_NS_DEFAULT_V6_IPPOOL_OLD)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Pod
// ---------------------------------------------------------------------------------------------

/// Reads every IPAM annotation of a Pod. `ippools` wins over `ippool` and `subnets` over
/// `subnet`: the losing key is not read (as in Spiderpool), so it cannot cause an error.
pub fn pod_ipam_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<PodIpamAnnotations, AnnotationError> {
    let get = |k: &str| annotations.get(k).map(String::as_str);
    let ippools = get(ANNO_IPPOOLS).map(parse_ippools).transpose()?;
    let ippool = match ippools {
        Some(_) => None,
        None => get(ANNO_IPPOOL).map(parse_ippool).transpose()?,
    };
    let subnets = get(ANNO_SUBNETS).map(parse_subnets).transpose()?;
    let subnet = match subnets {
        Some(_) => None,
        None => get(ANNO_SUBNET).map(parse_subnet).transpose()?,
    };
    Ok(PodIpamAnnotations {
        ippools,
        ippool,
        subnets,
        subnet,
        ip_number: get(ANNO_IPPOOL_IP_NUMBER)
            .map(parse_ip_number)
            .transpose()?,
        reclaim: get(ANNO_IPPOOL_RECLAIM).map(parse_reclaim).transpose()?,
        routes: get(ANNO_ROUTES)
            .map(parse_routes)
            .transpose()?
            .unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------------------
// Multus
// ---------------------------------------------------------------------------------------------

/// Multus's test for the JSON form: the value contains `[`, `{` or `"`.
fn is_multus_json(value: &str) -> bool {
    value.contains(['[', '{', '"'])
}

fn multus_json(key: &str, value: &str) -> Result<Vec<NetworkSelection>, AnnotationError> {
    let example =
        "[{\"name\": \"macvlan-conf\", \"namespace\": \"default\", \"interface\": \"net1\"}]";
    let v = parse_json(key, value, example)?;
    let Value::Array(items) = v else {
        return Err(AnnotationError::new(
            key,
            format!("the JSON form must be a list of networks, e.g. {example}"),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        let e = |p: String| AnnotationError::new(key, format!("entry {n}: {p}"));
        let Value::Object(obj) = item else {
            return Err(e(format!(
                "must be an object like {}",
                &example[1..example.len() - 1]
            )));
        };
        // Multus defines many more fields (ips, mac, default-route, cni-args, …); they are not
        // the IPAM's business and are left alone.
        let name = opt_string(obj, "name", "\"macvlan-conf\"")
            .map_err(e)?
            .ok_or_else(|| {
                e("`name` is missing: write the NetworkAttachmentDefinition's name".into())
            })?;
        if !is_dns1123_subdomain(&name) {
            return Err(e(format!(
                "`name` `{name}` is not a valid NetworkAttachmentDefinition name (a lowercase RFC \
                 1123 subdomain)"
            )));
        }
        let namespace = opt_string(obj, "namespace", "\"default\"").map_err(e)?;
        if let Some(ns) = &namespace {
            if !is_dns1123_label(ns) {
                return Err(e(format!(
                    "`namespace` `{ns}` is not a valid namespace name (a lowercase RFC 1123 label)"
                )));
            }
        }
        let mut interface = opt_string(obj, "interface", "\"net1\"").map_err(e)?;
        if interface.is_none() {
            // Deprecated Multus spelling, still honoured by Multus.
            interface = opt_string(obj, "interfaceRequest", "\"net1\"").map_err(e)?;
        }
        if let Some(i) = &interface {
            validate_interface_name(i).map_err(e)?;
        }
        out.push(NetworkSelection {
            namespace,
            name,
            interface,
        });
    }
    Ok(out)
}

const MULTUS_ITEM_RULE: &str = "must consist of lowercase alphanumeric characters or '-', and \
                                start and end with an alphanumeric character (Multus's rule for \
                                the `namespace/name@interface` form; use the JSON form for other \
                                names)";

fn multus_item(key: &str, n: usize, raw: &str) -> Result<NetworkSelection, AnnotationError> {
    let item = raw.trim();
    let e = |p: String| AnnotationError::new(key, format!("item {n} `{item}`: {p}"));
    if item.is_empty() {
        return Err(AnnotationError::new(
            key,
            format!("item {n} is empty: remove the extra comma, or name a network there"),
        ));
    }
    let slash: Vec<&str> = item.split('/').collect();
    let (namespace, rest) = match slash.as_slice() {
        [rest] => (None, *rest),
        [ns, rest] => (Some(ns.trim()), *rest),
        _ => {
            return Err(e(
                "more than one '/': write `namespace/name@interface`".to_string()
            ))
        }
    };
    let at: Vec<&str> = rest.split('@').collect();
    let (name, interface) = match at.as_slice() {
        [name] => (name.trim(), None),
        [name, iface] => (name.trim(), Some(iface.trim())),
        _ => {
            return Err(e(
                "more than one '@': write `namespace/name@interface`".to_string()
            ))
        }
    };
    if namespace == Some("") {
        return Err(e("the namespace before '/' is empty".to_string()));
    }
    if name.is_empty() {
        return Err(e("the network name is empty".to_string()));
    }
    if interface == Some("") {
        return Err(e("the interface after '@' is empty".to_string()));
    }
    for (what, part) in [
        ("namespace", namespace),
        ("network name", Some(name)),
        ("interface", interface),
    ] {
        if let Some(p) = part {
            if !is_dns1123_label(p) {
                return Err(e(format!("{what} `{p}` {MULTUS_ITEM_RULE}")));
            }
        }
    }
    if let Some(i) = interface {
        validate_interface_name(i).map_err(e)?;
    }
    Ok(NetworkSelection {
        namespace: namespace.map(str::to_string),
        name: name.to_string(),
        interface: interface.map(str::to_string),
    })
}

fn multus_any(key: &str, value: &str) -> Result<Vec<NetworkSelection>, AnnotationError> {
    if value.trim().is_empty() {
        return Err(AnnotationError::new(
            key,
            "the value is empty: name networks as `namespace/name@interface`, comma-separated, \
             or as a JSON list like [{\"name\": \"macvlan-conf\"}]",
        ));
    }
    if is_multus_json(value) {
        return multus_json(key, value);
    }
    value
        .split(',')
        .enumerate()
        .map(|(i, item)| multus_item(key, i + 1, item))
        .collect()
}

/// Parses `k8s.v1.cni.cncf.io/networks`, either `ns/name@iface, name, …` or a JSON list of
/// network selection elements (`name`, `namespace`, `interface`; other Multus fields are
/// ignored). No interface may be requested twice.
pub fn parse_multus_networks(value: &str) -> Result<Vec<NetworkSelection>, AnnotationError> {
    let key = MULTUS_NETWORKS;
    let nets = multus_any(key, value)?;
    let mut seen = BTreeSet::new();
    for n in &nets {
        if let Some(i) = &n.interface {
            if !seen.insert(i.as_str()) {
                return Err(AnnotationError::new(
                    key,
                    format!("interface `{i}` appears twice"),
                ));
            }
        }
    }
    Ok(nets)
}

/// Parses `v1.multus-cni.io/default-network`: exactly one network, either form.
pub fn parse_multus_default_network(value: &str) -> Result<NetworkSelection, AnnotationError> {
    let key = MULTUS_DEFAULT_NETWORK;
    let mut nets = multus_any(key, value)?;
    match nets.len() {
        1 => Ok(nets.remove(0)),
        0 => Err(AnnotationError::new(
            key,
            "no network is named: write exactly one, e.g. `kube-system/calico`",
        )),
        n => Err(AnnotationError::new(
            key,
            format!("{n} networks are named: the default network is exactly one"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: &str = "annotation ipam.spidernet.io/ippool: ";
    const PS: &str = "annotation ipam.spidernet.io/ippools: ";
    const NAME_RULE: &str = "a pool name is a lowercase RFC 1123 subdomain (lowercase letters, \
                             digits, '-' and '.', starting and ending with a letter or digit, at \
                             most 253 characters), or a wildcard pattern using `*`, `?` or `[...]`";

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn pr(iface: Option<&str>, v4: &[&str], v6: &[&str], cg: Option<bool>) -> PoolRequest {
        PoolRequest {
            interface: iface.map(str::to_string),
            ipv4: strs(v4),
            ipv6: strs(v6),
            clean_gateway: cg,
        }
    }

    fn annos(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err_text<T: std::fmt::Debug>(r: Result<T, AnnotationError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn ippool_good() {
        let cases: Vec<(&str, PoolRequest)> = vec![
            (r#"{"ipv4": ["a"]}"#, pr(None, &["a"], &[], None)),
            (
                r#"{"ipv4": ["a", "backup"], "ipv6": ["v6-a"]}"#,
                pr(None, &["a", "backup"], &["v6-a"], None),
            ),
            (
                r#"{"ipv6": ["b"], "ipv4": []}"#,
                pr(None, &[], &["b"], None),
            ),
            (
                r#"{"interface": "eth0", "ipv4pools": ["a"], "ipv6pools": ["b"]}"#,
                pr(Some("eth0"), &["a"], &["b"], None),
            ),
            (
                r#"{"ipv4": ["a"], "ipv6": null}"#,
                pr(None, &["a"], &[], None),
            ),
            (
                r#"{"ipv4": ["pool-*", "p[0-9]?", "x.y"]}"#,
                pr(None, &["pool-*", "p[0-9]?", "x.y"], &[], None),
            ),
        ];
        for (v, want) in cases {
            assert_eq!(parse_ippool(v), Ok(want), "{v}");
        }
    }

    #[test]
    fn ippool_bad() {
        let cases: Vec<(&str, String)> = vec![
            (
                "",
                r#"the value is empty: write JSON like {"ipv4": ["pool-a"]}"#.into(),
            ),
            (
                r#"{"ipv4": ["a"] "ipv6": []}"#,
                "invalid JSON at line 1 column 16: expected `,` or `}`".into(),
            ),
            (
                r#"{"ipv4": ["a"],}"#,
                "invalid JSON at line 1 column 16: trailing comma".into(),
            ),
            (
                r#"{"ipv4pool": ["a"]}"#,
                "unknown field `ipv4pool`, expected one of `interface`, `ipv4`, `ipv6`".into(),
            ),
            (
                r#"{"ipv4": ["a"], "ipv4pools": ["b"]}"#,
                "both `ipv4` and `ipv4pools` are set: they mean the same thing, keep only `ipv4`"
                    .into(),
            ),
            (
                r#"{"ipv6": ["a"], "ipv6pools": ["b"]}"#,
                "both `ipv6` and `ipv6pools` are set: they mean the same thing, keep only `ipv6`"
                    .into(),
            ),
            (
                "{}",
                "pool list is empty: name at least one IPv4 or IPv6 pool".into(),
            ),
            (
                r#"{"ipv4": []}"#,
                "pool list is empty: name at least one IPv4 or IPv6 pool".into(),
            ),
            (
                "[]",
                r#"must be a JSON object like {"ipv4": ["pool-a"], "ipv6": ["pool-b"]}"#.into(),
            ),
            (
                r#"{"ipv4": "a"}"#,
                r#"`ipv4` must be a list of pool names, e.g. ["pool-a", "pool-b"]"#.into(),
            ),
            (
                r#"{"ipv4": [1]}"#,
                "`ipv4`: entry 1 must be a string (a pool name)".into(),
            ),
            (
                r#"{"ipv4": [""]}"#,
                "`ipv4`: an empty pool name is listed: remove it or write the pool's name".into(),
            ),
            (
                r#"{"ipv6": ["Bad_Pool"]}"#,
                format!("`ipv6`: `Bad_Pool` is not a valid pool name: {NAME_RULE}"),
            ),
            (
                r#"{"ipv4": ["a", "b", "a"]}"#,
                "`ipv4`: pool `a` is listed twice".into(),
            ),
            (
                r#"{"ipv4": ["pool-]x["]}"#,
                "`ipv4`: `pool-]x[` is not a valid wildcard pattern: a `[` is not closed by `]`"
                    .into(),
            ),
            (
                r#"{"ipv4": ["a[z-a]"]}"#,
                "`ipv4`: `a[z-a]` is not a valid wildcard pattern: the range `z-a` is backwards"
                    .into(),
            ),
            (
                r#"{"ipv4": ["Pool*"]}"#,
                "`ipv4`: `Pool*` can never match a pool: pool names have no `P` (only lowercase \
                 letters, digits, '-' and '.')"
                    .into(),
            ),
            (
                r#"{"interface": "", "ipv4": ["a"]}"#,
                r#"the interface name is empty: write it, e.g. "eth0" or "net1""#.into(),
            ),
            (
                r#"{"interface": "averyveryverylongname", "ipv4": ["a"]}"#,
                "interface name `averyveryverylongname` is longer than 15 characters (Linux limit)"
                    .into(),
            ),
            (
                r#"{"interface": "eth 0", "ipv4": ["a"]}"#,
                "interface name `eth 0` contains whitespace, which Linux does not allow".into(),
            ),
            (
                r#"{"interface": "a/b", "ipv4": ["a"]}"#,
                "interface name `a/b` contains `/`, which Linux does not allow".into(),
            ),
            (
                r#"{"interface": 5, "ipv4": ["a"]}"#,
                r#"`interface` must be a string, e.g. "eth0""#.into(),
            ),
            (
                r#"{"cleangateway": true, "ipv4": ["a"]}"#,
                "unknown field `cleangateway`, expected one of `interface`, `ipv4`, `ipv6`".into(),
            ),
        ];
        for (v, problem) in cases {
            assert_eq!(err_text(parse_ippool(v)), format!("{P}{problem}"), "{v}");
        }
        // The brief's own wording for a broken object.
        assert_eq!(
            err_text(parse_ippool(r#"{"ipv4":["a"] x"#)),
            format!("{P}invalid JSON at line 1 column 15: expected `,` or `}}`")
        );
    }

    #[test]
    fn ippools_good() {
        let cases: Vec<(&str, Vec<PoolRequest>)> = vec![
            (
                r#"[{"interface":"eth0","ipv4":["a"],"ipv6":["b"],"cleangateway":true},
                    {"interface":"net1","ipv4":["c"],"cleangateway":false}]"#,
                vec![
                    pr(Some("eth0"), &["a"], &["b"], Some(true)),
                    pr(Some("net1"), &["c"], &[], Some(false)),
                ],
            ),
            (
                r#"[{"interface":"eth0","ipv4pools":["a"],"defaultRoute":true},
                    {"interface":"eth1","ipv6pools":["b"],"defaultRoute":false}]"#,
                vec![
                    pr(Some("eth0"), &["a"], &[], Some(false)),
                    pr(Some("eth1"), &[], &["b"], Some(true)),
                ],
            ),
            (
                r#"[{"ipv4":["a"]},{"ipv4":["b"],"cleangateway":true}]"#,
                vec![
                    pr(None, &["a"], &[], None),
                    pr(None, &["b"], &[], Some(true)),
                ],
            ),
            // The same pool may serve two interfaces; only interfaces must differ.
            (
                r#"[{"interface":"eth0","ipv4":["a"]},{"interface":"net1","ipv4":["a"]}]"#,
                vec![
                    pr(Some("eth0"), &["a"], &[], None),
                    pr(Some("net1"), &["a"], &[], None),
                ],
            ),
        ];
        for (v, want) in cases {
            assert_eq!(parse_ippools(v), Ok(want), "{v}");
        }
    }

    #[test]
    fn ippools_bad() {
        let cases: Vec<(&str, &str)> = vec![
            (
                "[]",
                r#"the list is empty: add one entry per interface, e.g. [{"interface": "eth0", "ipv4": ["pool-a"]}]"#,
            ),
            (
                "{}",
                r#"must be a JSON list, one entry per interface, e.g. [{"interface": "eth0", "ipv4": ["pool-a"]}]"#,
            ),
            (
                r#"[{"interface":"eth0","ipv4":["a"]},{"ipv4":["b"]}]"#,
                "entry 2 has no `interface`: name the interface in every entry, or in none \
                 (entries are then given to the Pod's interfaces in order)",
            ),
            (
                r#"[{"interface":"eth0","ipv4":["a"]},{"interface":"eth0","ipv4":["b"]}]"#,
                "interface `eth0` appears twice",
            ),
            (
                r#"[{"interface":"eth0","ipv4pool":["a"]}]"#,
                "entry 1: unknown field `ipv4pool`, expected one of `interface`, `ipv4`, `ipv6`, \
                 `cleangateway`",
            ),
            (
                r#"[{"interface":"eth0","ipv4":["a"],"cleangateway":true,"defaultRoute":true}]"#,
                "entry 1: both `cleangateway` and `defaultRoute` are set: keep only \
                 `cleangateway` (`defaultRoute: true` is `cleangateway: false`)",
            ),
            (
                r#"[{"interface":"eth0","ipv4":["a"],"cleangateway":"yes"}]"#,
                "entry 1: `cleangateway` must be true or false (without quotes)",
            ),
            (
                r#"[{"interface":"eth0","ipv4":["a"]},{"interface":"net1"}]"#,
                "entry 2: pool list is empty: name at least one IPv4 or IPv6 pool",
            ),
            (
                "[1]",
                r#"entry 1: must be an object like {"interface": "eth0", "ipv4": ["pool-a"]}"#,
            ),
            (
                r#"[{"interface":"eth0","ipv4":["a"],"ipv4pools":["a"]}]"#,
                "entry 1: both `ipv4` and `ipv4pools` are set: they mean the same thing, keep \
                 only `ipv4`",
            ),
            (
                "[",
                "invalid JSON at line 1 column 1: EOF while parsing a list",
            ),
        ];
        for (v, problem) in cases {
            assert_eq!(err_text(parse_ippools(v)), format!("{PS}{problem}"), "{v}");
        }
    }

    #[test]
    fn subnet_and_subnets() {
        let sr = |i: Option<&str>, v4: &[&str], v6: &[&str]| SubnetRequest {
            interface: i.map(str::to_string),
            ipv4: strs(v4),
            ipv6: strs(v6),
        };
        assert_eq!(
            parse_subnet(r#"{"ipv4":["s4"],"ipv6":["s6"]}"#),
            Ok(sr(None, &["s4"], &["s6"]))
        );
        assert_eq!(
            parse_subnet(r#"{"interface":"net1","ipv4":["s4","s5"]}"#),
            Ok(sr(Some("net1"), &["s4", "s5"], &[]))
        );
        assert_eq!(
            parse_subnets(
                r#"[{"interface":"eth0","ipv4":["a"]},{"interface":"net1","ipv4":["b"],"ipv6":["c"]}]"#
            ),
            Ok(vec![
                sr(Some("eth0"), &["a"], &[]),
                sr(Some("net1"), &["b"], &["c"])
            ])
        );
        let s1 = "annotation ipam.spidernet.io/subnet: ";
        let sn = "annotation ipam.spidernet.io/subnets: ";
        let cases: Vec<(Result<(), AnnotationError>, String)> = vec![
            (
                parse_subnet("{}").map(drop),
                format!("{s1}subnet list is empty: name at least one IPv4 or IPv6 subnet"),
            ),
            (
                parse_subnet(r#"{"ipv4pools":["s"]}"#).map(drop),
                format!("{s1}unknown field `ipv4pools`, expected one of `interface`, `ipv4`, `ipv6`"),
            ),
            (
                parse_subnets(r#"[{"interface":"eth0","ipv4":["s"]},{"interface":"net1","ipv4":["s"]}]"#).map(drop),
                format!("{sn}subnet `s` is used by two interfaces (`eth0` and `net1`): each interface needs its own subnet"),
            ),
            (
                parse_subnets(r#"[{"ipv4":["s"]}]"#).map(drop),
                format!("{sn}entry 1 has no `interface`: every entry must name its interface"),
            ),
            (
                parse_subnets(r#"[{"interface":"eth0","ipv4":["s*"]}]"#).map(drop),
                format!(
                    "{sn}entry 1: `ipv4`: `s*` is not a valid subnet name: a SpiderSubnet name is a \
                     lowercase RFC 1123 subdomain (lowercase letters, digits, '-' and '.', starting \
                     and ending with a letter or digit, at most 253 characters); wildcards are not \
                     supported for subnets"
                ),
            ),
            (
                parse_subnets(r#"[{"interface":"eth0","ipv4":["s"]},{"interface":"eth0","ipv6":["t"]}]"#).map(drop),
                format!("{sn}interface `eth0` appears twice"),
            ),
            (
                parse_subnets("[]").map(drop),
                format!(r#"{sn}the list is empty: add one entry per interface, e.g. [{{"interface": "eth0", "ipv4": ["subnet-a"]}}]"#),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got.unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn ip_number_table() {
        let good = [
            ("5", IpNumber::Fixed(5)),
            ("+2", IpNumber::Flexible(2)),
            ("+0", IpNumber::Flexible(0)),
            (" 3 ", IpNumber::Fixed(3)),
        ];
        for (v, want) in good {
            assert_eq!(parse_ip_number(v), Ok(want), "{v}");
        }
        let hint = "write a number of addresses like `5` (fixed) or `+2` (the application's \
                    replicas plus 2)";
        let k = "annotation ipam.spidernet.io/ippool-ip-number: ";
        for v in ["-1", "++1", "a", "", "1+", "+", "1.5"] {
            assert_eq!(
                err_text(parse_ip_number(v)),
                format!("{k}`{v}` is not a pool size: {hint}"),
                "{v}"
            );
        }
        assert_eq!(
            err_text(parse_ip_number("99999999999999999999999")),
            format!("{k}`99999999999999999999999` is too large: {hint}")
        );
        assert_eq!(
            err_text(parse_ip_number("0")),
            format!(
                "{k}a fixed pool of 0 addresses cannot serve any Pod: write a positive number, or \
                 `+0` for exactly as many addresses as replicas"
            )
        );
        assert_eq!(IpNumber::default(), IpNumber::Flexible(1));
        assert_eq!(IpNumber::Flexible(2).desired(3), 5);
        assert_eq!(IpNumber::Fixed(2).desired(3), 2);
    }

    #[test]
    fn reclaim_table() {
        for v in ["true", "True", "TRUE", "t", "T", "1"] {
            assert_eq!(parse_reclaim(v), Ok(true), "{v}");
        }
        for v in ["false", "False", "FALSE", "f", "F", "0"] {
            assert_eq!(parse_reclaim(v), Ok(false), "{v}");
        }
        for v in ["yes", "", " true", "tRUE"] {
            assert_eq!(
                err_text(parse_reclaim(v)),
                format!(
                    "annotation ipam.spidernet.io/ippool-reclaim: `{v}` is not a boolean: write \
                     `true` or `false`"
                )
            );
        }
    }

    #[test]
    fn routes_table() {
        let r = |d: &str, g: &str| Route {
            dst: d.parse().unwrap(),
            gw: g.parse().unwrap(),
        };
        assert_eq!(parse_routes("[]"), Ok(vec![]));
        assert_eq!(
            parse_routes(
                r#"[{"dst":"10.0.0.0/16","gw":"192.168.1.1"},{"dst":"fd00::/64","gw":"fd01::1"}]"#
            ),
            Ok(vec![
                r("10.0.0.0/16", "192.168.1.1"),
                r("fd00::/64", "fd01::1")
            ])
        );
        let k = "annotation ipam.spidernet.io/routes: ";
        let cases = [
            (
                r#"[{"dst":"10.0.0.0/16"}]"#,
                r#"entry 1: `gw` is missing: write the next-hop address, e.g. "192.168.1.1""#,
            ),
            (
                r#"[{"gw":"1.1.1.1"}]"#,
                r#"entry 1: `dst` is missing: write the destination CIDR, e.g. "10.0.0.0/16""#,
            ),
            (
                r#"[{"dst":"10.0.0.0","gw":"1.1.1.1"}]"#,
                r#"entry 1: `dst` `10.0.0.0` is not a CIDR: write an address and prefix length, e.g. "10.0.0.0/16""#,
            ),
            (
                r#"[{"dst":"10.0.0.0/16","gw":"fd00::1"}]"#,
                "entry 1: `dst` `10.0.0.0/16` and `gw` `fd00::1` are of different IP families: \
                 use an IPv4 gateway",
            ),
            (
                r#"[{"dst":"10.0.0.0/16","gw":"x"}]"#,
                r#"entry 1: `gw` `x` is not an IP address: write e.g. "192.168.1.1""#,
            ),
            (
                r#"[{"interface":"eth0","dst":"10.0.0.0/16","gw":"1.1.1.1"}]"#,
                "entry 1: unknown field `interface`, expected one of `dst`, `gw`",
            ),
            (
                r#"[{"dst":"10.0.0.0/16","gw":"1.1.1.1"},{"dst":"10.0.0.0/16","gw":"1.1.1.2"}]"#,
                "entry 2: destination `10.0.0.0/16` is given twice; keep one route per destination",
            ),
            (
                "{}",
                r#"must be a JSON list of routes, e.g. [{"dst": "10.0.0.0/16", "gw": "192.168.1.1"}]"#,
            ),
            (
                "[3]",
                r#"entry 1: must be an object like {"dst": "10.0.0.0/16", "gw": "192.168.1.1"}"#,
            ),
        ];
        for (v, problem) in cases {
            assert_eq!(err_text(parse_routes(v)), format!("{k}{problem}"), "{v}");
        }
        // serde form of Route is the annotation's.
        let json = serde_json::to_string(&r("10.0.0.0/16", "192.168.1.1")).unwrap();
        assert_eq!(json, r#"{"dst":"10.0.0.0/16","gw":"192.168.1.1"}"#);
    }

    #[test]
    fn pool_list_table() {
        let k = ANNO_NS_DEFAULT_IPV4_IPPOOL;
        assert_eq!(parse_pool_list(k, "[]"), Ok(vec![]));
        assert_eq!(parse_pool_list(k, r#"["a","b*"]"#), Ok(strs(&["a", "b*"])));
        let cases = [
            (r#"["a","a"]"#, "pool `a` is listed twice"),
            (
                r#"[""]"#,
                "an empty pool name is listed: remove it or write the pool's name",
            ),
            (
                r#"{"a":1}"#,
                r#"must be a list of pool names, e.g. ["pool-a", "pool-b"]"#,
            ),
            (r#"[null]"#, "entry 1 must be a string (a pool name)"),
            ("a,b", "invalid JSON at line 1 column 1: expected value"),
        ];
        for (v, problem) in cases {
            assert_eq!(
                err_text(parse_pool_list(k, v)),
                format!("annotation {k}: {problem}"),
                "{v}"
            );
        }
    }

    #[test]
    fn namespace_defaults_precedence() {
        let a = annos(&[
            (ANNO_NS_DEFAULT_IPV4_IPPOOL, r#"["new4"]"#),
            (ANNO_NS_DEFAULT_V4_IPPOOL_OLD, r#"["old4"]"#),
            (ANNO_NS_DEFAULT_V6_IPPOOL_OLD, r#"["old6"]"#),
        ]);
        assert_eq!(
            namespace_defaults(&a),
            Ok(NamespaceDefaults {
                ipv4: Some(strs(&["new4"])),
                ipv6: Some(strs(&["old6"])),
            })
        );
        assert_eq!(
            namespace_defaults(&BTreeMap::new()),
            Ok(NamespaceDefaults::default())
        );
        // An empty list counts as absent; the old key is not consulted then.
        let a = annos(&[
            (ANNO_NS_DEFAULT_IPV6_IPPOOL, "[]"),
            (ANNO_NS_DEFAULT_V6_IPPOOL_OLD, r#"["old6"]"#),
        ]);
        assert_eq!(namespace_defaults(&a), Ok(NamespaceDefaults::default()));
        // A broken old key is ignored when the new key is present, reported otherwise.
        let a = annos(&[
            (ANNO_NS_DEFAULT_IPV4_IPPOOL, r#"["a"]"#),
            (ANNO_NS_DEFAULT_V4_IPPOOL_OLD, "garbage"),
        ]);
        assert!(namespace_defaults(&a).is_ok());
        let a = annos(&[(ANNO_NS_DEFAULT_V4_IPPOOL_OLD, r#"["A"]"#)]);
        assert_eq!(
            err_text(namespace_defaults(&a)),
            format!("annotation ipam.spidernet.io/defaultv4ippool: `A` is not a valid pool name: {NAME_RULE}")
        );
    }

    #[test]
    fn pod_precedence() {
        let a = annos(&[
            (ANNO_IPPOOLS, r#"[{"interface":"eth0","ipv4":["many"]}]"#),
            (ANNO_IPPOOL, "not even json"),
            (ANNO_SUBNETS, r#"[{"interface":"eth0","ipv4":["s"]}]"#),
            (ANNO_SUBNET, "{}"),
            (ANNO_IPPOOL_IP_NUMBER, "+3"),
            (ANNO_IPPOOL_RECLAIM, "false"),
            (ANNO_ROUTES, r#"[{"dst":"10.0.0.0/8","gw":"10.1.0.1"}]"#),
            ("unrelated/key", "x"),
        ]);
        let got = pod_ipam_annotations(&a).unwrap();
        assert_eq!(
            got.ippools,
            Some(vec![pr(Some("eth0"), &["many"], &[], None)])
        );
        assert_eq!(got.ippool, None);
        assert_eq!(got.subnets.as_ref().map(Vec::len), Some(1));
        assert_eq!(got.subnet, None);
        assert_eq!(got.ip_number, Some(IpNumber::Flexible(3)));
        assert_eq!(got.reclaim, Some(false));
        assert_eq!(got.routes.len(), 1);

        let a = annos(&[
            (ANNO_IPPOOL, r#"{"ipv4":["one"]}"#),
            (ANNO_SUBNET, r#"{"ipv6":["s6"]}"#),
        ]);
        let got = pod_ipam_annotations(&a).unwrap();
        assert_eq!(got.ippools, None);
        assert_eq!(got.ippool, Some(pr(None, &["one"], &[], None)));
        assert_eq!(got.subnets, None);
        assert_eq!(got.subnet.map(|s| s.ipv6), Some(strs(&["s6"])));
        assert_eq!(got.ip_number, None);
        assert_eq!(got.reclaim, None);
        assert!(got.routes.is_empty());

        assert_eq!(
            pod_ipam_annotations(&BTreeMap::new()),
            Ok(PodIpamAnnotations::default())
        );
        let a = annos(&[(ANNO_IPPOOL_RECLAIM, "maybe")]);
        assert_eq!(
            pod_ipam_annotations(&a).unwrap_err().key,
            ANNO_IPPOOL_RECLAIM
        );
    }

    #[test]
    fn multus_table() {
        let ns = |n: Option<&str>, name: &str, i: Option<&str>| NetworkSelection {
            namespace: n.map(str::to_string),
            name: name.to_string(),
            interface: i.map(str::to_string),
        };
        let good: Vec<(&str, Vec<NetworkSelection>)> = vec![
            ("macvlan", vec![ns(None, "macvlan", None)]),
            (
                "ns1/macvlan@net1, other",
                vec![
                    ns(Some("ns1"), "macvlan", Some("net1")),
                    ns(None, "other", None),
                ],
            ),
            (
                r#"[{"name":"m","interface":"net1"},{"name":"n.x","namespace":"x","interfaceRequest":"net2"}]"#,
                vec![
                    ns(None, "m", Some("net1")),
                    ns(Some("x"), "n.x", Some("net2")),
                ],
            ),
            (
                r#"[{"name":"a","ips":["1.2.3.4/24"],"mac":"c2:11:22:33:44:55","default-route":["1.1.1.1"]}]"#,
                vec![ns(None, "a", None)],
            ),
            ("[]", vec![]),
        ];
        for (v, want) in good {
            assert_eq!(parse_multus_networks(v), Ok(want), "{v}");
        }
        let rule = "must consist of lowercase alphanumeric characters or '-', and start and end \
                    with an alphanumeric character (Multus's rule for the \
                    `namespace/name@interface` form; use the JSON form for other names)";
        let bad: Vec<(&str, String)> = vec![
            ("a/b/c", "item 1 `a/b/c`: more than one '/': write `namespace/name@interface`".into()),
            ("a@b@c", "item 1 `a@b@c`: more than one '@': write `namespace/name@interface`".into()),
            ("x, Mac", format!("item 2 `Mac`: network name `Mac` {rule}")),
            ("a@eth0.100", format!("item 1 `a@eth0.100`: interface `eth0.100` {rule}")),
            ("a,,b", "item 2 is empty: remove the extra comma, or name a network there".into()),
            ("a,", "item 2 is empty: remove the extra comma, or name a network there".into()),
            ("/a", "item 1 `/a`: the namespace before '/' is empty".into()),
            ("a@", "item 1 `a@`: the interface after '@' is empty".into()),
            ("ns/@x", "item 1 `ns/@x`: the network name is empty".into()),
            (
                "a@averyveryverylongname",
                "item 1 `a@averyveryverylongname`: interface name `averyveryverylongname` is \
                 longer than 15 characters (Linux limit)"
                    .into(),
            ),
            (
                "",
                r#"the value is empty: name networks as `namespace/name@interface`, comma-separated, or as a JSON list like [{"name": "macvlan-conf"}]"#.into(),
            ),
            (
                r#"[{"namespace":"x"}]"#,
                "entry 1: `name` is missing: write the NetworkAttachmentDefinition's name".into(),
            ),
            (
                r#"{"name":"x"}"#,
                r#"the JSON form must be a list of networks, e.g. [{"name": "macvlan-conf", "namespace": "default", "interface": "net1"}]"#.into(),
            ),
            ("a@net1,b@net1", "interface `net1` appears twice".into()),
            (
                r#"[{"name":"Bad"}]"#,
                "entry 1: `name` `Bad` is not a valid NetworkAttachmentDefinition name (a \
                 lowercase RFC 1123 subdomain)"
                    .into(),
            ),
            (
                r#"[{"name":"a","namespace":"a.b"}]"#,
                "entry 1: `namespace` `a.b` is not a valid namespace name (a lowercase RFC 1123 \
                 label)"
                    .into(),
            ),
            (r#"[{"name":"a""#, "invalid JSON at line 1 column 12: EOF while parsing an object".into()),
        ];
        for (v, problem) in bad {
            assert_eq!(
                err_text(parse_multus_networks(v)),
                format!("annotation k8s.v1.cni.cncf.io/networks: {problem}"),
                "{v}"
            );
        }
    }

    #[test]
    fn multus_default_table() {
        assert_eq!(
            parse_multus_default_network("kube-system/calico"),
            Ok(NetworkSelection {
                namespace: Some("kube-system".into()),
                name: "calico".into(),
                interface: None
            })
        );
        assert_eq!(
            parse_multus_default_network(r#"[{"name":"calico"}]"#).map(|n| n.name),
            Ok("calico".to_string())
        );
        let k = "annotation v1.multus-cni.io/default-network: ";
        assert_eq!(
            err_text(parse_multus_default_network("a,b")),
            format!("{k}2 networks are named: the default network is exactly one")
        );
        assert_eq!(
            err_text(parse_multus_default_network("[]")),
            format!("{k}no network is named: write exactly one, e.g. `kube-system/calico`")
        );
    }

    #[test]
    fn wildcards() {
        for (p, yes) in [
            ("pool-*", true),
            ("p?", true),
            ("p[ab]", true),
            ("plain", false),
            ("p[", false),
            ("p]", false),
        ] {
            assert_eq!(is_wildcard(p), yes, "{p}");
        }
        let cases = [
            ("pool-*", "pool-a", true),
            ("pool-*", "pool-", true),
            ("pool-*", "pool", false),
            ("pool-?", "pool-ab", false),
            ("pool-?", "pool-a", true),
            ("p[a-c]", "pb", true),
            ("p[^a-c]", "pb", false),
            ("p[^a-c]", "pd", true),
            ("*", "", true),
            ("*", "anything.at-all", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*b", "ab", true),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("v4-[0-9][0-9]", "v4-42", true),
            ("p[", "p[", false),
            ("[]", "x", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(wildcard_match(p, n), want, "{p} vs {n}");
        }
        assert!(validate_pool_name("pool-[0-9]*").is_ok());
        assert!(validate_pool_name(&"a".repeat(253)).is_ok());
        assert!(validate_pool_name(&"a".repeat(254)).is_err());
        assert!(validate_interface_name(".").is_err());
        assert!(validate_interface_name("eth0:1").is_err());
        assert!(validate_interface_name("123456789012345").is_ok());
    }

    #[test]
    fn format_examples() {
        assert_eq!(
            format_ippool(&pr(Some("eth0"), &["a"], &["b"], Some(true))),
            r#"{"interface":"eth0","ipv4":["a"],"ipv6":["b"]}"#
        );
        assert_eq!(
            format_ippools(&[pr(Some("eth0"), &["a"], &[], Some(false))]),
            r#"[{"cleangateway":false,"interface":"eth0","ipv4":["a"]}]"#
        );
        let s = SubnetRequest {
            interface: Some("net1".into()),
            ipv4: strs(&["s"]),
            ipv6: vec![],
        };
        assert_eq!(parse_subnet(&format_subnet(&s)), Ok(s.clone()));
        assert_eq!(
            parse_subnets(&format_subnets(std::slice::from_ref(&s))),
            Ok(vec![s])
        );
    }

    // ---- property tests ----

    fn pool_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,5}){0,2}",
            "[a-z]{1,6}-\\*",
            "[a-z]{1,4}\\?[0-9]",
            "[a-z]{1,4}\\[0-9\\]",
        ]
    }

    fn pool_names() -> impl Strategy<Value = Vec<String>> {
        prop::collection::btree_set(pool_name(), 0..4).prop_map(|s| s.into_iter().collect())
    }

    fn interface() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9._-]{0,14}".prop_filter("not . or ..", |s| s != "." && s != "..")
    }

    fn families() -> impl Strategy<Value = (Vec<String>, Vec<String>)> {
        (pool_names(), pool_names())
            .prop_filter("at least one pool", |(a, b)| !a.is_empty() || !b.is_empty())
    }

    fn single_request() -> impl Strategy<Value = PoolRequest> {
        (prop::option::of(interface()), families()).prop_map(|(interface, (ipv4, ipv6))| {
            PoolRequest {
                interface,
                ipv4,
                ipv6,
                clean_gateway: None,
            }
        })
    }

    fn request_list() -> impl Strategy<Value = Vec<PoolRequest>> {
        (
            any::<bool>(),
            prop::collection::btree_set(interface(), 1..4),
        )
            .prop_flat_map(|(named, ifaces)| {
                let n = ifaces.len();
                let ifaces: Vec<String> = ifaces.into_iter().collect();
                prop::collection::vec((families(), prop::option::of(any::<bool>())), n).prop_map(
                    move |entries| {
                        entries
                            .into_iter()
                            .zip(ifaces.iter())
                            .map(|(((ipv4, ipv6), clean_gateway), i)| PoolRequest {
                                interface: named.then(|| i.clone()),
                                ipv4,
                                ipv6,
                                clean_gateway,
                            })
                            .collect()
                    },
                )
            })
    }

    proptest! {
        #[test]
        fn ippool_round_trip(req in single_request()) {
            prop_assert_eq!(parse_ippool(&format_ippool(&req)), Ok(req));
        }

        #[test]
        fn ippools_round_trip(reqs in request_list()) {
            prop_assert_eq!(parse_ippools(&format_ippools(&reqs)), Ok(reqs));
        }

        #[test]
        fn wildcard_equals_naive(p in "[ab*?]{0,8}", n in "[ab]{0,8}") {
            fn naive(p: &[char], n: &[char]) -> bool {
                match p.split_first() {
                    None => n.is_empty(),
                    Some(('*', rest)) => (0..=n.len()).any(|k| naive(rest, &n[k..])),
                    Some(('?', rest)) => !n.is_empty() && naive(rest, &n[1..]),
                    Some((c, rest)) => n.first() == Some(c) && naive(rest, &n[1..]),
                }
            }
            let pc: Vec<char> = p.chars().collect();
            let nc: Vec<char> = n.chars().collect();
            prop_assert_eq!(wildcard_match(&p, &n), naive(&pc, &nc));
        }

        #[test]
        fn wildcard_star_matches_prefix(prefix in "[a-z]{1,5}", rest in "[a-z0-9-]{0,8}") {
            let pattern = format!("{prefix}*");
            let name = format!("{prefix}{rest}");
            prop_assert!(wildcard_match(&pattern, &name));
        }

        #[test]
        fn parsers_never_panic(s in ".{0,60}") {
            let _ = parse_ippool(&s);
            let _ = parse_ippools(&s);
            let _ = parse_subnet(&s);
            let _ = parse_subnets(&s);
            let _ = parse_ip_number(&s);
            let _ = parse_reclaim(&s);
            let _ = parse_routes(&s);
            let _ = parse_pool_list("k", &s);
            let _ = parse_multus_networks(&s);
            let _ = parse_multus_default_network(&s);
            let _ = wildcard_match(&s, "pool-a");
            let _ = validate_pool_name(&s);
        }

        #[test]
        fn json_shaped_input_never_panics(
            s in r#"[\[\]{}",:a-z0-9*?\\/@ -]{0,50}"#,
            key in prop::sample::select(vec!["interface", "ipv4", "ipv6", "cleangateway", "dst", "gw", "name"]),
        ) {
            let wrapped = [format!("{{\"{key}\":{s}}}"), format!("[{{\"{key}\":{s}}}]"), s.clone()];
            for w in &wrapped {
                let _ = parse_ippool(w);
                let _ = parse_ippools(w);
                let _ = parse_subnets(w);
                let _ = parse_routes(w);
                let _ = parse_multus_networks(w);
                let _ = parse_multus_default_network(w);
            }
        }
    }
}
