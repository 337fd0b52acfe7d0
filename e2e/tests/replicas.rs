#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The harness with several webhook and operator replicas: the webhook Service spreads calls
//! over its replicas and survives one of them being killed; the operators elect one leader,
//! and another takes over when it is killed; killed processes restart.
//!
//! The binaries must be built first (`cargo build --workspace --bins`).

use std::time::Duration;

use aipam_crds::SpiderEndpoint;
use aipam_e2e::env::yaml_docs;
use aipam_e2e::sim::schedule;
use aipam_e2e::{wait_for, Env, Options};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::ResourceExt;
use serde_json::json;

const RESERVATION: &str = "aipam.io/reservation";

async fn create_pod(env: &Env) -> Result<Pod, kube::Error> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "r-", "namespace": "rep", "annotations": {
            "ipam.spidernet.io/ippool": "{\"ipv4\": [\"rep\"]}"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(env.client.clone(), "rep")
        .create(&PostParams::default(), &pod)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_work_and_survive_kills() {
    let mut env = Env::start(Options {
        webhook_replicas: 2,
        operator_replicas: 2,
        lease_duration_seconds: Some(3),
        ..Options::default()
    })
    .await
    .unwrap();
    assert_eq!(
        env.process_names(),
        [
            "aipam-webhook-0",
            "aipam-webhook-1",
            "aipam-operator-0",
            "aipam-operator-1"
        ]
    );
    for d in yaml_docs(
        "world",
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: rep}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {conditions: [{type: Ready, status: "True"}]}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: rep}
spec: {subnet: 10.60.0.0/24, ips: [10.60.0.10-10.60.0.40], gateway: 10.60.0.1}
"#,
    )
    .unwrap()
    {
        env.apply(&d).await.unwrap();
    }
    // Both replicas must have seen the pool: four admissions in a row succeed.
    let mut pods = Vec::new();
    wait_for(
        "both webhooks to see the pool",
        Duration::from_secs(20),
        || {
            let env = &env;
            async move {
                for _ in 0..4 {
                    create_pod(env).await.ok()?;
                }
                Some(())
            }
        },
    )
    .await
    .unwrap();

    // One webhook replica killed: admission goes on through the other. On the real API
    // server a create that was sent on a kept-alive connection to the killed replica fails
    // ("failed calling webhook ... EOF"): kube-apiserver does not retry a webhook POST whose
    // connection died, so a SIGKILLed replica costs the requests racing with its death, which
    // the Pods' controllers retry. Such failures are counted and bounded; a refusal is not
    // tolerated.
    env.kill("aipam-webhook-0").unwrap();
    assert!(!env.is_running("aipam-webhook-0"));
    let mut lost = 0;
    while pods.len() < 4 {
        match create_pod(&env).await {
            Ok(p) => {
                assert!(p.annotations().contains_key(RESERVATION), "reserved");
                pods.push(p);
            }
            Err(kube::Error::Api(e))
                if env.has_controllers()
                    && e.code == 500
                    && e.message.contains("failed calling webhook")
                    && lost < 2 =>
            {
                eprintln!(
                    "create lost with the killed replica's connection: {}",
                    e.message
                );
                lost += 1;
            }
            Err(e) => panic!("the surviving replica admits: {e}"),
        }
    }
    assert!(env.log("aipam-webhook").contains("=== aipam-webhook-1 ==="));

    // The operator leader killed: the other replica takes the Lease; Pods are still bound.
    let leader = wait_for("a leader", Duration::from_secs(20), || {
        let env = &env;
        async move { env.operator_leader().await.ok().flatten() }
    })
    .await
    .unwrap();
    env.kill(&leader).unwrap();
    let next = wait_for("another leader", Duration::from_secs(30), || {
        let (env, leader) = (&env, leader.clone());
        async move {
            env.operator_leader()
                .await
                .ok()
                .flatten()
                .filter(|l| *l != leader)
        }
    })
    .await
    .unwrap();
    assert!(next.starts_with("aipam-operator-"), "{next}");
    let pod = &pods[0];
    schedule(&env, pod, 0).await.unwrap().expect("node n1");
    let name = pod.metadata.name.clone().unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    let eps: Api<SpiderEndpoint> = Api::namespaced(env.client.clone(), "rep");
    wait_for("the Pod to be bound", Duration::from_secs(30), || {
        let (eps, name, uid) = (eps.clone(), name.clone(), uid.clone());
        async move {
            let ep = eps.get_opt(&name).await.ok()??;
            let cur = ep.status?.current;
            (cur.uid == uid && cur.node == "n1").then_some(())
        }
    })
    .await
    .unwrap();

    // Both come back.
    env.restart("aipam-webhook-0").await.unwrap();
    env.restart(&leader).await.unwrap();
    assert!(env.is_running("aipam-webhook-0") && env.is_running(&leader));
    env.stop().await;
}
