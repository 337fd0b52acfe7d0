#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Bad input (issue 9), core level: malformed pool specs and annotation values, each with the
//! exact refusal expected. A refused pool is never added to the catalog (nothing of it can be
//! allocated); the webhook-level table (`webhook/tests/bad_input.rs`) checks that a refused Pod
//! reserves nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aipam_core::annotations::{
    namespace_defaults, parse_ip_number, parse_ippool, parse_ippools, parse_multus_default_network,
    parse_multus_networks, parse_routes, parse_subnets, pod_ipam_annotations,
};
use aipam_core::ranges::{IpRange, IpSet};
use aipam_core::validate::{Catalog, PoolDraft, ReservedIpDraft, SubnetDraft};

fn draft(name: &str, subnet: &str, ips: &[&str]) -> PoolDraft {
    PoolDraft {
        name: name.to_string(),
        subnet: subnet.to_string(),
        ips: ips.iter().map(|s| s.to_string()).collect(),
        ..PoolDraft::default()
    }
}

/// The catalog every pool case is added to: one IPv4 and one IPv6 pool already there.
fn catalog() -> Catalog {
    let mut c = Catalog::default();
    c.add_pool(&draft(
        "existing-v4",
        "10.20.0.0/24",
        &["10.20.0.10-10.20.0.50"],
    ))
    .unwrap();
    c.add_pool(&draft(
        "existing-v6",
        "fd00:20::/64",
        &["fd00:20::10-fd00:20::ff"],
    ))
    .unwrap();
    c
}

struct PoolCase {
    name: &'static str,
    draft: PoolDraft,
    expected: &'static str,
}

fn pool_case(name: &'static str, draft: PoolDraft, expected: &'static str) -> PoolCase {
    PoolCase {
        name,
        draft,
        expected,
    }
}

fn pool_cases() -> Vec<PoolCase> {
    let d = draft;
    let with = |mut p: PoolDraft, f: &dyn Fn(&mut PoolDraft)| {
        f(&mut p);
        p
    };
    vec![
        pool_case("overlap with an existing pool", d("p", "10.20.0.0/24", &["10.20.0.40-10.20.0.60"]),
            "SpiderIPPool p is invalid: spec.ips: overlaps SpiderIPPool existing-v4 on 11 address(es): 10.20.0.40-10.20.0.50"),
        pool_case("IPv6 overlap", d("p", "fd00:20::/64", &["fd00:20::1-fd00:20::10"]),
            "SpiderIPPool p is invalid: spec.ips: overlaps SpiderIPPool existing-v6 on 1 address(es): fd00:20::10"),
        pool_case("range outside the subnet", d("p", "10.30.0.0/24", &["10.30.1.1-10.30.1.9"]),
            "SpiderIPPool p is invalid: spec.ips[0]: 10.30.1.1-10.30.1.9 is not inside the subnet 10.30.0.0/24"),
        pool_case("range straddling the subnet's end", d("p", "10.30.0.0/24", &["10.30.0.250-10.30.1.5"]),
            "SpiderIPPool p is invalid: spec.ips[0]: 10.30.0.250-10.30.1.5 is not inside the subnet 10.30.0.0/24"),
        pool_case("excludeIPs outside the subnet", with(d("p", "10.30.0.0/24", &["10.30.0.10"]), &|p| p.exclude_ips = vec!["10.31.0.1".into()]),
            "SpiderIPPool p is invalid: spec.excludeIPs[0]: 10.31.0.1 is not inside the subnet 10.30.0.0/24"),
        pool_case("reversed range", d("p", "10.30.0.0/24", &["10.30.0.9-10.30.0.1"]),
            "SpiderIPPool p is invalid: spec.ips[0]: range '10.30.0.9-10.30.0.1': start 10.30.0.9 is after end 10.30.0.1; write '10.30.0.1-10.30.0.9' instead"),
        pool_case("gateway inside the range", with(d("p", "10.30.0.0/24", &["10.30.0.1-10.30.0.9"]), &|p| p.gateway = Some("10.30.0.1".into())),
            "SpiderIPPool p is invalid: spec.gateway: 10.30.0.1 is inside spec.ips; take it out of spec.ips or add it to spec.excludeIPs"),
        pool_case("gateway outside the subnet", with(d("p", "10.30.0.0/24", &["10.30.0.10"]), &|p| p.gateway = Some("10.31.0.1".into())),
            "SpiderIPPool p is invalid: spec.gateway: 10.31.0.1 is not inside the subnet 10.30.0.0/24"),
        pool_case("gateway not an address", with(d("p", "10.30.0.0/24", &["10.30.0.10"]), &|p| p.gateway = Some("router".into())),
            "SpiderIPPool p is invalid: spec.gateway: \"router\" is not an IP address"),
        pool_case("bad CIDR: prefix 33", d("p", "10.30.0.0/33", &["10.30.0.10"]),
            "SpiderIPPool p is invalid: spec.subnet: \"10.30.0.0/33\" is not a CIDR; write it as address/prefix, e.g. 10.6.0.0/16"),
        pool_case("bad CIDR: no prefix", d("p", "10.30.0.0", &["10.30.0.10"]),
            "SpiderIPPool p is invalid: spec.subnet: \"10.30.0.0\" is not a CIDR; write it as address/prefix, e.g. 10.6.0.0/16"),
        pool_case("bad CIDR: host bits set", d("p", "10.30.0.7/24", &["10.30.0.10"]),
            "SpiderIPPool p is invalid: spec.subnet: 10.30.0.7/24 has host bits set; write the network address 10.30.0.0/24"),
        pool_case("subnet missing", d("p", "", &["10.30.0.10"]),
            "SpiderIPPool p is invalid: spec.subnet: is required: write the CIDR, e.g. 10.6.0.0/16"),
        pool_case("CIDR in spec.ips", d("p", "10.30.0.0/24", &["10.30.0.0/28"]),
            "SpiderIPPool p is invalid: spec.ips[0]: '10.30.0.0/28' is CIDR notation, which is not accepted in an IP list: write a range a-b instead (here: '10.30.0.0-10.30.0.15')"),
        pool_case("not an address in spec.ips", d("p", "10.30.0.0/24", &["10.30.0.x"]),
            "SpiderIPPool p is invalid: spec.ips[0]: '10.30.0.x' in entry '10.30.0.x' is not an IP address: "),
        pool_case("IPv6 range in an IPv4 pool", d("p", "10.30.0.0/24", &["fd00::1-fd00::9"]),
            "SpiderIPPool p is invalid: spec.ips[0]: fd00::1-fd00::9 is IPv6 but the pool is IPv4"),
        pool_case("range mixing IPv4 and IPv6", d("p", "10.30.0.0/24", &["10.30.0.1-fd00::1"]),
            "SpiderIPPool p is invalid: spec.ips[0]: range '10.30.0.1-fd00::1' mixes IPv4 and IPv6: both ends of a range must be of the same family"),
        pool_case("ipVersion 6 on an IPv4 subnet", with(d("p", "10.30.0.0/24", &["10.30.0.10"]), &|p| p.ip_version = Some(6)),
            "SpiderIPPool p is invalid: spec.ipVersion: is 6 but spec.subnet 10.30.0.0/24 is IPv4"),
        pool_case("ipVersion 5", with(d("p", "10.30.0.0/24", &["10.30.0.10"]), &|p| p.ip_version = Some(5)),
            "SpiderIPPool p is invalid: spec.ipVersion: 5 is not an IP version; use 4 or 6"),
        pool_case("IPv4 gateway in an IPv6 pool", with(d("p", "fd00:30::/64", &["fd00:30::10"]), &|p| p.gateway = Some("10.30.0.1".into())),
            "SpiderIPPool p is invalid: spec.gateway: 10.30.0.1 is IPv4 but the pool is IPv6"),
        pool_case("vlan out of range", with(d("p", "10.30.0.0/24", &["10.30.0.10"]), &|p| p.vlan = Some(4095)),
            "SpiderIPPool p is invalid: spec.vlan: 4095 is out of range; use 0 to 4094"),
        pool_case("route gateway outside the subnet", with(d("p", "10.30.0.0/24", &["10.30.0.10"]), &|p| p.routes = vec![("10.99.0.0/16".into(), "10.40.0.1".into())]),
            "SpiderIPPool p is invalid: spec.routes[0].gw: 10.40.0.1 is not inside the subnet 10.30.0.0/24: a route's gateway must be reachable on it"),
        pool_case("invalid name", d("Pool_1", "10.30.0.0/24", &["10.30.0.10"]),
            "SpiderIPPool Pool_1 is invalid: metadata.name: \"Pool_1\" is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"),
        pool_case("defined twice", d("existing-v4", "10.30.0.0/24", &["10.30.0.10"]),
            "SpiderIPPool existing-v4 is invalid: metadata.name: is defined twice"),
        // Huge ranges: refused as fast as small ones (the rules work on ranges, not addresses).
        pool_case("huge IPv6 range overlapping a pool", d("p", "fd00:20::/64", &["fd00:20::1-fd00:20::ffff:ffff:ffff:ffff"]),
            "SpiderIPPool p is invalid: spec.ips: overlaps SpiderIPPool existing-v6 on 240 address(es): fd00:20::10-fd00:20::ff"),
        pool_case("whole IPv6 space outside a /64", d("p", "fd00:30::/64", &["::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
            "SpiderIPPool p is invalid: spec.ips[0]: ::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff is not inside the subnet fd00:30::/64"),
        pool_case("IPv4 /0 overlapping a pool", d("p", "0.0.0.0/0", &["0.0.0.1-255.255.255.254"]),
            "SpiderIPPool p is invalid: spec.ips: overlaps SpiderIPPool existing-v4 on 41 address(es): 10.20.0.10-10.20.0.50"),
        pool_case("huge IPv6 range with the gateway inside", with(d("p", "fd00:30::/32", &["fd00:30::-fd00:30:ffff:ffff:ffff:ffff:ffff:ffff"]), &|p| p.gateway = Some("fd00:30::1".into())),
            "SpiderIPPool p is invalid: spec.gateway: fd00:30::1 is inside spec.ips; take it out of spec.ips or add it to spec.excludeIPs"),
    ]
}

#[test]
fn malformed_pool_specs_are_refused_with_their_message_and_not_added() {
    let cases = pool_cases();
    let mut failures = Vec::new();
    for c in &cases {
        let mut cat = catalog();
        let before: Vec<String> = cat.pools.keys().cloned().collect();
        let started = Instant::now();
        let r = cat.add_pool(&c.draft);
        let took = started.elapsed();
        match r {
            Ok(_) => failures.push(format!("{}: accepted", c.name)),
            Err(e) => {
                let got = e.to_string();
                if !got.starts_with(c.expected) {
                    failures.push(format!(
                        "{}:\n  expected {}\n  got      {got}",
                        c.name, c.expected
                    ));
                }
            }
        }
        let after: Vec<String> = cat.pools.keys().cloned().collect();
        assert_eq!(before, after, "{}: the catalog changed", c.name);
        // Constant in the range's size: generous for a debug build on a loaded machine.
        assert!(
            took < Duration::from_millis(250),
            "{}: took {took:?}",
            c.name
        );
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(cases.len() >= 24);
}

#[test]
fn huge_valid_ranges_are_counted_not_enumerated() {
    let started = Instant::now();
    let mut cat = Catalog::default();
    cat.add_pool(&draft(
        "v6-all",
        "::/0",
        &["::1-ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"],
    ))
    .unwrap();
    cat.add_pool(&draft("v4-8", "10.0.0.0/8", &["10.0.0.1-10.255.255.254"]))
        .unwrap();
    assert_eq!(cat.pools["v4-8"].ips.len(), (1 << 24) - 2);
    assert_eq!(cat.pools["v6-all"].ips.len(), u128::MAX - 1);
    let set = IpSet::parse_list(&["::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]).unwrap();
    assert_eq!(set.len(), u128::MAX, "the whole IPv6 space saturates");
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[test]
fn other_objects_refused_too() {
    let mut cat = Catalog::default();
    cat.add_subnet(&SubnetDraft {
        name: "s1".into(),
        subnet: "10.0.0.0/16".into(),
        ips: vec!["10.0.0.10-10.0.0.20".into()],
        ..SubnetDraft::default()
    })
    .unwrap();
    let e = cat
        .add_subnet(&SubnetDraft {
            name: "s2".into(),
            subnet: "10.0.0.0/8".into(),
            ips: vec!["10.1.0.1".into()],
            ..SubnetDraft::default()
        })
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "SpiderSubnet s2 is invalid: spec.subnet: 10.0.0.0/8 overlaps SpiderSubnet s1 (10.0.0.0/16)"
    );
    assert_eq!(cat.subnets.len(), 1);
    let e = cat
        .add_reserved(&ReservedIpDraft {
            name: "r".into(),
            ip_version: None,
            ips: vec!["10.0.0.1".into(), "fd00::1".into()],
        })
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "SpiderReservedIP r is invalid: spec.ips: 'fd00::1' is IPv6 but this list holds IPv4 addresses: one list holds a single family; put IPv6 addresses in a separate list or pool"
    );
    assert!(cat.reserved.is_empty());
}

type Parse = fn(&str) -> Result<(), String>;

fn ok<T, E: ToString>(r: Result<T, E>) -> Result<(), String> {
    r.map(|_| ()).map_err(|e| e.to_string())
}

fn annotation_cases() -> Vec<(&'static str, Parse, &'static str, &'static str)> {
    fn ippool(v: &str) -> Result<(), String> {
        ok(parse_ippool(v))
    }
    fn ippools(v: &str) -> Result<(), String> {
        ok(parse_ippools(v))
    }
    fn subnets(v: &str) -> Result<(), String> {
        ok(parse_subnets(v))
    }
    fn routes(v: &str) -> Result<(), String> {
        ok(parse_routes(v))
    }
    fn ip_number(v: &str) -> Result<(), String> {
        ok(parse_ip_number(v))
    }
    fn networks(v: &str) -> Result<(), String> {
        ok(parse_multus_networks(v))
    }
    fn default_network(v: &str) -> Result<(), String> {
        ok(parse_multus_default_network(v))
    }
    fn ns_defaults(v: &str) -> Result<(), String> {
        let m = BTreeMap::from([(
            "ipam.spidernet.io/default-ipv4-ippool".to_string(),
            v.to_string(),
        )]);
        ok(namespace_defaults(&m))
    }
    fn both_keys(v: &str) -> Result<(), String> {
        // ippools wins over ippool; a broken ippools is refused even when ippool is fine.
        let m = BTreeMap::from([
            (
                "ipam.spidernet.io/ippool".to_string(),
                "{\"ipv4\": [\"a\"]}".to_string(),
            ),
            ("ipam.spidernet.io/ippools".to_string(), v.to_string()),
        ]);
        ok(pod_ipam_annotations(&m))
    }
    vec![
        ("ippools: a misspelt family leaves the entry empty", ippools, "[{\"interface\": \"eth0\", \"ipv4pool\": [\"a\"]}]",
            "annotation ipam.spidernet.io/ippools: entry 1: pool list is empty: name at least one IPv4 or IPv6 pool (unknown field `ipv4pool` ignored"),
        ("ippool: top-level null", ippool, "null",
            "annotation ipam.spidernet.io/ippool: must be a JSON object like {\"ipv4\": [\"pool-a\"], \"ipv6\": [\"pool-b\"]}"),
        ("ippool: nested list", ippool, "{\"ipv4\": [[\"a\"]]}",
            "annotation ipam.spidernet.io/ippool: `ipv4`: entry 1 must be a string (a pool name)"),
        ("ippool: ipv6 is an object", ippool, "{\"ipv6\": {\"name\": \"a\"}}",
            "annotation ipam.spidernet.io/ippool: `ipv6` must be a list of pool names, e.g. [\"pool-a\", \"pool-b\"]"),
        ("ippool: only an interface", ippool, "{\"interface\": \"eth0\"}",
            "annotation ipam.spidernet.io/ippool: pool list is empty: name at least one IPv4 or IPv6 pool"),
        ("ippool: interface name too long", ippool, "{\"interface\": \"a-very-long-interface\", \"ipv4\": [\"a\"]}",
            "annotation ipam.spidernet.io/ippool: interface name `a-very-long-interface` is longer than 15 characters (Linux limit)"),
        ("ippool: interface not a string", ippool, "{\"interface\": 0, \"ipv4\": [\"a\"]}",
            "annotation ipam.spidernet.io/ippool: `interface` must be a string, e.g. \"eth0\""),
        ("ippool: trailing garbage", ippool, "{\"ipv4\": [\"a\"]} x",
            "annotation ipam.spidernet.io/ippool: invalid JSON at line 1 column 17: trailing characters"),
        ("ippools: duplicate interface wins over ippool", both_keys, "[{\"interface\": \"net1\", \"ipv4\": [\"a\"]}, {\"interface\": \"net1\", \"ipv4\": [\"b\"]}]",
            "annotation ipam.spidernet.io/ippools: interface `net1` appears twice"),
        ("subnets: entry without interface", subnets, "[{\"ipv4\": [\"s\"]}, {\"interface\": \"net1\", \"ipv4\": [\"t\"]}]",
            "annotation ipam.spidernet.io/subnets: entry 1 has no `interface`: every entry must name its interface"),
        ("routes: dst not a CIDR", routes, "[{\"dst\": \"10.0.0.0/40\", \"gw\": \"10.0.0.1\"}]",
            "annotation ipam.spidernet.io/routes: entry 1: `dst` `10.0.0.0/40` is not a CIDR: write an address and prefix length, e.g. \"10.0.0.0/16\""),
        ("routes: destination twice", routes, "[{\"dst\": \"10.0.0.0/16\", \"gw\": \"10.1.0.1\"}, {\"dst\": \"10.0.0.0/16\", \"gw\": \"10.1.0.2\"}]",
            "annotation ipam.spidernet.io/routes: entry 2: destination `10.0.0.0/16` is given twice; keep one route per destination"),
        ("ippool-ip-number: zero", ip_number, "0",
            "annotation ipam.spidernet.io/ippool-ip-number: a fixed pool of 0 addresses cannot serve any Pod"),
        ("ippool-ip-number: too large", ip_number, "+99999999999999999999999",
            "annotation ipam.spidernet.io/ippool-ip-number: `+99999999999999999999999` is too large: "),
        ("multus: empty item", networks, "kube-system/macvlan-conf@net1,,",
            "annotation k8s.v1.cni.cncf.io/networks: item 2 is empty: remove the extra comma, or name a network there"),
        ("multus: JSON not a list", networks, "{\"name\": \"macvlan-conf\"}",
            "annotation k8s.v1.cni.cncf.io/networks: the JSON form must be a list of networks"),
        ("multus default network: two networks", default_network, "a, b",
            "annotation v1.multus-cni.io/default-network: 2 networks are named: the default network is exactly one"),
        ("namespace default pools: not a list", ns_defaults, "\"pool-a\"",
            "annotation ipam.spidernet.io/default-ipv4-ippool: must be a list of pool names, e.g. [\"pool-a\", \"pool-b\"]"),
    ]
}

#[test]
fn malformed_annotations_are_refused_with_their_message() {
    let mut failures = Vec::new();
    let cases = annotation_cases();
    for (name, parse, input, expected) in &cases {
        match parse(input) {
            Ok(()) => failures.push(format!("{name}: accepted")),
            Err(got) if got.starts_with(expected) => {}
            Err(got) => failures.push(format!("{name}:\n  expected {expected}\n  got      {got}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(cases.len() >= 15);
}

#[test]
fn range_parser_refusals() {
    let cases = [
        ("", "empty IP entry: write a single address like 172.18.40.40 or an inclusive range like 172.18.40.1-172.18.40.10 (IPv6: fd00::1-fd00::10)"),
        ("10.0.0.1 - 10.0.0.2", "'10.0.0.1 ' in entry '10.0.0.1 - 10.0.0.2' is not an IP address: "),
        ("10.0.0.1-10.0.0.2-10.0.0.3", "'10.0.0.2-10.0.0.3' in entry '10.0.0.1-10.0.0.2-10.0.0.3' is not an IP address: "),
        ("fe80::1%eth0", "'fe80::1%eth0' in entry 'fe80::1%eth0' is not an IP address: "),
        ("10.0.0.0/33", "'10.0.0.0/33' is CIDR notation, which is not accepted in an IP list: write a range a-b instead"),
    ];
    for (input, expected) in cases {
        let got = IpRange::parse(input).unwrap_err().to_string();
        assert!(got.starts_with(expected), "{input:?}: {got}");
    }
}
