#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fuzz-like robustness on stable (issue 9): arbitrary strings, JSON-ish text and the committed
//! seed corpus (`tests/corpus/`) fed to every annotation codec and to the range parser. None may
//! panic; every refusal names its annotation (or quotes the entry) and says something; what is
//! accepted formats back to the same value. The `cargo fuzz` targets in `fuzz/` (nightly) use the
//! same corpus.

use std::collections::BTreeMap;
use std::path::Path;

use aipam_core::annotations::{
    format_ippool, format_ippools, namespace_defaults, parse_ip_number, parse_ippool,
    parse_ippools, parse_multus_default_network, parse_multus_networks, parse_pool_list,
    parse_reclaim, parse_routes, parse_subnet, parse_subnets, pod_ipam_annotations,
    AnnotationError, ANNO_IPPOOL, ANNO_IPPOOLS, ANNO_IPPOOL_IP_NUMBER, ANNO_IPPOOL_RECLAIM,
    ANNO_NS_DEFAULT_IPV4_IPPOOL, ANNO_ROUTES, ANNO_SUBNET, ANNO_SUBNETS, MULTUS_DEFAULT_NETWORK,
    MULTUS_NETWORKS,
};
use aipam_core::ranges::{IpRange, IpSet};
use proptest::prelude::*;

fn corpus(dir: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut out: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            // Annotation values are strings: invalid UTF-8 arrives replaced, as the API server
            // would never pass it.
            (
                p.display().to_string(),
                String::from_utf8_lossy(&bytes).to_string(),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() >= 10, "{}: too small a corpus", root.display());
    out
}

fn clear<T>(key: &str, r: Result<T, AnnotationError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            assert_eq!(e.key, key);
            assert!(!e.problem.trim().is_empty(), "{key}: empty problem");
            assert!(e.to_string().starts_with(&format!("annotation {key}: ")));
            None
        }
    }
}

/// Every codec on one value: no panic, clear errors, stable round trips.
fn all_codecs(value: &str) {
    if let Some(req) = clear(ANNO_IPPOOL, parse_ippool(value)) {
        assert_eq!(
            parse_ippool(&format_ippool(&req)).unwrap(),
            req,
            "{value:?}"
        );
    }
    if let Some(reqs) = clear(ANNO_IPPOOLS, parse_ippools(value)) {
        assert_eq!(
            parse_ippools(&format_ippools(&reqs)).unwrap(),
            reqs,
            "{value:?}"
        );
    }
    clear(ANNO_SUBNET, parse_subnet(value));
    clear(ANNO_SUBNETS, parse_subnets(value));
    clear(ANNO_IPPOOL_IP_NUMBER, parse_ip_number(value));
    clear(ANNO_IPPOOL_RECLAIM, parse_reclaim(value));
    clear(ANNO_ROUTES, parse_routes(value));
    clear(MULTUS_NETWORKS, parse_multus_networks(value));
    clear(MULTUS_DEFAULT_NETWORK, parse_multus_default_network(value));
    clear(
        ANNO_NS_DEFAULT_IPV4_IPPOOL,
        parse_pool_list(ANNO_NS_DEFAULT_IPV4_IPPOOL, value),
    );
    let ns = BTreeMap::from([(ANNO_NS_DEFAULT_IPV4_IPPOOL.to_string(), value.to_string())]);
    clear(ANNO_NS_DEFAULT_IPV4_IPPOOL, namespace_defaults(&ns));
    let pod = BTreeMap::from([
        (ANNO_IPPOOLS.to_string(), value.to_string()),
        (ANNO_ROUTES.to_string(), value.to_string()),
    ]);
    if let Err(e) = pod_ipam_annotations(&pod) {
        assert!(!e.problem.is_empty());
    }
}

/// The range parser on one entry: no panic, the refusal quotes something, what parses prints
/// back to itself.
fn range(entry: &str) {
    match IpRange::parse(entry) {
        Ok(r) => {
            assert_eq!(IpRange::parse(&r.to_string()).unwrap(), r, "{entry:?}");
            assert!(!r.is_empty());
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.len() > 20, "{entry:?}: {msg}");
            if !entry.trim().is_empty() {
                assert!(
                    msg.contains('\''),
                    "{entry:?}: the entry is not quoted: {msg}"
                );
            }
        }
    }
    let _ = IpSet::parse_list(&[entry, entry, "10.0.0.1"]);
}

#[test]
fn annotation_corpus_is_handled() {
    for (name, value) in corpus("annotations") {
        let r = std::panic::catch_unwind(|| all_codecs(&value));
        assert!(r.is_ok(), "{name}");
    }
}

#[test]
fn range_corpus_is_handled() {
    for (name, value) in corpus("ranges") {
        let r = std::panic::catch_unwind(|| range(&value));
        assert!(r.is_ok(), "{name}");
    }
}

/// Text that looks like annotation JSON: brackets, quotes, keys the codecs know, names.
fn jsonish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("1e999".to_string()),
        Just("\"ipv4\"".to_string()),
        Just("\"ipv6\"".to_string()),
        Just("\"ipv4pools\"".to_string()),
        Just("\"interface\"".to_string()),
        Just("\"cleangateway\"".to_string()),
        Just("\"defaultRoute\"".to_string()),
        Just("\"dst\"".to_string()),
        Just("\"gw\"".to_string()),
        Just("\"name\"".to_string()),
        Just("\"eth0\"".to_string()),
        Just("\"10.0.0.0/16\"".to_string()),
        Just("\"fd00::1\"".to_string()),
        Just("/".to_string()),
        Just("@".to_string()),
        "\"[a-z0-9.*?\\[\\]-]{0,12}\"",
        "[ -~]{0,6}",
    ];
    proptest::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

fn range_like() -> impl Strategy<Value = String> {
    let v4 = (any::<u32>()).prop_map(|v| std::net::Ipv4Addr::from(v).to_string());
    let v6 = (any::<u128>()).prop_map(|v| std::net::Ipv6Addr::from(v).to_string());
    let addr = prop_oneof![v4, v6, "[0-9a-f:.%/]{0,20}"];
    prop_oneof![
        addr.clone(),
        (addr.clone(), addr.clone()).prop_map(|(a, b)| format!("{a}-{b}")),
        (addr.clone(), 0u8..140).prop_map(|(a, p)| format!("{a}/{p}")),
        (addr, "[ -~]{0,3}").prop_map(|(a, junk)| format!("{junk}{a}{junk}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(768))]

    #[test]
    fn codecs_survive_arbitrary_strings(value in any::<String>()) {
        all_codecs(&value);
    }

    #[test]
    fn codecs_survive_jsonish_text(value in jsonish()) {
        all_codecs(&value);
    }

    #[test]
    fn range_parser_survives_arbitrary_strings(entry in any::<String>()) {
        range(&entry);
    }

    #[test]
    fn range_parser_survives_range_like_text(entry in range_like()) {
        range(&entry);
    }
}
