//! Binding: what the operator writes for one live Pod carrying a reservation
//! ([`plan_binding`]: zone alternatives resolved once the node is known, missing claims
//! recreated, the endpoint the CNI binary reads), and the endpoint status it writes
//! ([`endpoint_status`]).

use std::collections::BTreeMap;

use aipam_core::model::{NodeInfo, Pool};
use aipam_core::reservation::{Reservation, ReservedAddress, ANNO_RESERVATION};
use aipam_crds::endpoint::{PodIPAllocation, WorkloadEndpointStatus};
use aipam_crds::record::endpoint_ips;
use aipam_crds::{SpiderEndpoint, SpiderIPClaim};

use crate::world::{PodView, STATEFUL_SET};

/// A warning for the Pod's events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Event reason.
    pub reason: &'static str,
    /// Event note.
    pub note: String,
}

/// What binding does for one live Pod.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BindPlan {
    /// Claims to settle: `spec.provisional` set to false once late binding kept them.
    pub settle: Vec<String>,
    /// StatefulSet claims to move back to this Pod's reservation: (claim, reservation it
    /// carries now).
    pub take_back: Vec<(String, String)>,
    /// Claims the record lists that do not exist: recreate them for the Pod.
    pub recreate: Vec<(String, ReservedAddress)>,
    /// Zone alternatives to release (claims that exist and belong to this reservation).
    pub release: Vec<String>,
    /// The record to write into the Pod's annotation (late binding).
    pub new_record: Option<Reservation>,
    /// The endpoint's desired `status.current` (owner fields filled by the executor if absent).
    pub endpoint: Option<PodIPAllocation>,
    /// Warnings.
    pub warnings: Vec<Warning>,
    /// Late binding resolved the zones.
    pub late_bound: bool,
}

impl BindPlan {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.settle.is_empty()
            && self.take_back.is_empty()
            && self.recreate.is_empty()
            && self.release.is_empty()
            && self.new_record.is_none()
            && self.endpoint.is_none()
            && self.warnings.is_empty()
    }
}

/// Binding for a live, not terminal Pod carrying a reservation: zone alternatives are resolved
/// once the node is known, and the endpoint matches (addresses, node, owned by the Pod). The
/// claims are not written, except to settle the zone alternative kept.
///
/// `claims` are the claims named in the record (absent ones missing from the map); `node` the
/// Pod's node, when it has one and the node exists.
pub fn plan_binding(
    pod: &PodView,
    claims: &BTreeMap<String, SpiderIPClaim>,
    endpoint: Option<&SpiderEndpoint>,
    pools: &BTreeMap<String, Pool>,
    node: Option<&NodeInfo>,
) -> BindPlan {
    let mut plan = BindPlan::default();
    let Some(record) = pod.reservation.as_ref() else {
        return plan;
    };
    // The annotation only ever points at claims: a claim is this Pod's when it was made for
    // this reservation, in this namespace (the webhook mints the id per admission and replaces
    // any record a new Pod brings; after creation only the operator may change it). Nothing is
    // released or recorded on the annotation's word alone.
    let owns =
        |c: &SpiderIPClaim| c.spec.reservation == record.id && c.spec.namespace == pod.namespace;
    let mut kept = record.clone();
    if record.is_provisional() {
        if let (Some(_), Some(node)) = (pod.node.as_ref(), node) {
            match record.resolve_for_node(pools, node) {
                Some((k, released)) => {
                    for a in released {
                        let n = a.claim_name();
                        if claims.get(&n).is_some_and(owns) {
                            plan.release.push(n);
                        }
                    }
                    plan.new_record = Some(k.clone());
                    plan.late_bound = true;
                    kept = k;
                }
                None => plan.warnings.push(Warning {
                    reason: "NoZoneServesNode",
                    note: format!(
                        "none of the addresses reserved for this Pod ({record}) comes from a pool that serves node {}; the Pod gets no address",
                        node.name
                    ),
                }),
            }
        }
    }
    let settled = !kept.is_provisional();
    // Addresses the endpoint already gives this Pod (written by the webhook or the operator,
    // never by users): a claim of one of them that went missing is recreated, since the Pod
    // may be using the address.
    let recorded: Vec<String> = endpoint
        .and_then(|e| e.status.as_ref())
        .filter(|s| s.current.uid == pod.uid)
        .map(|s| {
            s.current
                .ips
                .iter()
                .flat_map(|d| d.ipv4.iter().chain(d.ipv6.iter()))
                .map(|a| a.split('/').next().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut disowned: Vec<ReservedAddress> = Vec::new();
    for a in kept.addresses() {
        let n = a.claim_name();
        match claims.get(&n) {
            None if recorded.contains(&a.address.to_string()) => plan.recreate.push((n, a.clone())),
            None => {
                plan.warnings.push(Warning {
                    reason: "ClaimMissing",
                    note: format!(
                        "address {} of pool {} is named by the Pod's {} annotation but no claim holds it for this Pod; it is not given to the Pod",
                        a.address, a.pool, ANNO_RESERVATION
                    ),
                });
                disowned.push(a.clone());
            }
            Some(c) if !owns(c) && kept_for(c, pod) => {
                // This Pod's address, kept for its name by its StatefulSet, stranded under the
                // id of an admission of the same name that lost the race for the name (its Pod
                // was never stored): no other Pod can hold it, the claim comes back.
                plan.take_back.push((n, c.spec.reservation.clone()));
                if settled && c.spec.provisional {
                    plan.settle.push(a.claim_name());
                }
            }
            Some(c) if !owns(c) => {
                plan.warnings.push(Warning {
                    reason: "AddressTaken",
                    note: format!(
                        "address {} of pool {} is held by reservation {}, not this Pod's {}",
                        a.address, a.pool, c.spec.reservation, record.id
                    ),
                });
                disowned.push(a.clone());
            }
            Some(c) => {
                if settled && c.spec.provisional {
                    plan.settle.push(n);
                }
            }
        }
    }
    // Only what the Pod holds goes into its endpoint.
    for i in &mut kept.interfaces {
        i.ipv4.retain(|a| !disowned.contains(a));
        i.ipv6.retain(|a| !disowned.contains(a));
    }
    kept.interfaces
        .retain(|i| !i.ipv4.is_empty() || !i.ipv6.is_empty());
    let ips = if settled {
        match kept.details(pools, &pod.routes) {
            Ok(d) => endpoint_ips(&d),
            Err(e) => {
                plan.warnings.push(Warning {
                    reason: "EndpointIncomplete",
                    note: e.to_string(),
                });
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let current = endpoint.and_then(|e| e.status.as_ref()).map(|s| &s.current);
    // Not scheduled yet: the node the webhook recorded (a DaemonSet Pod's pinned node) stands.
    let recorded_node = current
        .filter(|c| c.uid == pod.uid && !c.node.is_empty())
        .map(|c| c.node.clone());
    let desired = PodIPAllocation {
        uid: pod.uid.clone(),
        node: pod.node.clone().or(recorded_node).unwrap_or_default(),
        ips,
    };
    // The webhook writes the endpoint before the Pod is stored, so without the Pod as owner;
    // the operator adds it with the node once the Pod is scheduled (one write), or alone for a
    // Pod created on its node, whose endpoint needs nothing else.
    let owned = endpoint.is_some_and(|e| {
        e.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == pod.uid)
    });
    if current != Some(&desired) || (!owned && pod.node.is_some()) {
        plan.endpoint = Some(desired);
    }
    plan
}

/// Whether `c` is an address a StatefulSet keeps for `pod`'s name: same namespace and name, and
/// the claim's owner is the StatefulSet that controls the Pod. Names are unique in a namespace,
/// so while `pod` lives no other Pod can hold such a claim.
fn kept_for(c: &SpiderIPClaim, pod: &PodView) -> bool {
    c.spec.namespace == pod.namespace
        && c.spec.pod_name.as_deref() == Some(pod.name.as_str())
        && c.spec.owner.as_ref().is_some_and(|o| {
            o.kind == STATEFUL_SET
                && pod
                    .controller
                    .as_ref()
                    .is_some_and(|(k, n)| k == STATEFUL_SET && *n == o.name)
        })
}

/// The endpoint status to write: the desired allocation, keeping owner fields already there.
pub fn endpoint_status(
    current: Option<&WorkloadEndpointStatus>,
    desired: PodIPAllocation,
    owner: (&str, &str),
) -> WorkloadEndpointStatus {
    match current {
        Some(c) if !c.owner_controller_type.is_empty() => WorkloadEndpointStatus {
            current: desired,
            owner_controller_type: c.owner_controller_type.clone(),
            owner_controller_name: c.owner_controller_name.clone(),
        },
        _ => WorkloadEndpointStatus {
            current: desired,
            owner_controller_type: owner.0.to_string(),
            owner_controller_name: owner.1.to_string(),
        },
    }
}

#[cfg(test)]
#[path = "binding_tests.rs"]
mod tests;
