//! Building the API objects that record reservations — SpiderIPClaims and SpiderEndpoint
//! entries — from the core's reservation model, and reading them back into it. Shared by the
//! webhook and the operator so that both write exactly the same shapes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use aipam_core::ranges::{IpFamily, IpSet};
use aipam_core::reservation::{IpDetail, ReservedAddress, LABEL_POOL, LABEL_RESERVATION};
use kube::core::ObjectMeta;

use crate::common::IpVersion;
use crate::endpoint::IPAllocationDetail;
use crate::{ClaimOwner, Route, SpiderIPClaim, SpiderIPClaimSpec};

/// Longest label value Kubernetes accepts.
const MAX_LABEL_VALUE: usize = aipam_core::labels::LABEL_VALUE_MAX_LEN;

/// Who a claim is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimTarget<'a> {
    /// The Pod's namespace.
    pub namespace: &'a str,
    /// The Pod's name, when known.
    pub pod_name: Option<&'a str>,
    /// The interface.
    pub interface: &'a str,
    /// The reservation id.
    pub reservation: &'a str,
    /// The Pod's top controller.
    pub owner: Option<ClaimOwner>,
    /// One of several zone alternatives.
    pub provisional: bool,
}

/// The SpiderIPClaim for one reserved address.
pub fn claim_for(addr: &ReservedAddress, target: &ClaimTarget<'_>) -> SpiderIPClaim {
    let mut labels = BTreeMap::new();
    labels.insert(
        LABEL_RESERVATION.to_string(),
        target.reservation.to_string(),
    );
    if addr.pool.len() <= MAX_LABEL_VALUE {
        labels.insert(LABEL_POOL.to_string(), addr.pool.clone());
    }
    SpiderIPClaim {
        metadata: ObjectMeta {
            name: Some(addr.claim_name()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: SpiderIPClaimSpec {
            pool: addr.pool.clone(),
            address: addr.address.to_string(),
            ip_version: match IpFamily::of(&addr.address) {
                IpFamily::V4 => IpVersion::V4,
                IpFamily::V6 => IpVersion::V6,
            },
            interface: target.interface.to_string(),
            namespace: target.namespace.to_string(),
            pod_name: target.pod_name.map(str::to_string),
            reservation: target.reservation.to_string(),
            owner: target.owner.clone(),
            provisional: target.provisional,
        },
    }
}

/// The JSON Patch that moves a claim from reservation `from` to reservation `to` (spec and
/// label), applied by the API server only while the claim still carries `from`: a StatefulSet's
/// kept address changing hands to the next Pod of the name (the webhook), or back to the Pod
/// that holds the name (the operator).
pub fn claim_move_patch(from: &str, to: &str) -> json_patch::Patch {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
    json_patch::Patch(vec![
        still_reserved_by(from),
        PatchOperation::Replace(ReplaceOperation {
            path: PointerBuf::from_tokens(["spec", "reservation"]),
            value: to.into(),
        }),
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "labels", LABEL_RESERVATION]),
            value: to.into(),
        }),
    ])
}

/// The JSON Patch that settles a kept zone alternative (`spec.provisional: false`), applied
/// only while the claim still carries `reservation`.
pub fn claim_settle_patch(reservation: &str) -> json_patch::Patch {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{PatchOperation, ReplaceOperation};
    json_patch::Patch(vec![
        still_reserved_by(reservation),
        PatchOperation::Replace(ReplaceOperation {
            path: PointerBuf::from_tokens(["spec", "provisional"]),
            value: false.into(),
        }),
    ])
}

/// The condition of the patches above: the claim still carries `reservation`.
fn still_reserved_by(reservation: &str) -> json_patch::PatchOperation {
    json_patch::PatchOperation::Test(json_patch::TestOperation {
        path: json_patch::jsonptr::PointerBuf::from_tokens(["spec", "reservation"]),
        value: reservation.into(),
    })
}

/// The address a claim holds, if its spec is readable.
pub fn claim_address(claim: &SpiderIPClaim) -> Option<IpAddr> {
    claim.spec.address.parse().ok()
}

/// Addresses held per pool, from a set of claims. Claims with an unreadable address are
/// skipped (they cannot hold anything a pick would produce).
pub fn used_by_pool<'a, I>(claims: I) -> BTreeMap<String, IpSet>
where
    I: IntoIterator<Item = &'a SpiderIPClaim>,
{
    let mut addrs: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for c in claims {
        if let Some(ip) = claim_address(c) {
            addrs.entry(c.spec.pool.clone()).or_default().push(ip);
        }
    }
    addrs
        .into_iter()
        .filter_map(|(pool, ips)| IpSet::from_addrs(ips).ok().map(|s| (pool, s)))
        .collect()
}

/// A Pod's required node affinity as the core's terms (empty when it has none).
pub fn required_node_terms(
    pod: &k8s_openapi::api::core::v1::Pod,
) -> Vec<aipam_core::affinity::NodeSelectorTerm> {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        // The two types have the same JSON shape.
        .and_then(|r| serde_json::to_value(&r.node_selector_terms).ok())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// One SpiderEndpoint entry per interface, in Spiderpool's shape.
pub fn endpoint_ips(details: &[IpDetail]) -> Vec<IPAllocationDetail> {
    details
        .iter()
        .map(|d| IPAllocationDetail {
            nic: d.interface.clone(),
            mac: None,
            ipv4: d.ipv4.as_ref().map(|f| f.address.to_string()),
            ipv6: d.ipv6.as_ref().map(|f| f.address.to_string()),
            ipv4_pool: d.ipv4.as_ref().map(|f| f.pool.clone()),
            ipv6_pool: d.ipv6.as_ref().map(|f| f.pool.clone()),
            vlan: Some(d.vlan.unwrap_or(0)),
            ipv4_gateway: d
                .ipv4
                .as_ref()
                .and_then(|f| f.gateway)
                .map(|g| g.to_string()),
            ipv6_gateway: d
                .ipv6
                .as_ref()
                .and_then(|f| f.gateway)
                .map(|g| g.to_string()),
            clean_gateway: Some(d.clean_gateway.unwrap_or(false)),
            routes: if d.routes.is_empty() {
                None
            } else {
                Some(
                    d.routes
                        .iter()
                        .map(|r| Route {
                            dst: r.dst.to_string(),
                            gw: r.gw.to_string(),
                        })
                        .collect(),
                )
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aipam_core::reservation::FamilyDetail;

    #[test]
    fn claims_carry_name_labels_and_spec() {
        let addr = ReservedAddress {
            pool: "test-ippool-6".to_string(),
            address: "10.6.168.60".parse().unwrap(),
        };
        let c = claim_for(
            &addr,
            &ClaimTarget {
                namespace: "zone-demo",
                pod_name: None,
                interface: "eth0",
                reservation: "r-1",
                owner: None,
                provisional: true,
            },
        );
        assert_eq!(
            c.metadata.name.as_deref(),
            Some("test-ippool-6.10.6.168.60")
        );
        assert_eq!(
            serde_json::to_value(&c.spec).unwrap(),
            serde_json::json!({
                "pool": "test-ippool-6", "address": "10.6.168.60", "ipVersion": 4,
                "interface": "eth0", "namespace": "zone-demo", "reservation": "r-1",
                "provisional": true
            })
        );
        assert_eq!(c.metadata.labels.unwrap()["aipam.io/pool"], "test-ippool-6");
        let used = used_by_pool([&claim_for(
            &addr,
            &ClaimTarget {
                namespace: "x",
                pod_name: None,
                interface: "eth0",
                reservation: "r",
                owner: None,
                provisional: false,
            },
        )]);
        assert!(used["test-ippool-6"].contains(&"10.6.168.60".parse().unwrap()));
    }

    #[test]
    fn endpoint_entries_have_spiderpool_shape() {
        let d = IpDetail {
            interface: "eth0".to_string(),
            ipv4: Some(FamilyDetail {
                address: "10.6.168.60/16".parse().unwrap(),
                pool: "test-ippool-6".to_string(),
                gateway: Some("10.6.0.1".parse().unwrap()),
            }),
            ipv6: None,
            vlan: None,
            clean_gateway: None,
            routes: vec![],
        };
        assert_eq!(
            serde_json::to_value(endpoint_ips(&[d])).unwrap(),
            serde_json::json!([{
                "interface": "eth0", "ipv4": "10.6.168.60/16", "ipv4Pool": "test-ippool-6",
                "ipv4Gateway": "10.6.0.1", "vlan": 0, "cleanGateway": false
            }])
        );
    }
}
