#![allow(clippy::unwrap_used, clippy::expect_used)]
//! No recovery deadlock (issue 18): the Pod CREATE webhook fails closed (`failurePolicy:
//! Fail`), so with every webhook replica down the cluster must still create the Pods it needs to
//! bring the webhook back — hostNetwork Pods (the CNI's DaemonSets, kube-proxy) and the Pods of
//! kube-system, aipam-system and namespaces labelled `aipam.io/ipam=disabled` — while ordinary
//! Pods are refused with an error naming the webhook, the reservation guard keeps guarding, and
//! admission comes back with the webhook.
//!
//! Real control plane only: the API stand-in does not evaluate `matchConditions`. The binaries
//! must be built first (`cargo build --workspace --bins`).

use std::time::Duration;

use aipam_e2e::env::{webhook_name, yaml_docs};
use aipam_e2e::{wait_for, Env, Options};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};

const RESERVATION: &str = "aipam.io/reservation";
const REPLICAS: usize = 2;

fn pod(ns: &str, host_network: bool, annotations: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"generateName": "o-", "namespace": ns, "annotations": annotations},
        "spec": {
            "hostNetwork": host_network,
            "containers": [{"name": "c", "image": "x"}]
        }
    }))
    .unwrap()
}

fn ordinary(ns: &str) -> Pod {
    pod(
        ns,
        false,
        json!({"ipam.spidernet.io/ippool": "{\"ipv4\": [\"outage\"]}"}),
    )
}

/// Creates `p`, retrying only while the namespace's `default` ServiceAccount does not exist yet
/// (the real ServiceAccount admission refuses Pods until the controller has made it).
async fn create(env: &Env, p: &Pod) -> Result<Pod, kube::Error> {
    let ns = p.metadata.namespace.clone().unwrap();
    let api = Api::<Pod>::namespaced(env.client.clone(), &ns);
    for _ in 0..100 {
        match api.create(&PostParams::default(), p).await {
            Err(kube::Error::Api(e)) if e.message.contains("serviceaccount") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
    api.create(&PostParams::default(), p).await
}

/// The refusal kube-apiserver gives when the webhook cannot be called: a 500 naming it.
fn assert_webhook_unreachable(res: Result<Pod, kube::Error>, hook: &str, what: &str) {
    match res {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 500, "{what}: {e:?}");
            assert!(
                e.message
                    .contains(&format!("failed calling webhook \"{hook}\"")),
                "{what}: {}",
                e.message
            );
        }
        Ok(p) => panic!(
            "{what}: created while no webhook replica runs: {:?}",
            p.metadata
        ),
        Err(e) => panic!("{what}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_webhook_down_the_cluster_still_creates_what_brings_it_back() {
    let mut env = Env::start(Options {
        webhook_replicas: REPLICAS,
        ..Options::default()
    })
    .await
    .unwrap();
    if !env.has_controllers() {
        eprintln!(
            "\n*** SKIPPED: the API stand-in does not evaluate matchConditions; the outage \
             was NOT checked (run on the real control plane) ***\n"
        );
        return;
    }
    for d in yaml_docs(
        "world",
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: Namespace
metadata: {name: infra, labels: {aipam.io/ipam: disabled}}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: outage}
spec: {subnet: 10.61.0.0/24, ips: [10.61.0.10-10.61.0.40], gateway: 10.61.0.1}
"#,
    )
    .unwrap()
    {
        env.apply(&d).await.unwrap();
    }
    // Before the outage: an ordinary Pod gets its reservation (every replica has seen the pool).
    let before = wait_for(
        "the webhooks to see the pool",
        Duration::from_secs(30),
        || {
            let env = &env;
            async move {
                let mut last = None;
                for _ in 0..REPLICAS * 2 {
                    last = Some(create(env, &ordinary("apps")).await.ok()?);
                }
                last
            }
        },
    )
    .await
    .unwrap();
    assert!(before.annotations().contains_key(RESERVATION));

    for i in 0..REPLICAS {
        env.kill(&webhook_name(i)).unwrap();
        assert!(!env.is_running(&webhook_name(i)));
    }

    // Ordinary Pods fail closed, with the webhook named in the error.
    assert_webhook_unreachable(
        create(&env, &ordinary("apps")).await,
        "pods.mutate.aipam.io",
        "an ordinary Pod",
    );
    // A hostNetwork Pod of the same namespace is created: the API server does not call the hook.
    let host = create(&env, &pod("apps", true, json!({}))).await.unwrap();
    assert!(!host.annotations().contains_key(RESERVATION));
    // ... unless it carries a reservation record, which only the webhook may strip: no Pod
    // smuggles one in while the webhook is down.
    assert_webhook_unreachable(
        create(
            &env,
            &pod(
                "apps",
                true,
                json!({RESERVATION: before.annotations()[RESERVATION]}),
            ),
        )
        .await,
        "pods.mutate.aipam.io",
        "a hostNetwork Pod carrying a reservation record",
    );
    // The infrastructure namespaces are never sent to the webhook.
    for ns in ["kube-system", "infra"] {
        let p = create(&env, &ordinary(ns))
            .await
            .unwrap_or_else(|e| panic!("a Pod in {ns}: {e}"));
        assert!(!p.annotations().contains_key(RESERVATION), "{ns}");
    }

    // The reservation guard still guards every Pod, hostNetwork ones included: a change of the
    // record is refused while the webhook is down ...
    let pods = Api::<Pod>::namespaced(env.client.clone(), "apps");
    let forge =
        json!({"metadata": {"annotations": {RESERVATION: before.annotations()[RESERVATION]}}});
    let err = pods
        .patch(
            &host.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&forge),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 500, "{e:?}");
            assert!(
                e.message
                    .contains("failed calling webhook \"pods-update.validate.aipam.io\""),
                "{}",
                e.message
            );
        }
        e => panic!("{e}"),
    }
    // ... and no Pod becomes a hostNetwork one to slip past it: the API server refuses the flip.
    let flip = json!({"spec": {"hostNetwork": true}});
    match pods
        .patch(
            &before.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&flip),
        )
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            assert!(
                e.message.contains("pod updates may not change fields"),
                "{}",
                e.message
            );
        }
        other => panic!("spec.hostNetwork changed: {other:?}"),
    }
    // Other updates of a Pod go through (the guard's matchConditions send it only record
    // changes).
    pods.patch(
        &before.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"during": "outage"}}})),
    )
    .await
    .unwrap();

    // The real DaemonSet controller creates a hostNetwork DaemonSet's Pod (a CNI's, kube-proxy's).
    for d in yaml_docs(
        "daemonset",
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cni, namespace: apps}
spec:
  selector: {matchLabels: {app: cni}}
  template:
    metadata: {labels: {app: cni}}
    spec:
      hostNetwork: true
      containers: [{name: c, image: x}]
"#,
    )
    .unwrap()
    {
        env.apply(&d).await.unwrap();
    }
    let ds_pods = wait_for("the DaemonSet's Pod on n1", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let l = pods
                .list(&ListParams::default().labels("app=cni"))
                .await
                .ok()?;
            (!l.items.is_empty()).then_some(l.items)
        }
    })
    .await
    .unwrap();
    assert_eq!(ds_pods.len(), 1, "one node, one Pod");
    let events = Api::<Event>::namespaced(env.client.clone(), "apps");
    let failed: Vec<String> = events
        .list(&ListParams::default().fields("reason=FailedCreate"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.message)
        .collect();
    assert!(failed.is_empty(), "{failed:?}");

    // The webhook comes back: ordinary Pods are admitted again, with their reservation (once
    // the Service routes to a ready replica again, as a controller's retry finds).
    for i in 0..REPLICAS {
        env.restart(&webhook_name(i)).await.unwrap();
    }
    let after = wait_for(
        "an ordinary Pod to be admitted",
        Duration::from_secs(30),
        || {
            let env = &env;
            async move { create(env, &ordinary("apps")).await.ok() }
        },
    )
    .await
    .unwrap();
    assert!(after.annotations().contains_key(RESERVATION));
    env.stop().await;
}
