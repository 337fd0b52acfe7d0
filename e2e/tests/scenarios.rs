#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end scenarios: the webhook and the operator as processes behind the API stand-in (or a
//! real cluster with `E2E_KUBECONFIG`), the CNI binary as the runtime runs it. Each ends by
//! checking that no address is held twice and that pool counts equal the live claims.
//!
//! The binaries must be built first (`cargo build --workspace --bins`; hack/test.sh does it).

use std::collections::BTreeSet;
use std::time::Duration;

use aipam_core::reservation::{Reservation, ANNO_RESERVATION};
use aipam_crds::{SpiderEndpoint, SpiderIPClaim, SpiderIPPool};
use aipam_e2e::cni::{self, CniOutcome};
use aipam_e2e::env::yaml_docs;
use aipam_e2e::sim::{run_workload, schedule, wait_running, PodOutcome};
use aipam_e2e::{repo, wait_for, Env, Options};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::Value;

fn sample(path: &str) -> Vec<Value> {
    let p = repo().join("config/samples").join(path);
    yaml_docs(path, &std::fs::read_to_string(p).unwrap()).unwrap()
}

async fn apply_all(env: &Env, docs: &[Value]) {
    for d in docs {
        env.apply(d).await.unwrap();
    }
}

/// The CNI result of `pod`'s `eth0` once the node simulator has set it Running, checking that
/// the Pod's status carries the address.
async fn running_result(env: &Env, pod: &Pod) -> Value {
    let ns = pod.metadata.namespace.clone().unwrap();
    let name = pod.metadata.name.clone().unwrap();
    let running = wait_running(env, pod, Duration::from_secs(60))
        .await
        .unwrap();
    let ifaces = env.nodes().unwrap().interfaces(&ns, &name).unwrap();
    let eth0 = ifaces.iter().find(|i| i.ifname == "eth0").unwrap();
    let pod_ip = running.status.unwrap().pod_ip.unwrap();
    let addr = eth0.result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(addr.split('/').next().unwrap(), pod_ip);
    eth0.result.clone()
}

async fn claims(env: &Env) -> Vec<SpiderIPClaim> {
    Api::<SpiderIPClaim>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

/// No address held twice; every endpoint address is a live claim; pool counters equal claims.
async fn assert_consistent(env: &Env) {
    let held = claims(env).await;
    let mut seen = BTreeSet::new();
    for c in &held {
        assert!(
            seen.insert(c.spec.address.clone()),
            "{} held twice",
            c.spec.address
        );
    }
    let eps = Api::<SpiderEndpoint>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    for ep in eps {
        for ip in ep.status.iter().flat_map(|s| s.current.ips.iter()) {
            for a in ip.ipv4.iter().chain(ip.ipv6.iter()) {
                let addr = a.split('/').next().unwrap();
                assert!(seen.contains(addr), "endpoint address {addr} has no claim");
            }
        }
    }
    let pools: Api<SpiderIPPool> = Api::all(env.client.clone());
    wait_for(
        "pool counters equal to the claims",
        Duration::from_secs(20),
        || {
            let (pools, env_claims) = (pools.clone(), env.client.clone());
            async move {
                let held = Api::<SpiderIPClaim>::all(env_claims)
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items;
                for p in pools.list(&ListParams::default()).await.ok()?.items {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let want = held.iter().filter(|c| c.spec.pool == name).count() as i64;
                    (p.status.as_ref()?.allocated_ip_count == Some(want)).then_some(())?;
                }
                Some(())
            }
        },
    )
    .await
    .unwrap();
}

fn admitted(outcomes: &[PodOutcome]) -> Vec<Pod> {
    outcomes
        .iter()
        .filter_map(|o| o.result.clone().ok())
        .collect()
}

async fn endpoint_of(env: &Env, pod: &Pod) -> SpiderEndpoint {
    let ns = pod.metadata.namespace.clone().unwrap();
    let name = pod.metadata.name.clone().unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    let api: Api<SpiderEndpoint> = Api::namespaced(env.client.clone(), &ns);
    wait_for(
        &format!("endpoint of {name}"),
        Duration::from_secs(30),
        || {
            let (api, name, uid) = (api.clone(), name.clone(), uid.clone());
            async move {
                let ep = api.get_opt(&name).await.ok()??;
                let cur = &ep.status.as_ref()?.current;
                (cur.uid == uid && !cur.ips.is_empty() && !cur.node.is_empty()).then_some(ep)
            }
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_daemonset_pods_get_their_zone_and_deployment_pods_are_bound_late() {
    let env = Env::start(Options::default()).await.unwrap();
    for f in [
        "zones/00-nodes.yaml",
        "zones/01-namespace.yaml",
        "zones/04-network.yaml",
        "zones/03-ippools.yaml",
    ] {
        apply_all(&env, &sample(f)).await;
    }
    env.wait_pool_visible("zone-demo", "test-ippool-7")
        .await
        .unwrap();

    let ds = run_workload(&env, &sample("zones/05-daemonset.yaml")[0])
        .await
        .unwrap();
    let deploy = run_workload(&env, &sample("zones/06-deployment.yaml")[0])
        .await
        .unwrap();
    assert_eq!(admitted(&ds).len(), 2);
    assert_eq!(admitted(&deploy).len(), 2);
    if env.has_controllers() {
        // The real scheduler binds at once: what it was given is the required node affinity
        // the webhook wrote, which admits a node of either zone.
        for p in admitted(&deploy) {
            let terms = aipam_crds::record::required_node_terms(&p);
            assert!(!terms.is_empty(), "{p:?}");
        }
    } else {
        // Before scheduling, each Deployment Pod holds one address per zone.
        let provisional = claims(&env)
            .await
            .iter()
            .filter(|c| c.spec.provisional)
            .count();
        assert_eq!(
            provisional, 4,
            "two zone alternatives for each of the two Deployment Pods"
        );
    }

    for (i, pod) in admitted(&ds)
        .iter()
        .chain(admitted(&deploy).iter())
        .enumerate()
    {
        let node = schedule(&env, pod, i)
            .await
            .unwrap()
            .expect("a node admits the Pod");
        let ep = endpoint_of(&env, pod).await;
        let cur = &ep.status.as_ref().unwrap().current;
        assert_eq!(cur.node, node);
        let (pool, prefix) = if node == "controller-node-1" {
            ("test-ippool-6", "10.6.168.")
        } else {
            ("test-ippool-7", "10.7.168.")
        };
        assert_eq!(cur.ips.len(), 1);
        assert_eq!(cur.ips[0].ipv4_pool.as_deref(), Some(pool), "{cur:?}");
        assert!(cur.ips[0].ipv4.as_deref().unwrap().starts_with(prefix));
        // The CNI binary reads the same back, with the subnet's prefix and the gateway.
        let name = pod.metadata.name.clone().unwrap();
        let uid = pod.metadata.uid.clone().unwrap();
        let result = if env.nodes().is_some() {
            // The node simulator ran the real bridge plugin with our IPAM in the Pod's
            // network namespace; the Pod is Running with that address.
            running_result(&env, pod).await
        } else {
            match cni::run(&env, "ADD", "zone-demo", &name, &uid, "eth0").unwrap() {
                CniOutcome::Ok(v) => v,
                CniOutcome::Err(e) => panic!("ADD failed: {e}"),
            }
        };
        let want = cur.ips[0].ipv4.clone().unwrap();
        assert_eq!(result["ips"][0]["address"], Value::String(want), "{result}");
        assert!(result["ips"][0]["address"]
            .as_str()
            .unwrap()
            .ends_with("/16"));
        assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0", "{result}");
    }
    // Late binding released the other zone's reservation of every Deployment Pod.
    wait_for(
        "provisional claims to be resolved",
        Duration::from_secs(20),
        || {
            let env = &env;
            async move {
                let c = claims(env).await;
                (c.len() == 4 && c.iter().all(|c| !c.spec.provisional)).then_some(())
            }
        },
    )
    .await
    .unwrap();
    assert_consistent(&env).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_pool_and_reserve_nothing_and_deletion_releases() {
    let env = Env::start(Options::default()).await.unwrap();
    for f in [
        "zones/00-nodes.yaml",
        "priorities/00-config.yaml",
        "priorities/01-namespaces.yaml",
        "priorities/02-ippools.yaml",
    ] {
        apply_all(&env, &sample(f)).await;
    }
    env.wait_pool_visible("team-a", "worker-v4-ippool")
        .await
        .unwrap();
    let workloads = sample("priorities/03-workloads.yaml");
    let my_deploy = workloads
        .iter()
        .find(|d| d["metadata"]["name"] == "my-deploy")
        .unwrap();
    let before = claims(&env).await.len();
    let out = run_workload(&env, my_deploy).await.unwrap();
    let msg = out[0].result.clone().unwrap_err();
    assert!(
        msg.contains("pool default-v4-ippool: the namespace's labels do not match its spec.namespaceAffinity (foo=bar)"),
        "{msg}"
    );
    assert_eq!(
        claims(&env).await.len(),
        before,
        "a refused Pod holds nothing"
    );

    let web = workloads
        .iter()
        .find(|d| d["metadata"]["name"] == "team-a-web")
        .unwrap();
    let pods = admitted(&run_workload(&env, web).await.unwrap());
    assert_eq!(pods.len(), 3);
    for (i, p) in pods.iter().enumerate() {
        schedule(&env, p, i)
            .await
            .unwrap()
            .expect("a node admits the Pod");
        let ep = endpoint_of(&env, p).await;
        assert_eq!(
            ep.status.unwrap().current.ips[0].ipv4_pool.as_deref(),
            Some("team-a-v4")
        );
    }
    assert_consistent(&env).await;

    // Deleting a Pod returns its address.
    let victim = pods[0].metadata.name.clone().unwrap();
    let id = Reservation::parse(&pods[0].metadata.annotations.as_ref().unwrap()[ANNO_RESERVATION])
        .unwrap()
        .id;
    assert!(claims(&env).await.iter().any(|c| c.spec.reservation == id));
    // On the real control plane a graceful delete, as kubectl does: the node runs CNI DEL,
    // then removes the Pod (and its ReplicaSet makes another).
    let dp = if env.has_controllers() {
        DeleteParams::default()
    } else {
        DeleteParams::default().grace_period(0)
    };
    Api::<Pod>::namespaced(env.client.clone(), "team-a")
        .delete(&victim, &dp)
        .await
        .unwrap();
    wait_for(
        "the deleted Pod's claim to go",
        Duration::from_secs(30),
        || {
            let (env, id) = (&env, id.clone());
            async move {
                let c = claims(env).await;
                (!c.iter().any(|c| c.spec.reservation == id)).then_some(())
            }
        },
    )
    .await
    .unwrap();
    assert_consistent(&env).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_first_pool_falls_through_to_the_backup_and_then_refuses() {
    let env = Env::start(Options::default()).await.unwrap();
    let world = yaml_docs(
        "world",
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: backup}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: first}
spec: {subnet: 10.50.0.0/24, ips: [10.50.0.10-10.50.0.11], gateway: 10.50.0.1}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: second}
spec: {subnet: 10.51.0.0/24, ips: [10.51.0.10-10.51.0.11], gateway: 10.51.0.1}
"#,
    )
    .unwrap();
    apply_all(&env, &world).await;
    env.wait_pool_visible("backup", "second").await.unwrap();
    let deploy = yaml_docs(
        "deploy",
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: backup}
spec:
  replicas: 5
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations:
        ipam.spidernet.io/ippool: '{"ipv4": ["first", "second"]}'
    spec:
      containers: [{name: web, image: nginx}]
"#,
    )
    .unwrap();
    let out = run_workload(&env, &deploy[0]).await.unwrap();
    let ok = admitted(&out);
    assert_eq!(ok.len(), 4);
    let refused: Vec<String> = out.iter().filter_map(|o| o.result.clone().err()).collect();
    assert_eq!(refused.len(), 1);
    assert!(
        // "all 2 addresses are in use" when the webhook's cache saw the pool full, "no free
        // address left" when its pick found it so (the fifth Pod can race the fourth's claim).
        refused[0].contains("pool first: all 2 addresses are in use")
            || refused[0].contains("pool first: no free address left"),
        "{}",
        refused[0]
    );
    let c = claims(&env).await;
    assert_eq!(c.iter().filter(|c| c.spec.pool == "first").count(), 2);
    assert_eq!(c.iter().filter(|c| c.spec.pool == "second").count(), 2);
    assert_consistent(&env).await;
    env.stop().await;
}
