//! Pool status and the pool finalizer.
//!
//! Counters: `status.allocatedIPCount` (claims of the pool) and `status.totalIPCount`
//! (addresses the pool can hand out) are recomputed for the pools whose claims changed, at
//! most every `status_interval`, with one merge patch per changed pool on the status
//! subresource. The per-address `status.allocatedIPs` map of Spiderpool is never written.
//!
//! Finalizer `spiderpool.spidernet.io`: added to every pool; a pool being deleted keeps it until
//! no claim holds one of its addresses (checked live), then it is removed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aipam_core::reservation::LABEL_POOL;
use aipam_core::validate::validate_subnet;
use aipam_crds::convert::subnet_draft;
use aipam_crds::{SpiderIPClaim, SpiderIPPool, SpiderSubnet};
use aipam_rules::counters::{
    allocated_per_pool, at_or_above, fullness_crossing, subnet_counts, Crossing,
};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use serde_json::json;

use crate::ctx::{pool_ref, Ctx};
use crate::error::Error;

/// The finalizer on pools (Spiderpool's).
pub const FINALIZER: &str = "spiderpool.spidernet.io";
/// The controller's name in metrics.
pub const NAME: &str = "pool";

/// The counters of one pool: (allocated, total).
pub fn counts(
    ctx: &Ctx,
    pool: &SpiderIPPool,
    allocated: &BTreeMap<String, i64>,
) -> Option<(i64, i64)> {
    let name = pool.metadata.name.as_deref()?;
    let draft = aipam_crds::convert::pool_draft(pool).ok()?;
    let alloc = allocated.get(name).copied().unwrap_or(0);
    let total = match aipam_core::validate::validate_pool(&draft) {
        Ok(p) => {
            let reserved = ctx.reserved(p.family);
            i64::try_from(p.allocatable(&reserved).len()).unwrap_or(i64::MAX)
        }
        Err(_) => 0,
    };
    Some((alloc, total))
}

/// Recomputes the dirty pools and writes the counters that changed. Returns the writes made.
pub async fn flush_status(ctx: &Ctx) -> Result<usize, Error> {
    // `None`: every pool.
    let dirty = ctx.take_dirty();
    if dirty.as_ref().is_some_and(|d| d.is_empty()) {
        return Ok(0);
    }
    let mut writes = flush_subnets(ctx).await;
    ctx.metrics.objects(
        ctx.stores.pools.state().len(),
        ctx.stores.subnets.state().len(),
    );
    let claims = ctx.stores.claims.state();
    let allocated = allocated_per_pool(claims.iter().map(|c| &**c));
    let api: Api<SpiderIPPool> = Api::all(ctx.client.clone());
    for pool in ctx.stores.pools.state() {
        let Some(name) = pool.metadata.name.clone() else {
            continue;
        };
        if let Some(d) = &dirty {
            if !d.contains(&name) {
                continue;
            }
        }
        let Some((alloc, total)) = counts(ctx, &pool, &allocated) else {
            continue;
        };
        ctx.metrics.pool(&name, alloc, total);
        let st = pool.status.clone().unwrap_or_default();
        if st.allocated_ip_count == Some(alloc) && st.total_ip_count == Some(total) {
            continue;
        }
        let patch = json!({ "status": { "allocatedIPCount": alloc, "totalIPCount": total } });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                writes += 1;
                ctx.metrics.status_writes.inc();
            }
            Err(e) => {
                ctx.mark_pool(&name);
                let e = Error::from(e);
                ctx.metrics.error(NAME, e.kind());
                tracing::warn!(pool = %name, error = %e, "cannot write pool status");
                continue;
            }
        }
        let threshold = ctx.settings.pool_fullness_percent;
        let before = st.allocated_ip_count.zip(st.total_ip_count);
        ctx.metrics
            .pool_fullness(&name, at_or_above(alloc, total, threshold));
        if let Some(c) = fullness_crossing(before, (alloc, total), threshold) {
            let (warning, reason, direction, text) = match c {
                Crossing::Up => (
                    true,
                    "PoolNearlyFull",
                    "up",
                    format!(
                        "pool {name} has {alloc} of its {total} addresses allocated, at or above the threshold of {threshold}% (--pool-fullness-percent): add addresses or a backup pool before Pods are refused"
                    ),
                ),
                Crossing::Down => (
                    false,
                    "PoolBelowThreshold",
                    "down",
                    format!(
                        "pool {name} has {alloc} of its {total} addresses allocated, back under the threshold of {threshold}%"
                    ),
                ),
            };
            ctx.metrics.fullness_crossed(&name, direction);
            ctx.event(
                &pool_ref(&name, pool.metadata.uid.as_deref()),
                warning,
                reason,
                "Count",
                text,
            )
            .await;
        }
        let was_full =
            st.allocated_ip_count.is_some() && st.allocated_ip_count >= st.total_ip_count;
        if total > 0 && alloc >= total && !was_full {
            ctx.event(
                &pool_ref(&name, pool.metadata.uid.as_deref()),
                true,
                "PoolExhausted",
                "Count",
                format!("all {total} addresses of pool {name} are allocated: new Pods that need it are refused until addresses are released"),
            )
            .await;
        }
    }
    Ok(writes)
}

/// Recomputes every SpiderSubnet's counters; writes those that changed.
pub async fn flush_subnets(ctx: &Ctx) -> usize {
    let pools = ctx.pools();
    let api: Api<SpiderSubnet> = Api::all(ctx.client.clone());
    let mut writes = 0;
    for s in ctx.stores.subnets.state() {
        let Some(name) = s.metadata.name.clone() else {
            continue;
        };
        let Ok(subnet) = validate_subnet(&subnet_draft(&s)) else {
            continue;
        };
        let (alloc, total) = subnet_counts(&subnet, pools.values());
        let of_subnet = pools.values().filter(|p| p.subnet == subnet.subnet).count();
        ctx.metrics.subnet(
            &name,
            i64::try_from(of_subnet).unwrap_or(i64::MAX),
            alloc,
            total,
        );
        let st = s.status.clone().unwrap_or_default();
        if st.allocated_ip_count == Some(alloc) && st.total_ip_count == Some(total) {
            continue;
        }
        let patch = json!({ "status": { "allocatedIPCount": alloc, "totalIPCount": total } });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => writes += 1,
            Err(e) => {
                ctx.mark_all_pools();
                ctx.metrics.error(NAME, Error::from(e).kind());
            }
        }
    }
    writes
}

/// The status loop.
pub async fn run_status(ctx: Arc<Ctx>) {
    loop {
        if let Err(e) = flush_status(&ctx).await {
            tracing::warn!(error = %e, "pool status");
        }
        tokio::time::sleep(ctx.settings.status_interval).await;
    }
}

/// Claims of a pool, read live.
async fn live_claims(ctx: &Ctx, pool: &str) -> Result<usize, kube::Error> {
    let api: Api<SpiderIPClaim> = Api::all(ctx.client.clone());
    let lp = if pool.len() <= aipam_core::labels::LABEL_VALUE_MAX_LEN {
        ListParams::default().labels(&format!("{LABEL_POOL}={pool}"))
    } else {
        ListParams::default()
    };
    Ok(api
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|c| c.spec.pool == pool)
        .count())
}

/// Reconciles one pool: the finalizer, and a recount.
pub async fn reconcile(pool: Arc<SpiderIPPool>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let start = Instant::now();
    let out = reconcile_pool(pool, &ctx).await;
    ctx.metrics.observe(NAME, start.elapsed().as_secs_f64());
    out
}

async fn reconcile_pool(pool: Arc<SpiderIPPool>, ctx: &Ctx) -> Result<Action, Error> {
    let name = pool.metadata.name.clone().unwrap_or_default();
    ctx.mark_pool(&name);
    let api: Api<SpiderIPPool> = Api::all(ctx.client.clone());
    if pool.metadata.deletion_timestamp.is_some()
        && pool
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
    {
        let in_use = live_claims(ctx, &name).await?;
        if in_use > 0 {
            ctx.event(
                &pool_ref(&name, pool.metadata.uid.as_deref()),
                true,
                "PoolInUse",
                "Delete",
                format!("pool {name} is being deleted but {in_use} address(es) are still allocated; it is kept until they are released"),
            )
            .await;
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
    }
    if pool.metadata.deletion_timestamp.is_none()
        && pool
            .metadata
            .finalizers
            .as_ref()
            .is_none_or(|f| f.is_empty())
    {
        // The helper adds the first finalizer with a JSON patch `test /metadata/finalizers ==
        // null`, which kube-apiserver accepts for an absent field and the API stand-in refuses
        // (422). Same effect, guarded by resourceVersion instead.
        let patch = json!({ "metadata": {
            "resourceVersion": pool.metadata.resource_version,
            "finalizers": [FINALIZER],
        }});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        return Ok(Action::await_change());
    }
    let uid = pool.metadata.uid.clone();
    finalizer(&api, FINALIZER, pool, |ev| async move {
        match ev {
            FinalizerEvent::Apply(_) => Ok::<_, Error>(Action::await_change()),
            FinalizerEvent::Cleanup(p) => {
                let n = p.metadata.name.clone().unwrap_or_default();
                ctx.event(
                    &pool_ref(&n, uid.as_deref()),
                    false,
                    "PoolReleased",
                    "Delete",
                    format!("pool {n} holds no address any more: deletion proceeds"),
                )
                .await;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        kube::runtime::finalizer::Error::AddFinalizer(e)
        | kube::runtime::finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    })
}

/// On error: count it and retry soon.
pub fn error_policy(_pool: Arc<SpiderIPPool>, err: &Error, ctx: Arc<Ctx>) -> Action {
    ctx.metrics.error(NAME, err.kind());
    Action::requeue(Duration::from_secs(2))
}
