//! Pool selection: which pools may serve each interface and family of a Pod, in which order,
//! and why every other pool was excluded.
//!
//! Candidates come from the first rule that applies (DESIGN.md, "Pool selection"):
//! 1. SpiderSubnet annotations (`ipam.spidernet.io/subnets`, `ipam.spidernet.io/subnet`), when
//!    the SpiderSubnet feature is on: the application's auto-created pool;
//! 2. Pod annotations `ipam.spidernet.io/ippools` (per interface), then `ipam.spidernet.io/ippool`;
//! 3. Namespace annotations `ipam.spidernet.io/default-ipv4-ippool` / `-ipv6-ippool`;
//! 4. the network's CNI configuration `default_ipv4_ippool` / `default_ipv6_ippool`;
//! 5. cluster defaults: the ConfigMap's lists, then pools with `spec.default: true`.
//!
//! A rule applies to both families at once, as in Spiderpool: when IPv6 is enabled and the
//! rule that applies names no IPv6 pool, the Pod is refused rather than silently served from a
//! lower rule. Filters only ever remove candidates; the survivors are stably sorted by
//! Spiderpool's priority (podAffinity, nodeName, nodeAffinity, namespaceName,
//! namespaceAffinity, multusName), so pools of equal rank keep the order the user wrote.

use std::collections::BTreeMap;
use std::fmt;

use crate::annotations::{self, pod_ipam_annotations, IpNumber, PodIpamAnnotations, SubnetRequest};
use crate::config::IpamConfig;
use crate::labels::LabelSelector;
use crate::model::{multus_name_matches, InterfaceRequest, NamespaceInfo, NodeInfo, PodInfo, Pool};
use crate::ranges::{IpFamily, IpSet};
use crate::usage::Usage;

/// Everything selection looks at. Nothing is fetched: the caller reads it from the API (or a
/// manifest directory) first.
#[derive(Clone, Copy, Debug)]
pub struct SelectionInput<'a> {
    /// The Pod being admitted.
    pub pod: &'a PodInfo,
    /// Its namespace.
    pub namespace: &'a NamespaceInfo,
    /// The Pod's node, when known at admission (DaemonSet Pods, Pods with `spec.nodeName`).
    pub node: Option<&'a NodeInfo>,
    /// All nodes of the cluster, when known: a node-bound pool that no node matches is excluded.
    pub nodes: Option<&'a [NodeInfo]>,
    /// The interfaces served by this IPAM, primary first (from the Multus annotations and the
    /// networks' configurations; `eth0` alone without Multus).
    pub interfaces: &'a [InterfaceRequest],
    /// The cluster configuration.
    pub config: &'a IpamConfig,
    /// All SpiderIPPools by name.
    pub pools: &'a BTreeMap<String, Pool>,
    /// Addresses already held, per pool (the claims): a map of [`IpSet`]s or
    /// [`crate::usage::UsedIndex`]es, or the webhook's cache.
    pub used: &'a dyn Usage,
    /// Addresses of all SpiderReservedIPs, IPv4.
    pub reserved_v4: &'a IpSet,
    /// Addresses of all SpiderReservedIPs, IPv6.
    pub reserved_v6: &'a IpSet,
}

/// The rule that supplied an interface's candidates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `ipam.spidernet.io/subnets` or `ipam.spidernet.io/subnet`.
    SubnetAnnotation {
        /// The annotation key used.
        key: &'static str,
    },
    /// `ipam.spidernet.io/ippools`.
    PodIpPools,
    /// `ipam.spidernet.io/ippool`.
    PodIpPool,
    /// The namespace's default pools.
    NamespaceDefault {
        /// The namespace.
        namespace: String,
    },
    /// The network's CNI configuration.
    CniConfig {
        /// The network (`namespace/name`), or `None` for the node's own configuration.
        network: Option<String>,
    },
    /// The cluster defaults.
    ClusterDefault,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::SubnetAnnotation { key } => write!(f, "Pod annotation {key}"),
            Rule::PodIpPools => write!(f, "Pod annotation {}", annotations::ANNO_IPPOOLS),
            Rule::PodIpPool => write!(f, "Pod annotation {}", annotations::ANNO_IPPOOL),
            Rule::NamespaceDefault { namespace } => write!(
                f,
                "namespace {namespace} annotation {}/{}",
                annotations::ANNO_NS_DEFAULT_IPV4,
                annotations::ANNO_NS_DEFAULT_IPV6
            ),
            Rule::CniConfig { network: Some(n) } => {
                write!(f, "default_ipv4_ippool/default_ipv6_ippool of network {n}")
            }
            Rule::CniConfig { network: None } => {
                write!(f, "default_ipv4_ippool/default_ipv6_ippool of the CNI configuration")
            }
            Rule::ClusterDefault => write!(
                f,
                "cluster default pools (spec.default: true, or clusterDefaultIPv4IPPool/clusterDefaultIPv6IPPool in spiderpool-conf)"
            ),
        }
    }
}

/// Why a pool named by a rule cannot serve this Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No SpiderIPPool of that name exists.
    NotFound,
    /// A wildcard pattern that matched no pool of the family.
    PatternMatchedNothing,
    /// The pool has a deletionTimestamp.
    Terminating,
    /// `spec.disable: true`.
    Disabled,
    /// Shares addresses with this older pool (admitted at the same moment by another replica).
    Overlaps {
        /// The older pool.
        pool: String,
    },
    /// The pool is of the other IP family.
    WrongFamily {
        /// The family asked for.
        wanted: IpFamily,
        /// The pool's family.
        actual: IpFamily,
    },
    /// The Pod's node is not in `spec.nodeName`.
    NodeName {
        /// The Pod's node.
        node: String,
    },
    /// The Pod's node does not match `spec.nodeAffinity`.
    NodeAffinity {
        /// The Pod's node.
        node: String,
        /// The selector, as kubectl prints it.
        selector: String,
    },
    /// No node of the cluster matches the pool's `nodeName`/`nodeAffinity`.
    NoNodeMatches,
    /// The Pod's namespace is not in `spec.namespaceName`.
    NamespaceName,
    /// The namespace's labels do not match `spec.namespaceAffinity`.
    NamespaceAffinity {
        /// The selector.
        selector: String,
    },
    /// The Pod's labels do not match `spec.podAffinity`.
    PodAffinity {
        /// The selector.
        selector: String,
    },
    /// The interface's network is not in `spec.multusName`.
    MultusName {
        /// The interface's network, if any.
        network: Option<String>,
    },
    /// A selector of the pool is malformed.
    InvalidSelector {
        /// Which field.
        field: &'static str,
        /// The problem.
        problem: String,
    },
    /// Every address is excluded, the gateway, or reserved.
    NoUsableAddress,
    /// Every usable address is held.
    Exhausted {
        /// How many addresses the pool can hand out.
        capacity: u128,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotFound => write!(f, "no SpiderIPPool of that name exists"),
            Reason::PatternMatchedNothing => write!(f, "the pattern matches no pool"),
            Reason::Terminating => write!(f, "the pool is being deleted"),
            Reason::Disabled => write!(f, "the pool is disabled (spec.disable: true)"),
            Reason::Overlaps { pool } => write!(
                f,
                "the pool shares addresses with SpiderIPPool {pool}, created before it; it serves no Pod until one of them is changed"
            ),
            Reason::WrongFamily { wanted, actual } => {
                write!(f, "it is an {actual} pool, but an {wanted} pool is needed here")
            }
            Reason::NodeName { node } => write!(f, "node {node} is not in its spec.nodeName"),
            Reason::NodeAffinity { node, selector } => {
                write!(f, "node {node} does not match its spec.nodeAffinity ({selector})")
            }
            Reason::NoNodeMatches => write!(
                f,
                "no node of the cluster matches its spec.nodeName/spec.nodeAffinity"
            ),
            Reason::NamespaceName => write!(f, "the namespace is not in its spec.namespaceName"),
            Reason::NamespaceAffinity { selector } => write!(
                f,
                "the namespace's labels do not match its spec.namespaceAffinity ({selector})"
            ),
            Reason::PodAffinity { selector } => write!(
                f,
                "the Pod's labels do not match its spec.podAffinity ({selector})"
            ),
            Reason::MultusName { network: Some(n) } => {
                write!(f, "network {n} is not in its spec.multusName")
            }
            Reason::MultusName { network: None } => write!(
                f,
                "it is reserved to Multus networks (spec.multusName) and this interface uses none"
            ),
            Reason::InvalidSelector { field, problem } => {
                write!(f, "its {field} is invalid: {problem}")
            }
            Reason::NoUsableAddress => write!(
                f,
                "every address is excluded (spec.excludeIPs), the gateway, or reserved (SpiderReservedIP)"
            ),
            Reason::Exhausted { capacity } => {
                write!(f, "all {capacity} addresses are in use")
            }
        }
    }
}

/// A pool named by the rule and filtered out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exclusion {
    /// The pool (or pattern) name.
    pub pool: String,
    /// Why.
    pub reason: Reason,
}

/// A pool that may serve the interface, in order of preference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The pool's name.
    pub pool: String,
    /// The pool is restricted to some nodes and the Pod's node is not known yet: it serves the
    /// Pod only if the Pod lands on one of them.
    pub zone: bool,
}

/// A SpiderSubnet auto-pool the application needs (rule 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoPoolPlan {
    /// The SpiderSubnet.
    pub subnet: String,
    /// The auto-pool's name, as Spiderpool names it.
    pub pool: String,
    /// How many addresses it should hold.
    pub desired_ips: u64,
    /// Delete the pool with the application (`ipam.spidernet.io/ippool-reclaim`).
    pub reclaim: bool,
}

/// One family of one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilySelection {
    /// The family.
    pub family: IpFamily,
    /// The pools that may serve, best first.
    pub candidates: Vec<Candidate>,
    /// The pools named by the rule that may not, with the reason.
    pub excluded: Vec<Exclusion>,
    /// Rule 1: the auto-pool to create or resize.
    pub auto_pool: Option<AutoPoolPlan>,
}

/// One interface of the Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceSelection {
    /// The interface name.
    pub interface: String,
    /// The network behind it, if any.
    pub network: Option<String>,
    /// The rule that supplied the candidates.
    pub rule: Rule,
    /// `cleangateway` from the annotation, when given.
    pub clean_gateway: Option<bool>,
    /// One entry per enabled family, IPv4 first.
    pub families: Vec<FamilySelection>,
}

/// The outcome for a whole Pod.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Selection {
    /// One entry per interface, primary first.
    pub interfaces: Vec<InterfaceSelection>,
    /// Things the user may want to know that did not prevent selection (ignored keys...).
    pub notes: Vec<String>,
    /// Routes from `ipam.spidernet.io/routes`.
    pub routes: Vec<annotations::Route>,
}

/// One reason a Pod cannot be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// An annotation could not be read.
    Annotation(annotations::AnnotationError),
    /// `ipam.spidernet.io/ippools` or `subnets` has no entry for an interface the Pod has.
    InterfaceMissing {
        /// The annotation key.
        key: &'static str,
        /// The interface.
        interface: String,
    },
    /// The rule that applies names no pool of an enabled family.
    FamilyMissing {
        /// The interface.
        interface: String,
        /// The family.
        family: IpFamily,
        /// The rule.
        rule: Rule,
    },
    /// No rule supplies any pool.
    NoRule {
        /// The interface.
        interface: String,
    },
    /// Every pool the rule names was excluded.
    NoCandidate {
        /// The interface.
        interface: String,
        /// The family.
        family: IpFamily,
        /// The rule.
        rule: Rule,
        /// Every pool and why.
        excluded: Vec<Exclusion>,
    },
    /// The pools of one interface are on different VLANs.
    VlanMismatch {
        /// The interface.
        interface: String,
        /// Pool name and VLAN.
        pools: Vec<(String, i64)>,
    },
    /// The SpiderSubnet annotation names no subnet for an enabled family.
    SubnetFamilyMissing {
        /// The interface.
        interface: String,
        /// The family.
        family: IpFamily,
    },
    /// The SpiderSubnet annotation is used by a Pod whose application cannot own an auto-pool.
    SubnetNeedsController {
        /// The interface.
        interface: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Annotation(e) => write!(f, "{e}"),
            Problem::InterfaceMissing { key, interface } => write!(
                f,
                "interface {interface}: annotation {key} has no entry for it; add {{\"interface\": \"{interface}\", ...}}"
            ),
            Problem::FamilyMissing { interface, family, rule } => {
                let field = if *family == IpFamily::V4 { "ipv4" } else { "ipv6" };
                write!(
                    f,
                    "interface {interface}: {rule} names no {family} pool, but {family} is enabled; add `{field}` pools there or disable {family} in spiderpool-conf"
                )
            }
            Problem::NoRule { interface } => write!(
                f,
                "interface {interface}: no pool is configured for it: annotate the Pod with {} or {}, the namespace with {}, or mark a SpiderIPPool spec.default: true",
                annotations::ANNO_IPPOOL,
                annotations::ANNO_IPPOOLS,
                annotations::ANNO_NS_DEFAULT_IPV4
            ),
            Problem::NoCandidate { interface, family, rule, excluded } => {
                write!(f, "interface {interface}: no {family} pool from {rule} can serve this Pod:")?;
                for (i, e) in excluded.iter().enumerate() {
                    let sep = if i == 0 { " " } else { "; " };
                    write!(f, "{sep}pool {}: {}", e.pool, e.reason)?;
                }
                Ok(())
            }
            Problem::VlanMismatch { interface, pools } => {
                write!(f, "interface {interface}: its candidate pools are on different VLANs (")?;
                for (i, (p, v)) in pools.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{p}: vlan {v}")?;
                }
                write!(f, "); pools of one interface must share a VLAN")
            }
            Problem::SubnetFamilyMissing { interface, family } => {
                let field = if *family == IpFamily::V4 { "ipv4" } else { "ipv6" };
                write!(
                    f,
                    "interface {interface}: the SpiderSubnet annotation names no {family} subnet, but {family} is enabled; add `{field}` to it"
                )
            }
            Problem::SubnetNeedsController { interface } => write!(
                f,
                "interface {interface}: SpiderSubnet auto-pools are made per application; a Pod without a controller must set {} to a fixed number",
                annotations::ANNO_IPPOOL_IP_NUMBER
            ),
        }
    }
}

/// The Pod cannot be served: every problem found, so that one `kubectl apply` shows them all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Refusal {
    /// The problems, in interface order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl From<annotations::AnnotationError> for Refusal {
    fn from(e: annotations::AnnotationError) -> Self {
        Refusal {
            problems: vec![Problem::Annotation(e)],
        }
    }
}

/// The pool names a rule gives for one interface.
struct RuleChoice {
    rule: Rule,
    ipv4: Vec<String>,
    ipv6: Vec<String>,
    clean_gateway: Option<bool>,
    subnet: Option<SubnetRequest>,
}

/// Selects candidate pools for every interface and family of the Pod.
pub fn select(input: &SelectionInput<'_>) -> Result<Selection, Refusal> {
    let annos = pod_ipam_annotations(&input.pod.annotations)?;
    let ns_defaults = annotations::namespace_defaults(&input.namespace.annotations)?;
    let mut selection = Selection {
        routes: annos.routes.clone(),
        ..Selection::default()
    };
    let mut problems = Vec::new();

    let subnet_anno = annos.subnets.is_some() || annos.subnet.is_some();
    if subnet_anno && !input.config.enable_spider_subnet {
        selection.notes.push(format!(
            "annotation {} is ignored: the SpiderSubnet feature is off (enableSpiderSubnet in spiderpool-conf)",
            if annos.subnets.is_some() {
                annotations::ANNO_SUBNETS
            } else {
                annotations::ANNO_SUBNET
            }
        ));
    }

    for (index, iface) in effective_interfaces(input.interfaces, &annos, input.config)
        .into_iter()
        .enumerate()
    {
        let choice = match choose_rule(input, &annos, &ns_defaults, &iface, index) {
            Ok(Some(c)) => c,
            Ok(None) => {
                problems.push(Problem::NoRule {
                    interface: iface.name.clone(),
                });
                continue;
            }
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        let mut families = Vec::new();
        for family in input.config.families() {
            let names = match family {
                IpFamily::V4 => &choice.ipv4,
                IpFamily::V6 => &choice.ipv6,
            };
            if let Some(req) = &choice.subnet {
                match auto_pool_plan(input, &annos, req, &iface, family) {
                    Ok(plan) => {
                        let fs = if input.pools.contains_key(&plan.pool) {
                            let mut fs =
                                filter(input, &iface, family, std::slice::from_ref(&plan.pool));
                            fs.auto_pool = Some(plan);
                            fs
                        } else {
                            // The pool is made before the address is taken; nothing to filter.
                            FamilySelection {
                                family,
                                candidates: vec![Candidate {
                                    pool: plan.pool.clone(),
                                    zone: false,
                                }],
                                excluded: Vec::new(),
                                auto_pool: Some(plan),
                            }
                        };
                        push_family(&mut problems, &mut families, &iface, &choice.rule, fs);
                    }
                    Err(p) => problems.push(p),
                }
                continue;
            }
            if names.is_empty() {
                problems.push(Problem::FamilyMissing {
                    interface: iface.name.clone(),
                    family,
                    rule: choice.rule.clone(),
                });
                continue;
            }
            let fs = filter(input, &iface, family, names);
            push_family(&mut problems, &mut families, &iface, &choice.rule, fs);
        }
        if let Some(p) = vlan_problem(input.pools, &iface.name, &families) {
            problems.push(p);
        }
        selection.interfaces.push(InterfaceSelection {
            interface: iface.name.clone(),
            network: iface.network.clone(),
            rule: choice.rule,
            clean_gateway: choice.clean_gateway,
            families,
        });
    }
    if problems.is_empty() {
        Ok(selection)
    } else {
        Err(Refusal { problems })
    }
}

fn push_family(
    problems: &mut Vec<Problem>,
    families: &mut Vec<FamilySelection>,
    iface: &InterfaceRequest,
    rule: &Rule,
    fs: FamilySelection,
) {
    if fs.candidates.is_empty() {
        problems.push(Problem::NoCandidate {
            interface: iface.name.clone(),
            family: fs.family,
            rule: rule.clone(),
            excluded: fs.excluded,
        });
    } else {
        families.push(fs);
    }
}

/// The interfaces to serve: those the Pod's networks give, then any other interface the
/// `ippools`/`subnets` annotations name (Spiderpool allocates every entry at the first ADD).
fn effective_interfaces(
    given: &[InterfaceRequest],
    annos: &PodIpamAnnotations,
    config: &IpamConfig,
) -> Vec<InterfaceRequest> {
    let mut out: Vec<InterfaceRequest> = if given.is_empty() {
        vec![InterfaceRequest::eth0()]
    } else {
        given.to_vec()
    };
    let mut extra: Vec<String> = Vec::new();
    if config.enable_spider_subnet {
        if let Some(list) = &annos.subnets {
            extra.extend(list.iter().filter_map(|s| s.interface.clone()));
        }
    }
    if let Some(list) = &annos.ippools {
        if list.iter().all(|p| p.interface.is_none()) {
            // Unnamed entries follow the interfaces in order; more entries than interfaces
            // means more interfaces, named as Multus names them.
            for i in out.len()..list.len() {
                extra.push(format!("net{i}"));
            }
        } else {
            extra.extend(list.iter().filter_map(|p| p.interface.clone()));
        }
    }
    for name in extra {
        if !out.iter().any(|i| i.name == name) {
            out.push(InterfaceRequest {
                name,
                ..InterfaceRequest::default()
            });
        }
    }
    out
}

fn choose_rule(
    input: &SelectionInput<'_>,
    annos: &PodIpamAnnotations,
    ns_defaults: &annotations::NamespaceDefaults,
    iface: &InterfaceRequest,
    index: usize,
) -> Result<Option<RuleChoice>, Problem> {
    if input.config.enable_spider_subnet {
        if let Some(list) = &annos.subnets {
            let entry = list
                .iter()
                .find(|s| s.interface.as_deref() == Some(iface.name.as_str()))
                .ok_or_else(|| Problem::InterfaceMissing {
                    key: annotations::ANNO_SUBNETS,
                    interface: iface.name.clone(),
                })?;
            return Ok(Some(RuleChoice {
                rule: Rule::SubnetAnnotation {
                    key: annotations::ANNO_SUBNETS,
                },
                ipv4: entry.ipv4.clone(),
                ipv6: entry.ipv6.clone(),
                clean_gateway: None,
                subnet: Some(entry.clone()),
            }));
        }
        if let Some(entry) = &annos.subnet {
            if entry.interface.as_deref().is_none_or(|i| i == iface.name) {
                return Ok(Some(RuleChoice {
                    rule: Rule::SubnetAnnotation {
                        key: annotations::ANNO_SUBNET,
                    },
                    ipv4: entry.ipv4.clone(),
                    ipv6: entry.ipv6.clone(),
                    clean_gateway: None,
                    subnet: Some(entry.clone()),
                }));
            }
        }
    }
    if let Some(list) = &annos.ippools {
        // Entries name their interface, or none does and they follow the interfaces in order.
        let entry = if list.iter().all(|p| p.interface.is_none()) {
            list.get(index)
        } else {
            list.iter()
                .find(|p| p.interface.as_deref() == Some(iface.name.as_str()))
        };
        let entry = entry.ok_or_else(|| Problem::InterfaceMissing {
            key: annotations::ANNO_IPPOOLS,
            interface: iface.name.clone(),
        })?;
        return Ok(Some(RuleChoice {
            rule: Rule::PodIpPools,
            ipv4: entry.ipv4.clone(),
            ipv6: entry.ipv6.clone(),
            clean_gateway: entry.clean_gateway,
            subnet: None,
        }));
    }
    if let Some(entry) = &annos.ippool {
        // Spiderpool applies the single-interface annotation to whichever interface asks;
        // when it names an interface, we hold it to that one.
        if entry.interface.as_deref().is_none_or(|i| i == iface.name) {
            return Ok(Some(RuleChoice {
                rule: Rule::PodIpPool,
                ipv4: entry.ipv4.clone(),
                ipv6: entry.ipv6.clone(),
                clean_gateway: entry.clean_gateway,
                subnet: None,
            }));
        }
    }
    let ns4 = ns_defaults.ipv4.clone().unwrap_or_default();
    let ns6 = ns_defaults.ipv6.clone().unwrap_or_default();
    if !ns4.is_empty() || !ns6.is_empty() {
        return Ok(Some(RuleChoice {
            rule: Rule::NamespaceDefault {
                namespace: input.namespace.name.clone(),
            },
            ipv4: ns4,
            ipv6: ns6,
            clean_gateway: None,
            subnet: None,
        }));
    }
    if !iface.cni_default_ipv4.is_empty() || !iface.cni_default_ipv6.is_empty() {
        return Ok(Some(RuleChoice {
            rule: Rule::CniConfig {
                network: iface.network.clone(),
            },
            ipv4: iface.cni_default_ipv4.clone(),
            ipv6: iface.cni_default_ipv6.clone(),
            clean_gateway: None,
            subnet: None,
        }));
    }
    let mut v4 = input.config.cluster_default_ipv4_ippool.clone();
    let mut v6 = input.config.cluster_default_ipv6_ippool.clone();
    for pool in input.pools.values().filter(|p| p.default) {
        let list = match pool.family {
            IpFamily::V4 => &mut v4,
            IpFamily::V6 => &mut v6,
        };
        if !list.contains(&pool.name) {
            list.push(pool.name.clone());
        }
    }
    if v4.is_empty() && v6.is_empty() {
        return Ok(None);
    }
    Ok(Some(RuleChoice {
        rule: Rule::ClusterDefault,
        ipv4: v4,
        ipv6: v6,
        clean_gateway: None,
        subnet: None,
    }))
}

/// Spiderpool's name for an application's auto-created pool:
/// `auto{4|6}-{kind}-{namespace}-{name}-{interface}-{last group of the controller UID}`.
pub fn auto_pool_name(
    family: IpFamily,
    kind: &str,
    namespace: &str,
    name: &str,
    interface: &str,
    uid: &str,
) -> String {
    let last = uid.rsplit('-').next().unwrap_or(uid);
    format!(
        "auto{}-{}-{}-{}-{}-{}",
        family.version(),
        kind.to_lowercase(),
        namespace.to_lowercase(),
        name.to_lowercase(),
        interface.to_lowercase(),
        last.to_lowercase()
    )
}

fn auto_pool_plan(
    input: &SelectionInput<'_>,
    annos: &PodIpamAnnotations,
    req: &SubnetRequest,
    iface: &InterfaceRequest,
    family: IpFamily,
) -> Result<AutoPoolPlan, Problem> {
    let subnets = match family {
        IpFamily::V4 => &req.ipv4,
        IpFamily::V6 => &req.ipv6,
    };
    let subnet = subnets
        .first()
        .ok_or_else(|| Problem::SubnetFamilyMissing {
            interface: iface.name.clone(),
            family,
        })?;
    let flexible_default =
        IpNumber::Flexible(input.config.cluster_subnet_default_flexible_ip_number);
    let owner = input.pod.owner.as_ref().filter(|o| o.kind != "Pod");
    let desired_ips = match (annos.ip_number.unwrap_or(flexible_default), owner) {
        (IpNumber::Fixed(n), _) => n,
        (IpNumber::Flexible(extra), Some(o)) => o.replicas.unwrap_or(1).saturating_add(extra),
        (IpNumber::Flexible(_), None) if annos.ip_number.is_none() => 1,
        (IpNumber::Flexible(_), None) => {
            return Err(Problem::SubnetNeedsController {
                interface: iface.name.clone(),
            })
        }
    };
    let pool = match owner {
        Some(o) => auto_pool_name(
            family,
            &o.kind,
            &input.pod.namespace,
            &o.name,
            &iface.name,
            &o.uid,
        ),
        None => auto_pool_name(
            family,
            "pod",
            &input.pod.namespace,
            input.pod.name.as_deref().unwrap_or("unnamed"),
            &iface.name,
            "",
        ),
    };
    Ok(AutoPoolPlan {
        subnet: subnet.clone(),
        pool,
        desired_ips,
        reclaim: annos.reclaim.unwrap_or(true),
    })
}

/// Expands wildcard names, applies every filter and sorts the survivors.
fn filter(
    input: &SelectionInput<'_>,
    iface: &InterfaceRequest,
    family: IpFamily,
    names: &[String],
) -> FamilySelection {
    let mut candidates: Vec<(&Pool, bool)> = Vec::new();
    let mut excluded = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        let matched: Vec<&Pool> = if annotations::is_wildcard(name) {
            let m: Vec<&Pool> = input
                .pools
                .values()
                .filter(|p| p.family == family && annotations::wildcard_match(name, &p.name))
                .collect();
            if m.is_empty() {
                excluded.push(Exclusion {
                    pool: name.clone(),
                    reason: Reason::PatternMatchedNothing,
                });
            }
            m
        } else {
            match input.pools.get(name) {
                Some(p) => vec![p],
                None => {
                    excluded.push(Exclusion {
                        pool: name.clone(),
                        reason: Reason::NotFound,
                    });
                    Vec::new()
                }
            }
        };
        for pool in matched {
            if seen.contains(&pool.name.as_str()) {
                continue;
            }
            seen.push(&pool.name);
            match check_pool(input, iface, family, pool) {
                Ok(zone) => candidates.push((pool, zone)),
                Err(reason) => excluded.push(Exclusion {
                    pool: pool.name.clone(),
                    reason,
                }),
            }
        }
    }
    // Stable: pools of equal rank keep the order the user wrote.
    candidates.sort_by_key(|(p, _)| p.priority_key());
    FamilySelection {
        family,
        candidates: candidates
            .into_iter()
            .map(|(p, zone)| Candidate {
                pool: p.name.clone(),
                zone,
            })
            .collect(),
        excluded,
        auto_pool: None,
    }
}

fn selector_matches(
    sel: &LabelSelector,
    labels: &BTreeMap<String, String>,
    field: &'static str,
) -> Result<bool, Reason> {
    sel.matches(labels).map_err(|e| Reason::InvalidSelector {
        field,
        problem: e.to_string(),
    })
}

/// Whether `pool` may serve a Pod on `node` as far as its node restrictions go.
pub fn pool_serves_node(pool: &Pool, node: &NodeInfo) -> Result<bool, Reason> {
    if !pool.node_name.is_empty() && !pool.node_name.contains(&node.name) {
        return Ok(false);
    }
    if let Some(sel) = &pool.node_affinity {
        return selector_matches(sel, &node.labels, "spec.nodeAffinity");
    }
    Ok(true)
}

/// `Ok(zone)` when the pool may serve; `zone` says it depends on the node the Pod lands on.
fn check_pool(
    input: &SelectionInput<'_>,
    iface: &InterfaceRequest,
    family: IpFamily,
    pool: &Pool,
) -> Result<bool, Reason> {
    if pool.deleting {
        return Err(Reason::Terminating);
    }
    if pool.disable {
        return Err(Reason::Disabled);
    }
    if let Some(older) = &pool.overlaps {
        return Err(Reason::Overlaps {
            pool: older.clone(),
        });
    }
    if pool.family != family {
        return Err(Reason::WrongFamily {
            wanted: family,
            actual: pool.family,
        });
    }
    let mut zone = false;
    if pool.is_node_bound() {
        match input.node {
            Some(node) => {
                if !pool.node_name.is_empty() && !pool.node_name.contains(&node.name) {
                    return Err(Reason::NodeName {
                        node: node.name.clone(),
                    });
                }
                if let Some(sel) = &pool.node_affinity {
                    if !selector_matches(sel, &node.labels, "spec.nodeAffinity")? {
                        return Err(Reason::NodeAffinity {
                            node: node.name.clone(),
                            selector: sel.to_string(),
                        });
                    }
                }
            }
            None => {
                if let Some(nodes) = input.nodes {
                    let mut any = false;
                    for n in nodes {
                        if pool_serves_node(pool, n)? {
                            any = true;
                            break;
                        }
                    }
                    if !any {
                        return Err(Reason::NoNodeMatches);
                    }
                }
                zone = true;
            }
        }
    }
    if !pool.namespace_name.is_empty() && !pool.namespace_name.contains(&input.namespace.name) {
        return Err(Reason::NamespaceName);
    }
    if let Some(sel) = &pool.namespace_affinity {
        if !selector_matches(sel, &input.namespace.labels, "spec.namespaceAffinity")? {
            return Err(Reason::NamespaceAffinity {
                selector: sel.to_string(),
            });
        }
    }
    if let Some(sel) = &pool.pod_affinity {
        if !selector_matches(sel, &input.pod.labels, "spec.podAffinity")? {
            return Err(Reason::PodAffinity {
                selector: sel.to_string(),
            });
        }
    }
    if !pool.multus_name.is_empty() {
        let ok = iface
            .network
            .as_deref()
            .is_some_and(|net| pool.multus_name.iter().any(|m| multus_name_matches(m, net)));
        if !ok {
            return Err(Reason::MultusName {
                network: iface.network.clone(),
            });
        }
    }
    let reserved = match family {
        IpFamily::V4 => input.reserved_v4,
        IpFamily::V6 => input.reserved_v6,
    };
    let allocatable = pool.allocatable(reserved);
    if allocatable.is_empty() {
        return Err(Reason::NoUsableAddress);
    }
    if !input.used.has_free(&pool.name, &allocatable) {
        return Err(Reason::Exhausted {
            capacity: allocatable.len(),
        });
    }
    Ok(zone)
}

fn vlan_problem(
    pools: &BTreeMap<String, Pool>,
    interface: &str,
    families: &[FamilySelection],
) -> Option<Problem> {
    let mut seen: Vec<(String, i64)> = Vec::new();
    for fs in families {
        for c in &fs.candidates {
            if let Some(p) = pools.get(&c.pool) {
                seen.push((p.name.clone(), p.vlan.unwrap_or(0)));
            }
        }
    }
    let first = seen.first()?.1;
    if seen.iter().all(|(_, v)| *v == first) {
        None
    } else {
        Some(Problem::VlanMismatch {
            interface: interface.to_string(),
            pools: seen,
        })
    }
}

/// The candidates worth reserving for a Pod whose node is unknown: every candidate up to and
/// including the first that serves any node. After that one, later pools would never be used.
pub fn reservation_set(fs: &FamilySelection) -> &[Candidate] {
    match fs.candidates.iter().position(|c| !c.zone) {
        Some(i) => &fs.candidates[..=i],
        None => &fs.candidates,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::labels::LabelSelectorRequirement;
    use crate::model::Owner;

    // ---- builders -------------------------------------------------------------------------

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn mk_pool(name: &str, subnet: &str, ips: &[&str]) -> Pool {
        Pool::new(
            name,
            subnet.parse().unwrap(),
            IpSet::parse_list(ips).unwrap(),
        )
    }

    fn node_in(key: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: key.to_string(),
                operator: "In".to_string(),
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
        }
    }

    fn mk_pod(ns: &str, annotations: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            namespace: ns.to_string(),
            name: Some("p".to_string()),
            annotations: labels(annotations),
            ..PodInfo::default()
        }
    }

    fn mk_ns(name: &str, lbls: &[(&str, &str)], annotations: &[(&str, &str)]) -> NamespaceInfo {
        let mut l = labels(lbls);
        l.insert("kubernetes.io/metadata.name".to_string(), name.to_string());
        NamespaceInfo {
            name: name.to_string(),
            labels: l,
            annotations: labels(annotations),
        }
    }

    fn mk_node(name: &str, lbls: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            labels: labels(lbls),
        }
    }

    /// A world: pools, config, usage.
    struct World {
        pools: BTreeMap<String, Pool>,
        used: BTreeMap<String, IpSet>,
        config: IpamConfig,
        reserved_v4: IpSet,
        reserved_v6: IpSet,
        nodes: Vec<NodeInfo>,
    }

    impl World {
        fn new(pools: Vec<Pool>) -> World {
            World {
                pools: pools.into_iter().map(|p| (p.name.clone(), p)).collect(),
                used: BTreeMap::new(),
                config: IpamConfig::default(),
                reserved_v4: IpSet::new(),
                reserved_v6: IpSet::new(),
                nodes: Vec::new(),
            }
        }

        fn select(
            &self,
            pod: &PodInfo,
            ns: &NamespaceInfo,
            node: Option<&NodeInfo>,
            ifaces: &[InterfaceRequest],
        ) -> Result<Selection, Refusal> {
            select(&SelectionInput {
                pod,
                namespace: ns,
                node,
                nodes: if self.nodes.is_empty() {
                    None
                } else {
                    Some(&self.nodes)
                },
                interfaces: ifaces,
                config: &self.config,
                pools: &self.pools,
                used: &self.used,
                reserved_v4: &self.reserved_v4,
                reserved_v6: &self.reserved_v6,
            })
        }

        fn fill(&mut self, pool: &str) {
            let p = &self.pools[pool];
            let all = p.allocatable(&self.reserved_v4);
            self.used.insert(pool.to_string(), all);
        }
    }

    fn pools_of(s: &Selection, iface: usize, fam: usize) -> Vec<String> {
        s.interfaces[iface].families[fam]
            .candidates
            .iter()
            .map(|c| c.pool.clone())
            .collect()
    }

    // ---- scenario 1: zones ----------------------------------------------------------------

    fn zone_world() -> World {
        let mut p6 = mk_pool("test-ippool-6", "10.6.0.0/16", &["10.6.168.60-10.6.168.69"]);
        p6.gateway = Some("10.6.0.1".parse().unwrap());
        p6.node_affinity = Some(node_in("node-subnet", &["subnet-6"]));
        let mut p7 = mk_pool("test-ippool-7", "10.7.0.0/16", &["10.7.168.60-10.7.168.69"]);
        p7.gateway = Some("10.7.0.1".parse().unwrap());
        p7.node_affinity = Some(node_in("node-subnet", &["subnet-7"]));
        World::new(vec![p6, p7])
    }

    const ZONE_ANNO: (&str, &str) = (
        "ipam.spidernet.io/ippool",
        r#"{"ipv4": ["test-ippool-6", "test-ippool-7"]}"#,
    );

    #[test]
    fn zones_daemonset_pod_gets_the_pool_of_its_node() {
        let w = zone_world();
        let ns = mk_ns("zone-demo", &[], &[]);
        let pod = mk_pod("zone-demo", &[ZONE_ANNO]);
        let n6 = mk_node("controller-node-1", &[("node-subnet", "subnet-6")]);
        let n7 = mk_node("worker-node-1", &[("node-subnet", "subnet-7")]);

        let s = w.select(&pod, &ns, Some(&n6), &[]).unwrap();
        assert_eq!(s.interfaces[0].interface, "eth0");
        assert_eq!(s.interfaces[0].rule, Rule::PodIpPool);
        assert_eq!(pools_of(&s, 0, 0), vec!["test-ippool-6"]);
        assert!(!s.interfaces[0].families[0].candidates[0].zone);
        assert_eq!(
            s.interfaces[0].families[0].excluded,
            vec![Exclusion {
                pool: "test-ippool-7".to_string(),
                reason: Reason::NodeAffinity {
                    node: "controller-node-1".to_string(),
                    selector: "node-subnet in (subnet-7)".to_string()
                }
            }]
        );

        let s = w.select(&pod, &ns, Some(&n7), &[]).unwrap();
        assert_eq!(pools_of(&s, 0, 0), vec!["test-ippool-7"]);
    }

    #[test]
    fn zones_deployment_pod_with_unknown_node_reserves_in_each_zone() {
        let mut w = zone_world();
        let n6 = mk_node("controller-node-1", &[("node-subnet", "subnet-6")]);
        let n7 = mk_node("worker-node-1", &[("node-subnet", "subnet-7")]);
        w.nodes = vec![n6.clone(), n7.clone()];
        let ns = mk_ns("zone-demo", &[], &[]);
        let pod = mk_pod("zone-demo", &[ZONE_ANNO]);
        let s = w.select(&pod, &ns, None, &[]).unwrap();
        let fs = &s.interfaces[0].families[0];
        assert_eq!(pools_of(&s, 0, 0), vec!["test-ippool-6", "test-ippool-7"]);
        assert!(fs.candidates.iter().all(|c| c.zone));
        assert_eq!(reservation_set(fs).len(), 2);
        // Once bound, the reservation matching the node is kept (as the operator resolves it).
        let record = crate::reservation::Reservation {
            id: "r".to_string(),
            interfaces: vec![crate::reservation::ReservedInterface {
                interface: "eth0".to_string(),
                clean_gateway: None,
                ipv4: reservation_set(fs)
                    .iter()
                    .map(|c| crate::reservation::ReservedAddress {
                        pool: c.pool.clone(),
                        address: w.pools[&c.pool].ips.first().unwrap(),
                    })
                    .collect(),
                ipv6: vec![],
            }],
        };
        let kept_pool = |n: &NodeInfo| {
            record
                .resolve_for_node(&w.pools, n)
                .map(|(kept, _)| kept.interfaces[0].ipv4[0].pool.clone())
        };
        assert_eq!(kept_pool(&n6).unwrap(), "test-ippool-6");
        assert_eq!(kept_pool(&n7).unwrap(), "test-ippool-7");
        let n8 = mk_node("elsewhere", &[("node-subnet", "subnet-8")]);
        assert_eq!(kept_pool(&n8), None);
    }

    #[test]
    fn zones_pool_that_no_node_serves_is_dropped() {
        let mut w = zone_world();
        w.nodes = vec![mk_node("controller-node-1", &[("node-subnet", "subnet-6")])];
        let s = w
            .select(
                &mk_pod("zone-demo", &[ZONE_ANNO]),
                &mk_ns("zone-demo", &[], &[]),
                None,
                &[],
            )
            .unwrap();
        assert_eq!(pools_of(&s, 0, 0), vec!["test-ippool-6"]);
        assert_eq!(
            s.interfaces[0].families[0].excluded[0].reason,
            Reason::NoNodeMatches
        );
    }

    #[test]
    fn zones_node_in_no_zone_is_refused_naming_every_pool() {
        let w = zone_world();
        let n8 = mk_node("edge-1", &[("node-subnet", "subnet-8")]);
        let err = w
            .select(
                &mk_pod("zone-demo", &[ZONE_ANNO]),
                &mk_ns("zone-demo", &[], &[]),
                Some(&n8),
                &[],
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: \
             pool test-ippool-6: node edge-1 does not match its spec.nodeAffinity (node-subnet in (subnet-6)); \
             pool test-ippool-7: node edge-1 does not match its spec.nodeAffinity (node-subnet in (subnet-7))"
        );
    }

    #[test]
    fn zones_unknown_node_with_an_unrestricted_backup_stops_reserving_there() {
        let mut w = zone_world();
        w.pools.insert(
            "any".to_string(),
            mk_pool("any", "10.8.0.0/16", &["10.8.0.10-10.8.0.20"]),
        );
        w.pools.insert(
            "never".to_string(),
            mk_pool("never", "10.9.0.0/16", &["10.9.0.10-10.9.0.20"]),
        );
        let pod = mk_pod(
            "zone-demo",
            &[(
                "ipam.spidernet.io/ippool",
                r#"{"ipv4": ["test-ippool-6", "any", "test-ippool-7", "never"]}"#,
            )],
        );
        let s = w
            .select(&pod, &mk_ns("zone-demo", &[], &[]), None, &[])
            .unwrap();
        // Node-bound pools sort before unrestricted ones (Spiderpool's priority); ties keep
        // the written order.
        assert_eq!(
            pools_of(&s, 0, 0),
            vec!["test-ippool-6", "test-ippool-7", "any", "never"]
        );
        let set: Vec<&str> = reservation_set(&s.interfaces[0].families[0])
            .iter()
            .map(|c| c.pool.as_str())
            .collect();
        assert_eq!(set, vec!["test-ippool-6", "test-ippool-7", "any"]);
    }

    // ---- scenario 2: priorities and backup --------------------------------------------------

    fn priority_world() -> World {
        let mut default_pool = mk_pool(
            "default-v4-ippool",
            "172.18.0.0/16",
            &["172.18.40.41-172.18.40.45"],
        );
        default_pool.namespace_affinity = Some(LabelSelector {
            match_labels: labels(&[("foo", "bar")]),
            match_expressions: Vec::new(),
        });
        let backup = mk_pool(
            "backup-v4-ippool",
            "172.18.0.0/16",
            &["172.18.40.46-172.18.40.50"],
        );
        let team = mk_pool("team-a-v4", "172.18.0.0/16", &["172.18.41.1-172.18.41.100"]);
        let eth1 = mk_pool("eth1-v4", "10.20.0.0/24", &["10.20.0.10-10.20.0.200"]);
        let mut w = World::new(vec![default_pool, backup, team, eth1]);
        w.config.cluster_default_ipv4_ippool = vec!["default-v4-ippool".to_string()];
        w
    }

    fn team_a() -> NamespaceInfo {
        mk_ns(
            "team-a",
            &[("foo", "bar")],
            &[("ipam.spidernet.io/default-ipv4-ippool", r#"["team-a-v4"]"#)],
        )
    }

    #[test]
    fn pod_annotation_beats_namespace_default_beats_cluster_default() {
        let w = priority_world();
        let pod = mk_pod(
            "team-a",
            &[(
                "ipam.spidernet.io/ippool",
                r#"{"ipv4": ["backup-v4-ippool"]}"#,
            )],
        );
        let s = w.select(&pod, &team_a(), None, &[]).unwrap();
        assert_eq!(s.interfaces[0].rule, Rule::PodIpPool);
        assert_eq!(pools_of(&s, 0, 0), vec!["backup-v4-ippool"]);

        let s = w
            .select(&mk_pod("team-a", &[]), &team_a(), None, &[])
            .unwrap();
        assert_eq!(
            s.interfaces[0].rule,
            Rule::NamespaceDefault {
                namespace: "team-a".to_string()
            }
        );
        assert_eq!(pools_of(&s, 0, 0), vec!["team-a-v4"]);

        let plain = mk_ns("plain", &[("foo", "bar")], &[]);
        let s = w.select(&mk_pod("plain", &[]), &plain, None, &[]).unwrap();
        assert_eq!(s.interfaces[0].rule, Rule::ClusterDefault);
        assert_eq!(pools_of(&s, 0, 0), vec!["default-v4-ippool"]);
    }

    #[test]
    fn old_namespace_key_is_read() {
        let w = priority_world();
        let legacy = mk_ns(
            "legacy",
            &[],
            &[("ipam.spidernet.io/defaultv4ippool", r#"["team-a-v4"]"#)],
        );
        let s = w
            .select(&mk_pod("legacy", &[]), &legacy, None, &[])
            .unwrap();
        assert_eq!(pools_of(&s, 0, 0), vec!["team-a-v4"]);
    }

    #[test]
    fn ippools_wins_over_ippool_and_serves_every_interface() {
        let w = priority_world();
        let pod = mk_pod(
            "team-a",
            &[
                (
                    "ipam.spidernet.io/ippool",
                    r#"{"ipv4": ["backup-v4-ippool"]}"#,
                ),
                (
                    "ipam.spidernet.io/ippools",
                    r#"[{"interface": "eth0", "ipv4": ["team-a-v4"]},
                        {"interface": "eth1", "ipv4": ["eth1-v4"], "cleangateway": true}]"#,
                ),
            ],
        );
        let s = w.select(&pod, &team_a(), None, &[]).unwrap();
        assert_eq!(s.interfaces.len(), 2);
        assert_eq!(s.interfaces[0].rule, Rule::PodIpPools);
        assert_eq!(pools_of(&s, 0, 0), vec!["team-a-v4"]);
        assert_eq!(s.interfaces[1].interface, "eth1");
        assert_eq!(pools_of(&s, 1, 0), vec!["eth1-v4"]);
        assert_eq!(s.interfaces[1].clean_gateway, Some(true));
    }

    #[test]
    fn unnamed_ippools_entries_follow_the_interfaces_in_order() {
        let w = priority_world();
        let pod = mk_pod(
            "team-a",
            &[(
                "ipam.spidernet.io/ippools",
                r#"[{"ipv4": ["team-a-v4"]}, {"ipv4": ["eth1-v4"]}]"#,
            )],
        );
        let ifaces = [
            InterfaceRequest::eth0(),
            InterfaceRequest {
                name: "net1".to_string(),
                network: Some("kube-system/macvlan".to_string()),
                ..InterfaceRequest::default()
            },
        ];
        let s = w.select(&pod, &team_a(), None, &ifaces).unwrap();
        assert_eq!(pools_of(&s, 0, 0), vec!["team-a-v4"]);
        assert_eq!(s.interfaces[1].interface, "net1");
        assert_eq!(pools_of(&s, 1, 0), vec!["eth1-v4"]);
    }

    #[test]
    fn ippools_without_an_entry_for_a_served_interface_is_refused() {
        let w = priority_world();
        let pod = mk_pod(
            "team-a",
            &[(
                "ipam.spidernet.io/ippools",
                r#"[{"interface": "eth0", "ipv4": ["team-a-v4"]}]"#,
            )],
        );
        let ifaces = [
            InterfaceRequest::eth0(),
            InterfaceRequest {
                name: "net1".to_string(),
                ..InterfaceRequest::default()
            },
        ];
        let err = w.select(&pod, &team_a(), None, &ifaces).unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface net1: annotation ipam.spidernet.io/ippools has no entry for it; add {\"interface\": \"net1\", ...}"
        );
    }

    #[test]
    fn a_full_first_pool_falls_through_to_the_backup() {
        let mut w = priority_world();
        let pod = mk_pod(
            "team-a",
            &[(
                "ipam.spidernet.io/ippool",
                r#"{"interface": "eth0", "ipv4pools": ["default-v4-ippool", "backup-v4-ippool"]}"#,
            )],
        );
        let s = w.select(&pod, &team_a(), None, &[]).unwrap();
        assert_eq!(
            pools_of(&s, 0, 0),
            vec!["default-v4-ippool", "backup-v4-ippool"]
        );
        w.fill("default-v4-ippool");
        let s = w.select(&pod, &team_a(), None, &[]).unwrap();
        assert_eq!(pools_of(&s, 0, 0), vec!["backup-v4-ippool"]);
        assert_eq!(
            s.interfaces[0].families[0].excluded[0].reason,
            Reason::Exhausted { capacity: 5 }
        );
        w.fill("backup-v4-ippool");
        let err = w.select(&pod, &team_a(), None, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: \
             pool default-v4-ippool: all 5 addresses are in use; pool backup-v4-ippool: all 5 addresses are in use"
        );
    }

    #[test]
    fn cluster_default_excluded_by_namespace_affinity_is_a_clear_refusal() {
        let w = priority_world();
        let err = w
            .select(
                &mk_pod("default", &[]),
                &mk_ns("default", &[], &[]),
                None,
                &[],
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface eth0: no IPv4 pool from cluster default pools (spec.default: true, or \
             clusterDefaultIPv4IPPool/clusterDefaultIPv6IPPool in spiderpool-conf) can serve this Pod: \
             pool default-v4-ippool: the namespace's labels do not match its spec.namespaceAffinity (foo=bar)"
        );
    }

    #[test]
    fn spec_default_pools_join_the_configured_defaults() {
        let mut w = priority_world();
        w.pools.get_mut("backup-v4-ippool").unwrap().default = true;
        let s = w
            .select(
                &mk_pod("x", &[]),
                &mk_ns("x", &[("foo", "bar")], &[]),
                None,
                &[],
            )
            .unwrap();
        assert_eq!(
            pools_of(&s, 0, 0),
            vec!["default-v4-ippool", "backup-v4-ippool"]
        );
    }

    #[test]
    fn no_rule_at_all_says_what_to_configure() {
        let w = World::new(vec![mk_pool("a", "10.0.0.0/24", &["10.0.0.5"])]);
        let err = w
            .select(&mk_pod("x", &[]), &mk_ns("x", &[], &[]), None, &[])
            .unwrap_err();
        assert!(matches!(err.problems[0], Problem::NoRule { .. }));
        assert!(err
            .to_string()
            .contains("mark a SpiderIPPool spec.default: true"));
    }

    #[test]
    fn every_filter_names_its_reason() {
        let mut w = priority_world();
        let mut disabled = mk_pool("disabled", "10.1.0.0/24", &["10.1.0.5"]);
        disabled.disable = true;
        let mut deleting = mk_pool("deleting", "10.2.0.0/24", &["10.2.0.5"]);
        deleting.deleting = true;
        let v6 = mk_pool("v6", "fd00::/64", &["fd00::5"]);
        let mut by_name = mk_pool("by-name", "10.3.0.0/24", &["10.3.0.5"]);
        by_name.namespace_name = vec!["other".to_string()];
        let mut by_pod = mk_pool("by-pod", "10.4.0.0/24", &["10.4.0.5"]);
        by_pod.pod_affinity = Some(LabelSelector {
            match_labels: labels(&[("app", "db")]),
            match_expressions: Vec::new(),
        });
        let mut by_multus = mk_pool("by-multus", "10.5.0.0/24", &["10.5.0.5"]);
        by_multus.multus_name = vec!["kube-system/macvlan".to_string()];
        let mut all_excluded = mk_pool("all-excluded", "10.7.0.0/24", &["10.7.0.5"]);
        all_excluded.exclude_ips = IpSet::parse_list(&["10.7.0.5"]).unwrap();
        let mut by_node = mk_pool("by-node", "10.8.0.0/24", &["10.8.0.5"]);
        by_node.node_name = vec!["other-node".to_string()];
        for p in [
            disabled,
            deleting,
            v6,
            by_name,
            by_pod,
            by_multus,
            all_excluded,
            by_node,
        ] {
            w.pools.insert(p.name.clone(), p);
        }
        let pod = mk_pod(
            "team-a",
            &[(
                "ipam.spidernet.io/ippool",
                r#"{"ipv4": ["missing", "disabled", "deleting", "v6", "by-name", "by-pod", "by-multus", "all-excluded", "by-node", "nothing-*"]}"#,
            )],
        );
        let node = mk_node("n1", &[]);
        let err = w.select(&pod, &team_a(), Some(&node), &[]).unwrap_err();
        let Problem::NoCandidate { excluded, .. } = &err.problems[0] else {
            panic!("{err}")
        };
        let reasons: Vec<String> = excluded
            .iter()
            .map(|e| format!("{}: {}", e.pool, e.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                "missing: no SpiderIPPool of that name exists",
                "disabled: the pool is disabled (spec.disable: true)",
                "deleting: the pool is being deleted",
                "v6: it is an IPv6 pool, but an IPv4 pool is needed here",
                "by-name: the namespace is not in its spec.namespaceName",
                "by-pod: the Pod's labels do not match its spec.podAffinity (app=db)",
                "by-multus: it is reserved to Multus networks (spec.multusName) and this interface uses none",
                "all-excluded: every address is excluded (spec.excludeIPs), the gateway, or reserved (SpiderReservedIP)",
                "by-node: node n1 is not in its spec.nodeName",
                "nothing-*: the pattern matches no pool",
            ]
        );
    }

    #[test]
    fn multus_name_admits_the_matching_network_only() {
        let mut p = mk_pool("macvlan-pool", "10.5.0.0/24", &["10.5.0.5-10.5.0.9"]);
        p.multus_name = vec!["kube-system/macvlan-conf".to_string()];
        let w = World::new(vec![p]);
        let pod = mk_pod(
            "x",
            &[("ipam.spidernet.io/ippool", r#"{"ipv4": ["macvlan-pool"]}"#)],
        );
        let via = |net: &str| InterfaceRequest {
            name: "eth0".to_string(),
            network: Some(net.to_string()),
            ..InterfaceRequest::default()
        };
        assert!(w
            .select(
                &pod,
                &mk_ns("x", &[], &[]),
                None,
                &[via("kube-system/macvlan-conf")]
            )
            .is_ok());
        let err = w
            .select(
                &pod,
                &mk_ns("x", &[], &[]),
                None,
                &[via("kube-system/other")],
            )
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("network kube-system/other is not in its spec.multusName"));
    }

    #[test]
    fn priority_sort_puts_affinity_pools_first_and_keeps_written_order_among_equals() {
        let a = mk_pool("a", "10.0.1.0/24", &["10.0.1.5"]);
        let b = mk_pool("b", "10.0.2.0/24", &["10.0.2.5"]);
        let mut c = mk_pool("c", "10.0.3.0/24", &["10.0.3.5"]);
        c.namespace_name = vec!["x".to_string()];
        let mut d = mk_pool("d", "10.0.4.0/24", &["10.0.4.5"]);
        d.pod_affinity = Some(LabelSelector::default());
        let mut e = mk_pool("e", "10.0.5.0/24", &["10.0.5.5"]);
        e.node_name = vec!["n".to_string()];
        let w = World::new(vec![a, b, c, d, e]);
        let pod = mk_pod(
            "x",
            &[(
                "ipam.spidernet.io/ippool",
                r#"{"ipv4": ["b", "a", "c", "e", "d"]}"#,
            )],
        );
        let s = w
            .select(&pod, &mk_ns("x", &[], &[]), Some(&mk_node("n", &[])), &[])
            .unwrap();
        assert_eq!(pools_of(&s, 0, 0), vec!["d", "e", "c", "b", "a"]);
    }

    #[test]
    fn dual_stack_needs_both_families_from_the_rule_that_applies() {
        let mut w = World::new(vec![
            mk_pool("v4", "10.0.0.0/24", &["10.0.0.5-10.0.0.9"]),
            mk_pool("v6", "fd00::/64", &["fd00::5-fd00::9"]),
        ]);
        w.config.enable_ipv6 = true;
        let pod = mk_pod(
            "x",
            &[(
                "ipam.spidernet.io/ippool",
                r#"{"ipv4": ["v4"], "ipv6": ["v6"]}"#,
            )],
        );
        let s = w.select(&pod, &mk_ns("x", &[], &[]), None, &[]).unwrap();
        assert_eq!(s.interfaces[0].families.len(), 2);
        assert_eq!(pools_of(&s, 0, 1), vec!["v6"]);
        assert_eq!(s.interfaces[0].families[1].family, IpFamily::V6);

        let only4 = mk_pod("x", &[("ipam.spidernet.io/ippool", r#"{"ipv4": ["v4"]}"#)]);
        let err = w
            .select(&only4, &mk_ns("x", &[], &[]), None, &[])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface eth0: Pod annotation ipam.spidernet.io/ippool names no IPv6 pool, but IPv6 is enabled; \
             add `ipv6` pools there or disable IPv6 in spiderpool-conf"
        );
    }

    #[test]
    fn ipv6_only_ignores_the_ipv4_list() {
        let mut w = World::new(vec![mk_pool("v6", "fd00::/64", &["fd00::5-fd00::9"])]);
        w.config.enable_ipv4 = false;
        w.config.enable_ipv6 = true;
        let pod = mk_pod(
            "x",
            &[(
                "ipam.spidernet.io/ippool",
                r#"{"ipv4": ["nope"], "ipv6": ["v6"]}"#,
            )],
        );
        let s = w.select(&pod, &mk_ns("x", &[], &[]), None, &[]).unwrap();
        assert_eq!(s.interfaces[0].families.len(), 1);
        assert_eq!(pools_of(&s, 0, 0), vec!["v6"]);
    }

    #[test]
    fn malformed_annotation_is_refused_naming_the_key() {
        let w = priority_world();
        let pod = mk_pod(
            "team-a",
            &[("ipam.spidernet.io/ippool", r#"{"ipv4": "team-a-v4"}"#)],
        );
        let err = w.select(&pod, &team_a(), None, &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("annotation ipam.spidernet.io/ippool:"),
            "{err}"
        );
    }

    #[test]
    fn reserved_addresses_can_empty_a_pool() {
        let mut w = World::new(vec![mk_pool("a", "10.0.0.0/24", &["10.0.0.5-10.0.0.6"])]);
        w.reserved_v4 = IpSet::parse_list(&["10.0.0.5-10.0.0.6"]).unwrap();
        let pod = mk_pod("x", &[("ipam.spidernet.io/ippool", r#"{"ipv4": ["a"]}"#)]);
        let err = w
            .select(&pod, &mk_ns("x", &[], &[]), None, &[])
            .unwrap_err();
        assert!(
            err.to_string().contains("reserved (SpiderReservedIP)"),
            "{err}"
        );
    }

    #[test]
    fn vlan_mismatch_within_an_interface_is_refused() {
        let mut a = mk_pool("a", "10.0.0.0/24", &["10.0.0.5"]);
        a.vlan = Some(10);
        let mut b = mk_pool("b", "10.0.1.0/24", &["10.0.1.5"]);
        b.vlan = Some(20);
        let w = World::new(vec![a, b]);
        let pod = mk_pod(
            "x",
            &[("ipam.spidernet.io/ippool", r#"{"ipv4": ["a", "b"]}"#)],
        );
        let err = w
            .select(&pod, &mk_ns("x", &[], &[]), None, &[])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface eth0: its candidate pools are on different VLANs (a: vlan 10, b: vlan 20); pools of one interface must share a VLAN"
        );
    }

    #[test]
    fn wildcards_expand_in_name_order() {
        let w = World::new(vec![
            mk_pool("rack-b", "10.0.2.0/24", &["10.0.2.5"]),
            mk_pool("rack-a", "10.0.1.0/24", &["10.0.1.5"]),
            mk_pool("other", "10.0.3.0/24", &["10.0.3.5"]),
        ]);
        let pod = mk_pod(
            "x",
            &[("ipam.spidernet.io/ippool", r#"{"ipv4": ["rack-*"]}"#)],
        );
        let s = w.select(&pod, &mk_ns("x", &[], &[]), None, &[]).unwrap();
        assert_eq!(pools_of(&s, 0, 0), vec!["rack-a", "rack-b"]);
    }

    #[test]
    fn subnet_annotation_is_ignored_with_a_note_when_the_feature_is_off() {
        let w = priority_world();
        let pod = mk_pod(
            "team-a",
            &[("ipam.spidernet.io/subnet", r#"{"ipv4": ["subnet-6"]}"#)],
        );
        let s = w.select(&pod, &team_a(), None, &[]).unwrap();
        assert_eq!(pools_of(&s, 0, 0), vec!["team-a-v4"]);
        assert_eq!(s.notes.len(), 1);
        assert!(s.notes[0].contains("enableSpiderSubnet"));
    }

    #[test]
    fn subnet_annotation_plans_the_applications_auto_pool() {
        let mut w = priority_world();
        w.config.enable_spider_subnet = true;
        let mut pod = mk_pod(
            "team-a",
            &[
                ("ipam.spidernet.io/subnet", r#"{"ipv4": ["subnet-6"]}"#),
                ("ipam.spidernet.io/ippool-ip-number", "+2"),
            ],
        );
        pod.owner = Some(Owner {
            api_version: "apps/v1".to_string(),
            kind: "Deployment".to_string(),
            name: "web".to_string(),
            uid: "0b2a1f3e-1111-2222-3333-4c5d6e7f8a9b".to_string(),
            replicas: Some(3),
        });
        let s = w.select(&pod, &team_a(), None, &[]).unwrap();
        let fs = &s.interfaces[0].families[0];
        assert_eq!(
            fs.auto_pool,
            Some(AutoPoolPlan {
                subnet: "subnet-6".to_string(),
                pool: "auto4-deployment-team-a-web-eth0-4c5d6e7f8a9b".to_string(),
                desired_ips: 5,
                reclaim: true,
            })
        );
        assert_eq!(
            pools_of(&s, 0, 0),
            vec!["auto4-deployment-team-a-web-eth0-4c5d6e7f8a9b"]
        );
    }

    #[test]
    fn master_and_worker_pools_follow_the_node_role() {
        let mut master = mk_pool(
            "master-v4-ippool",
            "172.18.0.0/16",
            &["172.18.50.41-172.18.50.50"],
        );
        master.node_affinity = Some(LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "node-role.kubernetes.io/master".to_string(),
                operator: "Exists".to_string(),
                values: vec![],
            }],
        });
        let mut worker = mk_pool(
            "worker-v4-ippool",
            "172.18.0.0/16",
            &["172.18.50.51-172.18.50.60"],
        );
        worker.node_affinity = Some(LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "node-role.kubernetes.io/master".to_string(),
                operator: "DoesNotExist".to_string(),
                values: vec![],
            }],
        });
        let w = World::new(vec![master, worker]);
        let pod = mk_pod(
            "x",
            &[(
                "ipam.spidernet.io/ippool",
                r#"{"interface": "eth0", "ipv4pools": ["master-v4-ippool", "worker-v4-ippool"]}"#,
            )],
        );
        let cp = mk_node("control-plane", &[("node-role.kubernetes.io/master", "")]);
        let wk = mk_node("worker", &[]);
        let ns = mk_ns("x", &[], &[]);
        assert_eq!(
            pools_of(&w.select(&pod, &ns, Some(&cp), &[]).unwrap(), 0, 0),
            vec!["master-v4-ippool"]
        );
        assert_eq!(
            pools_of(&w.select(&pod, &ns, Some(&wk), &[]).unwrap(), 0, 0),
            vec!["worker-v4-ippool"]
        );
    }

    // ---- properties ------------------------------------------------------------------------

    mod props {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        struct PoolGen {
            v6: bool,
            disable: bool,
            deleting: bool,
            ns_name: Option<bool>,
            pod_aff: Option<bool>,
            node_aff: Option<bool>,
            full: bool,
            default: bool,
        }

        fn pool_gen() -> impl Strategy<Value = PoolGen> {
            (
                any::<bool>(),
                prop::bool::weighted(0.2),
                prop::bool::weighted(0.1),
                prop::option::of(any::<bool>()),
                prop::option::of(any::<bool>()),
                prop::option::of(any::<bool>()),
                prop::bool::weighted(0.2),
                prop::bool::weighted(0.3),
            )
                .prop_map(
                    |(v6, disable, deleting, ns_name, pod_aff, node_aff, full, default)| PoolGen {
                        v6,
                        disable,
                        deleting,
                        ns_name,
                        pod_aff,
                        node_aff,
                        full,
                        default,
                    },
                )
        }

        fn build(gens: &[PoolGen]) -> World {
            let mut pools = Vec::new();
            for (i, g) in gens.iter().enumerate() {
                let mut p = if g.v6 {
                    mk_pool(
                        &format!("p{i}"),
                        &format!("fd00:{i:x}::/64"),
                        &[&format!("fd00:{i:x}::5-fd00:{i:x}::9")],
                    )
                } else {
                    mk_pool(
                        &format!("p{i}"),
                        &format!("10.{i}.0.0/24"),
                        &[&format!("10.{i}.0.5-10.{i}.0.9")],
                    )
                };
                p.disable = g.disable;
                p.deleting = g.deleting;
                p.default = g.default;
                if let Some(m) = g.ns_name {
                    p.namespace_name = vec![if m { "x" } else { "y" }.to_string()];
                }
                if let Some(m) = g.pod_aff {
                    p.pod_affinity = Some(LabelSelector {
                        match_labels: labels(&[("app", if m { "web" } else { "db" })]),
                        match_expressions: Vec::new(),
                    });
                }
                if let Some(m) = g.node_aff {
                    p.node_affinity = Some(node_in("zone", &[if m { "a" } else { "b" }]));
                }
                pools.push(p);
            }
            let mut w = World::new(pools);
            for (i, g) in gens.iter().enumerate() {
                if g.full {
                    let name = format!("p{i}");
                    let all = w.pools[&name].allocatable(&IpSet::new());
                    w.used.insert(name, all);
                }
            }
            w.config.enable_ipv6 = true;
            w
        }

        proptest! {
            #[test]
            fn candidates_pass_every_filter_and_every_named_pool_is_accounted_for(
                gens in prop::collection::vec(pool_gen(), 1..10),
                order in prop::collection::vec(0usize..10, 1..12),
                node_known in any::<bool>(),
            ) {
                let w = build(&gens);
                let names: Vec<String> = order.iter().map(|i| format!("p{}", i % gens.len())).collect();
                let mut uniq: Vec<String> = Vec::new();
                for n in &names { if !uniq.contains(n) { uniq.push(n.clone()); } }
                let anno = format!(r#"{{"ipv4": {0}, "ipv6": {0}}}"#, serde_json::to_string(&uniq).unwrap());
                let mut pod = mk_pod("x", &[("ipam.spidernet.io/ippool", &anno)]);
                pod.labels = labels(&[("app", "web")]);
                let ns = mk_ns("x", &[], &[]);
                let node = mk_node("n", &[("zone", "a")]);
                let node = if node_known { Some(&node) } else { None };
                let first = w.select(&pod, &ns, node, &[]);
                // Deterministic.
                prop_assert_eq!(&first, &w.select(&pod, &ns, node, &[]));
                let (families, problems): (Vec<FamilySelection>, Vec<Problem>) = match first {
                    Ok(s) => (s.interfaces[0].families.clone(), Vec::new()),
                    Err(r) => (Vec::new(), r.problems),
                };
                for fs in &families {
                    // Every named pool is a candidate or excluded, exactly once.
                    let mut seen: Vec<String> = fs.candidates.iter().map(|c| c.pool.clone()).collect();
                    seen.extend(fs.excluded.iter().map(|e| e.pool.clone()));
                    let mut a = seen.clone(); a.sort();
                    let mut b = uniq.clone(); b.sort();
                    prop_assert_eq!(a, b);
                    // Candidates pass every filter.
                    for c in &fs.candidates {
                        let p = &w.pools[&c.pool];
                        prop_assert!(!p.disable && !p.deleting);
                        prop_assert_eq!(p.family, fs.family);
                        prop_assert!(p.namespace_name.is_empty() || p.namespace_name == vec!["x".to_string()]);
                        if let Some(sel) = &p.pod_affinity { prop_assert!(sel.matches(&pod.labels).unwrap()); }
                        if node_known {
                            if let Some(sel) = &p.node_affinity { prop_assert!(sel.matches(&labels(&[("zone", "a")])).unwrap()); }
                            prop_assert!(!c.zone);
                        } else {
                            prop_assert_eq!(c.zone, p.node_affinity.is_some());
                        }
                        prop_assert!(!w.used.contains_key(&c.pool));
                    }
                    // Sorted by priority, stable in the written order.
                    let keys: Vec<([bool; 6], usize)> = fs.candidates.iter()
                        .map(|c| (w.pools[&c.pool].priority_key(), uniq.iter().position(|n| *n == c.pool).unwrap()))
                        .collect();
                    let mut sorted = keys.clone(); sorted.sort();
                    prop_assert_eq!(keys, sorted);
                }
                for p in &problems {
                    let ok = matches!(p, Problem::NoCandidate { .. } | Problem::FamilyMissing { .. });
                    prop_assert!(ok, "unexpected problem {}", p);
                }
            }
        }
    }
}
