#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Reading Pods, StatefulSets and nodes into the world.

use crate::testkit::{mk_pod, record};

use super::*;

#[test]
fn pod_views_read_the_pod() {
    let r = record("r-1", &[("p6", "10.6.0.5")]);
    let v = mk_pod("ns", "web-1", "u1")
        .reservation(&r)
        .node("n1")
        .phase("Running")
        .owned_by("ReplicaSet", "web-5d8")
        .view();
    assert_eq!(v.reservation, Some(r));
    assert_eq!(v.node.as_deref(), Some("n1"));
    assert_eq!(
        v.controller,
        Some(("ReplicaSet".to_string(), "web-5d8".to_string()))
    );
    assert_eq!(v.grace_seconds, 30);
    assert!(!v.is_terminal());
}

#[test]
fn stateful_sets_and_nodes_are_noted_by_name() {
    let set = |name: &str, replicas: Option<i32>, deleting: bool| StatefulSet {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            namespace: Some("ns".to_string()),
            name: Some(name.to_string()),
            deletion_timestamp: deleting.then(|| {
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(crate::testkit::t(0))
            }),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::apps::v1::StatefulSetSpec {
            replicas,
            ..Default::default()
        }),
        status: None,
    };
    let mut w = World::default();
    w.note_stateful_sets(&[set("db", Some(3), false), set("old", None, true)]);
    assert_eq!(
        w.stateful_sets[&("ns".to_string(), "db".to_string())],
        SetState {
            replicas: 3,
            deleting: false
        }
    );
    // `spec.replicas` unset means 1.
    assert_eq!(
        w.stateful_sets[&("ns".to_string(), "old".to_string())],
        SetState {
            replicas: 1,
            deleting: true
        }
    );
    let node = |name: &str, ready: &str| Node {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: None,
        status: Some(k8s_openapi::api::core::v1::NodeStatus {
            conditions: Some(vec![k8s_openapi::api::core::v1::NodeCondition {
                type_: "Ready".to_string(),
                status: ready.to_string(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    };
    w.note_nodes(&[node("n1", "True"), node("n2", "Unknown")]);
    assert_eq!(w.nodes_ready.get("n1"), Some(&true));
    assert_eq!(w.nodes_ready.get("n2"), Some(&false));
    assert_eq!(w.nodes_ready.get("n3"), None);
}
