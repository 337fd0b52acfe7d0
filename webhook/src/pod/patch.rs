//! The JSON Patch the mutating hook answers, built from the reservation: the record in the
//! annotation `aipam.io/reservation` and, for zone reservations, the node affinity that keeps
//! the Pod in its pools' zones. Pure.

use aipam_core::affinity::{self, NodeSelectorTerm};
use aipam_core::model::Pool;
use aipam_core::reservation::{Reservation, ANNO_RESERVATION};
use aipam_crds::record::required_node_terms;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::refusal::Refused;
use crate::cache::Snapshot;

/// The patch for a Pod this IPAM reserves nothing for: the record it arrived with removed, if
/// any (see [`super::plan::arrives_with_record`]).
pub(crate) fn unserved(arrived_with_record: bool) -> Option<Patch> {
    arrived_with_record.then(|| {
        Patch(vec![PatchOperation::Remove(RemoveOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations", ANNO_RESERVATION]),
        })])
    })
}

/// The patch that records the reservation (and the zones' node affinity when the Pod's node is
/// not known).
pub(crate) fn record(
    pod: &Pod,
    raw: &Value,
    record: &Reservation,
    snap: &Snapshot,
    node_known: bool,
    arrived_with_record: bool,
) -> Result<Patch, Refused> {
    let mut ops = Vec::new();
    let value = Value::String(record.to_annotation());
    if arrived_with_record {
        ops.push(PatchOperation::Replace(ReplaceOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations", ANNO_RESERVATION]),
            value,
        }));
    } else if raw
        .pointer("/metadata/annotations")
        .is_some_and(Value::is_object)
    {
        ops.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations", ANNO_RESERVATION]),
            value,
        }));
    } else {
        ops.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations"]),
            value: json!({ ANNO_RESERVATION: record.to_annotation() }),
        }));
    }
    if !node_known {
        if let Some(terms) = zone_affinity(pod, record, snap)? {
            ops.push(affinity_op(raw, terms));
        }
    }
    Ok(Patch(ops))
}

/// The required node affinity a Pod with zone reservations must get: what it already requires,
/// intersected with, for each interface and family, the union of its reserved pools' zones.
/// `None` when no constraint is needed.
fn zone_affinity(
    pod: &Pod,
    record: &Reservation,
    snap: &Snapshot,
) -> Result<Option<Vec<NodeSelectorTerm>>, Refused> {
    let mut required = required_node_terms(pod);
    let mut changed = false;
    for i in &record.interfaces {
        for list in [&i.ipv4, &i.ipv6] {
            let pools: Vec<&Pool> = list
                .iter()
                .filter_map(|a| snap.pools.get(&a.pool))
                .collect();
            if pools.is_empty() || !pools.iter().any(|p| p.is_node_bound()) {
                continue;
            }
            if let Some(union) = affinity::union_of(pools) {
                required = affinity::intersect(&required, &union);
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    if required.len() > affinity::MAX_TERMS {
        return Err(Refused::too_many_terms(required.len()));
    }
    Ok(Some(required))
}

fn affinity_op(raw: &Value, terms: Vec<NodeSelectorTerm>) -> PatchOperation {
    let terms = serde_json::to_value(terms).unwrap_or(Value::Array(Vec::new()));
    let present = |p: &str| raw.pointer(p).is_some_and(|v| !v.is_null());
    let required = json!({ "nodeSelectorTerms": terms });
    if !present("/spec/affinity") {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["spec", "affinity"]),
            value: json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}),
        })
    } else if !present("/spec/affinity/nodeAffinity") {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["spec", "affinity", "nodeAffinity"]),
            value: json!({"requiredDuringSchedulingIgnoredDuringExecution": required}),
        })
    } else if !present("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution")
    {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens([
                "spec",
                "affinity",
                "nodeAffinity",
                "requiredDuringSchedulingIgnoredDuringExecution",
            ]),
            value: required,
        })
    } else {
        PatchOperation::Replace(ReplaceOperation {
            path: PointerBuf::from_tokens([
                "spec",
                "affinity",
                "nodeAffinity",
                "requiredDuringSchedulingIgnoredDuringExecution",
                "nodeSelectorTerms",
            ]),
            value: terms,
        })
    }
}
