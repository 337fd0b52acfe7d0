#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Node readiness and stuck Pods.

use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};

use aipam_core::config::IpamConfig;

use crate::testkit::{mk_pod, rules, t, world};

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
fn a_pod_is_stuck_past_its_grace_as_the_gc_switches_allow() {
    let pod = mk_pod("ns", "web-1", "u1").node("n1").deleting(t(100), 30);
    let mut w = world(&[&pod]);
    let v = pod.view();
    let on = rules();
    w.nodes_ready.insert("n1".to_string(), false);
    assert!(!stuck_terminating(&v, &w, t(129), &on));
    assert!(stuck_terminating(&v, &w, t(130), &on));
    // Spiderpool's defaults release on a Ready node too.
    w.nodes_ready.insert("n1".to_string(), true);
    assert!(stuck_terminating(&v, &w, t(130), &on));
    let ready_off = Rules {
        gc_terminating_on_ready_node: false,
        ..on
    };
    assert!(!stuck_terminating(&v, &w, t(500), &ready_off));
    // Not Ready, and gone (absent from the map), follow the other switch.
    let not_ready_off = Rules {
        gc_terminating_on_not_ready_node: false,
        ..on
    };
    assert!(stuck_terminating(&v, &w, t(500), &not_ready_off));
    w.nodes_ready.insert("n1".to_string(), false);
    assert!(!stuck_terminating(&v, &w, t(500), &not_ready_off));
    assert!(stuck_terminating(&v, &w, t(500), &ready_off));
    w.nodes_ready.clear();
    assert!(!stuck_terminating(&v, &w, t(500), &not_ready_off));
    assert!(stuck_terminating(&v, &w, t(500), &on));
    // The additional grace delay comes on top of the Pod's.
    let delayed = Rules {
        gc_additional_grace: SignedDuration::from_secs(5),
        ..on
    };
    assert!(!stuck_terminating(&v, &w, t(134), &delayed));
    assert!(stuck_terminating(&v, &w, t(135), &delayed));
    // Not being deleted: never stuck.
    let live = mk_pod("ns", "web-2", "u2").node("n9").view();
    assert!(!stuck_terminating(&live, &w, t(500), &on));
}

#[test]
fn the_deletion_grace_period_wins_over_the_spec_one() {
    // kube-apiserver sets metadata.deletionGracePeriodSeconds with the deletionTimestamp
    // (kubectl delete --grace-period=N); Spiderpool counts from it.
    let mut pod = mk_pod("ns", "web-1", "u1").node("n1").deleting(t(100), 30);
    pod.0.metadata.deletion_grace_period_seconds = Some(5);
    let w = world(&[&pod]);
    let v = pod.view();
    assert_eq!(v.deletion_grace_seconds, Some(5));
    assert!(!stuck_terminating(&v, &w, t(104), &rules()));
    assert!(stuck_terminating(&v, &w, t(105), &rules()));
}

#[test]
fn the_rules_come_from_spiderpool_conf() {
    let mut c = IpamConfig::default();
    assert_eq!(Rules::from_config(&c), Rules::default());
    c.enable_gc_stateless_terminating_pod_on_ready_node = false;
    c.enable_gc_stateless_terminating_pod_on_not_ready_node = false;
    c.gc_additional_grace_delay = 7;
    c.reservation_grace_seconds = 60;
    let r = Rules::from_config(&c);
    assert!(!r.gc_terminating_on_ready_node && !r.gc_terminating_on_not_ready_node);
    assert_eq!(r.gc_additional_grace, SignedDuration::from_secs(7));
    assert_eq!(r.grace, SignedDuration::from_secs(60));
}
