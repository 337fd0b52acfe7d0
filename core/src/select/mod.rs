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

use crate::annotations::{
    self, pod_ipam_annotations_as_read, IpNumber, PodIpamAnnotations, SubnetRequest,
};
use crate::auto_pool;
use crate::config::IpamConfig;
use crate::labels::LabelSelector;
use crate::model::{
    multus_name_matches, InterfaceRequest, NamespaceInfo, NodeInfo, Owner, PodInfo, Pool,
};
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
    /// An auto pool whose `spec.podAffinity` names another application than the Pod's
    /// controller (Spiderpool's match labels `ipam.spidernet.io/app-*`).
    AutoPoolAffinity {
        /// The selector.
        selector: String,
        /// The Pod's controller (`Kind namespace/name`), if it has one.
        owner: Option<String>,
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
            Reason::AutoPoolAffinity { selector, owner: Some(o) } => write!(
                f,
                "it is the SpiderSubnet auto pool of another application: its spec.podAffinity ({selector}) does not name the Pod's controller {o}"
            ),
            Reason::AutoPoolAffinity { selector, owner: None } => write!(
                f,
                "it is the SpiderSubnet auto pool of an application (spec.podAffinity {selector}) and the Pod has no controller"
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
    /// The SpiderSubnet annotation is used while auto-pools are off
    /// (`enableAutoPoolForApplication: false`).
    AutoPoolsOff {
        /// The annotation key.
        key: &'static str,
    },
    /// The Pod's controller is not a built-in workload kind (an OpenKruise CloneSet...), and
    /// the pool size is given relative to replicas, which cannot be read for it.
    ThirdPartyNeedsFixedNumber {
        /// The interface.
        interface: String,
        /// The controller, `Kind namespace/name`.
        owner: String,
    },
    /// Several SpiderIPPools carry the auto pool labels of this application, subnet, family
    /// and interface.
    AutoPoolAmbiguous {
        /// The interface.
        interface: String,
        /// The family.
        family: IpFamily,
        /// The pools, by name.
        pools: Vec<String>,
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
            Problem::AutoPoolsOff { key } => write!(
                f,
                "annotation {key} cannot be served: auto-pools are off (enableAutoPoolForApplication: false in spiderpool-conf; Spiderpool refuses these Pods too); remove the annotation and name pools with {}, or set enableAutoPoolForApplication: true",
                annotations::ANNO_IPPOOL
            ),
            Problem::ThirdPartyNeedsFixedNumber { interface, owner } => write!(
                f,
                "interface {interface}: the Pod's controller {owner} is not a Deployment, ReplicaSet, StatefulSet, DaemonSet, Job or CronJob, so its replicas cannot be read: set {} to a fixed number of addresses (like \"5\"), as Spiderpool requires for third-party controllers",
                annotations::ANNO_IPPOOL_IP_NUMBER
            ),
            Problem::AutoPoolAmbiguous { interface, family, pools } => write!(
                f,
                "interface {interface}: {} SpiderIPPools carry this application's {family} auto pool labels ({}); an application has one auto pool per subnet, family and interface: delete or relabel all but one",
                pools.len(),
                pools.join(", ")
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
    let annos =
        pod_ipam_annotations_as_read(&input.pod.annotations, input.config.enable_spider_subnet)?;
    let mut selection = Selection {
        routes: annos.routes.clone(),
        ..Selection::default()
    };
    selection.notes.extend(annos.warnings.iter().cloned());
    // Spiderpool reads the Namespace's defaults only for a Pod that names no pools itself: a
    // malformed one cannot refuse such a Pod.
    let own_pools = annos.ippools.is_some()
        || annos.ippool.is_some()
        || (input.config.enable_spider_subnet
            && (annos.subnets.is_some() || annos.subnet.is_some()));
    let ns_defaults = match annotations::namespace_defaults(&input.namespace.annotations) {
        Ok(d) => d,
        Err(e) if own_pools => {
            selection.notes.push(format!(
                "namespace {}: {e}; ignored, because the Pod names its own pools",
                input.namespace.name
            ));
            annotations::NamespaceDefaults::default()
        }
        Err(e) => return Err(e.into()),
    };
    selection.notes.extend(
        ns_defaults
            .warnings
            .iter()
            .map(|w| format!("namespace {}: {w}", input.namespace.name)),
    );
    let mut problems = Vec::new();

    let subnet_anno = annos.subnets.is_some() || annos.subnet.is_some();
    if subnet_anno
        && input.config.enable_spider_subnet
        && !input.config.enable_auto_pool_for_application
    {
        return Err(Refusal {
            problems: vec![Problem::AutoPoolsOff {
                key: if annos.subnets.is_some() {
                    annotations::ANNO_SUBNETS
                } else {
                    annotations::ANNO_SUBNET
                },
            }],
        });
    }
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
        if let Some(note) = vlan_note(input.pools, &iface.name, &families) {
            selection.notes.push(note);
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
    let owner = input.pod.owner.as_ref().filter(|o| o.kind != "Pod");
    if let Some(o) = owner {
        let fixed = matches!(annos.ip_number, Some(IpNumber::Fixed(_)));
        if !fixed && auto_pool::is_third_party(&o.api_version, &o.kind) {
            return Err(Problem::ThirdPartyNeedsFixedNumber {
                interface: iface.name.clone(),
                owner: format!("{} {}/{}", o.kind, input.pod.namespace, o.name),
            });
        }
    }
    let desired_ips = match (annos.ip_number, owner) {
        (Some(IpNumber::Fixed(n)), _) => n,
        (Some(IpNumber::Flexible(extra)), Some(o)) => o.replicas.unwrap_or(1).saturating_add(extra),
        (None, Some(o)) => input.config.default_auto_pool_size(o.replicas.unwrap_or(1)),
        (None, None) => 1,
        (Some(IpNumber::Flexible(_)), None) => {
            return Err(Problem::SubnetNeedsController {
                interface: iface.name.clone(),
            })
        }
    };
    let pool = match owner {
        Some(o) => {
            let app = owner_app(o, &input.pod.namespace);
            let key = auto_pool::Key {
                app: &app,
                subnet,
                family,
                interface: &iface.name,
            };
            let pools = input.pools.iter().map(|(n, p)| (n.as_str(), &p.labels));
            match auto_pool::find_for_pod(pools, &key) {
                auto_pool::Found::Pool(name) => name,
                auto_pool::Found::Missing => key.pool_name(),
                auto_pool::Found::Ambiguous(pools) => {
                    return Err(Problem::AutoPoolAmbiguous {
                        interface: iface.name.clone(),
                        family,
                        pools,
                    })
                }
            }
        }
        None => auto_pool::pool_name(
            family,
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

/// A Pod's controller as the auto pool rules see it.
pub fn owner_app(o: &Owner, namespace: &str) -> auto_pool::App {
    auto_pool::App {
        api_version: o.api_version.clone(),
        kind: o.kind.clone(),
        namespace: namespace.to_string(),
        name: o.name.clone(),
        uid: o.uid.clone(),
    }
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
/// Whether a `podAffinity` is Spiderpool's auto pool affinity (it names the application with
/// `ipam.spidernet.io/app-name`), not a selector of Pod labels (aipam's earlier auto pools).
fn is_auto_affinity(sel: &LabelSelector) -> bool {
    sel.match_labels.contains_key(auto_pool::AFFINITY_APP_NAME)
}

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
    if let Some(sel) = pool
        .pod_affinity
        .as_ref()
        .filter(|s| auto_pool::is_auto_pool(&pool.labels) && is_auto_affinity(s))
    {
        // Spiderpool: an auto pool's podAffinity names the application, not its Pods' labels.
        let owner = input
            .pod
            .owner
            .as_ref()
            .map(|o| owner_app(o, &input.namespace.name));
        if !auto_pool::affinity_matches(sel, owner.as_ref()) {
            return Err(Reason::AutoPoolAffinity {
                selector: sel.to_string(),
                owner: owner.map(|o| format!("{} {}/{}", o.kind, o.namespace, o.name)),
            });
        }
    } else if let Some(sel) = &pool.pod_affinity {
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

/// Candidate pools of one interface on different VLANs: Spiderpool ≥ 1.0 no longer refuses
/// this (`spec.vlan` is deprecated), so it is a note. The interface gets the VLAN of the pool of
/// its first address (IPv4 first).
fn vlan_note(
    pools: &BTreeMap<String, Pool>,
    interface: &str,
    families: &[FamilySelection],
) -> Option<String> {
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
        return None;
    }
    let listed: Vec<String> = seen.iter().map(|(p, v)| format!("{p}: vlan {v}")).collect();
    Some(format!(
        "interface {interface}: its candidate pools are on different VLANs ({}); the interface \
         gets the VLAN of the pool its first address comes from (spec.vlan is deprecated, and \
         Spiderpool no longer checks this)",
        listed.join(", ")
    ))
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
mod tests;
