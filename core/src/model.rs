//! The domain model the rules work on: pools, Pods, namespaces and nodes as plain data.
//!
//! These are not the Kubernetes objects: the CRD crate and the webhook convert their API
//! objects into these once, at the edge, so that every rule below is a pure function.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::annotations::Route;
use crate::labels::LabelSelector;
use crate::ranges::{usable_hosts, IpFamily, IpSet};

/// Labels or annotations of an object.
pub type Labels = BTreeMap<String, String>;

/// A validated SpiderIPPool, with its address lists parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// `metadata.name`.
    pub name: String,
    /// `spec.ipVersion`.
    pub family: IpFamily,
    /// `spec.subnet`.
    pub subnet: IpNet,
    /// `spec.ips`.
    pub ips: IpSet,
    /// `spec.excludeIPs`.
    pub exclude_ips: IpSet,
    /// `spec.gateway`.
    pub gateway: Option<IpAddr>,
    /// `spec.vlan`.
    pub vlan: Option<i64>,
    /// `spec.routes`.
    pub routes: Vec<Route>,
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
    /// `spec.multusName`, each as `namespace/name` or `name`.
    pub multus_name: Vec<String>,
    /// `spec.default`: a cluster default pool.
    pub default: bool,
    /// `spec.disable`.
    pub disable: bool,
    /// The pool has a `deletionTimestamp`.
    pub deleting: bool,
    /// An older pool this one shares addresses with ([`crate::validate::mark_overlaps`]): two
    /// overlapping pools admitted at once by different webhook replicas. Such a pool serves no
    /// Pod, so that no address is handed out twice.
    pub overlaps: Option<String>,
    /// `metadata.labels`: how auto pools are found ([`crate::auto_pool`]).
    pub labels: Labels,
}

impl Pool {
    /// A minimal enabled pool over `ips` in `subnet`, for tests and builders.
    pub fn new(name: &str, subnet: IpNet, ips: IpSet) -> Pool {
        Pool {
            name: name.to_string(),
            family: if subnet.addr().is_ipv4() {
                IpFamily::V4
            } else {
                IpFamily::V6
            },
            subnet,
            ips,
            exclude_ips: IpSet::new(),
            gateway: None,
            vlan: None,
            routes: Vec::new(),
            pod_affinity: None,
            namespace_affinity: None,
            namespace_name: Vec::new(),
            node_affinity: None,
            node_name: Vec::new(),
            multus_name: Vec::new(),
            default: false,
            disable: false,
            deleting: false,
            overlaps: None,
            labels: Labels::new(),
        }
    }

    /// The addresses this pool may hand out: `ips` within the subnet's host addresses, minus
    /// `excludeIPs`, the gateway and the cluster's reserved addresses (SpiderReservedIP).
    ///
    /// Never enumerates addresses: cost is in the number of ranges, not their size.
    pub fn allocatable(&self, reserved: &IpSet) -> IpSet {
        let mut set = self
            .ips
            .intersection(&usable_hosts(&self.subnet))
            .difference(&self.exclude_ips)
            .difference(reserved);
        if let Some(gw) = self.gateway {
            set.remove(&gw);
        }
        set
    }

    /// Whether the pool is restricted to some nodes (`nodeName` or `nodeAffinity`).
    pub fn is_node_bound(&self) -> bool {
        !self.node_name.is_empty() || self.node_affinity.is_some()
    }

    /// Spiderpool's candidate order: pools with `podAffinity` first, then `nodeName`, then
    /// `nodeAffinity`, then `namespaceName`, then `namespaceAffinity`, then `multusName`.
    /// Compared lexicographically; a smaller key sorts first.
    pub fn priority_key(&self) -> [bool; 6] {
        [
            self.pod_affinity.is_none(),
            self.node_name.is_empty(),
            self.node_affinity.is_none(),
            self.namespace_name.is_empty(),
            self.namespace_affinity.is_none(),
            self.multus_name.is_empty(),
        ]
    }
}

/// The controller that ultimately owns a Pod (Deployment rather than ReplicaSet, CronJob
/// rather than Job), as the webhook resolves it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Owner {
    /// `apps/v1`, `batch/v1`, ... (empty for a bare Pod).
    pub api_version: String,
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, `ReplicaSet`, `Pod`, or a
    /// third-party kind.
    pub kind: String,
    /// The owner's name.
    pub name: String,
    /// The owner's UID.
    pub uid: String,
    /// Desired replicas (Deployment, ReplicaSet, StatefulSet), desired scheduled (DaemonSet),
    /// parallelism (Job, CronJob); `None` when unknown.
    pub replicas: Option<u64>,
}

impl Owner {
    /// Whether the owner is a StatefulSet (its Pods keep their addresses by name).
    pub fn is_stateful_set(&self) -> bool {
        self.kind == "StatefulSet"
    }
}

/// What the rules need to know of a Pod.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PodInfo {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`; `None` for a Pod made from `generateName` at mutating admission.
    pub name: Option<String>,
    /// `metadata.labels`.
    pub labels: Labels,
    /// `metadata.annotations`.
    pub annotations: Labels,
    /// The node, when it is known at admission (`spec.nodeName`, or a DaemonSet Pod's
    /// required `matchFields metadata.name In [node]`).
    pub node_name: Option<String>,
    /// The top controller.
    pub owner: Option<Owner>,
}

/// What the rules need to know of a Namespace.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NamespaceInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels` (the API server adds `kubernetes.io/metadata.name`).
    pub labels: Labels,
    /// `metadata.annotations`.
    pub annotations: Labels,
}

/// What the rules need to know of a Node.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Labels,
}

/// One interface of the Pod that gets its address from this IPAM.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InterfaceRequest {
    /// Interface name in the Pod (`eth0`, `net1`, ...).
    pub name: String,
    /// The NetworkAttachmentDefinition behind it, as `namespace/name`, when Multus is used.
    pub network: Option<String>,
    /// `default_ipv4_ippool` of the network's IPAM configuration.
    pub cni_default_ipv4: Vec<String>,
    /// `default_ipv6_ippool` of the network's IPAM configuration.
    pub cni_default_ipv6: Vec<String>,
}

impl InterfaceRequest {
    /// The plain `eth0` of a Pod whose primary network uses this IPAM directly.
    pub fn eth0() -> InterfaceRequest {
        InterfaceRequest {
            name: "eth0".to_string(),
            ..InterfaceRequest::default()
        }
    }
}

/// Whether a pool's `multusName` entry names `network` (`namespace/name`). An entry without a
/// namespace matches a network of that name in any namespace, as Spiderpool does.
pub fn multus_name_matches(entry: &str, network: &str) -> bool {
    if entry.contains('/') {
        entry == network
    } else {
        network.rsplit('/').next() == Some(entry)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn set(list: &[&str]) -> IpSet {
        IpSet::parse_list(list).unwrap()
    }

    #[test]
    fn allocatable_drops_network_broadcast_gateway_excluded_and_reserved() {
        let mut pool = Pool::new(
            "p",
            "10.6.0.0/24".parse().unwrap(),
            set(&["10.6.0.0-10.6.0.255"]),
        );
        pool.gateway = Some("10.6.0.1".parse().unwrap());
        pool.exclude_ips = set(&["10.6.0.10-10.6.0.19"]);
        let reserved = set(&["10.6.0.100"]);
        let a = pool.allocatable(&reserved);
        // 256 - network - broadcast - gateway - 10 excluded - 1 reserved
        assert_eq!(a.len(), 256 - 2 - 1 - 10 - 1);
        for ip in [
            "10.6.0.0",
            "10.6.0.255",
            "10.6.0.1",
            "10.6.0.15",
            "10.6.0.100",
        ] {
            assert!(
                !a.contains(&ip.parse().unwrap()),
                "{ip} must not be allocatable"
            );
        }
    }

    #[test]
    fn multus_names_with_and_without_namespace() {
        assert!(multus_name_matches(
            "kube-system/macvlan",
            "kube-system/macvlan"
        ));
        assert!(!multus_name_matches(
            "default/macvlan",
            "kube-system/macvlan"
        ));
        assert!(multus_name_matches("macvlan", "kube-system/macvlan"));
        assert!(!multus_name_matches("macvlan2", "kube-system/macvlan"));
    }
}
