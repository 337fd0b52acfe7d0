//! What the handlers read: a mirror of the cluster objects the rules need, fed by watches
//! (see [`crate::watch`]) or, in tests, directly.
//!
//! Besides the objects, the cache keeps the index `pool -> addresses held` that pool selection
//! and address picking need. The index follows claim events, and this replica also updates it
//! right after it creates or deletes a claim, so it never picks again an address it has just
//! taken, even before its own watch reports the claim.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use aipam_core::config::{ConfigError, IpamConfig, CONFIGMAP_NAME};
use aipam_core::model::{NamespaceInfo, NodeInfo, Pool};
use aipam_core::ranges::{IpFamily, IpSet};
use aipam_core::usage::{Usage, UsedIndex};
use aipam_core::validate::{
    mark_overlaps_by_age, validate_pool, validate_reserved_ip, validate_subnet, Invalid, Subnet,
};
use aipam_crds::convert::{pool_draft, reserved_ip_draft, subnet_draft};
use aipam_crds::{SpiderIPClaim, SpiderIPPool, SpiderReservedIP, SpiderSubnet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use k8s_openapi::jiff::Timestamp;

/// The stores the cache is made of; `/readyz` waits for each to be listed once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StoreKind {
    /// SpiderIPPools.
    Pools,
    /// SpiderIPClaims.
    Claims,
    /// SpiderReservedIPs.
    ReservedIps,
    /// SpiderSubnets.
    Subnets,
    /// Namespaces.
    Namespaces,
    /// Nodes.
    Nodes,
    /// The `spiderpool-conf` ConfigMap.
    Config,
}

impl StoreKind {
    /// Every store.
    pub const ALL: [StoreKind; 7] = [
        StoreKind::Pools,
        StoreKind::Claims,
        StoreKind::ReservedIps,
        StoreKind::Subnets,
        StoreKind::Namespaces,
        StoreKind::Nodes,
        StoreKind::Config,
    ];

    /// A short name for logs and `/readyz`.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Pools => "spiderippools",
            StoreKind::Claims => "spideripclaims",
            StoreKind::ReservedIps => "spiderreservedips",
            StoreKind::Subnets => "spidersubnets",
            StoreKind::Namespaces => "namespaces",
            StoreKind::Nodes => "nodes",
            StoreKind::Config => "configmap/spiderpool-conf",
        }
    }
}

/// A SpiderIPPool and its reading by the core (a pool that fails validation is kept, so that
/// selection can name it, but serves nobody).
#[derive(Clone, Debug)]
pub struct PoolEntry {
    /// The object.
    pub object: Arc<SpiderIPPool>,
    /// The core's pool, or why it is invalid.
    pub pool: Result<Pool, Invalid>,
}

/// What a claim says, as the index needs it.
#[derive(Clone, Debug)]
pub struct ClaimEntry {
    /// The object.
    pub object: Arc<SpiderIPClaim>,
    /// The parsed address (`None` if the claim's address is not an IP).
    pub address: Option<IpAddr>,
}

#[derive(Debug, Default)]
struct Inner {
    pools: BTreeMap<String, PoolEntry>,
    subnets: BTreeMap<String, (Arc<SpiderSubnet>, Option<Subnet>)>,
    reserved: BTreeMap<String, Arc<SpiderReservedIP>>,
    claims: BTreeMap<String, ClaimEntry>,
    used: BTreeMap<String, UsedIndex>,
    /// Valid pools sharing addresses with an older one, and that older one
    /// (`aipam_core::validate::mark_overlaps`); recomputed when a pool changes.
    overlaps: BTreeMap<String, String>,
    namespaces: BTreeMap<String, NamespaceInfo>,
    nodes: BTreeMap<String, NodeInfo>,
    config: Option<Result<IpamConfig, ConfigError>>,
    synced: Vec<StoreKind>,
}

/// A consistent copy of what pool selection needs, taken under one lock.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Valid pools by name.
    pub pools: BTreeMap<String, Pool>,
    /// SpiderReservedIP addresses, IPv4.
    pub reserved_v4: IpSet,
    /// SpiderReservedIP addresses, IPv6.
    pub reserved_v6: IpSet,
    /// The configuration (defaults when the ConfigMap is absent).
    pub config: Result<IpamConfig, ConfigError>,
    /// All nodes.
    pub nodes: Vec<NodeInfo>,
}

/// The shared cache. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    inner: Arc<RwLock<Inner>>,
}

/// Every object kind the cache holds.
#[derive(Clone, Debug)]
pub enum Object {
    /// A pool (boxed: the largest of the others).
    Pool(Box<SpiderIPPool>),
    /// A claim.
    Claim(SpiderIPClaim),
    /// A reserved IP object.
    ReservedIp(SpiderReservedIP),
    /// A subnet.
    Subnet(SpiderSubnet),
    /// A namespace.
    Namespace(Namespace),
    /// A node (boxed: by far the largest object).
    Node(Box<Node>),
    /// The configuration ConfigMap.
    Config(ConfigMap),
}

fn name_of(meta: &kube::core::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// Selection asks the cache directly whether a pool has room, instead of copying every
/// pool's reservations into each admission's snapshot.
impl Usage for Cache {
    fn has_free(&self, pool: &str, allocatable: &IpSet) -> bool {
        self.read().used.has_free(pool, allocatable)
    }
}

impl Cache {
    /// An empty cache, not synced.
    pub fn new() -> Cache {
        Cache::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than stopping the webhook would; keep serving.
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a store as listed once (tests and the watch loop).
    pub fn mark_synced(&self, kind: StoreKind) {
        let mut g = self.write();
        if !g.synced.contains(&kind) {
            g.synced.push(kind);
        }
    }

    /// Stores not yet listed.
    pub fn unsynced(&self) -> Vec<StoreKind> {
        let g = self.read();
        StoreKind::ALL
            .into_iter()
            .filter(|k| !g.synced.contains(k))
            .collect()
    }

    /// Whether every store has been listed once.
    pub fn is_ready(&self) -> bool {
        self.unsynced().is_empty()
    }

    /// An object was added or changed.
    pub fn apply(&self, obj: Object) {
        let mut g = self.write();
        let pool = matches!(obj, Object::Pool(_));
        apply_locked(&mut g, obj);
        if pool {
            recheck_overlaps(&mut g);
        }
    }

    /// An object was deleted.
    pub fn delete(&self, obj: &Object) {
        let mut g = self.write();
        delete_locked(&mut g, obj);
        if matches!(obj, Object::Pool(_)) {
            recheck_overlaps(&mut g);
        }
    }

    /// Replaces the whole content of one store (a relist), then marks it synced.
    pub fn replace(&self, kind: StoreKind, objects: Vec<Object>) {
        let mut g = self.write();
        match kind {
            StoreKind::Pools => g.pools.clear(),
            StoreKind::Claims => {
                g.claims.clear();
                g.used.clear();
            }
            StoreKind::ReservedIps => g.reserved.clear(),
            StoreKind::Subnets => g.subnets.clear(),
            StoreKind::Namespaces => g.namespaces.clear(),
            StoreKind::Nodes => g.nodes.clear(),
            StoreKind::Config => g.config = None,
        }
        for o in objects {
            apply_locked(&mut g, o);
        }
        if kind == StoreKind::Pools {
            recheck_overlaps(&mut g);
        }
        if !g.synced.contains(&kind) {
            g.synced.push(kind);
        }
    }

    /// This replica created a claim: index it now.
    pub fn claim_created(&self, claim: SpiderIPClaim) {
        self.apply(Object::Claim(claim));
    }

    /// This replica deleted a claim: forget it now.
    pub fn claim_deleted(&self, name: &str) {
        let mut g = self.write();
        remove_claim(&mut g, name);
    }

    /// The copy selection works on.
    pub fn snapshot(&self) -> Snapshot {
        let g = self.read();
        let mut reserved_v4 = IpSet::new();
        let mut reserved_v6 = IpSet::new();
        for r in g.reserved.values() {
            if let Ok(v) = validate_reserved_ip(&reserved_ip_draft(r)) {
                let target = match v.family {
                    IpFamily::V4 => &mut reserved_v4,
                    IpFamily::V6 => &mut reserved_v6,
                };
                if let Ok(u) = target.union(&v.ips) {
                    *target = u;
                }
            }
        }
        Snapshot {
            pools: g
                .pools
                .iter()
                .filter_map(|(n, e)| {
                    let mut p = e.pool.as_ref().ok()?.clone();
                    p.overlaps = g.overlaps.get(n).cloned();
                    Some((n.clone(), p))
                })
                .collect(),
            reserved_v4,
            reserved_v6,
            config: g
                .config
                .clone()
                .unwrap_or_else(|| Ok(IpamConfig::default())),
            nodes: g.nodes.values().cloned().collect(),
        }
    }

    /// Addresses held in one pool now, as a set (O(held); for validation, not per Pod).
    pub fn used(&self, pool: &str) -> IpSet {
        self.read()
            .used
            .get(pool)
            .map(UsedIndex::to_set)
            .unwrap_or_default()
    }

    /// Picks a free address of `allocatable` for `pool` under the read lock, without copying
    /// the pool's reservations ([`aipam_core::alloc::pick`] over this cache's index), skipping
    /// those in `avoid` (taken by someone whose claim this cache has not seen yet).
    pub fn pick(
        &self,
        pool: &str,
        allocatable: &IpSet,
        seed: u64,
        avoid: &[IpAddr],
    ) -> Option<IpAddr> {
        let g = self.read();
        let empty = UsedIndex::new();
        aipam_core::alloc::pick(allocatable, g.used.get(pool).unwrap_or(&empty), avoid, seed)
    }

    /// One pool entry.
    pub fn pool(&self, name: &str) -> Option<PoolEntry> {
        self.read().pools.get(name).cloned()
    }

    /// Every pool entry.
    pub fn pools(&self) -> Vec<PoolEntry> {
        self.read().pools.values().cloned().collect()
    }

    /// Every valid subnet.
    pub fn subnets(&self) -> Vec<Subnet> {
        self.read()
            .subnets
            .values()
            .filter_map(|(_, s)| s.clone())
            .collect()
    }

    /// The UID of a SpiderSubnet (valid or not), by name.
    pub fn subnet_uid(&self, name: &str) -> Option<String> {
        self.read()
            .subnets
            .get(name)
            .and_then(|(s, _)| s.metadata.uid.clone())
    }

    /// Every claim.
    pub fn claims(&self) -> Vec<ClaimEntry> {
        self.read().claims.values().cloned().collect()
    }

    /// The claims matching `keep`, judged under the read lock (no copy of the others).
    pub fn claims_where(&self, keep: impl Fn(&ClaimEntry) -> bool) -> Vec<ClaimEntry> {
        self.read()
            .claims
            .values()
            .filter(|c| keep(c))
            .cloned()
            .collect()
    }

    /// One claim.
    pub fn claim(&self, name: &str) -> Option<ClaimEntry> {
        self.read().claims.get(name).cloned()
    }

    /// Claims of one pool.
    pub fn claims_of_pool(&self, pool: &str) -> Vec<ClaimEntry> {
        self.read()
            .claims
            .values()
            .filter(|c| c.object.spec.pool == pool)
            .cloned()
            .collect()
    }

    /// A namespace.
    pub fn namespace(&self, name: &str) -> Option<NamespaceInfo> {
        self.read().namespaces.get(name).cloned()
    }

    /// A node.
    pub fn node(&self, name: &str) -> Option<NodeInfo> {
        self.read().nodes.get(name).cloned()
    }

    /// The configuration.
    pub fn config(&self) -> Result<IpamConfig, ConfigError> {
        self.read()
            .config
            .clone()
            .unwrap_or_else(|| Ok(IpamConfig::default()))
    }
}

fn apply_locked(g: &mut Inner, obj: Object) {
    match obj {
        Object::Pool(p) => {
            let name = name_of(&p.metadata);
            let pool = pool_draft(&p)
                .map_err(|e| Invalid {
                    kind: "SpiderIPPool",
                    name: name.clone(),
                    errors: vec![aipam_core::validate::FieldError {
                        field: e.field.to_string(),
                        message: e.source.to_string(),
                    }],
                })
                .and_then(|d| validate_pool(&d));
            g.pools.insert(
                name,
                PoolEntry {
                    object: Arc::new(*p),
                    pool,
                },
            );
        }
        Object::Claim(c) => {
            let name = name_of(&c.metadata);
            remove_claim(g, &name);
            let address: Option<IpAddr> = c.spec.address.parse().ok();
            if let Some(a) = address {
                g.used.entry(c.spec.pool.clone()).or_default().insert(&a);
            }
            g.claims.insert(
                name,
                ClaimEntry {
                    object: Arc::new(c),
                    address,
                },
            );
        }
        Object::ReservedIp(r) => {
            g.reserved.insert(name_of(&r.metadata), Arc::new(r));
        }
        Object::Subnet(s) => {
            let v = validate_subnet(&subnet_draft(&s)).ok();
            g.subnets.insert(name_of(&s.metadata), (Arc::new(s), v));
        }
        Object::Namespace(n) => {
            let name = name_of(&n.metadata);
            g.namespaces.insert(
                name.clone(),
                NamespaceInfo {
                    name,
                    labels: n.metadata.labels.clone().unwrap_or_default(),
                    annotations: n.metadata.annotations.clone().unwrap_or_default(),
                },
            );
        }
        Object::Node(n) => {
            let name = name_of(&n.metadata);
            g.nodes.insert(
                name.clone(),
                NodeInfo {
                    name,
                    labels: n.metadata.labels.clone().unwrap_or_default(),
                },
            );
        }
        Object::Config(cm) => {
            let read = IpamConfig::read(&cm.data.clone().unwrap_or_default());
            match &read {
                Ok(r) => {
                    for w in &r.warnings {
                        tracing::warn!(configmap = CONFIGMAP_NAME, "{w}");
                    }
                }
                Err(e) => tracing::error!(
                    "{e}; every Pod is refused until it is fixed (aipamctl validate reads it offline)"
                ),
            }
            g.config = Some(read.map(|r| r.config));
        }
    }
}

/// Recomputes which valid pools overlap an older one (creationTimestamp, then name).
fn recheck_overlaps(g: &mut Inner) {
    let pools: Vec<(Option<Timestamp>, Pool)> = g
        .pools
        .values()
        .filter_map(|e| {
            let p = e.pool.as_ref().ok()?.clone();
            Some((
                e.object.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p,
            ))
        })
        .collect();
    g.overlaps = mark_overlaps_by_age(pools)
        .into_iter()
        .filter_map(|p| Some((p.name.clone(), p.overlaps?)))
        .collect();
}

fn remove_claim(g: &mut Inner, name: &str) {
    if let Some(old) = g.claims.remove(name) {
        if let Some(a) = old.address {
            if let Some(set) = g.used.get_mut(&old.object.spec.pool) {
                set.remove(&a);
                if set.is_empty() {
                    g.used.remove(&old.object.spec.pool);
                }
            }
        }
    }
}

fn delete_locked(g: &mut Inner, obj: &Object) {
    match obj {
        Object::Pool(p) => {
            g.pools.remove(&name_of(&p.metadata));
        }
        Object::Claim(c) => remove_claim(g, &name_of(&c.metadata)),
        Object::ReservedIp(r) => {
            g.reserved.remove(&name_of(&r.metadata));
        }
        Object::Subnet(s) => {
            g.subnets.remove(&name_of(&s.metadata));
        }
        Object::Namespace(n) => {
            g.namespaces.remove(&name_of(&n.metadata));
        }
        Object::Node(n) => {
            g.nodes.remove(&name_of(&n.metadata));
        }
        Object::Config(_) => g.config = None,
    }
}
