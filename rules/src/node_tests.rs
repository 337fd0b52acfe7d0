#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Node readiness and stuck Pods.

use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};

use crate::testkit::{mk_pod, t, world};

use super::*;

fn node(conditions: &[(&str, &str)]) -> Node {
    Node {
        status: Some(NodeStatus {
            conditions: Some(
                conditions
                    .iter()
                    .map(|(ty, st)| NodeCondition {
                        type_: ty.to_string(),
                        status: st.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_node_is_ready_only_when_it_says_ready_true() {
    assert!(node_ready(&node(&[
        ("MemoryPressure", "False"),
        ("Ready", "True")
    ])));
    assert!(!node_ready(&node(&[("Ready", "False")])));
    assert!(!node_ready(&node(&[("Ready", "Unknown")])));
    assert!(!node_ready(&node(&[])));
    assert!(!node_ready(&Node::default()));
}

#[test]
fn a_pod_is_stuck_past_its_grace_on_a_node_not_ready() {
    let pod = mk_pod("ns", "web-1", "u1").node("n1").deleting(t(100), 30);
    let mut w = world(&[&pod]);
    let v = pod.view();
    w.nodes_ready.insert("n1".to_string(), false);
    assert!(!stuck_terminating(&v, &w, t(129)));
    assert!(stuck_terminating(&v, &w, t(130)));
    w.nodes_ready.insert("n1".to_string(), true);
    assert!(!stuck_terminating(&v, &w, t(500)));
    // Not being deleted: never stuck.
    let live = mk_pod("ns", "web-2", "u2").node("n9").view();
    assert!(!stuck_terminating(&live, &w, t(500)));
}
