//! Every refusal the Pod hooks answer, with its code and its text, built here and nowhere else.

use aipam_core::affinity;
use aipam_core::config::ConfigError;
use aipam_core::reserve::FamilyMiss;
use aipam_core::select::{AutoPoolPlan, Problem, Refusal};

use crate::effects::EffectError;

/// How the chosen-address annotations are named in refusals.
const ANNO_IP_ADDRESS_TEXT: &str =
    "annotation aipam.io/ip-address (or aipam.io/ip-address-by-ordinal)";
use crate::network::NetworkError;

/// A refusal: HTTP-like code and the message the user sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// 400 for a malformed annotation, 403 when the Pod cannot be served, 429 when the API
    /// server sheds load, 500 for another failure.
    pub code: u16,
    /// What to fix.
    pub message: String,
}

impl Refused {
    fn forbidden(message: impl Into<String>) -> Refused {
        Refused {
            code: 403,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Refused {
        Refused {
            code: 400,
            message: message.into(),
        }
    }

    /// The review carries no Pod, or not one that reads as a Pod.
    pub(crate) fn unreadable_pod(why: Option<&dyn std::fmt::Display>) -> Refused {
        match why {
            None => Refused::bad_request("the AdmissionReview carries no Pod object"),
            Some(e) => Refused::bad_request(format!("cannot read the Pod: {e}")),
        }
    }

    /// The Pod names a node (spec.nodeName or a DaemonSet's pinning affinity) that no Node is.
    pub(crate) fn unknown_node(node: &str) -> Refused {
        Refused::forbidden(format!(
            "node {node} (the Pod's spec.nodeName or required node affinity) is not known: no Node of that name exists, so no pool can be chosen for it; create the Pod once the node has joined"
        ))
    }

    /// The `spiderpool-conf` ConfigMap cannot be read.
    pub(crate) fn config(e: &ConfigError) -> Refused {
        Refused::forbidden(e.to_string())
    }

    /// The Pod's networks cannot be found (400 when its annotation is malformed).
    pub(crate) fn networks(e: &NetworkError) -> Refused {
        Refused {
            code: if e.is_malformed_annotation() {
                400
            } else {
                403
            },
            message: e.to_string(),
        }
    }

    /// A StatefulSet Pod of this name still lives and holds the addresses kept for the name.
    pub(crate) fn name_still_held(namespace: &str, name: &str) -> Refused {
        Refused::forbidden(format!(
            "Pod {namespace}/{name} already exists and holds the addresses kept for StatefulSet Pods of this name; a Pod of the same name can be created once it is gone"
        ))
    }

    /// Pool selection found no pool (400 when an annotation is what is wrong).
    pub(crate) fn selection(refusal: &Refusal) -> Refused {
        let malformed = refusal
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Annotation(_)));
        Refused {
            code: if malformed { 400 } else { 403 },
            message: refusal.to_string(),
        }
    }

    /// The SpiderSubnet auto-pool the Pod needs is not made yet.
    pub(crate) fn auto_pool_missing(interface: &str, plan: &AutoPoolPlan) -> Refused {
        Refused::forbidden(format!(
            "interface {interface}: the SpiderSubnet auto-pool {} ({} address(es) from SpiderSubnet {}) does not exist yet: the operator creates it for the Pod's Deployment, ReplicaSet, StatefulSet, DaemonSet, Job or CronJob, and the controller's next try is admitted (a Pod without a controller cannot use a SpiderSubnet annotation yet)",
            plan.pool, plan.desired_ips, plan.subnet
        ))
    }

    /// A third-party controller's auto pool cannot be made now; `why` says what to do.
    pub(crate) fn auto_pool_not_made(interface: &str, plan: &AutoPoolPlan, why: &str) -> Refused {
        Refused::forbidden(format!(
            "interface {interface}: the SpiderSubnet auto-pool {} ({} address(es) from SpiderSubnet {}) for the Pod's third-party controller cannot be made: {why}",
            plan.pool, plan.desired_ips, plan.subnet
        ))
    }

    /// No candidate pool of one family gave an address.
    pub(crate) fn no_address(miss: &FamilyMiss) -> Refused {
        Refused::forbidden(miss.to_string())
    }

    /// A chosen-address annotation that cannot be read.
    pub(crate) fn bad_annotation(e: &dyn std::fmt::Display) -> Refused {
        Refused::bad_request(e.to_string())
    }

    /// A chosen address for an interface or family the Pod does not get.
    pub(crate) fn chosen_not_asked(what: String) -> Refused {
        Refused::forbidden(format!("{} names {what}", ANNO_IP_ADDRESS_TEXT))
    }

    /// A chosen address no candidate pool of the interface can hand out, with each pool's
    /// reason.
    pub(crate) fn chosen_unservable(interface: &str, address: &str, why: &[String]) -> Refused {
        Refused::forbidden(format!(
            "interface {interface}: the chosen address {address} cannot be given: {}; choose an address of a candidate pool that is in its spec.ips, not excluded and not reserved",
            if why.is_empty() {
                "no candidate pool".to_string()
            } else {
                why.join("; ")
            }
        ))
    }

    /// A chosen address another Pod holds.
    pub(crate) fn chosen_held(interface: &str, address: &str, holder: &str) -> Refused {
        Refused::forbidden(format!(
            "interface {interface}: the chosen address {address} is held by {holder}; it is not given to two Pods (delete that Pod, or choose another address)"
        ))
    }

    /// The node affinity the zone reservations need is too large.
    pub(crate) fn too_many_terms(terms: usize) -> Refused {
        Refused::forbidden(format!(
            "the node affinity needed to keep the Pod in the zones of its pools would have {terms} terms (its own required terms combined with the pools' zones), more than the {} allowed; simplify the Pod's required node affinity or name fewer zone pools",
            affinity::MAX_TERMS
        ))
    }

    /// The patch could not be encoded.
    pub(crate) fn unencodable_patch(e: &dyn std::fmt::Display) -> Refused {
        Refused {
            code: 500,
            message: format!("cannot encode the patch: {e}"),
        }
    }

    /// A failed call: 429 when the API server was shedding load (the client should come back
    /// later, as it does for the API server's own 429s), else 500.
    pub(crate) fn failed_call(e: &EffectError) -> Refused {
        let code = match e {
            EffectError::Overloaded(_) => 429,
            EffectError::Api(_) => 500,
        };
        Refused {
            code,
            message: format!("no address was reserved: {e}"),
        }
    }
}
