//! The environment a scenario runs in: an API server, the webhook and the operator.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aipam_apiserver::{ApiServer, ApiServerHandle, ServerOptions};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{pinned_kind, Scope};
use serde_json::Value;

use crate::controlplane::ControlPlane;
use crate::node::{NodeSim, NodeSimOptions, NodeSpec};
use crate::peers::Ipam;
use crate::{bin_path, repo, wait_for, Error, Result};

/// Which API the scenarios run against when `E2E_KUBECONFIG` is not set: `E2E_API=stand-in`
/// picks the in-memory stand-in (for fault injection); anything else, the real control plane.
pub fn use_stand_in() -> bool {
    std::env::var("E2E_API").is_ok_and(|v| v == "stand-in" || v == "standin")
}

/// What [`Env::start`] runs on by default, for reports: the real kube-apiserver started here,
/// the stand-in (`E2E_API=stand-in`), or the cluster of `E2E_KUBECONFIG`.
pub fn api_in_use() -> &'static str {
    if std::env::var("E2E_KUBECONFIG").is_ok() {
        "the cluster of E2E_KUBECONFIG"
    } else if use_stand_in() {
        "the API stand-in"
    } else {
        "the real kube-apiserver v1.37.2"
    }
}

/// The CNI network every simulated node gives a Pod's `eth0`: Debian's `bridge` plugin with
/// our IPAM (no gateway address on the node's bridge, no masquerading: nothing routes).
pub fn primary_network(cni_kubeconfig: &Path) -> Value {
    crate::peers::bridge_network(
        "aipam",
        serde_json::json!({"type": "spiderpool", "kubeconfig": cni_kubeconfig.display().to_string()}),
    )
}

/// The ServiceAccount (namespace, name) a user name of the form
/// `system:serviceaccount:NS:NAME` stands for.
fn service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    rest.split_once(':')
}

/// Namespace the project runs in.
pub const SYSTEM_NAMESPACE: &str = "aipam-system";
/// The webhook's Service, as `config/webhook/` names it.
pub const WEBHOOK_SERVICE: &str = "aipam-webhook";
/// The user the operator processes authenticate as on the stand-in (its service account).
pub const OPERATOR_USER: &str = "system:serviceaccount:aipam-system:aipam-operator";
/// The user the webhook processes authenticate as on the stand-in (its service account).
pub const WEBHOOK_USER: &str = "system:serviceaccount:aipam-system:aipam-webhook";
/// The user the CNI binary authenticates as (the token our CNI installer writes).
pub const CNI_USER: &str = "system:serviceaccount:aipam-system:aipam-cni";

/// How to set the environment up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Start the operator.
    pub operator: bool,
    /// Seconds a reservation waits for its Pod before the operator collects it.
    pub reservation_grace_seconds: u64,
    /// Namespace of the `spiderpool-conf` ConfigMap.
    pub config_namespace: String,
    /// Number of webhook processes (`aipam-webhook-0`, `-1`, …), all endpoints of the one
    /// webhook Service.
    pub webhook_replicas: usize,
    /// Number of operator processes (`aipam-operator-0`, `-1`, …), each with its process name
    /// as its `--identity` in the leader-election Lease (when `operator` is true).
    pub operator_replicas: usize,
    /// The operators' Lease duration in seconds (renew deadline 2/3 of it, retry period 1/4,
    /// at least 1 s each); `None` keeps the operator's defaults (15 s).
    pub lease_duration_seconds: Option<u64>,
    /// The operators' full garbage-collection scan interval (`--gc-interval`).
    pub gc_interval: Duration,
    /// Run on the in-memory stand-in even when the real control plane is the default: for
    /// what only the stand-in gives (injected 409s, 500s, slow answers, dropped watches).
    pub stand_in: bool,
    /// The IPAM of every Pod's `eth0` on the real control plane. A peer's environment runs no
    /// webhook and no operator of ours: only the peer, as its users run it.
    pub ipam: Ipam,
    /// More arguments for every webhook process (`--overload-retry-ms=0`, …).
    pub webhook_args: Vec<String>,
    /// Install everything but start neither the webhook nor the operator (and register no
    /// webhook configuration): the cluster as another IPAM left it, until [`Env::start_ours`].
    pub defer_ours: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            operator: true,
            reservation_grace_seconds: 30,
            config_namespace: SYSTEM_NAMESPACE.to_string(),
            webhook_replicas: 1,
            operator_replicas: 1,
            lease_duration_seconds: None,
            gc_interval: Duration::from_secs(10),
            stand_in: false,
            ipam: Ipam::Ours,
            webhook_args: Vec::new(),
            defer_ours: false,
        }
    }
}

/// The webhook process name of replica `i`.
pub fn webhook_name(i: usize) -> String {
    format!("aipam-webhook-{i}")
}

/// The operator process name (and Lease identity) of replica `i`.
pub fn operator_name(i: usize) -> String {
    format!("aipam-operator-{i}")
}

/// A process started here, with what it takes to start it again.
struct Proc {
    name: String,
    bin: PathBuf,
    args: Vec<String>,
    /// Where `/readyz` is served.
    health: SocketAddr,
    /// Its kubeconfig (its own user).
    kubeconfig: PathBuf,
    /// `None` once killed.
    child: Option<Child>,
}

/// A running environment. Dropping it stops the processes and the stand-in and removes its
/// files.
pub struct Env {
    /// A client for the API.
    pub client: kube::Client,
    /// A kubeconfig file for other processes (kubectl, the CNI binary).
    pub kubeconfig: PathBuf,
    /// `true` when running against a real cluster (`E2E_KUBECONFIG`).
    pub real_cluster: bool,
    server: Option<ApiServerHandle>,
    children: Vec<Proc>,
    /// The webhook replicas' balancer (the Service's stand-in) on the real control plane.
    balancer: Option<crate::proxy::Balancer>,
    /// The simulated nodes on the real control plane.
    nodes: Option<NodeSim>,
    /// The real control plane started here.
    control_plane: Option<ControlPlane>,
    /// The kubelet clients of the simulated nodes, by node name.
    node_clients: NodeClients,
    /// The IPAM of the Pods' `eth0`.
    ipam: Ipam,
    dir: tempfile::TempDir,
}

type NodeClients =
    std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, kube::Client>>>;

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("kubeconfig", &self.kubeconfig)
            .field("real_cluster", &self.real_cluster)
            .finish_non_exhaustive()
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn free_port() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("binding a free port"))?;
    l.local_addr().map_err(io("reading a free port"))
}

/// `GET path` over plain HTTP/1.0; the status code.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Parses a multi-document YAML text into JSON values (skipping empty documents).
pub fn yaml_docs(what: &str, text: &str) -> Result<Vec<Value>> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(de).map_err(|e| Error::Manifest {
            what: what.to_string(),
            problem: e.to_string(),
        })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

impl Env {
    /// Starts everything: against `E2E_KUBECONFIG` when set (the project must already be
    /// installed there, see hack/), else the stand-in with the webhook and operator processes.
    pub async fn start(opts: Options) -> Result<Env> {
        let dir = tempfile::tempdir().map_err(io("creating a temporary directory"))?;
        if let Ok(path) = std::env::var("E2E_KUBECONFIG") {
            let client = crate::client_from_kubeconfig(Path::new(&path)).await?;
            return Ok(Env {
                client,
                kubeconfig: PathBuf::from(path),
                real_cluster: true,
                server: None,
                children: Vec::new(),
                balancer: None,
                nodes: None,
                control_plane: None,
                node_clients: NodeClients::default(),
                ipam: Ipam::Ours,
                dir,
            });
        }
        if !use_stand_in() && !opts.stand_in {
            return Env::start_control_plane(opts, dir).await;
        }
        let server = ApiServer::start(ServerOptions {
            crd_dir: Some(repo().join("config/crd")),
            ..ServerOptions::default()
        })
        .await
        .map_err(|e| Error::StandIn(e.to_string()))?;
        let kubeconfig = dir.path().join("kubeconfig");
        server
            .write_kubeconfig(&kubeconfig)
            .map_err(|e| Error::StandIn(e.to_string()))?;
        let client = server
            .client()
            .await
            .map_err(|e| Error::StandIn(e.to_string()))?;
        let fixtures = repo().join("e2e/fixtures");
        server
            .apply_dir(&fixtures)
            .await
            .map_err(|e| Error::StandIn(format!("{}: {e}", fixtures.display())))?;
        let mut env = Env {
            client,
            kubeconfig,
            real_cluster: false,
            server: Some(server),
            children: Vec::new(),
            balancer: None,
            nodes: None,
            control_plane: None,
            node_clients: NodeClients::default(),
            ipam: Ipam::Ours,
            dir,
        };
        if !opts.defer_ours {
            env.start_ours(&opts).await?;
        }
        Ok(env)
    }

    /// The real control plane: built and started here, then the project installed as
    /// `config/` gives it (CRDs, ServiceAccounts and RBAC; the webhook configurations with
    /// `clientConfig.url` at the local processes), the webhook, the operator and the CNI binary
    /// each with a token of its own ServiceAccount, and a node simulator for the Nodes the
    /// scenarios apply.
    async fn start_control_plane(opts: Options, dir: tempfile::TempDir) -> Result<Env> {
        let cp = ControlPlane::start(&dir.path().join("kube")).await?;
        let client = cp.admin_client().await?;
        let kubeconfig = cp.admin_kubeconfig();
        let mut env = Env {
            client,
            kubeconfig,
            real_cluster: false,
            server: None,
            children: Vec::new(),
            balancer: None,
            nodes: None,
            control_plane: Some(cp),
            node_clients: NodeClients::default(),
            ipam: opts.ipam.clone(),
            dir,
        };
        let mut docs = Vec::new();
        for d in [
            "config/crd",
            "e2e/fixtures",
            "config/webhook/rbac.yaml",
            "config/operator/rbac.yaml",
            "config/cni/rbac.yaml",
        ] {
            docs.extend(manifests_in(&repo().join(d))?);
        }
        let whereabouts = match &opts.ipam {
            Ipam::Whereabouts(_) => Some(crate::peers::whereabouts_dir()?),
            _ => None,
        };
        if let Some(dir) = &whereabouts {
            docs.extend(crate::peers::whereabouts_manifests(dir)?);
        }
        for d in &docs {
            env.apply(d).await?;
        }
        env.wait_crds_established().await?;
        let cni_kubeconfig = env.kubeconfig_for(CNI_USER)?;
        let admin = env.client.clone();
        let node_clients = env.node_client_factory();
        let (primary, shim) = match &opts.ipam {
            Ipam::Ours => (
                primary_network(&cni_kubeconfig),
                env.ipam_shim_dir("spiderpool", &bin_path("spiderpool")?)?,
            ),
            // Replaced per node (Env::node_network); this one is never used.
            Ipam::HostLocal(_) => (
                primary_network(&cni_kubeconfig),
                env.dir.path().join("cni-bin"),
            ),
            Ipam::Whereabouts(range) => {
                let dir = whereabouts.unwrap_or_default();
                let kubeconfig = env.kubeconfig_for(crate::peers::WHEREABOUTS_USER)?;
                let log = env.dir.path().join("whereabouts.log");
                let conf = env.dir.path().join(crate::peers::WHEREABOUTS_CONF);
                let text = crate::peers::whereabouts_conf(&kubeconfig).to_string();
                std::fs::write(&conf, text).map_err(io("writing whereabouts.conf"))?;
                (
                    crate::peers::whereabouts_network(range, &conf, &log),
                    env.ipam_shim_dir("whereabouts", &dir.join("whereabouts"))?,
                )
            }
        };
        let nodes = NodeSim::start(
            admin,
            node_clients,
            NodeSimOptions {
                nodes: Vec::new(),
                primary_network: primary,
                cni_kubeconfig,
                plugin_dirs: vec![shim, PathBuf::from("/usr/lib/cni")],
                cache_dir: env.dir.path().join("cni-cache"),
            },
        )
        .await?;
        env.nodes = Some(nodes);
        if opts.ipam != Ipam::Ours || opts.defer_ours {
            return Ok(env);
        }
        env.start_ours(&opts).await?;
        Ok(env)
    }

    /// Waits until the webhook sees `pool`: a dry-run Pod of `ns` naming it is not refused for
    /// a missing pool (its cache has the pool's watch event).
    pub async fn wait_pool_visible(&self, ns: &str, pool: &str) -> Result<()> {
        use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".to_string(),
                    image: Some("x".to_string()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        pod.metadata.generate_name = Some("probe-".to_string());
        pod.metadata.annotations = Some(
            [(
                "ipam.spidernet.io/ippool".to_string(),
                format!("{{\"ipv4\": [\"{pool}\"]}}"),
            )]
            .into(),
        );
        let pp = PostParams {
            dry_run: true,
            ..Default::default()
        };
        wait_for(
            "the webhook to see the pool",
            Duration::from_secs(20),
            || {
                let (api, pod, pp) = (api.clone(), pod.clone(), pp.clone());
                async move {
                    match api.create(&pp, &pod).await {
                        Err(kube::Error::Api(e))
                            if e.message.contains("no SpiderIPPool of that name") =>
                        {
                            None
                        }
                        _ => Some(()),
                    }
                }
            },
        )
        .await
    }

    /// Starts the webhook replicas (registering the webhook configurations) and, when
    /// `opts.operator`, the operators: what [`Env::start`] does unless `opts.defer_ours`.
    pub async fn start_ours(&mut self, opts: &Options) -> Result<()> {
        self.start_webhooks(opts).await?;
        if opts.operator {
            for i in 0..opts.operator_replicas {
                self.start_operator(opts, i).await?;
            }
        }
        Ok(())
    }

    /// A plugin directory whose `plugin` (ours: `spiderpool`) runs `bin` in this process's network
    /// namespace. The simulator runs each node's plugins inside that node's own namespace,
    /// where 127.0.0.1 is not the machine's loopback and the API server cannot be reached; on
    /// a real node the plugins run in the host's namespace, where it can. The `bridge` plugin
    /// keeps working on the node's links and execs its IPAM plugin, which reaches the API from
    /// here (an IPAM plugin touches no link).
    fn ipam_shim_dir(&self, plugin: &str, bin: &Path) -> Result<PathBuf> {
        let dir = self.dir.path().join("cni-bin");
        std::fs::create_dir_all(&dir).map_err(io("creating the CNI shim directory"))?;
        let shim = dir.join(plugin);
        let text = format!(
            "#!/bin/sh\nexec nsenter --net=/proc/{}/ns/net -- {} \"$@\"\n",
            std::process::id(),
            bin.display()
        );
        std::fs::write(&shim, text).map_err(io("writing the CNI shim"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755))
            .map_err(io("making the CNI shim executable"))?;
        Ok(dir)
    }

    /// The simulator's clients acting as each node's kubelet: made by [`Env::apply`] for each
    /// Node (a client certificate for `system:node:<name>` in `system:nodes`, so that the Node
    /// authorizer and NodeRestriction judge what the simulator does) before the node is added.
    fn node_client_factory(&self) -> impl Fn(&str) -> kube::Client + Send + Sync + 'static {
        let clients = self.node_clients.clone();
        let admin = self.client.clone();
        move |name: &str| {
            clients
                .lock()
                .ok()
                .and_then(|m| m.get(name).cloned())
                .unwrap_or_else(|| admin.clone())
        }
    }

    async fn wait_crds_established(&self) -> Result<()> {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        wait_for(
            "the CRDs to be Established",
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    let crds = api.list(&Default::default()).await.ok()?.items;
                    crds.iter()
                        .all(|c| {
                            c.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|cs| {
                                    cs.iter()
                                        .any(|c| c.type_ == "Established" && c.status == "True")
                                })
                        })
                        .then_some(())
                }
            },
        )
        .await
    }

    /// Successful API writes so far, by resource (`pods`, `pods/binding`,
    /// `spideripclaims.spiderpool.spidernet.io`, …):
    /// the stand-in's own count, or on a real API server its `apiserver_request_total` metric
    /// (verbs POST, PUT, PATCH, APPLY and DELETE with a 2xx code, summed over groups).
    pub async fn write_counts(&self) -> Result<BTreeMap<String, u64>> {
        if let Some(s) = self.server.as_ref() {
            return Ok(s.write_counts());
        }
        let req = http::Request::get("/metrics")
            .body(Vec::new())
            .map_err(|e| Error::ControlPlane(format!("building GET /metrics: {e}")))?;
        let text = self.client.request_text(req).await?;
        Ok(write_counts_from_metrics(&text))
    }

    /// kube-apiserver's 409 answers so far, by resource (empty on the stand-in, which keeps no
    /// such count).
    pub async fn conflict_counts(&self) -> Result<BTreeMap<String, u64>> {
        if self.server.is_some() {
            return Ok(BTreeMap::new());
        }
        let req = http::Request::get("/metrics")
            .body(Vec::new())
            .map_err(|e| Error::ControlPlane(format!("building GET /metrics: {e}")))?;
        let text = self.client.request_text(req).await?;
        Ok(conflicts_from_metrics(&text))
    }

    /// The user name the environment's own client authenticates as.
    pub fn admin_user(&self) -> &'static str {
        if self.control_plane.is_some() {
            crate::controlplane::ADMIN_USER
        } else {
            "system:admin"
        }
    }

    /// The real control plane, when started here.
    pub fn control_plane(&mut self) -> Option<&mut ControlPlane> {
        self.control_plane.as_mut()
    }

    /// The node simulator, on the real control plane.
    pub fn nodes(&self) -> Option<&NodeSim> {
        self.nodes.as_ref()
    }

    /// Whether controllers and a scheduler make and place the Pods (a real control plane or
    /// cluster), or the scenarios must play them ([`crate::sim`], on the stand-in).
    pub fn has_controllers(&self) -> bool {
        self.server.is_none()
    }

    /// The stand-in, when not on a real cluster.
    pub fn stand_in(&self) -> Option<&ApiServerHandle> {
        self.server.as_ref()
    }

    /// The IPAM of the Pods' `eth0` (ours unless [`Options::ipam`] named a peer).
    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    /// The temporary directory of this environment.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `bin` as process `name` (its log appended to `name.log`).
    fn launch(&self, name: &str, bin: &Path, args: &[String], kubeconfig: &Path) -> Result<Child> {
        let log = self.dir.path().join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(format!("opening {}", log.display())))?;
        let err = out.try_clone().map_err(io("duplicating a log file"))?;
        Command::new(bin)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("E2E_LOG").unwrap_or_else(|_| "info".to_string()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("starting {}", bin.display())))
    }

    fn spawn(
        &mut self,
        bin: &str,
        name: &str,
        args: Vec<String>,
        health: SocketAddr,
        user: &str,
    ) -> Result<()> {
        let bin = bin_path(bin)?;
        let kubeconfig = self.kubeconfig_for(user)?;
        let child = self.launch(name, &bin, &args, &kubeconfig)?;
        self.children.push(Proc {
            name: name.to_string(),
            bin,
            args,
            health,
            kubeconfig,
            child: Some(child),
        });
        Ok(())
    }

    /// A kubeconfig file for `user` (a bearer token of its own on the stand-in, which admission
    /// webhooks see as that user); the environment's kubeconfig on a real cluster.
    pub fn kubeconfig_for(&self, user: &str) -> Result<PathBuf> {
        if let Some(cp) = self.control_plane.as_ref() {
            return match service_account(user) {
                Some((ns, name)) => {
                    let token = self.service_account_token(ns, name)?;
                    cp.kubeconfig_with_token(user, &token)
                }
                None => cp.kubeconfig_for_user(user, &[]),
            };
        }
        let Some(server) = self.server.as_ref() else {
            return Ok(self.kubeconfig.clone());
        };
        let token = user_token(user);
        server.add_user(&token, user, &[]);
        let path = self.dir.path().join(format!("{token}.kubeconfig"));
        server
            .write_kubeconfig_for(&path, &token)
            .map_err(|e| Error::StandIn(e.to_string()))?;
        Ok(path)
    }

    /// A client authenticated as `user` (stand-in only: on a real cluster, the environment's
    /// own client).
    pub async fn client_as(&self, user: &str) -> Result<kube::Client> {
        if self.control_plane.is_some() {
            return crate::client_from_kubeconfig(&self.kubeconfig_for(user)?).await;
        }
        let Some(server) = self.server.as_ref() else {
            return Ok(self.client.clone());
        };
        let token = user_token(user);
        server.add_user(&token, user, &[]);
        server
            .client_for(&token)
            .await
            .map_err(|e| Error::StandIn(e.to_string()))
    }

    /// A token of ServiceAccount `ns/name` from the TokenRequest API (valid 24 h), as a
    /// projected ServiceAccount token volume gives a Pod.
    fn service_account_token(&self, ns: &str, name: &str) -> Result<String> {
        // TokenRequest through kubectl: this is called from synchronous code paths
        // (kubeconfig_for), and kubectl is the real client users have.
        let out = Command::new("kubectl")
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(["create", "token", name, "-n", ns, "--duration=24h"])
            .stdin(Stdio::null())
            .output()
            .map_err(io("running kubectl create token"))?;
        if !out.status.success() {
            return Err(Error::ControlPlane(format!(
                "kubectl create token {name} -n {ns}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The names of the processes started here, in start order (`aipam-webhook-0`, …,
    /// `aipam-operator-0`, …), killed ones included.
    pub fn process_names(&self) -> Vec<String> {
        self.children.iter().map(|p| p.name.clone()).collect()
    }

    /// The process ids of the processes started here that run now, by name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .filter_map(|p| p.child.as_ref().map(|c| (p.name.clone(), c.id())))
            .collect()
    }

    fn proc_mut(&mut self, name: &str) -> Result<&mut Proc> {
        self.children
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::StandIn(format!("no process {name} was started here")))
    }

    /// Kills process `name` with SIGKILL (no chance to clean up, as a node failure or the OOM
    /// killer) and waits for it to be gone.
    pub fn kill(&mut self, name: &str) -> Result<()> {
        let p = self.proc_mut(name)?;
        if let Some(mut c) = p.child.take() {
            c.kill().map_err(io(format!("killing {name}")))?;
            c.wait().map_err(io(format!("waiting for {name}")))?;
        }
        Ok(())
    }

    /// Starts process `name` again with the same arguments (and ports) after [`Env::kill`] (a
    /// running process is killed first) and waits until it is ready.
    pub async fn restart(&mut self, name: &str) -> Result<()> {
        self.kill(name)?;
        let (bin, args, health, kubeconfig) = {
            let p = self.proc_mut(name)?;
            (
                p.bin.clone(),
                p.args.clone(),
                p.health,
                p.kubeconfig.clone(),
            )
        };
        let child = self.launch(name, &bin, &args, &kubeconfig)?;
        self.proc_mut(name)?.child = Some(child);
        self.wait_ready(name, health).await
    }

    /// As [`Env::restart`], with `args` added to the process's arguments from now on (a later
    /// flag of the same name wins, as clap takes the last): a configuration change rolled out.
    pub async fn restart_with(&mut self, name: &str, args: &[&str]) -> Result<()> {
        self.proc_mut(name)?
            .args
            .extend(args.iter().map(|a| a.to_string()));
        self.restart(name).await
    }

    /// Whether process `name` is running (started and not killed, and has not exited).
    pub fn is_running(&mut self, name: &str) -> bool {
        self.proc_mut(name)
            .ok()
            .and_then(|p| p.child.as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    async fn wait_ready(&mut self, name: &str, health: SocketAddr) -> Result<()> {
        let res = wait_for(
            &format!("{name} /readyz"),
            Duration::from_secs(30),
            || async move { (http_status(health, "/readyz") == Some(200)).then_some(()) },
        )
        .await;
        if res.is_err() {
            return Err(Error::StandIn(format!(
                "{name} did not become ready; its log:\n{}",
                self.log(name)
            )));
        }
        Ok(())
    }

    async fn start_webhooks(&mut self, opts: &Options) -> Result<()> {
        // A CA of its own (the caBundle below), as certgen or cert-manager would make.
        let pki = crate::controlplane::Pki::new()?;
        let service = format!("{WEBHOOK_SERVICE}.{SYSTEM_NAMESPACE}.svc");
        let (cert_pem, key_pem) =
            pki.issue("aipam-webhook", &[], &[&service, "127.0.0.1"], true)?;
        let cert = self.dir.path().join("tls.crt");
        let key = self.dir.path().join("tls.key");
        std::fs::write(&cert, &cert_pem).map_err(io("writing tls.crt"))?;
        std::fs::write(&key, &key_pem).map_err(io("writing tls.key"))?;
        let mut endpoints = Vec::new();
        for i in 0..opts.webhook_replicas.max(1) {
            let listen = free_port()?;
            let health = free_port()?;
            let name = webhook_name(i);
            let mut args = vec![
                format!("--listen={listen}"),
                format!("--health-listen={health}"),
                format!("--tls-cert={}", cert.display()),
                format!("--tls-key={}", key.display()),
                format!("--config-namespace={}", opts.config_namespace),
            ];
            args.extend(opts.webhook_args.iter().cloned());
            self.spawn("aipam-webhook", &name, args, health, WEBHOOK_USER)?;
            endpoints.push(listen);
        }
        for i in 0..opts.webhook_replicas.max(1) {
            let name = webhook_name(i);
            let health = self.proc_mut(&name)?.health;
            self.wait_ready(&name, health).await?;
        }
        // Register the webhook configurations exactly as config/webhook/ ships them, with the
        // CA filled in and the Service mapped to the processes (every replica an endpoint).
        let path = repo().join("config/webhook/webhooks.yaml");
        let text =
            std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
        let ca = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(pki.ca_pem().as_bytes())
        };
        if self.control_plane.is_some() {
            // No Service network: the API server calls the processes by URL (as envtest
            // registers webhooks), one replica directly, several through a balancer.
            let target = if endpoints.len() == 1 {
                endpoints[0]
            } else {
                // Each replica's /readyz decides whether it gets new connections, as its
                // EndpointSlice readiness does for kube-proxy.
                let mut probed = Vec::new();
                for (i, e) in endpoints.iter().enumerate() {
                    probed.push((*e, self.proc_mut(&webhook_name(i))?.health));
                }
                let lb = crate::proxy::Balancer::start_with_readiness(probed)?;
                let a = lb.addr();
                self.balancer = Some(lb);
                a
            };
            for mut doc in yaml_docs("config/webhook/webhooks.yaml", &text)? {
                point_at(&mut doc, &ca, target);
                self.apply(&doc).await?;
            }
            return Ok(());
        }
        let Some(server) = self.server.as_ref() else {
            return Ok(());
        };
        server.set_webhook_endpoints(SYSTEM_NAMESPACE, WEBHOOK_SERVICE, endpoints);
        for mut doc in yaml_docs("config/webhook/webhooks.yaml", &text)? {
            if let Some(hooks) = doc.get_mut("webhooks").and_then(Value::as_array_mut) {
                for h in hooks {
                    if let Some(cc) = h.get_mut("clientConfig").and_then(Value::as_object_mut) {
                        cc.insert("caBundle".to_string(), Value::String(ca.clone()));
                    }
                }
            }
            server
                .apply_object(doc)
                .await
                .map_err(|e| Error::StandIn(format!("registering the webhooks: {e}")))?;
        }
        Ok(())
    }

    async fn start_operator(&mut self, opts: &Options, i: usize) -> Result<()> {
        let metrics = free_port()?;
        let name = operator_name(i);
        let mut args = vec![
            format!("--metrics-addr={metrics}"),
            format!("--lease-namespace={SYSTEM_NAMESPACE}"),
            format!("--config-namespace={}", opts.config_namespace),
            format!("--gc-interval={}ms", opts.gc_interval.as_millis().max(1)),
            "--status-interval-ms=200".to_string(),
            format!(
                "--reservation-grace-seconds={}",
                opts.reservation_grace_seconds
            ),
            format!("--identity={name}"),
        ];
        if let Some(d) = opts.lease_duration_seconds {
            args.push(format!("--lease-duration={}", d.max(1)));
            args.push(format!("--renew-deadline={}", (d * 2 / 3).max(1)));
            args.push(format!("--retry-period={}", (d / 4).max(1)));
        }
        self.spawn("aipam-operator", &name, args, metrics, OPERATOR_USER)?;
        self.wait_ready(&name, metrics).await
    }

    /// The process holding the operators' leader-election Lease, if any (its Lease identity is
    /// its process name).
    pub async fn operator_leader(&self) -> Result<Option<String>> {
        use k8s_openapi::api::coordination::v1::Lease;
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), SYSTEM_NAMESPACE);
        Ok(leases
            .get_opt("aipam-operator")
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty()))
    }

    /// The log of a process started here. A name without its replica number
    /// (`aipam-webhook`, `aipam-operator`) gives the logs of all its replicas (with a header
    /// line each when there are several).
    pub fn log(&self, name: &str) -> String {
        let read = |n: &str| {
            std::fs::read_to_string(self.dir.path().join(format!("{n}.log")))
                .unwrap_or_else(|e| format!("(no log: {e})"))
        };
        if self.children.iter().any(|p| p.name == name) || self.children.is_empty() {
            return read(name);
        }
        let prefix = format!("{name}-");
        let replicas: Vec<&str> = self
            .children
            .iter()
            .map(|p| p.name.as_str())
            .filter(|n| {
                n.strip_prefix(&prefix)
                    .is_some_and(|i| i.chars().all(|c| c.is_ascii_digit()))
            })
            .collect();
        match replicas.as_slice() {
            [] => read(name),
            [one] => read(one),
            many => many
                .iter()
                .map(|n| format!("=== {n} ===\n{}", read(n)))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The `eth0` network of the `index`-th node registered, when the IPAM gives each node its
    /// own (host-local: a range and a data directory per node).
    fn node_network(&self, index: usize) -> Result<Option<Value>> {
        let Ipam::HostLocal(ranges) = &self.ipam else {
            return Ok(None);
        };
        let range = ranges.get(index).ok_or_else(|| {
            Error::ControlPlane(format!(
                "host-local: node {} registered, but only {} ranges given (one per node)",
                index + 1,
                ranges.len()
            ))
        })?;
        let data = self.dir.path().join(format!("host-local/node-{index}"));
        Ok(Some(crate::peers::host_local_network(range, &data)))
    }

    /// Creates an object (through admission, as `kubectl create` does); an object that exists
    /// already is replaced. Returns the stored object.
    pub async fn apply(&self, doc: &Value) -> Result<DynamicObject> {
        if let (Some(nodes), Some("Node")) =
            (self.nodes.as_ref(), doc.get("kind").and_then(Value::as_str))
        {
            // A Node is a kubelet's to register and keep Ready: the simulator plays it.
            let spec: NodeSpec = NodeSpec {
                name: doc
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                labels: doc
                    .pointer("/metadata/labels")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default(),
                primary_network: self.node_network(nodes.node_names().len())?,
            };
            if let Some(cp) = self.control_plane.as_ref() {
                let client = cp
                    .client_for_user(&format!("system:node:{}", spec.name), &["system:nodes"])
                    .await?;
                if let Ok(mut m) = self.node_clients.lock() {
                    m.insert(spec.name.clone(), client);
                }
            }
            // A kubelet may register only some labels (NodeRestriction); the others, such as
            // node-role.kubernetes.io/*, an admin sets afterwards, as kubeadm does.
            let (own, admin): (BTreeMap<_, _>, BTreeMap<_, _>) = spec
                .labels
                .clone()
                .into_iter()
                .partition(|(k, _)| kubelet_may_set(k));
            let name = spec.name.clone();
            let mut node = nodes
                .add_node(NodeSpec {
                    labels: own,
                    ..spec
                })
                .await?;
            if !admin.is_empty() {
                let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
                let patch = serde_json::json!({"metadata": {"labels": admin}});
                node = api
                    .patch(
                        &name,
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(&patch),
                    )
                    .await?;
            }
            return serde_json::from_value(serde_json::to_value(node).map_err(|e| {
                Error::Manifest {
                    what: describe(doc),
                    problem: e.to_string(),
                }
            })?)
            .map_err(|e| Error::Manifest {
                what: describe(doc),
                problem: e.to_string(),
            });
        }
        let obj: DynamicObject =
            serde_json::from_value(doc.clone()).map_err(|e| Error::Manifest {
                what: describe(doc),
                problem: e.to_string(),
            })?;
        let api = self.api_for(doc).await?;
        match api.create(&PostParams::default(), &obj).await {
            Ok(o) => Ok(o),
            Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => {
                let name = obj.metadata.name.clone().unwrap_or_default();
                let current = api.get(&name).await?;
                let mut next = obj;
                next.metadata.resource_version = current.metadata.resource_version;
                Ok(api.replace(&name, &PostParams::default(), &next).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A dynamic API for the kind of `doc` (its namespace when namespaced).
    pub async fn api_for(&self, doc: &Value) -> Result<Api<DynamicObject>> {
        let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = pinned_kind(&self.client, &gvk).await?;
        Ok(match caps.scope {
            Scope::Namespaced => {
                let ns = doc
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                Api::namespaced_with(self.client.clone(), ns, &ar)
            }
            Scope::Cluster => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// Stops the processes and the stand-in.
    pub async fn stop(mut self) {
        if let Some(n) = self.nodes.take() {
            n.stop().await;
        }
        self.kill_children();
        self.balancer.take();
        if let Some(cp) = self.control_plane.take() {
            cp.stop();
        }
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// Stops process `name` as the kubelet stops a container: SIGTERM, then at most `grace`
    /// for it to exit by itself, then SIGKILL. Returns whether it exited within `grace`.
    pub async fn terminate(&mut self, name: &str, grace: Duration) -> Result<bool> {
        let p = self.proc_mut(name)?;
        let Some(mut c) = p.child.take() else {
            return Ok(true);
        };
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .map_err(io(format!("sending SIGTERM to {name}")))?;
        let start = std::time::Instant::now();
        while sent.success() && start.elapsed() < grace {
            if c.try_wait()
                .map_err(io(format!("waiting for {name}")))?
                .is_some()
            {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.kill().map_err(io(format!("killing {name}")))?;
        c.wait().map_err(io(format!("waiting for {name}")))?;
        Ok(false)
    }

    /// Resets every connection the API server has open to the webhook replicas (through the
    /// Service's balancer, on the real control plane with several replicas): the requests in
    /// flight on them fail as a network fault fails them. `None` when there is no balancer.
    pub fn drop_webhook_connections(&self) -> Option<usize> {
        self.balancer.as_ref().map(|b| b.drop_connections())
    }

    /// Restarts the webhook replicas one by one as a Deployment's rolling update replaces its
    /// Pods: [`Env::terminate`] (the old process drains), a new process, and the next only once
    /// the new one is ready and the Service routes to it again. Returns the replicas that did
    /// not exit by themselves within `grace`.
    pub async fn rolling_restart_webhooks(&mut self, grace: Duration) -> Result<Vec<String>> {
        let names: Vec<String> = self
            .process_names()
            .into_iter()
            .filter(|n| n.starts_with("aipam-webhook-"))
            .collect();
        let mut killed = Vec::new();
        for name in names {
            if !self.terminate(&name, grace).await? {
                killed.push(name.clone());
            }
            self.restart(&name).await?;
            let listen: Option<SocketAddr> = self
                .proc_mut(&name)?
                .args
                .iter()
                .find_map(|a| a.strip_prefix("--listen="))
                .and_then(|a| a.parse().ok());
            if let (Some(lb), Some(listen)) = (self.balancer.as_ref(), listen) {
                wait_for(
                    &format!("the Service to route to {name} again"),
                    Duration::from_secs(30),
                    || async move { lb.routes_to(listen).then_some(()) },
                )
                .await?;
            }
        }
        Ok(killed)
    }

    fn kill_children(&mut self) {
        for c in self.children.iter_mut().filter_map(|p| p.child.as_mut()) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
        for c in self.children.iter_mut().filter_map(|p| p.child.as_mut()) {
            for _ in 0..50 {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_children();
    }
}

/// Points a webhook configuration's hooks at `target` by URL (keeping each Service's path) and
/// sets their caBundle.
fn point_at(doc: &mut Value, ca: &str, target: SocketAddr) {
    let Some(hooks) = doc.get_mut("webhooks").and_then(Value::as_array_mut) else {
        return;
    };
    for h in hooks {
        let Some(cc) = h.get_mut("clientConfig").and_then(Value::as_object_mut) else {
            continue;
        };
        let path = cc
            .get("service")
            .and_then(|s| s.get("path"))
            .and_then(Value::as_str)
            .unwrap_or("/")
            .to_string();
        cc.remove("service");
        cc.insert(
            "url".to_string(),
            Value::String(format!("https://{target}{path}")),
        );
        cc.insert("caBundle".to_string(), Value::String(ca.to_string()));
    }
}

/// Successful writes by resource from kube-apiserver's Prometheus text: the samples of
/// `apiserver_request_total` whose verb writes and whose code is 2xx.
pub fn write_counts_from_metrics(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (labels, n) in request_totals(text) {
        let label = |name: &str| labels.get(name).filter(|v| !v.is_empty()).cloned();
        let writes = matches!(
            label("verb").as_deref(),
            Some("POST" | "PUT" | "PATCH" | "APPLY" | "DELETE")
        );
        let ok = label("code").is_some_and(|c| c.starts_with('2'));
        let Some(resource) = label("resource") else {
            continue;
        };
        if !(writes && ok) {
            continue;
        }
        // As the stand-in counts them: `resource[.group][/subresource]`.
        let mut key = resource;
        if let Some(g) = label("group") {
            key = format!("{key}.{g}");
        }
        if let Some(sub) = label("subresource") {
            key = format!("{key}/{sub}");
        }
        *out.entry(key).or_insert(0) += n;
    }
    out
}

/// Requests kube-apiserver answered with 409 Conflict so far (`apiserver_request_total`), by
/// resource (`resource[.group]`).
pub fn conflicts_from_metrics(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (labels, n) in request_totals(text) {
        if labels.get("code").map(String::as_str) != Some("409") {
            continue;
        }
        let mut key = labels.get("resource").cloned().unwrap_or_default();
        if let Some(g) = labels.get("group").filter(|g| !g.is_empty()) {
            key = format!("{key}.{g}");
        }
        *out.entry(key).or_insert(0) += n;
    }
    out
}

/// The samples of `apiserver_request_total` in a Prometheus text: each one's labels and count.
fn request_totals(text: &str) -> impl Iterator<Item = (BTreeMap<String, String>, u64)> + '_ {
    text.lines().filter_map(|line| {
        let rest = line.strip_prefix("apiserver_request_total{")?;
        let (labels, value) = rest.rsplit_once("} ")?;
        let labels = labels
            .split("\",")
            .filter_map(|kv| {
                let (k, v) = kv.split_once("=\"")?;
                Some((
                    k.trim_start_matches(',').to_string(),
                    v.trim_end_matches('"').to_string(),
                ))
            })
            .collect();
        let n = value.trim().parse::<f64>().unwrap_or(0.0);
        Some((labels, n as u64))
    })
}

/// Whether a kubelet may set label `key` on its own Node (the NodeRestriction admission plugin:
/// labels outside the `kubernetes.io` and `k8s.io` domains, and a listed few inside them).
fn kubelet_may_set(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return true;
    };
    const ALLOWED: [&str; 9] = [
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "beta.kubernetes.io/instance-type",
    ];
    let in_domain = |d: &str| prefix == d || prefix.ends_with(&format!(".{d}"));
    if !in_domain("kubernetes.io") && !in_domain("k8s.io") {
        return true;
    }
    ALLOWED.contains(&key) || in_domain("kubelet.kubernetes.io") || in_domain("node.kubernetes.io")
}

/// Every manifest of `path`: a `.yaml` file, or the `.yaml` files of a directory in file name
/// order.
pub fn manifests_in(path: &Path) -> Result<Vec<Value>> {
    if path.is_file() {
        let text =
            std::fs::read_to_string(path).map_err(io(format!("reading {}", path.display())))?;
        return yaml_docs(&path.display().to_string(), &text);
    }
    let dir = path;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(format!("reading {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(io(format!("reading {}", f.display())))?;
        out.extend(yaml_docs(&f.display().to_string(), &text)?);
    }
    Ok(out)
}

/// The stand-in bearer token of a user: its name with every character outside `[A-Za-z0-9-]`
/// replaced.
fn user_token(user: &str) -> String {
    let t: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("token-{t}")
}

/// `Kind namespace/name` of a manifest, for messages.
pub fn describe(doc: &Value) -> String {
    let s = |p: &str| doc.pointer(p).and_then(Value::as_str).unwrap_or("");
    let ns = s("/metadata/namespace");
    let name = s("/metadata/name");
    if ns.is_empty() {
        format!("{} {name}", s("/kind"))
    } else {
        format!("{} {ns}/{name}", s("/kind"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn writes_are_counted_from_the_api_servers_metrics() {
        let text = r#"# HELP apiserver_request_total [STABLE] Counter of apiserver requests
apiserver_request_total{code="201",component="apiserver",dry_run="",group="spiderpool.spidernet.io",resource="spideripclaims",scope="resource",subresource="",verb="POST",version="v2beta1"} 7
apiserver_request_total{code="409",component="apiserver",dry_run="",group="spiderpool.spidernet.io",resource="spideripclaims",scope="resource",subresource="",verb="POST",version="v2beta1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 3
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="binding",verb="POST",version="v1"} 4
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 40
"#;
        let c = write_counts_from_metrics(text);
        assert_eq!(
            c.get("spideripclaims.spiderpool.spidernet.io"),
            Some(&7),
            "409s are not writes"
        );
        assert_eq!(c.get("pods/status"), Some(&3));
        assert_eq!(c.get("pods/binding"), Some(&4));
        assert_eq!(c.get("pods"), None, "reads are not writes");
        assert_eq!(
            conflicts_from_metrics(text),
            BTreeMap::from([("spideripclaims.spiderpool.spidernet.io".to_string(), 2)]),
            "the 409s, by resource"
        );
    }

    #[test]
    fn a_kubelet_sets_only_the_labels_noderestriction_allows() {
        for ok in [
            "zone",
            "node-subnet",
            "kubernetes.io/hostname",
            "topology.kubernetes.io/zone",
            "node.kubernetes.io/instance-type",
            "example.com/rack",
        ] {
            assert!(kubelet_may_set(ok), "{ok}");
        }
        for no in [
            "node-role.kubernetes.io/control-plane",
            "node-restriction.kubernetes.io/x",
            "kubernetes.io/role",
            "sub.k8s.io/x",
        ] {
            assert!(!kubelet_may_set(no), "{no}");
        }
    }
}
