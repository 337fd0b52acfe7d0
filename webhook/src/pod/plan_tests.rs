//! The admission plan and its patch, tested as pure functions: a cache loaded from manifests, a
//! Pod built here, no side effects at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aipam_core::model::{InterfaceRequest, Owner};
use aipam_core::reservation::{Reservation, ReservedAddress, ReservedInterface};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::patch;
use super::plan::{self, Facts, Screened};
use crate::cache::{Cache, Object};
use crate::effects::MemoryEffects;
use crate::testkit::{load, synced_cache};

const WORLD: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {zone: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: off, labels: {aipam.io/ipam: disabled}}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: plain}
spec: {subnet: 10.1.0.0/24, ips: [10.1.0.10-10.1.0.11], default: true}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: zone-a}
spec:
  subnet: 10.2.0.0/24
  ips: [10.2.0.10-10.2.0.19]
  nodeAffinity: {matchLabels: {zone: a}}
"#;

fn cache() -> Cache {
    let cache = synced_cache();
    load(WORLD, &cache, &MemoryEffects::default()).unwrap();
    cache
}

fn pod(v: Value) -> Pod {
    serde_json::from_value(v).unwrap()
}

fn plain_pod(annotations: Value) -> Pod {
    pod(
        json!({"metadata": {"name": "p", "namespace": "default", "annotations": annotations},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    )
}

fn screened(cache: &Cache, p: &Pod) -> Screened {
    plan::screen(Some("default"), p, cache)
        .unwrap()
        .expect("served")
}

fn eth0() -> Vec<InterfaceRequest> {
    vec![InterfaceRequest {
        name: "eth0".to_string(),
        ..InterfaceRequest::default()
    }]
}

#[test]
fn host_network_skip_and_opted_out_namespaces_are_not_served() {
    let c = cache();
    let host =
        pod(json!({"metadata": {"name": "h"}, "spec": {"hostNetwork": true, "containers": []}}));
    assert!(plan::screen(Some("default"), &host, &c).unwrap().is_none());
    let skip = plain_pod(json!({ aipam_core::reservation::ANNO_SKIP: "true" }));
    assert!(plan::screen(Some("default"), &skip, &c).unwrap().is_none());
    let p = plain_pod(json!({}));
    assert!(plan::screen(Some("off"), &p, &c).unwrap().is_none());
}

#[test]
fn a_node_nobody_knows_is_refused_before_anything_is_read() {
    let c = cache();
    let p =
        pod(json!({"metadata": {"name": "p"}, "spec": {"nodeName": "ghost", "containers": []}}));
    let r = plan::screen(Some("default"), &p, &c).unwrap_err();
    assert_eq!(r.code, 403);
    assert!(
        r.message.starts_with("node ghost (the Pod's spec.nodeName"),
        "{}",
        r.message
    );
    let known =
        pod(json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": []}}));
    assert_eq!(screened(&c, &known).node.unwrap().name, "n1");
}

#[test]
fn the_plan_names_the_default_pool_and_a_kept_name_still_held_is_refused() {
    let c = cache();
    let p = plain_pod(json!({}));
    let s = screened(&c, &p);
    let facts = Facts {
        interfaces: eth0(),
        ..Facts::default()
    };
    let snap = c.snapshot();
    let got = plan::plan(&s, &facts, &p, &snap, &c).unwrap();
    let fam = &got.interfaces[0].families[0];
    assert_eq!(fam.candidates[0].pool, "plain");

    // Claims kept for the name while a Pod of that name lives.
    let claim: aipam_crds::SpiderIPClaim = serde_json::from_value(json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPClaim",
        "metadata": {"name": "plain.10.1.0.10"},
        "spec": {"pool": "plain", "address": "10.1.0.10", "ipVersion": 4, "namespace": "default",
                 "podName": "p", "interface": "eth0", "reservation": "old",
                 "owner": {"kind": "StatefulSet", "name": "web", "uid": "u"}}
    }))
    .unwrap();
    c.apply(Object::Claim(claim));
    let owner = Owner {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: "web".into(),
        uid: "u".into(),
        replicas: Some(1),
    };
    let kept = c.claims_where(|e| plan::kept_for(e, "default", "p", &owner));
    assert_eq!(kept.len(), 1);
    let held = Facts {
        interfaces: eth0(),
        owner: Some(owner.clone()),
        kept: kept.clone(),
        name_taken: true,
    };
    let r = plan::plan(&s, &held, &p, &snap, &c).unwrap_err();
    assert!(
        r.message
            .contains("already exists and holds the addresses kept"),
        "{}",
        r.message
    );

    // Once the name is free, the kept claim is taken over for its interface and family.
    let free = Facts {
        name_taken: false,
        ..held
    };
    let got = plan::plan(&s, &free, &p, &snap, &c).unwrap();
    let fam = &got.interfaces[0].families[0];
    let t = plan::take_over(&s.config, &kept, "eth0", fam).unwrap();
    assert_eq!(
        (t.claim.as_str(), t.previous.as_str()),
        ("plain.10.1.0.10", "old")
    );
    assert_eq!(t.address.address.to_string(), "10.1.0.10");
    assert!(
        plan::take_over(&s.config, &kept, "net1", fam).is_none(),
        "another interface"
    );
}

fn record() -> Reservation {
    Reservation {
        id: "r1".into(),
        interfaces: vec![ReservedInterface {
            interface: "eth0".into(),
            ipv4: vec![ReservedAddress {
                pool: "zone-a".into(),
                address: "10.2.0.12".parse().unwrap(),
            }],
            ..ReservedInterface::default()
        }],
    }
}

#[test]
fn the_patch_adds_or_replaces_the_record_and_pins_zone_reservations() {
    let c = cache();
    let snap = c.snapshot();
    let raw = json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
    let p = pod(raw.clone());
    let ops =
        serde_json::to_value(patch::record(&p, &raw, &record(), &snap, false, false).unwrap())
            .unwrap();
    assert_eq!(ops[0]["op"], "add");
    assert_eq!(ops[0]["path"], "/metadata/annotations");
    assert_eq!(
        ops[1]["path"], "/spec/affinity",
        "zone pool, node unknown: {ops}"
    );
    let known =
        serde_json::to_value(patch::record(&p, &raw, &record(), &snap, true, false).unwrap())
            .unwrap();
    assert_eq!(
        known.as_array().unwrap().len(),
        1,
        "node known: no affinity"
    );
    let again =
        serde_json::to_value(patch::record(&p, &raw, &record(), &snap, true, true).unwrap())
            .unwrap();
    assert_eq!(again[0]["op"], "replace");
    assert_eq!(
        again[0]["path"],
        "/metadata/annotations/aipam.io~1reservation"
    );
    let removed = serde_json::to_value(patch::unserved(true).unwrap()).unwrap();
    assert_eq!(removed[0]["op"], "remove");
    assert!(patch::unserved(false).is_none());
}
