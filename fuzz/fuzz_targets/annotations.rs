//! Every annotation codec on arbitrary text: no panic; errors name their annotation; what is
//! accepted formats back to itself. Seeds: core/tests/corpus/annotations.
#![no_main]

use std::collections::BTreeMap;

use aipam_core::annotations as a;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(req) = a::parse_ippool(value) {
        assert_eq!(a::parse_ippool(&a::format_ippool(&req)).ok(), Some(req));
    }
    if let Ok(reqs) = a::parse_ippools(value) {
        assert_eq!(a::parse_ippools(&a::format_ippools(&reqs)).ok(), Some(reqs));
    }
    let _ = a::parse_subnet(value);
    let _ = a::parse_subnets(value);
    let _ = a::parse_ip_number(value);
    let _ = a::parse_reclaim(value);
    let _ = a::parse_routes(value);
    let _ = a::parse_multus_networks(value);
    let _ = a::parse_multus_default_network(value);
    let _ = a::parse_pool_list(a::ANNO_NS_DEFAULT_IPV4_IPPOOL, value);
    let pod = BTreeMap::from([
        (a::ANNO_IPPOOL.to_string(), value.to_string()),
        (a::ANNO_SUBNETS.to_string(), value.to_string()),
    ]);
    if let Err(e) = a::pod_ipam_annotations(&pod) {
        assert!(!e.problem.is_empty());
    }
});
