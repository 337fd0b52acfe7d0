#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Chaos on the real control plane (issue 18): the Pods are made by kube-controller-manager's
//! ReplicaSet (of Deployments), StatefulSet and DaemonSet controllers, placed by kube-scheduler
//! and run by the node simulator, on two small zone pools (barely larger than the live Pods,
//! so exhaustion and reuse happen). A churn task deletes Pods, scales, and rolls the workloads
//! out again, while faults are injected one at a time in every phase:
//! - a webhook replica SIGKILLed in the middle of admissions (started again 2 s later);
//! - every connection from kube-apiserver to the webhook replicas reset (the Service's
//!   balancer drops them, as a flushed conntrack table would);
//! - the operator leader SIGKILLed (started again 2 s later);
//! - kube-apiserver SIGKILLed and started again (even phases), or etcd SIGKILLed and started
//!   again on its data (odd phases).
//!
//! After each phase (churn stopped, every process up) and at the end (every workload deleted)
//! the invariants of `aipam_e2e::invariants` are checked: no address held twice, every live Pod
//! holds exactly its reservations, no claim without a Pod after the grace period, pool counts
//! equal to the claims; at the end, no claim and no endpoint at all.
//!
//! Short by default (`cargo test`: about 200 Pods in 2 phases); by hand, for instance
//! `CHAOS_REAL_PODS=2000 CHAOS_REAL_PHASES=4`, with `CHAOS_REAL_SEED` to replay the churn's
//! choices; figures are printed (`-- --nocapture`). Both forms are bounded in time (each phase
//! by `CHAOS_REAL_PHASE_SECONDS`). Skipped when no control plane of our own runs (the stand-in,
//! or a cluster given by `E2E_KUBECONFIG`: its API server and etcd are not ours to kill).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aipam_e2e::controlplane::Component;
use aipam_e2e::env::{operator_name, webhook_name, yaml_docs};
use aipam_e2e::invariants::{check, list_all, print_logs_about, settle};
use aipam_e2e::rng::{clock_seed, env_num, Rng};
use aipam_e2e::{Env, Options};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::{json, Value};

const NS: &str = "chaos-real";
const WEBHOOKS: usize = 3;
const OPERATORS: usize = 2;
const GRACE_SECONDS: u64 = 4;
/// Addresses per zone pool.
const ZONE_A: u32 = 18;
const ZONE_B: u32 = 12;
const NODES: [(&str, &str); 3] = [("ca1", "a"), ("ca2", "a"), ("cb1", "b")];
/// Workload sets (one Deployment, one StatefulSet, one DaemonSet each).
const SETS: usize = 2;
const POOLS: &str = "{\"ipv4\": [\"za\", \"zb\"]}";

fn apps(kind: &str, plural: &str) -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("apps", "v1", kind),
        plural,
    )
}

/// The three kinds of workload the churn drives, with their plural.
const KINDS: [(&str, &str); 3] = [
    ("Deployment", "deployments"),
    ("StatefulSet", "statefulsets"),
    ("DaemonSet", "daemonsets"),
];

fn workload(kind: &str, name: &str) -> Value {
    let mut d = json!({"apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name},
                "annotations": {"ipam.spidernet.io/ippool": POOLS}},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/app:1"}],
                    "terminationGracePeriodSeconds": 0}}}});
    match kind {
        "Deployment" => {
            d["spec"]["replicas"] = json!(3);
            d["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
        }
        "StatefulSet" => {
            d["spec"]["replicas"] = json!(2);
            d["spec"]["serviceName"] = json!(name);
            d["spec"]["podManagementPolicy"] = json!("Parallel");
        }
        _ => {
            d["spec"]["updateStrategy"] = json!({"rollingUpdate": {"maxUnavailable": 1}});
        }
    }
    d
}

/// What the churn did.
#[derive(Default)]
struct Churn {
    deleted: AtomicU64,
    scaled: AtomicU64,
    rolled: AtomicU64,
    /// Calls that failed (the API server or etcd down, a webhook call cut).
    failed: AtomicU64,
}

fn add(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Deletes Pods, scales and rolls workloads out again, an action every 150 ms, until `stop`.
async fn churn(client: kube::Client, seed: u64, stop: Arc<AtomicBool>, stats: Arc<Churn>) {
    let mut rng = Rng(seed);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let patch = PatchParams::default();
    let mut generation = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let set = rng.below(SETS as u64);
        let roll = rng.below(100);
        let ok = if roll < 45 {
            let Ok(list) = pods.list(&ListParams::default()).await else {
                add(&stats.failed);
                continue;
            };
            let live: Vec<&Pod> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            if live.is_empty() {
                continue;
            }
            let victim = live[rng.below(live.len() as u64) as usize].name_any();
            let ok = pods.delete(&victim, &DeleteParams::default()).await.is_ok();
            if ok {
                add(&stats.deleted);
            }
            ok
        } else {
            let (kind, plural) = KINDS[rng.below(3) as usize];
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), NS, &apps(kind, plural));
            let name = format!("{}-{set}", kind.to_lowercase());
            let body = if roll < 70 && kind != "DaemonSet" {
                let replicas = match kind {
                    "Deployment" => 1 + rng.below(5),
                    _ => 1 + rng.below(3),
                };
                add(&stats.scaled);
                json!({"spec": {"replicas": replicas}})
            } else {
                generation += 1;
                add(&stats.rolled);
                json!({"spec": {"template": {"metadata": {"annotations":
                    {"chaos.aipam.io/restarted": generation.to_string()}}}}})
            };
            api.patch(&name, &patch, &Patch::Merge(&body)).await.is_ok()
        };
        if !ok {
            add(&stats.failed);
        }
    }
}

/// Counts every Pod UID the API shows (the watch re-lists after an API server restart, so a
/// Pod that lived only while it was down is missed: a lower bound of the Pods made).
fn watch_pods(
    client: kube::Client,
    seen: Arc<Mutex<BTreeSet<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client, NS);
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let pod = match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                _ => continue,
            };
            if let Some(uid) = pod.metadata.uid {
                seen.lock().unwrap().insert(uid);
            }
        }
    })
}

/// The controllers' refused Pod creates, from their `FailedCreate` Events: (pools exhausted,
/// anything else, e.g. the webhook unreachable while a replica was killed).
async fn refused_creates(client: &kube::Client) -> (u64, u64, BTreeMap<String, u64>) {
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let (mut exhausted, mut other) = (0, 0);
    let mut shapes: BTreeMap<String, u64> = BTreeMap::new();
    for e in events
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        if e.reason.as_deref() != Some("FailedCreate") {
            continue;
        }
        let n = e.count.unwrap_or(1).max(1) as u64;
        let msg = e.message.unwrap_or_default();
        if msg.contains("addresses are in use") || msg.contains("no free address") {
            exhausted += n;
        } else {
            other += n;
            let shape: String = msg
                .chars()
                .map(|c| if c.is_ascii_digit() { '0' } else { c })
                .take(160)
                .collect();
            *shapes.entry(shape).or_insert(0) += n;
        }
    }
    (exhausted, other, shapes)
}

/// Releases the operators logged for the same claim object twice: a claim is written once per
/// reservation, so one (claim, reservation) pair deleted twice means two replicas (or one
/// replica twice) released it; every replica's whole log is read (restarts append).
fn released_twice(env: &Env) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut twice = Vec::new();
    for line in env.log("aipam-operator").lines() {
        if !(line.contains("claim deleted") || line.contains("zone alternative released")) {
            continue;
        }
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
        };
        let (Some(claim), Some(res)) = (field("claim"), field("reservation")) else {
            continue;
        };
        if !seen.insert((claim.clone(), res.clone())) {
            twice.push(format!("{claim} of reservation {res}"));
        }
    }
    twice
}

/// One fault of a phase.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    KillWebhook,
    DropConnections,
    KillLeader,
    RestartApiServer,
    RestartEtcd,
}

#[derive(Default, Debug)]
struct Faults {
    webhook_kills: u64,
    connection_drops: u64,
    connections_reset: u64,
    leader_kills: u64,
    apiserver_restarts: u64,
    etcd_restarts: u64,
    /// Processes found exited on their own (an operator that lost its Lease while the API
    /// server was down exits, as it should) and started again.
    self_exits: u64,
}

/// Starts again every process of ours that is not running.
async fn all_running(env: &mut Env, faults: &mut Faults) {
    for name in env.process_names() {
        if !env.is_running(&name) {
            env.restart(&name).await.unwrap();
            faults.self_exits += 1;
        }
    }
}

async fn inject(env: &mut Env, fault: Fault, rng: &mut Rng, faults: &mut Faults) {
    match fault {
        Fault::KillWebhook => {
            let name = webhook_name(rng.below(WEBHOOKS as u64) as usize);
            env.kill(&name).unwrap();
            faults.webhook_kills += 1;
            tokio::time::sleep(Duration::from_secs(2)).await;
            env.restart(&name).await.unwrap();
        }
        Fault::DropConnections => {
            faults.connection_drops += 1;
            faults.connections_reset += env.drop_webhook_connections().unwrap_or(0) as u64;
        }
        Fault::KillLeader => {
            let Ok(Some(leader)) = env.operator_leader().await else {
                return;
            };
            if !env.is_running(&leader) {
                return;
            }
            env.kill(&leader).unwrap();
            faults.leader_kills += 1;
            tokio::time::sleep(Duration::from_secs(2)).await;
            env.restart(&leader).await.unwrap();
        }
        Fault::RestartApiServer | Fault::RestartEtcd => {
            let c = if fault == Fault::RestartApiServer {
                faults.apiserver_restarts += 1;
                Component::ApiServer
            } else {
                faults.etcd_restarts += 1;
                Component::Etcd
            };
            env.control_plane().unwrap().restart(c).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_chaos_keeps_addresses_unique_bound_and_counted() {
    let started = Instant::now();
    let target = env_num("CHAOS_REAL_PODS", 200);
    let phases = env_num("CHAOS_REAL_PHASES", 2).max(1) as usize;
    let seed = env_num("CHAOS_REAL_SEED", clock_seed());
    let mut env = Env::start(Options {
        webhook_replicas: WEBHOOKS,
        operator_replicas: OPERATORS,
        lease_duration_seconds: Some(4),
        reservation_grace_seconds: GRACE_SECONDS,
        gc_interval: Duration::from_secs(2),
        ..Options::default()
    })
    .await
    .unwrap();
    if env.control_plane().is_none() {
        eprintln!("skipped: no control plane of our own to restart (stand-in or E2E_KUBECONFIG)");
        env.stop().await;
        return;
    }
    println!(
        "real chaos: {target} Pods in {phases} phases, seed {seed} (CHAOS_REAL_SEED={seed} replays the churn)"
    );
    let mut world = format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {{name: za}}
spec:
  subnet: 10.92.0.0/24
  ips: [10.92.0.10-10.92.0.{}]
  gateway: 10.92.0.1
  nodeAffinity: {{matchLabels: {{zone: a}}}}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {{name: zb}}
spec:
  subnet: 10.93.0.0/24
  ips: [10.93.0.10-10.93.0.{}]
  gateway: 10.93.0.1
  nodeAffinity: {{matchLabels: {{zone: b}}}}
"#,
        10 + ZONE_A - 1,
        10 + ZONE_B - 1
    );
    for (n, z) in NODES {
        world.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {n}, labels: {{zone: {z}}}}}\n"
        ));
    }
    for d in yaml_docs("world", &world).unwrap() {
        env.apply(&d).await.unwrap();
    }
    env.nodes()
        .unwrap()
        .wait_ready(Duration::from_secs(60))
        .await
        .unwrap();
    // Every webhook replica must have seen the pools before the controllers create Pods.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let probe: Pod = serde_json::from_value(json!({"metadata": {"generateName": "probe-",
        "annotations": {"ipam.spidernet.io/ippool": POOLS}},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/app:1"}]}}))
    .unwrap();
    aipam_e2e::wait_admitting(
        &pods,
        &probe,
        2 * WEBHOOKS,
        "every webhook to see the pools",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let watch = watch_pods(env.client.clone(), seen.clone());
    for set in 0..SETS {
        for (kind, _) in KINDS {
            env.apply(&workload(kind, &format!("{}-{set}", kind.to_lowercase())))
                .await
                .unwrap();
        }
    }

    let churned = Arc::new(Churn::default());
    let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut faults = Faults::default();
    let (mut duplicates, mut mismatches, mut orphans, mut leaks) = (0usize, 0usize, 0usize, 0usize);
    let mut settle_max = Duration::ZERO;
    let per_phase = target.div_ceil(phases as u64);
    let phase_limit = Duration::from_secs(env_num("CHAOS_REAL_PHASE_SECONDS", 120 + per_phase / 4));
    for phase in 0..phases {
        let phase_began = Instant::now();
        let before = seen.lock().unwrap().len() as u64;
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(churn(
            env.client.clone(),
            rng.next_u64(),
            stop.clone(),
            churned.clone(),
        ));
        let restart = if phase % 2 == 0 {
            Fault::RestartApiServer
        } else {
            Fault::RestartEtcd
        };
        let plan = [
            Fault::KillWebhook,
            Fault::DropConnections,
            Fault::KillLeader,
            restart,
        ];
        // The faults at a fifth, two, three and four fifths of the phase's Pods (or of its
        // time, when the Pods come slower); the churn runs on to the phase's Pods.
        let mut next = 0;
        loop {
            let made = seen.lock().unwrap().len() as u64 - before;
            let elapsed = phase_began.elapsed();
            if next == plan.len() && (made >= per_phase || elapsed > phase_limit) {
                break;
            }
            if next < plan.len() {
                let due = (next as u64 + 1) * per_phase / (plan.len() as u64 + 1);
                let due_time = phase_limit * (next as u32 + 1) / (plan.len() as u32 + 2);
                if made >= due || elapsed > due_time {
                    inject(&mut env, plan[next], &mut rng, &mut faults).await;
                    next += 1;
                }
            }
            for i in 0..OPERATORS {
                if !env.is_running(&operator_name(i)) {
                    env.restart(&operator_name(i)).await.unwrap();
                    faults.self_exits += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.store(true, Ordering::SeqCst);
        task.await.unwrap();
        all_running(&mut env, &mut faults).await;
        // Before any settling: duplicates are never allowed; claims without a Pod (a webhook
        // killed or cut off after reserving) are the collector's to clean within the grace.
        let early = check(&env.client, NS, true).await;
        if !early.duplicates.is_empty() {
            print_logs_about(&env, &early.duplicates);
        }
        duplicates += early.duplicates.len();
        orphans += early.leaks.len();
        assert!(
            early.duplicates.is_empty(),
            "phase {phase} (seed {seed}): {:#?}",
            early.duplicates
        );
        // The controllers converge (the Pods the churn deleted made again, scheduled, run).
        let (f, took) = settle(&env.client, NS, Duration::from_secs(GRACE_SECONDS * 6 + 60)).await;
        settle_max = settle_max.max(took);
        let seen_so_far = seen.lock().unwrap().len();
        let live = pods
            .list(&ListParams::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        println!(
            "phase {phase}: {:.1} s, {} Pods seen so far, {} live; faults so far {faults:?}; before settling {} claims without a Pod, {} other findings; settled in {:.1} s: {} duplicates, {} mismatches, {} leaks, {} count errors",
            phase_began.elapsed().as_secs_f64(),
            seen_so_far,
            live,
            early.leaks.len(),
            early.mismatches.len() + early.counts.len(),
            took.as_secs_f64(),
            f.duplicates.len(),
            f.mismatches.len(),
            f.leaks.len(),
            f.counts.len()
        );
        duplicates += f.duplicates.len();
        leaks += f.leaks.len();
        mismatches += f.mismatches.len() + f.counts.len();
        if !f.is_clean() {
            print_logs_about(&env, &f.duplicates);
            panic!("phase {phase} (seed {seed}): {f:#?}");
        }
    }

    // The end: every workload deleted (its Pods by the garbage collector); nothing may stay.
    for (kind, plural) in KINDS {
        let api: Api<DynamicObject> =
            Api::namespaced_with(env.client.clone(), NS, &apps(kind, plural));
        for o in api.list(&ListParams::default()).await.unwrap().items {
            api.delete(&o.name_any(), &DeleteParams::background())
                .await
                .unwrap();
        }
    }
    aipam_e2e::wait_for("every Pod gone", Duration::from_secs(120), || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default())
                .await
                .ok()
                .filter(|l| l.items.is_empty())
                .map(|_| ())
        }
    })
    .await
    .unwrap();
    let (f, took) = settle(&env.client, NS, Duration::from_secs(GRACE_SECONDS * 6 + 30)).await;
    let gone_by = Instant::now() + Duration::from_secs(GRACE_SECONDS * 6 + 30);
    let (left_claims, left_eps) = loop {
        let (_, claims, eps, _, _) = list_all(&env.client, NS).await.unwrap();
        if (claims.is_empty() && eps.is_empty()) || Instant::now() > gone_by {
            break (claims.len(), eps.len());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    leaks += f.leaks.len();
    let (exhausted, other, shapes) = refused_creates(&env.client).await;
    let twice = released_twice(&env);
    let pods_seen = seen.lock().unwrap().len() as u64;
    watch.abort();
    println!(
        "real chaos done in {:.1} s (seed {seed}): Pods seen {pods_seen} (made by the ReplicaSet, StatefulSet and DaemonSet controllers); churn: {} Pods deleted, {} scalings, {} rollouts, {} calls failed; creates refused (FailedCreate events): {exhausted} pools exhausted, {other} other; faults: {faults:?}; claims released twice {}, duplicates {duplicates}, mismatches {mismatches}, claims without a Pod before settling {orphans} (collected), leaks after the grace period {leaks}; at the end {left_claims} claims and {left_eps} endpoints left (settled in {:.1} s; longest phase settling {:.1} s)",
        started.elapsed().as_secs_f64(),
        get(&churned.deleted),
        get(&churned.scaled),
        get(&churned.rolled),
        get(&churned.failed),
        twice.len(),
        took.as_secs_f64(),
        settle_max.as_secs_f64(),
    );
    for (shape, n) in &shapes {
        println!("refused {n}x: {shape}");
    }
    assert!(f.is_clean(), "the end (seed {seed}): {f:#?}");
    assert_eq!(
        left_claims, 0,
        "every claim released once every Pod is gone"
    );
    assert_eq!(
        left_eps, 0,
        "every SpiderEndpoint removed once every Pod is gone"
    );
    assert_eq!(duplicates + mismatches + leaks, 0);
    assert!(twice.is_empty(), "released twice: {twice:?}");
    assert!(
        pods_seen >= target / 2,
        "the churn ran: {pods_seen} Pods seen of {target}"
    );
    assert!(
        faults.webhook_kills >= phases as u64
            && faults.connection_drops >= phases as u64
            && faults.apiserver_restarts >= 1
            && (phases < 2 || faults.etcd_restarts >= 1),
        "the faults happened: {faults:?}"
    );
    env.stop().await;
}
