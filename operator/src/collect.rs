//! The collector: release and garbage collection. One scan judges every claim and endpoint
//! against the cached Pods ([`aipam_rules::claims::judge_claim`],
//! [`aipam_rules::endpoints::judge_endpoint`]);
//! before anything is deleted because its Pod is absent from the cache, the Pod is read live.
//! Scans run at start, when asked (a Pod deleted or finished, a StatefulSet or node changed),
//! when a young reservation's grace period ends, and every `--gc-interval`.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aipam_crds::{SpiderEndpoint, SpiderIPClaim};
use aipam_rules::claims::{judge_claim, ClaimVerdict, Why};
use aipam_rules::endpoints::{judge_endpoint, EndpointVerdict};
use aipam_rules::world::{PodView, World};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};

use crate::ctx::{pod_ref, pool_ref, Ctx};
use crate::error::Error;
use crate::write::{delete_as_judged, Deleted};

/// The controller's name in metrics.
pub const NAME: &str = "collector";

/// What one scan did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Claims deleted, with why.
    pub deleted: Vec<(String, Why)>,
    /// Claims spared by a live read of their Pod (the cache had not seen it yet).
    pub spared_by_live_read: Vec<String>,
    /// Endpoints deleted, as namespace/name.
    pub endpoints_deleted: Vec<String>,
    /// The earliest time a young reservation must be looked at again.
    pub next: Option<Timestamp>,
}

/// Live reads made during one scan, cached for its duration.
#[derive(Default)]
struct LiveReads {
    by_name: BTreeMap<(String, String), Option<PodView>>,
    by_namespace: BTreeMap<String, Vec<PodView>>,
}

impl LiveReads {
    async fn pod(
        &mut self,
        ctx: &Ctx,
        ns: &str,
        name: &str,
    ) -> Result<Option<PodView>, kube::Error> {
        let key = (ns.to_string(), name.to_string());
        if let Some(v) = self.by_name.get(&key) {
            return Ok(v.clone());
        }
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        let v = api
            .get_opt(name)
            .await?
            .as_ref()
            .and_then(PodView::from_pod);
        self.by_name.insert(key, v.clone());
        Ok(v)
    }

    async fn namespace(&mut self, ctx: &Ctx, ns: &str) -> Result<Vec<PodView>, kube::Error> {
        if let Some(v) = self.by_namespace.get(ns) {
            return Ok(v.clone());
        }
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        let v: Vec<PodView> = api
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter_map(PodView::from_pod)
            .collect();
        self.by_namespace.insert(ns.to_string(), v.clone());
        Ok(v)
    }
}

/// Re-reads the Pod a claim could belong to; adds what it finds to the world.
async fn live_check(
    ctx: &Ctx,
    live: &mut LiveReads,
    world: &mut World,
    c: &SpiderIPClaim,
) -> Result<(), kube::Error> {
    let ns = &c.spec.namespace;
    let found: Vec<PodView> = match c.spec.pod_name.as_deref() {
        Some(name) => live.pod(ctx, ns, name).await?.into_iter().collect(),
        None => live
            .namespace(ctx, ns)
            .await?
            .into_iter()
            .filter(|p| p.reservation_id() == Some(c.spec.reservation.as_str()))
            .collect(),
    };
    for p in found {
        world.add_pod(p);
    }
    Ok(())
}

/// One full scan over the caches.
pub async fn scan(ctx: &Ctx) -> Result<ScanReport, Error> {
    let world = ctx.world();
    // The stores' own Arcs: copying 100,000 claims per scan cost more than judging them.
    let claims = ctx.stores.claims.state();
    let endpoints = ctx.stores.endpoints.state();
    scan_with(ctx, world, &claims, &endpoints).await
}

/// One scan over the given snapshot (tests give a stale one to show the live read).
pub async fn scan_with(
    ctx: &Ctx,
    mut world: World,
    claims: &[impl Borrow<SpiderIPClaim>],
    endpoints: &[impl Borrow<SpiderEndpoint>],
) -> Result<ScanReport, Error> {
    let start = Instant::now();
    let now = Timestamp::now();
    let rules = ctx.settings.rules;
    let mut report = ScanReport::default();
    let mut live = LiveReads::default();
    let api: Api<SpiderIPClaim> = Api::all(ctx.client.clone());
    let mut first_error: Option<Error> = None;
    let later = |t: Timestamp, r: &mut ScanReport| {
        r.next = Some(r.next.map_or(t, |n| n.min(t)));
    };
    for c in claims {
        let c: &SpiderIPClaim = c.borrow();
        let name = c.metadata.name.clone().unwrap_or_default();
        let mut verdict = judge_claim(c, &world, now, &rules);
        if matches!(
            verdict,
            ClaimVerdict::Delete {
                pod_absent: true,
                ..
            }
        ) {
            if let Err(e) = live_check(ctx, &mut live, &mut world, c).await {
                ctx.metrics.error(NAME, Error::from(e).kind());
                continue;
            }
            let again = judge_claim(c, &world, now, &rules);
            if again != verdict {
                if matches!(verdict, ClaimVerdict::Delete { .. }) {
                    report.spared_by_live_read.push(name.clone());
                }
                verdict = again;
            }
        }
        match verdict {
            ClaimVerdict::Keep => {}
            ClaimVerdict::KeepUntil(t) => later(t, &mut report),
            ClaimVerdict::Delete { why, .. } => {
                // Preconditions: a claim the webhook re-took meanwhile (new resourceVersion) stays.
                match delete_as_judged(&api, c).await {
                    Ok(Deleted::Deleted) => {
                        tracing::info!(claim = %name, reservation = %c.spec.reservation,
                            why = why.label(), "claim deleted");
                        report.deleted.push((name.clone(), why));
                        ctx.metrics.gc(true);
                        if why.is_release() {
                            ctx.metrics.release(why.label());
                        } else {
                            ctx.metrics.collect(why.label());
                        }
                        ctx.mark_pool(&c.spec.pool);
                        announce(ctx, c, why, &world).await;
                    }
                    Ok(Deleted::AlreadyGone | Deleted::Changed) => {}
                    Err(e) => {
                        ctx.metrics.error(NAME, e.kind());
                        ctx.metrics.gc(false);
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
    }
    for ep in endpoints {
        let ep: &SpiderEndpoint = ep.borrow();
        let ns = ep.metadata.namespace.clone().unwrap_or_default();
        let name = ep.metadata.name.clone().unwrap_or_default();
        let mut verdict = judge_endpoint(ep, &world, now, &rules);
        if matches!(verdict, EndpointVerdict::Delete { pod_absent: true }) {
            match live.pod(ctx, &ns, &name).await {
                Ok(Some(p)) => {
                    world.add_pod(p);
                    verdict = judge_endpoint(ep, &world, now, &rules);
                }
                Ok(None) => {}
                Err(e) => {
                    ctx.metrics.error(NAME, Error::from(e).kind());
                    continue;
                }
            }
        }
        match verdict {
            EndpointVerdict::Keep => {}
            EndpointVerdict::KeepUntil(t) => later(t, &mut report),
            EndpointVerdict::Delete { .. } => {
                let api: Api<SpiderEndpoint> = Api::namespaced(ctx.client.clone(), &ns);
                match delete_as_judged(&api, ep).await {
                    Ok(Deleted::Deleted) => {
                        report.endpoints_deleted.push(format!("{ns}/{name}"));
                        ctx.metrics.collect("endpoint");
                    }
                    Ok(Deleted::AlreadyGone | Deleted::Changed) => {}
                    Err(e) => {
                        ctx.metrics.error(NAME, e.kind());
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
    }
    ctx.metrics.observe(NAME, start.elapsed().as_secs_f64());
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

async fn announce(ctx: &Ctx, c: &SpiderIPClaim, why: Why, world: &World) {
    let (reason, note) = if why.is_release() {
        (
            "AddressReleased",
            format!(
                "address {} of pool {} released: {}",
                c.spec.address,
                c.spec.pool,
                why.label()
            ),
        )
    } else {
        (
            "ReservationCollected",
            format!(
                "address {} of pool {} (reservation {}) collected: {}",
                c.spec.address,
                c.spec.pool,
                c.spec.reservation,
                why.label()
            ),
        )
    };
    // The Pod, when its name is known: from the claim (named at admission), or as seen deleted.
    let gone = world.gone_reservations.get(&c.spec.reservation);
    let pod = gone
        .map(|(n, u)| (n.as_str(), Some(u.as_str())))
        .or_else(|| c.spec.pod_name.as_deref().map(|n| (n, None)));
    match (pod, why.is_release()) {
        (Some((pod, uid)), _) => {
            ctx.event(
                &pod_ref(&c.spec.namespace, pod, uid),
                false,
                reason,
                "Release",
                note,
            )
            .await
        }
        (None, _) => {
            let uid = ctx
                .stores
                .pools
                .get(&kube::runtime::reflector::ObjectRef::new(&c.spec.pool))
                .and_then(|p| p.metadata.uid.clone());
            ctx.event(
                &pool_ref(&c.spec.pool, uid.as_deref()),
                false,
                reason,
                "Collect",
                note,
            )
            .await
        }
    }
}

/// The collector loop: a scan at start, then on request (merged over `scan_debounce`), when
/// a young reservation's grace period ends, and every `gc_interval`.
pub async fn run(ctx: Arc<Ctx>) {
    loop {
        let next: Option<Timestamp> = match scan(&ctx).await {
            Ok(r) => {
                if !r.deleted.is_empty() || !r.endpoints_deleted.is_empty() {
                    tracing::info!(
                        claims = r.deleted.len(),
                        endpoints = r.endpoints_deleted.len(),
                        "collector scan"
                    );
                }
                r.next
            }
            Err(e) => {
                tracing::warn!(error = %e, "collector scan failed; retrying");
                Timestamp::now()
                    .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(2))
                    .ok()
            }
        };
        let mut wait = ctx.settings.gc_interval;
        if let Some(t) = next {
            let until = t.duration_since(Timestamp::now());
            let ms = until.as_millis().max(0);
            let d = Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
                + Duration::from_millis(50);
            wait = wait.min(d);
        }
        let timer = tokio::select! {
            _ = ctx.scan.notified() => {
                tokio::time::sleep(ctx.settings.scan_debounce).await;
                false
            }
            _ = tokio::time::sleep(wait) => true,
        };
        if timer && wait == ctx.settings.gc_interval {
            ctx.resync_bindings();
        }
    }
}
