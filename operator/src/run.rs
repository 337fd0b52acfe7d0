//! Wiring: the caches (one watch per kind), the controllers and the loops.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aipam_crds::{SpiderEndpoint, SpiderIPClaim, SpiderIPPool, SpiderReservedIP, SpiderSubnet};
use aipam_rules::node::node_ready;
use aipam_rules::world::PodView;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, PodStatus};
use kube::api::Api;
use kube::runtime::controller::{trigger_self, ReconcileRequest};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{applier, Config, WatchStreamExt};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::ctx::{Ctx, Settings, Stores};
use crate::metrics::Metrics;
use crate::{autopool, binding, collect, pools};

/// The running operator. Dropping it stops everything.
#[derive(Debug)]
pub struct Running {
    /// The shared context.
    pub ctx: Arc<Ctx>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Stops every controller and loop.
    pub async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until a task ends (they run forever unless something is badly wrong).
    pub async fn wait(&mut self) {
        self.tasks.join_next().await;
    }
}

type Watch<K> = std::pin::Pin<Box<dyn Stream<Item = Result<Event<K>, watcher::Error>> + Send>>;

/// Drops what the operator never reads before an object enters its cache: managedFields of
/// every object (often its largest part), and of a Pod everything but what
/// [`PodView::from_pod`] reads (metadata, `spec.nodeName`,
/// `spec.terminationGracePeriodSeconds`, `status.phase`): at 100,000 Pods the containers,
/// volumes and statuses are most of the operator's memory.
pub fn slim<K: Resource + 'static>(o: &mut K) {
    o.meta_mut().managed_fields = None;
    if let Some(pod) = (o as &mut dyn std::any::Any).downcast_mut::<Pod>() {
        if let Some(spec) = pod.spec.as_mut() {
            *spec = PodSpec {
                node_name: spec.node_name.take(),
                termination_grace_period_seconds: spec.termination_grace_period_seconds,
                ..PodSpec::default()
            };
        }
        if let Some(status) = pod.status.as_mut() {
            *status = PodStatus {
                phase: status.phase.take(),
                ..PodStatus::default()
            };
        }
    }
}

fn watch<K>(client: &Client, writer: reflector::store::Writer<K>) -> Watch<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    Box::pin(
        watcher(Api::<K>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(|o: &mut K| slim(o))
            .reflect(writer),
    )
}

use kube::runtime::watcher::watcher;

fn drain<K: Send + 'static>(tasks: &mut JoinSet<()>, s: impl Stream<Item = K> + Send + 'static) {
    tasks.spawn(async move {
        s.for_each(|_| async {}).await;
    });
}

/// Starts the watches, the controllers and the loops; returns once the caches are filled
/// and the first collector scan is under way.
pub async fn start(client: Client, settings: Settings, metrics: Metrics) -> Running {
    let (pods_r, pods_w) = reflector::store::<Pod>();
    let (claims_r, claims_w) = reflector::store::<SpiderIPClaim>();
    let (eps_r, eps_w) = reflector::store::<SpiderEndpoint>();
    let (pools_r, pools_w) = reflector::store::<SpiderIPPool>();
    let (res_r, res_w) = reflector::store::<SpiderReservedIP>();
    let (nodes_r, nodes_w) = reflector::store::<Node>();
    let (sets_r, sets_w) = reflector::store::<StatefulSet>();
    let (subnets_r, subnets_w) = reflector::store::<SpiderSubnet>();
    let stores = Stores {
        pods: pods_r.clone(),
        claims: claims_r.clone(),
        endpoints: eps_r.clone(),
        pools: pools_r.clone(),
        reserved: res_r.clone(),
        nodes: nodes_r.clone(),
        sets: sets_r.clone(),
        subnets: subnets_r.clone(),
    };
    let ctx = Arc::new(Ctx::new(client.clone(), settings, stores, metrics));
    let mut tasks = JoinSet::new();

    // Pods: deletions feed the collector; every other change feeds binding.
    let c = ctx.clone();
    let pods = watch(&client, pods_w).inspect(move |ev| {
        if let Ok(Event::Delete(p)) = ev {
            if let Some(v) = PodView::from_pod(p) {
                if v.reservation.is_some() {
                    c.pod_gone(&v);
                    c.request_scan();
                }
            }
        }
    });
    let (rebind_tx, rebind_rx) = futures::channel::mpsc::unbounded::<ObjectRef<Pod>>();
    ctx.set_rebind(rebind_tx);
    let queue = futures::stream::select(
        trigger_self(pods.applied_objects(), ()),
        rebind_rx.map(|r| Ok::<_, watcher::Error>(ReconcileRequest::from(r))),
    );
    let binding = applier(
        |p, c| Box::pin(binding::reconcile(p, c)),
        binding::error_policy,
        ctx.clone(),
        pods_r.clone(),
        queue,
        Config::default(),
    );
    drain(&mut tasks, binding);

    // Claims: any change marks its pool for a recount.
    let c = ctx.clone();
    let claims = watch(&client, claims_w).inspect(move |ev| match ev {
        Ok(Event::Apply(x)) | Ok(Event::Delete(x)) | Ok(Event::InitApply(x)) => {
            c.mark_pool(&x.spec.pool)
        }
        Ok(Event::InitDone) => c.mark_all_pools(),
        _ => {}
    });
    drain(&mut tasks, claims);

    // Pools: the finalizer controller.
    let c = ctx.clone();
    let pool_stream = watch(&client, pools_w).inspect(move |ev| {
        if let Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) = ev {
            if let Some(n) = &p.metadata.name {
                c.mark_pool(n);
            }
        }
    });
    let pool_ctl = applier(
        |p, c| Box::pin(pools::reconcile(p, c)),
        pools::error_policy,
        ctx.clone(),
        pools_r.clone(),
        trigger_self(pool_stream.applied_objects(), ()),
        Config::default(),
    );
    drain(&mut tasks, pool_ctl);

    // Reserved addresses change every pool's total.
    let c = ctx.clone();
    drain(
        &mut tasks,
        watch(&client, res_w).inspect(move |ev| {
            if !matches!(ev, Ok(Event::Init) | Err(_)) {
                c.mark_all_pools();
            }
        }),
    );
    drain(&mut tasks, watch(&client, eps_w));
    // Subnets: recounted with the pools.
    let c = ctx.clone();
    drain(
        &mut tasks,
        watch(&client, subnets_w).inspect(move |ev| {
            if let Ok(Event::Apply(_)) | Ok(Event::InitDone) = ev {
                c.mark_all_pools();
            }
        }),
    );

    // Nodes: readiness changes and deletions matter to Pods stuck Terminating.
    let c = ctx.clone();
    let seen: Mutex<BTreeMap<String, bool>> = Mutex::new(BTreeMap::new());
    drain(
        &mut tasks,
        watch(&client, nodes_w).inspect(move |ev| {
            let mut seen = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match ev {
                Ok(Event::Apply(n)) => {
                    let name = n.metadata.name.clone().unwrap_or_default();
                    let ready = node_ready(n);
                    if seen.insert(name, ready) != Some(ready) {
                        c.request_scan();
                    }
                }
                Ok(Event::InitApply(n)) => {
                    seen.insert(n.metadata.name.clone().unwrap_or_default(), node_ready(n));
                }
                Ok(Event::Delete(n)) => {
                    seen.remove(n.metadata.name.as_deref().unwrap_or_default());
                    c.request_scan();
                }
                _ => {}
            }
        }),
    );
    // StatefulSets: scale-down and deletion release the addresses kept for their Pods.
    let c = ctx.clone();
    drain(
        &mut tasks,
        watch(&client, sets_w).inspect(move |ev| {
            if let Ok(Event::Apply(_)) | Ok(Event::Delete(_)) = ev {
                c.request_scan();
            }
        }),
    );

    wait_ready(
        &[&pods_r],
        &claims_r,
        &eps_r,
        &pools_r,
        &res_r,
        &nodes_r,
        &sets_r,
    )
    .await;
    ready_subnets(&subnets_r).await;
    ctx.metrics.set_ready(true);
    let c = ctx.clone();
    tasks.spawn(async move { collect::run(c).await });
    let c = ctx.clone();
    tasks.spawn(async move { pools::run_status(c).await });
    if ctx.settings.ipam.enable_spider_subnet && ctx.settings.ipam.enable_auto_pool_for_application
    {
        let (deps_r, deps_w) = reflector::store::<Deployment>();
        let (rs_r, rs_w) = reflector::store::<ReplicaSet>();
        let (ds_r, ds_w) = reflector::store::<DaemonSet>();
        let (jobs_r, jobs_w) = reflector::store::<Job>();
        let (cj_r, cj_w) = reflector::store::<CronJob>();
        drain(&mut tasks, watch(&client, deps_w));
        drain(&mut tasks, watch(&client, rs_w));
        drain(&mut tasks, watch(&client, ds_w));
        drain(&mut tasks, watch(&client, jobs_w));
        drain(&mut tasks, watch(&client, cj_w));
        ready(&deps_r).await;
        ready(&rs_r).await;
        ready(&ds_r).await;
        ready(&jobs_r).await;
        ready(&cj_r).await;
        let stores = autopool::AppStores {
            deployments: deps_r,
            replica_sets: rs_r,
            daemon_sets: ds_r,
            jobs: jobs_r,
            cron_jobs: cj_r,
        };
        let c = ctx.clone();
        let cfg = ctx.settings.ipam.clone();
        let every = ctx.settings.autopool_interval;
        tasks.spawn(async move { autopool::run(c, stores, cfg, every).await });
    }
    Running { ctx, tasks }
}

async fn wait_ready(
    pods: &[&Store<Pod>],
    claims: &Store<SpiderIPClaim>,
    eps: &Store<SpiderEndpoint>,
    pools: &Store<SpiderIPPool>,
    res: &Store<SpiderReservedIP>,
    nodes: &Store<Node>,
    sets: &Store<StatefulSet>,
) {
    for p in pods {
        ready(*p).await;
    }
    ready(claims).await;
    ready(eps).await;
    ready(pools).await;
    ready(res).await;
    ready(nodes).await;
    ready(sets).await;
}

async fn ready_subnets(subnets: &Store<SpiderSubnet>) {
    ready(subnets).await;
}

/// Waits for a store's first full list. `Store::wait_until_ready` wakes only the last of
/// several concurrent waiters (the applier waits on the same store), so poll it again now and
/// then.
async fn ready<K>(store: &Store<K>)
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(50), store.wait_until_ready()).await {
            Ok(_) => return,
            Err(_) => continue,
        }
    }
}
