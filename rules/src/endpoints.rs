//! SpiderEndpoints: what the collector does with one ([`judge_endpoint`]).

use aipam_crds::SpiderEndpoint;
use k8s_openapi::jiff::Timestamp;

use crate::node::stuck_terminating;
use crate::world::{Rules, World, STATEFUL_SET};

/// What to do with one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointVerdict {
    /// Its Pod lives (or may be about to).
    Keep,
    /// Young and Pod absent: look again then.
    KeepUntil(Timestamp),
    /// Delete it; `pod_absent` as for claims.
    Delete {
        /// The decision rests on the Pod being absent from the cache.
        pod_absent: bool,
    },
}

/// The verdict on one SpiderEndpoint: it lives as long as a Pod of its name and UID lives (a
/// Pod of the same name and another UID — a StatefulSet's next Pod — keeps it too: binding
/// rewrites it).
pub fn judge_endpoint(
    ep: &SpiderEndpoint,
    world: &World,
    now: Timestamp,
    rules: &Rules,
) -> EndpointVerdict {
    let ns = ep.metadata.namespace.as_deref().unwrap_or_default();
    let name = ep.metadata.name.as_deref().unwrap_or_default();
    let uid = ep
        .status
        .as_ref()
        .map(|s| s.current.uid.as_str())
        .unwrap_or_default();
    if let Some(pod) = world.pod_by_name(ns, name) {
        let sts = rules.stateful_set
            && pod
                .controller
                .as_ref()
                .is_some_and(|(k, _)| k == STATEFUL_SET);
        if pod.uid == uid
            && !sts
            && (pod.is_terminal() || stuck_terminating(pod, world, now, rules))
        {
            return EndpointVerdict::Delete { pod_absent: false };
        }
        return EndpointVerdict::Keep;
    }
    if world.gone_uids.contains(uid) {
        return EndpointVerdict::Delete { pod_absent: true };
    }
    if let Some(until) = ep
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| t.0.checked_add(rules.grace).ok())
        .filter(|u| *u > now)
    {
        return EndpointVerdict::KeepUntil(until);
    }
    EndpointVerdict::Delete { pod_absent: true }
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;
