//! Tests of the ippool and ippools codecs: tables of good and bad values, and round trips.

use super::*;
use crate::annotations::test_util::{err_text, pr, strs, NAME_RULE};
use crate::annotations::{
    format_subnet, format_subnets, parse_subnet, parse_subnets, SubnetRequest,
};
use proptest::prelude::*;

const P: &str = "annotation ipam.spidernet.io/ippool: ";
const PS: &str = "annotation ipam.spidernet.io/ippools: ";

#[test]
fn ippool_good() {
    let cases: Vec<(&str, PoolRequest)> = vec![
        (r#"{"ipv4": ["a"]}"#, pr(None, &["a"], &[], None)),
        (
            r#"{"ipv4": ["a", "backup"], "ipv6": ["v6-a"]}"#,
            pr(None, &["a", "backup"], &["v6-a"], None),
        ),
        (
            r#"{"ipv6": ["b"], "ipv4": []}"#,
            pr(None, &[], &["b"], None),
        ),
        (
            r#"{"interface": "eth0", "ipv4pools": ["a"], "ipv6pools": ["b"]}"#,
            pr(Some("eth0"), &["a"], &["b"], None),
        ),
        (
            r#"{"ipv4": ["a"], "ipv6": null}"#,
            pr(None, &["a"], &[], None),
        ),
        (
            r#"{"ipv4": ["pool-*", "p[0-9]?", "x.y"]}"#,
            pr(None, &["pool-*", "p[0-9]?", "x.y"], &[], None),
        ),
    ];
    for (v, want) in cases {
        assert_eq!(parse_ippool(v), Ok(want), "{v}");
    }
}

#[test]
fn ippool_bad() {
    let cases: Vec<(&str, String)> = vec![
        (
            "",
            r#"the value is empty: write JSON like {"ipv4": ["pool-a"]}"#.into(),
        ),
        (
            r#"{"ipv4": ["a"] "ipv6": []}"#,
            "invalid JSON at line 1 column 16: expected `,` or `}`".into(),
        ),
        (
            r#"{"ipv4": ["a"],}"#,
            "invalid JSON at line 1 column 16: trailing comma".into(),
        ),
        (
            r#"{"ipv4pool": ["a"]}"#,
            "pool list is empty: name at least one IPv4 or IPv6 pool (unknown field `ipv4pool` \
             ignored, as Spiderpool ignores it (the fields are `interface`, `ipv4`, `ipv6`))"
                .into(),
        ),
        (
            "{}",
            "pool list is empty: name at least one IPv4 or IPv6 pool".into(),
        ),
        (
            r#"{"ipv4": []}"#,
            "pool list is empty: name at least one IPv4 or IPv6 pool".into(),
        ),
        (
            "[]",
            r#"must be a JSON object like {"ipv4": ["pool-a"], "ipv6": ["pool-b"]}"#.into(),
        ),
        (
            r#"{"ipv4": "a"}"#,
            r#"`ipv4` must be a list of pool names, e.g. ["pool-a", "pool-b"]"#.into(),
        ),
        (
            r#"{"ipv4": [1]}"#,
            "`ipv4`: entry 1 must be a string (a pool name)".into(),
        ),
        (
            r#"{"ipv4": [""]}"#,
            "`ipv4`: an empty pool name is listed: remove it or write the pool's name".into(),
        ),
        (
            r#"{"ipv6": ["Bad_Pool"]}"#,
            format!("`ipv6`: `Bad_Pool` is not a valid pool name: {NAME_RULE}"),
        ),
        (
            r#"{"ipv4": ["pool-]x["]}"#,
            "`ipv4`: `pool-]x[` is not a valid wildcard pattern: a `[` is not closed by `]`".into(),
        ),
        (
            r#"{"ipv4": ["a[z-a]"]}"#,
            "`ipv4`: `a[z-a]` is not a valid wildcard pattern: the range `z-a` is backwards".into(),
        ),
        (
            r#"{"ipv4": ["Pool*"]}"#,
            "`ipv4`: `Pool*` can never match a pool: pool names have no `P` (only lowercase \
             letters, digits, '-' and '.')"
                .into(),
        ),
        (
            r#"{"interface": "averyveryverylongname", "ipv4": ["a"]}"#,
            "interface name `averyveryverylongname` is longer than 15 characters (Linux limit)"
                .into(),
        ),
        (
            r#"{"interface": "eth 0", "ipv4": ["a"]}"#,
            "interface name `eth 0` contains whitespace, which Linux does not allow".into(),
        ),
        (
            r#"{"interface": "a/b", "ipv4": ["a"]}"#,
            "interface name `a/b` contains `/`, which Linux does not allow".into(),
        ),
        (
            r#"{"interface": 5, "ipv4": ["a"]}"#,
            r#"`interface` must be a string, e.g. "eth0""#.into(),
        ),
    ];
    for (v, problem) in cases {
        assert_eq!(err_text(parse_ippool(v)), format!("{P}{problem}"), "{v}");
    }
    // The brief's own wording for a broken object.
    assert_eq!(
        err_text(parse_ippool(r#"{"ipv4":["a"] x"#)),
        format!("{P}invalid JSON at line 1 column 15: expected `,` or `}}`")
    );
}

#[test]
fn ippools_good() {
    let cases: Vec<(&str, Vec<PoolRequest>)> = vec![
        (
            r#"[{"interface":"eth0","ipv4":["a"],"ipv6":["b"],"cleangateway":true},
                    {"interface":"net1","ipv4":["c"],"cleangateway":false}]"#,
            vec![
                pr(Some("eth0"), &["a"], &["b"], Some(true)),
                pr(Some("net1"), &["c"], &[], Some(false)),
            ],
        ),
        // The older spellings: `ipv4pools` is read; `defaultRoute` is ignored, as in
        // Spiderpool 1.x (both with warnings).
        (
            r#"[{"interface":"eth0","ipv4pools":["a"],"defaultRoute":true},
                    {"interface":"eth1","ipv6pools":["b"],"defaultRoute":false}]"#,
            vec![
                pr(Some("eth0"), &["a"], &[], None),
                pr(Some("eth1"), &[], &["b"], None),
            ],
        ),
        (
            r#"[{"ipv4":["a"]},{"ipv4":["b"],"cleangateway":true}]"#,
            vec![
                pr(None, &["a"], &[], None),
                pr(None, &["b"], &[], Some(true)),
            ],
        ),
        // The same pool may serve two interfaces; only interfaces must differ.
        (
            r#"[{"interface":"eth0","ipv4":["a"]},{"interface":"net1","ipv4":["a"]}]"#,
            vec![
                pr(Some("eth0"), &["a"], &[], None),
                pr(Some("net1"), &["a"], &[], None),
            ],
        ),
    ];
    for (v, want) in cases {
        assert_eq!(parse_ippools(v), Ok(want), "{v}");
    }
}

#[test]
fn ippools_bad() {
    let cases: Vec<(&str, &str)> = vec![
        (
            "[]",
            r#"the list is empty: add one entry per interface, e.g. [{"interface": "eth0", "ipv4": ["pool-a"]}]"#,
        ),
        (
            "{}",
            r#"must be a JSON list, one entry per interface, e.g. [{"interface": "eth0", "ipv4": ["pool-a"]}]"#,
        ),
        (
            r#"[{"interface":"eth0","ipv4":["a"]},{"ipv4":["b"]}]"#,
            "entry 2 has no `interface`: name the interface in every entry, or in none \
             (entries are then given to the Pod's interfaces in order)",
        ),
        (
            r#"[{"interface":"eth0","ipv4":["a"]},{"interface":"eth0","ipv4":["b"]}]"#,
            "interface `eth0` appears twice",
        ),
        (
            r#"[{"interface":"eth0","ipv4pool":["a"]}]"#,
            "entry 1: pool list is empty: name at least one IPv4 or IPv6 pool (unknown field \
             `ipv4pool` ignored, as Spiderpool ignores it (the fields are `interface`, `ipv4`, \
             `ipv6`, `cleangateway`))",
        ),
        (
            r#"[{"interface":"eth0","ipv4":["a"],"cleangateway":"yes"}]"#,
            "entry 1: `cleangateway` must be true or false (without quotes)",
        ),
        (
            r#"[{"interface":"eth0","ipv4":["a"]},{"interface":"net1"}]"#,
            "entry 2: pool list is empty: name at least one IPv4 or IPv6 pool",
        ),
        (
            "[1]",
            r#"entry 1: must be an object like {"interface": "eth0", "ipv4": ["pool-a"]}"#,
        ),
        (
            "[",
            "invalid JSON at line 1 column 1: EOF while parsing a list",
        ),
    ];
    for (v, problem) in cases {
        assert_eq!(err_text(parse_ippools(v)), format!("{PS}{problem}"), "{v}");
    }
}

#[test]
fn format_examples() {
    assert_eq!(
        format_ippool(&pr(Some("eth0"), &["a"], &["b"], Some(true))),
        r#"{"interface":"eth0","ipv4":["a"],"ipv6":["b"]}"#
    );
    assert_eq!(
        format_ippools(&[pr(Some("eth0"), &["a"], &[], Some(false))]),
        r#"[{"cleangateway":false,"interface":"eth0","ipv4":["a"]}]"#
    );
    let s = SubnetRequest {
        interface: Some("net1".into()),
        ipv4: strs(&["s"]),
        ipv6: vec![],
    };
    assert_eq!(parse_subnet(&format_subnet(&s)), Ok(s.clone()));
    assert_eq!(
        parse_subnets(&format_subnets(std::slice::from_ref(&s))),
        Ok(vec![s])
    );
}

// ---- property tests ----

fn pool_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,5}){0,2}",
        "[a-z]{1,6}-\\*",
        "[a-z]{1,4}\\?[0-9]",
        "[a-z]{1,4}\\[0-9\\]",
    ]
}

fn pool_names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set(pool_name(), 0..4).prop_map(|s| s.into_iter().collect())
}

fn interface() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9._-]{0,14}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn families() -> impl Strategy<Value = (Vec<String>, Vec<String>)> {
    (pool_names(), pool_names())
        .prop_filter("at least one pool", |(a, b)| !a.is_empty() || !b.is_empty())
}

fn single_request() -> impl Strategy<Value = PoolRequest> {
    (prop::option::of(interface()), families()).prop_map(|(interface, (ipv4, ipv6))| PoolRequest {
        interface,
        ipv4,
        ipv6,
        clean_gateway: None,
    })
}

fn request_list() -> impl Strategy<Value = Vec<PoolRequest>> {
    (
        any::<bool>(),
        prop::collection::btree_set(interface(), 1..4),
    )
        .prop_flat_map(|(named, ifaces)| {
            let n = ifaces.len();
            let ifaces: Vec<String> = ifaces.into_iter().collect();
            prop::collection::vec((families(), prop::option::of(any::<bool>())), n).prop_map(
                move |entries| {
                    entries
                        .into_iter()
                        .zip(ifaces.iter())
                        .map(|(((ipv4, ipv6), clean_gateway), i)| PoolRequest {
                            interface: named.then(|| i.clone()),
                            ipv4,
                            ipv6,
                            clean_gateway,
                        })
                        .collect()
                },
            )
        })
}

proptest! {
    #[test]
    fn ippool_round_trip(req in single_request()) {
        prop_assert_eq!(parse_ippool(&format_ippool(&req)), Ok(req));
    }

    #[test]
    fn ippools_round_trip(reqs in request_list()) {
        prop_assert_eq!(parse_ippools(&format_ippools(&reqs)), Ok(reqs));
    }
}

#[test]
fn what_spiderpool_accepts_is_read_as_spiderpool_reads_it_with_warnings() {
    let mut w = Vec::new();
    let r = parse_ippool_noting(
        r#"{"IPv4": ["a", "b", "a"], "cleangateway": true, "ipv6pools": ["x"], "ipv6": ["c"]}"#,
        &mut w,
    )
    .unwrap();
    assert_eq!(r, pr(None, &["a", "b"], &["c"], None));
    assert_eq!(
        w,
        [
            "annotation ipam.spidernet.io/ippool: field `IPv4` read as `ipv4` (Spiderpool matches field names without regard to case); write `ipv4`",
            "annotation ipam.spidernet.io/ippool: unknown field `cleangateway` ignored, as Spiderpool ignores it (the fields are `interface`, `ipv4`, `ipv6`)",
            "annotation ipam.spidernet.io/ippool: `ipv4`: pool `a` is listed twice; the repeat is ignored",
            "annotation ipam.spidernet.io/ippool: both `ipv6` and `ipv6pools` are set: `ipv6pools` is ignored, keep only `ipv6`",
        ]
    );
    let mut w = Vec::new();
    let r = parse_ippools_noting(
        r#"[{"interface":"eth0","ipv4":["a"],"cleangateway":true,"defaultRoute":true,"mac":"x"}]"#,
        &mut w,
    )
    .unwrap();
    assert_eq!(r, vec![pr(Some("eth0"), &["a"], &[], Some(true))]);
    // An empty interface name is no name: the entries go to the interfaces in order.
    let r = parse_ippools(r#"[{"interface":"","ipv4":["a"]},{"interface":"","ipv4":["b"]}]"#);
    assert_eq!(
        r,
        Ok(vec![
            pr(None, &["a"], &[], None),
            pr(None, &["b"], &[], None)
        ])
    );
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with(
            "annotation ipam.spidernet.io/ippools: entry 1: unknown field `mac` ignored"
        ),
        "{w:?}"
    );
    assert!(w[1].contains("`defaultRoute` is ignored"), "{w:?}");
}
