//! Tests of pool selection: the zone scenario, priorities and backup, every filter's reason,
//! and properties against a plain model.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use crate::labels::LabelSelectorRequirement;
use crate::model::Owner;

// ---- builders -------------------------------------------------------------------------

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn mk_pool(name: &str, subnet: &str, ips: &[&str]) -> Pool {
    Pool::new(
        name,
        subnet.parse().unwrap(),
        IpSet::parse_list(ips).unwrap(),
    )
}

fn node_in(key: &str, values: &[&str]) -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![LabelSelectorRequirement {
            key: key.to_string(),
            operator: "In".to_string(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }],
    }
}

fn mk_pod(ns: &str, annotations: &[(&str, &str)]) -> PodInfo {
    PodInfo {
        namespace: ns.to_string(),
        name: Some("p".to_string()),
        annotations: labels(annotations),
        ..PodInfo::default()
    }
}

fn mk_ns(name: &str, lbls: &[(&str, &str)], annotations: &[(&str, &str)]) -> NamespaceInfo {
    let mut l = labels(lbls);
    l.insert("kubernetes.io/metadata.name".to_string(), name.to_string());
    NamespaceInfo {
        name: name.to_string(),
        labels: l,
        annotations: labels(annotations),
    }
}

fn mk_node(name: &str, lbls: &[(&str, &str)]) -> NodeInfo {
    NodeInfo {
        name: name.to_string(),
        labels: labels(lbls),
    }
}

/// A world: pools, config, usage.
struct World {
    pools: BTreeMap<String, Pool>,
    used: BTreeMap<String, IpSet>,
    config: IpamConfig,
    reserved_v4: IpSet,
    reserved_v6: IpSet,
    nodes: Vec<NodeInfo>,
}

impl World {
    fn new(pools: Vec<Pool>) -> World {
        World {
            pools: pools.into_iter().map(|p| (p.name.clone(), p)).collect(),
            used: BTreeMap::new(),
            config: IpamConfig::default(),
            reserved_v4: IpSet::new(),
            reserved_v6: IpSet::new(),
            nodes: Vec::new(),
        }
    }

    fn select(
        &self,
        pod: &PodInfo,
        ns: &NamespaceInfo,
        node: Option<&NodeInfo>,
        ifaces: &[InterfaceRequest],
    ) -> Result<Selection, Refusal> {
        select(&SelectionInput {
            pod,
            namespace: ns,
            node,
            nodes: if self.nodes.is_empty() {
                None
            } else {
                Some(&self.nodes)
            },
            interfaces: ifaces,
            config: &self.config,
            pools: &self.pools,
            used: &self.used,
            reserved_v4: &self.reserved_v4,
            reserved_v6: &self.reserved_v6,
        })
    }

    fn fill(&mut self, pool: &str) {
        let p = &self.pools[pool];
        let all = p.allocatable(&self.reserved_v4);
        self.used.insert(pool.to_string(), all);
    }
}

fn pools_of(s: &Selection, iface: usize, fam: usize) -> Vec<String> {
    s.interfaces[iface].families[fam]
        .candidates
        .iter()
        .map(|c| c.pool.clone())
        .collect()
}

// ---- scenario 1: zones ----------------------------------------------------------------

fn zone_world() -> World {
    let mut p6 = mk_pool("test-ippool-6", "10.6.0.0/16", &["10.6.168.60-10.6.168.69"]);
    p6.gateway = Some("10.6.0.1".parse().unwrap());
    p6.node_affinity = Some(node_in("node-subnet", &["subnet-6"]));
    let mut p7 = mk_pool("test-ippool-7", "10.7.0.0/16", &["10.7.168.60-10.7.168.69"]);
    p7.gateway = Some("10.7.0.1".parse().unwrap());
    p7.node_affinity = Some(node_in("node-subnet", &["subnet-7"]));
    World::new(vec![p6, p7])
}

const ZONE_ANNO: (&str, &str) = (
    "ipam.spidernet.io/ippool",
    r#"{"ipv4": ["test-ippool-6", "test-ippool-7"]}"#,
);

#[test]
fn zones_daemonset_pod_gets_the_pool_of_its_node() {
    let w = zone_world();
    let ns = mk_ns("zone-demo", &[], &[]);
    let pod = mk_pod("zone-demo", &[ZONE_ANNO]);
    let n6 = mk_node("controller-node-1", &[("node-subnet", "subnet-6")]);
    let n7 = mk_node("worker-node-1", &[("node-subnet", "subnet-7")]);

    let s = w.select(&pod, &ns, Some(&n6), &[]).unwrap();
    assert_eq!(s.interfaces[0].interface, "eth0");
    assert_eq!(s.interfaces[0].rule, Rule::PodIpPool);
    assert_eq!(pools_of(&s, 0, 0), vec!["test-ippool-6"]);
    assert!(!s.interfaces[0].families[0].candidates[0].zone);
    assert_eq!(
        s.interfaces[0].families[0].excluded,
        vec![Exclusion {
            pool: "test-ippool-7".to_string(),
            reason: Reason::NodeAffinity {
                node: "controller-node-1".to_string(),
                selector: "node-subnet in (subnet-7)".to_string()
            }
        }]
    );

    let s = w.select(&pod, &ns, Some(&n7), &[]).unwrap();
    assert_eq!(pools_of(&s, 0, 0), vec!["test-ippool-7"]);
}

#[test]
fn zones_deployment_pod_with_unknown_node_reserves_in_each_zone() {
    let mut w = zone_world();
    let n6 = mk_node("controller-node-1", &[("node-subnet", "subnet-6")]);
    let n7 = mk_node("worker-node-1", &[("node-subnet", "subnet-7")]);
    w.nodes = vec![n6.clone(), n7.clone()];
    let ns = mk_ns("zone-demo", &[], &[]);
    let pod = mk_pod("zone-demo", &[ZONE_ANNO]);
    let s = w.select(&pod, &ns, None, &[]).unwrap();
    let fs = &s.interfaces[0].families[0];
    assert_eq!(pools_of(&s, 0, 0), vec!["test-ippool-6", "test-ippool-7"]);
    assert!(fs.candidates.iter().all(|c| c.zone));
    assert_eq!(reservation_set(fs).len(), 2);
    // Once bound, the reservation matching the node is kept (as the operator resolves it).
    let record = crate::reservation::Reservation {
        id: "r".to_string(),
        interfaces: vec![crate::reservation::ReservedInterface {
            interface: "eth0".to_string(),
            clean_gateway: None,
            ipv4: reservation_set(fs)
                .iter()
                .map(|c| crate::reservation::ReservedAddress {
                    pool: c.pool.clone(),
                    address: w.pools[&c.pool].ips.first().unwrap(),
                })
                .collect(),
            ipv6: vec![],
        }],
    };
    let kept_pool = |n: &NodeInfo| {
        record
            .resolve_for_node(&w.pools, n)
            .map(|(kept, _)| kept.interfaces[0].ipv4[0].pool.clone())
    };
    assert_eq!(kept_pool(&n6).unwrap(), "test-ippool-6");
    assert_eq!(kept_pool(&n7).unwrap(), "test-ippool-7");
    let n8 = mk_node("elsewhere", &[("node-subnet", "subnet-8")]);
    assert_eq!(kept_pool(&n8), None);
}

#[test]
fn zones_pool_that_no_node_serves_is_dropped() {
    let mut w = zone_world();
    w.nodes = vec![mk_node("controller-node-1", &[("node-subnet", "subnet-6")])];
    let s = w
        .select(
            &mk_pod("zone-demo", &[ZONE_ANNO]),
            &mk_ns("zone-demo", &[], &[]),
            None,
            &[],
        )
        .unwrap();
    assert_eq!(pools_of(&s, 0, 0), vec!["test-ippool-6"]);
    assert_eq!(
        s.interfaces[0].families[0].excluded[0].reason,
        Reason::NoNodeMatches
    );
}

#[test]
fn zones_node_in_no_zone_is_refused_naming_every_pool() {
    let w = zone_world();
    let n8 = mk_node("edge-1", &[("node-subnet", "subnet-8")]);
    let err = w
        .select(
            &mk_pod("zone-demo", &[ZONE_ANNO]),
            &mk_ns("zone-demo", &[], &[]),
            Some(&n8),
            &[],
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: \
         pool test-ippool-6: node edge-1 does not match its spec.nodeAffinity (node-subnet in (subnet-6)); \
         pool test-ippool-7: node edge-1 does not match its spec.nodeAffinity (node-subnet in (subnet-7))"
    );
}

#[test]
fn zones_unknown_node_with_an_unrestricted_backup_stops_reserving_there() {
    let mut w = zone_world();
    w.pools.insert(
        "any".to_string(),
        mk_pool("any", "10.8.0.0/16", &["10.8.0.10-10.8.0.20"]),
    );
    w.pools.insert(
        "never".to_string(),
        mk_pool("never", "10.9.0.0/16", &["10.9.0.10-10.9.0.20"]),
    );
    let pod = mk_pod(
        "zone-demo",
        &[(
            "ipam.spidernet.io/ippool",
            r#"{"ipv4": ["test-ippool-6", "any", "test-ippool-7", "never"]}"#,
        )],
    );
    let s = w
        .select(&pod, &mk_ns("zone-demo", &[], &[]), None, &[])
        .unwrap();
    // Node-bound pools sort before unrestricted ones (Spiderpool's priority); ties keep
    // the written order.
    assert_eq!(
        pools_of(&s, 0, 0),
        vec!["test-ippool-6", "test-ippool-7", "any", "never"]
    );
    let set: Vec<&str> = reservation_set(&s.interfaces[0].families[0])
        .iter()
        .map(|c| c.pool.as_str())
        .collect();
    assert_eq!(set, vec!["test-ippool-6", "test-ippool-7", "any"]);
}

// ---- scenario 2: priorities and backup --------------------------------------------------

fn priority_world() -> World {
    let mut default_pool = mk_pool(
        "default-v4-ippool",
        "172.18.0.0/16",
        &["172.18.40.41-172.18.40.45"],
    );
    default_pool.namespace_affinity = Some(LabelSelector {
        match_labels: labels(&[("foo", "bar")]),
        match_expressions: Vec::new(),
    });
    let backup = mk_pool(
        "backup-v4-ippool",
        "172.18.0.0/16",
        &["172.18.40.46-172.18.40.50"],
    );
    let team = mk_pool("team-a-v4", "172.18.0.0/16", &["172.18.41.1-172.18.41.100"]);
    let eth1 = mk_pool("eth1-v4", "10.20.0.0/24", &["10.20.0.10-10.20.0.200"]);
    let mut w = World::new(vec![default_pool, backup, team, eth1]);
    w.config.cluster_default_ipv4_ippool = vec!["default-v4-ippool".to_string()];
    w
}

fn team_a() -> NamespaceInfo {
    mk_ns(
        "team-a",
        &[("foo", "bar")],
        &[("ipam.spidernet.io/default-ipv4-ippool", r#"["team-a-v4"]"#)],
    )
}

#[test]
fn pod_annotation_beats_namespace_default_beats_cluster_default() {
    let w = priority_world();
    let pod = mk_pod(
        "team-a",
        &[(
            "ipam.spidernet.io/ippool",
            r#"{"ipv4": ["backup-v4-ippool"]}"#,
        )],
    );
    let s = w.select(&pod, &team_a(), None, &[]).unwrap();
    assert_eq!(s.interfaces[0].rule, Rule::PodIpPool);
    assert_eq!(pools_of(&s, 0, 0), vec!["backup-v4-ippool"]);

    let s = w
        .select(&mk_pod("team-a", &[]), &team_a(), None, &[])
        .unwrap();
    assert_eq!(
        s.interfaces[0].rule,
        Rule::NamespaceDefault {
            namespace: "team-a".to_string()
        }
    );
    assert_eq!(pools_of(&s, 0, 0), vec!["team-a-v4"]);

    let plain = mk_ns("plain", &[("foo", "bar")], &[]);
    let s = w.select(&mk_pod("plain", &[]), &plain, None, &[]).unwrap();
    assert_eq!(s.interfaces[0].rule, Rule::ClusterDefault);
    assert_eq!(pools_of(&s, 0, 0), vec!["default-v4-ippool"]);
}

#[test]
fn old_namespace_key_is_read() {
    let w = priority_world();
    let legacy = mk_ns(
        "legacy",
        &[],
        &[("ipam.spidernet.io/defaultv4ippool", r#"["team-a-v4"]"#)],
    );
    let s = w
        .select(&mk_pod("legacy", &[]), &legacy, None, &[])
        .unwrap();
    assert_eq!(pools_of(&s, 0, 0), vec!["team-a-v4"]);
}

#[test]
fn ippools_wins_over_ippool_and_serves_every_interface() {
    let w = priority_world();
    let pod = mk_pod(
        "team-a",
        &[
            (
                "ipam.spidernet.io/ippool",
                r#"{"ipv4": ["backup-v4-ippool"]}"#,
            ),
            (
                "ipam.spidernet.io/ippools",
                r#"[{"interface": "eth0", "ipv4": ["team-a-v4"]},
                        {"interface": "eth1", "ipv4": ["eth1-v4"], "cleangateway": true}]"#,
            ),
        ],
    );
    let s = w.select(&pod, &team_a(), None, &[]).unwrap();
    assert_eq!(s.interfaces.len(), 2);
    assert_eq!(s.interfaces[0].rule, Rule::PodIpPools);
    assert_eq!(pools_of(&s, 0, 0), vec!["team-a-v4"]);
    assert_eq!(s.interfaces[1].interface, "eth1");
    assert_eq!(pools_of(&s, 1, 0), vec!["eth1-v4"]);
    assert_eq!(s.interfaces[1].clean_gateway, Some(true));
}

#[test]
fn unnamed_ippools_entries_follow_the_interfaces_in_order() {
    let w = priority_world();
    let pod = mk_pod(
        "team-a",
        &[(
            "ipam.spidernet.io/ippools",
            r#"[{"ipv4": ["team-a-v4"]}, {"ipv4": ["eth1-v4"]}]"#,
        )],
    );
    let ifaces = [
        InterfaceRequest::eth0(),
        InterfaceRequest {
            name: "net1".to_string(),
            network: Some("kube-system/macvlan".to_string()),
            ..InterfaceRequest::default()
        },
    ];
    let s = w.select(&pod, &team_a(), None, &ifaces).unwrap();
    assert_eq!(pools_of(&s, 0, 0), vec!["team-a-v4"]);
    assert_eq!(s.interfaces[1].interface, "net1");
    assert_eq!(pools_of(&s, 1, 0), vec!["eth1-v4"]);
}

#[test]
fn ippools_without_an_entry_for_a_served_interface_is_refused() {
    let w = priority_world();
    let pod = mk_pod(
        "team-a",
        &[(
            "ipam.spidernet.io/ippools",
            r#"[{"interface": "eth0", "ipv4": ["team-a-v4"]}]"#,
        )],
    );
    let ifaces = [
        InterfaceRequest::eth0(),
        InterfaceRequest {
            name: "net1".to_string(),
            ..InterfaceRequest::default()
        },
    ];
    let err = w.select(&pod, &team_a(), None, &ifaces).unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface net1: annotation ipam.spidernet.io/ippools has no entry for it; add {\"interface\": \"net1\", ...}"
    );
}

#[test]
fn a_full_first_pool_falls_through_to_the_backup() {
    let mut w = priority_world();
    let pod = mk_pod(
        "team-a",
        &[(
            "ipam.spidernet.io/ippool",
            r#"{"interface": "eth0", "ipv4pools": ["default-v4-ippool", "backup-v4-ippool"]}"#,
        )],
    );
    let s = w.select(&pod, &team_a(), None, &[]).unwrap();
    assert_eq!(
        pools_of(&s, 0, 0),
        vec!["default-v4-ippool", "backup-v4-ippool"]
    );
    w.fill("default-v4-ippool");
    let s = w.select(&pod, &team_a(), None, &[]).unwrap();
    assert_eq!(pools_of(&s, 0, 0), vec!["backup-v4-ippool"]);
    assert_eq!(
        s.interfaces[0].families[0].excluded[0].reason,
        Reason::Exhausted { capacity: 5 }
    );
    w.fill("backup-v4-ippool");
    let err = w.select(&pod, &team_a(), None, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: \
         pool default-v4-ippool: all 5 addresses are in use; pool backup-v4-ippool: all 5 addresses are in use"
    );
}

#[test]
fn cluster_default_excluded_by_namespace_affinity_is_a_clear_refusal() {
    let w = priority_world();
    let err = w
        .select(
            &mk_pod("default", &[]),
            &mk_ns("default", &[], &[]),
            None,
            &[],
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface eth0: no IPv4 pool from cluster default pools (spec.default: true, or \
         clusterDefaultIPv4IPPool/clusterDefaultIPv6IPPool in spiderpool-conf) can serve this Pod: \
         pool default-v4-ippool: the namespace's labels do not match its spec.namespaceAffinity (foo=bar)"
    );
}

#[test]
fn spec_default_pools_join_the_configured_defaults() {
    let mut w = priority_world();
    w.pools.get_mut("backup-v4-ippool").unwrap().default = true;
    let s = w
        .select(
            &mk_pod("x", &[]),
            &mk_ns("x", &[("foo", "bar")], &[]),
            None,
            &[],
        )
        .unwrap();
    assert_eq!(
        pools_of(&s, 0, 0),
        vec!["default-v4-ippool", "backup-v4-ippool"]
    );
}

#[test]
fn no_rule_at_all_says_what_to_configure() {
    let w = World::new(vec![mk_pool("a", "10.0.0.0/24", &["10.0.0.5"])]);
    let err = w
        .select(&mk_pod("x", &[]), &mk_ns("x", &[], &[]), None, &[])
        .unwrap_err();
    assert!(matches!(err.problems[0], Problem::NoRule { .. }));
    assert!(err
        .to_string()
        .contains("mark a SpiderIPPool spec.default: true"));
}

#[test]
fn every_filter_names_its_reason() {
    let mut w = priority_world();
    let mut disabled = mk_pool("disabled", "10.1.0.0/24", &["10.1.0.5"]);
    disabled.disable = true;
    let mut deleting = mk_pool("deleting", "10.2.0.0/24", &["10.2.0.5"]);
    deleting.deleting = true;
    let v6 = mk_pool("v6", "fd00::/64", &["fd00::5"]);
    let mut by_name = mk_pool("by-name", "10.3.0.0/24", &["10.3.0.5"]);
    by_name.namespace_name = vec!["other".to_string()];
    let mut by_pod = mk_pool("by-pod", "10.4.0.0/24", &["10.4.0.5"]);
    by_pod.pod_affinity = Some(LabelSelector {
        match_labels: labels(&[("app", "db")]),
        match_expressions: Vec::new(),
    });
    let mut by_multus = mk_pool("by-multus", "10.5.0.0/24", &["10.5.0.5"]);
    by_multus.multus_name = vec!["kube-system/macvlan".to_string()];
    let mut all_excluded = mk_pool("all-excluded", "10.7.0.0/24", &["10.7.0.5"]);
    all_excluded.exclude_ips = IpSet::parse_list(&["10.7.0.5"]).unwrap();
    let mut by_node = mk_pool("by-node", "10.8.0.0/24", &["10.8.0.5"]);
    by_node.node_name = vec!["other-node".to_string()];
    for p in [
        disabled,
        deleting,
        v6,
        by_name,
        by_pod,
        by_multus,
        all_excluded,
        by_node,
    ] {
        w.pools.insert(p.name.clone(), p);
    }
    let pod = mk_pod(
        "team-a",
        &[(
            "ipam.spidernet.io/ippool",
            r#"{"ipv4": ["missing", "disabled", "deleting", "v6", "by-name", "by-pod", "by-multus", "all-excluded", "by-node", "nothing-*"]}"#,
        )],
    );
    let node = mk_node("n1", &[]);
    let err = w.select(&pod, &team_a(), Some(&node), &[]).unwrap_err();
    let Problem::NoCandidate { excluded, .. } = &err.problems[0] else {
        panic!("{err}")
    };
    let reasons: Vec<String> = excluded
        .iter()
        .map(|e| format!("{}: {}", e.pool, e.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            "missing: no SpiderIPPool of that name exists",
            "disabled: the pool is disabled (spec.disable: true)",
            "deleting: the pool is being deleted",
            "v6: it is an IPv6 pool, but an IPv4 pool is needed here",
            "by-name: the namespace is not in its spec.namespaceName",
            "by-pod: the Pod's labels do not match its spec.podAffinity (app=db)",
            "by-multus: it is reserved to Multus networks (spec.multusName) and this interface uses none",
            "all-excluded: every address is excluded (spec.excludeIPs), the gateway, or reserved (SpiderReservedIP)",
            "by-node: node n1 is not in its spec.nodeName",
            "nothing-*: the pattern matches no pool",
        ]
    );
}

#[test]
fn multus_name_admits_the_matching_network_only() {
    let mut p = mk_pool("macvlan-pool", "10.5.0.0/24", &["10.5.0.5-10.5.0.9"]);
    p.multus_name = vec!["kube-system/macvlan-conf".to_string()];
    let w = World::new(vec![p]);
    let pod = mk_pod(
        "x",
        &[("ipam.spidernet.io/ippool", r#"{"ipv4": ["macvlan-pool"]}"#)],
    );
    let via = |net: &str| InterfaceRequest {
        name: "eth0".to_string(),
        network: Some(net.to_string()),
        ..InterfaceRequest::default()
    };
    assert!(w
        .select(
            &pod,
            &mk_ns("x", &[], &[]),
            None,
            &[via("kube-system/macvlan-conf")]
        )
        .is_ok());
    let err = w
        .select(
            &pod,
            &mk_ns("x", &[], &[]),
            None,
            &[via("kube-system/other")],
        )
        .unwrap_err();
    assert!(err
        .to_string()
        .contains("network kube-system/other is not in its spec.multusName"));
}

#[test]
fn priority_sort_puts_affinity_pools_first_and_keeps_written_order_among_equals() {
    let a = mk_pool("a", "10.0.1.0/24", &["10.0.1.5"]);
    let b = mk_pool("b", "10.0.2.0/24", &["10.0.2.5"]);
    let mut c = mk_pool("c", "10.0.3.0/24", &["10.0.3.5"]);
    c.namespace_name = vec!["x".to_string()];
    let mut d = mk_pool("d", "10.0.4.0/24", &["10.0.4.5"]);
    d.pod_affinity = Some(LabelSelector::default());
    let mut e = mk_pool("e", "10.0.5.0/24", &["10.0.5.5"]);
    e.node_name = vec!["n".to_string()];
    let w = World::new(vec![a, b, c, d, e]);
    let pod = mk_pod(
        "x",
        &[(
            "ipam.spidernet.io/ippool",
            r#"{"ipv4": ["b", "a", "c", "e", "d"]}"#,
        )],
    );
    let s = w
        .select(&pod, &mk_ns("x", &[], &[]), Some(&mk_node("n", &[])), &[])
        .unwrap();
    assert_eq!(pools_of(&s, 0, 0), vec!["d", "e", "c", "b", "a"]);
}

#[test]
fn dual_stack_needs_both_families_from_the_rule_that_applies() {
    let mut w = World::new(vec![
        mk_pool("v4", "10.0.0.0/24", &["10.0.0.5-10.0.0.9"]),
        mk_pool("v6", "fd00::/64", &["fd00::5-fd00::9"]),
    ]);
    w.config.enable_ipv6 = true;
    let pod = mk_pod(
        "x",
        &[(
            "ipam.spidernet.io/ippool",
            r#"{"ipv4": ["v4"], "ipv6": ["v6"]}"#,
        )],
    );
    let s = w.select(&pod, &mk_ns("x", &[], &[]), None, &[]).unwrap();
    assert_eq!(s.interfaces[0].families.len(), 2);
    assert_eq!(pools_of(&s, 0, 1), vec!["v6"]);
    assert_eq!(s.interfaces[0].families[1].family, IpFamily::V6);

    let only4 = mk_pod("x", &[("ipam.spidernet.io/ippool", r#"{"ipv4": ["v4"]}"#)]);
    let err = w
        .select(&only4, &mk_ns("x", &[], &[]), None, &[])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface eth0: Pod annotation ipam.spidernet.io/ippool names no IPv6 pool, but IPv6 is enabled; \
         add `ipv6` pools there or disable IPv6 in spiderpool-conf"
    );
}

#[test]
fn ipv6_only_ignores_the_ipv4_list() {
    let mut w = World::new(vec![mk_pool("v6", "fd00::/64", &["fd00::5-fd00::9"])]);
    w.config.enable_ipv4 = false;
    w.config.enable_ipv6 = true;
    let pod = mk_pod(
        "x",
        &[(
            "ipam.spidernet.io/ippool",
            r#"{"ipv4": ["nope"], "ipv6": ["v6"]}"#,
        )],
    );
    let s = w.select(&pod, &mk_ns("x", &[], &[]), None, &[]).unwrap();
    assert_eq!(s.interfaces[0].families.len(), 1);
    assert_eq!(pools_of(&s, 0, 0), vec!["v6"]);
}

#[test]
fn malformed_annotation_is_refused_naming_the_key() {
    let w = priority_world();
    let pod = mk_pod(
        "team-a",
        &[("ipam.spidernet.io/ippool", r#"{"ipv4": "team-a-v4"}"#)],
    );
    let err = w.select(&pod, &team_a(), None, &[]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("annotation ipam.spidernet.io/ippool:"),
        "{err}"
    );
}

#[test]
fn reserved_addresses_can_empty_a_pool() {
    let mut w = World::new(vec![mk_pool("a", "10.0.0.0/24", &["10.0.0.5-10.0.0.6"])]);
    w.reserved_v4 = IpSet::parse_list(&["10.0.0.5-10.0.0.6"]).unwrap();
    let pod = mk_pod("x", &[("ipam.spidernet.io/ippool", r#"{"ipv4": ["a"]}"#)]);
    let err = w
        .select(&pod, &mk_ns("x", &[], &[]), None, &[])
        .unwrap_err();
    assert!(
        err.to_string().contains("reserved (SpiderReservedIP)"),
        "{err}"
    );
}

#[test]
fn vlan_mismatch_within_an_interface_is_a_note() {
    let mut a = mk_pool("a", "10.0.0.0/24", &["10.0.0.5"]);
    a.vlan = Some(10);
    let mut b = mk_pool("b", "10.0.1.0/24", &["10.0.1.5"]);
    b.vlan = Some(20);
    let w = World::new(vec![a, b]);
    let pod = mk_pod(
        "x",
        &[("ipam.spidernet.io/ippool", r#"{"ipv4": ["a", "b"]}"#)],
    );
    let sel = w.select(&pod, &mk_ns("x", &[], &[]), None, &[]).unwrap();
    assert_eq!(
        sel.notes,
        ["interface eth0: its candidate pools are on different VLANs (a: vlan 10, b: vlan 20); the interface gets the VLAN of the pool its first address comes from (spec.vlan is deprecated, and Spiderpool no longer checks this)"]
    );
}

#[test]
fn wildcards_expand_in_name_order() {
    let w = World::new(vec![
        mk_pool("rack-b", "10.0.2.0/24", &["10.0.2.5"]),
        mk_pool("rack-a", "10.0.1.0/24", &["10.0.1.5"]),
        mk_pool("other", "10.0.3.0/24", &["10.0.3.5"]),
    ]);
    let pod = mk_pod(
        "x",
        &[("ipam.spidernet.io/ippool", r#"{"ipv4": ["rack-*"]}"#)],
    );
    let s = w.select(&pod, &mk_ns("x", &[], &[]), None, &[]).unwrap();
    assert_eq!(pools_of(&s, 0, 0), vec!["rack-a", "rack-b"]);
}

#[test]
fn subnet_annotation_is_ignored_with_a_note_when_the_feature_is_off() {
    let w = priority_world();
    let pod = mk_pod(
        "team-a",
        &[("ipam.spidernet.io/subnet", r#"{"ipv4": ["subnet-6"]}"#)],
    );
    let s = w.select(&pod, &team_a(), None, &[]).unwrap();
    assert_eq!(pools_of(&s, 0, 0), vec!["team-a-v4"]);
    assert_eq!(s.notes.len(), 1);
    assert!(s.notes[0].contains("enableSpiderSubnet"));
}

#[test]
fn subnet_annotation_plans_the_applications_auto_pool() {
    let mut w = priority_world();
    w.config.enable_spider_subnet = true;
    let mut pod = mk_pod(
        "team-a",
        &[
            ("ipam.spidernet.io/subnet", r#"{"ipv4": ["subnet-6"]}"#),
            ("ipam.spidernet.io/ippool-ip-number", "+2"),
        ],
    );
    pod.owner = Some(Owner {
        api_version: "apps/v1".to_string(),
        kind: "Deployment".to_string(),
        name: "web".to_string(),
        uid: "0b2a1f3e-1111-2222-3333-4c5d6e7f8a9b".to_string(),
        replicas: Some(3),
    });
    let s = w.select(&pod, &team_a(), None, &[]).unwrap();
    let fs = &s.interfaces[0].families[0];
    assert_eq!(
        fs.auto_pool,
        Some(AutoPoolPlan {
            subnet: "subnet-6".to_string(),
            pool: "auto4-web-eth0-4c5d6".to_string(),
            desired_ips: 5,
            reclaim: true,
        })
    );
    assert_eq!(pools_of(&s, 0, 0), vec!["auto4-web-eth0-4c5d6"]);
}

fn web_owner() -> Owner {
    Owner {
        api_version: "apps/v1".to_string(),
        kind: "Deployment".to_string(),
        name: "web".to_string(),
        uid: "0b2a1f3e-1111-2222-3333-4c5d6e7f8a9b".to_string(),
        replicas: Some(3),
    }
}

/// An auto pool exactly as Spiderpool makes it for `owner` in namespace team-a.
fn spiderpool_auto_pool(name: &str, owner: &Owner, ips: &[&str]) -> Pool {
    let app = owner_app(owner, "team-a");
    let key = auto_pool::Key {
        app: &app,
        subnet: "subnet-6",
        family: IpFamily::V4,
        interface: "eth0",
    };
    let mut p = mk_pool(name, "10.6.0.0/16", ips);
    p.labels = key.labels(true, "10.6.0.0/16");
    p.pod_affinity = Some(auto_pool::pod_affinity(&app));
    p
}

#[test]
fn an_auto_pool_spiderpool_made_is_found_by_its_labels_and_serves_its_application_only() {
    let mut pools = vec![spiderpool_auto_pool(
        "any-name-at-all",
        &web_owner(),
        &["10.6.0.10-10.6.0.14"],
    )];
    pools.push(mk_pool(
        "auto4-web-eth0-4c5d6",
        "10.6.0.0/16",
        &["10.6.1.1"],
    ));
    let mut w = World::new(pools);
    w.config.enable_spider_subnet = true;
    let mut pod = mk_pod(
        "team-a",
        &[("ipam.spidernet.io/subnet", r#"{"ipv4": ["subnet-6"]}"#)],
    );
    pod.owner = Some(web_owner());
    let s = w.select(&pod, &team_a(), None, &[]).unwrap();
    // Found by labels, not by the name aipam would give it; its podAffinity names the
    // Deployment, not labels of the Pod (which has none).
    assert_eq!(pools_of(&s, 0, 0), vec!["any-name-at-all"]);
    assert_eq!(
        s.interfaces[0].families[0].auto_pool.as_ref().unwrap().pool,
        "any-name-at-all"
    );
    // A pool of another application named by the Pod's own annotation is refused with the
    // reason.
    let mut other = web_owner();
    other.name = "api".to_string();
    let mut pod2 = mk_pod(
        "team-a",
        &[(
            "ipam.spidernet.io/ippool",
            r#"{"ipv4": ["any-name-at-all"]}"#,
        )],
    );
    pod2.owner = Some(other);
    let err = w
        .select(&pod2, &team_a(), None, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "pool any-name-at-all: it is the SpiderSubnet auto pool of another application"
        ) && err.contains("does not name the Pod's controller Deployment team-a/api"),
        "{err}"
    );
}

#[test]
fn two_pools_with_one_applications_labels_are_refused() {
    let o = web_owner();
    let mut w = World::new(vec![
        spiderpool_auto_pool("a", &o, &["10.6.0.10"]),
        spiderpool_auto_pool("b", &o, &["10.6.0.11"]),
    ]);
    w.config.enable_spider_subnet = true;
    let mut pod = mk_pod(
        "team-a",
        &[("ipam.spidernet.io/subnet", r#"{"ipv4": ["subnet-6"]}"#)],
    );
    pod.owner = Some(o);
    let err = w
        .select(&pod, &team_a(), None, &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "interface eth0: 2 SpiderIPPools carry this application's IPv4 auto pool labels (a, b); an application has one auto pool per subnet, family and interface: delete or relabel all but one"
    );
}

#[test]
fn a_third_party_controller_needs_a_fixed_pool_size() {
    let mut w = priority_world();
    w.config.enable_spider_subnet = true;
    let clone_set = Owner {
        api_version: "apps.kruise.io/v1alpha1".to_string(),
        kind: "CloneSet".to_string(),
        name: "custom-kruise-cloneset".to_string(),
        uid: "5c3a-b1e2-028d6f4e7a10".to_string(),
        replicas: None,
    };
    for anno in [None, Some("+2")] {
        let mut a = vec![("ipam.spidernet.io/subnet", r#"{"ipv4": ["subnet-6"]}"#)];
        if let Some(n) = anno {
            a.push(("ipam.spidernet.io/ippool-ip-number", n));
        }
        let mut pod = mk_pod("team-a", &a);
        pod.owner = Some(clone_set.clone());
        let err = w
            .select(&pod, &team_a(), None, &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "interface eth0: the Pod's controller CloneSet team-a/custom-kruise-cloneset is not a Deployment, ReplicaSet, StatefulSet, DaemonSet, Job or CronJob, so its replicas cannot be read: set ipam.spidernet.io/ippool-ip-number to a fixed number of addresses (like \"5\"), as Spiderpool requires for third-party controllers"
        );
    }
    let mut pod = mk_pod(
        "team-a",
        &[
            ("ipam.spidernet.io/subnet", r#"{"ipv4": ["subnet-6"]}"#),
            ("ipam.spidernet.io/ippool-ip-number", "5"),
        ],
    );
    pod.owner = Some(clone_set);
    let s = w.select(&pod, &team_a(), None, &[]).unwrap();
    let plan = s.interfaces[0].families[0].auto_pool.clone().unwrap();
    assert_eq!(
        (plan.pool.as_str(), plan.desired_ips),
        ("auto4-custom-kruise-cloneset-eth0-028d6", 5)
    );
}

#[test]
fn a_negative_flexible_default_shrinks_the_auto_pool_as_in_spiderpool() {
    let mut w = priority_world();
    w.config.enable_spider_subnet = true;
    w.config.cluster_subnet_default_flexible_ip_number = -2;
    let mut pod = mk_pod(
        "team-a",
        &[("ipam.spidernet.io/subnet", r#"{"ipv4": ["subnet-6"]}"#)],
    );
    pod.owner = Some(Owner {
        api_version: "apps/v1".to_string(),
        kind: "Deployment".to_string(),
        name: "web".to_string(),
        uid: "0b2a1f3e-1111-2222-3333-4c5d6e7f8a9b".to_string(),
        replicas: Some(3),
    });
    let s = w.select(&pod, &team_a(), None, &[]).unwrap();
    let plan = s.interfaces[0].families[0].auto_pool.clone().unwrap();
    assert_eq!(plan.desired_ips, 1);
    // Never below zero.
    w.config.cluster_subnet_default_flexible_ip_number = -10;
    let s = w.select(&pod, &team_a(), None, &[]).unwrap();
    let plan = s.interfaces[0].families[0].auto_pool.clone().unwrap();
    assert_eq!(plan.desired_ips, 0);
}

#[test]
fn subnet_annotation_is_refused_when_auto_pools_are_off() {
    let mut w = priority_world();
    w.config.enable_spider_subnet = true;
    w.config.enable_auto_pool_for_application = false;
    let pod = mk_pod(
        "team-a",
        &[(
            "ipam.spidernet.io/subnets",
            r#"[{"interface": "eth0", "ipv4": ["subnet-6"]}]"#,
        )],
    );
    let err = w.select(&pod, &team_a(), None, &[]).unwrap_err();
    assert_eq!(
        err.problems,
        vec![Problem::AutoPoolsOff {
            key: "ipam.spidernet.io/subnets"
        }]
    );
    let text = err.to_string();
    assert!(
        text.contains("enableAutoPoolForApplication: false"),
        "{text}"
    );
    // A Pod without the annotation is served as before.
    let plain = mk_pod("team-a", &[]);
    assert!(w.select(&plain, &team_a(), None, &[]).is_ok());
}

#[test]
fn master_and_worker_pools_follow_the_node_role() {
    let mut master = mk_pool(
        "master-v4-ippool",
        "172.18.0.0/16",
        &["172.18.50.41-172.18.50.50"],
    );
    master.node_affinity = Some(LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![LabelSelectorRequirement {
            key: "node-role.kubernetes.io/master".to_string(),
            operator: "Exists".to_string(),
            values: vec![],
        }],
    });
    let mut worker = mk_pool(
        "worker-v4-ippool",
        "172.18.0.0/16",
        &["172.18.50.51-172.18.50.60"],
    );
    worker.node_affinity = Some(LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![LabelSelectorRequirement {
            key: "node-role.kubernetes.io/master".to_string(),
            operator: "DoesNotExist".to_string(),
            values: vec![],
        }],
    });
    let w = World::new(vec![master, worker]);
    let pod = mk_pod(
        "x",
        &[(
            "ipam.spidernet.io/ippool",
            r#"{"interface": "eth0", "ipv4pools": ["master-v4-ippool", "worker-v4-ippool"]}"#,
        )],
    );
    let cp = mk_node("control-plane", &[("node-role.kubernetes.io/master", "")]);
    let wk = mk_node("worker", &[]);
    let ns = mk_ns("x", &[], &[]);
    assert_eq!(
        pools_of(&w.select(&pod, &ns, Some(&cp), &[]).unwrap(), 0, 0),
        vec!["master-v4-ippool"]
    );
    assert_eq!(
        pools_of(&w.select(&pod, &ns, Some(&wk), &[]).unwrap(), 0, 0),
        vec!["worker-v4-ippool"]
    );
}

// ---- properties ------------------------------------------------------------------------

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct PoolGen {
        v6: bool,
        disable: bool,
        deleting: bool,
        ns_name: Option<bool>,
        pod_aff: Option<bool>,
        node_aff: Option<bool>,
        full: bool,
        default: bool,
    }

    fn pool_gen() -> impl Strategy<Value = PoolGen> {
        (
            any::<bool>(),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.1),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.3),
        )
            .prop_map(
                |(v6, disable, deleting, ns_name, pod_aff, node_aff, full, default)| PoolGen {
                    v6,
                    disable,
                    deleting,
                    ns_name,
                    pod_aff,
                    node_aff,
                    full,
                    default,
                },
            )
    }

    fn build(gens: &[PoolGen]) -> World {
        let mut pools = Vec::new();
        for (i, g) in gens.iter().enumerate() {
            let mut p = if g.v6 {
                mk_pool(
                    &format!("p{i}"),
                    &format!("fd00:{i:x}::/64"),
                    &[&format!("fd00:{i:x}::5-fd00:{i:x}::9")],
                )
            } else {
                mk_pool(
                    &format!("p{i}"),
                    &format!("10.{i}.0.0/24"),
                    &[&format!("10.{i}.0.5-10.{i}.0.9")],
                )
            };
            p.disable = g.disable;
            p.deleting = g.deleting;
            p.default = g.default;
            if let Some(m) = g.ns_name {
                p.namespace_name = vec![if m { "x" } else { "y" }.to_string()];
            }
            if let Some(m) = g.pod_aff {
                p.pod_affinity = Some(LabelSelector {
                    match_labels: labels(&[("app", if m { "web" } else { "db" })]),
                    match_expressions: Vec::new(),
                });
            }
            if let Some(m) = g.node_aff {
                p.node_affinity = Some(node_in("zone", &[if m { "a" } else { "b" }]));
            }
            pools.push(p);
        }
        let mut w = World::new(pools);
        for (i, g) in gens.iter().enumerate() {
            if g.full {
                let name = format!("p{i}");
                let all = w.pools[&name].allocatable(&IpSet::new());
                w.used.insert(name, all);
            }
        }
        w.config.enable_ipv6 = true;
        w
    }

    proptest! {
        #[test]
        fn candidates_pass_every_filter_and_every_named_pool_is_accounted_for(
            gens in prop::collection::vec(pool_gen(), 1..10),
            order in prop::collection::vec(0usize..10, 1..12),
            node_known in any::<bool>(),
        ) {
            let w = build(&gens);
            let names: Vec<String> = order.iter().map(|i| format!("p{}", i % gens.len())).collect();
            let mut uniq: Vec<String> = Vec::new();
            for n in &names { if !uniq.contains(n) { uniq.push(n.clone()); } }
            let anno = format!(r#"{{"ipv4": {0}, "ipv6": {0}}}"#, serde_json::to_string(&uniq).unwrap());
            let mut pod = mk_pod("x", &[("ipam.spidernet.io/ippool", &anno)]);
            pod.labels = labels(&[("app", "web")]);
            let ns = mk_ns("x", &[], &[]);
            let node = mk_node("n", &[("zone", "a")]);
            let node = if node_known { Some(&node) } else { None };
            let first = w.select(&pod, &ns, node, &[]);
            // Deterministic.
            prop_assert_eq!(&first, &w.select(&pod, &ns, node, &[]));
            let (families, problems): (Vec<FamilySelection>, Vec<Problem>) = match first {
                Ok(s) => (s.interfaces[0].families.clone(), Vec::new()),
                Err(r) => (Vec::new(), r.problems),
            };
            for fs in &families {
                // Every named pool is a candidate or excluded, exactly once.
                let mut seen: Vec<String> = fs.candidates.iter().map(|c| c.pool.clone()).collect();
                seen.extend(fs.excluded.iter().map(|e| e.pool.clone()));
                let mut a = seen.clone(); a.sort();
                let mut b = uniq.clone(); b.sort();
                prop_assert_eq!(a, b);
                // Candidates pass every filter.
                for c in &fs.candidates {
                    let p = &w.pools[&c.pool];
                    prop_assert!(!p.disable && !p.deleting);
                    prop_assert_eq!(p.family, fs.family);
                    prop_assert!(p.namespace_name.is_empty() || p.namespace_name == vec!["x".to_string()]);
                    if let Some(sel) = &p.pod_affinity { prop_assert!(sel.matches(&pod.labels).unwrap()); }
                    if node_known {
                        if let Some(sel) = &p.node_affinity { prop_assert!(sel.matches(&labels(&[("zone", "a")])).unwrap()); }
                        prop_assert!(!c.zone);
                    } else {
                        prop_assert_eq!(c.zone, p.node_affinity.is_some());
                    }
                    prop_assert!(!w.used.contains_key(&c.pool));
                }
                // Sorted by priority, stable in the written order.
                let keys: Vec<([bool; 6], usize)> = fs.candidates.iter()
                    .map(|c| (w.pools[&c.pool].priority_key(), uniq.iter().position(|n| *n == c.pool).unwrap()))
                    .collect();
                let mut sorted = keys.clone(); sorted.sort();
                prop_assert_eq!(keys, sorted);
            }
            for p in &problems {
                let ok = matches!(p, Problem::NoCandidate { .. } | Problem::FamilyMissing { .. });
                prop_assert!(ok, "unexpected problem {}", p);
            }
        }
    }
}

#[test]
fn a_broken_namespace_default_refuses_only_pods_that_would_use_it() {
    let w = World::new(vec![mk_pool("a", "10.0.0.0/24", &["10.0.0.5"])]);
    let ns = mk_ns(
        "x",
        &[],
        &[("ipam.spidernet.io/default-ipv4-ippool", "[\"a\",")],
    );
    // A Pod naming its pools: Spiderpool never reads the Namespace's defaults for it.
    let named = mk_pod("x", &[("ipam.spidernet.io/ippool", r#"{"ipv4": ["a"]}"#)]);
    let sel = w.select(&named, &ns, None, &[]).unwrap();
    assert_eq!(sel.interfaces[0].families[0].candidates[0].pool, "a");
    assert!(
        sel.notes[0].starts_with(
            "namespace x: annotation ipam.spidernet.io/default-ipv4-ippool: invalid JSON"
        ),
        "{:?}",
        sel.notes
    );
    // A Pod that would fall to the Namespace's defaults is refused with the annotation's error.
    let plain = mk_pod("x", &[]);
    let err = w.select(&plain, &ns, None, &[]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("annotation ipam.spidernet.io/default-ipv4-ippool:"),
        "{err}"
    );
}
