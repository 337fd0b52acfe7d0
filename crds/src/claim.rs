//! `SpiderIPClaim`: one reserved address (cluster-scoped, short name `sic`). This kind is ours,
//! not Spiderpool's.
//!
//! The webhook reserves an address by **creating** the claim named by [`SpiderIPClaim::name_for`]
//! from pool and address: the API server's uniqueness of names is the lock, so two webhook
//! replicas can never hand out the same address, and the cost of an allocation does not grow
//! with the pool's size (no pool-wide status map is rewritten).

use std::net::IpAddr;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::IpVersion;

/// The desired state of a SpiderIPClaim: which address of which pool is held for which Pod
/// interface.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "spiderpool.spidernet.io",
    version = "v2beta1",
    kind = "SpiderIPClaim",
    plural = "spideripclaims",
    singular = "spideripclaim",
    shortname = "sic",
    category = "spiderpool",
    derive = "PartialEq",
    doc = "SpiderIPClaim reserves one IP address of one SpiderIPPool for one interface of one Pod. It is named from the pool and the address, so that creating it is the lock on the address.",
    printcolumn(
        name = "POOL",
        type_ = "string",
        description = "pool",
        json_path = ".spec.pool"
    ),
    printcolumn(
        name = "ADDRESS",
        type_ = "string",
        description = "address",
        json_path = ".spec.address"
    ),
    printcolumn(
        name = "NAMESPACE",
        type_ = "string",
        description = "namespace of the Pod",
        json_path = ".spec.namespace"
    ),
    printcolumn(
        name = "POD",
        type_ = "string",
        description = "name of the Pod",
        json_path = ".spec.podName"
    ),
    printcolumn(
        name = "INTERFACE",
        type_ = "string",
        description = "interface of the Pod",
        json_path = ".spec.interface"
    ),
    printcolumn(
        name = "RESERVATION",
        type_ = "string",
        description = "the reservation holding the address: the id in the Pod's aipam.io/reservation annotation",
        json_path = ".spec.reservation"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SpiderIPClaimSpec {
    /// Name of the SpiderIPPool the address belongs to. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "pool is immutable"}]))]
    pub pool: String,

    /// The reserved address: a plain IP address, without prefix length. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "address is immutable"}]))]
    pub address: String,

    /// IP version of the address: 4 or 6. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "ipVersion is immutable"}]))]
    pub ip_version: IpVersion,

    /// The Pod's interface the address is for, such as `eth0` or `net1`. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "interface is immutable"}]))]
    pub interface: String,

    /// Namespace of the Pod. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "namespace is immutable"}]))]
    pub namespace: String,

    /// Name of the Pod, when it was known at admission (not for a Pod made from
    /// `generateName`, whose name the API server picks afterwards). The Pod that holds the
    /// address is the one carrying `reservation`; its SpiderEndpoint names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,

    /// Opaque reservation id, minted for one admission: the webhook writes the same id into the
    /// Pod's annotation `aipam.io/reservation`, which only the operator may change afterwards.
    /// The claim belongs to the Pod of `namespace` carrying this id; nothing else binds it, so
    /// the claim is written once. Changes when a StatefulSet Pod of the same name takes its
    /// address back under a new reservation.
    pub reservation: String,

    /// The Pod's top controller (for StatefulSet fixed IPs and SpiderSubnet auto-pools); absent
    /// for a bare Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ClaimOwner>,

    /// True for one of several reservations made in different zones for a Pod whose node was
    /// unknown at admission; released when the Pod binds to a node outside this pool's zone.
    #[serde(default)]
    #[schemars(extend("default" = false))]
    pub provisional: bool,
}

/// The Pod's top controller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ClaimOwner {
    /// Kind of the controller, such as `StatefulSet` or `Deployment`.
    pub kind: String,
    /// Name of the controller (in the Pod's namespace).
    pub name: String,
    /// UID of the controller.
    pub uid: String,
}

/// Why [`SpiderIPClaim::name_for`] could not make a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimNameError {
    /// The pool name is empty.
    #[error("pool name {0:?} cannot form a claim name: it is empty")]
    BadPoolName(String),
}

impl SpiderIPClaim {
    /// The name of the claim on `address` in `pool`: `<pool>.<address>`, IPv6 written as 8
    /// dash-separated groups of 4 hex digits (see [`aipam_core::alloc::claim_name`], the one
    /// definition the webhook, operator and CLI share). Unique per (pool, address): the address
    /// part has a fixed shape per family and is always last.
    pub fn name_for(pool: &str, address: IpAddr) -> Result<String, ClaimNameError> {
        if pool.is_empty() {
            return Err(ClaimNameError::BadPoolName(pool.to_string()));
        }
        Ok(aipam_core::alloc::claim_name(pool, &address))
    }
}
