//! Reading a live cluster: the client from a kubeconfig, and one snapshot of the objects that
//! `status` and `inspect` look at (listed once, then judged by pure functions).

use std::collections::BTreeMap;
use std::path::PathBuf;

use aipam_core::config::{IpamConfig, CONFIGMAP_NAME};
use aipam_core::model::{NamespaceInfo, NodeInfo, Pool};
use aipam_core::ranges::{IpFamily, IpSet};
use aipam_core::validate::{mark_overlaps_by_age, validate_pool, validate_reserved_ip};
use aipam_crds::convert::{pool_draft, reserved_ip_draft};
use aipam_crds::{SpiderEndpoint, SpiderIPClaim, SpiderIPPool, SpiderReservedIP};
use aipam_rules::owner::ControllerFacts;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Where the cluster is and how to read it.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the
    /// in-cluster service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace of the spiderpool-conf ConfigMap.
    #[arg(long, default_value = "aipam-system")]
    pub config_namespace: String,
    /// The collector's grace period, when the operator runs with --reservation-grace-seconds
    /// (default: reservationGraceSeconds of spiderpool-conf, as the operator reads it).
    #[arg(long)]
    pub reservation_grace_seconds: Option<u64>,
}

/// Why the cluster could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// A request failed.
    #[error("cannot {what}: {source}")]
    Request {
        /// What was being read.
        what: String,
        /// The client's error.
        source: kube::Error,
    },
    /// The spiderpool-conf ConfigMap is invalid.
    #[error("{0}")]
    Config(String),
}

/// A client from the arguments: `--kubeconfig` (else `KUBECONFIG`, `~/.kube/config`, in-cluster)
/// and `--context`.
pub async fn connect(args: &ClusterArgs) -> Result<Client, ClusterError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| ClusterError::Kubeconfig(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| ClusterError::Kubeconfig(format!("{}: {e}", path.display())))?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| ClusterError::Kubeconfig(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| ClusterError::Kubeconfig(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| ClusterError::Kubeconfig(e.to_string()))
}

fn request(what: &str) -> impl FnOnce(kube::Error) -> ClusterError + '_ {
    move |source| ClusterError::Request {
        what: what.to_string(),
        source,
    }
}

async fn list_all<K>(client: &Client, what: &str) -> Result<Vec<K>, ClusterError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(request(&format!("list {what}")))?
        .items)
}

/// Everything `status` and `inspect` read, listed once.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// SpiderIPPools.
    pub pools: Vec<SpiderIPPool>,
    /// SpiderIPClaims.
    pub claims: Vec<SpiderIPClaim>,
    /// SpiderEndpoints.
    pub endpoints: Vec<SpiderEndpoint>,
    /// SpiderReservedIPs.
    pub reserved: Vec<SpiderReservedIP>,
    /// Pods (every namespace).
    pub pods: Vec<Pod>,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// StatefulSets (every namespace).
    pub stateful_sets: Vec<StatefulSet>,
    /// Namespaces.
    pub namespaces: Vec<Namespace>,
    /// The `spiderpool-conf` data, when the ConfigMap exists.
    pub config: Option<BTreeMap<String, String>>,
    /// NetworkAttachmentDefinitions' `spec.config` by (namespace, name); empty when Multus is
    /// not installed.
    pub networks: BTreeMap<(String, String), String>,
    /// Overrides `reservationGraceSeconds` (the operator's `--reservation-grace-seconds`).
    pub grace_override: Option<u64>,
}

/// Lists what `status` and `inspect` need.
pub async fn snapshot(client: &Client, config_namespace: &str) -> Result<Snapshot, ClusterError> {
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), config_namespace);
    let config = cm
        .get_opt(CONFIGMAP_NAME)
        .await
        .map_err(request(&format!(
            "read ConfigMap {config_namespace}/{CONFIGMAP_NAME}"
        )))?
        .map(|c| c.data.unwrap_or_default());
    // Multus's CRD; its plural is not the one kube would guess from the kind.
    let mut nad = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "k8s.cni.cncf.io",
        "v1",
        "NetworkAttachmentDefinition",
    ));
    nad.plural = "network-attachment-definitions".to_string();
    let nad_api: Api<DynamicObject> = Api::all_with(client.clone(), &nad);
    let networks = match nad_api.list(&ListParams::default()).await {
        Ok(l) => l
            .items
            .into_iter()
            .map(|n| {
                let key = (
                    n.metadata.namespace.clone().unwrap_or_default(),
                    n.metadata.name.clone().unwrap_or_default(),
                );
                let conf = n
                    .data
                    .pointer("/spec/config")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                (key, conf)
            })
            .collect(),
        // Multus is not installed: no Pod can name a network.
        Err(kube::Error::Api(e)) if e.code == 404 => BTreeMap::new(),
        Err(source) => {
            return Err(ClusterError::Request {
                what: "list NetworkAttachmentDefinitions".to_string(),
                source,
            })
        }
    };
    Ok(Snapshot {
        pools: list_all(client, "SpiderIPPools").await?,
        claims: list_all(client, "SpiderIPClaims").await?,
        endpoints: list_all(client, "SpiderEndpoints").await?,
        reserved: list_all(client, "SpiderReservedIPs").await?,
        pods: list_all(client, "Pods").await?,
        nodes: list_all(client, "Nodes").await?,
        stateful_sets: list_all(client, "StatefulSets").await?,
        namespaces: list_all(client, "Namespaces").await?,
        config,
        networks,
        grace_override: None,
    })
}

/// What reading a Pod's direct controller tells ([`aipam_rules::owner::needs_lookup`] says
/// when): a ReplicaSet or Job read live, a StatefulSet from the snapshot. `None` when it is not
/// found or cannot be read (the direct controller then stands), or for another kind.
pub async fn controller_facts(
    client: &Client,
    snap: &Snapshot,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Option<ControllerFacts> {
    match kind {
        "ReplicaSet" => {
            let api: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
            let rs = api.get_opt(name).await.ok()??;
            Some(ControllerFacts::of_replica_set(&rs))
        }
        "Job" => {
            let api: Api<Job> = Api::namespaced(client.clone(), namespace);
            let job = api.get_opt(name).await.ok()??;
            Some(ControllerFacts::of_job(&job))
        }
        "StatefulSet" => snap
            .stateful_sets
            .iter()
            .find(|s| {
                s.metadata.namespace.as_deref() == Some(namespace)
                    && s.metadata.name.as_deref() == Some(name)
            })
            .map(ControllerFacts::of_stateful_set),
        _ => None,
    }
}

impl Snapshot {
    /// The cluster configuration (defaults when the ConfigMap is absent).
    pub fn ipam_config(&self) -> Result<IpamConfig, ClusterError> {
        let mut config = match &self.config {
            None => IpamConfig::default(),
            Some(data) => IpamConfig::from_configmap_data(data)
                .map_err(|e| ClusterError::Config(e.to_string()))?,
        };
        if let Some(g) = self.grace_override {
            config.reservation_grace_seconds = g;
        }
        Ok(config)
    }

    /// Valid pools as the core sees them, and the invalid ones with why.
    pub fn core_pools(&self) -> (BTreeMap<String, Pool>, Vec<(String, String)>) {
        let mut valid = Vec::new();
        let mut bad = Vec::new();
        for p in &self.pools {
            let name = p.metadata.name.clone().unwrap_or_default();
            match pool_draft(p)
                .map_err(|e| e.to_string())
                .and_then(|d| validate_pool(&d).map_err(|e| e.to_string()))
            {
                Ok(pool) => valid.push((p.metadata.creation_timestamp.as_ref().map(|t| t.0), pool)),
                Err(e) => bad.push((name, e)),
            }
        }
        // As the webhook does: of two overlapping pools, the newer serves nobody.
        let ok = mark_overlaps_by_age(valid)
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        (ok, bad)
    }

    /// The SpiderReservedIP addresses of one family.
    pub fn reserved_set(&self, family: IpFamily) -> IpSet {
        let mut out = IpSet::new();
        for r in &self.reserved {
            if let Ok(r) = validate_reserved_ip(&reserved_ip_draft(r)) {
                if r.family == family {
                    if let Ok(u) = out.union(&r.ips) {
                        out = u;
                    }
                }
            }
        }
        out
    }

    /// Nodes as the core sees them.
    pub fn core_nodes(&self) -> Vec<NodeInfo> {
        self.nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.metadata.name.clone().unwrap_or_default(),
                labels: n.metadata.labels.clone().unwrap_or_default(),
            })
            .collect()
    }

    /// A namespace as the core sees it (labels include `kubernetes.io/metadata.name`).
    pub fn namespace_info(&self, name: &str) -> NamespaceInfo {
        let ns = self
            .namespaces
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name));
        let mut labels = ns
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".to_string(), name.to_string());
        NamespaceInfo {
            name: name.to_string(),
            labels,
            annotations: ns
                .and_then(|n| n.metadata.annotations.clone())
                .unwrap_or_default(),
        }
    }
}
