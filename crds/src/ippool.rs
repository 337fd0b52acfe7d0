//! `SpiderIPPool`: a set of addresses Pods get their IPs from (cluster-scoped, short name `sp`).
//!
//! Mirrors Spiderpool's `IPPoolSpec` / `IPPoolStatus`
//! (`pkg/k8s/apis/spiderpool.spidernet.io/v2beta1/spiderippool_types.go`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ip_version_u8, Route};

/// The desired state of a SpiderIPPool.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "spiderpool.spidernet.io",
    version = "v2beta1",
    kind = "SpiderIPPool",
    plural = "spiderippools",
    singular = "spiderippool",
    shortname = "sp",
    category = "spiderpool",
    status = "IPPoolStatus",
    derive = "PartialEq",
    doc = "SpiderIPPool is a pool of IP addresses that Pods are given addresses from.",
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
    ),
    printcolumn(
        name = "DEFAULT",
        type_ = "boolean",
        description = "default",
        json_path = ".spec.default"
    ),
    printcolumn(
        name = "DISABLE",
        type_ = "boolean",
        description = "disable",
        json_path = ".spec.disable"
    ),
    printcolumn(
        name = "NodeName",
        type_ = "string",
        description = "nodeName",
        json_path = ".spec.nodeName",
        priority = "10"
    ),
    printcolumn(
        name = "MultusName",
        type_ = "string",
        description = "multusName",
        json_path = ".spec.multusName",
        priority = "10"
    ),
    printcolumn(
        name = "APP-NAMESPACE",
        type_ = "string",
        description = "AppNamespace",
        json_path = ".spec.podAffinity.matchLabels['ipam\\.spidernet\\.io/app\\-namespace']",
        priority = "10"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "IPPoolSpec defines the desired state of SpiderIPPool.")]
pub struct IPPoolSpec {
    /// IP version of this pool: 4 or 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [4, 6]))]
    pub ip_version: Option<i64>,

    /// Subnet of this pool, an IPv4 or IPv6 CIDR such as `172.18.41.0/24`.
    pub subnet: String,

    /// Addresses of this pool: single IPs and ranges such as `172.18.41.40-172.18.41.50`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<String>>,

    /// Addresses never handed out from this pool: single IPs and ranges.
    #[serde(
        default,
        rename = "excludeIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub exclude_ips: Option<Vec<String>>,

    /// Gateway of this pool: an IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,

    /// DEPRECATED: Vlan is deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4094))]
    pub vlan: Option<i64>,

    /// Custom routes of this pool (no default route when `gateway` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,

    /// Which Pods may use this pool: a label selector over the Pod's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_affinity: Option<LabelSelector>,

    /// Which namespaces' Pods may use this pool: a label selector over namespace labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_affinity: Option<LabelSelector>,

    /// Which namespaces' Pods may use this pool, by name (wins over `namespaceAffinity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_name: Option<Vec<String>>,

    /// Which nodes' Pods may use this pool: a label selector over node labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<LabelSelector>,

    /// Which nodes' Pods may use this pool, by name (wins over `nodeAffinity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<Vec<String>>,

    /// Which Multus NetworkAttachmentDefinitions (`namespace/name`) may use this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multus_name: Option<Vec<String>>,

    /// Whether this pool is a cluster default pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub default: Option<bool>,

    /// Whether this pool is closed to new allocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub disable: Option<bool>,
}

/// The observed state of a SpiderIPPool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "IPPoolStatus defines the observed state of SpiderIPPool.")]
pub struct IPPoolStatus {
    /// Spiderpool's record of this pool's allocations: a JSON object mapping each allocated IP
    /// to a `{"pod": "namespace/name", "podUid"}` record. aipam never writes it (its record is
    /// the SpiderIPClaims); `aipamctl migrate` turns a live Spiderpool's entries into claims and
    /// then clears it.
    #[serde(
        default,
        rename = "allocatedIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub allocated_ips: Option<String>,

    /// Number of addresses this pool can hand out.
    #[serde(
        default,
        rename = "totalIPCount",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0))]
    pub total_ip_count: Option<i64>,

    /// Number of addresses currently allocated.
    #[serde(
        default,
        rename = "allocatedIPCount",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0))]
    pub allocated_ip_count: Option<i64>,
}

/// One entry of the `status.allocatedIPs` map (Spiderpool's `PoolIPAllocation`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PoolIPAllocation {
    /// The Pod's interface holding the address. Spiderpool before 0.8 wrote it; v2beta1 of
    /// Spiderpool 1.x writes only `pod` and `podUid` (the interface is in the SpiderEndpoint).
    #[serde(
        rename = "interface",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub nic: String,
    /// The Pod, as `namespace/name`.
    #[serde(rename = "pod")]
    pub namespaced_name: String,
    /// The Pod's UID.
    #[serde(rename = "podUid")]
    pub pod_uid: String,
}

impl IPPoolSpec {
    /// The pool's IP version as 4 or 6; `None` when unset or invalid.
    pub fn ip_version(&self) -> Option<u8> {
        ip_version_u8(self.ip_version)
    }

    /// `spec.default`, false when unset.
    pub fn is_default(&self) -> bool {
        self.default.unwrap_or(false)
    }

    /// `spec.disable`, false when unset.
    pub fn is_disabled(&self) -> bool {
        self.disable.unwrap_or(false)
    }
}

impl SpiderIPPool {
    /// The pool's IP version as 4 or 6; `None` when unset or invalid.
    pub fn ip_version(&self) -> Option<u8> {
        self.spec.ip_version()
    }
}

impl IPPoolStatus {
    /// Decodes `allocatedIPs` (a JSON object in a string); empty when unset or blank.
    pub fn allocations(&self) -> Result<BTreeMap<String, PoolIPAllocation>, serde_json::Error> {
        match self.allocated_ips.as_deref() {
            None => Ok(BTreeMap::new()),
            Some(s) if s.trim().is_empty() => Ok(BTreeMap::new()),
            Some(s) => serde_json::from_str(s),
        }
    }
}
