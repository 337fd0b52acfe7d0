//! Nodes: whether one is Ready, and whether a Pod is stuck Terminating.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::world::{PodView, Rules, World};

/// Whether a node reports Ready=True.
pub fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a stateless Pod is stuck Terminating and its addresses may be released, as
/// Spiderpool's collector judges it (`pkg/gcmanager`, `buildPodEntry`): past its
/// `deletionTimestamp` plus its deletion grace period (`metadata.deletionGracePeriodSeconds`,
/// else `spec.terminationGracePeriodSeconds`) plus [`Rules::gc_additional_grace`], on a node
/// that is Ready when [`Rules::gc_terminating_on_ready_node`] is on, or on one that is not Ready
/// (or gone) when [`Rules::gc_terminating_on_not_ready_node`] is on. The caller leaves
/// StatefulSet Pods out.
pub fn stuck_terminating(pod: &PodView, world: &World, now: Timestamp, rules: &Rules) -> bool {
    let Some(since) = pod.deleting_since else {
        return false;
    };
    let node_ready = pod
        .node
        .as_ref()
        .and_then(|n| world.nodes_ready.get(n))
        .copied()
        .unwrap_or(false);
    let enabled = if node_ready {
        rules.gc_terminating_on_ready_node
    } else {
        rules.gc_terminating_on_not_ready_node
    };
    if !enabled {
        return false;
    }
    let grace = pod
        .deletion_grace_seconds
        .unwrap_or(pod.grace_seconds)
        .max(0);
    let deadline = since
        .checked_add(SignedDuration::from_secs(grace))
        .and_then(|t| t.checked_add(rules.gc_additional_grace))
        .unwrap_or(since);
    now >= deadline
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
