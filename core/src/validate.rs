//! Validation of SpiderIPPool, SpiderSubnet and SpiderReservedIP specs: what the webhook
//! refuses and what `aipamctl validate` reports offline, with the same rules.
//!
//! Each spec comes in as a *draft*: the fields as the user wrote them (strings). Validation
//! parses them into the model ([`Pool`]) or returns every field error found, each naming the
//! field path as Kubernetes does (`spec.ips[2]`) and saying what to write instead.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::annotations::Route;
use crate::labels::{LabelSelector, SelectorError};
use crate::model::{Labels, Pool};
use crate::names::{is_dns1123_subdomain, DNS1123_SUBDOMAIN_MAX_LEN};
use crate::ranges::{IpFamily, IpRange, IpSet};

/// A SpiderIPPool spec as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolDraft {
    /// `metadata.name`.
    pub name: String,
    /// `spec.ipVersion` (4 or 6; inferred from the subnet when absent, as Spiderpool does).
    pub ip_version: Option<i64>,
    /// `spec.subnet`.
    pub subnet: String,
    /// `spec.ips`.
    pub ips: Vec<String>,
    /// `spec.excludeIPs`.
    pub exclude_ips: Vec<String>,
    /// `spec.gateway`.
    pub gateway: Option<String>,
    /// `spec.vlan`.
    pub vlan: Option<i64>,
    /// `spec.routes` as (dst, gw).
    pub routes: Vec<(String, String)>,
    /// `spec.podAffinity`.
    pub pod_affinity: Option<LabelSelector>,
    /// `spec.namespaceAffinity`.
    pub namespace_affinity: Option<LabelSelector>,
    /// `spec.namespaceName`.
    pub namespace_name: Vec<String>,
    /// `spec.nodeAffinity`.
    pub node_affinity: Option<LabelSelector>,
    /// `spec.nodeName`.
    pub node_name: Vec<String>,
    /// `spec.multusName`.
    pub multus_name: Vec<String>,
    /// `spec.default`.
    pub default: bool,
    /// `spec.disable`.
    pub disable: bool,
    /// The object is being deleted.
    pub deleting: bool,
    /// `metadata.labels`.
    pub labels: Labels,
}

/// A SpiderSubnet spec as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubnetDraft {
    /// `metadata.name`.
    pub name: String,
    /// `spec.ipVersion`.
    pub ip_version: Option<i64>,
    /// `spec.subnet`.
    pub subnet: String,
    /// `spec.ips`.
    pub ips: Vec<String>,
    /// `spec.excludeIPs`.
    pub exclude_ips: Vec<String>,
    /// `spec.gateway`.
    pub gateway: Option<String>,
    /// `spec.vlan`.
    pub vlan: Option<i64>,
    /// `spec.routes` as (dst, gw).
    pub routes: Vec<(String, String)>,
}

/// A SpiderReservedIP spec as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReservedIpDraft {
    /// `metadata.name`.
    pub name: String,
    /// `spec.ipVersion`.
    pub ip_version: Option<i64>,
    /// `spec.ips`.
    pub ips: Vec<String>,
}

/// A validated SpiderSubnet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// Name.
    pub name: String,
    /// Family.
    pub family: IpFamily,
    /// CIDR.
    pub subnet: IpNet,
    /// Addresses it hands to auto-pools and to pools made by hand.
    pub ips: IpSet,
    /// Excluded.
    pub exclude_ips: IpSet,
    /// Gateway.
    pub gateway: Option<IpAddr>,
    /// VLAN.
    pub vlan: Option<i64>,
    /// Routes.
    pub routes: Vec<Route>,
}

/// A validated SpiderReservedIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservedIp {
    /// Name.
    pub name: String,
    /// Family.
    pub family: IpFamily,
    /// The reserved addresses.
    pub ips: IpSet,
}

/// One thing wrong with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, as Kubernetes writes it (`spec.ips[2]`).
    pub field: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Everything wrong with one object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    /// `SpiderIPPool`, `SpiderSubnet`, `SpiderReservedIP`.
    pub kind: &'static str,
    /// The object's name.
    pub name: String,
    /// The errors, in field order.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} is invalid: ", self.kind, self.name)?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// How an object is read: as a new one, or as one already stored.
///
/// Spiderpool refuses some input only when an object is created (a `spec.subnet` with host bits,
/// since 2024) and keeps serving older objects that have it. So do we: such an object is refused
/// on create and read as Spiderpool reads it (with a warning) everywhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// A new object: admission CREATE, manifests about to be applied.
    Create,
    /// An object already stored: admission UPDATE, the webhook's and operator's caches, a live
    /// cluster read by `aipamctl`.
    #[default]
    Existing,
}

/// A valid object, and what its author should know about it: input Spiderpool accepts and we
/// accept too, but which is probably not what was meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked<T> {
    /// The object as it is used.
    pub value: T,
    /// Admission warnings (`kubectl` prints them), in field order.
    pub warnings: Vec<FieldError>,
}

#[derive(Default)]
struct Errors {
    errors: Vec<FieldError>,
    warnings: Vec<FieldError>,
}

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
    fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
    fn finish<T>(self, kind: &'static str, name: &str, value: T) -> Result<T, Invalid> {
        self.finish_checked(kind, name, value).map(|c| c.value)
    }
    fn finish_checked<T>(
        self,
        kind: &'static str,
        name: &str,
        value: T,
    ) -> Result<Checked<T>, Invalid> {
        if self.errors.is_empty() {
            Ok(Checked {
                value,
                warnings: self.warnings,
            })
        } else {
            Err(Invalid {
                kind,
                name: name.to_string(),
                errors: self.errors,
            })
        }
    }
}

/// Kubernetes object names (DNS subdomain, RFC 1123): lowercase alphanumerics, `-` and `.`,
/// starting and ending alphanumeric, at most 253 characters.
pub fn validate_object_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name.len() > DNS1123_SUBDOMAIN_MAX_LEN {
        return Err(format!(
            "must be at most {DNS1123_SUBDOMAIN_MAX_LEN} characters (has {})",
            name.len()
        ));
    }
    if !is_dns1123_subdomain(name) {
        return Err(format!(
            "{name:?} is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Parses `spec.subnet`. A CIDR with host bits set is refused on create with the network it
/// meant (as Spiderpool does); an existing object is read as that network, with a warning.
fn parse_subnet(text: &str, mode: Mode, errs: &mut Errors) -> Option<IpNet> {
    if text.is_empty() {
        errs.push(
            "spec.subnet",
            "is required: write the CIDR, e.g. 10.6.0.0/16",
        );
        return None;
    }
    match text.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Some(net),
        Ok(net) if mode == Mode::Existing => {
            errs.warn(
                "spec.subnet",
                format!(
                    "{text} has host bits set; read as {} (as Spiderpool reads it; Spiderpool \
                     refuses it on create since 1.0), write the network address when you next \
                     edit it",
                    net.trunc()
                ),
            );
            Some(net.trunc())
        }
        Ok(net) => {
            errs.push(
                "spec.subnet",
                format!(
                    "{text} has host bits set; write the network address {}",
                    net.trunc()
                ),
            );
            None
        }
        Err(_) => {
            errs.push(
                "spec.subnet",
                format!("{text:?} is not a CIDR; write it as address/prefix, e.g. 10.6.0.0/16"),
            );
            None
        }
    }
}

fn family_of_version(v: Option<i64>, errs: &mut Errors) -> Option<IpFamily> {
    match v {
        None => None,
        Some(v) => match IpFamily::from_version(v) {
            Some(f) => Some(f),
            None => {
                errs.push(
                    "spec.ipVersion",
                    format!("{v} is not an IP version; use 4 or 6"),
                );
                None
            }
        },
    }
}

/// Parses an address list field entry by entry so that each error names its index, and checks
/// every entry lies in `subnet` and is of `family`.
fn parse_list(
    field: &str,
    entries: &[String],
    family: Option<IpFamily>,
    subnet: Option<&IpNet>,
    errs: &mut Errors,
) -> IpSet {
    let mut ranges = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let path = format!("{field}[{i}]");
        match IpRange::parse(entry) {
            Ok(r) => {
                if let Some(f) = family {
                    if r.family() != f {
                        errs.push(
                            path,
                            format!("{entry} is {} but the pool is {f}", r.family()),
                        );
                        continue;
                    }
                }
                if let Some(net) = subnet {
                    if !net.contains(&r.start()) || !net.contains(&r.end()) {
                        errs.push(path, format!("{entry} is not inside the subnet {net}"));
                        continue;
                    }
                }
                ranges.push(r);
            }
            Err(e) => errs.push(path, e.to_string()),
        }
    }
    match IpSet::from_ranges(ranges) {
        Ok(s) => s,
        Err(e) => {
            errs.push(field, e.to_string());
            IpSet::new()
        }
    }
}

fn parse_gateway(
    gateway: Option<&str>,
    family: Option<IpFamily>,
    subnet: Option<&IpNet>,
    errs: &mut Errors,
) -> Option<IpAddr> {
    let text = gateway?;
    let ip: IpAddr = match text.parse() {
        Ok(ip) => ip,
        Err(_) => {
            errs.push("spec.gateway", format!("{text:?} is not an IP address"));
            return None;
        }
    };
    if let Some(f) = family {
        if IpFamily::of(&ip) != f {
            errs.push(
                "spec.gateway",
                format!("{ip} is {} but the pool is {f}", IpFamily::of(&ip)),
            );
            return None;
        }
    }
    if let Some(net) = subnet {
        if !net.contains(&ip) {
            errs.push(
                "spec.gateway",
                format!("{ip} is not inside the subnet {net}"),
            );
            return None;
        }
        // Spiderpool accepts both; a router rarely answers there.
        if ip == net.network() && net.prefix_len() < IpFamily::of(&ip).bits() - 1 {
            errs.warn(
                "spec.gateway",
                format!(
                    "{ip} is the network address of {net}; kept as written, but check that the \
                     router answers there"
                ),
            );
        }
        if let IpNet::V4(n4) = net {
            if IpAddr::V4(n4.broadcast()) == ip && n4.prefix_len() < 31 {
                errs.warn(
                    "spec.gateway",
                    format!(
                        "{ip} is the broadcast address of {net}; kept as written, but check that \
                         the router answers there"
                    ),
                );
            }
        }
    }
    Some(ip)
}

fn parse_routes(
    routes: &[(String, String)],
    family: Option<IpFamily>,
    subnet: Option<&IpNet>,
    errs: &mut Errors,
) -> Vec<Route> {
    let mut out: Vec<Route> = Vec::new();
    for (i, (dst, gw)) in routes.iter().enumerate() {
        let path = format!("spec.routes[{i}]");
        let dst_net: IpNet = match dst.parse::<IpNet>() {
            Ok(n) => n.trunc(),
            Err(_) => {
                errs.push(format!("{path}.dst"), format!("{dst:?} is not a CIDR"));
                continue;
            }
        };
        let gw_ip: IpAddr = match gw.parse() {
            Ok(ip) => ip,
            Err(_) => {
                errs.push(format!("{path}.gw"), format!("{gw:?} is not an IP address"));
                continue;
            }
        };
        let fam_dst = IpFamily::of(&dst_net.addr());
        if IpFamily::of(&gw_ip) != fam_dst {
            errs.push(
                path.clone(),
                format!("dst {dst} and gw {gw} are of different IP families"),
            );
            continue;
        }
        if let Some(f) = family {
            if fam_dst != f {
                errs.push(
                    path.clone(),
                    format!("{dst} is {fam_dst} but the pool is {f}"),
                );
                continue;
            }
        }
        if let Some(net) = subnet {
            if !net.contains(&gw_ip) {
                errs.push(
                    format!("{path}.gw"),
                    format!("{gw_ip} is not inside the subnet {net}: a route's gateway must be reachable on it"),
                );
                continue;
            }
        }
        if out.iter().any(|r| r.dst == dst_net) {
            errs.push(format!("{path}.dst"), format!("{dst_net} appears twice"));
            continue;
        }
        out.push(Route {
            dst: dst_net,
            gw: gw_ip,
        });
    }
    out
}

fn check_selector(field: &str, sel: Option<&LabelSelector>, errs: &mut Errors) {
    if let Some(sel) = sel {
        if let Err(e) = sel.validate() {
            let e: SelectorError = e;
            errs.push(field, e.to_string());
        }
    }
}

fn check_names(field: &str, names: &[String], errs: &mut Errors, allow_namespace: bool) {
    for (i, n) in names.iter().enumerate() {
        let check = if allow_namespace {
            match n.split_once('/') {
                Some((ns, name)) => validate_object_name(ns).and(validate_object_name(name)),
                None => validate_object_name(n),
            }
        } else {
            validate_object_name(n)
        };
        // Spiderpool compares these as plain strings and checks none of them: a bad entry
        // matches nothing, the others still work.
        if let Err(e) = check {
            errs.warn(
                format!("{field}[{i}]"),
                format!("{e}; it can never match, kept as written"),
            );
        }
        if names[..i].contains(n) {
            errs.warn(
                format!("{field}[{i}]"),
                format!("{n} appears twice; the repeat changes nothing"),
            );
        }
    }
}

/// Validates one SpiderIPPool on its own, as an object already stored ([`Mode::Existing`]);
/// the warnings are dropped.
pub fn validate_pool(draft: &PoolDraft) -> Result<Pool, Invalid> {
    validate_pool_with(draft, Mode::Existing).map(|c| c.value)
}

/// Validates one SpiderIPPool on its own, read as `mode` says, with its warnings.
pub fn validate_pool_with(draft: &PoolDraft, mode: Mode) -> Result<Checked<Pool>, Invalid> {
    let mut errs = Errors::default();
    if let Err(e) = validate_object_name(&draft.name) {
        errs.push("metadata.name", e);
    }
    let declared = family_of_version(draft.ip_version, &mut errs);
    let subnet = parse_subnet(&draft.subnet, mode, &mut errs);
    let subnet_family = subnet.map(|n| IpFamily::of(&n.addr()));
    if let (Some(d), Some(s)) = (declared, subnet_family) {
        if d != s {
            errs.push(
                "spec.ipVersion",
                format!("is {} but spec.subnet {} is {s}", d.version(), draft.subnet),
            );
        }
    }
    let family = declared.or(subnet_family);
    let ips = parse_list("spec.ips", &draft.ips, family, subnet.as_ref(), &mut errs);
    let exclude_ips = parse_list(
        "spec.excludeIPs",
        &draft.exclude_ips,
        family,
        subnet.as_ref(),
        &mut errs,
    );
    let gateway = parse_gateway(draft.gateway.as_deref(), family, subnet.as_ref(), &mut errs);
    if let Some(gw) = gateway {
        if ips.contains(&gw) && !exclude_ips.contains(&gw) {
            errs.push(
                "spec.gateway",
                format!(
                    "{gw} is inside spec.ips; take it out of spec.ips or add it to spec.excludeIPs"
                ),
            );
        }
    }
    if let Some(v) = draft.vlan {
        if !(0..=4094).contains(&v) {
            errs.push("spec.vlan", format!("{v} is out of range; use 0 to 4094"));
        }
    }
    let routes = parse_routes(&draft.routes, family, subnet.as_ref(), &mut errs);
    check_selector("spec.podAffinity", draft.pod_affinity.as_ref(), &mut errs);
    check_selector(
        "spec.namespaceAffinity",
        draft.namespace_affinity.as_ref(),
        &mut errs,
    );
    check_selector("spec.nodeAffinity", draft.node_affinity.as_ref(), &mut errs);
    check_names(
        "spec.namespaceName",
        &draft.namespace_name,
        &mut errs,
        false,
    );
    check_names("spec.nodeName", &draft.node_name, &mut errs, false);
    check_names("spec.multusName", &draft.multus_name, &mut errs, true);
    let (Some(family), Some(subnet)) = (family, subnet) else {
        // Errors were recorded above.
        let errors = if errs.errors.is_empty() {
            vec![FieldError {
                field: "spec.subnet".to_string(),
                message: "is required".to_string(),
            }]
        } else {
            errs.errors
        };
        return Err(Invalid {
            kind: "SpiderIPPool",
            name: draft.name.clone(),
            errors,
        });
    };
    let pool = Pool {
        name: draft.name.clone(),
        family,
        subnet,
        ips,
        exclude_ips,
        gateway,
        vlan: draft.vlan,
        routes,
        pod_affinity: draft.pod_affinity.clone(),
        namespace_affinity: draft.namespace_affinity.clone(),
        namespace_name: draft.namespace_name.clone(),
        node_affinity: draft.node_affinity.clone(),
        node_name: draft.node_name.clone(),
        multus_name: draft.multus_name.clone(),
        default: draft.default,
        disable: draft.disable,
        deleting: draft.deleting,
        overlaps: None,
        labels: draft.labels.clone(),
    };
    errs.finish_checked("SpiderIPPool", &draft.name, pool)
}

/// The pool's addresses as the overlap rule sees them: `ips` minus `excludeIPs`.
fn claimed_space(pool: &Pool) -> IpSet {
    pool.ips.difference(&pool.exclude_ips)
}

/// Validates a pool against the others of the cluster (or of the files given): no two pools
/// may share an address.
pub fn validate_pool_overlaps<'a, I>(pool: &Pool, others: I) -> Result<(), Invalid>
where
    I: IntoIterator<Item = &'a Pool>,
{
    let mine = claimed_space(pool);
    let mut errs = Errors::default();
    for other in others {
        if other.name == pool.name || other.family != pool.family {
            continue;
        }
        let common = mine.intersection(&claimed_space(other));
        if !common.is_empty() {
            errs.push(
                "spec.ips",
                format!(
                    "overlaps SpiderIPPool {} on {} address(es): {}",
                    other.name,
                    common.len(),
                    abbreviate(&common)
                ),
            );
        }
    }
    errs.finish("SpiderIPPool", &pool.name, ())
}

/// [`mark_overlaps`] over pools given with their age (`created`: earlier is older, e.g. the
/// creationTimestamp; ties broken by name), returned oldest first.
pub fn mark_overlaps_by_age<K: Ord>(pools: Vec<(K, Pool)>) -> Vec<Pool> {
    let mut pools = pools;
    pools.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
    let mut pools: Vec<Pool> = pools.into_iter().map(|(_, p)| p).collect();
    mark_overlaps(&mut pools);
    pools
}

/// Marks every pool that shares an address with an older pool (`pools` oldest first) that is
/// not itself marked: the webhook refuses an overlapping pool, but two created at the same
/// moment through different webhook replicas can both pass. The older keeps serving; the
/// newer serves nobody (`Pool::overlaps` names the older) until one of them is changed.
pub fn mark_overlaps(pools: &mut [Pool]) {
    for i in 0..pools.len() {
        let mine = claimed_space(&pools[i]);
        let older = pools[..i].iter().find(|o| {
            o.overlaps.is_none() && o.family == pools[i].family && mine.overlaps(&claimed_space(o))
        });
        pools[i].overlaps = older.map(|o| o.name.clone());
    }
}

/// Validates a change to an existing pool: `subnet` and `ipVersion` are immutable, and no
/// address in use may leave the pool (`in_use`: the addresses its claims hold).
pub fn validate_pool_update(old: &Pool, new: &Pool, in_use: &IpSet) -> Result<(), Invalid> {
    let mut errs = Errors::default();
    if old.subnet != new.subnet {
        errs.push(
            "spec.subnet",
            format!(
                "is immutable: it was {} and cannot become {}",
                old.subnet, new.subnet
            ),
        );
    }
    if old.family != new.family {
        errs.push(
            "spec.ipVersion",
            format!(
                "is immutable: it was {} and cannot become {}",
                old.family.version(),
                new.family.version()
            ),
        );
    }
    let still = new.ips.difference(&new.exclude_ips);
    let dropped = in_use.difference(&still);
    if !dropped.is_empty() {
        errs.push(
            "spec.ips",
            format!(
                "the change would take away {} address(es) in use: {}; release them first (delete or move their Pods)",
                dropped.len(),
                abbreviate(&dropped)
            ),
        );
    }
    if let Some(gw) = new.gateway {
        if in_use.contains(&gw) {
            errs.push(
                "spec.gateway",
                format!("{gw} is held by a Pod; release it before making it the gateway"),
            );
        }
    }
    errs.finish("SpiderIPPool", &new.name, ())
}

/// Validates the deletion of a pool: refused while addresses are in use.
pub fn validate_pool_delete(pool: &Pool, in_use: &IpSet) -> Result<(), Invalid> {
    let mut errs = Errors::default();
    if !in_use.is_empty() {
        errs.push(
            "metadata.name",
            format!(
                "the pool still has {} address(es) in use ({}); delete their Pods first, the pool is removed once they are released",
                in_use.len(),
                abbreviate(in_use)
            ),
        );
    }
    errs.finish("SpiderIPPool", &pool.name, ())
}

/// Validates one SpiderSubnet on its own, as an object already stored; the warnings are
/// dropped.
pub fn validate_subnet(draft: &SubnetDraft) -> Result<Subnet, Invalid> {
    validate_subnet_with(draft, Mode::Existing).map(|c| c.value)
}

/// Validates one SpiderSubnet on its own, read as `mode` says, with its warnings.
pub fn validate_subnet_with(draft: &SubnetDraft, mode: Mode) -> Result<Checked<Subnet>, Invalid> {
    // The address rules are the pool's; reuse them through a pool draft.
    let as_pool = PoolDraft {
        name: draft.name.clone(),
        ip_version: draft.ip_version,
        subnet: draft.subnet.clone(),
        ips: draft.ips.clone(),
        exclude_ips: draft.exclude_ips.clone(),
        gateway: draft.gateway.clone(),
        vlan: draft.vlan,
        routes: draft.routes.clone(),
        ..PoolDraft::default()
    };
    match validate_pool_with(&as_pool, mode) {
        Ok(Checked { value: p, warnings }) => Ok(Checked {
            value: Subnet {
                name: p.name,
                family: p.family,
                subnet: p.subnet,
                ips: p.ips,
                exclude_ips: p.exclude_ips,
                gateway: p.gateway,
                vlan: p.vlan,
                routes: p.routes,
            },
            warnings,
        }),
        Err(mut e) => {
            e.kind = "SpiderSubnet";
            Err(e)
        }
    }
}

/// Validates a SpiderSubnet against the others: their CIDRs may not overlap.
pub fn validate_subnet_overlaps<'a, I>(subnet: &Subnet, others: I) -> Result<(), Invalid>
where
    I: IntoIterator<Item = &'a Subnet>,
{
    let mut errs = Errors::default();
    for other in others {
        if other.name == subnet.name {
            continue;
        }
        if subnet.subnet.contains(&other.subnet.network())
            || other.subnet.contains(&subnet.subnet.network())
        {
            errs.push(
                "spec.subnet",
                format!(
                    "{} overlaps SpiderSubnet {} ({})",
                    subnet.subnet, other.name, other.subnet
                ),
            );
        }
    }
    errs.finish("SpiderSubnet", &subnet.name, ())
}

/// When the SpiderSubnet feature is on, a pool made by hand must lie inside a subnet.
pub fn validate_pool_in_subnets<'a, I>(pool: &Pool, subnets: I) -> Result<Checked<()>, Invalid>
where
    I: IntoIterator<Item = &'a Subnet>,
{
    let mut errs = Errors::default();
    let mut found = false;
    for s in subnets {
        if s.subnet == pool.subnet {
            found = true;
            let outside = claimed_space(pool).difference(&s.ips.difference(&s.exclude_ips));
            if !outside.is_empty() {
                errs.push(
                    "spec.ips",
                    format!(
                        "{} address(es) are not free in SpiderSubnet {}: {}",
                        outside.len(),
                        s.name,
                        abbreviate(&outside)
                    ),
                );
            }
        }
    }
    if !found {
        // Spiderpool allows a pool no SpiderSubnet controls.
        errs.warn(
            "spec.subnet",
            format!(
                "no SpiderSubnet has subnet {}: the pool is controlled by no SpiderSubnet (the \
                 SpiderSubnet feature is on, and the subnet's addresses are not checked)",
                pool.subnet
            ),
        );
    }
    errs.finish_checked("SpiderIPPool", &pool.name, ())
}

/// Validates one SpiderReservedIP.
pub fn validate_reserved_ip(draft: &ReservedIpDraft) -> Result<ReservedIp, Invalid> {
    let mut errs = Errors::default();
    if let Err(e) = validate_object_name(&draft.name) {
        errs.push("metadata.name", e);
    }
    let declared = family_of_version(draft.ip_version, &mut errs);
    let ips = parse_list("spec.ips", &draft.ips, declared, None, &mut errs);
    let family = declared.or(ips.family());
    let Some(family) = family else {
        if draft.ips.is_empty() || errs.errors.is_empty() {
            errs.push(
                "spec.ips",
                "is empty: list the addresses to keep out of every pool",
            );
        }
        return Err(Invalid {
            kind: "SpiderReservedIP",
            name: draft.name.clone(),
            errors: errs.errors,
        });
    };
    errs.finish(
        "SpiderReservedIP",
        &draft.name,
        ReservedIp {
            name: draft.name.clone(),
            family,
            ips,
        },
    )
}

/// Validates a whole set of objects, as `aipamctl validate` does for a directory and the
/// webhook does for one object against the cluster: each alone, then overlaps between them.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Valid pools.
    pub pools: BTreeMap<String, Pool>,
    /// Valid subnets.
    pub subnets: BTreeMap<String, Subnet>,
    /// Valid reserved IPs.
    pub reserved: BTreeMap<String, ReservedIp>,
}

impl Catalog {
    /// Adds a pool about to be created ([`Mode::Create`]), checking it against the pools
    /// already there; returns its warnings. A pool that is invalid on its own or overlaps is not
    /// added.
    pub fn add_pool(&mut self, draft: &PoolDraft) -> Result<Vec<FieldError>, Invalid> {
        let Checked {
            value: pool,
            warnings,
        } = validate_pool_with(draft, Mode::Create)?;
        if self.pools.contains_key(&pool.name) {
            return Err(Invalid {
                kind: "SpiderIPPool",
                name: pool.name.clone(),
                errors: vec![FieldError {
                    field: "metadata.name".to_string(),
                    message: "is defined twice".to_string(),
                }],
            });
        }
        validate_pool_overlaps(&pool, self.pools.values())?;
        self.pools.insert(pool.name.clone(), pool);
        Ok(warnings)
    }

    /// Adds a subnet about to be created, checking it against the subnets already there;
    /// returns its warnings.
    pub fn add_subnet(&mut self, draft: &SubnetDraft) -> Result<Vec<FieldError>, Invalid> {
        let Checked {
            value: subnet,
            warnings,
        } = validate_subnet_with(draft, Mode::Create)?;
        validate_subnet_overlaps(&subnet, self.subnets.values())?;
        self.subnets.insert(subnet.name.clone(), subnet);
        Ok(warnings)
    }

    /// Adds a reserved IP object.
    pub fn add_reserved(&mut self, draft: &ReservedIpDraft) -> Result<(), Invalid> {
        let r = validate_reserved_ip(draft)?;
        self.reserved.insert(r.name.clone(), r);
        Ok(())
    }

    /// The union of all reserved addresses of one family.
    pub fn reserved_set(&self, family: IpFamily) -> IpSet {
        let mut out = IpSet::new();
        for r in self.reserved.values().filter(|r| r.family == family) {
            if let Ok(u) = out.union(&r.ips) {
                out = u;
            }
        }
        out
    }
}

/// A short form of a set for messages: the first few ranges and how many more.
pub fn abbreviate(set: &IpSet) -> String {
    const SHOWN: usize = 4;
    let parts: Vec<String> = set.ranges().take(SHOWN).map(|r| r.to_string()).collect();
    let more = set.range_count().saturating_sub(SHOWN);
    if more > 0 {
        format!("{} and {more} more range(s)", parts.join(", "))
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn of_overlapping_pools_the_newer_is_marked_and_names_the_older() {
        let mk = |name: &str, ips: &str| {
            Pool::new(
                name,
                "10.0.0.0/24".parse().unwrap(),
                IpSet::parse_list(&[ips]).unwrap(),
            )
        };
        // Oldest first; c overlaps only b, which is itself marked, so c keeps serving.
        let mut pools = vec![
            mk("a", "10.0.0.10-10.0.0.20"),
            mk("b", "10.0.0.20-10.0.0.30"),
            mk("c", "10.0.0.30-10.0.0.40"),
            mk("d", "10.0.0.50"),
        ];
        mark_overlaps(&mut pools);
        let marks: Vec<Option<&str>> = pools.iter().map(|p| p.overlaps.as_deref()).collect();
        assert_eq!(marks, vec![None, Some("a"), None, None]);
    }

    fn draft(name: &str, subnet: &str, ips: &[&str]) -> PoolDraft {
        PoolDraft {
            name: name.to_string(),
            subnet: subnet.to_string(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            ..PoolDraft::default()
        }
    }

    fn errors(r: Result<Pool, Invalid>) -> Vec<String> {
        r.unwrap_err()
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn the_zone_pools_are_valid_and_infer_their_version() {
        let mut d = draft("test-ippool-6", "10.6.0.0/16", &["10.6.168.60-10.6.168.69"]);
        d.gateway = Some("10.6.0.1".to_string());
        let p = validate_pool(&d).unwrap();
        assert_eq!(p.family, IpFamily::V4);
        assert_eq!(p.allocatable(&IpSet::new()).len(), 10);
    }

    #[test]
    fn pool_field_errors_name_the_field_and_the_fix() {
        let table: Vec<(PoolDraft, Vec<&str>)> = vec![
            (draft("a", "", &[]), vec!["spec.subnet: is required: write the CIDR, e.g. 10.6.0.0/16"]),
            (
                draft("a", "10.6.1.5/16", &[]),
                vec!["spec.subnet: 10.6.1.5/16 has host bits set; write the network address 10.6.0.0/16"],
            ),
            (
                draft("a", "10.6.0.0/33", &[]),
                vec!["spec.subnet: \"10.6.0.0/33\" is not a CIDR; write it as address/prefix, e.g. 10.6.0.0/16"],
            ),
            (
                draft("a", "10.6.0.0/16", &["10.7.0.1"]),
                vec!["spec.ips[0]: 10.7.0.1 is not inside the subnet 10.6.0.0/16"],
            ),
            (
                draft("a", "10.6.0.0/16", &["fd00::1"]),
                vec!["spec.ips[0]: fd00::1 is IPv6 but the pool is IPv4"],
            ),
            (
                PoolDraft {
                    ip_version: Some(6),
                    ..draft("a", "10.6.0.0/16", &[])
                },
                vec!["spec.ipVersion: is 6 but spec.subnet 10.6.0.0/16 is IPv4"],
            ),
            (
                PoolDraft {
                    ip_version: Some(5),
                    ..draft("a", "10.6.0.0/16", &[])
                },
                vec!["spec.ipVersion: 5 is not an IP version; use 4 or 6"],
            ),
            (
                PoolDraft {
                    vlan: Some(4095),
                    ..draft("a", "10.6.0.0/16", &[])
                },
                vec!["spec.vlan: 4095 is out of range; use 0 to 4094"],
            ),
            (
                PoolDraft {
                    gateway: Some("10.6.0.5".to_string()),
                    ..draft("a", "10.6.0.0/16", &["10.6.0.1-10.6.0.9"])
                },
                vec!["spec.gateway: 10.6.0.5 is inside spec.ips; take it out of spec.ips or add it to spec.excludeIPs"],
            ),
            (
                PoolDraft {
                    gateway: Some("10.7.0.1".to_string()),
                    ..draft("a", "10.6.0.0/16", &[])
                },
                vec!["spec.gateway: 10.7.0.1 is not inside the subnet 10.6.0.0/16"],
            ),
            (
                PoolDraft {
                    routes: vec![("10.10.0.0/16".to_string(), "10.9.0.1".to_string())],
                    ..draft("a", "10.6.0.0/16", &[])
                },
                vec!["spec.routes[0].gw: 10.9.0.1 is not inside the subnet 10.6.0.0/16: a route's gateway must be reachable on it"],
            ),
            (
                draft("Bad", "10.6.0.0/16", &[]),
                vec!["metadata.name: \"Bad\" is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"],
            ),
        ];
        for (d, want) in table {
            let got = validate_pool_with(&d, Mode::Create).map(|c| c.value);
            assert_eq!(errors(got), want, "{d:?}");
        }
    }

    fn warnings(d: &PoolDraft, mode: Mode) -> Vec<String> {
        validate_pool_with(d, mode)
            .unwrap()
            .warnings
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn what_spiderpool_accepts_is_accepted_with_a_warning() {
        let gw = PoolDraft {
            gateway: Some("10.6.0.0".to_string()),
            ..draft("a", "10.6.0.0/16", &[])
        };
        assert_eq!(
            warnings(&gw, Mode::Create),
            ["spec.gateway: 10.6.0.0 is the network address of 10.6.0.0/16; kept as written, but check that the router answers there"]
        );
        assert_eq!(
            validate_pool(&gw).unwrap().gateway,
            Some("10.6.0.0".parse().unwrap())
        );
        let names = PoolDraft {
            node_name: vec!["Node_1".to_string(), "n1".to_string(), "n1".to_string()],
            ..draft("a", "10.6.0.0/16", &[])
        };
        assert_eq!(
            warnings(&names, Mode::Create),
            [
                "spec.nodeName[0]: \"Node_1\" is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit; it can never match, kept as written",
                "spec.nodeName[2]: n1 appears twice; the repeat changes nothing",
            ]
        );
        assert_eq!(validate_pool(&names).unwrap().node_name.len(), 3);
    }

    #[test]
    fn host_bits_are_refused_on_create_and_read_as_the_network_once_stored() {
        let d = draft("a", "10.6.1.5/16", &["10.6.0.10"]);
        assert!(validate_pool_with(&d, Mode::Create).is_err());
        let stored = validate_pool_with(&d, Mode::Existing).unwrap();
        assert_eq!(stored.value.subnet, "10.6.0.0/16".parse::<IpNet>().unwrap());
        assert_eq!(stored.warnings.len(), 1);
        assert!(
            stored.warnings[0]
                .message
                .starts_with("10.6.1.5/16 has host bits set; read as 10.6.0.0/16"),
            "{:?}",
            stored.warnings
        );
        let subnet = SubnetDraft {
            name: "s".to_string(),
            subnet: "10.6.1.5/16".to_string(),
            ..SubnetDraft::default()
        };
        assert!(validate_subnet_with(&subnet, Mode::Create).is_err());
        assert_eq!(
            validate_subnet(&subnet).unwrap().subnet.to_string(),
            "10.6.0.0/16"
        );
    }

    #[test]
    fn reversed_ranges_and_cidrs_in_ips_are_refused_with_the_range_error() {
        let e = errors(validate_pool(&draft(
            "a",
            "10.6.0.0/16",
            &["10.6.0.9-10.6.0.1", "10.6.0.0/24"],
        )));
        assert_eq!(e.len(), 2);
        assert!(e[0].starts_with("spec.ips[0]: "), "{e:?}");
        assert!(e[0].contains("10.6.0.1-10.6.0.9"), "{e:?}");
        assert!(e[1].starts_with("spec.ips[1]: "), "{e:?}");
        assert!(e[1].contains("range"), "{e:?}");
    }

    #[test]
    fn malformed_selectors_are_refused() {
        let d = PoolDraft {
            node_affinity: Some(LabelSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![crate::labels::LabelSelectorRequirement {
                    key: "zone".to_string(),
                    operator: "In".to_string(),
                    values: vec![],
                }],
            }),
            ..draft("a", "10.6.0.0/16", &[])
        };
        let e = errors(validate_pool(&d));
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("spec.nodeAffinity: "), "{e:?}");
    }

    #[test]
    fn overlaps_are_refused_naming_the_other_pool() {
        let a = validate_pool(&draft("a", "10.0.0.0/24", &["10.0.0.10-10.0.0.20"])).unwrap();
        let b = validate_pool(&draft("b", "10.0.0.0/24", &["10.0.0.15-10.0.0.30"])).unwrap();
        let mut c_draft = draft("c", "10.0.0.0/24", &["10.0.0.15-10.0.0.30"]);
        c_draft.exclude_ips = vec!["10.0.0.15-10.0.0.20".to_string()];
        let c = validate_pool(&c_draft).unwrap();
        let e = validate_pool_overlaps(&b, [&a]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SpiderIPPool b is invalid: spec.ips: overlaps SpiderIPPool a on 6 address(es): 10.0.0.15-10.0.0.20"
        );
        // Excluded addresses do not count as the pool's.
        assert!(validate_pool_overlaps(&c, [&a]).is_ok());
    }

    #[test]
    fn updates_keep_subnet_and_version_and_every_address_in_use() {
        let old = validate_pool(&draft("a", "10.0.0.0/24", &["10.0.0.10-10.0.0.20"])).unwrap();
        let in_use = IpSet::parse_list(&["10.0.0.11", "10.0.0.19"]).unwrap();
        let shrink = validate_pool(&draft("a", "10.0.0.0/24", &["10.0.0.10-10.0.0.15"])).unwrap();
        let e = validate_pool_update(&old, &shrink, &in_use).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SpiderIPPool a is invalid: spec.ips: the change would take away 1 address(es) in use: 10.0.0.19; release them first (delete or move their Pods)"
        );
        let grow = validate_pool(&draft("a", "10.0.0.0/24", &["10.0.0.10-10.0.0.40"])).unwrap();
        assert!(validate_pool_update(&old, &grow, &in_use).is_ok());
        let moved = validate_pool(&draft("a", "10.0.1.0/24", &[])).unwrap();
        let e = validate_pool_update(&old, &moved, &IpSet::new()).unwrap_err();
        assert!(e.to_string().contains("spec.subnet: is immutable"), "{e}");
        let mut excl = draft("a", "10.0.0.0/24", &["10.0.0.10-10.0.0.20"]);
        excl.exclude_ips = vec!["10.0.0.11".to_string()];
        let excl = validate_pool(&excl).unwrap();
        assert!(validate_pool_update(&old, &excl, &in_use).is_err());
    }

    #[test]
    fn deleting_a_pool_in_use_is_refused() {
        let p = validate_pool(&draft("a", "10.0.0.0/24", &["10.0.0.10-10.0.0.20"])).unwrap();
        assert!(validate_pool_delete(&p, &IpSet::new()).is_ok());
        let e = validate_pool_delete(&p, &IpSet::parse_list(&["10.0.0.12"]).unwrap()).unwrap_err();
        assert!(
            e.to_string()
                .contains("still has 1 address(es) in use (10.0.0.12)"),
            "{e}"
        );
    }

    #[test]
    fn subnets_reserved_ips_and_the_catalog() {
        let mut cat = Catalog::default();
        cat.add_subnet(&SubnetDraft {
            name: "subnet-6".to_string(),
            subnet: "10.6.0.0/16".to_string(),
            ips: vec!["10.6.168.60-10.6.168.69".to_string()],
            ..SubnetDraft::default()
        })
        .unwrap();
        let e = cat
            .add_subnet(&SubnetDraft {
                name: "inner".to_string(),
                subnet: "10.6.1.0/24".to_string(),
                ..SubnetDraft::default()
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "SpiderSubnet inner is invalid: spec.subnet: 10.6.1.0/24 overlaps SpiderSubnet subnet-6 (10.6.0.0/16)"
        );
        let inside =
            validate_pool(&draft("p", "10.6.0.0/16", &["10.6.168.60-10.6.168.64"])).unwrap();
        assert!(validate_pool_in_subnets(&inside, cat.subnets.values()).is_ok());
        let outside =
            validate_pool(&draft("q", "10.6.0.0/16", &["10.6.168.68-10.6.168.70"])).unwrap();
        let e = validate_pool_in_subnets(&outside, cat.subnets.values()).unwrap_err();
        assert!(
            e.to_string()
                .contains("1 address(es) are not free in SpiderSubnet subnet-6: 10.6.168.70"),
            "{e}"
        );
        let elsewhere = validate_pool(&draft("r", "10.9.0.0/16", &[])).unwrap();
        // A pool no SpiderSubnet controls: allowed, as in Spiderpool, with a warning.
        let orphan = validate_pool_in_subnets(&elsewhere, cat.subnets.values()).unwrap();
        assert_eq!(orphan.warnings.len(), 1);

        cat.add_reserved(&ReservedIpDraft {
            name: "r".to_string(),
            ip_version: Some(4),
            ips: vec!["10.6.168.61".to_string()],
        })
        .unwrap();
        assert_eq!(cat.reserved_set(IpFamily::V4).len(), 1);
        let e = cat
            .add_reserved(&ReservedIpDraft {
                name: "bad".to_string(),
                ip_version: Some(6),
                ips: vec!["10.0.0.1".to_string()],
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "SpiderReservedIP bad is invalid: spec.ips[0]: 10.0.0.1 is IPv4 but the pool is IPv6"
        );
        let e = cat
            .add_pool(&draft("dup", "10.0.0.0/24", &[]))
            .and_then(|_| cat.add_pool(&draft("dup", "10.0.1.0/24", &[])))
            .unwrap_err();
        assert!(e.to_string().contains("is defined twice"));
    }

    #[test]
    fn ipv6_pools_validate_like_ipv4() {
        let mut d = draft("v6", "fd00:6::/64", &["fd00:6::10-fd00:6::ff"]);
        d.gateway = Some("fd00:6::1".to_string());
        d.routes = vec![("fd00:9::/64".to_string(), "fd00:6::1".to_string())];
        let p = validate_pool(&d).unwrap();
        assert_eq!(p.family, IpFamily::V6);
        assert_eq!(p.allocatable(&IpSet::new()).len(), 0xf0);
        let mut bad = draft("v6", "fd00:6::/64", &["fd00:7::1"]);
        bad.gateway = Some("fd00:6::20".to_string());
        let e = errors(validate_pool(&bad));
        assert_eq!(
            e,
            vec!["spec.ips[0]: fd00:7::1 is not inside the subnet fd00:6::/64"]
        );
    }
}
