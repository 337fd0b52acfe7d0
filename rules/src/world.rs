//! What the rules see of the cluster: Pods ([`PodView`]), StatefulSets ([`SetState`]), nodes,
//! Pods seen deleted, indexed in one [`World`]; and the settings they depend on ([`Rules`]).

use std::collections::{BTreeMap, BTreeSet};

use aipam_core::annotations::{parse_routes, Route, ANNO_ROUTES};
use aipam_core::config::IpamConfig;
use aipam_core::reservation::{Reservation, ANNO_RESERVATION, LABEL_RESERVATION};
use aipam_crds::SpiderEndpoint;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::node::node_ready;
use crate::owner::controller_ref;

/// The kind of top controller whose Pods keep their addresses by name.
pub const STATEFUL_SET: &str = "StatefulSet";

/// What the rules need to know of a Pod.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PodView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// The reservation record of its annotation, if readable.
    pub reservation: Option<Reservation>,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// `status.phase`.
    pub phase: Option<String>,
    /// `metadata.deletionTimestamp`.
    pub deleting_since: Option<Timestamp>,
    /// `spec.terminationGracePeriodSeconds` (30 when unset).
    pub grace_seconds: i64,
    /// `metadata.deletionGracePeriodSeconds`, set with the deletionTimestamp.
    pub deletion_grace_seconds: Option<i64>,
    /// The controller owner reference: (kind, name).
    pub controller: Option<(String, String)>,
    /// `ipam.spidernet.io/routes`, when readable.
    pub routes: Vec<Route>,
}

impl PodView {
    /// Reads a Pod. `None` for a Pod without name or UID (never true of a stored Pod).
    pub fn from_pod(pod: &Pod) -> Option<PodView> {
        let meta = &pod.metadata;
        let annotations = meta.annotations.as_ref();
        let reservation = annotations
            .and_then(|a| a.get(ANNO_RESERVATION))
            .and_then(|v| Reservation::parse(v).ok());
        let routes = annotations
            .and_then(|a| a.get(ANNO_ROUTES))
            .and_then(|v| parse_routes(v).ok())
            .unwrap_or_default();
        let controller = controller_ref(meta).map(|r| (r.kind.clone(), r.name.clone()));
        let spec = pod.spec.as_ref();
        Some(PodView {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            reservation,
            node: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
            deleting_since: meta.deletion_timestamp.as_ref().map(|t| t.0),
            grace_seconds: spec
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30),
            deletion_grace_seconds: meta.deletion_grace_period_seconds,
            controller,
            routes,
        })
    }

    /// Succeeded or Failed: its containers will not run again.
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase.as_deref(), Some("Succeeded") | Some("Failed"))
    }

    /// The reservation id, if any.
    pub fn reservation_id(&self) -> Option<&str> {
        self.reservation.as_ref().map(|r| r.id.as_str())
    }
}

/// Settings the decisions depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// A claim whose Pod is absent is never deleted before it is this old (from its
    /// creationTimestamp), unless its Pod is known to have existed and gone.
    pub grace: SignedDuration,
    /// StatefulSet Pods keep their addresses by name.
    pub stateful_set: bool,
    /// Release the addresses of a stateless Pod stuck Terminating on a Ready node (Spiderpool's
    /// `SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_READY_NODE_ENABLED`, default true).
    pub gc_terminating_on_ready_node: bool,
    /// The same on a node that is not Ready or is gone
    /// (`SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_NOT_READY_NODE_ENABLED`, default true).
    pub gc_terminating_on_not_ready_node: bool,
    /// Waited beyond a Terminating Pod's grace period before that release
    /// (`SPIDERPOOL_GC_ADDITIONAL_GRACE_DELAY`, default 0).
    pub gc_additional_grace: SignedDuration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            grace: SignedDuration::from_secs(120),
            stateful_set: true,
            gc_terminating_on_ready_node: true,
            gc_terminating_on_not_ready_node: true,
            gc_additional_grace: SignedDuration::ZERO,
        }
    }
}

impl Rules {
    /// The rules `spiderpool-conf` gives (the operator's flags may override them).
    pub fn from_config(config: &IpamConfig) -> Rules {
        let secs = |s: u64| SignedDuration::from_secs(i64::try_from(s).unwrap_or(i64::MAX));
        Rules {
            grace: secs(config.reservation_grace_seconds),
            stateful_set: config.enable_stateful_set,
            gc_terminating_on_ready_node: config.enable_gc_stateless_terminating_pod_on_ready_node,
            gc_terminating_on_not_ready_node: config
                .enable_gc_stateless_terminating_pod_on_not_ready_node,
            gc_additional_grace: secs(config.gc_additional_grace_delay),
        }
    }
}

/// A StatefulSet as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetState {
    /// `spec.replicas` (1 when unset).
    pub replicas: i64,
    /// The set is being deleted.
    pub deleting: bool,
}

impl SetState {
    /// Reads a StatefulSet.
    pub fn of(set: &StatefulSet) -> SetState {
        SetState {
            replicas: i64::from(set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
            deleting: set.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// Everything the collector looks at, indexed.
#[derive(Clone, Debug, Default)]
pub struct World {
    pods: Vec<PodView>,
    by_reservation: BTreeMap<String, usize>,
    by_name: BTreeMap<(String, String), usize>,
    /// StatefulSets by (namespace, name).
    pub stateful_sets: BTreeMap<(String, String), SetState>,
    /// Node readiness by name (a node absent from the map is gone).
    pub nodes_ready: BTreeMap<String, bool>,
    /// UIDs of Pods seen deleted: their endpoints go at once, without waiting for the grace
    /// period.
    pub gone_uids: BTreeSet<String>,
    /// Reservation ids of Pods seen deleted, with the Pod's (name, UID): their claims go at
    /// once, and the release is reported on the Pod.
    pub gone_reservations: BTreeMap<String, (String, String)>,
    /// Reservation ids some SpiderEndpoint names (label `aipam.io/reservation`): a Pod carried
    /// them, so a claim of one whose Pod is absent is a Pod gone, not one that never appeared.
    pub endpoint_reservations: BTreeSet<String>,
}

impl World {
    /// Indexes the Pods.
    pub fn new(pods: Vec<PodView>) -> World {
        let mut w = World::default();
        for p in pods {
            w.add_pod(p);
        }
        w
    }

    /// Adds (or replaces) one Pod, as found by a live read.
    pub fn add_pod(&mut self, p: PodView) {
        let i = self.pods.len();
        if let Some(id) = p.reservation_id() {
            self.by_reservation.insert(id.to_string(), i);
        }
        self.by_name
            .insert((p.namespace.clone(), p.name.clone()), i);
        self.pods.push(p);
    }

    /// Notes the reservation ids the endpoints name (label `aipam.io/reservation`).
    pub fn note_endpoints<'e, I>(&mut self, endpoints: I)
    where
        I: IntoIterator<Item = &'e SpiderEndpoint>,
    {
        for e in endpoints {
            if let Some(id) = e
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_RESERVATION))
            {
                self.endpoint_reservations.insert(id.clone());
            }
        }
    }

    /// Notes the StatefulSets, by (namespace, name).
    pub fn note_stateful_sets<'s, I>(&mut self, sets: I)
    where
        I: IntoIterator<Item = &'s StatefulSet>,
    {
        for s in sets {
            let key = (
                s.metadata.namespace.clone().unwrap_or_default(),
                s.metadata.name.clone().unwrap_or_default(),
            );
            self.stateful_sets.insert(key, SetState::of(s));
        }
    }

    /// Notes the nodes' readiness ([`node_ready`]), by name.
    pub fn note_nodes<'n, I>(&mut self, nodes: I)
    where
        I: IntoIterator<Item = &'n Node>,
    {
        for n in nodes {
            self.nodes_ready
                .insert(n.metadata.name.clone().unwrap_or_default(), node_ready(n));
        }
    }

    /// The Pod carrying a reservation id.
    pub fn pod_by_reservation(&self, id: &str) -> Option<&PodView> {
        self.by_reservation.get(id).map(|i| &self.pods[*i])
    }

    /// The Pod of a name.
    pub fn pod_by_name(&self, namespace: &str, name: &str) -> Option<&PodView> {
        self.by_name
            .get(&(namespace.to_string(), name.to_string()))
            .map(|i| &self.pods[*i])
    }

    /// Every Pod.
    pub fn pods(&self) -> &[PodView] {
        &self.pods
    }
}

#[cfg(test)]
#[path = "world_tests.rs"]
mod tests;
