//! The side effects the Pod hooks need, behind one small trait: create and delete claims, hand a
//! StatefulSet's claim to its next Pod, write SpiderEndpoints, read a Pod's owners and networks.
//!
//! [`KubeEffects`] is the implementation over `kube::Client`; [`MemoryEffects`] keeps everything
//! in memory, so that the handler logic is tested without any server and races are staged at
//! will (a claim "made by another replica" is one the cache has not seen).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use aipam_crds::{SpiderEndpoint, SpiderIPClaim};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

/// A side effect that failed; the message says which call and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Kubernetes API: {0}")]
pub struct EffectError(pub String);

/// The outcome of creating a claim or an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// It is ours.
    Created,
    /// One of that name exists (for a claim: somebody holds the address).
    AlreadyExists,
}

/// A Pod's direct controller, as read from the API (a ReplicaSet or a Job).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ControllerObject {
    /// `spec.replicas` (ReplicaSet) or `spec.parallelism` (Job).
    pub replicas: Option<u64>,
    /// The object's own controller ownerReference (a Deployment, a CronJob), if any.
    pub controller: Option<OwnerReference>,
}

/// Everything the Pod hooks do to the cluster besides reading the cache.
pub trait Effects: Send + Sync + 'static {
    /// Creates a claim; a name already taken is [`Created::AlreadyExists`], not an error.
    fn create_claim(
        &self,
        claim: &SpiderIPClaim,
    ) -> impl Future<Output = Result<Created, EffectError>> + Send;

    /// Deletes a claim; one already gone is fine.
    fn delete_claim(&self, name: &str) -> impl Future<Output = Result<(), EffectError>> + Send;

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
    ) -> impl Future<Output = Result<Created, EffectError>> + Send {
        (**self).create_claim(claim)
    }
    fn delete_claim(&self, name: &str) -> impl Future<Output = Result<(), EffectError>> + Send {
        (**self).delete_claim(name)
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
}

/// The NetworkAttachmentDefinition resource (`k8s.cni.cncf.io/v1`).
pub fn nad_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition"),
        "network-attachment-definitions",
    )
}

/// [`Effects`] over the Kubernetes API.
#[derive(Clone)]
pub struct KubeEffects {
    client: kube::Client,
}

impl std::fmt::Debug for KubeEffects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEffects").finish_non_exhaustive()
    }
}

impl KubeEffects {
    /// Over this client.
    pub fn new(client: kube::Client) -> KubeEffects {
        KubeEffects { client }
    }
}

fn api_err(what: &str, e: kube::Error) -> EffectError {
    EffectError(format!("{what}: {e}"))
}

fn is_status(e: &kube::Error, check: impl Fn(&kube::core::Status) -> bool) -> bool {
    matches!(e, kube::Error::Api(s) if check(s))
}

impl Effects for KubeEffects {
    async fn create_claim(&self, claim: &SpiderIPClaim) -> Result<Created, EffectError> {
        let api: Api<SpiderIPClaim> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), claim).await {
            Ok(_) => Ok(Created::Created),
            Err(e) if is_status(&e, |s| s.is_already_exists() || s.code == 409) => {
                Ok(Created::AlreadyExists)
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

    async fn delete_claim(&self, name: &str) -> Result<(), EffectError> {
        let api: Api<SpiderIPClaim> = Api::all(self.client.clone());
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, |s| s.is_not_found()) => Ok(()),
            Err(e) => Err(api_err(&format!("deleting SpiderIPClaim {name}"), e)),
        }
    }

    async fn take_over_claim(&self, name: &str, from: &str, to: &str) -> Result<bool, EffectError> {
        let api: Api<SpiderIPClaim> = Api::all(self.client.clone());
        let patch = aipam_crds::record::claim_move_patch(from, to);
        match api
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
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
        match api.get_metadata_opt(name).await {
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
        let controller_of = |refs: Option<Vec<OwnerReference>>| {
            refs.unwrap_or_default()
                .into_iter()
                .find(|r| r.controller == Some(true))
        };
        match kind {
            "ReplicaSet" => {
                let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
                let rs = api
                    .get_opt(name)
                    .await
                    .map_err(|e| api_err(&format!("reading ReplicaSet {namespace}/{name}"), e))?;
                Ok(rs.map(|rs| ControllerObject {
                    replicas: rs
                        .spec
                        .as_ref()
                        .and_then(|s| s.replicas)
                        .and_then(|r| u64::try_from(r).ok()),
                    controller: controller_of(rs.metadata.owner_references),
                }))
            }
            "Job" => {
                let api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
                let job = api
                    .get_opt(name)
                    .await
                    .map_err(|e| api_err(&format!("reading Job {namespace}/{name}"), e))?;
                Ok(job.map(|j| ControllerObject {
                    replicas: j
                        .spec
                        .as_ref()
                        .and_then(|s| s.parallelism)
                        .and_then(|r| u64::try_from(r).ok()),
                    controller: controller_of(j.metadata.owner_references),
                }))
            }
            other => Err(EffectError(format!(
                "reading a {other}: only ReplicaSet and Job owners are looked up"
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
        let obj = api.get_opt(name).await.map_err(|e| {
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
        match api.create(&PostParams::default(), endpoint).await {
            Ok(_) => Ok(Created::Created),
            Err(e) if is_status(&e, |s| s.is_already_exists() || s.code == 409) => {
                Ok(Created::AlreadyExists)
            }
            Err(e) => Err(api_err(&format!("creating SpiderEndpoint {ns}/{name}"), e)),
        }
    }

    async fn replace_endpoint(&self, endpoint: &SpiderEndpoint) -> Result<(), EffectError> {
        let ns = endpoint.metadata.namespace.clone().unwrap_or_default();
        let name = endpoint.metadata.name.clone().unwrap_or_default();
        let api: Api<SpiderEndpoint> = Api::namespaced(self.client.clone(), &ns);
        let what = format!("replacing SpiderEndpoint {ns}/{name}");
        for _ in 0..3 {
            let Some(current) = api.get_opt(&name).await.map_err(|e| api_err(&what, e))? else {
                match api.create(&PostParams::default(), endpoint).await {
                    Ok(_) => return Ok(()),
                    Err(e) => return Err(api_err(&what, e)),
                }
            };
            let mut next = endpoint.clone();
            next.metadata.resource_version = current.metadata.resource_version.clone();
            match api.replace(&name, &PostParams::default(), &next).await {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, |s| s.is_conflict()) => continue,
                Err(e) => return Err(api_err(&what, e)),
            }
        }
        Err(EffectError(format!(
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
    /// ReplicaSets and Jobs by `Kind/namespace/name`.
    pub controllers: BTreeMap<String, ControllerObject>,
    /// Network configurations by `namespace/name`.
    pub networks: BTreeMap<String, String>,
    /// Pods that exist, as `namespace/name`.
    pub pods: std::collections::BTreeSet<String>,
    /// Fail the n-th claim creation from now on (0 = the next one), for error paths.
    pub fail_create_at: Option<usize>,
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
    async fn create_claim(&self, claim: &SpiderIPClaim) -> Result<Created, EffectError> {
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
                    return Err(EffectError(
                        "creating SpiderIPClaim: injected failure".into(),
                    ));
                }
            }
            let name = claim.metadata.name.clone().unwrap_or_default();
            if s.claims.contains_key(&name) {
                return Ok(Created::AlreadyExists);
            }
            s.claims.insert(name, claim.clone());
            Ok(Created::Created)
        })
    }

    async fn delete_claim(&self, name: &str) -> Result<(), EffectError> {
        self.with(|s| {
            if s.claims.remove(name).is_some() {
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
}
