//! Issue 15, item 1: time to Running, side by side with the peers. For each IPAM, a fresh real
//! control plane with the same simulated nodes and the same `bridge` plugin; N Deployments x R
//! replicas created at once; from the first create to the last Pod Running (its CNI ADD done in
//! its network namespace). Per Pod: first seen by a watch (the controller's create) to Running.
//! API writes per Pod by resource from kube-apiserver's metrics, 409s, duplicate addresses among
//! the Running Pods, and what is still held once the Deployments are deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aipam_e2e::peers::{addresses_held, Ipam};
use aipam_e2e::{Env, Options};
use anyhow::{anyhow, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::{json, Value};

use crate::common::{self, json_line, r3, table, write_delta, Stats};

/// One IPAM's environment in this bench.
#[derive(Debug, Clone)]
pub struct Peer {
    pub ipam: Ipam,
    /// Webhook replicas (ours only).
    pub webhook_replicas: usize,
}

impl Peer {
    /// The name `--only` takes.
    pub fn key(&self) -> String {
        match self.ipam {
            Ipam::Ours if self.webhook_replicas > 1 => format!("ours-{}", self.webhook_replicas),
            _ => self.ipam.name().to_string(),
        }
    }

    pub fn label(&self) -> String {
        match self.ipam {
            Ipam::Ours => format!("ours, {} webhook replica(s)", self.webhook_replicas),
            _ => self.ipam.name().to_string(),
        }
    }
}

/// The peers of the issue: host-local, ours with 1 and 3 webhook replicas, Whereabouts.
pub fn all_peers(nodes: usize) -> Vec<Peer> {
    vec![
        Peer {
            ipam: Ipam::host_local(nodes),
            webhook_replicas: 0,
        },
        Peer {
            ipam: Ipam::Ours,
            webhook_replicas: 1,
        },
        Peer {
            ipam: Ipam::Ours,
            webhook_replicas: 3,
        },
        Peer {
            ipam: Ipam::whereabouts(),
            webhook_replicas: 0,
        },
    ]
}

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub deployments: usize,
    pub replicas: usize,
    pub nodes: usize,
    /// How long one IPAM may take before its row reports what it reached.
    pub deadline: Duration,
    pub peers: Vec<Peer>,
}

/// What one Pod went through, as the bench's watch saw it.
#[derive(Debug, Clone, Default)]
struct Seen {
    first: Option<Instant>,
    running: Option<Instant>,
    ip: Option<String>,
}

type Book = Arc<Mutex<HashMap<String, Seen>>>;

/// Records, per Pod UID, when the watch first saw it and when it first saw it Running.
async fn watch_pods(api: Api<Pod>, book: Book) {
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let pods = match ev {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => vec![p],
            _ => continue,
        };
        let now = Instant::now();
        let mut book = book.lock().unwrap_or_else(|e| e.into_inner());
        for p in pods {
            let Some(uid) = p.metadata.uid.clone() else {
                continue;
            };
            let seen = book.entry(uid).or_default();
            seen.first.get_or_insert(now);
            let status = p.status.as_ref();
            if seen.running.is_none() && status.and_then(|s| s.phase.as_deref()) == Some("Running")
            {
                seen.running = Some(now);
                seen.ip = status.and_then(|s| s.pod_ip.clone());
            }
        }
    }
}

pub(crate) fn deployment(ns: &str, i: usize, replicas: usize) -> Deployment {
    let app = format!("run-{i}");
    let v = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": ns},
        "spec": {"replicas": replicas,
                 "selector": {"matchLabels": {"app": app}},
                 "template": {"metadata": {"labels": {"app": app}},
                              "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}
    });
    // The literal above is a valid Deployment.
    serde_json::from_value(v).unwrap_or_default()
}

/// The API groups whose objects an IPAM itself writes.
const IPAM_GROUPS: [&str; 2] = [".spiderpool.spidernet.io", ".whereabouts.cni.cncf.io"];

/// Splits write counts into (the IPAM's own objects, Leases, the Pods' own, Events, the rest:
/// the controllers' and the nodes' writes, by resource).
fn split_writes(writes: &BTreeMap<String, u64>) -> [(String, u64); 5] {
    let mut sums = [0u64; 5];
    for (k, v) in writes {
        let base = k.split('/').next().unwrap_or(k);
        let i = if IPAM_GROUPS.iter().any(|g| base.ends_with(g)) {
            0
        } else if base == "leases.coordination.k8s.io" {
            1
        } else if base == "pods" {
            2
        } else if base.starts_with("events") {
            3
        } else {
            4
        };
        sums[i] += v;
    }
    let names = [
        "ipam",
        "leases",
        "pod_own",
        "events",
        "controllers_and_nodes",
    ];
    std::array::from_fn(|i| (names[i].to_string(), sums[i]))
}

/// A fresh environment for `peer` with `nodes` Ready simulated nodes and namespace `ns`; for
/// ours, the cluster default pool `pool` (subnet, range) and a probe Pod admitted (the webhook's
/// cache is warm) whose address is released again before this returns.
pub(crate) async fn start(peer: &Peer, ns: &str, nodes: usize, pool: (&str, &str)) -> Result<Env> {
    let ours = peer.ipam == Ipam::Ours;
    let env = Env::start(Options {
        ipam: peer.ipam.clone(),
        operator: ours,
        webhook_replicas: peer.webhook_replicas.max(1),
        ..Options::default()
    })
    .await?;
    if env.nodes().is_none() {
        return Err(anyhow!("this bench needs the control plane started here"));
    }
    let mut docs = vec![common::namespace(ns, json!({}))];
    for i in 0..nodes {
        docs.push(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("bench-node-{i}")}}));
    }
    if ours {
        docs.push(common::ippool("bench-v4", pool.0, pool.1, None));
        docs.push(common::spiderpool_conf(&["bench-v4"], &[]));
    }
    common::apply_all(&env, &docs).await?;
    if let Some(sim) = env.nodes() {
        sim.wait_ready(Duration::from_secs(60)).await?;
    }
    if ours {
        common::wait_admits(&env.client, ns, &common::pod(ns, "probe", json!({})), 1).await?;
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
        pods.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    aipam_e2e::wait_for(
        "the probe Pods gone and their addresses free",
        Duration::from_secs(60),
        || {
            let (pods, env) = (pods.clone(), &env);
            async move {
                let none = pods
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .is_empty();
                (none && addresses_held(env).await.ok()?.is_empty()).then_some(())
            }
        },
    )
    .await?;
    Ok(env)
}

async fn one(peer: &Peer, sizes: &Sizes) -> Result<Value> {
    let ns = "bench-running";
    let env = start(
        peer,
        ns,
        sizes.nodes,
        ("10.60.0.0/16", "10.60.0.10-10.60.255.250"),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let held_before = 0;

    let book: Book = Arc::default();
    let watch = tokio::spawn(watch_pods(pods.clone(), book.clone()));
    let writes_before = env.write_counts().await?;
    let conflicts_before = env.conflict_counts().await?;
    let want = sizes.deployments * sizes.replicas;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), ns);
    let start = Instant::now();
    let creates = (0..sizes.deployments).map(|i| {
        let (api, d) = (deployments.clone(), deployment(ns, i, sizes.replicas));
        async move { api.create(&PostParams::default(), &d).await }
    });
    for r in futures::future::join_all(creates).await {
        r?;
    }
    let running = |book: &Book| {
        let b = book.lock().unwrap_or_else(|e| e.into_inner());
        b.values().filter(|s| s.running.is_some()).count()
    };
    while running(&book) < want && start.elapsed() < sizes.deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = start.elapsed();
    // The last metrics the watch and the node simulator's final writes add are small; read
    // them once everything is Running.
    let writes = write_delta(&writes_before, &env.write_counts().await?);
    let conflicts: u64 = write_delta(&conflicts_before, &env.conflict_counts().await?)
        .values()
        .sum();
    let (to_running, reached, duplicates) = {
        let b = book.lock().unwrap_or_else(|e| e.into_inner());
        let mut samples = Vec::new();
        let mut ips = BTreeSet::new();
        let mut dup = 0;
        for s in b.values() {
            if let (Some(f), Some(r)) = (s.first, s.running) {
                samples.push(r.duration_since(f));
            }
            if let Some(ip) = &s.ip {
                if !ips.insert(ip.clone()) {
                    dup += 1;
                }
            }
        }
        (Stats::of(&samples), samples.len(), dup)
    };
    let failed_adds = env.nodes().map_or(0, |n| n.counters().adds_failed);
    // The IPAM's long-running processes with every Pod live (ours: webhook replicas and
    // operator; host-local has none; Whereabouts' ip-control-loop is not run here).
    let rss: BTreeMap<String, f64> = env
        .pids()
        .into_iter()
        .filter_map(|(name, pid)| Some((name, r3(common::rss_mib(pid)?))))
        .collect();
    let held_live = addresses_held(&env)
        .await?
        .len()
        .saturating_sub(held_before);

    // Delete, then what is still held (bounded).
    for i in 0..sizes.deployments {
        deployments
            .delete(&format!("run-{i}"), &DeleteParams::background())
            .await?;
    }
    let gone = Instant::now();
    let mut leaked = usize::MAX;
    while gone.elapsed() < Duration::from_secs(120) {
        let left = pods.list(&ListParams::default()).await?.items.len();
        leaked = addresses_held(&env)
            .await?
            .len()
            .saturating_sub(held_before);
        if left == 0 && leaked == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let freed_s = gone.elapsed().as_secs_f64();
    watch.abort();
    env.stop().await;

    let n = reached.max(1) as f64;
    let per_pod: serde_json::Map<String, Value> = split_writes(&writes)
        .into_iter()
        .map(|(k, v)| (k, json!(r3(v as f64 / n))))
        .collect();
    Ok(json!({
        "ipam": peer.label(), "version": peer.ipam.describe(), "pods": want,
        "running": reached, "finished": reached == want,
        "seconds_to_all_running": r3(done.as_secs_f64()),
        "pods_per_s": r3(reached as f64 / done.as_secs_f64().max(1e-9)),
        "create_to_running": to_running.json(),
        "writes_per_pod": per_pod,
        "writes_by_resource": writes,
        "conflicts": conflicts, "duplicates": duplicates, "rss_mib": rss,
        "failed_cni_adds": failed_adds, "held_while_running": held_live,
        "held_after_delete": leaked, "seconds_to_free": r3(freed_s),
    }))
}

pub async fn run(sizes: Sizes) -> Result<Value> {
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for peer in &sizes.peers {
        let r = one(peer, &sizes).await?;
        let f = |p: &str| r.pointer(p).cloned().unwrap_or(Value::Null);
        let ms = |p: &str| f(p).as_f64().unwrap_or(0.0);
        rows.push(vec![
            peer.label(),
            format!("{}/{}", f("/running"), f("/pods")),
            format!("{:.1} s", ms("/seconds_to_all_running")),
            format!(
                "{:.0} / {:.0} ms",
                ms("/create_to_running/p50_ms"),
                ms("/create_to_running/p99_ms")
            ),
            format!("{}", f("/writes_per_pod/ipam")),
            format!("{}", f("/writes_per_pod/leases")),
            format!("{}", f("/writes_per_pod/events")),
            f("/conflicts").to_string(),
            f("/duplicates").to_string(),
            f("/failed_cni_adds").to_string(),
            f("/held_after_delete").to_string(),
        ]);
        out.push(r);
    }
    table(
        &format!(
            "time to Running: {} Deployments x {} replicas at once over {} simulated nodes, real control plane (deadline {} s per IPAM)",
            sizes.deployments,
            sizes.replicas,
            sizes.nodes,
            sizes.deadline.as_secs()
        ),
        &["IPAM", "Running", "first create to last Running", "create to Running p50 / p99", "IPAM writes/Pod", "Lease writes/Pod", "Events/Pod", "409s", "duplicates", "failed ADDs", "held 120 s after delete"],
        &rows,
    );
    let v = json!({"deployments": sizes.deployments, "replicas": sizes.replicas,
        "nodes": sizes.nodes, "rows": out});
    json_line("running", v.clone());
    Ok(v)
}
