//! `SpiderEndpoint`: what one Pod holds (namespaced, named as the Pod, short name `se`).
//!
//! Mirrors Spiderpool's `SpiderEndpoint` / `WorkloadEndpointStatus`
//! (`pkg/k8s/apis/spiderpool.spidernet.io/v2beta1/spiderendpoint_types.go`).
//!
//! Spiderpool's SpiderEndpoint has **no `spec`** and **no status subresource**: everything lives in
//! `.status`, written together with the object. Here that is expressed with kube-derive's
//! `no_spec` (the Rust-side spec, [`SpiderEndpointFields`], is empty and flattened onto the root,
//! so nothing named `spec` appears on the wire or in the schema), and [`crate::all_crds`] drops the
//! status subresource that kube-derive would otherwise declare. Write `.status` with ordinary
//! create/replace/patch calls on the object itself, not on `/status`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Route;

/// The (empty) top-level fields of a SpiderEndpoint besides `metadata` and `status`.
///
/// Spiderpool's SpiderEndpoint has no spec; this struct only exists because kube-derive needs one,
/// and it is flattened away (`no_spec`).
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default,
)]
#[kube(
    group = "spiderpool.spidernet.io",
    version = "v2beta1",
    kind = "SpiderEndpoint",
    plural = "spiderendpoints",
    singular = "spiderendpoint",
    shortname = "se",
    category = "spiderpool",
    namespaced,
    no_spec,
    status = "WorkloadEndpointStatus",
    derive = "PartialEq",
    doc = "SpiderEndpoint records the IP addresses one Pod holds; it has the Pod's name and namespace.",
    printcolumn(
        name = "INTERFACE",
        type_ = "string",
        description = "interface",
        json_path = ".status.current.ips[0].interface"
    ),
    printcolumn(
        name = "IPV4POOL",
        type_ = "string",
        description = "ipv4Pool",
        json_path = ".status.current.ips[0].ipv4Pool"
    ),
    printcolumn(
        name = "IPV4",
        type_ = "string",
        description = "ipv4",
        json_path = ".status.current.ips[0].ipv4"
    ),
    printcolumn(
        name = "IPV6POOL",
        type_ = "string",
        description = "ipv6Pool",
        json_path = ".status.current.ips[0].ipv6Pool"
    ),
    printcolumn(
        name = "IPV6",
        type_ = "string",
        description = "ipv6",
        json_path = ".status.current.ips[0].ipv6"
    ),
    printcolumn(
        name = "NODE",
        type_ = "string",
        description = "node",
        json_path = ".status.current.node"
    )
)]
pub struct SpiderEndpointFields {}

/// The state of a SpiderEndpoint (Spiderpool's `WorkloadEndpointStatus`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "WorkloadEndpointStatus defines the observed state of SpiderEndpoint.")]
pub struct WorkloadEndpointStatus {
    /// The addresses the Pod holds now.
    pub current: PodIPAllocation,

    /// Kind of the Pod's top owner controller (`Deployment`, `StatefulSet`, `Pod`, ...).
    pub owner_controller_type: String,

    /// Name of the Pod's top owner controller.
    pub owner_controller_name: String,
}

/// The addresses one Pod holds (Spiderpool's `PodIPAllocation`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodIPAllocation {
    /// UID of the Pod.
    pub uid: String,

    /// Node the Pod runs on.
    pub node: String,

    /// One entry per interface of the Pod.
    pub ips: Vec<IPAllocationDetail>,
}

/// The addresses of one interface (Spiderpool's `IPAllocationDetail`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct IPAllocationDetail {
    /// Interface name in the Pod, such as `eth0` or `net1`.
    #[serde(rename = "interface")]
    pub nic: String,

    /// IPv4 address with prefix length, such as `172.31.199.193/20`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,

    /// IPv6 address with prefix length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,

    /// Pool the IPv4 address came from.
    #[serde(default, rename = "ipv4Pool", skip_serializing_if = "Option::is_none")]
    pub ipv4_pool: Option<String>,

    /// Pool the IPv6 address came from.
    #[serde(default, rename = "ipv6Pool", skip_serializing_if = "Option::is_none")]
    pub ipv6_pool: Option<String>,

    /// MAC address of the interface, when the IPAM knows it (Spiderpool 1.2 records it for IaaS
    /// providers that bind an address to a MAC). Kept as written; aipam does not set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,

    /// DEPRECATED: Vlan is deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4094), extend("default" = 0))]
    pub vlan: Option<i64>,

    /// IPv4 gateway of the interface.
    #[serde(
        default,
        rename = "ipv4Gateway",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_gateway: Option<String>,

    /// IPv6 gateway of the interface.
    #[serde(
        default,
        rename = "ipv6Gateway",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_gateway: Option<String>,

    /// Whether the interface gets no default route through its gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_gateway: Option<bool>,

    /// Routes of the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
}

impl SpiderEndpoint {
    /// The allocation record of one interface, if the endpoint has one for it.
    pub fn interface(&self, nic: &str) -> Option<&IPAllocationDetail> {
        self.status
            .as_ref()
            .and_then(|s| s.current.ips.iter().find(|d| d.nic == nic))
    }
}
