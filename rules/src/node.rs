//! Nodes: whether one is Ready, and whether a Pod is stuck Terminating on one that is not.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::world::{PodView, World};

/// Whether a node reports Ready=True.
pub fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a Pod is stuck Terminating on a node that is not Ready: past its deletionTimestamp
/// plus its termination grace period.
pub fn stuck_terminating(pod: &PodView, world: &World, now: Timestamp) -> bool {
    let Some(since) = pod.deleting_since else {
        return false;
    };
    let node_ready = pod
        .node
        .as_ref()
        .and_then(|n| world.nodes_ready.get(n))
        .copied()
        .unwrap_or(false);
    if node_ready {
        return false;
    }
    let deadline = since
        .checked_add(SignedDuration::from_secs(pod.grace_seconds.max(0)))
        .unwrap_or(since);
    now >= deadline
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
