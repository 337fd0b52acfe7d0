#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Endpoint verdicts.

use crate::testkit::{mk_endpoint, mk_pod, rules, t, world};

use super::*;

#[test]
fn endpoints_live_as_long_as_a_pod_of_their_name() {
    let ep = mk_endpoint("ns", "web-1", "u1", t(0));
    let pod = mk_pod("ns", "web-1", "u1").node("n1");
    assert_eq!(
        judge_endpoint(&ep, &world(&[&pod]), t(999), &rules()),
        EndpointVerdict::Keep
    );
    // Next Pod of the same name (StatefulSet): binding rewrites it; never deleted.
    let next = mk_pod("ns", "web-1", "u2");
    assert_eq!(
        judge_endpoint(&ep, &world(&[&next]), t(999), &rules()),
        EndpointVerdict::Keep
    );
    assert_eq!(
        judge_endpoint(&ep, &world(&[]), t(10), &rules()),
        EndpointVerdict::KeepUntil(t(120))
    );
    assert_eq!(
        judge_endpoint(&ep, &world(&[]), t(120), &rules()),
        EndpointVerdict::Delete { pod_absent: true }
    );
    let mut w = world(&[]);
    w.gone_uids.insert("u1".into());
    assert_eq!(
        judge_endpoint(&ep, &w, t(1), &rules()),
        EndpointVerdict::Delete { pod_absent: true }
    );
    let done = mk_pod("ns", "web-1", "u1").phase("Succeeded");
    assert_eq!(
        judge_endpoint(&ep, &world(&[&done]), t(1), &rules()),
        EndpointVerdict::Delete { pod_absent: false }
    );
    let sts_done = mk_pod("ns", "web-1", "u1")
        .phase("Failed")
        .owned_by("StatefulSet", "web");
    assert_eq!(
        judge_endpoint(&ep, &world(&[&sts_done]), t(1), &rules()),
        EndpointVerdict::Keep
    );
}

#[test]
fn a_stuck_terminating_pods_endpoint_follows_the_gc_switches() {
    let ep = mk_endpoint("ns", "web-1", "u1", t(0));
    let pod = mk_pod("ns", "web-1", "u1").node("n1").deleting(t(100), 30);
    let mut w = world(&[&pod]);
    w.nodes_ready.insert("n1".to_string(), true);
    assert_eq!(
        judge_endpoint(&ep, &w, t(129), &rules()),
        EndpointVerdict::Keep
    );
    assert_eq!(
        judge_endpoint(&ep, &w, t(130), &rules()),
        EndpointVerdict::Delete { pod_absent: false }
    );
    let ready_off = Rules {
        gc_terminating_on_ready_node: false,
        ..rules()
    };
    assert_eq!(
        judge_endpoint(&ep, &w, t(999), &ready_off),
        EndpointVerdict::Keep
    );
}
