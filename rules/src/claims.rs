//! Claims: which Pod holds one ([`holder`]), the StatefulSet it is kept for
//! ([`stateful_owner`]), and what the collector does with it ([`judge_claim`]).

use aipam_crds::SpiderIPClaim;
use k8s_openapi::jiff::Timestamp;

use crate::node::stuck_terminating;
use crate::world::{PodView, Rules, World, STATEFUL_SET};

/// The ordinal of a StatefulSet Pod (`<set>-<n>`).
pub fn ordinal(set: &str, pod: &str) -> Option<i64> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// Why an address is given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Why {
    /// No Pod ever carried the reservation within the grace period.
    NeverAppeared,
    /// The Pod is gone.
    PodGone,
    /// The Pod Succeeded or Failed.
    PodTerminal,
    /// The stateless Pod is stuck Terminating past its grace period (on a node that is not
    /// Ready, or on a Ready one, as the GC switches of [`Rules`] allow).
    StuckTerminating,
    /// A zone alternative the Pod did not need once its node was known.
    ZoneAlternative,
    /// The StatefulSet no longer wants that ordinal.
    StatefulSetScaledDown,
    /// The StatefulSet is gone.
    StatefulSetGone,
}

impl Why {
    /// Metric label and event wording.
    pub fn label(self) -> &'static str {
        match self {
            Why::NeverAppeared => "never_appeared",
            Why::PodGone => "pod_gone",
            Why::PodTerminal => "pod_terminal",
            Why::StuckTerminating => "stuck_terminating",
            Why::ZoneAlternative => "zone_alternative",
            Why::StatefulSetScaledDown => "statefulset_scaled_down",
            Why::StatefulSetGone => "statefulset_gone",
        }
    }

    /// Whether this is a release of a Pod's address (versus collection of a leftover).
    pub fn is_release(self) -> bool {
        matches!(
            self,
            Why::PodGone | Why::PodTerminal | Why::StuckTerminating | Why::ZoneAlternative
        )
    }
}

/// What to do with one claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimVerdict {
    /// In use, or may be: leave it.
    Keep,
    /// Its Pod is absent but the claim is younger than the grace period: look again then.
    KeepUntil(Timestamp),
    /// Give the address back. When `pod_absent`, the executor first re-reads the Pod live.
    Delete {
        /// Why.
        why: Why,
        /// The decision rests on the Pod being absent from the cache.
        pod_absent: bool,
    },
}

fn claim_created(c: &SpiderIPClaim) -> Option<Timestamp> {
    c.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// The StatefulSet of a claim, when the StatefulSet rule applies to it.
pub fn stateful_owner<'c>(c: &'c SpiderIPClaim, rules: &Rules) -> Option<&'c str> {
    if !rules.stateful_set {
        return None;
    }
    c.spec
        .owner
        .as_ref()
        .filter(|o| o.kind == STATEFUL_SET)
        .map(|o| o.name.as_str())
}

/// The Pod holding a claim: the Pod of the claim's namespace carrying its reservation id. The id
/// is minted per admission (a record a new Pod brings along is replaced) and only the operator
/// rewrites a Pod's record afterwards, so nothing else needs to bind the claim to the Pod.
pub fn holder<'w>(c: &SpiderIPClaim, world: &'w World) -> Option<&'w PodView> {
    world
        .pod_by_reservation(&c.spec.reservation)
        .filter(|p| p.namespace == c.spec.namespace)
}

/// The verdict on one claim.
pub fn judge_claim(
    c: &SpiderIPClaim,
    world: &World,
    now: Timestamp,
    rules: &Rules,
) -> ClaimVerdict {
    let name = c.metadata.name.as_deref().unwrap_or_default();
    let sts = stateful_owner(c, rules);
    let pod = holder(c, world);
    if let Some(pod) = pod {
        let listed = pod
            .reservation
            .as_ref()
            .is_some_and(|r| r.claim_names().iter().any(|n| n == name));
        if !listed {
            return ClaimVerdict::Delete {
                why: Why::ZoneAlternative,
                pod_absent: false,
            };
        }
        if sts.is_some() {
            // A StatefulSet Pod keeps its address while it exists, whatever its state.
            return ClaimVerdict::Keep;
        }
        if pod.is_terminal() {
            return ClaimVerdict::Delete {
                why: Why::PodTerminal,
                pod_absent: false,
            };
        }
        if stuck_terminating(pod, world, now, rules) {
            return ClaimVerdict::Delete {
                why: Why::StuckTerminating,
                pod_absent: false,
            };
        }
        return ClaimVerdict::Keep;
    }
    // No Pod. Known to have existed and gone?
    let known_gone = world.gone_reservations.contains_key(&c.spec.reservation);
    let appeared = known_gone || world.endpoint_reservations.contains(&c.spec.reservation);
    let young_until = claim_created(c)
        .and_then(|t| t.checked_add(rules.grace).ok())
        .filter(|until| *until > now);
    if let Some(set) = sts {
        let state = world
            .stateful_sets
            .get(&(c.spec.namespace.clone(), set.to_string()));
        let wanted = match (state, c.spec.pod_name.as_deref()) {
            (Some(s), Some(pod)) if !s.deleting => {
                ordinal(set, pod).is_some_and(|o| o < s.replicas)
            }
            (Some(s), None) => !s.deleting,
            _ => false,
        };
        // The ordinal's Pod exists again, under a new UID and reservation that do not list
        // this claim (admitted while this claim's pool was full, or its pools changed): the
        // address is no Pod's any more; keeping it for the set would hold it as long as the
        // set lives.
        let replaced = c
            .spec
            .pod_name
            .as_deref()
            .and_then(|n| world.pod_by_name(&c.spec.namespace, n))
            .and_then(|p| p.reservation.as_ref())
            .is_some_and(|r| !r.claim_names().iter().any(|n| n == name));
        if wanted && replaced {
            return ClaimVerdict::Delete {
                why: Why::PodGone,
                pod_absent: true,
            };
        }
        if wanted {
            // Kept for the next Pod of the name, which takes it over at admission.
            return ClaimVerdict::Keep;
        }
        if let Some(until) = young_until {
            if !known_gone {
                return ClaimVerdict::KeepUntil(until);
            }
        }
        return ClaimVerdict::Delete {
            why: if state.is_some_and(|s| !s.deleting) {
                Why::StatefulSetScaledDown
            } else {
                Why::StatefulSetGone
            },
            pod_absent: true,
        };
    }
    if let Some(until) = young_until {
        if !known_gone {
            return ClaimVerdict::KeepUntil(until);
        }
    }
    ClaimVerdict::Delete {
        why: if appeared {
            Why::PodGone
        } else {
            Why::NeverAppeared
        },
        pod_absent: true,
    }
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;
