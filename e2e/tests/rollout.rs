#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Rollouts lose nothing (issue 18): the webhook replicas are restarted one by one as a rolling
//! update replaces them (SIGTERM, the old process drains, a new one starts) while Pods are being
//! created — directly at a bounded rate, then by a real ReplicaSet scaling up and down — and not
//! one create fails. The real API server keeps its HTTP/2 connection to a replica and does not
//! retry a POST that a closed connection loses, so this holds only because a terminating replica
//! reports not ready (the Service, here `e2e/src/proxy.rs`, stops sending it new connections)
//! while it still serves the connections it has, then sends GOAWAY and finishes what is in
//! flight.
//!
//! Real control plane only (the stand-in's webhook client is not kube-apiserver's). The
//! binaries must be built first (`cargo build --workspace --bins`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aipam_e2e::env::yaml_docs;
use aipam_e2e::{wait_for, Env, Options};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::Semaphore;

const NS: &str = "roll";
const RESERVATION: &str = "aipam.io/reservation";
/// Direct creates: at most one started every 20 ms (50/s), at most 16 in flight.
const CREATE_EVERY: Duration = Duration::from_millis(20);
const IN_FLIGHT: usize = 16;
/// Bounds that stop the creators by themselves if the test never does.
const MAX_CREATES: usize = 3000;
const MAX_RUN: Duration = Duration::from_secs(240);
/// The kubelet's patience with a terminating replica (terminationGracePeriodSeconds).
const GRACE: Duration = Duration::from_secs(40);

fn pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"generateName": "d-", "namespace": NS, "annotations": {
            "ipam.spidernet.io/ippool": "{\"ipv4\": [\"roll\"]}"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap()
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    without_reservation: AtomicUsize,
    failed: Mutex<Vec<String>>,
}

/// Creates Pods at a bounded rate until `stop` is set (or the bounds above are reached).
fn start_creates(
    client: kube::Client,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api = Api::<Pod>::namespaced(client, NS);
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut tick = tokio::time::interval(CREATE_EVERY);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..MAX_CREATES {
            if stop.load(Ordering::SeqCst) || start.elapsed() > MAX_RUN {
                break;
            }
            tick.tick().await;
            let permit = permits.clone().acquire_owned().await.unwrap();
            let (api, tally) = (api.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                match api.create(&PostParams::default(), &pod()).await {
                    Ok(p) => {
                        tally.ok.fetch_add(1, Ordering::SeqCst);
                        if !p.annotations().contains_key(RESERVATION) {
                            tally.without_reservation.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(e) => tally.failed.lock().unwrap().push(e.to_string()),
                }
                drop(permit);
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    })
}

/// `FailedCreate` Events of the namespace that mention a webhook.
async fn webhook_failed_creates(env: &Env) -> Vec<String> {
    Api::<Event>::namespaced(env.client.clone(), NS)
        .list(&ListParams::default().fields("reason=FailedCreate"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.message)
        .filter(|m| m.contains("webhook"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_the_webhook_loses_no_pod_create() {
    let mut env = Env::start(Options {
        webhook_replicas: 3,
        ..Options::default()
    })
    .await
    .unwrap();
    if !env.has_controllers() {
        eprintln!(
            "\n*** SKIPPED: the rollout is checked against the real kube-apiserver only ***\n"
        );
        return;
    }
    for d in yaml_docs(
        "world",
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: roll}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: roll}
spec: {subnet: 10.62.0.0/20, ips: [10.62.0.10-10.62.15.250], gateway: 10.62.0.1}
"#,
    )
    .unwrap()
    {
        env.apply(&d).await.unwrap();
    }
    // Every replica has seen the pool (and the namespace has its ServiceAccount).
    wait_for("admission to work", Duration::from_secs(60), || {
        let env = &env;
        async move {
            let api = Api::<Pod>::namespaced(env.client.clone(), NS);
            for _ in 0..6 {
                api.create(&PostParams::default(), &pod()).await.ok()?;
            }
            Some(())
        }
    })
    .await
    .unwrap();

    // 1. Direct creates, at most 50/s, across a rolling restart of the three replicas.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let creates = start_creates(env.client.clone(), stop.clone(), tally.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = tally.ok.load(Ordering::SeqCst);
    let began = Instant::now();
    let killed = env.rolling_restart_webhooks(GRACE).await.unwrap();
    let took = began.elapsed();
    let during = tally.ok.load(Ordering::SeqCst) - before;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    creates.await.unwrap();
    let failed = tally.failed.lock().unwrap().clone();
    let ok = tally.ok.load(Ordering::SeqCst);
    eprintln!(
        "direct creates: {ok} admitted ({during} during the {:.1} s rolling restart), {} failed",
        took.as_secs_f64(),
        failed.len()
    );
    assert!(
        killed.is_empty(),
        "replicas that did not stop within the grace period: {killed:?}"
    );
    assert_eq!(failed, Vec::<String>::new(), "every create succeeds");
    assert_eq!(tally.without_reservation.load(Ordering::SeqCst), 0);
    assert!(during > 0, "Pods were created during the rolling restart");
    // Each replica drained: it said so in its log.
    let log = env.log("aipam-webhook");
    assert_eq!(
        log.matches("closing the listener; finishing requests in flight")
            .count(),
        3,
        "{log}"
    );

    // 2. A real ReplicaSet scaling up and down across a second rolling restart: no FailedCreate
    // mentions the webhook, and it ends with all its Pods.
    for d in yaml_docs(
        "deployment",
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: roll}
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {ipam.spidernet.io/ippool: '{"ipv4": ["roll"]}'}
    spec:
      containers: [{name: c, image: x}]
"#,
    )
    .unwrap()
    {
        env.apply(&d).await.unwrap();
    }
    let deployments = Api::<Deployment>::namespaced(env.client.clone(), NS);
    let scale = move |n: u32| {
        let deployments = deployments.clone();
        async move {
            deployments
                .patch(
                    "web",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"replicas": n}})),
                )
                .await
                .unwrap();
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let scaler = {
        let (stop, scale) = (stop.clone(), scale.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            let mut up = true;
            while !stop.load(Ordering::SeqCst) && start.elapsed() < MAX_RUN {
                scale(if up { 40 } else { 10 }).await;
                up = !up;
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = env.rolling_restart_webhooks(GRACE).await.unwrap();
    stop.store(true, Ordering::SeqCst);
    scaler.await.unwrap();
    assert!(killed.is_empty(), "{killed:?}");
    scale(40).await;
    let pods = Api::<Pod>::namespaced(env.client.clone(), NS);
    let made = wait_for("the Deployment's 40 Pods", Duration::from_secs(120), || {
        let pods = pods.clone();
        async move {
            let l = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let live: Vec<Pod> = l
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            (live.len() == 40).then_some(live)
        }
    })
    .await
    .unwrap();
    assert!(made
        .iter()
        .all(|p| p.annotations().contains_key(RESERVATION)));
    let failed = webhook_failed_creates(&env).await;
    eprintln!(
        "ReplicaSet: {} FailedCreate events mentioning the webhook",
        failed.len()
    );
    assert_eq!(failed, Vec::<String>::new());
    env.stop().await;
}
