//! `SpiderIPClaim`: one reserved address (cluster-scoped, short name `sic`). This kind is ours,
//! not Spiderpool's.
//!
//! The webhook reserves an address by **creating** the claim named by [`SpiderIPClaim::name_for`]
//! from pool and address: the API server's uniqueness of names is the lock, so two webhook
//! replicas can never hand out the same address, and the cost of an allocation does not grow
//! with the pool's size (no pool-wide status map is rewritten).

use std::fmt;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
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
    status = "SpiderIPClaimStatus",
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
        name = "PHASE",
        type_ = "string",
        description = "phase",
        json_path = ".status.phase"
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

    /// Name of the Pod. Absent while a Pod made from `generateName` has no name yet; set when
    /// the claim is bound to the Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,

    /// UID of the Pod. Absent until the Pod exists.
    #[serde(default, rename = "podUID", skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,

    /// Opaque reservation id: the webhook writes the same id into the Pod's annotation, so that a
    /// Pod made from `generateName` can be matched to its claims later. Changes when a
    /// StatefulSet Pod of the same name takes its address back under a new reservation.
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

/// Where a claim stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
pub enum ClaimPhase {
    /// Reserved at admission; the Pod is not known to exist yet (or not yet on a node).
    #[default]
    Reserved,
    /// Bound to a Pod that exists (name and UID known).
    Bound,
}

impl fmt::Display for ClaimPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClaimPhase::Reserved => "Reserved",
            ClaimPhase::Bound => "Bound",
        })
    }
}

/// The observed state of a SpiderIPClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SpiderIPClaimStatus {
    /// `Reserved` until the claim is bound to an existing Pod, then `Bound`.
    #[serde(default)]
    #[schemars(extend("default" = "Reserved"))]
    pub phase: ClaimPhase,

    /// Node the Pod was bound to, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,

    /// When the claim was bound to the Pod (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_at: Option<Time>,

    /// Human-readable detail about the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
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

    /// The claim's phase (`Reserved` when it has no status yet).
    pub fn phase(&self) -> ClaimPhase {
        self.status.as_ref().map(|s| s.phase).unwrap_or_default()
    }
}
