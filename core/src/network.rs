//! Which interfaces of a Pod get their address from this IPAM.
//!
//! Multus names the Pod's networks in annotations: `v1.multus-cni.io/default-network` replaces
//! the cluster network on `eth0`, `k8s.v1.cni.cncf.io/networks` adds `net1`, `net2`, ... (or
//! the interface each entry asks for). Each network is a NetworkAttachmentDefinition whose
//! `spec.config` is a CNI configuration (one plugin or a conflist); an interface is ours when a
//! plugin's `ipam.type` is `spiderpool`, whose `default_ipv4_ippool` / `default_ipv6_ippool`
//! feed selection rule 4.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::annotations::{
    parse_multus_default_network, parse_multus_networks, AnnotationError, MULTUS_DEFAULT_NETWORK,
    MULTUS_NETWORKS,
};
use crate::model::InterfaceRequest;

/// The CNI IPAM type this project answers to.
pub const IPAM_TYPE: &str = "spiderpool";
/// The namespace Multus reads a default network from when it names none.
pub const MULTUS_NAMESPACE: &str = "kube-system";

/// What a network's CNI configuration says about IPAM.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NetworkIpam {
    /// A plugin of the network uses `"ipam": {"type": "spiderpool"}`.
    pub uses_spiderpool: bool,
    /// `default_ipv4_ippool`.
    pub default_ipv4: Vec<String>,
    /// `default_ipv6_ippool`.
    pub default_ipv6: Vec<String>,
}

/// A network that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// A Multus annotation is malformed.
    #[error(transparent)]
    Annotation(#[from] AnnotationError),
    /// The NetworkAttachmentDefinition does not exist.
    #[error(
        "NetworkAttachmentDefinition {0} (named by the Pod's Multus annotations) does not exist"
    )]
    Missing(String),
    /// Its configuration is not a CNI configuration.
    #[error(
        "NetworkAttachmentDefinition {name}: spec.config is not a CNI configuration: {problem}"
    )]
    BadConfig {
        /// `namespace/name`.
        name: String,
        /// What is wrong.
        problem: String,
    },
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Reads a NetworkAttachmentDefinition's `spec.config`. An empty config (the NAD only names a
/// configuration file on the node) is not ours.
pub fn network_ipam(name: &str, config: &str) -> Result<NetworkIpam, NetworkError> {
    if config.trim().is_empty() {
        return Ok(NetworkIpam::default());
    }
    let v: Value = serde_json::from_str(config).map_err(|e| NetworkError::BadConfig {
        name: name.to_string(),
        problem: format!("invalid JSON: {e}"),
    })?;
    let plugins: Vec<&Value> = match v.get("plugins") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(_) => {
            return Err(NetworkError::BadConfig {
                name: name.to_string(),
                problem: "`plugins` must be a list".to_string(),
            })
        }
        None => vec![&v],
    };
    for p in plugins {
        let Some(ipam) = p.get("ipam") else { continue };
        if ipam.get("type").and_then(Value::as_str) == Some(IPAM_TYPE) {
            return Ok(NetworkIpam {
                uses_spiderpool: true,
                default_ipv4: string_list(ipam.get("default_ipv4_ippool")),
                default_ipv6: string_list(ipam.get("default_ipv6_ippool")),
            });
        }
    }
    Ok(NetworkIpam::default())
}

/// A network a Pod's Multus annotations ask for, before its NetworkAttachmentDefinition is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestedNetwork {
    /// The interface it will be (`eth0` for the default network, else `netN` or the one asked).
    pub interface: String,
    /// The NetworkAttachmentDefinition's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The annotation that named it.
    pub key: &'static str,
}

impl RequestedNetwork {
    /// `namespace/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The networks a Pod's Multus annotations name, in interface order: the default network on
/// `eth0` first (`None` when the Pod names none and keeps the cluster network there), then the
/// additional networks. Callers read each NetworkAttachmentDefinition (synchronously or not)
/// and pass its config to [`network_ipam`].
pub fn requested_networks(
    pod_namespace: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<(Option<RequestedNetwork>, Vec<RequestedNetwork>), NetworkError> {
    let default = match annotations.get(MULTUS_DEFAULT_NETWORK) {
        Some(value) => {
            let sel = parse_multus_default_network(value)?;
            Some(RequestedNetwork {
                interface: "eth0".to_string(),
                namespace: sel
                    .namespace
                    .unwrap_or_else(|| MULTUS_NAMESPACE.to_string()),
                name: sel.name,
                key: MULTUS_DEFAULT_NETWORK,
            })
        }
        None => None,
    };
    let mut extra = Vec::new();
    if let Some(value) = annotations.get(MULTUS_NETWORKS) {
        for (i, sel) in parse_multus_networks(value)?.into_iter().enumerate() {
            extra.push(RequestedNetwork {
                interface: sel.interface.unwrap_or_else(|| format!("net{}", i + 1)),
                namespace: sel.namespace.unwrap_or_else(|| pod_namespace.to_string()),
                name: sel.name,
                key: MULTUS_NETWORKS,
            });
        }
    }
    Ok((default, extra))
}

/// The interface request for a network whose configuration uses this IPAM, else `None`.
pub fn interface_for(net: &RequestedNetwork, ipam: NetworkIpam) -> Option<InterfaceRequest> {
    ipam.uses_spiderpool.then(|| InterfaceRequest {
        name: net.interface.clone(),
        network: Some(net.full_name()),
        cni_default_ipv4: ipam.default_ipv4,
        cni_default_ipv6: ipam.default_ipv6,
    })
}

/// The interfaces of a Pod served by this IPAM, primary first.
///
/// `primary_served`: whether the cluster's own network on `eth0` uses this IPAM (when the Pod
/// names no default network). `lookup(namespace, name)` returns a NetworkAttachmentDefinition's
/// `spec.config`, or `None` when it does not exist.
pub fn pod_interfaces<F>(
    pod_namespace: &str,
    annotations: &BTreeMap<String, String>,
    primary_served: bool,
    lookup: F,
) -> Result<Vec<InterfaceRequest>, NetworkError>
where
    F: Fn(&str, &str) -> Option<String>,
{
    let (default, extra) = requested_networks(pod_namespace, annotations)?;
    let mut out = Vec::new();
    if default.is_none() && primary_served {
        out.push(InterfaceRequest::eth0());
    }
    for net in default.iter().chain(extra.iter()) {
        let config = lookup(&net.namespace, &net.name)
            .ok_or_else(|| NetworkError::Missing(net.full_name()))?;
        if let Some(i) = interface_for(net, network_ipam(&net.full_name(), &config)?) {
            out.push(i);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const MACVLAN: &str = r#"{"cniVersion": "0.3.1", "name": "macvlan-conf", "plugins": [
        {"type": "macvlan", "master": "ens192", "mode": "bridge",
         "ipam": {"type": "spiderpool", "default_ipv4_ippool": ["v4a", "v4b"]}},
        {"type": "veth", "service_cidr": ["10.233.0.0/18"]}]}"#;
    const OTHER: &str =
        r#"{"cniVersion": "1.0.0", "name": "o", "type": "bridge", "ipam": {"type": "host-local"}}"#;

    fn annos(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn lookup(ns: &str, name: &str) -> Option<String> {
        match (ns, name) {
            ("kube-system", "macvlan-conf") | ("team", "macvlan-conf") => Some(MACVLAN.to_string()),
            ("team", "other") => Some(OTHER.to_string()),
            _ => None,
        }
    }

    #[test]
    fn reads_plugins_and_conflists() {
        let n = network_ipam("kube-system/macvlan-conf", MACVLAN).unwrap();
        assert!(n.uses_spiderpool);
        assert_eq!(n.default_ipv4, vec!["v4a", "v4b"]);
        assert!(!network_ipam("x", OTHER).unwrap().uses_spiderpool);
        assert!(!network_ipam("x", "").unwrap().uses_spiderpool);
        let e = network_ipam("team/bad", "{").unwrap_err().to_string();
        assert!(e.starts_with("NetworkAttachmentDefinition team/bad: spec.config is not a CNI configuration: invalid JSON"), "{e}");
    }

    #[test]
    fn interfaces_from_multus_annotations() {
        let none = pod_interfaces("team", &BTreeMap::new(), true, lookup).unwrap();
        assert_eq!(none, vec![InterfaceRequest::eth0()]);
        assert!(pod_interfaces("team", &BTreeMap::new(), false, lookup)
            .unwrap()
            .is_empty());

        let a = annos(&[
            (
                "v1.multus-cni.io/default-network",
                "kube-system/macvlan-conf",
            ),
            ("k8s.v1.cni.cncf.io/networks", "other,macvlan-conf@eth5"),
        ]);
        let got = pod_interfaces("team", &a, true, lookup).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "eth0");
        assert_eq!(got[0].network.as_deref(), Some("kube-system/macvlan-conf"));
        assert_eq!(got[0].cni_default_ipv4, vec!["v4a", "v4b"]);
        // `other` uses host-local: not ours. The second entry asked for eth5.
        assert_eq!(got[1].name, "eth5");
        assert_eq!(got[1].network.as_deref(), Some("team/macvlan-conf"));

        let missing = annos(&[("k8s.v1.cni.cncf.io/networks", "nope")]);
        assert_eq!(
            pod_interfaces("team", &missing, true, lookup).unwrap_err().to_string(),
            "NetworkAttachmentDefinition team/nope (named by the Pod's Multus annotations) does not exist"
        );
    }
}
