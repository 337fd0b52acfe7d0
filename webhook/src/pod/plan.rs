//! The admission plan, as pure functions over the Pod, what the cache holds and what the API
//! answered: whether this IPAM serves the Pod, which pools per interface and family, which
//! StatefulSet claim to take over, the warnings, or the refusal. No I/O here; the executor in
//! [`super`] gathers the inputs and carries the plan out.

use std::collections::BTreeMap;
use std::net::IpAddr;

use aipam_core::auto_pool;
use aipam_core::config::IpamConfig;
use aipam_core::model::{InterfaceRequest, NamespaceInfo, NodeInfo, Owner, PodInfo};
use aipam_core::ranges::{IpFamily, IpSet};
use aipam_core::reservation::{ReservedAddress, ANNO_RESERVATION, ANNO_SKIP, LABEL_NAMESPACE_IPAM};
use aipam_core::select::{select, AutoPoolPlan, FamilySelection, Selection, SelectionInput};
use aipam_core::usage::Usage;
use aipam_crds::IpVersion;
use k8s_openapi::api::core::v1::Pod;

use super::known_node;
use super::refusal::Refused;
use crate::cache::{Cache, ClaimEntry, Snapshot};

/// The Pod as the cache knows its surroundings.
#[derive(Debug)]
pub(crate) struct Screened {
    /// The Pod's namespace.
    pub namespace: String,
    /// The Pod's name, when it has one yet (not with `generateName`).
    pub name: Option<String>,
    /// Its node, when admission knows it.
    pub node: Option<NodeInfo>,
    /// The IPAM configuration.
    pub config: IpamConfig,
    /// Its namespace.
    pub ns_info: NamespaceInfo,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Whether the Pod arrives with a reservation record. A record present at creation was not
/// made for this Pod: reservation ids are minted per admission, the hook is not reinvoked
/// (`reinvocationPolicy: Never`), and the record only ever arrives on a new Pod copied from
/// another one (`kubectl get -o yaml`, a restored backup, a template). Honouring it would hand
/// that Pod's addresses to this one: it is replaced by a fresh reservation, or removed when
/// nothing is reserved for the Pod.
pub(crate) fn arrives_with_record(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNO_RESERVATION))
}

/// The first look, before any API read: whether this IPAM serves the Pod (`None` for a host
/// network Pod, a skipped one, or one of a namespace opted out), and its node, namespace and
/// configuration as the cache holds them.
pub(crate) fn screen(
    req_namespace: Option<&str>,
    pod: &Pod,
    cache: &Cache,
) -> Result<Option<Screened>, Refused> {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    if host_network || annotations.get(ANNO_SKIP).map(String::as_str) == Some("true") {
        return Ok(None);
    }
    let namespace = req_namespace
        .map(str::to_string)
        .or_else(|| pod.metadata.namespace.clone())
        .unwrap_or_default();
    let node = match known_node(pod) {
        None => None,
        Some(n) => Some(cache.node(&n).ok_or_else(|| Refused::unknown_node(&n))?),
    };
    let config = cache.config().map_err(|e| Refused::config(&e))?;
    let ns_info = cache
        .namespace(&namespace)
        .unwrap_or_else(|| NamespaceInfo {
            name: namespace.clone(),
            labels: [("kubernetes.io/metadata.name".to_string(), namespace.clone())].into(),
            annotations: BTreeMap::new(),
        });
    if ns_info.labels.get(LABEL_NAMESPACE_IPAM).map(String::as_str) == Some("disabled") {
        // The webhook configuration's namespaceSelector should already have skipped it.
        return Ok(None);
    }
    Ok(Some(Screened {
        namespace,
        name: pod.metadata.name.clone().filter(|n| !n.is_empty()),
        node,
        config,
        ns_info,
        annotations,
    }))
}

/// Whether `claim` is one a StatefulSet Pod's previous incarnation left for this Pod's name
/// (any interface, family and pool).
pub(crate) fn kept_for(claim: &ClaimEntry, namespace: &str, name: &str, owner: &Owner) -> bool {
    let s = &claim.object.spec;
    owner.is_stateful_set()
        && s.namespace == namespace
        && s.pod_name.as_deref() == Some(name)
        && s.owner
            .as_ref()
            .is_some_and(|o| o.kind == "StatefulSet" && o.name == owner.name)
        && claim.object.metadata.deletion_timestamp.is_none()
}

/// What the executor read from the API (and the cache) for the plan.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    /// The Pod's interfaces served by this IPAM (its networks read).
    pub interfaces: Vec<InterfaceRequest>,
    /// Its top controller.
    pub owner: Option<Owner>,
    /// The claims kept for its name (StatefulSet Pods; see [`kept_for`]).
    pub kept: Vec<ClaimEntry>,
    /// A Pod of its name lives now (read only when claims are kept for the name).
    pub name_taken: bool,
}

/// Selection's view of the addresses in use, with those kept for the Pod being admitted (its
/// StatefulSet ordinal's previous incarnation) counted as free to it.
#[derive(Debug)]
struct OwnKept<'a, U> {
    used: &'a U,
    kept: Vec<(String, IpAddr)>,
}

impl<U: Usage> Usage for OwnKept<'_, U> {
    fn has_free(&self, pool: &str, allocatable: &IpSet) -> bool {
        self.kept
            .iter()
            .any(|(p, a)| p == pool && allocatable.contains(a))
            || self.used.has_free(pool, allocatable)
    }
}

/// The plan for a screened Pod: pool selection's answer (its `notes` are what kubectl shows as
/// warnings), or why the Pod is refused.
pub(crate) fn plan<U: Usage>(
    s: &Screened,
    facts: &Facts,
    pod: &Pod,
    snap: &Snapshot,
    used: &U,
) -> Result<Selection, Refused> {
    if let (false, true, Some(n)) = (facts.kept.is_empty(), facts.name_taken, s.name.as_deref()) {
        // The kept addresses go to the next Pod of the name once the previous one is gone.
        // While a Pod of this name exists, this creation fails anyway (the name is taken), and
        // taking its addresses over would strip them from the living Pod.
        return Err(Refused::name_still_held(&s.namespace, n));
    }
    let info = PodInfo {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        annotations: s.annotations.clone(),
        node_name: s.node.as_ref().map(|n| n.name.clone()),
        owner: facts.owner.clone(),
    };
    // A StatefulSet Pod's kept addresses are its own: a pool full of them still serves it.
    let usage = OwnKept {
        used,
        kept: facts
            .kept
            .iter()
            .filter_map(|e| e.address.map(|a| (e.object.spec.pool.clone(), a)))
            .collect(),
    };
    let selection = select(&SelectionInput {
        pod: &info,
        namespace: &s.ns_info,
        node: s.node.as_ref(),
        nodes: (!snap.nodes.is_empty()).then_some(snap.nodes.as_slice()),
        interfaces: &facts.interfaces,
        config: &s.config,
        pools: &snap.pools,
        used: &usage,
        reserved_v4: &snap.reserved_v4,
        reserved_v6: &snap.reserved_v6,
    })
    .map_err(|r| Refused::selection(&r))?;
    let third_party = facts
        .owner
        .as_ref()
        .is_some_and(|o| auto_pool::is_third_party(&o.api_version, &o.kind));
    for i in &selection.interfaces {
        for fs in &i.families {
            if let Some(auto) = &fs.auto_pool {
                // A third-party controller's pool is made at admission ([`missing_auto_pools`]).
                if !snap.pools.contains_key(&auto.pool) && !third_party {
                    return Err(Refused::auto_pool_missing(&i.interface, auto));
                }
            }
        }
    }
    Ok(selection)
}

/// An auto pool the selection names and the cluster lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MissingAutoPool {
    /// The interface.
    pub interface: String,
    /// The family.
    pub family: IpFamily,
    /// The pool planned.
    pub plan: AutoPoolPlan,
}

/// The auto pools of a selection that do not exist yet: for a third-party controller, the
/// webhook makes them at admission, as Spiderpool's IPAM does at allocation (its controller
/// cannot read the replicas of kinds it does not know, so it never makes them).
pub(crate) fn missing_auto_pools(selection: &Selection, snap: &Snapshot) -> Vec<MissingAutoPool> {
    let mut out = Vec::new();
    for i in &selection.interfaces {
        for fs in &i.families {
            if let Some(auto) = &fs.auto_pool {
                if !snap.pools.contains_key(&auto.pool) {
                    out.push(MissingAutoPool {
                        interface: i.interface.clone(),
                        family: fs.family,
                        plan: auto.clone(),
                    });
                }
            }
        }
    }
    out
}

/// A kept StatefulSet claim to take over for one interface and family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TakeOver {
    /// The claim's name.
    pub claim: String,
    /// The reservation id it carries now (the previous Pod's).
    pub previous: String,
    /// Its address.
    pub address: ReservedAddress,
}

fn family_version(f: IpFamily) -> IpVersion {
    match f {
        IpFamily::V4 => IpVersion::V4,
        IpFamily::V6 => IpVersion::V6,
    }
}

/// The claim of a StatefulSet Pod's previous incarnation for this interface and family, in one
/// of the candidate pools (earliest candidate first), when the configuration keeps them.
pub(crate) fn take_over(
    config: &IpamConfig,
    kept: &[ClaimEntry],
    interface: &str,
    fs: &FamilySelection,
) -> Option<TakeOver> {
    if !config.enable_stateful_set {
        return None;
    }
    let (c, e) = fs.candidates.iter().find_map(|c| {
        kept.iter()
            .find(|e| {
                let s = &e.object.spec;
                s.pool == c.pool
                    && s.interface == interface
                    && s.ip_version == family_version(fs.family)
            })
            .map(|e| (c, e))
    })?;
    Some(TakeOver {
        claim: e.object.metadata.name.clone().unwrap_or_default(),
        previous: e.object.spec.reservation.clone(),
        address: ReservedAddress {
            pool: c.pool.clone(),
            address: e.address?,
        },
    })
}
