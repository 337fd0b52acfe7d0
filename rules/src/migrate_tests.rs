#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The migration plan over objects written as Spiderpool 1.x writes them.

use std::collections::BTreeMap;

use aipam_crds::{ClaimOwner, SpiderEndpoint, SpiderIPClaim, SpiderIPPool};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::*;

fn pool(name: &str, version: u8, subnet: &str, allocated: Value) -> SpiderIPPool {
    serde_json::from_value(json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
        "metadata": {"name": name, "finalizers": ["spiderpool.spidernet.io"]},
        "spec": {"ipVersion": version, "subnet": subnet, "ips": []},
        "status": {"allocatedIPs": allocated.to_string(), "allocatedIPCount": allocated.as_object().map(|m| m.len()).unwrap_or(0)}
    }))
    .unwrap()
}

/// `ips`: (interface, ipv4 with prefix, ipv4Pool, ipv6, ipv6Pool).
fn endpoint(ns: &str, name: &str, uid: &str, ips: Value) -> SpiderEndpoint {
    serde_json::from_value(json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderEndpoint",
        "metadata": {"namespace": ns, "name": name, "finalizers": ["spiderpool.spidernet.io"]},
        "status": {"current": {"uid": uid, "node": "node-1", "ips": ips},
                   "ownerControllerType": "Pod", "ownerControllerName": name}
    }))
    .unwrap()
}

fn pod(ns: &str, name: &str, uid: &str, phase: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "uid": uid,
                     "annotations": {"ipam.spidernet.io/ippool": "{\"ipv4\":[\"p4\"]}"}},
        "spec": {"nodeName": "node-1", "containers": []},
        "status": {"phase": phase}
    }))
    .unwrap()
}

struct World {
    pools: Vec<SpiderIPPool>,
    endpoints: Vec<SpiderEndpoint>,
    pods: Vec<Pod>,
    claims: Vec<SpiderIPClaim>,
    owners: BTreeMap<(String, String), ClaimOwner>,
}

impl World {
    fn plan(&self) -> Result<Migration, Inconsistent> {
        plan_migration(SpiderState {
            pools: &self.pools,
            endpoints: &self.endpoints,
            pods: &self.pods,
            claims: &self.claims,
            owners: &self.owners,
        })
    }
}

/// web-0 (IPv4), web-1 (dual-stack) running; gone-0 deleted but still listed.
fn running() -> World {
    World {
        pools: vec![
            pool(
                "p4",
                4,
                "10.6.0.0/16",
                json!({
                    "10.6.0.10": {"pod": "team-a/web-0", "podUid": "u-web-0"},
                    "10.6.0.11": {"pod": "team-a/web-1", "podUid": "u-web-1"},
                    "10.6.0.12": {"pod": "team-a/gone-0", "podUid": "u-gone"}
                }),
            ),
            pool(
                "p6",
                6,
                "fd00:6::/64",
                json!({"fd00:6::11": {"pod": "team-a/web-1", "podUid": "u-web-1"}}),
            ),
        ],
        endpoints: vec![
            endpoint(
                "team-a",
                "web-0",
                "u-web-0",
                json!([{"interface": "eth0", "ipv4": "10.6.0.10/16", "ipv4Pool": "p4", "vlan": 0}]),
            ),
            endpoint(
                "team-a",
                "web-1",
                "u-web-1",
                json!([{"interface": "eth0", "ipv4": "10.6.0.11/16", "ipv4Pool": "p4",
                        "ipv6": "fd00:6::11/64", "ipv6Pool": "p6", "vlan": 0}]),
            ),
        ],
        pods: vec![
            pod("team-a", "web-0", "u-web-0", "Running"),
            pod("team-a", "web-1", "u-web-1", "Running"),
        ],
        claims: vec![],
        owners: BTreeMap::new(),
    }
}

#[test]
fn running_pods_get_claims_and_a_record_of_their_addresses() {
    let m = running().plan().unwrap();
    assert_eq!(m.pods.len(), 2);
    let web1 = &m.pods[1];
    assert_eq!(
        (web1.namespace.as_str(), web1.name.as_str()),
        ("team-a", "web-1")
    );
    assert_eq!(web1.reservation.id, migration_reservation_id("u-web-1"));
    assert_eq!(web1.reservation.interfaces.len(), 1);
    let eth0 = &web1.reservation.interfaces[0];
    assert_eq!(eth0.interface, "eth0");
    assert_eq!(eth0.ipv4[0].address.to_string(), "10.6.0.11");
    assert_eq!(eth0.ipv6[0].address.to_string(), "fd00:6::11");
    let names: Vec<&str> = web1
        .claims
        .iter()
        .map(|c| c.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(
        names,
        ["p4.10.6.0.11", "p6.fd00-0006-0000-0000-0000-0000-0000-0011"]
    );
    for c in &web1.claims {
        assert_eq!(c.spec.reservation, web1.reservation.id);
        assert_eq!(c.spec.pod_name.as_deref(), Some("web-1"));
        assert_eq!(c.spec.interface, "eth0");
    }
    assert_eq!(m.claims_to_create(), 3);
    assert_eq!(m.pools_to_clear, ["p4", "p6"]);
    assert_eq!(m.endpoint_finalizers.len(), 2);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn entries_of_pods_that_are_gone_finished_or_replaced_are_freed() {
    let mut w = running();
    w.pods.push(pod("team-a", "job-0", "u-job", "Succeeded"));
    w.pods.push(pod("team-a", "old-0", "u-new", "Running"));
    w.pools[0] = pool(
        "p4",
        4,
        "10.6.0.0/16",
        json!({
            "10.6.0.10": {"pod": "team-a/web-0", "podUid": "u-web-0"},
            "10.6.0.12": {"pod": "team-a/gone-0", "podUid": "u-gone"},
            "10.6.0.13": {"pod": "team-a/job-0", "podUid": "u-job"},
            "10.6.0.14": {"pod": "team-a/old-0", "podUid": "u-old"}
        }),
    );
    w.endpoints.truncate(1);
    w.pools.truncate(1);
    let m = w.plan().unwrap();
    assert_eq!(m.pods.len(), 1);
    let freed: Vec<(String, &str)> = m
        .freed
        .iter()
        .map(|f| (f.address.to_string(), f.why.as_str()))
        .collect();
    assert_eq!(
        freed,
        [
            ("10.6.0.12".to_string(), "the Pod is gone"),
            ("10.6.0.13".to_string(), "the Pod has finished"),
            (
                "10.6.0.14".to_string(),
                "the Pod of that name now has uid u-new"
            ),
        ]
    );
}

#[test]
fn an_address_listed_for_two_running_pods_refuses_the_whole_migration() {
    let mut w = running();
    // Two overlapping pools, each listing 10.6.0.10 for another Pod.
    w.pools.push(pool(
        "p4-b",
        4,
        "10.6.0.0/16",
        json!({"10.6.0.10": {"pod": "team-b/api-0", "podUid": "u-api"}}),
    ));
    w.pods.push(pod("team-b", "api-0", "u-api", "Running"));
    w.endpoints.push(endpoint(
        "team-b",
        "api-0",
        "u-api",
        json!([{"interface": "eth0", "ipv4": "10.6.0.10/16", "ipv4Pool": "p4-b"}]),
    ));
    let e = w.plan().unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
    let text = e.to_string();
    assert!(text.contains("nothing was written"), "{text}");
    assert!(text.contains("address 10.6.0.10 is listed twice"), "{text}");
    assert!(
        text.contains("team-a/web-0") && text.contains("team-b/api-0"),
        "{text}"
    );
}

#[test]
fn a_running_pod_without_its_endpoint_is_refused_with_what_to_do() {
    let mut w = running();
    w.endpoints.remove(0);
    let e = w.plan().unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("Pod team-a/web-0 (uid u-web-0) in pool p4 (status.allocatedIPs) has no SpiderEndpoint team-a/web-0 of its uid"),
        "{text}"
    );
    assert!(text.contains("Delete the Pod"), "{text}");
}

#[test]
fn malformed_status_is_refused_naming_the_pool() {
    let mut w = running();
    w.pools[1].status.as_mut().unwrap().allocated_ips = Some("{not json".to_string());
    let e = w.plan().unwrap_err();
    assert!(
        e.problems[0].starts_with("pool p6: status.allocatedIPs is not Spiderpool's map"),
        "{e}"
    );
}

#[test]
fn a_second_run_writes_nothing_new() {
    let w = running();
    let first = w.plan().unwrap();
    // The first run was cut short after creating web-0's claim.
    let mut w2 = running();
    w2.claims = first.pods[0].claims.clone();
    let m = w2.plan().unwrap();
    assert_eq!(m.pods[0].claims.len(), 0);
    assert_eq!(m.pods[0].claims_present, 1);
    assert_eq!(m.pods[0].reservation, first.pods[0].reservation);
    // Once a Pod carries its record it is left alone.
    let mut w3 = running();
    let record = first.pods[0].reservation.to_annotation();
    w3.pods[0]
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(ANNO_RESERVATION.to_string(), record);
    let m = w3.plan().unwrap();
    assert_eq!(m.already, ["team-a/web-0"]);
    assert_eq!(m.pods.len(), 1);
}

#[test]
fn an_address_aipam_already_gave_to_another_pod_is_refused() {
    let mut w = running();
    let mut other = running().plan().unwrap().pods[0].claims[0].clone();
    other.spec.reservation = "r-00000000000000aa".to_string();
    other.spec.pod_name = Some("new-7".to_string());
    w.claims.push(other);
    let e = w.plan().unwrap_err();
    assert!(
        e.problems[0].contains("already claimed by SpiderIPClaim p4.10.6.0.10 (reservation r-00000000000000aa, Pod team-a/new-7)"),
        "{e}"
    );
}

#[test]
fn interfaces_follow_the_endpoint_and_the_owner_is_kept() {
    let mut w = running();
    w.pools[0] = pool(
        "p4",
        4,
        "10.6.0.0/16",
        json!({"10.6.0.20": {"pod": "team-a/db-0", "podUid": "u-db"}}),
    );
    w.pools.push(pool(
        "storage",
        4,
        "10.9.0.0/24",
        // Spiderpool before 1.0 wrote the interface into the pool too.
        json!({"10.9.0.20": {"interface": "net1", "pod": "team-a/db-0", "podUid": "u-db"}}),
    ));
    w.pools.remove(1);
    w.endpoints = vec![endpoint(
        "team-a",
        "db-0",
        "u-db",
        json!([{"interface": "eth0", "ipv4": "10.6.0.20/16", "ipv4Pool": "p4"},
               {"interface": "net1", "ipv4": "10.9.0.20/24", "ipv4Pool": "storage", "cleanGateway": true}]),
    )];
    w.pods = vec![pod("team-a", "db-0", "u-db", "Running")];
    w.owners.insert(
        ("team-a".to_string(), "db-0".to_string()),
        ClaimOwner {
            kind: "StatefulSet".to_string(),
            name: "db".to_string(),
            uid: "u-sts".to_string(),
        },
    );
    let m = w.plan().unwrap();
    let r = &m.pods[0].reservation;
    let order: Vec<&str> = r.interfaces.iter().map(|i| i.interface.as_str()).collect();
    assert_eq!(order, ["eth0", "net1"]);
    assert_eq!(r.interfaces[1].clean_gateway, Some(true));
    for c in &m.pods[0].claims {
        assert_eq!(c.spec.owner.as_ref().unwrap().kind, "StatefulSet");
    }
}
