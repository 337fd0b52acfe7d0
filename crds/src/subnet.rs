//! `SpiderSubnet`: a range that SpiderIPPools are carved from (cluster-scoped, short name `ss`).
//!
//! Mirrors Spiderpool's `SubnetSpec` / `SubnetStatus`
//! (`pkg/k8s/apis/spiderpool.spidernet.io/v2beta1/spidersubnet_types.go`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ip_version_u8, Route};

/// The desired state of a SpiderSubnet.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "spiderpool.spidernet.io",
    version = "v2beta1",
    kind = "SpiderSubnet",
    plural = "spidersubnets",
    singular = "spidersubnet",
    shortname = "ss",
    category = "spiderpool",
    status = "SubnetStatus",
    derive = "PartialEq",
    doc = "SpiderSubnet is a range of IP addresses that SpiderIPPools are created from.",
    printcolumn(
        name = "VERSION",
        type_ = "string",
        description = "ipVersion",
        json_path = ".spec.ipVersion"
    ),
    printcolumn(
        name = "SUBNET",
        type_ = "string",
        description = "subnet",
        json_path = ".spec.subnet"
    ),
    printcolumn(
        name = "ALLOCATED-IP-COUNT",
        type_ = "integer",
        description = "allocatedIPCount",
        json_path = ".status.allocatedIPCount"
    ),
    printcolumn(
        name = "TOTAL-IP-COUNT",
        type_ = "integer",
        description = "totalIPCount",
        json_path = ".status.totalIPCount"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "SubnetSpec defines the desired state of SpiderSubnet.")]
pub struct SubnetSpec {
    /// IP version of this subnet: 4 or 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [4, 6]))]
    pub ip_version: Option<i64>,

    /// The subnet, an IPv4 or IPv6 CIDR such as `172.22.0.0/16`.
    pub subnet: String,

    /// Addresses of this subnet that pools may take: single IPs and ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<String>>,

    /// Addresses never handed out from this subnet: single IPs and ranges.
    #[serde(
        default,
        rename = "excludeIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub exclude_ips: Option<Vec<String>>,

    /// Gateway of this subnet: an IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,

    /// DEPRECATED: Vlan is deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4094))]
    pub vlan: Option<i64>,

    /// Custom routes of this subnet, copied to the pools made from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
}

/// The observed state of a SpiderSubnet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "SubnetStatus defines the observed state of SpiderSubnet.")]
pub struct SubnetStatus {
    /// The pools made from this subnet and the addresses each took: a JSON object mapping pool
    /// name to `{"ips": [...], "application": "..."}`.
    #[serde(
        default,
        rename = "controlledIPPools",
        skip_serializing_if = "Option::is_none"
    )]
    pub controlled_ip_pools: Option<String>,

    /// Number of addresses this subnet holds.
    #[serde(
        default,
        rename = "totalIPCount",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0))]
    pub total_ip_count: Option<i64>,

    /// Number of addresses taken by pools.
    #[serde(
        default,
        rename = "allocatedIPCount",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0))]
    pub allocated_ip_count: Option<i64>,
}

impl SubnetSpec {
    /// The subnet's IP version as 4 or 6; `None` when unset or invalid.
    pub fn ip_version(&self) -> Option<u8> {
        ip_version_u8(self.ip_version)
    }
}

impl SpiderSubnet {
    /// The subnet's IP version as 4 or 6; `None` when unset or invalid.
    pub fn ip_version(&self) -> Option<u8> {
        self.spec.ip_version()
    }
}
