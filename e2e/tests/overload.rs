#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Overload (issue 18): kube-apiserver's priority and fairness answers 429 Too Many Requests
//! when a priority level has no seat free. The webhook's writes are put in a level of their own
//! with few seats that rejects instead of queueing (a FlowSchema matching the webhook's
//! ServiceAccount), and Pods are created 64 at a time:
//! - squeezed: the API server rejects many claim creates (its own rejection metric counts
//!   them); the webhook retries them within its budget and every Pod is admitted;
//! - without retries (the webhook restarted with `--overload-retry-ms=0`): the writes shed are
//!   refused with code 429 and a message that says the API server is shedding load, well
//!   within the webhook's `timeoutSeconds`, and nothing of theirs stays reserved;
//! - after it: every address given back once the Pods are gone.
//!
//! Needs a control plane of our own (priority levels are cluster configuration: not changed on
//! a cluster given by `E2E_KUBECONFIG`); skipped on the stand-in, which has no priority and
//! fairness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aipam_crds::SpiderIPClaim;
use aipam_e2e::env::yaml_docs;
use aipam_e2e::{wait_for, Env, Options};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use tokio::sync::Semaphore;

const NS: &str = "overload";
const LEVEL: &str = "aipam-squeezed";
const IN_FLIGHT: usize = 64;
/// The webhook configuration's `timeoutSeconds` for Pods.
const TIMEOUT_SECONDS: u64 = 10;
const GRACE_SECONDS: u64 = 5;

/// The outcome of one create: how long it took, and the refusal (code, message) if any.
type Outcome = (Duration, Option<(u16, String)>);

async fn create_all(pods: &Api<Pod>, n: usize, prefix: &str) -> Vec<Outcome> {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (pods, gate) = (pods.clone(), gate.clone());
        let pod: Pod = serde_json::from_value(json!({"metadata": {"generateName": prefix},
            "spec": {"containers": [{"name": "c", "image": "registry.invalid/app:1"}]}}))
        .unwrap();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let t = Instant::now();
            let r = pods.create(&PostParams::default(), &pod).await;
            let refused = match r {
                Ok(_) => None,
                Err(kube::Error::Api(s)) => Some((s.code, s.message.clone())),
                Err(e) => Some((0, e.to_string())),
            };
            (t.elapsed(), refused)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn quantile(mut v: Vec<Duration>, q: f64) -> Duration {
    v.sort();
    v.get(((v.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// `apiserver_flowcontrol_rejected_requests_total` of our priority level.
async fn rejected(client: &kube::Client) -> u64 {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_flowcontrol_rejected_requests_total{")
                && l.contains(&format!("priority_level=\"{LEVEL}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn claims(client: &kube::Client) -> usize {
    Api::<SpiderIPClaim>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len()
}

/// Waits until a dry-run create of a Pod is admitted: the webhook serves and sees the pool.
async fn serving(pods: &Api<Pod>, what: &str) {
    let probe: Pod = serde_json::from_value(json!({"metadata": {"generateName": "probe-"},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/app:1"}]}}))
    .unwrap();
    aipam_e2e::wait_admitting(pods, &probe, 1, what, Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_writes_shed_with_429_are_retried_then_refused_clearly() {
    let mut env = Env::start(Options {
        reservation_grace_seconds: GRACE_SECONDS,
        gc_interval: Duration::from_secs(2),
        ..Options::default()
    })
    .await
    .unwrap();
    if env.control_plane().is_none() {
        eprintln!("skipped: needs a control plane of our own (priority and fairness config)");
        env.stop().await;
        return;
    }
    let world = format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}, annotations: {{ipam.spidernet.io/default-ipv4-ippool: '["load"]'}}}}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {{name: load}}
spec:
  subnet: 10.94.0.0/16
  ips: [10.94.0.10-10.94.3.250]
  gateway: 10.94.0.1
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {{name: {LEVEL}}}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 1
    lendablePercent: 0
    borrowingLimitPercent: 0
    limitResponse: {{type: Reject}}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {{name: {LEVEL}}}
spec:
  priorityLevelConfiguration: {{name: {LEVEL}}}
  matchingPrecedence: 100
  distinguisherMethod: {{type: ByUser}}
  rules:
  - subjects:
    - kind: ServiceAccount
      serviceAccount: {{name: aipam-webhook, namespace: aipam-system}}
    resourceRules:
    - apiGroups: [spiderpool.spidernet.io]
      resources: ["*"]
      verbs: [create, delete, patch, update]
      clusterScope: true
      namespaces: ["*"]
"#
    );
    for d in yaml_docs("world", &world).unwrap() {
        env.apply(&d).await.unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    // The FlowSchema is in force once the API server says it is not dangling, and the webhook
    // serves once it sees the pool.
    let schemas: Api<kube::api::DynamicObject> = Api::all_with(
        env.client.clone(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema"),
            "flowschemas",
        ),
    );
    wait_for("the FlowSchema in force", Duration::from_secs(30), || {
        let schemas = schemas.clone();
        async move {
            let fs = schemas.get(LEVEL).await.ok()?;
            let dangling = fs
                .data
                .pointer("/status/conditions")?
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Dangling")?
                .clone();
            (dangling["status"] == "False").then_some(())
        }
    })
    .await
    .unwrap();
    serving(&pods, "the webhook to see the pool").await;

    // Squeezed: few seats, rejected when none is free; the webhook retries within its budget.
    let n: usize = std::env::var("OVERLOAD_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(192);
    let before = rejected(&env.client).await;
    let t = Instant::now();
    let squeezed = create_all(&pods, n, "squeezed-").await;
    let took = t.elapsed();
    let shed = rejected(&env.client).await - before;
    let admitted = squeezed.iter().filter(|o| o.1.is_none()).count();
    let lat: Vec<Duration> = squeezed.iter().map(|o| o.0).collect();
    println!(
        "squeezed: {admitted}/{n} admitted in {:.1} s ({IN_FLIGHT} in flight); the API server rejected {shed} of the webhook's writes with 429; create p50 {:?} p99 {:?} max {:?}",
        took.as_secs_f64(),
        quantile(lat.clone(), 0.5),
        quantile(lat.clone(), 0.99),
        quantile(lat.clone(), 1.0),
    );
    for (_, r) in squeezed.iter().filter(|o| o.1.is_some()).take(3) {
        println!("refused: {r:?}");
    }
    assert!(
        shed > 0,
        "the load must make priority and fairness shed the webhook's writes"
    );
    assert_eq!(admitted, n, "every 429 retried within the budget");
    assert_eq!(claims(&env.client).await, n, "one claim per admitted Pod");

    // Without retries (the webhook restarted with no budget for them): the same load, and the
    // writes the API server sheds are refused with 429 and why, at once, nothing reserved.
    env.restart_with("aipam-webhook-0", &["--overload-retry-ms=0"])
        .await
        .unwrap();
    serving(&pods, "the webhook to see the pool again").await;
    // A client that does not retry 429s itself (kube's does by default, as client-go does
    // when the answer carries Retry-After): what the user of the API sees first.
    let admin = env.control_plane().unwrap().admin_kubeconfig();
    let kc = kube::config::Kubeconfig::read_from(&admin).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    cfg.default_retry = false;
    let bare_pods: Api<Pod> = Api::namespaced(kube::Client::try_from(cfg).unwrap(), NS);
    let claims_before = claims(&env.client).await;
    let before = rejected(&env.client).await;
    let bare = create_all(&bare_pods, n, "bare-").await;
    let shed = rejected(&env.client).await - before;
    let refused: Vec<&(u16, String)> = bare.iter().filter_map(|o| o.1.as_ref()).collect();
    let lat: Vec<Duration> = bare.iter().map(|o| o.0).collect();
    let worst = quantile(lat.clone(), 1.0);
    println!(
        "no retries: {} of {n} admitted, {} refused; the API server rejected {shed} writes; create p50 {:?} max {worst:?}; first refusal: {:?}",
        n - refused.len(),
        refused.len(),
        quantile(lat, 0.5),
        refused.first()
    );
    assert!(!refused.is_empty(), "without retries some creates are shed");
    for (code, msg) in &refused {
        assert_eq!(*code, 429, "{msg}");
        assert!(
            msg.contains("shedding load") && msg.contains("no address was reserved"),
            "{msg}"
        );
    }
    assert!(
        worst < Duration::from_secs(TIMEOUT_SECONDS),
        "answered within timeoutSeconds: {worst:?}"
    );
    // Each refused create's claims were rolled back (or, if the rollback was shed too, are
    // the operator's to collect: none of them may stay past the grace period).
    wait_for(
        "one claim per admitted Pod",
        Duration::from_secs(GRACE_SECONDS + 30),
        || {
            let client = env.client.clone();
            let want = claims_before + n - refused.len();
            async move { (claims(&client).await == want).then_some(()) }
        },
    )
    .await
    .unwrap();

    // After it: the level removed, the Pods deleted, every address given back.
    schemas
        .delete(LEVEL, &DeleteParams::default())
        .await
        .unwrap();
    for p in pods.list(&ListParams::default()).await.unwrap().items {
        let name = p.metadata.name.unwrap_or_default();
        pods.delete(&name, &DeleteParams::default()).await.unwrap();
    }
    wait_for("every claim released", Duration::from_secs(90), || {
        let client = env.client.clone();
        async move { (claims(&client).await == 0).then_some(()) }
    })
    .await
    .unwrap();
    env.stop().await;
}
