//! The SpiderIPPool of a SpiderSubnet auto pool, as Spiderpool creates it; the operator (for
//! built-in workloads) and the webhook (for third-party controllers) both make it here.

use aipam_core::auto_pool::{self, Key};
use aipam_core::ranges::IpSet;
use aipam_core::validate::Subnet;
use serde_json::{json, Value};

/// The SpiderIPPool Spiderpool creates for `key` (`ReconcileAutoIPPool`): its name, every
/// auto-pool label, the SpiderSubnet as controller ownerReference, the finalizer, the
/// `ippool-ip-number` annotation (`ip_number`: `+1`, `5`), the subnet's gateway and routes, and the application
/// `podAffinity`. `subnet_uid` is the SpiderSubnet's UID.
pub fn new_pool(
    key: &Key<'_>,
    reclaim: bool,
    ip_number: &str,
    subnet: &Subnet,
    subnet_uid: &str,
    ips: &IpSet,
) -> Value {
    let cidr = subnet.subnet.to_string();
    let mut labels = key.labels(reclaim, &cidr);
    // A value the API server refuses (an application name over 63 characters) is left out:
    // such a pool is found by name.
    labels.retain(|_, v| v.len() <= aipam_core::labels::LABEL_VALUE_MAX_LEN);
    let mut spec = json!({
        "ipVersion": key.family.version(),
        "subnet": cidr,
        "ips": ips.to_strings(),
        "podAffinity": auto_pool::pod_affinity(key.app),
    });
    if let Some(gw) = subnet.gateway {
        spec["gateway"] = json!(gw.to_string());
    }
    if !subnet.routes.is_empty() {
        spec["routes"] = json!(subnet
            .routes
            .iter()
            .map(|r| json!({"dst": r.dst.to_string(), "gw": r.gw.to_string()}))
            .collect::<Vec<_>>());
    }
    json!({
        "apiVersion": crate::API_VERSION, "kind": "SpiderIPPool",
        "metadata": {
            "name": key.pool_name(),
            "labels": labels,
            "annotations": { aipam_core::annotations::ANNO_IPPOOL_IP_NUMBER: ip_number },
            "finalizers": ["spiderpool.spidernet.io"],
            "ownerReferences": [{
                "apiVersion": crate::API_VERSION, "kind": "SpiderSubnet",
                "name": subnet.name, "uid": subnet_uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    })
}
