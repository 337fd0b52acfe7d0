//! The context every controller shares: the client, the caches, the settings, metrics, events,
//! and the signals between controllers (pools to recount, scans requested, Pods seen deleted).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aipam_core::model::{NodeInfo, Pool};
use aipam_core::ranges::{IpFamily, IpSet};
use aipam_core::validate::{validate_pool, validate_reserved_ip};
use aipam_crds::convert::{pool_draft, reserved_ip_draft};
use aipam_crds::{SpiderEndpoint, SpiderIPClaim, SpiderIPPool, SpiderReservedIP, SpiderSubnet};
use aipam_rules::world::{PodView, Rules, World};
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::jiff::SignedDuration;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// Operator settings (flags and the `spiderpool-conf` ConfigMap).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Grace period and StatefulSet rule.
    pub rules: Rules,
    /// Full scan interval.
    pub gc_interval: Duration,
    /// Pool counters are recomputed at most this often.
    pub status_interval: Duration,
    /// Delay between a scan request and the scan (requests in between are merged).
    pub scan_debounce: Duration,
    /// Name the operator reports events as.
    pub reporter: String,
    /// Auto-pools are checked against their applications this often.
    pub autopool_interval: Duration,
    /// The cluster configuration (`spiderpool-conf`): SpiderSubnet feature and auto-pool sizes.
    pub ipam: aipam_core::config::IpamConfig,
    /// A pool whose allocated share reaches this percentage gets a `PoolNearlyFull` warning
    /// event and its `aipam_operator_pool_above_fullness_threshold` gauge set; 0 is off.
    pub pool_fullness_percent: u8,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rules: Rules::default(),
            gc_interval: Duration::from_secs(300),
            status_interval: Duration::from_millis(500),
            scan_debounce: Duration::from_millis(200),
            reporter: "aipam-operator".to_string(),
            autopool_interval: Duration::from_secs(2),
            ipam: aipam_core::config::IpamConfig::default(),
            pool_fullness_percent: 90,
        }
    }
}

/// The caches.
#[derive(Clone, Debug)]
pub struct Stores {
    /// Pods.
    pub pods: Store<Pod>,
    /// Claims.
    pub claims: Store<SpiderIPClaim>,
    /// Endpoints.
    pub endpoints: Store<SpiderEndpoint>,
    /// Pools.
    pub pools: Store<SpiderIPPool>,
    /// Reserved addresses.
    pub reserved: Store<SpiderReservedIP>,
    /// Nodes.
    pub nodes: Store<Node>,
    /// StatefulSets.
    pub sets: Store<StatefulSet>,
    /// SpiderSubnets.
    pub subnets: Store<SpiderSubnet>,
}

/// Pods seen deleted, remembered for a while so that their claims go at once.
#[derive(Debug, Default)]
pub struct Gone {
    uids: BTreeMap<String, Instant>,
    /// Reservation id -> (when, Pod name, Pod UID).
    reservations: BTreeMap<String, (Instant, String, String)>,
}

const GONE_MEMORY: Duration = Duration::from_secs(600);

impl Gone {
    fn prune(&mut self) {
        self.uids.retain(|_, t| t.elapsed() < GONE_MEMORY);
        self.reservations
            .retain(|_, (t, _, _)| t.elapsed() < GONE_MEMORY);
    }
}

/// The shared context.
pub struct Ctx {
    /// The client.
    pub client: Client,
    /// Settings.
    pub settings: Settings,
    /// Caches.
    pub stores: Stores,
    /// Metrics.
    pub metrics: Metrics,
    recorder: Recorder,
    dirty: Mutex<BTreeSet<String>>,
    all_dirty: Mutex<bool>,
    gone: Mutex<Gone>,
    /// Wakes the collector.
    pub scan: Notify,
    rebind: Mutex<Option<UnboundedSender<ObjectRef<Pod>>>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("settings", &self.settings)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Ctx {
    /// A context over `stores`.
    pub fn new(client: Client, settings: Settings, stores: Stores, metrics: Metrics) -> Ctx {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: settings.reporter.clone(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Ctx {
            client,
            settings,
            stores,
            metrics,
            recorder,
            dirty: Mutex::new(BTreeSet::new()),
            all_dirty: Mutex::new(true),
            gone: Mutex::new(Gone::default()),
            scan: Notify::new(),
            rebind: Mutex::new(None),
        }
    }

    /// Where [`Ctx::resync_bindings`] sends Pods for the binding controller.
    pub fn set_rebind(&self, tx: UnboundedSender<ObjectRef<Pod>>) {
        *lock(&self.rebind) = Some(tx);
    }

    /// Sends every Pod carrying a reservation to the binding controller again (a periodic
    /// resync: claims or endpoints changed behind its back are put right).
    pub fn resync_bindings(&self) -> usize {
        let guard = lock(&self.rebind);
        let Some(tx) = guard.as_ref() else {
            return 0;
        };
        let mut n = 0;
        for p in self.stores.pods.state() {
            let carries = p
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(aipam_core::reservation::ANNO_RESERVATION));
            if carries && tx.unbounded_send(ObjectRef::from_obj(&*p)).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Marks a pool's counters for recomputation.
    pub fn mark_pool(&self, pool: &str) {
        lock(&self.dirty).insert(pool.to_string());
    }

    /// Marks every pool's counters for recomputation.
    pub fn mark_all_pools(&self) {
        *lock(&self.all_dirty) = true;
    }

    /// Takes the pools to recount: `None` for all of them.
    pub fn take_dirty(&self) -> Option<BTreeSet<String>> {
        let all = std::mem::replace(&mut *lock(&self.all_dirty), false);
        let set = std::mem::take(&mut *lock(&self.dirty));
        if all {
            None
        } else {
            Some(set)
        }
    }

    /// Asks the collector for a scan soon.
    pub fn request_scan(&self) {
        self.scan.notify_one();
    }

    /// Remembers a Pod seen deleted.
    pub fn pod_gone(&self, pod: &PodView) {
        let mut g = lock(&self.gone);
        g.prune();
        g.uids.insert(pod.uid.clone(), Instant::now());
        if let Some(id) = pod.reservation_id() {
            g.reservations.insert(
                id.to_string(),
                (Instant::now(), pod.name.clone(), pod.uid.clone()),
            );
        }
    }

    /// The collector's view of the cluster, from the caches.
    pub fn world(&self) -> World {
        let pods = self
            .stores
            .pods
            .state()
            .iter()
            .filter_map(|p| PodView::from_pod(p))
            .collect();
        let mut w = World::new(pods);
        w.note_stateful_sets(self.stores.sets.state().iter().map(|s| &**s));
        w.note_nodes(self.stores.nodes.state().iter().map(|n| &**n));
        let g = lock(&self.gone);
        w.gone_uids = g.uids.keys().cloned().collect();
        w.gone_reservations = g
            .reservations
            .iter()
            .map(|(id, (_, name, uid))| (id.clone(), (name.clone(), uid.clone())))
            .collect();
        drop(g);
        w.note_endpoints(self.stores.endpoints.state().iter().map(|e| &**e));
        w
    }

    /// Valid pools, as the core sees them (invalid ones are skipped).
    pub fn pools(&self) -> BTreeMap<String, Pool> {
        self.stores
            .pools
            .state()
            .iter()
            .filter_map(|p| pool_draft(p).ok())
            .filter_map(|d| validate_pool(&d).ok())
            .map(|p| (p.name.clone(), p))
            .collect()
    }

    /// The cluster's reserved addresses of one family.
    pub fn reserved(&self, family: IpFamily) -> IpSet {
        let mut out = IpSet::new();
        for r in self.stores.reserved.state() {
            if let Ok(r) = validate_reserved_ip(&reserved_ip_draft(&r)) {
                if r.family == family {
                    if let Ok(u) = out.union(&r.ips) {
                        out = u;
                    }
                }
            }
        }
        out
    }

    /// A node's name and labels, from the cache or else a live read.
    pub async fn node_info(&self, name: &str) -> Option<NodeInfo> {
        let node = match self.stores.nodes.get(&ObjectRef::new(name)) {
            Some(n) => Some((*n).clone()),
            None => kube::Api::<Node>::all(self.client.clone())
                .get_opt(name)
                .await
                .ok()
                .flatten(),
        }?;
        Some(NodeInfo {
            name: name.to_string(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
        })
    }

    /// Publishes an event; failures are logged, never fatal.
    pub async fn event(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, regarding).await {
            tracing::debug!(error = %e, reason, "cannot publish event");
        }
    }

    /// The grace period.
    pub fn grace(&self) -> SignedDuration {
        self.settings.rules.grace
    }
}

/// An object reference to a Pod.
pub fn pod_ref(namespace: &str, name: &str, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Pod".to_string()),
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        uid: uid.map(str::to_string),
        ..ObjectReference::default()
    }
}

/// An object reference to a pool (events of cluster-scoped objects go to `default`).
pub fn pool_ref(name: &str, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some(aipam_crds::API_VERSION.to_string()),
        kind: Some("SpiderIPPool".to_string()),
        name: Some(name.to_string()),
        uid: uid.map(str::to_string),
        ..ObjectReference::default()
    }
}

/// Shared handle.
pub type SharedCtx = Arc<Ctx>;
