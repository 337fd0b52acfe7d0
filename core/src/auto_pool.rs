//! SpiderSubnet auto pools as Spiderpool ≥ 1.0 names, labels and finds them, so that an auto
//! pool Spiderpool made is adopted after a switch, not duplicated.
//!
//! What Spiderpool does (spidernet-io/spiderpool, `pkg/applicationcontroller`,
//! `pkg/subnetmanager`, `pkg/ipam`, `pkg/constant/k8s.go`):
//! * the name is `AutoPoolName`: `auto{4|6}-{application name}-{interface}-{first 5 characters
//!   of the last group of the application UID}`, lower-cased — no kind, no namespace;
//! * the labels are [`LABEL_OWNER_SUBNET`], [`LABEL_APP_GV`] (`apps_v1`: `/` becomes `_`),
//!   [`LABEL_APP_KIND`] (`Deployment`, as the kind is spelled), [`LABEL_APP_NAMESPACE`],
//!   [`LABEL_APP_NAME`], [`LABEL_APP_UID`], [`LABEL_INTERFACE`], [`LABEL_RECLAIM`]
//!   (`true`/`false`), [`LABEL_IP_VERSION`] (`IPv4`/`IPv6`) and [`LABEL_IPPOOL_CIDR`]
//!   ([`cidr_label_value`]);
//! * the pool is *found* by labels, never by name: the IPAM (a Pod's address) by all the owner
//!   labels including the UID ([`find_for_pod`]); the application controller (creating and
//!   resizing) by the same labels without the UID, skipping a pool of an earlier application of
//!   the same name that is to be reclaimed, and re-labelling one that is kept
//!   (`ippool-reclaim: "false"`) with the new UID ([`find_for_app`]);
//! * its `podAffinity` is not the application's selector but five match labels naming the
//!   application ([`pod_affinity`]), matched against the Pod's top controller, not the Pod's
//!   labels ([`affinity_matches`]).
//!
//! Where no labelled pool is found, aipam also accepts a pool by name (Spiderpool's, then the
//! `auto{4|6}-{kind}-{namespace}-{name}-{interface}-{uid}` that aipam wrote before it followed
//! Spiderpool) when its labels do not name another application.

use crate::annotations as keys;
use crate::labels::LabelSelector;
use crate::model::{Labels, Pool};
use crate::ranges::{IpFamily, IpSet};

/// Label: the SpiderSubnet the pool was carved from.
pub const LABEL_OWNER_SUBNET: &str = keys::LABEL_OWNER_SPIDER_SUBNET;
/// Label: the application's group and version, `/` written `_` (`apps_v1`).
pub const LABEL_APP_GV: &str = keys::LABEL_OWNER_APPLICATION_GV;
/// Label: the application's kind as spelled (`Deployment`).
pub const LABEL_APP_KIND: &str = keys::LABEL_OWNER_APPLICATION_KIND;
/// Label: the application's namespace.
pub const LABEL_APP_NAMESPACE: &str = keys::LABEL_OWNER_APPLICATION_NAMESPACE;
/// Label: the application's name.
pub const LABEL_APP_NAME: &str = keys::LABEL_OWNER_APPLICATION_NAME;
/// Label: the application's UID.
pub const LABEL_APP_UID: &str = keys::LABEL_OWNER_APPLICATION_UID;
/// Label: the interface the pool serves.
pub const LABEL_INTERFACE: &str = keys::LABEL_IPPOOL_INTERFACE;
/// Label: `"true"` when the pool goes with its application.
pub const LABEL_RECLAIM: &str = keys::ANNO_IPPOOL_RECLAIM;
/// Label: `IPv4` or `IPv6`.
pub const LABEL_IP_VERSION: &str = keys::LABEL_IPPOOL_IP_VERSION;
/// Label on every pool Spiderpool admits: its `spec.subnet` as [`cidr_label_value`].
pub const LABEL_IPPOOL_CIDR: &str = keys::LABEL_IPPOOL_CIDR;
/// Label on every SpiderSubnet Spiderpool admits: its `spec.subnet` as [`cidr_label_value`].
pub const LABEL_SUBNET_CIDR: &str = keys::LABEL_SUBNET_CIDR;

/// `podAffinity` match label of an auto pool: the application's API group (empty for core).
pub const AFFINITY_APP_API_GROUP: &str = keys::AUTO_POOL_AFFINITY_APP_API_GROUP;
/// `podAffinity` match label of an auto pool: the application's API version.
pub const AFFINITY_APP_API_VERSION: &str = keys::AUTO_POOL_AFFINITY_APP_API_VERSION;
/// `podAffinity` match label of an auto pool: the application's kind.
pub const AFFINITY_APP_KIND: &str = keys::AUTO_POOL_AFFINITY_APP_KIND;
/// `podAffinity` match label of an auto pool: the application's namespace.
pub const AFFINITY_APP_NAMESPACE: &str = keys::AUTO_POOL_AFFINITY_APP_NAMESPACE;
/// `podAffinity` match label of an auto pool: the application's name.
pub const AFFINITY_APP_NAME: &str = keys::AUTO_POOL_AFFINITY_APP_NAME;

/// Longest object name (DNS-1123 subdomain).
const MAX_NAME: usize = 253;
/// Characters of the UID's last group that Spiderpool keeps.
const UID_SUFFIX: usize = 5;

/// The application an auto pool serves: Spiderpool's "Pod top controller".
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct App {
    /// `apps/v1`, `batch/v1`, `apps.kruise.io/v1alpha1`, ...
    pub api_version: String,
    /// `Deployment`, `CloneSet`, ...
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

/// Kinds Spiderpool knows itself (`constant.K8sKinds`); any other is a third-party controller.
const KUBERNETES_KINDS: [&str; 7] = [
    "Pod",
    "Deployment",
    "ReplicaSet",
    "DaemonSet",
    "StatefulSet",
    "Job",
    "CronJob",
];
/// API versions of those kinds (`constant.K8sAPIVersions`).
const KUBERNETES_VERSIONS: [&str; 3] = ["v1", "apps/v1", "batch/v1"];

/// Whether an owner is a third-party controller for Spiderpool: its apiVersion is not `v1`,
/// `apps/v1` or `batch/v1`, or its kind is not one of the built-in workload kinds
/// (`IsThirdController`). Such an owner's auto pool has a fixed size: Spiderpool cannot read
/// its replicas.
pub fn is_third_party(api_version: &str, kind: &str) -> bool {
    !(KUBERNETES_VERSIONS.contains(&api_version) && KUBERNETES_KINDS.contains(&kind))
}

/// Spiderpool's auto pool name (`AutoPoolName`): `auto{4|6}-{name}-{interface}-{uid}`, with
/// `uid` the first 5 characters of the UID's last `-` group, all lower-cased; the name is cut
/// so that the whole fits in 253 characters.
pub fn pool_name(family: IpFamily, app_name: &str, interface: &str, uid: &str) -> String {
    let last = uid.rsplit('-').next().unwrap_or(uid);
    let last: String = last.chars().take(UID_SUFFIX).collect();
    let fixed = format!("auto{}---", family.version()).len() + last.len() + interface.len();
    let room = MAX_NAME.saturating_sub(fixed);
    let name: String = app_name.chars().take(room).collect();
    format!(
        "auto{}-{}-{}-{}",
        family.version(),
        name.to_lowercase(),
        interface.to_lowercase(),
        last.to_lowercase()
    )
}

/// The name aipam gave auto pools before it followed Spiderpool:
/// `auto{4|6}-{kind}-{namespace}-{name}-{interface}-{last group of the UID}`. Looked up by
/// name only, so that a pool an earlier aipam made is kept.
pub fn legacy_pool_name(family: IpFamily, app: &App, interface: &str) -> String {
    let last = app.uid.rsplit('-').next().unwrap_or(&app.uid);
    format!(
        "auto{}-{}-{}-{}-{}-{}",
        family.version(),
        app.kind.to_lowercase(),
        app.namespace.to_lowercase(),
        app.name.to_lowercase(),
        interface.to_lowercase(),
        last.to_lowercase()
    )
}

/// Go's `strings.Replace(s, old, new, n)` for a one-character `old`: the first `n` only.
fn replace_first(s: &str, old: char, new: char, n: usize) -> String {
    let mut left = n;
    s.chars()
        .map(|c| {
            if c == old && left > 0 {
                left -= 1;
                new
            } else {
                c
            }
        })
        .collect()
}

/// A CIDR as Spiderpool writes it in [`LABEL_IPPOOL_CIDR`] and [`LABEL_SUBNET_CIDR`]
/// (`CIDRToLabelValue`): the text as written with its first three `.`, first seven `:` and
/// first `/` made `-` (`10.6.0.0/16` → `10-6-0-0-16`, `fd00::/64` → `fd00---64`).
pub fn cidr_label_value(cidr: &str) -> String {
    let v = replace_first(cidr, '.', '-', 3);
    let v = replace_first(&v, ':', '-', 7);
    replace_first(&v, '/', '-', 1)
}

/// An apiVersion as Spiderpool writes it in [`LABEL_APP_GV`] (`ApplicationLabelGV`):
/// `apps/v1` → `apps_v1`, `v1` → `v1`.
pub fn gv_label_value(api_version: &str) -> String {
    match api_version.split_once('/') {
        Some((group, version)) => format!("{group}_{version}"),
        None => api_version.to_string(),
    }
}

/// [`LABEL_IP_VERSION`]'s value: `IPv4` or `IPv6`.
pub fn ip_version_label_value(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "IPv4",
        IpFamily::V6 => "IPv6",
    }
}

/// [`LABEL_RECLAIM`]'s value.
pub fn reclaim_label_value(reclaim: bool) -> &'static str {
    if reclaim {
        "true"
    } else {
        "false"
    }
}

/// One auto pool: the application, the SpiderSubnet, the family and the interface.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    /// The application.
    pub app: &'a App,
    /// The SpiderSubnet's name.
    pub subnet: &'a str,
    /// The family.
    pub family: IpFamily,
    /// The interface.
    pub interface: &'a str,
}

impl Key<'_> {
    /// The labels Spiderpool finds the pool by, without the UID (the application controller's
    /// `applyAutoIPPool`).
    fn app_labels(&self) -> [(&'static str, String); 7] {
        [
            (LABEL_OWNER_SUBNET, self.subnet.to_string()),
            (LABEL_APP_GV, gv_label_value(&self.app.api_version)),
            (LABEL_APP_KIND, self.app.kind.clone()),
            (LABEL_APP_NAMESPACE, self.app.namespace.clone()),
            (LABEL_APP_NAME, self.app.name.clone()),
            (
                LABEL_IP_VERSION,
                ip_version_label_value(self.family).to_string(),
            ),
            (LABEL_INTERFACE, self.interface.to_string()),
        ]
    }

    /// The name of a pool made for this key.
    pub fn pool_name(&self) -> String {
        pool_name(self.family, &self.app.name, self.interface, &self.app.uid)
    }

    /// Every label Spiderpool writes on an auto pool it creates (`ReconcileAutoIPPool`), with
    /// `cidr` the pool's `spec.subnet` as written.
    pub fn labels(&self, reclaim: bool, cidr: &str) -> Labels {
        let mut out: Labels = self
            .app_labels()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        out.insert(LABEL_APP_UID.to_string(), self.app.uid.clone());
        out.insert(
            LABEL_RECLAIM.to_string(),
            reclaim_label_value(reclaim).to_string(),
        );
        out.insert(LABEL_IPPOOL_CIDR.to_string(), cidr_label_value(cidr));
        out
    }

    fn matches_app(&self, labels: &Labels) -> bool {
        self.app_labels()
            .iter()
            .all(|(k, v)| labels.get(*k).is_some_and(|l| l == v))
    }

    /// Whether a pool found by name may be this key's: its labels name no other application,
    /// subnet, family or interface (an absent label says nothing).
    fn name_fallback_ok(&self, labels: &Labels) -> bool {
        let mut want: Vec<(&str, String)> = self.app_labels().into();
        want.push((LABEL_APP_UID, self.app.uid.clone()));
        want.iter()
            .all(|(k, v)| labels.get(*k).is_none_or(|l| l == v))
    }

    fn names(&self) -> [String; 2] {
        [
            self.pool_name(),
            legacy_pool_name(self.family, self.app, self.interface),
        ]
    }
}

/// The application's auto pool among pools given as (name, labels), as the Pod's IPAM finds
/// it (`findAppAutoPool`): every owner label including the UID, the family and the interface
/// must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// This pool.
    Pool(String),
    /// Several pools carry the labels: Spiderpool refuses the Pod, and so does aipam.
    Ambiguous(Vec<String>),
    /// None: not made yet.
    Missing,
}

/// The pool a Pod of `key.app` takes its address from (the webhook's lookup): by labels, the
/// UID included; else by name ([`pool_name`], then [`legacy_pool_name`]) when the pool's labels
/// do not name another application.
pub fn find_for_pod<'a, I>(pools: I, key: &Key<'_>) -> Found
where
    I: IntoIterator<Item = (&'a str, &'a Labels)> + Clone,
{
    let mut hits: Vec<String> = pools
        .clone()
        .into_iter()
        .filter(|(_, l)| key.matches_app(l) && l.get(LABEL_APP_UID) == Some(&key.app.uid))
        .map(|(n, _)| n.to_string())
        .collect();
    hits.sort();
    match hits.len() {
        0 => by_name(pools, key).map_or(Found::Missing, Found::Pool),
        1 => Found::Pool(hits.remove(0)),
        _ => Found::Ambiguous(hits),
    }
}

fn by_name<'a, I>(pools: I, key: &Key<'_>) -> Option<String>
where
    I: IntoIterator<Item = (&'a str, &'a Labels)> + Clone,
{
    key.names().into_iter().find(|want| {
        pools
            .clone()
            .into_iter()
            .any(|(n, l)| n == want && key.name_fallback_ok(l))
    })
}

/// The pool the application controller resizes for `key.app` (`applyAutoIPPool`): by the owner
/// labels without the UID, lowest name first, skipping a pool that an earlier application of
/// the same name left to be reclaimed (`ippool-reclaim: "true"` and another UID); else by name
/// as [`find_for_pod`]. A pool found with another UID was kept (`ippool-reclaim: "false"`):
/// the caller writes the new UID and reclaim labels on it, as Spiderpool does.
pub fn find_for_app<'a, I>(pools: I, key: &Key<'_>) -> Option<String>
where
    I: IntoIterator<Item = (&'a str, &'a Labels)> + Clone,
{
    let mut hits: Vec<&str> = pools
        .clone()
        .into_iter()
        .filter(|(_, l)| key.matches_app(l))
        .filter(|(_, l)| {
            !(l.get(LABEL_RECLAIM).map(String::as_str) == Some("true")
                && l.get(LABEL_APP_UID) != Some(&key.app.uid))
        })
        .map(|(n, _)| n)
        .collect();
    hits.sort_unstable();
    match hits.first() {
        Some(n) => Some(n.to_string()),
        None => by_name(pools, key),
    }
}

/// Whether a pool is an auto pool for Spiderpool (`IsAutoCreatedIPPool`): it carries
/// [`LABEL_APP_NAME`].
pub fn is_auto_pool(labels: &Labels) -> bool {
    labels.contains_key(LABEL_APP_NAME)
}

fn group_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// An auto pool's `podAffinity` as Spiderpool writes it (`NewAutoPoolPodAffinity`): match
/// labels naming the application's group, version, kind, namespace and name.
pub fn pod_affinity(app: &App) -> LabelSelector {
    let (group, version) = group_version(&app.api_version);
    let mut sel = LabelSelector::default();
    for (k, v) in [
        (AFFINITY_APP_API_GROUP, group),
        (AFFINITY_APP_API_VERSION, version),
        (AFFINITY_APP_KIND, app.kind.as_str()),
        (AFFINITY_APP_NAMESPACE, app.namespace.as_str()),
        (AFFINITY_APP_NAME, app.name.as_str()),
    ] {
        sel.match_labels.insert(k.to_string(), v.to_string());
    }
    sel
}

/// Whether an auto pool's `podAffinity` admits a Pod of `app` (`IsMatchAutoPoolAffinity`):
/// its five match labels name the application. `None` (no owner) matches nothing.
pub fn affinity_matches(sel: &LabelSelector, app: Option<&App>) -> bool {
    let Some(app) = app else {
        return false;
    };
    let want = pod_affinity(app);
    want.match_labels
        .iter()
        .all(|(k, v)| sel.match_labels.get(k) == Some(v))
}

/// A pool as written, as far as its link to a SpiderSubnet goes.
#[derive(Clone, Copy, Debug)]
pub struct PoolAsWritten<'a> {
    /// `spec.subnet` as written.
    pub subnet: &'a str,
    /// `metadata.labels`.
    pub labels: &'a Labels,
    /// The controller ownerReference's kind and name, if any.
    pub controller: Option<(&'a str, &'a str)>,
    /// `spec.gateway` is set.
    pub has_gateway: bool,
    /// `spec.routes` is present (an empty list counts: it says "no routes").
    pub has_routes: bool,
}

/// What Spiderpool's pool mutation (`setControllerSubnet`, `InheritSubnetProperties`) writes
/// on a pool whose CIDR is a SpiderSubnet's, when the SpiderSubnet feature is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inherit {
    /// The SpiderSubnet.
    pub subnet: String,
    /// Make it the pool's controller ownerReference (the pool has no controller yet).
    pub set_controller: bool,
    /// Write [`LABEL_OWNER_SUBNET`].
    pub set_label: bool,
    /// The subnet's gateway, for a pool without one.
    pub gateway: Option<std::net::IpAddr>,
    /// The subnet's routes, for a pool without `spec.routes`.
    pub routes: Option<Vec<crate::annotations::Route>>,
}

/// The SpiderSubnet a pool belongs to and what it inherits from it, as Spiderpool's pool
/// mutation does: nothing when the pool already carries [`LABEL_OWNER_SUBNET`] naming its
/// controller (an auto pool, or a pool linked before); else the first subnet (by name) of the
/// same CIDR becomes its controller (unless another controller owns it) and its label, and the
/// pool takes the subnet's gateway when it has none and its routes when it has no
/// `spec.routes`. The VLAN is not inherited (Spiderpool does not either).
pub fn inherit(pool: &PoolAsWritten<'_>, subnets: &[crate::validate::Subnet]) -> Option<Inherit> {
    if let (Some(label), Some((_, owner))) = (pool.labels.get(LABEL_OWNER_SUBNET), pool.controller)
    {
        if label == owner {
            return None;
        }
    }
    let cidr: ipnet::IpNet = pool.subnet.trim().parse().ok()?;
    let mut same: Vec<&crate::validate::Subnet> = subnets
        .iter()
        .filter(|s| s.subnet.trunc() == cidr.trunc())
        .collect();
    same.sort_by(|a, b| a.name.cmp(&b.name));
    let subnet = same.first()?;
    let set_controller = pool.controller.is_none();
    Some(Inherit {
        subnet: subnet.name.clone(),
        set_controller,
        set_label: pool.labels.get(LABEL_OWNER_SUBNET) != Some(&subnet.name),
        gateway: subnet.gateway.filter(|_| !pool.has_gateway),
        routes: (!pool.has_routes && !subnet.routes.is_empty()).then(|| subnet.routes.clone()),
    })
}

/// The addresses of a subnet that no pool of its CIDR holds.
pub fn free_in_subnet<'a, I>(subnet: &crate::validate::Subnet, pools: I, reserved: &IpSet) -> IpSet
where
    I: IntoIterator<Item = &'a Pool>,
{
    let mut as_pool = Pool::new(&subnet.name, subnet.subnet, subnet.ips.clone());
    as_pool.exclude_ips = subnet.exclude_ips.clone();
    as_pool.gateway = subnet.gateway;
    let mut free = as_pool.allocatable(reserved);
    for p in pools {
        free = free.difference(&p.ips);
    }
    free
}

/// Largest pool shrunk address by address.
const MAX_SHRINK_SCAN: u128 = 1 << 16;

/// An auto-pool's addresses resized to `desired`: grown from `free` (lowest first), shrunk by
/// dropping the highest addresses no claim holds (`held`). `None` when nothing changes.
pub fn resize(current: &IpSet, desired: u64, free: &IpSet, held: &IpSet) -> Option<IpSet> {
    let len = current.len();
    let want = u128::from(desired);
    if len < want {
        let add = IpSet::from_addrs(free.iter().take(usize::try_from(want - len).ok()?)).ok()?;
        if add.is_empty() {
            return None;
        }
        return current.union(&add).ok();
    }
    if len > want && len <= MAX_SHRINK_SCAN {
        let mut out = current.clone();
        let mut n = len;
        let all: Vec<_> = current.iter().collect();
        for ip in all.iter().rev() {
            if n <= want {
                break;
            }
            if !held.contains(ip) {
                out.remove(ip);
                n -= 1;
            }
        }
        if out != *current {
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn web() -> App {
        App {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: "apps".into(),
            name: "web".into(),
            uid: "0b9e5a8c-1f2d-4c3b-9a8e-028d6f4e7a10".into(),
        }
    }

    fn key(app: &App) -> Key<'_> {
        Key {
            app,
            subnet: "subnet-v4",
            family: IpFamily::V4,
            interface: "eth0",
        }
    }

    #[test]
    fn names_are_spiderpools() {
        // docs/usage/third-party-controller.md: auto4-custom-kruise-cloneset-eth0-028d6.
        assert_eq!(
            pool_name(
                IpFamily::V4,
                "custom-kruise-cloneset",
                "eth0",
                "5c3a-b1e2-028d6f4e7a10"
            ),
            "auto4-custom-kruise-cloneset-eth0-028d6"
        );
        assert_eq!(
            pool_name(IpFamily::V6, "Web", "Net1", "a-B-CD"),
            "auto6-web-net1-cd"
        );
        assert_eq!(
            pool_name(IpFamily::V4, "web", "eth0", ""),
            "auto4-web-eth0-"
        );
        let long = "a".repeat(300);
        let n = pool_name(IpFamily::V4, &long, "eth0", "x-0123456789");
        assert_eq!(n.len(), 253);
        assert!(n.ends_with("-eth0-01234"), "{n}");
        assert_eq!(
            legacy_pool_name(IpFamily::V4, &web(), "eth0"),
            "auto4-deployment-apps-web-eth0-028d6f4e7a10"
        );
    }

    #[test]
    fn label_values_are_spiderpools() {
        assert_eq!(cidr_label_value("10.6.0.0/16"), "10-6-0-0-16");
        assert_eq!(cidr_label_value("fd00::/64"), "fd00---64");
        assert_eq!(
            cidr_label_value("fd00:1:2:3:4:5:6:7/120"),
            "fd00-1-2-3-4-5-6-7-120"
        );
        assert_eq!(gv_label_value("apps/v1"), "apps_v1");
        assert_eq!(
            gv_label_value("apps.kruise.io/v1alpha1"),
            "apps.kruise.io_v1alpha1"
        );
        assert_eq!(gv_label_value("v1"), "v1");
        assert_eq!(ip_version_label_value(IpFamily::V6), "IPv6");
        let app = web();
        let labels = key(&app).labels(false, "10.6.0.0/16");
        let want: Labels = [
            (LABEL_OWNER_SUBNET, "subnet-v4"),
            (LABEL_APP_GV, "apps_v1"),
            (LABEL_APP_KIND, "Deployment"),
            (LABEL_APP_NAMESPACE, "apps"),
            (LABEL_APP_NAME, "web"),
            (LABEL_APP_UID, "0b9e5a8c-1f2d-4c3b-9a8e-028d6f4e7a10"),
            (LABEL_INTERFACE, "eth0"),
            (LABEL_RECLAIM, "false"),
            (LABEL_IP_VERSION, "IPv4"),
            (LABEL_IPPOOL_CIDR, "10-6-0-0-16"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, want);
        assert!(is_auto_pool(&labels));
        assert!(!is_auto_pool(&Labels::new()));
    }

    #[test]
    fn third_party_is_anything_but_the_built_in_workloads() {
        assert!(!is_third_party("apps/v1", "Deployment"));
        assert!(!is_third_party("batch/v1", "CronJob"));
        assert!(is_third_party("apps.kruise.io/v1alpha1", "CloneSet"));
        assert!(is_third_party("apps/v1beta2", "Deployment"));
        assert!(is_third_party("apps/v1", "CloneSet"));
    }

    fn pools(list: &[(&str, Labels)]) -> Vec<(String, Labels)> {
        list.iter()
            .map(|(n, l)| (n.to_string(), l.clone()))
            .collect()
    }

    fn refs(p: &[(String, Labels)]) -> Vec<(&str, &Labels)> {
        p.iter().map(|(n, l)| (n.as_str(), l)).collect()
    }

    #[test]
    fn the_pod_finds_its_pool_by_labels_whatever_its_name() {
        let app = web();
        let k = key(&app);
        let mine = k.labels(true, "10.6.0.0/16");
        let mut v6 = mine.clone();
        v6.insert(LABEL_IP_VERSION.into(), "IPv6".into());
        let mut other_if = mine.clone();
        other_if.insert(LABEL_INTERFACE.into(), "net1".into());
        let mut older = mine.clone();
        older.insert(LABEL_APP_UID.into(), "old-uid".into());
        let p = pools(&[
            ("whatever-spiderpool-called-it", mine.clone()),
            ("v6", v6),
            ("net1", other_if),
            ("older", older.clone()),
            (&k.pool_name(), Labels::new()),
        ]);
        assert_eq!(
            find_for_pod(refs(&p), &k),
            Found::Pool("whatever-spiderpool-called-it".into())
        );
        // Two pools with the labels: refused, as Spiderpool does.
        let p2 = pools(&[("a", mine.clone()), ("b", mine.clone())]);
        assert_eq!(
            find_for_pod(refs(&p2), &k),
            Found::Ambiguous(vec!["a".into(), "b".into()])
        );
        // No labelled pool: by Spiderpool's name, then aipam's earlier name; never a pool
        // whose labels name another application.
        let p3 = pools(&[
            ("auto4-deployment-apps-web-eth0-028d6f4e7a10", Labels::new()),
            (&k.pool_name(), older),
        ]);
        assert_eq!(
            find_for_pod(refs(&p3), &k),
            Found::Pool("auto4-deployment-apps-web-eth0-028d6f4e7a10".into())
        );
        assert_eq!(find_for_pod(refs(&pools(&[])), &k), Found::Missing);
    }

    #[test]
    fn the_application_controller_skips_reclaimed_leftovers_and_reuses_kept_pools() {
        let app = web();
        let k = key(&app);
        let mut leftover = k.labels(true, "10.6.0.0/16");
        leftover.insert(LABEL_APP_UID.into(), "old-uid".into());
        let mut kept = k.labels(false, "10.6.0.0/16");
        kept.insert(LABEL_APP_UID.into(), "old-uid".into());
        let p = pools(&[("a-leftover", leftover.clone()), ("b-kept", kept)]);
        assert_eq!(find_for_app(refs(&p), &k), Some("b-kept".into()));
        let p = pools(&[("a-leftover", leftover)]);
        assert_eq!(find_for_app(refs(&p), &k), None);
        let p = pools(&[(&k.pool_name(), Labels::new())]);
        assert_eq!(find_for_app(refs(&p), &k), Some(k.pool_name()));
    }

    #[test]
    fn the_affinity_names_the_application_not_its_pods() {
        let app = web();
        let sel = pod_affinity(&app);
        assert_eq!(sel.match_labels[AFFINITY_APP_API_GROUP], "apps");
        assert_eq!(sel.match_labels[AFFINITY_APP_API_VERSION], "v1");
        assert_eq!(sel.match_labels[AFFINITY_APP_KIND], "Deployment");
        assert_eq!(sel.match_labels[AFFINITY_APP_NAMESPACE], "apps");
        assert_eq!(sel.match_labels[AFFINITY_APP_NAME], "web");
        assert!(affinity_matches(&sel, Some(&app)));
        let other = App {
            kind: "StatefulSet".into(),
            ..web()
        };
        assert!(!affinity_matches(&sel, Some(&other)));
        assert!(!affinity_matches(&sel, None));
    }

    #[test]
    fn a_pool_in_a_subnets_cidr_is_linked_and_inherits_gateway_and_routes() {
        use crate::validate::{validate_subnet, SubnetDraft};
        let sn = |name: &str, cidr: &str| {
            validate_subnet(&SubnetDraft {
                name: name.into(),
                subnet: cidr.into(),
                ips: vec![],
                gateway: Some(cidr.replace(".0/24", ".1")),
                vlan: Some(5),
                routes: vec![("10.99.0.0/16".into(), cidr.replace(".0/24", ".2"))],
                ..Default::default()
            })
            .unwrap()
        };
        let subnets = vec![
            sn("z", "10.6.0.0/24"),
            sn("a", "10.6.0.0/24"),
            sn("b", "10.7.0.0/24"),
        ];
        let none = Labels::new();
        let bare = PoolAsWritten {
            subnet: "10.6.0.0/24",
            labels: &none,
            controller: None,
            has_gateway: false,
            has_routes: false,
        };
        let got = inherit(&bare, &subnets).unwrap();
        assert_eq!(got.subnet, "a");
        assert!(got.set_controller && got.set_label);
        assert_eq!(got.gateway, Some("10.6.0.1".parse().unwrap()));
        assert_eq!(got.routes.unwrap().len(), 1);
        // Its own gateway and an explicit empty route list are kept.
        let own = PoolAsWritten {
            has_gateway: true,
            has_routes: true,
            ..bare
        };
        let got = inherit(&own, &subnets).unwrap();
        assert_eq!((got.gateway, got.routes), (None, None));
        // Another controller: labelled, not re-owned.
        let owned = PoolAsWritten {
            controller: Some(("Something", "x")),
            ..bare
        };
        assert!(!inherit(&owned, &subnets).unwrap().set_controller);
        // Linked already (an auto pool): nothing.
        let mut l = Labels::new();
        l.insert(LABEL_OWNER_SUBNET.into(), "a".into());
        let linked = PoolAsWritten {
            labels: &l,
            controller: Some(("SpiderSubnet", "a")),
            ..bare
        };
        assert_eq!(inherit(&linked, &subnets), None);
        // No subnet of that CIDR, or no CIDR: nothing.
        let other = PoolAsWritten {
            subnet: "10.8.0.0/24",
            ..bare
        };
        assert_eq!(inherit(&other, &subnets), None);
        let junk = PoolAsWritten {
            subnet: "nonsense",
            ..bare
        };
        assert_eq!(inherit(&junk, &subnets), None);
    }
}
