//! `SpiderReservedIP`: addresses no Pod may get, cluster-wide (cluster-scoped, short name `sr`).
//!
//! Mirrors Spiderpool's `ReservedIPSpec`
//! (`pkg/k8s/apis/spiderpool.spidernet.io/v2beta1/spiderreservedip_types.go`). It has no status.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ip_version_u8;

/// The desired state of a SpiderReservedIP.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default,
)]
#[kube(
    group = "spiderpool.spidernet.io",
    version = "v2beta1",
    kind = "SpiderReservedIP",
    plural = "spiderreservedips",
    singular = "spiderreservedip",
    shortname = "sr",
    category = "spiderpool",
    derive = "PartialEq",
    doc = "SpiderReservedIP is a set of IP addresses that no Pod in the cluster may be given.",
    printcolumn(
        name = "VERSION",
        type_ = "string",
        description = "ipVersion",
        json_path = ".spec.ipVersion"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(description = "ReservedIPSpec defines the desired state of SpiderReservedIP.")]
pub struct ReservedIPSpec {
    /// IP version of these addresses: 4 or 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [4, 6]))]
    pub ip_version: Option<i64>,

    /// The reserved addresses: single IPs and ranges such as `172.18.42.41-172.18.42.49`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<String>>,
}

impl ReservedIPSpec {
    /// The IP version as 4 or 6; `None` when unset or invalid.
    pub fn ip_version(&self) -> Option<u8> {
        ip_version_u8(self.ip_version)
    }
}

impl SpiderReservedIP {
    /// The IP version as 4 or 6; `None` when unset or invalid.
    pub fn ip_version(&self) -> Option<u8> {
        self.spec.ip_version()
    }
}
