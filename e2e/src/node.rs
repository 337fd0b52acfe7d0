//! A node simulator: what kubelet and containerd do for Pod networking on a real API server, and
//! nothing else (no images, no processes, no volumes).
//!
//! For each simulated node, [`NodeSim`] registers the Node (status included, as kubelet does),
//! renews its Lease and heartbeats its `Ready` condition so that kube-controller-manager's node
//! lifecycle controller leaves it Ready and untainted, and watches the Pods bound to it (with the
//! `spec.nodeName` field selector a kubelet must use under the Node authorizer). A Pod bound to a
//! node gets a sandbox the way containerd makes one: a network namespace, the CNI chain of its
//! primary network on `eth0` and of every network its Multus annotation names (`net1`, `net2`,
//! …), run as libcni runs it (`CNI_*` variables, `name`/`cniVersion`/`prevResult` injected, the
//! result cached under `<cache_dir>/results/`), then the Pod's status is set Running as kubelet
//! sets it. A failed ADD is undone with DEL, reported as a `FailedCreatePodSandBox` Event and
//! retried with backoff. A Pod being deleted gets DEL for every interface (with its cached
//! result), its namespace removed, and kubelet's final delete.
//!
//! Every CNI plugin runs inside the node's own network namespace (`aipam-n-<hash>`, with an
//! `eth0` as macvlan master: a dummy link, or a veth pair kept inside that namespace where the
//! kernel has no dummy driver), never in the machine's root namespace.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    PostParams, Preconditions,
};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::runtime::WatchStreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Error, Result};

/// Prefix of the network namespaces of simulated Pods.
pub const POD_NETNS_PREFIX: &str = "aipam-p-";
/// Prefix of the network namespaces of simulated nodes.
pub const NODE_NETNS_PREFIX: &str = "aipam-n-";
/// Where `ip netns` keeps named network namespaces (`CNI_NETNS` points here).
pub const NETNS_DIR: &str = "/var/run/netns";
/// The interface of the primary network.
pub const PRIMARY_IFNAME: &str = "eth0";
/// Multus's annotation naming a Pod's additional networks.
pub const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_DURATION_SECONDS: i32 = 40;
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(10);
/// The Ready condition is refreshed every this many Lease renewals (20 s).
const STATUS_EVERY_RENEWALS: u64 = 2;
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const KUBELET_VERSION: &str = "v1.37.2";
const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// A node to simulate.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    /// The Node's name.
    pub name: String,
    /// Its labels (`kubernetes.io/hostname`, `kubernetes.io/os` and `kubernetes.io/arch` are
    /// added). Labels a kubelet may not set (NodeRestriction) make the registration fail.
    pub labels: BTreeMap<String, String>,
    /// This node's own `eth0` network configuration list, when it differs from the
    /// simulator's [`NodeSimOptions::primary_network`] (host-local users give each node its own
    /// range).
    pub primary_network: Option<Value>,
}

/// What to simulate and how to run CNI.
#[derive(Debug, Clone)]
pub struct NodeSimOptions {
    /// The nodes registered at start ([`NodeSim::add_node`] adds more later).
    pub nodes: Vec<NodeSpec>,
    /// The network configuration list of every Pod's `eth0` (what `/etc/cni/net.d` holds).
    pub primary_network: Value,
    /// Injected as `ipam.kubeconfig` into every `"ipam": {"type": "spiderpool"}` lacking one, as
    /// the CNI installer's default path would provide it.
    pub cni_kubeconfig: PathBuf,
    /// The plugin directories (`CNI_PATH`), searched in order.
    pub plugin_dirs: Vec<PathBuf>,
    /// libcni's cache directory (results are cached under `results/`).
    pub cache_dir: PathBuf,
}

/// One interface of a Pod, as its CNI ADD returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimInterface {
    /// The interface name in the Pod (`eth0`, `net1`, …).
    pub ifname: String,
    /// The CNI network name.
    pub network: String,
    /// The addresses the result gave the Pod's interface, with prefix (`10.0.0.5/24`).
    pub ips: Vec<String>,
    /// The raw CNI result.
    pub result: Value,
}

/// What the simulator did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Sandboxes whose CNI ADD succeeded for every interface.
    pub adds_ok: u64,
    /// Sandbox creations that failed (each retry counts).
    pub adds_failed: u64,
    /// Teardowns of successful sandboxes (DEL of every interface).
    pub dels: u64,
    /// Pods set Running by the simulator and not torn down yet (hostNetwork ones included).
    pub running: u64,
}

/// The running simulator. [`NodeSim::stop`] (or, best effort, dropping it) stops its tasks and
/// removes every network namespace it made.
pub struct NodeSim {
    shared: Arc<Shared>,
}

impl fmt::Debug for NodeSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeSim")
            .field("nodes", &self.node_names())
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl NodeSim {
    /// Registers the nodes and starts their heartbeats and Pod handling.
    ///
    /// `client_for_node(name)` gives the client that acts as that node's kubelet (authenticated
    /// as `system:node:<name>` in `system:nodes`, so the Node authorizer and NodeRestriction
    /// apply); only calls a kubelet may make go through it. NetworkAttachmentDefinitions are read
    /// with `admin`.
    pub async fn start(
        admin: kube::Client,
        client_for_node: impl Fn(&str) -> kube::Client + Send + Sync + 'static,
        opts: NodeSimOptions,
    ) -> Result<NodeSim> {
        let results = opts.cache_dir.join("results");
        std::fs::create_dir_all(&results).map_err(|source| Error::Io {
            what: format!("creating {}", results.display()),
            source,
        })?;
        let mut primary = opts.primary_network.clone();
        inject_kubeconfig(&mut primary, &opts.cni_kubeconfig);
        static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let instance = format!(
            "{}.{}",
            std::process::id(),
            INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let shared = Arc::new(Shared {
            instance,
            admin,
            primary,
            kubeconfig: opts.cni_kubeconfig.clone(),
            plugin_dirs: opts.plugin_dirs.clone(),
            cache_dir: opts.cache_dir.clone(),
            client_for_node: Box::new(client_for_node),
            nodes: Mutex::new(BTreeMap::new()),
            pods: Mutex::new(HashMap::new()),
            counters: Mutex::new(SimCounters::default()),
            netns: Mutex::new(NetnsRegistry::default()),
            tasks: Mutex::new(Vec::new()),
        });
        // From here on, dropping `sim` (an error below) removes what was made.
        let sim = NodeSim { shared };
        let heartbeat = tokio::spawn(heartbeat(sim.shared.clone()));
        sim.shared.add_task(heartbeat);
        for spec in opts.nodes {
            sim.add_node(spec).await?;
        }
        Ok(sim)
    }

    /// Adds a node: its network namespace, its registration (the Node as stored is returned),
    /// its Lease, and the watch of its Pods. The kubelet client is `client_for_node(name)`,
    /// asked now. Adding a node again registers it again.
    pub async fn add_node(&self, spec: NodeSpec) -> Result<Node> {
        let existing = lock(&self.shared.nodes).get(&spec.name).cloned();
        if let Some(node) = existing {
            return register_node(&node, &spec).await;
        }
        let node = Arc::new(SimNode {
            name: spec.name.clone(),
            client: (self.shared.client_for_node)(&spec.name),
            netns: node_netns_name(&format!("{}/{}", self.shared.instance, spec.name)),
            ip: node_internal_ip(&spec.name),
            primary: match &spec.primary_network {
                Some(own) => {
                    let mut own = own.clone();
                    inject_kubeconfig(&mut own, &self.shared.kubeconfig);
                    own
                }
                None => self.shared.primary.clone(),
            },
        });
        let shared = self.shared.clone();
        let netns = node.netns.clone();
        tokio::task::spawn_blocking(move || create_node_netns(&shared, &netns))
            .await
            .map_err(|e| sim_error(format!("node network namespace: {e}")))?
            .map_err(|e| sim_error(format!("node {}: {e}", spec.name)))?;
        let registered = register_node(&node, &spec).await?;
        if let Err(e) = renew_lease(&node).await {
            // The heartbeat retries (kube-node-lease may not exist yet on a fresh API server).
            eprintln!("node-sim: node {}: lease: {e}", node.name);
        }
        lock(&self.shared.nodes).insert(spec.name.clone(), node.clone());
        let task = tokio::spawn(watch_node(self.shared.clone(), node));
        self.shared.add_task(task);
        Ok(registered)
    }

    /// Waits until no simulated node carries the `node.kubernetes.io/not-ready` taint (which
    /// the API server's NodeTaint admission adds at registration and the node lifecycle
    /// controller removes once it sees the node Ready).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        for node in self.shared.node_list() {
            let api: Api<Node> = Api::all(node.client.clone());
            let what = format!("node {} without the {NOT_READY_TAINT} taint", node.name);
            crate::wait_for(&what, timeout, || {
                let (api, name) = (api.clone(), node.name.clone());
                async move {
                    let n = api.get(&name).await.ok()?;
                    let taints = n.spec.and_then(|s| s.taints).unwrap_or_default();
                    (!taints.iter().any(|t| t.key == NOT_READY_TAINT)).then_some(())
                }
            })
            .await?;
        }
        Ok(())
    }

    /// The names of the simulated nodes.
    pub fn node_names(&self) -> Vec<String> {
        lock(&self.shared.nodes).keys().cloned().collect()
    }

    /// The network namespace of a simulated node.
    pub fn node_netns(&self, node: &str) -> Option<String> {
        lock(&self.shared.nodes).get(node).map(|n| n.netns.clone())
    }

    /// The address a simulated node reports as `InternalIP`.
    pub fn node_ip(&self, node: &str) -> Option<String> {
        lock(&self.shared.nodes).get(node).map(|n| n.ip.clone())
    }

    /// What CNI ADD returned for each interface of a running Pod (primary first), or `None`
    /// when the Pod has no sandbox (not started, hostNetwork, torn down or unknown).
    pub fn interfaces(&self, namespace: &str, pod: &str) -> Option<Vec<SimInterface>> {
        let pods = lock(&self.shared.pods);
        pods.get(&pod_key(namespace, pod))?.interfaces.clone()
    }

    /// The last sandbox creation error of a Pod (kept after the Pod is gone).
    pub fn last_error(&self, namespace: &str, pod: &str) -> Option<String> {
        let pods = lock(&self.shared.pods);
        pods.get(&pod_key(namespace, pod))?.last_error.clone()
    }

    /// The network namespaces this simulator made and has not removed yet.
    pub fn netns_names(&self) -> Vec<String> {
        lock(&self.shared.netns).names.iter().cloned().collect()
    }

    /// The counters.
    pub fn counters(&self) -> SimCounters {
        *lock(&self.shared.counters)
    }

    /// Stops the tasks and removes every network namespace (Pods' and nodes') and cache file
    /// the simulator made, without running DEL.
    pub async fn stop(self) {
        let tasks = self.shared.stop_tasks();
        for task in tasks {
            // Aborted tasks end with a cancellation error: expected.
            let _ = task.await;
        }
        let shared = self.shared.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || shared.remove_everything()).await {
            eprintln!("node-sim: cleanup: {e}");
        }
    }
}

impl Drop for NodeSim {
    fn drop(&mut self) {
        // Best effort (after `stop` there is nothing left to do).
        drop(self.shared.stop_tasks());
        self.shared.remove_everything();
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------------

struct SimNode {
    name: String,
    client: kube::Client,
    netns: String,
    ip: String,
    /// The network list of its Pods' `eth0` (kubeconfig injected).
    primary: Value,
}

/// What is known of one Pod (by namespace and name; `uid` tells incarnations apart).
#[derive(Default)]
struct PodState {
    uid: String,
    interfaces: Option<Vec<SimInterface>>,
    last_error: Option<String>,
}

/// The network namespaces and cache files made and not removed yet; once `stopped`, nothing new
/// may be made (a CNI call still running in a blocking thread must not leave a namespace).
#[derive(Default)]
struct NetnsRegistry {
    stopped: bool,
    names: BTreeSet<String>,
    cache_files: BTreeSet<PathBuf>,
}

struct Shared {
    /// Unique per simulator in this machine (process id and a counter): node namespaces are
    /// named from it and the node's name, so two simulators (two tests, two test runs) with
    /// the same node names never share a namespace.
    instance: String,
    admin: kube::Client,
    primary: Value,
    kubeconfig: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
    client_for_node: Box<dyn Fn(&str) -> kube::Client + Send + Sync>,
    nodes: Mutex<BTreeMap<String, Arc<SimNode>>>,
    pods: Mutex<HashMap<(String, String), PodState>>,
    counters: Mutex<SimCounters>,
    netns: Mutex<NetnsRegistry>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Locks a mutex, going on when a panicking thread poisoned it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn pod_key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_string(), name.to_string())
}

/// The harness error for a simulator failure.
fn sim_error(msg: String) -> Error {
    Error::StandIn(format!("node simulator: {msg}"))
}

impl Shared {
    fn node_list(&self) -> Vec<Arc<SimNode>> {
        lock(&self.nodes).values().cloned().collect()
    }

    fn add_task(&self, task: JoinHandle<()>) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Aborts every task and returns their handles.
    fn stop_tasks(&self) -> Vec<JoinHandle<()>> {
        lock(&self.netns).stopped = true;
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for t in &tasks {
            t.abort();
        }
        tasks
    }

    /// Removes every namespace and cache file made (blocking).
    fn remove_everything(&self) {
        let (names, files) = {
            let mut reg = lock(&self.netns);
            reg.stopped = true;
            (
                std::mem::take(&mut reg.names),
                std::mem::take(&mut reg.cache_files),
            )
        };
        for name in names {
            if let Err(e) = run_ip(&["netns", "delete", &name]) {
                eprintln!("node-sim: deleting netns {name}: {e}");
            }
        }
        for file in files {
            let _ = std::fs::remove_file(file);
        }
    }

    fn count(&self, f: impl FnOnce(&mut SimCounters)) {
        f(&mut lock(&self.counters));
    }

    /// Updates the state of a Pod incarnation (a newer incarnation replaces an older one).
    fn update_pod(&self, pod: &PodRef, f: impl FnOnce(&mut PodState)) {
        let mut pods = lock(&self.pods);
        let state = pods.entry(pod_key(&pod.namespace, &pod.name)).or_default();
        if state.uid != pod.uid {
            *state = PodState {
                uid: pod.uid.clone(),
                ..PodState::default()
            };
        }
        f(state);
    }

    /// Forgets a Pod incarnation's interfaces (not a newer incarnation's).
    fn clear_interfaces(&self, pod: &PodRef) {
        let mut pods = lock(&self.pods);
        if let Some(state) = pods.get_mut(&pod_key(&pod.namespace, &pod.name)) {
            if state.uid == pod.uid {
                state.interfaces = None;
            }
        }
    }

    fn cni_path(&self) -> String {
        join_paths(&self.plugin_dirs)
    }
}

// ---------------------------------------------------------------------------------------------
// Pure helpers: names, ids, CNI arguments, configuration, cache, results, status
// ---------------------------------------------------------------------------------------------

fn fnv64(seed: u64, s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A short stable hash (8 hex digits).
fn short_hash(s: &str) -> String {
    format!("{:08x}", fnv64(0, s) & 0xffff_ffff)
}

/// The network namespace of a simulated node: `aipam-n-<hash of the name>`.
pub fn node_netns_name(node: &str) -> String {
    format!("{NODE_NETNS_PREFIX}{}", short_hash(node))
}

/// The network namespace of a Pod: `aipam-p-<first 12 characters of its UID>`.
pub fn pod_netns_name(uid: &str) -> String {
    format!(
        "{POD_NETNS_PREFIX}{}",
        uid.chars().take(12).collect::<String>()
    )
}

/// The made-up `InternalIP` of a node, in 198.18.0.0/15 (never contacted).
pub fn node_internal_ip(node: &str) -> String {
    let h = fnv64(1, node);
    format!(
        "198.{}.{}.{}",
        18 + ((h >> 16) & 1),
        (h >> 8) & 0xff,
        1 + (h & 0xff) % 254
    )
}

/// A stable 64-hex-digit id derived from `s` (the containers' ids).
fn derived_id(s: &str) -> String {
    (0..4)
        .map(|i| format!("{:016x}", fnv64(i + 7, s)))
        .collect()
}

/// A fresh 64-hex-digit id (a sandbox id, as containerd makes them).
fn random_id() -> std::result::Result<String, String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// One network a Multus annotation names, with Multus's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSelection {
    /// The NetworkAttachmentDefinition's namespace (default: the Pod's).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The interface in the Pod (default: `net<position>`, from `net1`).
    pub interface: String,
}

/// Parses Multus's `k8s.v1.cni.cncf.io/networks` as Multus does: a JSON list of selection
/// elements when the value contains `[`, `{` or `"`, else a comma list of
/// `[namespace/]name[@interface]`.
pub fn parse_networks_annotation(
    value: &str,
    pod_namespace: &str,
) -> std::result::Result<Vec<NetworkSelection>, String> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<(Option<String>, String, Option<String>)> = if value.contains(['[', '{', '"']) {
        parse_networks_json(value)?
    } else {
        value
            .split(',')
            .map(parse_network_text)
            .collect::<std::result::Result<_, _>>()?
    };
    Ok(raw
        .into_iter()
        .enumerate()
        .map(|(i, (namespace, name, interface))| NetworkSelection {
            namespace: namespace.unwrap_or_else(|| pod_namespace.to_string()),
            name,
            interface: interface.unwrap_or_else(|| format!("net{}", i + 1)),
        })
        .collect())
}

type RawSelection = (Option<String>, String, Option<String>);

fn parse_networks_json(value: &str) -> std::result::Result<Vec<RawSelection>, String> {
    let items: Vec<Value> = serde_json::from_str(value)
        .map_err(|e| format!("parsePodNetworkAnnotation: failed to parse pod Network Attachment Selection Annotation JSON format: {e}"))?;
    items
        .iter()
        .map(|item| {
            let field = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
            let name = field("name")
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("network selection element without a name: {item}"))?;
            let interface = field("interface").or_else(|| field("interfaceRequest"));
            Ok((
                field("namespace").filter(|n| !n.is_empty()),
                name,
                interface,
            ))
        })
        .collect()
}

fn parse_network_text(item: &str) -> std::result::Result<RawSelection, String> {
    let item = item.trim();
    let bad = |why: &str| format!("invalid network selection `{item}`: {why}");
    let (namespace, rest) = match item.split('/').collect::<Vec<_>>().as_slice() {
        [rest] => (None, *rest),
        [ns, rest] => (Some(*ns), *rest),
        _ => return Err(bad("more than one '/'")),
    };
    let (name, interface) = match rest.split('@').collect::<Vec<_>>().as_slice() {
        [name] => (*name, None),
        [name, iface] => (*name, Some(*iface)),
        _ => return Err(bad("more than one '@'")),
    };
    for part in namespace.iter().chain([&name]) {
        if !aipam_core::names::has_dns1123_label_form(part) {
            return Err(bad("names must be lowercase RFC 1123 labels"));
        }
    }
    if interface == Some("") {
        return Err(bad("empty interface name"));
    }
    Ok((
        namespace.map(str::to_string),
        name.to_string(),
        interface.map(str::to_string),
    ))
}

/// libcni's `Args` for a Pod sandbox, as containerd passes them.
fn cni_args(namespace: &str, pod: &str, sandbox: &str, uid: &str) -> Vec<[String; 2]> {
    [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", namespace),
        ("K8S_POD_NAME", pod),
        ("K8S_POD_INFRA_CONTAINER_ID", sandbox),
        ("K8S_POD_UID", uid),
    ]
    .iter()
    .map(|(k, v)| [k.to_string(), v.to_string()])
    .collect()
}

/// The `CNI_ARGS` variable: `K=V` pairs joined by `;`.
fn cni_args_env(args: &[[String; 2]]) -> String {
    args.iter()
        .map(|[k, v]| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// The plugin configurations of a network: a list's `plugins`, or the single configuration.
fn plugin_confs(conf: &Value) -> Vec<Value> {
    match conf.get("plugins").and_then(Value::as_array) {
        Some(plugins) => plugins.clone(),
        None => vec![conf.clone()],
    }
}

/// One plugin's stdin, as libcni's `buildOneConfig` makes it: the network's `name` and
/// `cniVersion` injected, and `prevResult` when given.
fn plugin_stdin(network: &Value, plugin: &Value, prev: Option<&Value>) -> Value {
    let mut out = plugin.clone();
    if let Some(obj) = out.as_object_mut() {
        for key in ["name", "cniVersion"] {
            if let Some(v) = network.get(key) {
                obj.insert(key.to_string(), v.clone());
            }
        }
        match prev {
            Some(p) if !p.is_null() => {
                obj.insert("prevResult".to_string(), p.clone());
            }
            _ => {
                obj.remove("prevResult");
            }
        }
    }
    out
}

/// Whether libcni passes the cached result on DEL: from CNI 0.4.0 on.
fn del_gets_prev_result(cni_version: &str) -> bool {
    let parts: Vec<u64> = cni_version
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    let (major, minor) = (
        parts.first().copied().unwrap_or(0),
        parts.get(1).copied().unwrap_or(0),
    );
    major >= 1 || minor >= 4
}

/// Sets `ipam.kubeconfig` in every plugin whose IPAM is `spiderpool` and names none.
fn inject_kubeconfig(conf: &mut Value, kubeconfig: &Path) {
    let path = Value::String(kubeconfig.display().to_string());
    for_each_plugin(conf, |plugin| {
        if let Some(ipam) = plugin.get_mut("ipam").and_then(Value::as_object_mut) {
            if ipam.get("type").and_then(Value::as_str) == Some("spiderpool")
                && !ipam.contains_key("kubeconfig")
            {
                ipam.insert("kubeconfig".to_string(), path.clone());
            }
        }
    });
}

/// Points macvlan/ipvlan plugins at the node namespace's `eth0` when the master they name (or
/// the default-route interface they would pick) does not exist there.
fn fix_masters(conf: &mut Value, link_exists: impl Fn(&str) -> bool) {
    for_each_plugin(conf, |plugin| {
        let kind = plugin.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "macvlan" && kind != "ipvlan" {
            return;
        }
        let master = plugin.get("master").and_then(Value::as_str).unwrap_or("");
        if master.is_empty() || !link_exists(master) {
            if let Some(obj) = plugin.as_object_mut() {
                obj.insert("master".to_string(), json!(PRIMARY_IFNAME));
            }
        }
    });
}

fn for_each_plugin(conf: &mut Value, mut f: impl FnMut(&mut Value)) {
    match conf.get_mut("plugins").and_then(Value::as_array_mut) {
        Some(plugins) => plugins.iter_mut().for_each(f),
        None => f(conf),
    }
}

/// libcni's cache file of one attachment.
fn cache_file(cache_dir: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    cache_dir
        .join("results")
        .join(format!("{network}-{container_id}-{ifname}"))
}

/// What libcni writes to the cache after a successful ADD.
struct CacheEntry<'a> {
    container_id: &'a str,
    config: &'a [u8],
    ifname: &'a str,
    network: &'a str,
    netns: &'a str,
    args: &'a [[String; 2]],
    result: &'a Value,
}

impl CacheEntry<'_> {
    /// The `cniCacheV1` document.
    fn to_json(&self) -> Value {
        json!({
            "kind": "cniCacheV1",
            "containerId": self.container_id,
            "config": base64::engine::general_purpose::STANDARD.encode(self.config),
            "ifName": self.ifname,
            "networkName": self.network,
            "netns": self.netns,
            "cniArgs": self.args,
            "result": self.result,
        })
    }
}

/// Reads a cache document back: the network configuration and the cached result.
fn parse_cache(doc: &Value) -> std::result::Result<(Value, Value), String> {
    if doc.get("kind").and_then(Value::as_str) != Some("cniCacheV1") {
        return Err("not a cniCacheV1 document".to_string());
    }
    let encoded = doc
        .get("config")
        .and_then(Value::as_str)
        .ok_or("no config")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("config: {e}"))?;
    let config = serde_json::from_slice(&bytes).map_err(|e| format!("config: {e}"))?;
    Ok((config, doc.get("result").cloned().unwrap_or(Value::Null)))
}

/// The addresses a CNI result gives the Pod's interface (`ips` whose `interface` is a sandbox
/// interface, or names none; the 0.2.0 `ip4`/`ip6` form too), with prefix.
fn result_addresses(result: &Value) -> Vec<String> {
    let interfaces = result
        .get("interfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let in_sandbox = |ip: &Value| match ip.get("interface").and_then(Value::as_u64) {
        None => true,
        Some(i) => interfaces
            .get(i as usize)
            .and_then(|intf| intf.get("sandbox"))
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty()),
    };
    let mut out: Vec<String> = result
        .get("ips")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter(|ip| in_sandbox(ip))
                .filter_map(|ip| ip.get("address").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for legacy in ["ip4", "ip6"] {
        if let Some(a) = result
            .pointer(&format!("/{legacy}/ip"))
            .and_then(Value::as_str)
        {
            out.push(a.to_string());
        }
    }
    out
}

/// Pod IPs from addresses with prefix: the prefix dropped, IPv4 first (kubelet puts the node's
/// family first; the simulated nodes are IPv4), the order kept within a family.
fn pod_ips(addresses: &[String]) -> Vec<String> {
    let bare: Vec<String> = addresses
        .iter()
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .collect();
    let (v4, v6): (Vec<String>, Vec<String>) = bare.into_iter().partition(|a| !a.contains(':'));
    v4.into_iter().chain(v6).collect()
}

/// Formats a time as `metav1.Time` does (seconds, UTC).
fn rfc3339(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Formats a time as `metav1.MicroTime` does.
fn rfc3339_micro(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The `pods/status` merge patch kubelet's status manager would send once the sandbox and the
/// containers run.
fn running_status_patch(
    pod: &Pod,
    host_ip: &str,
    ips: &[String],
    sandbox: &str,
    now: &str,
) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let scheduled_at = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| rfc3339(t.0))
        .unwrap_or_else(|| now.to_string());
    let condition = |kind: &str, at: &str| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": at});
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": "",
                "containerID": format!("containerd://{}", derived_id(&format!("{sandbox}/{}", c.name))),
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            })
        })
        .collect();
    let init_containers: Vec<Value> = spec
        .init_containers
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let id = format!("containerd://{}", derived_id(&format!("{sandbox}/{}", c.name)));
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let state = if sidecar {
                json!({"running": {"startedAt": now}})
            } else {
                json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now, "containerID": id}})
            };
            json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": "",
                "containerID": id,
                "ready": true,
                "started": sidecar,
                "restartCount": 0,
                "state": state,
            })
        })
        .collect();
    let mut status = json!({
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers", now),
            condition("Initialized", now),
            condition("Ready", now),
            condition("ContainersReady", now),
            condition("PodScheduled", &scheduled_at),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": ips.first(),
        "podIPs": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
        "startTime": now,
        "containerStatuses": containers,
    });
    if !init_containers.is_empty() {
        status["initContainerStatuses"] = Value::Array(init_containers);
    }
    json!({ "status": status })
}

/// The Node kubelet registers.
fn node_object(spec: &NodeSpec, ip: &str, now: &str) -> Value {
    let mut labels = spec.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), spec.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), "amd64".into());
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {},
        "status": node_status(&spec.name, ip, now),
    })
}

fn node_conditions(now: &str, transition: Option<&str>) -> Value {
    let cond = |kind: &str, status: &str, reason: &str, message: &str| {
        let mut c = json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now,
        });
        if let Some(t) = transition {
            c["lastTransitionTime"] = json!(t);
        }
        c
    };
    json!([
        cond(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        cond(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        cond(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        cond(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

fn node_status(name: &str, ip: &str, now: &str) -> Value {
    let resources =
        json!({"cpu": "8", "memory": "32Gi", "pods": "250", "ephemeral-storage": "100Gi"});
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": node_conditions(now, Some(now)),
        "addresses": [
            {"type": "InternalIP", "address": ip},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": &derived_id(name)[..32],
            "systemUUID": &derived_id(&format!("uuid/{name}"))[..32],
            "bootID": &derived_id(&format!("boot/{name}"))[..32],
            "kernelVersion": "6.1.0-aipam-sim",
            "osImage": "Debian GNU/Linux 13 (simulated)",
            "containerRuntimeVersion": "containerd://2.1.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    })
}

/// The message of a CNI error, as `types.Error.Error()` formats it: `msg; details`.
fn cni_error_text(err: &Value) -> String {
    let msg = err.get("msg").and_then(Value::as_str).unwrap_or("");
    match err.get("details").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => format!("{msg}; {d}"),
        _ => msg.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Processes: `ip` and the CNI plugins (blocking)
// ---------------------------------------------------------------------------------------------

/// Runs `ip` with `args`; the error is its stderr.
fn run_ip(args: &[&str]) -> std::result::Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

fn link_exists(netns: &str, link: &str) -> bool {
    run_ip(&["-n", netns, "link", "show", "dev", link]).is_ok()
}

/// Creates a named network namespace with `lo` up, recording it (refused once stopping).
fn create_netns(shared: &Shared, name: &str) -> std::result::Result<(), String> {
    let mut reg = lock(&shared.netns);
    if reg.stopped {
        return Err("the node simulator is stopping".to_string());
    }
    if netns_exists(name) {
        run_ip(&["netns", "delete", name])?;
    }
    run_ip(&["netns", "add", name])?;
    reg.names.insert(name.to_string());
    run_ip(&["-n", name, "link", "set", "lo", "up"])
}

fn delete_netns(shared: &Shared, name: &str) {
    let mut reg = lock(&shared.netns);
    if reg.names.remove(name) || netns_exists(name) {
        if let Err(e) = run_ip(&["netns", "delete", name]) {
            eprintln!("node-sim: {e}");
        }
    }
}

/// A node's namespace: `lo` up and `eth0` up (the macvlan master): a dummy link, or, where the
/// kernel has no dummy driver, one end of a veth pair whose other end (`eth0-peer`) stays in
/// the node's namespace too.
fn create_node_netns(shared: &Shared, name: &str) -> std::result::Result<(), String> {
    create_netns(shared, name)?;
    let dummy = run_ip(&["-n", name, "link", "add", PRIMARY_IFNAME, "type", "dummy"]);
    if dummy.is_err() {
        let peer = format!("{PRIMARY_IFNAME}-peer");
        run_ip(&[
            "-n",
            name,
            "link",
            "add",
            PRIMARY_IFNAME,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])
        .map_err(|e| {
            format!(
                "{e} (and no dummy link: {})",
                dummy.err().unwrap_or_default()
            )
        })?;
        run_ip(&["-n", name, "link", "set", &peer, "up"])?;
    }
    run_ip(&["-n", name, "link", "set", PRIMARY_IFNAME, "up"])
}

/// A plugin failure: the CNI error document (or one made from stderr).
#[derive(Debug, Clone)]
struct PluginError {
    plugin: String,
    error: Value,
}

/// The `CNI_*` variables of one call.
struct Invocation<'a> {
    command: &'a str,
    container_id: &'a str,
    netns: &'a str,
    ifname: &'a str,
    args: &'a str,
    cni_path: &'a str,
    node_netns: &'a str,
}

fn find_plugin(dirs: &[PathBuf], kind: &str) -> Option<PathBuf> {
    if kind.is_empty() || kind.contains('/') {
        return None;
    }
    dirs.iter().map(|d| d.join(kind)).find(|p| p.is_file())
}

/// Runs one plugin inside the node's namespace with `stdin`; returns its result (`Null` when
/// it printed nothing).
fn exec_plugin(
    dirs: &[PathBuf],
    inv: &Invocation<'_>,
    stdin: &Value,
) -> std::result::Result<Value, PluginError> {
    let kind = stdin.get("type").and_then(Value::as_str).unwrap_or("");
    let fail = |msg: String, details: String| PluginError {
        plugin: kind.to_string(),
        error: json!({"code": 999, "msg": msg, "details": details}),
    };
    let bin = find_plugin(dirs, kind).ok_or_else(|| {
        fail(
            format!(
                "failed to find plugin {kind:?} in path [{}]",
                join_paths(dirs)
            ),
            String::new(),
        )
    })?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", inv.node_netns])
        .arg(&bin)
        .env("CNI_COMMAND", inv.command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", format!("{NETNS_DIR}/{}", inv.netns))
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", inv.cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("starting {}: {e}", bin.display()), String::new()))?;
    if let Some(mut input) = child.stdin.take() {
        // A plugin that exits without reading its stdin is judged by its output below.
        let _ = input.write_all(stdin.to_string().as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("running {}: {e}", bin.display()), String::new()))?;
    let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if out.status.success() {
        return Ok(parsed.unwrap_or(Value::Null));
    }
    Err(match parsed {
        Some(error) if error.get("msg").is_some() => PluginError {
            plugin: kind.to_string(),
            error,
        },
        _ => fail(
            format!(
                "netplugin failed: {}",
                String::from_utf8_lossy(&out.stdout).trim()
            ),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Sandboxes: ADD and DEL of every network of a Pod
// ---------------------------------------------------------------------------------------------

/// Who a Pod is.
#[derive(Debug, Clone)]
struct PodRef {
    namespace: String,
    name: String,
    uid: String,
}

impl PodRef {
    fn of(pod: &Pod) -> PodRef {
        PodRef {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }
}

/// One network of a Pod: its configuration (or list) and interface.
#[derive(Debug, Clone)]
struct NetworkPlan {
    name: String,
    ifname: String,
    conf: Value,
}

/// A Pod's sandbox: its id, namespace and networks.
#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    netns: String,
    node_netns: String,
    args: Vec<[String; 2]>,
    networks: Vec<NetworkPlan>,
}

impl Sandbox {
    fn cache_file(&self, cache_dir: &Path, net: &NetworkPlan) -> PathBuf {
        cache_file(cache_dir, &net.name, &self.id, &net.ifname)
    }
}

/// The networks of a Pod: the primary one on `eth0`, then those of its Multus annotation
/// (their NetworkAttachmentDefinitions read with the admin client).
async fn resolve_networks(
    shared: &Shared,
    node: &SimNode,
    pod: &Pod,
) -> std::result::Result<Vec<NetworkPlan>, String> {
    let mut out = vec![NetworkPlan {
        name: network_name(&node.primary, "").to_string(),
        ifname: PRIMARY_IFNAME.to_string(),
        conf: node.primary.clone(),
    }];
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let annotation = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MULTUS_NETWORKS));
    let Some(annotation) = annotation else {
        return Ok(out);
    };
    let gvk = GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "network-attachment-definitions");
    for sel in parse_networks_annotation(annotation, &namespace)? {
        let api: Api<DynamicObject> =
            Api::namespaced_with(shared.admin.clone(), &sel.namespace, &ar);
        let nad = api.get(&sel.name).await.map_err(|e| {
            format!(
                "Multus: cannot find a network-attachment-definition ({}) in namespace ({}): {e}",
                sel.name, sel.namespace
            )
        })?;
        let config = nad
            .data
            .pointer("/spec/config")
            .and_then(Value::as_str)
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| format!("Multus: {}/{} has no spec.config", sel.namespace, sel.name))?;
        let mut conf: Value = serde_json::from_str(config)
            .map_err(|e| format!("Multus: {}/{}: spec.config: {e}", sel.namespace, sel.name))?;
        if conf
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            conf["name"] = json!(sel.name);
        }
        inject_kubeconfig(&mut conf, &shared.kubeconfig);
        out.push(NetworkPlan {
            name: network_name(&conf, &sel.name).to_string(),
            ifname: sel.interface,
            conf,
        });
    }
    Ok(out)
}

fn network_name<'a>(conf: &'a Value, default: &'a str) -> &'a str {
    conf.get("name").and_then(Value::as_str).unwrap_or(default)
}

fn cni_version(conf: &Value) -> &str {
    conf.get("cniVersion").and_then(Value::as_str).unwrap_or("")
}

/// ADD of every network in order (each plugin of a list with the previous result), caching
/// each network's result. On failure everything is undone (DEL of every network, the namespace
/// removed) and the error message returned.
fn add_sandbox(
    shared: &Shared,
    mut sb: Sandbox,
) -> std::result::Result<(Sandbox, Vec<SimInterface>), String> {
    let setup = format!("failed to setup network for sandbox {:?}", sb.id);
    create_netns(shared, &sb.netns).map_err(|e| format!("{setup}: {e}"))?;
    for net in &mut sb.networks {
        fix_masters(&mut net.conf, |m| link_exists(&sb.node_netns, m));
    }
    let mut interfaces = Vec::new();
    for net in &sb.networks {
        match add_network(shared, &sb, net) {
            Ok(iface) => interfaces.push(iface),
            Err(e) => {
                teardown(shared, &sb);
                return Err(format!("{setup}: {e}"));
            }
        }
    }
    Ok((sb, interfaces))
}

fn add_network(
    shared: &Shared,
    sb: &Sandbox,
    net: &NetworkPlan,
) -> std::result::Result<SimInterface, String> {
    let args = cni_args_env(&sb.args);
    let cni_path = shared.cni_path();
    let inv = Invocation {
        command: "ADD",
        container_id: &sb.id,
        netns: &sb.netns,
        ifname: &net.ifname,
        args: &args,
        cni_path: &cni_path,
        node_netns: &sb.node_netns,
    };
    let mut prev: Option<Value> = None;
    for plugin in plugin_confs(&net.conf) {
        let stdin = plugin_stdin(&net.conf, &plugin, prev.as_ref());
        let result = exec_plugin(&shared.plugin_dirs, &inv, &stdin).map_err(|e| {
            format!(
                "plugin type={:?} name={:?} failed (add): {}",
                e.plugin,
                net.name,
                cni_error_text(&e.error)
            )
        })?;
        prev = Some(result);
    }
    let result = prev.unwrap_or(Value::Null);
    let bytes = net.conf.to_string();
    let file = sb.cache_file(&shared.cache_dir, net);
    let entry = CacheEntry {
        container_id: &sb.id,
        config: bytes.as_bytes(),
        ifname: &net.ifname,
        network: &net.name,
        netns: &format!("{NETNS_DIR}/{}", sb.netns),
        args: &sb.args,
        result: &result,
    };
    {
        // Under the registry's lock: a simulator stopping meanwhile must not miss the file.
        let mut reg = lock(&shared.netns);
        if reg.stopped {
            return Err("the node simulator is stopping".to_string());
        }
        reg.cache_files.insert(file.clone());
        std::fs::write(&file, entry.to_json().to_string())
            .map_err(|e| format!("failed to write the CNI cache {}: {e}", file.display()))?;
    }
    Ok(SimInterface {
        ifname: net.ifname.clone(),
        network: net.name.clone(),
        ips: result_addresses(&result),
        result,
    })
}

/// DEL of every network in reverse order, as containerd tears a sandbox down: the configuration
/// and the result from the cache when there is one (the plugins of a list in reverse, each with
/// the cached result as `prevResult`), then the cache files and the namespace removed.
fn teardown(shared: &Shared, sb: &Sandbox) {
    let args = cni_args_env(&sb.args);
    let cni_path = shared.cni_path();
    for net in sb.networks.iter().rev() {
        let file = sb.cache_file(&shared.cache_dir, net);
        let cached = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|doc| parse_cache(&doc).ok());
        let (conf, result) = cached.unwrap_or_else(|| (net.conf.clone(), Value::Null));
        let prev = del_gets_prev_result(cni_version(&conf)).then_some(&result);
        let inv = Invocation {
            command: "DEL",
            container_id: &sb.id,
            netns: &sb.netns,
            ifname: &net.ifname,
            args: &args,
            cni_path: &cni_path,
            node_netns: &sb.node_netns,
        };
        for plugin in plugin_confs(&conf).iter().rev() {
            let stdin = plugin_stdin(&conf, plugin, prev);
            if let Err(e) = exec_plugin(&shared.plugin_dirs, &inv, &stdin) {
                eprintln!(
                    "node-sim: DEL {} of sandbox {} ({}): plugin {}: {}",
                    net.ifname,
                    sb.id,
                    net.name,
                    e.plugin,
                    cni_error_text(&e.error)
                );
            }
        }
        lock(&shared.netns).cache_files.remove(&file);
        let _ = std::fs::remove_file(&file);
    }
    delete_netns(shared, &sb.netns);
}

// ---------------------------------------------------------------------------------------------
// Kubelet's API calls
// ---------------------------------------------------------------------------------------------

fn is_status(e: &kube::Error, codes: &[u16]) -> bool {
    matches!(e, kube::Error::Api(s) if codes.contains(&s.code))
}

async fn register_node(node: &SimNode, spec: &NodeSpec) -> Result<Node> {
    let now = rfc3339(Timestamp::now());
    let obj: Node =
        serde_json::from_value(node_object(spec, &node.ip, &now)).map_err(|e| Error::Manifest {
            what: format!("node {}", node.name),
            problem: e.to_string(),
        })?;
    let api: Api<Node> = Api::all(node.client.clone());
    let created = match api.create(&PostParams::default(), &obj).await {
        Ok(created) => Some(created),
        // Registered before (a restarted simulator): take it over, as kubelet does.
        Err(e) if is_status(&e, &[409]) => None,
        Err(e) => return Err(e.into()),
    };
    let has_status = created
        .as_ref()
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| !c.is_empty());
    match created {
        Some(n) if has_status => Ok(n),
        _ => {
            let status = json!({"status": node_status(&node.name, &node.ip, &now)});
            Ok(api
                .patch_status(
                    &node.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&status),
                )
                .await?)
        }
    }
}

/// Renews the node's Lease (creating it when missing).
async fn renew_lease(node: &SimNode) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(node.client.clone(), LEASE_NAMESPACE);
    let spec = json!({
        "holderIdentity": node.name,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": rfc3339_micro(Timestamp::now()),
    });
    let patch = json!({ "spec": spec });
    match api
        .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, &[404]) => {
            let lease: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": node.name, "namespace": LEASE_NAMESPACE},
                "spec": spec,
            }))
            .map_err(|e| sim_error(format!("lease: {e}")))?;
            api.create(&PostParams::default(), &lease).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Refreshes the conditions' `lastHeartbeatTime` (strategic merge by `type`, transition times
/// kept).
async fn heartbeat_status(node: &SimNode) -> Result<()> {
    let api: Api<Node> = Api::all(node.client.clone());
    let now = rfc3339(Timestamp::now());
    let patch = json!({"status": {"conditions": node_conditions(&now, None)}});
    api.patch_status(
        &node.name,
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await?;
    Ok(())
}

async fn heartbeat(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(LEASE_RENEW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is immediate; start() renewed already
    let mut renewals: u64 = 0;
    loop {
        every.tick().await;
        renewals = (renewals + 1) % STATUS_EVERY_RENEWALS;
        for node in shared.node_list() {
            if let Err(e) = renew_lease(&node).await {
                eprintln!("node-sim: node {}: lease: {e}", node.name);
            }
            if renewals == 0 {
                if let Err(e) = heartbeat_status(&node).await {
                    eprintln!("node-sim: node {}: status: {e}", node.name);
                }
            }
        }
    }
}

/// Posts kubelet's `FailedCreatePodSandBox` Warning Event for a Pod.
async fn post_sandbox_event(node: &SimNode, pod: &PodRef, message: &str) -> Result<()> {
    let now = rfc3339(Timestamp::now());
    let suffix = random_id().unwrap_or_else(|_| derived_id(&now));
    let event: Event = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{}.{}", pod.name, &suffix[..16]), "namespace": pod.namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": pod.namespace, "name": pod.name, "uid": pod.uid},
        "reason": "FailedCreatePodSandBox",
        "message": message,
        "type": "Warning",
        "source": {"component": "kubelet", "host": node.name},
        "reportingComponent": "kubelet",
        "reportingInstance": node.name,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }))
    .map_err(|e| sim_error(format!("event: {e}")))?;
    let api: Api<Event> = Api::namespaced(node.client.clone(), &pod.namespace);
    api.create(&PostParams::default(), &event).await?;
    Ok(())
}

/// Sets a Pod Running (retried a few times; a Pod gone is left alone).
async fn set_running(node: &SimNode, pod: &Pod, ips: &[String], sandbox: &str) -> Result<()> {
    let who = PodRef::of(pod);
    let api: Api<Pod> = Api::namespaced(node.client.clone(), &who.namespace);
    let patch = running_status_patch(pod, &node.ip, ips, sandbox, &rfc3339(Timestamp::now()));
    let mut last = None;
    for attempt in 0..5u32 {
        match api
            .patch_status(&who.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, &[404]) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
    Err(last.map_or_else(|| sim_error("pod status".to_string()), Error::from))
}

/// kubelet's final delete of a Pod whose containers are gone: grace period 0, on its UID.
async fn final_delete(node: &SimNode, pod: &PodRef) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(node.client.clone(), &pod.namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(pod.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let mut last = None;
    for attempt in 0..5u32 {
        match api.delete(&pod.name, &params).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, &[404, 409]) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
    Err(last.map_or_else(|| sim_error("pod delete".to_string()), Error::from))
}

// ---------------------------------------------------------------------------------------------
// Pod handling: one watch per node, one task per Pod
// ---------------------------------------------------------------------------------------------

/// The next item of a stream. (The crate has no `futures` dependency: `WatchStreamExt` has
/// `Stream` as supertrait, and its bound makes `poll_next` callable.)
async fn next_item<S>(stream: &mut Pin<Box<S>>) -> Option<S::Item>
where
    S: WatchStreamExt + ?Sized,
{
    std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await
}

/// What a Pod's task is told: the Pod as last seen, `None` once it vanished.
type PodFeed = watch::Sender<Option<Pod>>;

/// Watches the Pods bound to one node (as its kubelet: `spec.nodeName=<node>`) and feeds each to
/// its task.
async fn watch_node(shared: Arc<Shared>, node: Arc<SimNode>) {
    let api: Api<Pod> = Api::all(node.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", node.name));
    let mut stream = Box::pin(watcher::watcher(api, config).default_backoff());
    let mut feeds: HashMap<String, PodFeed> = HashMap::new();
    let mut listed: Option<HashSet<String>> = None;
    while let Some(event) = next_item(&mut stream).await {
        match event {
            Ok(WatchEvent::Init) => listed = Some(HashSet::new()),
            Ok(WatchEvent::InitApply(pod)) => {
                if let (Some(l), Some(uid)) = (listed.as_mut(), pod.metadata.uid.clone()) {
                    l.insert(uid);
                }
                feed_pod(&shared, &node, &mut feeds, pod);
            }
            Ok(WatchEvent::Apply(pod)) => feed_pod(&shared, &node, &mut feeds, pod),
            Ok(WatchEvent::Delete(pod)) => {
                if let Some(feed) = pod.metadata.uid.and_then(|uid| feeds.remove(&uid)) {
                    feed.send_replace(None);
                }
            }
            Ok(WatchEvent::InitDone) => {
                // Pods missing from a relist vanished while the watch was down.
                if let Some(listed) = listed.take() {
                    feeds.retain(|uid, feed| {
                        let keep = listed.contains(uid);
                        if !keep {
                            feed.send_replace(None);
                        }
                        keep
                    });
                }
            }
            Err(e) => eprintln!("node-sim: node {}: pod watch: {e}", node.name),
        }
    }
}

fn feed_pod(
    shared: &Arc<Shared>,
    node: &Arc<SimNode>,
    feeds: &mut HashMap<String, PodFeed>,
    pod: Pod,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if let Some(feed) = feeds.get(&uid) {
        feed.send_replace(Some(pod));
        return;
    }
    // A Pod past Pending was started by someone else (a simulator before a restart): it gets
    // no sandbox, only kubelet's final delete.
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let adopted = matches!(phase, Some("Running" | "Succeeded" | "Failed"));
    let (feed, rx) = watch::channel(Some(pod));
    let task = tokio::spawn(run_pod(shared.clone(), node.clone(), rx, adopted));
    shared.add_task(task);
    feeds.insert(uid, feed);
}

/// How a Pod's life on the node ends.
enum End {
    /// It is being deleted (graceful delete): kubelet finishes it.
    Deleting,
    /// It is gone (force-deleted).
    Vanished,
    /// The simulator stops.
    Stopped,
}

fn end_of(pod: &Option<Pod>) -> Option<End> {
    match pod {
        None => Some(End::Vanished),
        Some(p) if p.metadata.deletion_timestamp.is_some() => Some(End::Deleting),
        Some(_) => None,
    }
}

/// Waits until the Pod is being deleted or gone.
async fn wait_end(rx: &mut watch::Receiver<Option<Pod>>) -> End {
    loop {
        if let Some(end) = end_of(&rx.borrow_and_update()) {
            return end;
        }
        if rx.changed().await.is_err() {
            return End::Stopped;
        }
    }
}

/// Waits `delay`, returning early with the end of the Pod if it comes.
async fn sleep_unless_end(rx: &mut watch::Receiver<Option<Pod>>, delay: Duration) -> Option<End> {
    tokio::time::timeout(delay, wait_end(rx)).await.ok()
}

/// One Pod's life on a node: sandbox and Running, then teardown and final delete.
async fn run_pod(
    shared: Arc<Shared>,
    sim_node: Arc<SimNode>,
    mut rx: watch::Receiver<Option<Pod>>,
    adopted: bool,
) {
    let Some(pod) = rx.borrow().clone() else {
        return;
    };
    let sim_node = &*sim_node;
    let who = PodRef::of(&pod);
    let mut sandbox = None;
    let mut running = false;
    if !adopted && end_of(&Some(pod.clone())).is_none() {
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            running = start_host_network(&shared, sim_node, &pod).await;
        } else if let Some((sb, ifaces)) = start_sandbox(&shared, sim_node, &mut rx).await {
            let latest = rx.borrow().clone().unwrap_or(pod);
            sandbox = Some(sb.clone());
            running = end_of(&Some(latest.clone())).is_none()
                && mark_running(&shared, sim_node, &latest, &sb, ifaces).await;
        }
    }
    let end = wait_end(&mut rx).await;
    if matches!(end, End::Stopped) {
        return;
    }
    if let Some(sb) = sandbox {
        let s = shared.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || teardown(&s, &sb)).await {
            eprintln!("node-sim: teardown of {}/{}: {e}", who.namespace, who.name);
        }
        shared.count(|c| c.dels += 1);
    }
    if running {
        shared.count(|c| c.running = c.running.saturating_sub(1));
    }
    shared.clear_interfaces(&who);
    if matches!(end, End::Deleting) {
        if let Err(e) = final_delete(sim_node, &who).await {
            eprintln!("node-sim: deleting {}/{}: {e}", who.namespace, who.name);
        }
    }
}

async fn start_host_network(shared: &Shared, node: &SimNode, pod: &Pod) -> bool {
    match set_running(node, pod, std::slice::from_ref(&node.ip), "host").await {
        Ok(()) => {
            shared.count(|c| c.running += 1);
            true
        }
        Err(e) => {
            let who = PodRef::of(pod);
            eprintln!("node-sim: status of {}/{}: {e}", who.namespace, who.name);
            false
        }
    }
}

async fn mark_running(
    shared: &Shared,
    node: &SimNode,
    pod: &Pod,
    sb: &Sandbox,
    ifaces: Vec<SimInterface>,
) -> bool {
    let who = PodRef::of(pod);
    let primary: Vec<String> = ifaces
        .iter()
        .find(|i| i.ifname == PRIMARY_IFNAME)
        .map(|i| pod_ips(&i.ips))
        .unwrap_or_default();
    shared.update_pod(&who, |s| s.interfaces = Some(ifaces));
    match set_running(node, pod, &primary, &sb.id).await {
        Ok(()) => {
            shared.count(|c| c.running += 1);
            true
        }
        Err(e) => {
            eprintln!("node-sim: status of {}/{}: {e}", who.namespace, who.name);
            false
        }
    }
}

/// Creates the Pod's sandbox, retrying with backoff (1 s doubling to 10 s) and a
/// `FailedCreatePodSandBox` Event per failure, until it works or the Pod ends.
async fn start_sandbox(
    shared: &Arc<Shared>,
    node: &SimNode,
    rx: &mut watch::Receiver<Option<Pod>>,
) -> Option<(Sandbox, Vec<SimInterface>)> {
    let mut backoff = BACKOFF_START;
    loop {
        let pod = rx.borrow_and_update().clone()?;
        if end_of(&Some(pod.clone())).is_some() {
            return None;
        }
        let who = PodRef::of(&pod);
        match try_sandbox(shared, node, &pod).await {
            Ok(done) => {
                shared.count(|c| c.adds_ok += 1);
                return Some(done);
            }
            Err(message) => {
                shared.count(|c| c.adds_failed += 1);
                shared.update_pod(&who, |s| s.last_error = Some(message.clone()));
                let text = format!(
                    "Failed to create pod sandbox: rpc error: code = Unknown desc = {message}"
                );
                if let Err(e) = post_sandbox_event(node, &who, &text).await {
                    eprintln!("node-sim: event for {}/{}: {e}", who.namespace, who.name);
                }
            }
        }
        if sleep_unless_end(rx, backoff).await.is_some() {
            return None;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One attempt: resolve the networks, then ADD them all in a blocking thread.
async fn try_sandbox(
    shared: &Arc<Shared>,
    node: &SimNode,
    pod: &Pod,
) -> std::result::Result<(Sandbox, Vec<SimInterface>), String> {
    let who = PodRef::of(pod);
    let id = random_id()?;
    let networks = resolve_networks(shared, node, pod)
        .await
        .map_err(|e| format!("failed to setup network for sandbox {id:?}: {e}"))?;
    let sb = Sandbox {
        args: cni_args(&who.namespace, &who.name, &id, &who.uid),
        netns: pod_netns_name(&who.uid),
        node_netns: node.netns.clone(),
        id,
        networks,
    };
    let s = shared.clone();
    tokio::task::spawn_blocking(move || add_sandbox(&s, sb))
        .await
        .map_err(|e| format!("sandbox task: {e}"))?
}

// ---------------------------------------------------------------------------------------------
// Tests of the pure parts
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(namespace: &str, name: &str, interface: &str) -> NetworkSelection {
        NetworkSelection {
            namespace: namespace.into(),
            name: name.into(),
            interface: interface.into(),
        }
    }

    #[test]
    fn multus_text_form() {
        let got = parse_networks_annotation("kube-system/macvlan@eth9, other ,ns2/third", "app")
            .expect("valid");
        assert_eq!(
            got,
            vec![
                sel("kube-system", "macvlan", "eth9"),
                sel("app", "other", "net2"),
                sel("ns2", "third", "net3"),
            ]
        );
        assert_eq!(parse_networks_annotation("  ", "app"), Ok(vec![]));
        assert!(parse_networks_annotation("a/b/c", "app").is_err());
        assert!(parse_networks_annotation("a@b@c", "app").is_err());
        assert!(parse_networks_annotation("Upper", "app").is_err());
        assert!(parse_networks_annotation("a,,b", "app").is_err());
        assert!(parse_networks_annotation("net@", "app").is_err());
    }

    #[test]
    fn multus_json_form() {
        let got = parse_networks_annotation(
            r#"[{"name":"a","namespace":"x","interface":"ens1"},{"name":"b"},{"name":"c","interfaceRequest":"old"}]"#,
            "app",
        )
        .expect("valid");
        assert_eq!(
            got,
            vec![
                sel("x", "a", "ens1"),
                sel("app", "b", "net2"),
                sel("app", "c", "old")
            ]
        );
        assert!(parse_networks_annotation(r#"[{"namespace":"x"}]"#, "app").is_err());
        assert!(parse_networks_annotation(r#"{"name":"a"}"#, "app").is_err());
    }

    #[test]
    fn cni_args_string() {
        let args = cni_args("ns", "web-0", "abc", "u-1");
        assert_eq!(
            cni_args_env(&args),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
        );
    }

    #[test]
    fn netns_names() {
        assert_eq!(
            pod_netns_name("3f6940ab-5ab4-3bc5-2256-9fc01d72755"),
            "aipam-p-3f6940ab-5ab"
        );
        let n = node_netns_name("node-a");
        assert!(n.starts_with("aipam-n-") && n.len() == 16, "{n}");
        assert_eq!(n, node_netns_name("node-a"));
        assert_ne!(n, node_netns_name("node-b"));
        let ip = node_internal_ip("node-a");
        assert!(
            ip.starts_with("198.18.") || ip.starts_with("198.19."),
            "{ip}"
        );
    }

    #[test]
    fn ids() {
        let id = random_id().expect("urandom");
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, random_id().expect("urandom"));
        assert_eq!(derived_id("x").len(), 64);
    }

    #[test]
    fn plugin_stdin_injects_name_version_and_prev_result() {
        let list = json!({"cniVersion": "1.0.0", "name": "aipam", "plugins": [{"type": "bridge"}, {"type": "tuning"}]});
        let plugins = plugin_confs(&list);
        assert_eq!(plugins.len(), 2);
        let first = plugin_stdin(&list, &plugins[0], None);
        assert_eq!(
            first,
            json!({"type": "bridge", "name": "aipam", "cniVersion": "1.0.0"})
        );
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let second = plugin_stdin(&list, &plugins[1], Some(&prev));
        assert_eq!(second["prevResult"], prev);
        let single = json!({"cniVersion": "0.3.1", "name": "m", "type": "macvlan"});
        assert_eq!(plugin_confs(&single), vec![single.clone()]);
        assert!(!del_gets_prev_result("0.3.1"));
        assert!(del_gets_prev_result("0.4.0"));
        assert!(del_gets_prev_result("1.0.0"));
    }

    #[test]
    fn kubeconfig_and_master_injection() {
        let mut list = json!({"plugins": [
            {"type": "macvlan", "master": "ens5", "ipam": {"type": "spiderpool"}},
            {"type": "bridge", "ipam": {"type": "spiderpool", "kubeconfig": "/mine"}},
            {"type": "ipvlan", "ipam": {"type": "host-local"}},
        ]});
        inject_kubeconfig(&mut list, Path::new("/k"));
        fix_masters(&mut list, |m| m == "eth0");
        assert_eq!(list["plugins"][0]["ipam"]["kubeconfig"], "/k");
        assert_eq!(list["plugins"][0]["master"], "eth0");
        assert_eq!(list["plugins"][1]["ipam"]["kubeconfig"], "/mine");
        assert_eq!(list["plugins"][2]["master"], "eth0");
        assert!(list["plugins"][2]["ipam"].get("kubeconfig").is_none());
        let mut single =
            json!({"type": "macvlan", "master": "eth0", "ipam": {"type": "spiderpool"}});
        inject_kubeconfig(&mut single, Path::new("/k"));
        fix_masters(&mut single, |m| m == "eth0");
        assert_eq!(single["ipam"]["kubeconfig"], "/k");
        assert_eq!(single["master"], "eth0");
    }

    #[test]
    fn cache_file_format_round_trips() {
        let conf = br#"{"cniVersion":"1.0.0","name":"aipam","plugins":[{"type":"bridge"}]}"#;
        let result = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.5/24"}]});
        let args = cni_args("ns", "p", "cid", "uid");
        let doc = CacheEntry {
            container_id: "cid",
            config: conf,
            ifname: "eth0",
            network: "aipam",
            netns: "/var/run/netns/x",
            args: &args,
            result: &result,
        }
        .to_json();
        assert_eq!(doc["kind"], "cniCacheV1");
        assert_eq!(doc["containerId"], "cid");
        assert_eq!(doc["ifName"], "eth0");
        assert_eq!(doc["networkName"], "aipam");
        assert_eq!(doc["cniArgs"][0], json!(["IgnoreUnknown", "1"]));
        assert_eq!(doc["cniArgs"][4], json!(["K8S_POD_UID", "uid"]));
        assert_eq!(
            doc["config"],
            base64::engine::general_purpose::STANDARD.encode(conf)
        );
        let (config, cached) = parse_cache(&doc).expect("parses");
        assert_eq!(config["name"], "aipam");
        assert_eq!(cached, result);
        assert_eq!(
            cache_file(Path::new("/c"), "aipam", "cid", "net1"),
            PathBuf::from("/c/results/aipam-cid-net1")
        );
        assert!(parse_cache(&json!({"kind": "other"})).is_err());
    }

    #[test]
    fn result_addresses_of_the_sandbox_interface() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "aipam0", "mac": "aa"},
                {"name": "veth1", "mac": "bb"},
                {"name": "eth0", "mac": "cc", "sandbox": "/var/run/netns/p"},
            ],
            "ips": [
                {"address": "fd00::5/64", "interface": 2},
                {"address": "10.0.0.1/24", "interface": 0},
                {"address": "10.0.0.5/24", "interface": 2},
            ],
        });
        assert_eq!(result_addresses(&result), vec!["fd00::5/64", "10.0.0.5/24"]);
        assert_eq!(
            result_addresses(&json!({"ips": [{"address": "192.0.2.1/24"}]})),
            vec!["192.0.2.1/24"]
        );
        assert_eq!(
            result_addresses(&json!({"ip4": {"ip": "192.0.2.2/24"}})),
            vec!["192.0.2.2/24"]
        );
        assert_eq!(
            pod_ips(&result_addresses(&result)),
            vec!["10.0.0.5", "fd00::5"]
        );
    }

    #[test]
    fn status_patch_is_running_with_ipv4_first() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {
                "containers": [{"name": "app", "image": "busybox"}, {"name": "side", "image": "pause"}],
                "initContainers": [{"name": "init", "image": "busybox"}],
            },
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-02T03:04:05Z"}
            ]},
        }))
        .expect("pod");
        let ips = pod_ips(&["fd00::7/64".to_string(), "10.1.0.7/24".to_string()]);
        let patch = running_status_patch(&pod, "198.18.0.9", &ips, "sb", "2025-01-01T00:00:00Z");
        let s = &patch["status"];
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.1.0.7");
        assert_eq!(s["podIPs"], json!([{"ip": "10.1.0.7"}, {"ip": "fd00::7"}]));
        assert_eq!(s["hostIP"], "198.18.0.9");
        assert_eq!(s["hostIPs"], json!([{"ip": "198.18.0.9"}]));
        assert_eq!(s["startTime"], "2025-01-01T00:00:00Z");
        let conds = s["conditions"].as_array().expect("conditions");
        for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            let c = conds.iter().find(|c| c["type"] == kind).expect(kind);
            assert_eq!(c["status"], "True");
        }
        let scheduled = conds
            .iter()
            .find(|c| c["type"] == "PodScheduled")
            .expect("scheduled");
        assert_eq!(scheduled["lastTransitionTime"], "2024-01-02T03:04:05Z");
        let cs = s["containerStatuses"].as_array().expect("statuses");
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0]["name"], "app");
        assert_eq!(cs[0]["ready"], true);
        assert_eq!(cs[0]["started"], true);
        assert!(cs[0]["state"]["running"]["startedAt"].is_string());
        assert!(cs[0]["containerID"]
            .as_str()
            .is_some_and(|c| c.starts_with("containerd://")));
        assert_eq!(
            s["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        // It deserializes as a PodStatus.
        let _: k8s_openapi::api::core::v1::PodStatus =
            serde_json::from_value(s.clone()).expect("a PodStatus");
    }

    #[test]
    fn node_object_is_a_ready_node() {
        let spec = NodeSpec {
            name: "n1".into(),
            labels: BTreeMap::from([("topology.kubernetes.io/zone".into(), "a".into())]),
            primary_network: None,
        };
        let v = node_object(&spec, "198.18.1.2", "2025-01-01T00:00:00Z");
        let node: Node = serde_json::from_value(v).expect("a Node");
        let labels = node.metadata.labels.expect("labels");
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(labels["topology.kubernetes.io/zone"], "a");
        let status = node.status.expect("status");
        let ready = status
            .conditions
            .expect("conditions")
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .expect("ready");
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        let addresses = status.addresses.expect("addresses");
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[0].address, "198.18.1.2");
        assert!(status.node_info.is_some());
        assert_eq!(status.allocatable.expect("allocatable")["pods"].0, "250");
    }

    #[test]
    fn cni_error_text_joins_msg_and_details() {
        assert_eq!(
            cni_error_text(&json!({"code": 11, "msg": "no address", "details": "pool full"})),
            "no address; pool full"
        );
        assert_eq!(
            cni_error_text(&json!({"code": 11, "msg": "no address"})),
            "no address"
        );
    }

    #[test]
    fn times_format_as_kubernetes_does() {
        let ts: Timestamp = "2025-03-04T05:06:07.123456789Z".parse().expect("ts");
        assert_eq!(rfc3339(ts), "2025-03-04T05:06:07Z");
        assert_eq!(rfc3339_micro(ts), "2025-03-04T05:06:07.123456Z");
    }

    fn test_shared(dir: &Path, primary: Value) -> Shared {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        let fallback = client.clone();
        Shared {
            instance: "unit".to_string(),
            admin: client,
            primary,
            kubeconfig: dir.join("kubeconfig"),
            plugin_dirs: vec![PathBuf::from("/usr/lib/cni")],
            cache_dir: dir.join("cache"),
            client_for_node: Box::new(move |_| fallback.clone()),
            nodes: Mutex::new(BTreeMap::new()),
            pods: Mutex::new(HashMap::new()),
            counters: Mutex::new(SimCounters::default()),
            netns: Mutex::new(NetnsRegistry::default()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// ADD and DEL of a bridge conflist on eth0 and a macvlan conf on net1 with the real
    /// plugins, in namespaces of their own; nothing is left.
    #[tokio::test]
    #[ignore = "needs root, ip and Debian's CNI plugins in /usr/lib/cni"]
    async fn sandbox_add_and_del_with_real_plugins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("host-local");
        let ipam = |subnet: &str| json!({"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": data.display().to_string()});
        let primary = json!({"cniVersion": "1.0.0", "name": "unit", "plugins": [{"type": "bridge", "bridge": "aipam0", "ipam": ipam("10.97.0.0/24")}]});
        let shared = Cleanup(test_shared(dir.path(), primary.clone()));
        let shared = &shared.0;
        std::fs::create_dir_all(dir.path().join("cache/results")).expect("cache dir");
        let id = random_id().expect("id");
        let node_ns = node_netns_name(&format!("unit-{id}"));
        create_node_netns(shared, &node_ns).expect("node netns");
        let macvlan = json!({"cniVersion": "1.0.0", "name": "mv", "type": "macvlan", "master": "ens9", "ipam": ipam("10.96.50.0/24")});
        let uid = format!("{}-unit", &id[..8]);
        let sb = Sandbox {
            id: id.clone(),
            netns: pod_netns_name(&uid),
            node_netns: node_ns.clone(),
            args: cni_args("ns", "p", &id, &uid),
            networks: vec![
                NetworkPlan {
                    name: "unit".into(),
                    ifname: "eth0".into(),
                    conf: primary,
                },
                NetworkPlan {
                    name: "mv".into(),
                    ifname: "net1".into(),
                    conf: macvlan,
                },
            ],
        };
        let (sb, ifaces) = add_sandbox(shared, sb).expect("ADD");
        assert_eq!(ifaces.len(), 2);
        assert_eq!(ifaces[0].ips, vec!["10.97.0.2/24"], "{ifaces:?}");
        assert_eq!(ifaces[1].ips, vec!["10.96.50.2/24"], "{ifaces:?}");
        let out = Command::new("ip")
            .args(["-n", &sb.netns, "-o", "addr"])
            .output()
            .expect("ip");
        let addrs = String::from_utf8_lossy(&out.stdout);
        assert!(
            addrs.contains("10.97.0.2/24") && addrs.contains("10.96.50.2/24"),
            "{addrs}"
        );
        let cached = cache_file(&shared.cache_dir, "mv", &id, "net1");
        let doc: Value =
            serde_json::from_slice(&std::fs::read(&cached).expect("cache")).expect("json");
        let (config, result) = parse_cache(&doc).expect("cache doc");
        assert_eq!(config["master"], "eth0");
        assert_eq!(result, ifaces[1].result);
        // Nothing reached the root namespace.
        assert!(!link_exists_in_root("aipam0"));
        teardown(shared, &sb);
        assert!(!cached.exists());
        assert!(!netns_exists(&sb.netns));
        let held: Vec<_> = std::fs::read_dir(data.join("unit"))
            .expect("data")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
            .collect();
        assert!(held.is_empty(), "{held:?}");
        shared.remove_everything();
        assert!(!netns_exists(&node_ns));
    }

    /// Removes what a test made, even when it fails.
    struct Cleanup(Shared);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            self.0.remove_everything();
        }
    }

    fn link_exists_in_root(link: &str) -> bool {
        run_ip(&["link", "show", "dev", link]).is_ok()
    }
}
