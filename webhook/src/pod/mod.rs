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
//!
//! Where things are: the decisions are pure, in [`plan`] (whether the Pod is served, its pools
//! per interface and family, the StatefulSet claim to take over), [`patch`] (the JSON Patch and
//! the zones' node affinity), [`refusal`] (every refusal text) and the core's
//! [`aipam_core::reserve::FamilyReservation`] (the walk over candidate pools) and
//! [`aipam_core::alloc::pick`] (the address). [`PodHooks::mutate`] is the executor: it reads
//! what the plan needs, carries it out ([`reserve`]: claim creates, rollback) and records
//! metrics. [`bind`] is the validating hook.

use std::sync::Arc;
use std::time::Instant;

use aipam_core::affinity;
use aipam_core::auto_pool;
use aipam_core::model::Owner;
use aipam_core::ranges::{IpFamily, IpSet};
use aipam_core::reservation::reservation_id;
use aipam_core::select;
use aipam_crds::auto_pool::new_pool;
use aipam_crds::record::required_node_terms;
use aipam_crds::SpiderIPPool;
use aipam_rules::owner;
use json_patch::Patch;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{DynamicObject, ObjectMeta};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::cache::Cache;
use crate::effects::{Effects, PoolCreated};
use crate::metrics::Metrics;
use crate::network::{self, InterfaceOptions};
use crate::response::{allow, deny};

mod bind;
mod patch;
mod plan;
mod refusal;
mod reserve;

pub use refusal::Refused;

use plan::{Facts, Screened};
use reserve::Claimant;

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

fn pod_from(req: &AdmissionRequest<DynamicObject>) -> Result<(Pod, Value), Refused> {
    let obj = req
        .object
        .as_ref()
        .ok_or_else(|| Refused::unreadable_pod(None))?;
    let raw = serde_json::to_value(obj).map_err(|e| Refused::unreadable_pod(Some(&e)))?;
    let pod: Pod =
        serde_json::from_value(raw.clone()).map_err(|e| Refused::unreadable_pod(Some(&e)))?;
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

    /// The Pod's top controller by the one owner rule ([`aipam_rules::owner`]): ReplicaSet →
    /// Deployment, Job → CronJob, replicas from the object read; this reads it.
    pub async fn resolve_owner(&self, namespace: &str, meta: &ObjectMeta) -> Option<Owner> {
        let direct = owner::direct_controller(meta)?;
        let facts = if owner::needs_lookup(&direct) {
            let (kind, name) = (&direct.kind, &direct.name);
            match self.effects.get_controller(namespace, kind, name).await {
                Ok(found) => {
                    if found.is_none() {
                        debug!(namespace, %kind, %name, "owner not found");
                    }
                    found
                }
                Err(e) => {
                    warn!(namespace, %kind, %name, error = %e,
                        "cannot read the Pod's owner; using the direct controller");
                    None
                }
            }
        } else {
            None
        };
        Some(owner::top_owner(direct, facts))
    }

    /// Makes a third-party controller's auto pool, as Spiderpool's IPAM does at allocation:
    /// Spiderpool's name, labels, SpiderSubnet owner and podAffinity, the fixed number of
    /// addresses the Pod asks for, carved from the subnet's free addresses; then the cache
    /// holds it, so that this admission uses it at once.
    async fn make_auto_pool(
        &self,
        namespace: &str,
        owner: &Owner,
        m: &plan::MissingAutoPool,
        snap: &crate::cache::Snapshot,
    ) -> Result<(), Refused> {
        let not_made = |why: String| Refused::auto_pool_not_made(&m.interface, &m.plan, &why);
        let Some(subnet) = self
            .cache
            .subnets()
            .into_iter()
            .find(|s| s.name == m.plan.subnet)
        else {
            return Err(not_made(format!(
                "no valid SpiderSubnet {} exists: create it, or name another in {}",
                m.plan.subnet,
                aipam_core::annotations::ANNO_SUBNET
            )));
        };
        if subnet.family != m.family {
            return Err(not_made(format!(
                "SpiderSubnet {} is {}, but this is the {} pool: name an {} subnet there",
                subnet.name, subnet.family, m.family, m.family
            )));
        }
        let reserved = match m.family {
            IpFamily::V4 => &snap.reserved_v4,
            IpFamily::V6 => &snap.reserved_v6,
        };
        let free = auto_pool::free_in_subnet(&subnet, snap.pools.values(), reserved);
        let ips = auto_pool::resize(&IpSet::new(), m.plan.desired_ips, &free, &IpSet::new())
            .filter(|ips| ips.len() >= u128::from(m.plan.desired_ips))
            .ok_or_else(|| {
                not_made(format!(
                    "SpiderSubnet {} has {} free address(es): free some, or ask for fewer with {}",
                    subnet.name,
                    free.len(),
                    aipam_core::annotations::ANNO_IPPOOL_IP_NUMBER
                ))
            })?;
        let app = select::owner_app(owner, namespace);
        let key = auto_pool::Key {
            app: &app,
            subnet: &subnet.name,
            family: m.family,
            interface: &m.interface,
        };
        let uid = self.cache.subnet_uid(&subnet.name).unwrap_or_default();
        let object = new_pool(
            &key,
            m.plan.reclaim,
            &m.plan.desired_ips.to_string(),
            &subnet,
            &uid,
            &ips,
        );
        let pool: SpiderIPPool = serde_json::from_value(object)
            .map_err(|e| not_made(format!("the pool does not encode ({e})")))?;
        match self
            .effects
            .create_pool(&pool)
            .await
            .map_err(|e| Refused::failed_call(&e))?
        {
            PoolCreated::Created(made) => {
                info!(pool = %m.plan.pool, owner = %format!("{} {namespace}/{}", owner.kind, owner.name),
                    addresses = %ips, "made a third-party controller's auto-pool");
                self.cache.apply(crate::cache::Object::Pool(made));
                Ok(())
            }
            PoolCreated::AlreadyExists => Err(not_made(
                "another admission is making it now; the controller's next try is admitted".into(),
            )),
            PoolCreated::Forbidden => {
                let labels: Vec<String> = key
                    .labels(m.plan.reclaim, &subnet.subnet.to_string())
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                Err(not_made(format!(
                    "the webhook may not create SpiderIPPools (its default RBAC): grant its ServiceAccount `create` on spiderippools (docs/reference.md, \"Third-party controllers\"), or create the pool yourself with these labels: {}",
                    labels.join(",")
                )))
            }
        }
    }

    /// `/mutate-pod`.
    pub async fn mutate(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let mut warnings = Vec::new();
        let outcome = self.admit(req, &mut warnings).await;
        let mut resp = match outcome.and_then(|p| match p {
            None => Ok(allow(req)),
            Some(patch) => allow(req)
                .with_patch(patch)
                .map_err(|e| Refused::unencodable_patch(&e)),
        }) {
            Ok(r) => r,
            Err(r) => deny(req, r.code, &r.message),
        };
        if !warnings.is_empty() {
            resp.warnings = Some(warnings);
        }
        resp
    }

    /// The executor of the mutating hook: the plan's inputs read, the plan carried out.
    async fn admit(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Patch>, Refused> {
        if req.operation != Operation::Create {
            return Ok(None);
        }
        let (pod, raw) = pod_from(req)?;
        let with_record = plan::arrives_with_record(&pod);
        if with_record {
            info!(namespace = ?req.namespace,
                "the Pod arrives with a reservation record it was not given; it is not kept");
        }
        let Some(screened) = plan::screen(req.namespace.as_deref(), &pod, &self.cache)? else {
            return Ok(patch::unserved(with_record));
        };
        let Some(facts) = self.facts(&screened, &pod).await? else {
            debug!(namespace = %screened.namespace, "no interface of the Pod uses this IPAM");
            return Ok(patch::unserved(with_record));
        };
        // One allocation, as Spiderpool's agent counts them (not for dry runs).
        let allocation_started = Instant::now();
        let result = async {
            let snap = self.cache.snapshot();
            let plan = plan::plan(&screened, &facts, &pod, &snap, &self.cache)?;
            warnings.extend(plan.notes.iter().cloned());
            if req.dry_run {
                return Ok(patch::unserved(with_record));
            }
            // A third-party controller's auto pool is made here, as Spiderpool's agent makes it.
            let missing = plan::missing_auto_pools(&plan, &snap);
            let (snap, plan) = match (missing.is_empty(), facts.owner.as_ref()) {
                (false, Some(owner)) => {
                    for m in &missing {
                        self.make_auto_pool(&screened.namespace, owner, m, &snap)
                            .await?;
                    }
                    let snap = self.cache.snapshot();
                    let plan = plan::plan(&screened, &facts, &pod, &snap, &self.cache)?;
                    (snap, plan)
                }
                _ => (snap, plan),
            };
            let started = Instant::now();
            let id = reservation_id(&req.uid);
            let who = Claimant {
                screened: &screened,
                facts: &facts,
                request_uid: &req.uid,
                id: &id,
            };
            let mut made = Vec::new();
            let outcome = self
                .reserve_all(&who, &snap, &plan, &mut made)
                .await
                .and_then(|record| {
                    let node_known = screened.node.is_some();
                    patch::record(&pod, &raw, &record, &snap, node_known, with_record)
                        .map(|p| (record, p))
                });
            self.metrics
                .reservation_seconds
                .observe(started.elapsed().as_secs_f64());
            match outcome {
                Ok((record, patch)) => {
                    info!(namespace = %screened.namespace, pod = ?screened.name, reservation = %id,
                        addresses = %record, "reserved");
                    Ok(Some(patch))
                }
                Err(e) => {
                    self.roll_back(&made).await;
                    Err(e)
                }
            }
        }
        .await;
        if !req.dry_run {
            self.metrics.spiderpool.observe(
                allocation_started.elapsed().as_secs_f64(),
                result.as_ref().err().map(|r| r.code),
            );
        }
        result
    }

    /// What the plan reads from the API: the Pod's networks, its owner, the claims kept for its
    /// name and whether a Pod of that name lives. `None` when no interface uses this IPAM.
    async fn facts(&self, s: &Screened, pod: &Pod) -> Result<Option<Facts>, Refused> {
        let interfaces = network::interfaces(
            &self.effects,
            &s.namespace,
            &s.annotations,
            &self.options.interfaces,
        )
        .await
        .map_err(|e| Refused::networks(&e))?;
        if interfaces.is_empty() {
            return Ok(None);
        }
        let owner = self.resolve_owner(&s.namespace, &pod.metadata).await;
        let kept = match (s.name.as_deref(), owner.as_ref()) {
            (Some(n), Some(o)) if o.is_stateful_set() => self
                .cache
                .claims_where(|c| plan::kept_for(c, &s.namespace, n, o)),
            _ => Vec::new(),
        };
        let name_taken = match s.name.as_deref() {
            Some(n) if !kept.is_empty() => self
                .effects
                .pod_exists(&s.namespace, n)
                .await
                .map_err(|e| Refused::failed_call(&e))?,
            _ => false,
        };
        Ok(Some(Facts {
            interfaces,
            owner,
            kept,
            name_taken,
        }))
    }
}

#[cfg(test)]
mod plan_tests;
