//! The binding controller: for every Pod carrying a reservation, zone alternatives are resolved
//! as soon as the Pod has a node (late binding), a claim the Pod holds that went missing is
//! recreated, and the SpiderEndpoint the CNI binary reads matches (node, addresses, owned by
//! the Pod). Claims themselves are not written for an ordinary Pod: the Pod carrying a claim's
//! reservation id holds it, so there is nothing to bind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aipam_core::reservation::ANNO_RESERVATION;
use aipam_crds::record::{claim_for, ClaimTarget};
use aipam_crds::{SpiderEndpoint, SpiderIPClaim};
use aipam_rules::binding::{endpoint_status, plan_binding};
use aipam_rules::world::PodView;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use crate::ctx::{pod_ref, Ctx};
use crate::error::{ignore_not_found, is_conflict, is_stale_write, Error};
use crate::write::{delete_if_unchanged, Deleted};

/// The controller's name in metrics.
pub const NAME: &str = "binding";

/// Reconciles one Pod.
pub async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let start = Instant::now();
    let out = bind_pod(&pod, &ctx).await;
    ctx.metrics.observe(NAME, start.elapsed().as_secs_f64());
    out
}

/// On error: count it and retry soon.
pub fn error_policy(_pod: Arc<Pod>, err: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.metrics.error(NAME, err.kind());
    tracing::warn!(error = %err, "binding failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

async fn bind_pod(pod: &Pod, ctx: &Ctx) -> Result<Action, Error> {
    let Some(view) = PodView::from_pod(pod) else {
        return Ok(Action::await_change());
    };
    let Some(record) = view.reservation.clone() else {
        return Ok(Action::await_change());
    };
    if view.is_terminal() || view.deleting_since.is_some() {
        // Release is the collector's: it applies the StatefulSet rule and stuck-Pod timing.
        ctx.request_scan();
        return Ok(Action::await_change());
    }
    // From the cache; a claim the cache has not seen yet (the webhook just made it) is read live.
    let claim_api: Api<SpiderIPClaim> = Api::all(ctx.client.clone());
    let mut claims: BTreeMap<String, SpiderIPClaim> = BTreeMap::new();
    for n in record.claim_names() {
        let c = match ctx.stores.claims.get(&ObjectRef::new(&n)) {
            Some(c) => Some((*c).clone()),
            None => claim_api.get_opt(&n).await?,
        };
        if let Some(c) = c {
            claims.insert(n, c);
        }
    }
    let endpoint = ctx
        .stores
        .endpoints
        .get(&ObjectRef::new(&view.name).within(&view.namespace))
        .map(|e| (*e).clone());
    let pools = ctx.pools();
    let node = match &view.node {
        Some(n) => ctx.node_info(n).await,
        None => None,
    };
    let plan = plan_binding(&view, &claims, endpoint.as_ref(), &pools, node.as_ref());
    if plan.is_empty() {
        return Ok(Action::await_change());
    }
    let owner = claims.values().find_map(|c| c.spec.owner.clone());
    // 0. A StatefulSet's kept address stranded under another admission's id: back to this
    //    Pod's, only while it still carries that id.
    for (name, from) in &plan.take_back {
        let patch = aipam_crds::record::claim_move_patch(from, &record.id);
        match claim_api
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => {
                tracing::info!(claim = %name, pod = %view.name, from = %from, to = %record.id,
                    "StatefulSet address taken back by its Pod");
                ctx.metrics.bind("take_back");
            }
            // Moved meanwhile, or gone: look again.
            Err(e) if is_stale_write(&e) => return Ok(Action::requeue(Duration::from_millis(200))),
            Err(e) => return Err(e.into()),
        }
    }
    // 1. The kept zone alternatives: settled.
    //    Only while the claim is still this reservation's: the name may be another
    //    reservation's claim by now, if the cache lags behind a release and a new admission.
    for name in &plan.settle {
        let patch = aipam_crds::record::claim_settle_patch(&record.id);
        match claim_api
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => ctx.metrics.bind("settle"),
            Err(e) if is_stale_write(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // 2. Claims the record lists but that are missing: the Pod lives, it holds them.
    for (name, addr) in &plan.recreate {
        let iface = record
            .interfaces
            .iter()
            .find(|i| i.ipv4.contains(addr) || i.ipv6.contains(addr))
            .map(|i| i.interface.clone())
            .unwrap_or_else(|| "eth0".to_string());
        let claim = claim_for(
            addr,
            &ClaimTarget {
                namespace: &view.namespace,
                pod_name: Some(&view.name),
                interface: &iface,
                reservation: &record.id,
                owner: owner.clone(),
                provisional: plan.new_record.as_ref().unwrap_or(&record).is_provisional(),
            },
        );
        match claim_api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                ctx.event(
                    &pod_ref(&view.namespace, &view.name, Some(&view.uid)),
                    true,
                    "ClaimRecreated",
                    "Bind",
                    format!(
                        "claim {name} of address {} ({}) was missing and has been recreated",
                        addr.address, addr.pool
                    ),
                )
                .await;
            }
            // Someone made it meanwhile: look again.
            Err(e) if is_conflict(&e) => return Ok(Action::requeue(Duration::from_millis(200))),
            Err(e) => return Err(e.into()),
        }
    }
    // 3. The endpoint the CNI binary waits for.
    if let Some(desired) = plan.endpoint.clone() {
        let (kind, oname) = owner
            .as_ref()
            .map(|o| (o.kind.clone(), o.name.clone()))
            .or_else(|| view.controller.clone())
            .unwrap_or_else(|| ("Pod".to_string(), view.name.clone()));
        write_endpoint(ctx, &view, desired, (&kind, &oname)).await?;
        ctx.metrics.bind("endpoint");
    }
    // 4. Late binding: the Pod's record keeps only what it holds, then the rest goes back.
    if let Some(kept) = &plan.new_record {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &view.namespace);
        let patch =
            json!({ "metadata": { "annotations": { ANNO_RESERVATION: kept.to_annotation() } } });
        pods.patch(&view.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        ctx.metrics.bind("late");
    }
    // Only the claim object planned from (its UID): found by a chaos run, a release by name
    // alone, planned from a cache that had not yet seen the claim deleted by the collector,
    // deleted the claim a new admission had made for the same address meanwhile.
    for name in &plan.release {
        let uid = claims.get(name).and_then(|c| c.metadata.uid.as_deref());
        match delete_if_unchanged(&claim_api, name, uid, None).await? {
            Deleted::Deleted => {
                tracing::info!(claim = %name, pod = %view.name, reservation = %record.id,
                    "zone alternative released");
                ctx.metrics.release("zone_alternative");
            }
            Deleted::AlreadyGone | Deleted::Changed => {}
        }
    }
    if plan.late_bound {
        ctx.event(
            &pod_ref(&view.namespace, &view.name, Some(&view.uid)),
            false,
            "AddressReleased",
            "LateBind",
            format!(
                "bound to node {}: kept {}, released {} zone alternative(s)",
                view.node.clone().unwrap_or_default(),
                plan.new_record
                    .as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                plan.release.len()
            ),
        )
        .await;
    }
    for w in &plan.warnings {
        ctx.event(
            &pod_ref(&view.namespace, &view.name, Some(&view.uid)),
            true,
            w.reason,
            "Bind",
            w.note.clone(),
        )
        .await;
    }
    Ok(Action::await_change())
}

async fn write_endpoint(
    ctx: &Ctx,
    view: &PodView,
    desired: aipam_crds::endpoint::PodIPAllocation,
    owner: (&str, &str),
) -> Result<(), Error> {
    let api: Api<SpiderEndpoint> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let owner_ref = OwnerReference {
        api_version: "v1".to_string(),
        kind: "Pod".to_string(),
        name: view.name.clone(),
        uid: view.uid.clone(),
        controller: None,
        block_owner_deletion: None,
    };
    // The cache may lag: work on the live object.
    let live = ignore_not_found(api.get(&view.name).await)?;
    match live {
        None => {
            let ep = SpiderEndpoint {
                metadata: ObjectMeta {
                    name: Some(view.name.clone()),
                    namespace: Some(view.namespace.clone()),
                    labels: reservation_label(view),
                    owner_references: Some(vec![owner_ref]),
                    ..ObjectMeta::default()
                },
                spec: Default::default(),
                status: Some(endpoint_status(None, desired, owner)),
            };
            api.create(&PostParams::default(), &ep).await?;
            Ok(())
        }
        Some(mut ep) => {
            let owned = ep
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == view.uid);
            if ep.status.as_ref().map(|s| &s.current) == Some(&desired) && owned {
                return Ok(());
            }
            ep.status = Some(endpoint_status(ep.status.as_ref(), desired, owner));
            if let Some(labels) = reservation_label(view) {
                ep.metadata
                    .labels
                    .get_or_insert_with(BTreeMap::new)
                    .extend(labels);
            }
            let refs = ep.metadata.owner_references.get_or_insert_with(Vec::new);
            refs.retain(|r| !(r.kind == "Pod" && r.uid != view.uid));
            if !refs.iter().any(|r| r.uid == view.uid) {
                refs.push(owner_ref);
            }
            api.replace(&view.name, &PostParams::default(), &ep).await?;
            Ok(())
        }
    }
}

/// The endpoint's label naming the Pod's reservation (as the webhook writes it).
fn reservation_label(view: &PodView) -> Option<BTreeMap<String, String>> {
    view.reservation_id().map(|id| {
        BTreeMap::from([(
            aipam_core::reservation::LABEL_RESERVATION.to_string(),
            id.to_string(),
        )])
    })
}
