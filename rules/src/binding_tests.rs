#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Binding plans, on zone pools `p6` (zone z6) and `p7` (zone z7).

use std::collections::BTreeMap;

use aipam_core::labels::{LabelSelector, LabelSelectorRequirement};
use aipam_core::model::{NodeInfo, Pool};
use aipam_core::ranges::IpSet;
use aipam_core::reservation::Reservation;
use aipam_crds::SpiderIPClaim;

use crate::testkit::{mk_claim, mk_endpoint, mk_pod, ra, record, t};

use super::*;

fn zone_pool(name: &str, subnet: &str, zone: &str) -> Pool {
    let mut p = Pool::new(
        name,
        subnet.parse().unwrap(),
        IpSet::from_net(&subnet.parse().unwrap()),
    );
    p.gateway = Some(
        subnet
            .parse::<ipnet::IpNet>()
            .unwrap()
            .hosts()
            .next()
            .unwrap(),
    );
    p.node_affinity = Some(LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![LabelSelectorRequirement {
            key: "zone".to_string(),
            operator: "In".to_string(),
            values: vec![zone.to_string()],
        }],
    });
    p
}

fn pools() -> BTreeMap<String, Pool> {
    [
        zone_pool("p6", "10.6.0.0/16", "z6"),
        zone_pool("p7", "10.7.0.0/16", "z7"),
    ]
    .into_iter()
    .map(|p| (p.name.clone(), p))
    .collect()
}

fn by_name(cs: Vec<SpiderIPClaim>) -> BTreeMap<String, SpiderIPClaim> {
    cs.into_iter()
        .map(|c| (c.metadata.name.clone().unwrap(), c))
        .collect()
}

fn node(name: &str, zone: &str) -> NodeInfo {
    NodeInfo {
        name: name.to_string(),
        labels: [("zone".to_string(), zone.to_string())].into(),
    }
}

#[test]
fn binding_writes_the_endpoint_once_and_never_the_claims() {
    let r = record("r-1", &[("p6", "10.6.0.5")]);
    let pod = mk_pod("ns", "web-1", "u1")
        .reservation(&r)
        .node("n6")
        .view();
    let claims = by_name(vec![mk_claim("p6", "10.6.0.5", "ns", "r-1").0]);
    let plan = plan_binding(&pod, &claims, None, &pools(), Some(&node("n6", "z6")));
    assert!(plan.settle.is_empty() && plan.recreate.is_empty());
    let ep = plan.endpoint.clone().unwrap();
    assert_eq!(ep.uid, "u1");
    assert_eq!(ep.node, "n6");
    assert_eq!(ep.ips[0].ipv4.as_deref(), Some("10.6.0.5/16"));
    assert_eq!(ep.ips[0].ipv4_gateway.as_deref(), Some("10.6.0.1"));
    assert!(plan.release.is_empty() && plan.new_record.is_none() && plan.warnings.is_empty());
    // The same status, but not owned by the Pod yet (the webhook wrote it before the Pod was
    // stored): written once more, for the owner.
    let mut endpoint = mk_endpoint("ns", "web-1", "u1", t(0));
    endpoint.status.as_mut().unwrap().current = ep;
    let plan = plan_binding(
        &pod,
        &claims,
        Some(&endpoint),
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert!(plan.endpoint.is_some());
    // Not scheduled yet: the owner waits for the node, so both go in one write.
    let unscheduled = mk_pod("ns", "web-1", "u1").reservation(&r).view();
    let plan = plan_binding(&unscheduled, &claims, Some(&endpoint), &pools(), None);
    assert!(plan.is_empty(), "{plan:?}");
    // Once carried out, the plan is empty: binding is idempotent.
    endpoint.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "web-1".into(),
            uid: "u1".into(),
            ..Default::default()
        },
    ]);
    let plan = plan_binding(
        &pod,
        &claims,
        Some(&endpoint),
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert!(plan.is_empty(), "{plan:?}");
    // A Pod not scheduled yet whose endpoint names the node it is pinned to (a DaemonSet Pod,
    // as the webhook writes it): the node is not blanked, nothing to write.
    let pinned = mk_pod("ns", "web-1", "u1").reservation(&r).view();
    let plan = plan_binding(&pinned, &claims, Some(&endpoint), &pools(), None);
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn late_binding_keeps_the_zone_of_the_node_and_releases_the_other() {
    let r = record("r-1", &[("p6", "10.6.0.5"), ("p7", "10.7.0.5")]);
    let claims = by_name(vec![
        mk_claim("p6", "10.6.0.5", "ns", "r-1")
            .pod("web-1")
            .provisional()
            .0,
        mk_claim("p7", "10.7.0.5", "ns", "r-1")
            .pod("web-1")
            .provisional()
            .0,
    ]);
    // Not scheduled yet: endpoint without addresses, nothing released.
    let pending = mk_pod("ns", "web-1", "u1").reservation(&r).view();
    let plan = plan_binding(&pending, &claims, None, &pools(), None);
    assert!(plan.release.is_empty() && plan.new_record.is_none());
    assert!(plan.endpoint.as_ref().unwrap().ips.is_empty());
    assert!(plan.settle.is_empty());
    // Scheduled on a z7 node.
    let bound = mk_pod("ns", "web-1", "u1")
        .reservation(&r)
        .node("n7")
        .view();
    let plan = plan_binding(&bound, &claims, None, &pools(), Some(&node("n7", "z7")));
    assert!(plan.late_bound);
    assert_eq!(plan.release, vec!["p6.10.6.0.5".to_string()]);
    assert_eq!(plan.new_record, Some(record("r-1", &[("p7", "10.7.0.5")])));
    assert_eq!(plan.settle, vec!["p7.10.7.0.5".to_string()]);
    let ep = plan.endpoint.unwrap();
    assert_eq!(
        (ep.node.as_str(), ep.ips[0].ipv4.as_deref()),
        ("n7", Some("10.7.0.5/16"))
    );
    // A node no reserved zone serves: a warning, the endpoint stays empty, nothing released.
    let plan = plan_binding(
        &bound,
        &claims,
        None,
        &pools(),
        Some(&node("n7", "elsewhere")),
    );
    assert_eq!(plan.warnings[0].reason, "NoZoneServesNode");
    assert!(plan.release.is_empty() && plan.new_record.is_none());
    assert!(plan.endpoint.unwrap().ips.is_empty());
}

#[test]
fn binding_recreates_missing_claims_and_reports_taken_ones() {
    let r = record("r-1", &[("p6", "10.6.0.5")]);
    let pod = mk_pod("ns", "web-1", "u1")
        .reservation(&r)
        .node("n6")
        .view();
    // A claim the endpoint already gives this Pod went missing: recreated.
    let mut ep = mk_endpoint("ns", "web-1", "u1", t(0));
    ep.status.as_mut().unwrap().current.ips = vec![aipam_crds::endpoint::IPAllocationDetail {
        nic: "eth0".to_string(),
        ipv4: Some("10.6.0.5/24".to_string()),
        ..Default::default()
    }];
    let plan = plan_binding(
        &pod,
        &BTreeMap::new(),
        Some(&ep),
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert_eq!(
        plan.recreate,
        vec![("p6.10.6.0.5".to_string(), ra("p6", "10.6.0.5"))]
    );
    let other = by_name(vec![mk_claim("p6", "10.6.0.5", "ns", "r-other").0]);
    let plan = plan_binding(&pod, &other, None, &pools(), Some(&node("n6", "z6")));
    assert_eq!(plan.warnings[0].reason, "AddressTaken");
    assert!(plan.settle.is_empty() && plan.recreate.is_empty());
}

/// Found by e2e/tests/chaos.rs: two admissions of the same StatefulSet Pod name raced; the one
/// whose Pod lost the name race had taken the kept address over last, so the stored Pod's record
/// named a claim carrying a dead admission's id.
#[test]
fn a_stateful_set_pod_takes_back_its_address_stranded_under_a_dead_admission() {
    let r = record("r-stored", &[("p6", "10.6.0.5")]);
    let pod = mk_pod("ns", "db-1", "u1")
        .reservation(&r)
        .node("n6")
        .owned_by("StatefulSet", "db")
        .view();
    let stranded = mk_claim("p6", "10.6.0.5", "ns", "r-lost")
        .pod("db-1")
        .owner("StatefulSet", "db")
        .0;
    let plan = plan_binding(
        &pod,
        &by_name(vec![stranded.clone()]),
        None,
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert_eq!(
        plan.take_back,
        vec![("p6.10.6.0.5".to_string(), "r-lost".to_string())]
    );
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    assert_eq!(
        plan.endpoint.unwrap().ips[0].ipv4.as_deref(),
        Some("10.6.0.5/16")
    );
    // Not for a Pod of another name, nor of another controller: that address is taken.
    for other in [
        mk_pod("ns", "db-2", "u2")
            .reservation(&r)
            .owned_by("StatefulSet", "db"),
        mk_pod("ns", "db-1", "u2")
            .reservation(&r)
            .owned_by("StatefulSet", "other"),
        mk_pod("ns", "db-1", "u2").reservation(&r),
    ] {
        let plan = plan_binding(
            &other.view(),
            &by_name(vec![stranded.clone()]),
            None,
            &pools(),
            Some(&node("n6", "z6")),
        );
        assert!(plan.take_back.is_empty());
        assert_eq!(plan.warnings[0].reason, "AddressTaken");
    }
}

#[test]
fn a_rewritten_annotation_never_conjures_or_steals_an_address() {
    // Should a Pod's annotation be rewritten despite the guard (a namespace the webhooks skip):
    // to an address nobody holds...
    let r = record("r-1", &[("p6", "10.6.0.5")]);
    let pod = mk_pod("ns", "web-1", "u1")
        .reservation(&r)
        .node("n6")
        .view();
    let plan = plan_binding(
        &pod,
        &BTreeMap::new(),
        None,
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert!(
        plan.recreate.is_empty(),
        "no claim is made on the annotation's word"
    );
    assert_eq!(plan.warnings[0].reason, "ClaimMissing");
    assert!(
        plan.endpoint.unwrap().ips.is_empty(),
        "nothing recorded for the CNI"
    );
    // ...to another Pod's address (held under that Pod's reservation id)...
    let victim = mk_claim("p6", "10.6.0.5", "ns", "r-victim").pod("web-2").0;
    let plan = plan_binding(
        &pod,
        &by_name(vec![victim.clone()]),
        None,
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert_eq!(plan.warnings[0].reason, "AddressTaken");
    assert!(plan.settle.is_empty());
    assert!(plan.endpoint.unwrap().ips.is_empty());
    // ...or to another namespace's claim.
    let elsewhere = mk_claim("p6", "10.6.0.5", "other-ns", "r-1").0;
    let plan = plan_binding(
        &pod,
        &by_name(vec![elsewhere]),
        None,
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert_eq!(plan.warnings[0].reason, "AddressTaken");
    // A zone record naming the victim's address as an alternative never releases it.
    let zones = Reservation {
        id: "r-1".to_string(),
        interfaces: vec![aipam_core::reservation::ReservedInterface {
            interface: "eth0".to_string(),
            clean_gateway: None,
            ipv4: vec![ra("p6", "10.6.0.5"), ra("p7", "10.7.0.5")],
            ipv6: vec![],
        }],
    };
    let attacker = mk_pod("ns", "web-1", "u1")
        .reservation(&zones)
        .node("n7")
        .view();
    let plan = plan_binding(
        &attacker,
        &by_name(vec![victim]),
        None,
        &pools(),
        Some(&node("n7", "z7")),
    );
    assert!(plan.release.is_empty(), "{:?}", plan.release);
}
