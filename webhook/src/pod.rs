//! The Pod hooks: reserve at mutating admission, write the endpoint at validating admission.
//!
//! Mutating (`/mutate-pod`, CREATE): select candidate pools with the core, reserve one address
//! per interface and family by creating a SpiderIPClaim (the API server's create is the lock),
//! and record the reservation in the Pod's annotation `aipam.io/reservation`; for a Pod whose
//! node is unknown and whose pools are zone-bound, reserve one address per zone and require
//! the union of those zones as node affinity. The claim carries the reservation id and is not
//! written again: the Pod carrying that id holds it (the id is minted per admission and only
//! the operator may change the annotation afterwards). Validating (`/validate-pod`, CREATE):
//! the API server has set the Pod's final name and UID; write the Pod's SpiderEndpoint, which
//! the CNI plugin reads. It never refuses. One write per address and one per Pod.

use aipam_crds::record::required_node_terms;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use aipam_core::affinity::{self, NodeSelectorTerm};
use aipam_core::alloc::seed_from;
use aipam_core::annotations::{parse_routes, ANNO_ROUTES};
use aipam_core::model::{NamespaceInfo, NodeInfo, Owner, PodInfo, Pool};
use aipam_core::ranges::{IpFamily, IpSet};
use aipam_core::reservation::{
    reservation_id, Reservation, ReservedAddress, ReservedInterface, ANNO_RESERVATION, ANNO_SKIP,
    LABEL_NAMESPACE_IPAM, LABEL_RESERVATION,
};
use aipam_core::select::{select, FamilySelection, Problem, SelectionInput};
use aipam_core::usage::Usage;
use aipam_crds::{ClaimOwner, IpVersion, PodIPAllocation, SpiderEndpoint, WorkloadEndpointStatus};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{DynamicObject, ObjectMeta};
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use crate::cache::{Cache, ClaimEntry, Snapshot};
use crate::effects::{ClaimCreated, Created, EffectError, Effects};
use crate::metrics::Metrics;
use crate::network::{self, InterfaceOptions};
use crate::response::{allow, deny};

/// Settings of the Pod hooks.
#[derive(Debug, Clone)]
pub struct PodOptions {
    /// How interfaces are found.
    pub interfaces: InterfaceOptions,
    /// Claim creations tried per pool before moving on (each conflict re-picks).
    pub attempts_per_pool: u32,
}

impl Default for PodOptions {
    fn default() -> Self {
        PodOptions {
            interfaces: InterfaceOptions::default(),
            attempts_per_pool: 16,
        }
    }
}

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
    /// A failed call: 429 when the API server was shedding load (the client should come back
    /// later, as it does for the API server's own 429s), else 500.
    fn internal(e: &EffectError) -> Refused {
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

/// The Pod hooks, over a cache and a side-effect implementation.
#[derive(Debug)]
pub struct PodHooks<E> {
    /// What the cluster looks like.
    pub cache: Cache,
    /// What the hooks do to it.
    pub effects: E,
    /// Settings.
    pub options: PodOptions,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// What the mutating hook learnt about the Pod before reserving.
/// Selection's view of the addresses in use, with those kept for the Pod being admitted (its
/// StatefulSet ordinal's previous incarnation) counted as free to it.
#[derive(Debug)]
struct OwnKept<'a> {
    cache: &'a Cache,
    kept: Vec<(String, IpAddr)>,
}

impl Usage for OwnKept<'_> {
    fn has_free(&self, pool: &str, allocatable: &IpSet) -> bool {
        self.kept
            .iter()
            .any(|(p, a)| p == pool && allocatable.contains(a))
            || self.cache.has_free(pool, allocatable)
    }
}

struct PodContext {
    namespace: String,
    name: Option<String>,
    node: Option<NodeInfo>,
    owner: Option<Owner>,
    uid: String,
    /// The claims a StatefulSet Pod's previous incarnation left for its name (read once).
    kept: Vec<ClaimEntry>,
}

fn pod_from(req: &AdmissionRequest<DynamicObject>) -> Result<(Pod, Value), Refused> {
    let obj = req
        .object
        .as_ref()
        .ok_or_else(|| Refused::bad_request("the AdmissionReview carries no Pod object"))?;
    let raw = serde_json::to_value(obj)
        .map_err(|e| Refused::bad_request(format!("cannot read the Pod: {e}")))?;
    let pod: Pod = serde_json::from_value(raw.clone())
        .map_err(|e| Refused::bad_request(format!("cannot read the Pod: {e}")))?;
    Ok((pod, raw))
}

/// The Pod's node when admission knows it: `spec.nodeName`, or the node a DaemonSet Pod is
/// pinned to by its required node affinity.
pub fn known_node(pod: &Pod) -> Option<String> {
    if let Some(n) = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
    {
        return Some(n);
    }
    affinity::pinned_node(&required_node_terms(pod))
}

fn pod_name(pod: &Pod) -> Option<String> {
    pod.metadata.name.clone().filter(|n| !n.is_empty())
}

fn family_version(f: IpFamily) -> IpVersion {
    match f {
        IpFamily::V4 => IpVersion::V4,
        IpFamily::V6 => IpVersion::V6,
    }
}

/// A claim this admission made: what its rollback deletes, and only as that object.
#[derive(Debug, Clone)]
struct MadeClaim {
    name: String,
    uid: Option<String>,
}

/// Why one pool gave no address.
#[derive(Debug, Clone)]
enum PoolMiss {
    Full,
    Contended(u32),
    Gone,
}

impl<E: Effects> PodHooks<E> {
    /// Hooks with default options and fresh metrics.
    pub fn new(cache: Cache, effects: E) -> PodHooks<E> {
        PodHooks {
            cache,
            effects,
            options: PodOptions::default(),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// The Pod's top controller: ReplicaSet → Deployment, Job → CronJob.
    pub async fn resolve_owner(&self, namespace: &str, meta: &ObjectMeta) -> Option<Owner> {
        let r = meta
            .owner_references
            .as_ref()?
            .iter()
            .find(|r| r.controller == Some(true))?;
        let mut owner = Owner {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            name: r.name.clone(),
            uid: r.uid.clone(),
            replicas: None,
        };
        let lookup = (r.kind == "ReplicaSet" && r.api_version.starts_with("apps/"))
            || (r.kind == "Job" && r.api_version.starts_with("batch/"));
        if lookup {
            match self
                .effects
                .get_controller(namespace, &r.kind, &r.name)
                .await
            {
                Ok(Some(c)) => {
                    owner.replicas = c.replicas;
                    if let Some(top) = c
                        .controller
                        .filter(|t| t.kind == "Deployment" || t.kind == "CronJob")
                    {
                        owner = Owner {
                            api_version: top.api_version,
                            kind: top.kind,
                            name: top.name,
                            uid: top.uid,
                            replicas: c.replicas,
                        };
                    }
                }
                Ok(None) => debug!(namespace, kind = %r.kind, name = %r.name, "owner not found"),
                Err(e) => warn!(namespace, kind = %r.kind, name = %r.name, error = %e,
                    "cannot read the Pod's owner; using the direct controller"),
            }
        }
        Some(owner)
    }

    /// `/mutate-pod`.
    pub async fn mutate(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let mut warnings = Vec::new();
        let mut resp = match self.mutate_inner(req, &mut warnings).await {
            Ok(Some(patch)) => match allow(req).with_patch(patch) {
                Ok(r) => r,
                Err(e) => deny(req, 500, &format!("cannot encode the patch: {e}")),
            },
            Ok(None) => allow(req),
            Err(r) => deny(req, r.code, &r.message),
        };
        if !warnings.is_empty() {
            resp.warnings = Some(warnings);
        }
        resp
    }

    async fn mutate_inner(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Patch>, Refused> {
        if req.operation != Operation::Create {
            return Ok(None);
        }
        let (pod, raw) = pod_from(req)?;
        let spec = pod.spec.clone().unwrap_or_default();
        let annotations: BTreeMap<String, String> =
            pod.metadata.annotations.clone().unwrap_or_default();
        // A record present at creation was not made for this Pod: reservation ids are minted
        // per admission, this hook is not reinvoked (reinvocationPolicy: Never), and the record
        // only ever arrives on a new Pod copied from another one (`kubectl get -o yaml`, a
        // restored backup, a template). Honouring it would hand that Pod's addresses to this
        // one: it is replaced by a fresh reservation, or removed when this hook reserves
        // nothing for the Pod.
        let replace_record = annotations.contains_key(ANNO_RESERVATION);
        if replace_record {
            info!(namespace = ?req.namespace,
                "the Pod arrives with a reservation record it was not given; it is not kept");
        }
        let unserved = || -> Result<Option<Patch>, Refused> {
            Ok(replace_record.then(|| {
                Patch(vec![PatchOperation::Remove(RemoveOperation {
                    path: PointerBuf::from_tokens(["metadata", "annotations", ANNO_RESERVATION]),
                })])
            }))
        };
        if spec.host_network == Some(true) {
            return unserved();
        }
        if annotations.get(ANNO_SKIP).map(String::as_str) == Some("true") {
            return unserved();
        }
        let namespace = req
            .namespace
            .clone()
            .or_else(|| pod.metadata.namespace.clone())
            .unwrap_or_default();
        let name = pod_name(&pod);

        // Node.
        let node = match known_node(&pod) {
            None => None,
            Some(n) => Some(self.cache.node(&n).ok_or_else(|| {
                Refused::forbidden(format!(
                    "node {n} (the Pod's spec.nodeName or required node affinity) is not known: no Node of that name exists, so no pool can be chosen for it; create the Pod once the node has joined"
                ))
            })?),
        };
        let config = self
            .cache
            .config()
            .map_err(|e| Refused::forbidden(e.to_string()))?;
        let ns_info = self
            .cache
            .namespace(&namespace)
            .unwrap_or_else(|| NamespaceInfo {
                name: namespace.clone(),
                labels: [("kubernetes.io/metadata.name".to_string(), namespace.clone())].into(),
                annotations: BTreeMap::new(),
            });
        if ns_info.labels.get(LABEL_NAMESPACE_IPAM).map(String::as_str) == Some("disabled") {
            // The webhook configuration's namespaceSelector should already have skipped it.
            return unserved();
        }
        let interfaces = network::interfaces(
            &self.effects,
            &namespace,
            &annotations,
            &self.options.interfaces,
        )
        .await
        .map_err(|e| Refused {
            code: if e.is_malformed_annotation() {
                400
            } else {
                403
            },
            message: e.to_string(),
        })?;
        if interfaces.is_empty() {
            debug!(namespace, "no interface of the Pod uses this IPAM");
            return unserved();
        }
        let owner = self.resolve_owner(&namespace, &pod.metadata).await;
        let info = PodInfo {
            namespace: namespace.clone(),
            name: name.clone(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            annotations: annotations.clone(),
            node_name: node.as_ref().map(|n| n.name.clone()),
            owner: owner.clone(),
        };
        let snap = self.cache.snapshot();
        // A StatefulSet Pod's kept addresses are its own: a pool full of them still serves it.
        let kept = self.kept_claims(&namespace, name.as_deref(), owner.as_ref());
        if let (false, Some(n)) = (kept.is_empty(), name.as_deref()) {
            // They are kept for the next Pod of the name once the previous one is gone. While a
            // Pod of this name exists, this creation fails anyway (the name is taken), and taking
            // its addresses over would strip them from the living Pod.
            let exists = self
                .effects
                .pod_exists(&namespace, n)
                .await
                .map_err(|e| Refused::internal(&e))?;
            if exists {
                return Err(Refused::forbidden(format!(
                    "Pod {namespace}/{n} already exists and holds the addresses kept for StatefulSet Pods of this name; a Pod of the same name can be created once it is gone"
                )));
            }
        }
        let usage = OwnKept {
            cache: &self.cache,
            kept: kept
                .iter()
                .filter_map(|e| e.address.map(|a| (e.object.spec.pool.clone(), a)))
                .collect(),
        };
        let selection = select(&SelectionInput {
            pod: &info,
            namespace: &ns_info,
            node: node.as_ref(),
            nodes: if snap.nodes.is_empty() {
                None
            } else {
                Some(&snap.nodes)
            },
            interfaces: &interfaces,
            config: &config,
            pools: &snap.pools,
            used: &usage,
            reserved_v4: &snap.reserved_v4,
            reserved_v6: &snap.reserved_v6,
        })
        .map_err(|refusal| Refused {
            code: if refusal
                .problems
                .iter()
                .any(|p| matches!(p, Problem::Annotation(_)))
            {
                400
            } else {
                403
            },
            message: refusal.to_string(),
        })?;
        // Shown by kubectl ("Warning: ...").
        warnings.extend(selection.notes.iter().cloned());
        for i in &selection.interfaces {
            for fs in &i.families {
                if let Some(plan) = &fs.auto_pool {
                    if !snap.pools.contains_key(&plan.pool) {
                        return Err(Refused::forbidden(format!(
                            "interface {}: the SpiderSubnet auto-pool {} ({} address(es) from SpiderSubnet {}) does not exist yet: the operator creates it for the Pod's Deployment, ReplicaSet, StatefulSet, DaemonSet, Job or CronJob, and the controller's next try is admitted (a Pod without a controller cannot use a SpiderSubnet annotation yet)",
                            i.interface, plan.pool, plan.desired_ips, plan.subnet
                        )));
                    }
                }
            }
        }
        if req.dry_run {
            return unserved();
        }

        let ctx = PodContext {
            namespace,
            name,
            node,
            owner,
            uid: req.uid.clone(),
            kept,
        };
        let started = Instant::now();
        let id = reservation_id(&req.uid);
        let mut record = Reservation {
            id: id.clone(),
            interfaces: Vec::new(),
        };
        let mut created: Vec<MadeClaim> = Vec::new();
        let outcome = self
            .reserve_all(&ctx, &snap, &selection, &config, &mut record, &mut created)
            .await;
        let outcome = match outcome {
            Ok(()) => self.record_patch(
                &pod,
                &raw,
                &record,
                &snap,
                ctx.node.is_some(),
                replace_record,
            ),
            Err(e) => Err(e),
        };
        self.metrics
            .reservation_seconds
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(patch) => {
                info!(namespace = %ctx.namespace, pod = ?ctx.name, reservation = %id, addresses = %record,
                    "reserved");
                Ok(Some(patch))
            }
            Err(e) => {
                self.release(&created).await;
                Err(e)
            }
        }
    }

    /// Deletes the claims made by this request, each only as the object this request made
    /// (its UID): one collected meanwhile and claimed anew by another admission stays.
    async fn release(&self, created: &[MadeClaim]) {
        for c in created {
            match self.effects.delete_claim(&c.name, c.uid.as_deref()).await {
                Ok(()) => self.cache.claim_deleted(&c.name),
                Err(e) => warn!(claim = %c.name, error = %e,
                    "cannot release a claim; the operator collects it after the grace period"),
            }
        }
    }

    async fn reserve_all(
        &self,
        ctx: &PodContext,
        snap: &Snapshot,
        selection: &aipam_core::select::Selection,
        config: &aipam_core::config::IpamConfig,
        record: &mut Reservation,
        created: &mut Vec<MadeClaim>,
    ) -> Result<(), Refused> {
        for iface in &selection.interfaces {
            let mut ri = ReservedInterface {
                interface: iface.interface.clone(),
                clean_gateway: iface.clean_gateway,
                ..ReservedInterface::default()
            };
            for fs in &iface.families {
                let list = self
                    .reserve_family(ctx, snap, config, &iface.interface, fs, &record.id, created)
                    .await?;
                match fs.family {
                    IpFamily::V4 => ri.ipv4 = list,
                    IpFamily::V6 => ri.ipv6 = list,
                }
            }
            record.interfaces.push(ri);
        }
        Ok(())
    }

    /// The claims a StatefulSet Pod's previous incarnation left for its name (any interface,
    /// family and pool); empty for other Pods.
    fn kept_claims(
        &self,
        namespace: &str,
        name: Option<&str>,
        owner: Option<&Owner>,
    ) -> Vec<ClaimEntry> {
        let (Some(name), Some(owner)) = (name, owner.filter(|o| o.is_stateful_set())) else {
            return Vec::new();
        };
        self.cache.claims_where(|e| {
            let s = &e.object.spec;
            s.namespace == namespace
                && s.pod_name.as_deref() == Some(name)
                && s.owner
                    .as_ref()
                    .is_some_and(|o| o.kind == "StatefulSet" && o.name == owner.name)
                && e.object.metadata.deletion_timestamp.is_none()
        })
    }

    /// A StatefulSet Pod's claim of a previous incarnation, for this interface and family, in
    /// one of the candidate pools (earliest candidate first).
    fn stateful_claim(
        &self,
        ctx: &PodContext,
        interface: &str,
        fs: &FamilySelection,
    ) -> Option<(String, String, ReservedAddress)> {
        for c in &fs.candidates {
            let found = ctx.kept.iter().find(|e| {
                let s = &e.object.spec;
                s.pool == c.pool
                    && s.interface == interface
                    && s.ip_version == family_version(fs.family)
            });
            if let Some(e) = found {
                let address = e.address?;
                return Some((
                    e.object.metadata.name.clone().unwrap_or_default(),
                    e.object.spec.reservation.clone(),
                    ReservedAddress {
                        pool: c.pool.clone(),
                        address,
                    },
                ));
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    async fn reserve_family(
        &self,
        ctx: &PodContext,
        snap: &Snapshot,
        config: &aipam_core::config::IpamConfig,
        interface: &str,
        fs: &FamilySelection,
        id: &str,
        created: &mut Vec<MadeClaim>,
    ) -> Result<Vec<ReservedAddress>, Refused> {
        if config.enable_stateful_set {
            if let Some((claim, previous, addr)) = self.stateful_claim(ctx, interface, fs) {
                // The claim changes hands to this reservation (label and spec together), only
                // while it is still the previous Pod's.
                match self.effects.take_over_claim(&claim, &previous, id).await {
                    Ok(true) => {
                        info!(claim = %claim, "StatefulSet Pod keeps its address");
                        return Ok(vec![addr]);
                    }
                    Ok(false) => {
                        debug!(claim = %claim,
                            "the StatefulSet claim is gone or taken meanwhile; reserving anew");
                    }
                    Err(e) => return Err(Refused::internal(&e)),
                }
            }
        }
        let zone_set = aipam_core::select::reservation_set(fs);
        let provisional =
            ctx.node.is_none() && zone_set.len() > 1 && zone_set.iter().any(|c| c.zone);
        let mut out: Vec<ReservedAddress> = Vec::new();
        let mut terms: Vec<NodeSelectorTerm> = Vec::new();
        let mut tried: Vec<(String, PoolMiss)> = Vec::new();
        for c in &fs.candidates {
            let Some(pool) = snap.pools.get(&c.pool) else {
                tried.push((c.pool.clone(), PoolMiss::Gone));
                continue;
            };
            let zone = affinity::pool_terms(pool);
            if c.zone {
                // One address per distinct zone is enough.
                if let Some(ts) = &zone {
                    if ts.iter().all(|t| terms.contains(t)) {
                        continue;
                    }
                }
            }
            match self
                .reserve_in_pool(ctx, snap, pool, fs.family, interface, id, provisional)
                .await
                .map_err(|e| Refused::internal(&e))?
            {
                Ok((name, address)) => {
                    created.push(name);
                    out.push(ReservedAddress {
                        pool: pool.name.clone(),
                        address,
                    });
                    if !c.zone {
                        break;
                    }
                    for t in zone.into_iter().flatten() {
                        if !terms.contains(&t) {
                            terms.push(t);
                        }
                    }
                }
                Err(miss) => tried.push((pool.name.clone(), miss)),
            }
        }
        if out.is_empty() {
            let list: Vec<String> = tried
                .iter()
                .map(|(p, m)| match m {
                    PoolMiss::Full => format!("pool {p}: no free address left"),
                    PoolMiss::Contended(n) => format!(
                        "pool {p}: {n} attempts in a row found the picked address taken by concurrent reservations"
                    ),
                    PoolMiss::Gone => format!("pool {p}: it no longer exists"),
                })
                .collect();
            return Err(Refused::forbidden(format!(
                "interface {interface}: no {} address could be reserved: {}; nothing was reserved for this Pod, retry or add addresses",
                fs.family,
                list.join("; ")
            )));
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn reserve_in_pool(
        &self,
        ctx: &PodContext,
        snap: &Snapshot,
        pool: &Pool,
        family: IpFamily,
        interface: &str,
        id: &str,
        provisional: bool,
    ) -> Result<Result<(MadeClaim, IpAddr), PoolMiss>, EffectError> {
        let reserved = match family {
            IpFamily::V4 => &snap.reserved_v4,
            IpFamily::V6 => &snap.reserved_v6,
        };
        let allocatable = pool.allocatable(reserved);
        // Addresses lost to another writer whose claim the cache has not seen yet.
        let mut taken: Vec<IpAddr> = Vec::new();
        for attempt in 0..self.options.attempts_per_pool {
            let seed = seed_from(&[
                ctx.uid.as_bytes(),
                pool.name.as_bytes(),
                &attempt.to_le_bytes(),
            ]);
            let Some(ip) = self.cache.pick(&pool.name, &allocatable, seed, &taken) else {
                return Ok(Err(PoolMiss::Full));
            };
            let claim = aipam_crds::record::claim_for(
                &ReservedAddress {
                    pool: pool.name.clone(),
                    address: ip,
                },
                &aipam_crds::record::ClaimTarget {
                    namespace: &ctx.namespace,
                    pod_name: ctx.name.as_deref(),
                    interface,
                    reservation: id,
                    owner: ctx.owner.as_ref().map(|o| ClaimOwner {
                        kind: o.kind.clone(),
                        name: o.name.clone(),
                        uid: o.uid.clone(),
                    }),
                    provisional,
                },
            );
            let name = claim.metadata.name.clone().unwrap_or_default();
            match self.effects.create_claim(&claim).await? {
                ClaimCreated::Created { uid } => {
                    self.cache.claim_created(claim);
                    return Ok(Ok((MadeClaim { name, uid }, ip)));
                }
                ClaimCreated::AlreadyExists => {
                    debug!(claim = %name, "address taken meanwhile; picking again");
                    self.metrics.claim_conflicts.inc();
                    taken.push(ip);
                }
            }
        }
        Ok(Err(PoolMiss::Contended(self.options.attempts_per_pool)))
    }

    /// The JSON Patch that records the reservation (and the zones' node affinity).
    fn record_patch(
        &self,
        pod: &Pod,
        raw: &Value,
        record: &Reservation,
        snap: &Snapshot,
        node_known: bool,
        replace_record: bool,
    ) -> Result<Patch, Refused> {
        let mut ops = Vec::new();
        let value = Value::String(record.to_annotation());
        if replace_record {
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

    /// `/validate-pod`: writes the Pod's SpiderEndpoint under its final name and UID. Always
    /// allows.
    pub async fn bind(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        if req.operation == Operation::Create && !req.dry_run {
            if let Err(e) = self.bind_inner(req).await {
                warn!(namespace = ?req.namespace, name = %req.name, error = %e,
                    "cannot write the endpoint at admission; the operator writes it later");
            }
        }
        allow(req)
    }

    async fn bind_inner(&self, req: &AdmissionRequest<DynamicObject>) -> Result<(), String> {
        let (pod, _) = pod_from(req).map_err(|e| e.message)?;
        let Some(value) = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNO_RESERVATION))
        else {
            return Ok(());
        };
        let record = Reservation::parse(value).map_err(|e| e.to_string())?;
        let namespace = req
            .namespace
            .clone()
            .or_else(|| pod.metadata.namespace.clone())
            .unwrap_or_default();
        let name = pod_name(&pod)
            .or_else(|| Some(req.name.clone()).filter(|n| !n.is_empty()))
            .ok_or("the Pod has no name yet")?;
        let uid = pod
            .metadata
            .uid
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or("the Pod has no UID yet")?;
        let owner = self.resolve_owner(&namespace, &pod.metadata).await;
        let endpoint = self.endpoint_for(&pod, &namespace, &name, &uid, &record, owner.as_ref());
        if self
            .effects
            .create_endpoint(&endpoint)
            .await
            .map_err(|e| e.to_string())?
            == Created::Created
        {
            return Ok(());
        }
        // An endpoint of that name exists. Replaced when its Pod is gone (a StatefulSet Pod made
        // again under its name, an endpoint that outlived its Pod); left alone while a Pod of
        // that name lives: this create then fails with AlreadyExists after admission (a name
        // taken, or a generated name that collided and that the API server retries under
        // another), and the endpoint is that live Pod's (found on the real API server).
        if self
            .effects
            .pod_exists(&namespace, &name)
            .await
            .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "the SpiderEndpoint {namespace}/{name} belongs to the live Pod of that name: not replaced (this create will fail with AlreadyExists)"
            ));
        }
        self.effects
            .replace_endpoint(&endpoint)
            .await
            .map_err(|e| e.to_string())
    }

    fn endpoint_for(
        &self,
        pod: &Pod,
        namespace: &str,
        name: &str,
        uid: &str,
        record: &Reservation,
        owner: Option<&Owner>,
    ) -> SpiderEndpoint {
        let ips = if record.is_provisional() {
            Vec::new()
        } else {
            let routes = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNO_ROUTES))
                .and_then(|v| parse_routes(v).ok())
                .unwrap_or_default();
            match record.details(&self.cache.snapshot().pools, &routes) {
                // The operator builds the same entries; one builder keeps them equal.
                Ok(details) => aipam_crds::record::endpoint_ips(&details),
                Err(e) => {
                    warn!(namespace, pod = name, error = %e, "cannot describe the reservation");
                    Vec::new()
                }
            }
        };
        let status = WorkloadEndpointStatus {
            current: PodIPAllocation {
                uid: uid.to_string(),
                node: known_node(pod).unwrap_or_default(),
                ips,
            },
            owner_controller_type: owner.map_or_else(|| "Pod".to_string(), |o| o.kind.clone()),
            owner_controller_name: owner.map_or_else(|| name.to_string(), |o| o.name.clone()),
        };
        let value = json!({
            "apiVersion": aipam_crds::API_VERSION,
            "kind": "SpiderEndpoint",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {LABEL_RESERVATION: record.id},
                // No ownerReference to the Pod here: the Pod is not stored yet, and the
                // garbage collector deletes at once a dependent whose owner does not exist.
                // The operator adds it once the Pod exists.
            },
            "status": status,
        });
        // The JSON above has the exact shape of the type.
        serde_json::from_value(value).unwrap_or_else(|_| {
            let mut ep = SpiderEndpoint::new(name, aipam_crds::SpiderEndpointFields {});
            ep.metadata.namespace = Some(namespace.to_string());
            ep
        })
    }
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
        return Err(Refused::forbidden(format!(
            "the node affinity needed to keep the Pod in the zones of its pools would have {} terms (its own required terms combined with the pools' zones), more than the {} allowed; simplify the Pod's required node affinity or name fewer zone pools",
            required.len(),
            affinity::MAX_TERMS
        )));
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
