//! Codecs for every annotation the IPAM reads, with Spiderpool's spellings and meanings.
//!
//! Pod annotations (Spiderpool `docs/reference/annotation.md`, `pkg/types/k8s.go`):
//! * [`ANNO_IPPOOL`] `{"interface"?, "ipv4": [...], "ipv6": [...]}` — the older `ipv4pools` /
//!   `ipv6pools` spellings are read too;
//! * [`ANNO_IPPOOLS`] `[{"interface", "ipv4", "ipv6", "cleangateway"}, ...]` — wins over
//!   [`ANNO_IPPOOL`]; the older `defaultRoute` is read too (`defaultRoute: true` is
//!   `cleangateway: false`);
//! * [`ANNO_SUBNET`] / [`ANNO_SUBNETS`] — same shapes, naming SpiderSubnets; subnets win over
//!   subnet, and both win over the pool annotations;
//! * [`ANNO_IPPOOL_IP_NUMBER`] (`5` fixed, `+2` replicas plus two; default `+1`) and
//!   [`ANNO_IPPOOL_RECLAIM`] (default `true`);
//! * [`ANNO_ROUTES`] `[{"dst": "10.0.0.0/16", "gw": "192.168.1.1"}, ...]`.
//!
//! Namespace annotations: [`ANNO_NS_DEFAULT_IPV4_IPPOOL`] / [`ANNO_NS_DEFAULT_IPV6_IPPOOL`]
//! (JSON lists of pool names), and the older [`ANNO_NS_DEFAULT_V4_IPPOOL_OLD`] /
//! [`ANNO_NS_DEFAULT_V6_IPPOOL_OLD`].
//!
//! Multus: [`MULTUS_NETWORKS`] (`ns/name@iface, ...` or a JSON list of network selection
//! elements) and [`MULTUS_DEFAULT_NETWORK`] (exactly one network, either form).
//!
//! Pool names in every list may be Spiderpool wildcards (`*`, `?`, `[...]`, Go's
//! `filepath.Match` syntax), expanded by the caller against existing pools of the right IP
//! version: see [`is_wildcard`] and [`wildcard_match`].

mod auto_pool;
mod chosen;
mod interface;
mod json;
mod keys;
mod multus;
mod namespace;
mod pod;
mod pools;
mod routes;
mod subnets;
#[cfg(test)]
mod test_util;
mod wildcard;

pub use auto_pool::{parse_ip_number, parse_reclaim, IpNumber};
pub use chosen::{
    chosen_addresses, stateful_ordinal, ChosenAddresses, ANNO_IP_ADDRESS,
    ANNO_IP_ADDRESS_BY_ORDINAL, FIRST_INTERFACE,
};
pub use interface::{validate_interface_name, INTERFACE_NAME_MAX_LEN};
pub use keys::*;
pub use multus::{parse_multus_default_network, parse_multus_networks, NetworkSelection};
pub use namespace::{
    namespace_defaults, parse_pool_list, parse_pool_list_noting, NamespaceDefaults,
};
pub use pod::{pod_ipam_annotations, pod_ipam_annotations_as_read, PodIpamAnnotations};
pub use pools::{
    format_ippool, format_ippools, parse_ippool, parse_ippool_noting, parse_ippools,
    parse_ippools_noting, PoolRequest,
};
pub use routes::{parse_routes, parse_routes_noting, Route};
pub use subnets::{
    format_subnet, format_subnets, parse_subnet, parse_subnet_noting, parse_subnets,
    parse_subnets_noting, SubnetRequest,
};
pub use wildcard::{is_wildcard, validate_pool_name, wildcard_match};

/// An annotation that cannot be used, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: {problem}")]
pub struct AnnotationError {
    pub key: String,
    pub problem: String,
}

impl AnnotationError {
    fn new(key: &str, problem: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            problem: problem.into(),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,60}") {
            let _ = parse_ippool(&s);
            let _ = parse_ippools(&s);
            let _ = parse_subnet(&s);
            let _ = parse_subnets(&s);
            let _ = parse_ip_number(&s);
            let _ = parse_reclaim(&s);
            let _ = parse_routes(&s);
            let _ = parse_pool_list("k", &s);
            let _ = parse_multus_networks(&s);
            let _ = parse_multus_default_network(&s);
            let _ = wildcard_match(&s, "pool-a");
            let _ = validate_pool_name(&s);
        }

        #[test]
        fn json_shaped_input_never_panics(
            s in r#"[\[\]{}",:a-z0-9*?\\/@ -]{0,50}"#,
            key in prop::sample::select(vec!["interface", "ipv4", "ipv6", "cleangateway", "dst", "gw", "name"]),
        ) {
            let wrapped = [format!("{{\"{key}\":{s}}}"), format!("[{{\"{key}\":{s}}}]"), s.clone()];
            for w in &wrapped {
                let _ = parse_ippool(w);
                let _ = parse_ippools(w);
                let _ = parse_subnets(w);
                let _ = parse_routes(w);
                let _ = parse_multus_networks(w);
                let _ = parse_multus_default_network(w);
            }
        }
    }
}
