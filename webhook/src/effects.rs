//! The side effects the Pod hooks need, behind one small trait: create and delete claims, hand a
//! StatefulSet's claim to its next Pod, write SpiderEndpoints, read a Pod's owners and networks,
//! create a third-party controller's SpiderSubnet auto pool.
//!
//! [`KubeEffects`] is the implementation over `kube::Client`; [`MemoryEffects`] keeps everything
//! in memory, so that the handler logic is tested without any server and races are staged at
//! will (a claim "made by another replica" is one the cache has not seen).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aipam_crds::{SpiderEndpoint, SpiderIPClaim, SpiderIPPool};
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

/// A side effect that failed; the message says which call and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EffectError {
    /// The call failed.
    #[error("Kubernetes API: {0}")]
    Api(String),
    /// The API server kept answering 429 Too Many Requests (its priority and fairness
    /// shedding load) for as long as the call could wait.
    #[error("Kubernetes API overloaded: {0}")]
    Overloaded(String),
}

/// The outcome of creating a claim or an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// It is ours.
    Created,
    /// One of that name exists (for a claim: somebody holds the address).
    AlreadyExists,
}

/// What a claim create did.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimCreated {
    /// Made, with the UID the API server gave it: a rollback deletes that object only.
    Created {
        /// `metadata.uid` of the new claim.
        uid: Option<String>,
    },
    /// One of that name exists: somebody holds the address.
    AlreadyExists,
}

/// What a pool create did.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolCreated {
    /// Made: the object as stored.
    Created(Box<SpiderIPPool>),
    /// One of that name exists.
    AlreadyExists,
    /// The webhook's ServiceAccount may not create SpiderIPPools (the default RBAC).
    Forbidden,
}

/// A Pod's direct controller, as read from the API (a ReplicaSet, a Job or a StatefulSet):
/// what [`aipam_rules::owner::top_owner`] needs.
pub type ControllerObject = aipam_rules::owner::ControllerFacts;

/// Everything the Pod hooks do to the cluster besides reading the cache.
pub trait Effects: Send + Sync + 'static {
    /// Creates a claim; a name already taken is [`ClaimCreated::AlreadyExists`], not an error.
    fn create_claim(
        &self,
        claim: &SpiderIPClaim,
    ) -> impl Future<Output = Result<ClaimCreated, EffectError>> + Send;

    /// Deletes a claim, only as the object of that `uid` when one is given (a precondition the
    /// API server checks): between this request's create and its rollback the claim can have
    /// been collected and the address claimed anew under the same name by another admission,
    /// whose claim must stay. One already gone, or another object now, is fine.
    fn delete_claim(
        &self,
        name: &str,
        uid: Option<&str>,
    ) -> impl Future<Output = Result<(), EffectError>> + Send;

    /// Moves a claim from reservation `from` to reservation `to` (label and spec), only while
    /// it still belongs to `from` (checked by the API server, atomically): of two admissions
    /// racing for a StatefulSet's kept address, one wins and the other reserves anew.
    /// `Ok(false)` when the claim is gone or belongs to another reservation now.
    fn take_over_claim(
        &self,
        name: &str,
        from: &str,
        to: &str,
    ) -> impl Future<Output = Result<bool, EffectError>> + Send;

    /// Whether a Pod of that name exists now (a live read, not a cache).
    fn pod_exists(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<bool, EffectError>> + Send;

    /// Reads a ReplicaSet (`kind = "ReplicaSet"`) or a Job (`kind = "Job"`); `Ok(None)` when
    /// it does not exist.
    fn get_controller(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<ControllerObject>, EffectError>> + Send;

    /// Reads a NetworkAttachmentDefinition's `spec.config` (empty when it has none);
    /// `Ok(None)` when it does not exist.
    fn get_network(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, EffectError>> + Send;

    /// Creates the SpiderEndpoint (`.status` goes with the object: SpiderEndpoint has no
    /// status subresource); one of that name existing is [`Created::AlreadyExists`].
    fn create_endpoint(
        &self,
        endpoint: &SpiderEndpoint,
    ) -> impl Future<Output = Result<Created, EffectError>> + Send;

    /// Replaces the SpiderEndpoint of that name (created if it went meanwhile).
    fn replace_endpoint(
        &self,
        endpoint: &SpiderEndpoint,
    ) -> impl Future<Output = Result<(), EffectError>> + Send;

    /// Creates a SpiderIPPool (a third-party controller's auto pool).
    fn create_pool(
        &self,
        pool: &SpiderIPPool,
    ) -> impl Future<Output = Result<PoolCreated, EffectError>> + Send;
}

impl<E: Effects> Effects for Arc<E> {
    fn take_over_claim(
        &self,
        name: &str,
        from: &str,
        to: &str,
    ) -> impl Future<Output = Result<bool, EffectError>> + Send {
        (**self).take_over_claim(name, from, to)
    }
    fn pod_exists(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<bool, EffectError>> + Send {
        (**self).pod_exists(namespace, name)
    }
    fn create_claim(
        &self,
        claim: &SpiderIPClaim,
    ) -> impl Future<Output = Result<ClaimCreated, EffectError>> + Send {
        (**self).create_claim(claim)
    }
    fn delete_claim(
        &self,
        name: &str,
        uid: Option<&str>,
    ) -> impl Future<Output = Result<(), EffectError>> + Send {
        (**self).delete_claim(name, uid)
    }
    fn get_controller(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<ControllerObject>, EffectError>> + Send {
        (**self).get_controller(namespace, kind, name)
    }
    fn get_network(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, EffectError>> + Send {
        (**self).get_network(namespace, name)
    }
    fn create_endpoint(
        &self,
        endpoint: &SpiderEndpoint,
    ) -> impl Future<Output = Result<Created, EffectError>> + Send {
        (**self).create_endpoint(endpoint)
    }
    fn replace_endpoint(
        &self,
        endpoint: &SpiderEndpoint,
    ) -> impl Future<Output = Result<(), EffectError>> + Send {
        (**self).replace_endpoint(endpoint)
    }
    fn create_pool(
        &self,
        pool: &SpiderIPPool,
    ) -> impl Future<Output = Result<PoolCreated, EffectError>> + Send {
        (**self).create_pool(pool)
    }
}

/// The NetworkAttachmentDefinition resource (`k8s.cni.cncf.io/v1`).
pub fn nad_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition"),
        "network-attachment-definitions",
    )
}

/// How a call that the API server answers 429 Too Many Requests is retried: the server's
/// `Retry-After` when it gives one, else a doubling delay, each with jitter and never past the
/// budget nor the review's deadline ([`REVIEW_DEADLINE`]). The client's own retry layer must be
/// off (`kube::Config::default_retry`): kube's default retries a 429 up to 15 times with
/// waits growing to minutes, which kept admissions past their timeout on a real API server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overload {
    /// How long one call may go on retrying, all waits included.
    pub budget: Duration,
    /// The first wait when the server gives no hint.
    pub first_delay: Duration,
    /// No wait is longer.
    pub max_delay: Duration,
}

impl Default for Overload {
    fn default() -> Self {
        Overload {
            budget: Duration::from_secs(3),
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }
}

impl Overload {
    /// The wait before the next try after the `attempt`-th 429 (from 1), `elapsed` into the
    /// call, with `retry_after` the server's hint and `jitter` in `[0, 1)` (the wait is drawn
    /// in its upper half, so that admissions shed together do not come back together); `None`
    /// when the wait would pass the budget: give up.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        elapsed: Duration,
        jitter: f64,
    ) -> Option<Duration> {
        let doubling = self
            .first_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let base = retry_after.unwrap_or(doubling).min(self.max_delay);
        let wait = base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        (elapsed + wait <= self.budget).then_some(wait)
    }
}

tokio::task_local! {
    /// When the admission review being answered must be answered by ([`crate::App`] sets it
    /// around each review): retries of 429s end before it, leaving time to roll back and to
    /// answer, so that the answer is the overload refusal rather than a timeout.
    pub static REVIEW_DEADLINE: Instant;
}

/// What is kept free of retries before a review's deadline (the rollback and the answer).
const DEADLINE_RESERVE: Duration = Duration::from_millis(500);

/// The server's retry hint of a 429 answer (`details.retryAfterSeconds` of its Status), when
/// it is one. Priority and fairness sends its hint as a `Retry-After` header with a plain-text
/// body, which `kube::Error` does not carry: its 429s get the doubling delay.
fn throttled(e: &kube::Error) -> Option<Option<Duration>> {
    match e {
        kube::Error::Api(s) if s.code == 429 => Some(
            s.details
                .as_ref()
                .map(|d| d.retry_after_seconds)
                .filter(|&n| n > 0)
                .map(|n| Duration::from_secs(u64::from(n))),
        ),
        _ => None,
    }
}

/// [`Effects`] over the Kubernetes API.
#[derive(Clone)]
pub struct KubeEffects {
    client: kube::Client,
    overload: Overload,
}

impl std::fmt::Debug for KubeEffects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEffects").finish_non_exhaustive()
    }
}

impl KubeEffects {
    /// Over this client, retrying 429s as [`Overload::default`] says.
    pub fn new(client: kube::Client) -> KubeEffects {
        KubeEffects {
            client,
            overload: Overload::default(),
        }
    }

    /// With another retry of 429s.
    pub fn with_overload(mut self, overload: Overload) -> KubeEffects {
        self.overload = overload;
        self
    }

    /// One namespaced object, `None` when absent; retried on 429 like every call here.
    async fn get_namespaced<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, EffectError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        self.retrying(|| api.get_opt(name))
            .await
            .map_err(|e| api_err(&format!("reading {} {namespace}/{name}", K::kind(&())), e))
    }

    /// Runs `call`, again after each 429 while [`Overload::delay`] allows; the last answer.
    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let start = Instant::now();
        let mut overload = self.overload;
        if let Ok(deadline) = REVIEW_DEADLINE.try_with(|d| *d) {
            let left = deadline
                .saturating_duration_since(start)
                .saturating_sub(DEADLINE_RESERVE);
            overload.budget = overload.budget.min(left);
        }
        let mut attempt = 0u32;
        loop {
            let e = match call().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let Some(hint) = throttled(&e) else {
                return Err(e);
            };
            attempt += 1;
            let jitter = f64::from(start.elapsed().subsec_nanos() % 1000) / 1000.0;
            match overload.delay(attempt, hint, start.elapsed(), jitter) {
                Some(wait) => {
                    tracing::debug!(
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "API server answered 429 Too Many Requests; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                None => return Err(e),
            }
        }
    }
}

/// The error of a call: a 429 that outlived the retries is [`EffectError::Overloaded`].
fn api_err(what: &str, e: kube::Error) -> EffectError {
    if throttled(&e).is_some() {
        let said = match &e {
            kube::Error::Api(s) if !s.message.is_empty() => format!(" ({})", s.message),
            _ => String::new(),
        };
        EffectError::Overloaded(format!(
            "{what}: the API server answered 429 Too Many Requests{said} and still did after retrying for as long as an admission can wait; it is shedding load, retry later"
        ))
    } else {
        EffectError::Api(format!("{what}: {e}"))
    }
}

fn is_status(e: &kube::Error, check: impl Fn(&kube::core::Status) -> bool) -> bool {
    matches!(e, kube::Error::Api(s) if check(s))
}

impl Effects for KubeEffects {
    async fn create_claim(&self, claim: &SpiderIPClaim) -> Result<ClaimCreated, EffectError> {
        let api: Api<SpiderIPClaim> = Api::all(self.client.clone());
        let pp = PostParams::default();
        match self.retrying(|| api.create(&pp, claim)).await {
            Ok(made) => Ok(ClaimCreated::Created {
                uid: made.metadata.uid,
            }),
            Err(e) if is_status(&e, |s| s.is_already_exists() || s.code == 409) => {
                Ok(ClaimCreated::AlreadyExists)
            }
            Err(e) => Err(api_err(
                &format!(
                    "creating SpiderIPClaim {}",
                    claim.metadata.name.as_deref().unwrap_or_default()
                ),
                e,
            )),
        }
    }

    async fn delete_claim(&self, name: &str, uid: Option<&str>) -> Result<(), EffectError> {
        let api: Api<SpiderIPClaim> = Api::all(self.client.clone());
        let dp = DeleteParams {
            preconditions: uid.map(|u| Preconditions {
                uid: Some(u.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.retrying(|| api.delete(name, &dp)).await {
            Ok(_) => Ok(()),
            // Gone, or (409: the UID precondition failed) another claim of that name now.
            Err(e) if is_status(&e, |s| s.is_not_found() || s.code == 409) => Ok(()),
            Err(e) => Err(api_err(&format!("deleting SpiderIPClaim {name}"), e)),
        }
    }

    async fn take_over_claim(&self, name: &str, from: &str, to: &str) -> Result<bool, EffectError> {
        let api: Api<SpiderIPClaim> = Api::all(self.client.clone());
        let patch = aipam_crds::record::claim_move_patch(from, to);
        let (patch, pp) = (Patch::Json::<()>(patch), PatchParams::default());
        match self.retrying(|| api.patch(name, &pp, &patch)).await {
            Ok(_) => Ok(true),
            // Gone, or the `test` failed: another reservation holds it now.
            Err(e) if is_status(&e, |s| s.is_not_found() || s.code == 422 || s.code == 409) => {
                Ok(false)
            }
            Err(e) => Err(api_err(&format!("taking over SpiderIPClaim {name}"), e)),
        }
    }

    async fn pod_exists(&self, namespace: &str, name: &str) -> Result<bool, EffectError> {
        let api: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.client.clone(), namespace);
        match self.retrying(|| api.get_metadata_opt(name)).await {
            Ok(found) => Ok(found.is_some()),
            Err(e) => Err(api_err(&format!("reading Pod {namespace}/{name}"), e)),
        }
    }

    async fn get_controller(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Option<ControllerObject>, EffectError> {
        match kind {
            "ReplicaSet" => Ok(self
                .get_namespaced::<ReplicaSet>(namespace, name)
                .await?
                .as_ref()
                .map(ControllerObject::of_replica_set)),
            "Job" => Ok(self
                .get_namespaced::<Job>(namespace, name)
                .await?
                .as_ref()
                .map(ControllerObject::of_job)),
            "StatefulSet" => Ok(self
                .get_namespaced::<StatefulSet>(namespace, name)
                .await?
                .as_ref()
                .map(ControllerObject::of_stateful_set)),
            other => Err(EffectError::Api(format!(
                "reading a {other}: only ReplicaSet, Job and StatefulSet owners are looked up"
            ))),
        }
    }

    async fn get_network(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>, EffectError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &nad_resource());
        let obj = self.retrying(|| api.get_opt(name)).await.map_err(|e| {
            api_err(
                &format!("reading NetworkAttachmentDefinition {namespace}/{name}"),
                e,
            )
        })?;
        Ok(obj.map(|o| {
            o.data
                .get("spec")
                .and_then(|s| s.get("config"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        }))
    }

    async fn create_endpoint(&self, endpoint: &SpiderEndpoint) -> Result<Created, EffectError> {
        let ns = endpoint.metadata.namespace.clone().unwrap_or_default();
        let name = endpoint.metadata.name.clone().unwrap_or_default();
        let api: Api<SpiderEndpoint> = Api::namespaced(self.client.clone(), &ns);
        let pp = PostParams::default();
        match self.retrying(|| api.create(&pp, endpoint)).await {
            Ok(_) => Ok(Created::Created),
            Err(e) if is_status(&e, |s| s.is_already_exists() || s.code == 409) => {
                Ok(Created::AlreadyExists)
            }
            Err(e) => Err(api_err(&format!("creating SpiderEndpoint {ns}/{name}"), e)),
        }
    }

    async fn create_pool(&self, pool: &SpiderIPPool) -> Result<PoolCreated, EffectError> {
        let name = pool.metadata.name.clone().unwrap_or_default();
        let api: Api<SpiderIPPool> = Api::all(self.client.clone());
        let pp = PostParams::default();
        match self.retrying(|| api.create(&pp, pool)).await {
            Ok(made) => Ok(PoolCreated::Created(Box::new(made))),
            Err(e) if is_status(&e, |s| s.is_already_exists() || s.code == 409) => {
                Ok(PoolCreated::AlreadyExists)
            }
            Err(e) if is_status(&e, |s| s.code == 403) => Ok(PoolCreated::Forbidden),
            Err(e) => Err(api_err(&format!("creating SpiderIPPool {name}"), e)),
        }
    }

    async fn replace_endpoint(&self, endpoint: &SpiderEndpoint) -> Result<(), EffectError> {
        let ns = endpoint.metadata.namespace.clone().unwrap_or_default();
        let name = endpoint.metadata.name.clone().unwrap_or_default();
        let api: Api<SpiderEndpoint> = Api::namespaced(self.client.clone(), &ns);
        let what = format!("replacing SpiderEndpoint {ns}/{name}");
        let pp = PostParams::default();
        for _ in 0..3 {
            let Some(current) = self
                .retrying(|| api.get_opt(&name))
                .await
                .map_err(|e| api_err(&what, e))?
            else {
                match self.retrying(|| api.create(&pp, endpoint)).await {
                    Ok(_) => return Ok(()),
                    Err(e) => return Err(api_err(&what, e)),
                }
            };
            let mut next = endpoint.clone();
            next.metadata.resource_version = current.metadata.resource_version.clone();
            match self.retrying(|| api.replace(&name, &pp, &next)).await {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, |s| s.is_conflict()) => continue,
                Err(e) => return Err(api_err(&what, e)),
            }
        }
        Err(EffectError::Api(format!(
            "{what}: conflicting writes, gave up after 3 attempts"
        )))
    }
}

/// `namespace/name` of an endpoint (the key of [`MemoryState::endpoints`]).
fn endpoint_key(endpoint: &SpiderEndpoint) -> String {
    format!(
        "{}/{}",
        endpoint.metadata.namespace.as_deref().unwrap_or_default(),
        endpoint.metadata.name.as_deref().unwrap_or_default()
    )
}

/// [`Effects`] in memory, for tests: claims, endpoints, controllers and networks in maps.
#[derive(Debug, Default)]
pub struct MemoryEffects {
    state: Mutex<MemoryState>,
}

/// The content of a [`MemoryEffects`].
#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    /// Claims by name.
    pub claims: BTreeMap<String, SpiderIPClaim>,
    /// Endpoints by `namespace/name`.
    pub endpoints: BTreeMap<String, SpiderEndpoint>,
    /// Pools created (third-party auto pools), by name.
    pub pools: BTreeMap<String, SpiderIPPool>,
    /// Pool creation is forbidden (the default RBAC).
    pub forbid_pools: bool,
    /// ReplicaSets and Jobs by `Kind/namespace/name`.
    pub controllers: BTreeMap<String, ControllerObject>,
    /// Network configurations by `namespace/name`.
    pub networks: BTreeMap<String, String>,
    /// Pods that exist, as `namespace/name`.
    pub pods: std::collections::BTreeSet<String>,
    /// Fail the n-th claim creation from now on (0 = the next one), for error paths.
    pub fail_create_at: Option<usize>,
    /// With `fail_create_at`: before that failure, the claims made so far are replaced by
    /// other objects of the same names (collected, then claimed anew by other admissions).
    pub remade_before_failure: bool,
    /// With `fail_create_at`: the failure is the API server shedding load (a 429 that outlived
    /// the retries).
    pub fail_as_overloaded: bool,
    /// Claim creations attempted (including conflicts).
    pub create_calls: usize,
    /// Claims created then deleted.
    pub deleted: Vec<String>,
    /// Each claim creation takes this long (slow API server).
    pub create_delay: Option<std::time::Duration>,
    /// Claim creations begun (before the delay).
    pub creates_started: usize,
}

impl MemoryEffects {
    /// Empty.
    pub fn new() -> MemoryEffects {
        MemoryEffects::default()
    }

    /// Reads or changes the state.
    pub fn with<R>(&self, f: impl FnOnce(&mut MemoryState) -> R) -> R {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// A copy of the state.
    pub fn state(&self) -> MemoryState {
        self.with(|s| s.clone())
    }
}

impl Effects for MemoryEffects {
    async fn create_claim(&self, claim: &SpiderIPClaim) -> Result<ClaimCreated, EffectError> {
        if let Some(d) = self.with(|s| {
            s.creates_started += 1;
            s.create_delay
        }) {
            tokio::time::sleep(d).await;
        }
        self.with(|s| {
            let n = s.create_calls;
            s.create_calls += 1;
            if let Some(at) = s.fail_create_at {
                if n >= at {
                    if s.remade_before_failure {
                        // Meanwhile every claim made so far was collected and made again, for
                        // the same addresses, by other admissions: same names, new UIDs.
                        for c in s.claims.values_mut() {
                            c.metadata.uid = c.metadata.uid.as_ref().map(|u| format!("{u}-again"));
                        }
                    }
                    if s.fail_as_overloaded {
                        return Err(EffectError::Overloaded(
                            "creating SpiderIPClaim: injected 429".into(),
                        ));
                    }
                    return Err(EffectError::Api(
                        "creating SpiderIPClaim: injected failure".into(),
                    ));
                }
            }
            let name = claim.metadata.name.clone().unwrap_or_default();
            if s.claims.contains_key(&name) {
                return Ok(ClaimCreated::AlreadyExists);
            }
            let uid = format!("claim-uid-{n}");
            let mut made = claim.clone();
            made.metadata.uid = Some(uid.clone());
            s.claims.insert(name, made);
            Ok(ClaimCreated::Created { uid: Some(uid) })
        })
    }

    async fn delete_claim(&self, name: &str, uid: Option<&str>) -> Result<(), EffectError> {
        self.with(|s| {
            let ours = s
                .claims
                .get(name)
                .is_some_and(|c| uid.is_none() || c.metadata.uid.as_deref() == uid);
            if ours && s.claims.remove(name).is_some() {
                s.deleted.push(name.to_string());
            }
            Ok(())
        })
    }

    async fn take_over_claim(&self, name: &str, from: &str, to: &str) -> Result<bool, EffectError> {
        self.with(|s| {
            let Some(c) = s.claims.get_mut(name) else {
                return Ok(false);
            };
            if c.spec.reservation != from {
                return Ok(false);
            }
            c.spec.reservation = to.to_string();
            c.metadata.labels.get_or_insert_with(BTreeMap::new).insert(
                aipam_core::reservation::LABEL_RESERVATION.to_string(),
                to.to_string(),
            );
            Ok(true)
        })
    }

    async fn pod_exists(&self, namespace: &str, name: &str) -> Result<bool, EffectError> {
        Ok(self.with(|s| s.pods.contains(&format!("{namespace}/{name}"))))
    }

    async fn get_controller(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Option<ControllerObject>, EffectError> {
        Ok(self.with(|s| {
            s.controllers
                .get(&format!("{kind}/{namespace}/{name}"))
                .cloned()
        }))
    }

    async fn get_network(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>, EffectError> {
        Ok(self.with(|s| s.networks.get(&format!("{namespace}/{name}")).cloned()))
    }

    async fn create_endpoint(&self, endpoint: &SpiderEndpoint) -> Result<Created, EffectError> {
        self.with(|s| {
            let key = endpoint_key(endpoint);
            if s.endpoints.contains_key(&key) {
                return Ok(Created::AlreadyExists);
            }
            s.endpoints.insert(key, endpoint.clone());
            Ok(Created::Created)
        })
    }

    async fn replace_endpoint(&self, endpoint: &SpiderEndpoint) -> Result<(), EffectError> {
        self.with(|s| {
            s.endpoints.insert(endpoint_key(endpoint), endpoint.clone());
            Ok(())
        })
    }

    async fn create_pool(&self, pool: &SpiderIPPool) -> Result<PoolCreated, EffectError> {
        self.with(|s| {
            let name = pool.metadata.name.clone().unwrap_or_default();
            if s.forbid_pools {
                return Ok(PoolCreated::Forbidden);
            }
            if s.pools.contains_key(&name) {
                return Ok(PoolCreated::AlreadyExists);
            }
            let mut made = pool.clone();
            made.metadata.uid = Some(format!("pool-uid-{name}"));
            s.pools.insert(name, made.clone());
            Ok(PoolCreated::Created(Box::new(made)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn overload_waits_double_without_a_hint_and_stop_at_the_budget() {
        let o = Overload::default();
        // Jitter 1 (just under): the whole base.
        let top = 0.999_999;
        let w1 = o.delay(1, None, Duration::ZERO, top).unwrap();
        let w2 = o.delay(2, None, w1, top).unwrap();
        let w3 = o.delay(3, None, w1 + w2, top).unwrap();
        assert!(w1 <= 100 * MS && w1 > 99 * MS, "{w1:?}");
        assert!(w2 > 199 * MS && w3 > 399 * MS, "{w2:?} {w3:?}");
        // Capped at max_delay however many tries.
        assert!(o.delay(30, None, Duration::ZERO, top).unwrap() <= o.max_delay);
        // A wait that would pass the budget is not taken.
        assert_eq!(o.delay(1, None, o.budget - 10 * MS, top), None);
        assert!(o.delay(1, None, o.budget - 200 * MS, top).is_some());
    }

    #[test]
    fn overload_follows_the_servers_hint_capped_and_jittered_in_the_upper_half() {
        let o = Overload::default();
        let hint = Some(Duration::from_millis(400));
        let low = o.delay(1, hint, Duration::ZERO, 0.0).unwrap();
        let high = o.delay(1, hint, Duration::ZERO, 0.999).unwrap();
        assert_eq!(low, 200 * MS);
        assert!(high > 399 * MS && high <= 400 * MS);
        // A Retry-After of 5 s is more than an admission can wait for: capped.
        let long = o.delay(1, Some(Duration::from_secs(5)), Duration::ZERO, 0.5);
        assert_eq!(long, Some(o.max_delay.mul_f64(0.75)));
    }

    #[test]
    fn only_a_429_is_throttled_and_its_hint_is_read() {
        let status = |code: u16, retry: u32| {
            kube::Error::Api(
                kube::core::Status {
                    code,
                    details: Some(kube::core::response::StatusDetails {
                        name: String::new(),
                        group: String::new(),
                        kind: String::new(),
                        uid: String::new(),
                        causes: Vec::new(),
                        retry_after_seconds: retry,
                    }),
                    ..Default::default()
                }
                .boxed(),
            )
        };
        assert_eq!(
            throttled(&status(429, 1)),
            Some(Some(Duration::from_secs(1)))
        );
        assert_eq!(throttled(&status(429, 0)), Some(None));
        assert_eq!(throttled(&status(409, 1)), None);
        assert!(matches!(
            api_err("creating SpiderIPClaim x", status(429, 1)),
            EffectError::Overloaded(m) if m.contains("creating SpiderIPClaim x")
        ));
        assert!(matches!(
            api_err("creating SpiderIPClaim x", status(500, 0)),
            EffectError::Api(_)
        ));
    }
}
