#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every shape of node restriction the webhook writes into a Pod, on the real API server: pools
//! bound to nodes by `nodeName` lists, by `nodeAffinity` with each operator a label selector has
//! (`In`, `NotIn`, `Exists`, `DoesNotExist`, `matchLabels`), and a Pod whose candidate pools sit
//! in several zones at once. The Pods the real ReplicaSet controller makes must pass the real
//! Pod validation after our mutation, and the real scheduler must place each on a node that
//! its pool serves; each Pod then runs with an address of that pool.
//!
//! Needs the real control plane (or a cluster with `E2E_KUBECONFIG` whose nodes carry these
//! labels: it skips on the stand-in, which has no scheduler).

use std::collections::BTreeSet;
use std::time::Duration;

use aipam_e2e::env::use_stand_in;
use aipam_e2e::sim::{run_workload, wait_running};
use aipam_e2e::{wait_for, Env, Options};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

/// The nodes: name and labels.
const NODES: [(&str, &[(&str, &str)]); 4] = [
    ("na", &[("zone", "a"), ("gpu", "true")]),
    ("nb", &[("zone", "b")]),
    ("nc", &[("zone", "c"), ("gpu", "true")]),
    ("nd", &[("zone", "d")]),
];

/// Pool name, its node restriction (the pool spec's fields), and the nodes it serves.
fn pools() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    vec![
        (
            "by-name",
            json!({"nodeName": ["na", "nb"]}),
            vec!["na", "nb"],
        ),
        (
            "zone-in",
            json!({"nodeAffinity": {"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["b"]}]}}),
            vec!["nb"],
        ),
        (
            "zone-not-in",
            json!({"nodeAffinity": {"matchExpressions": [
                {"key": "zone", "operator": "NotIn", "values": ["a", "b"]}]}}),
            vec!["nc", "nd"],
        ),
        (
            "gpu-exists",
            json!({"nodeAffinity": {"matchExpressions": [
                {"key": "gpu", "operator": "Exists"}]}}),
            vec!["na", "nc"],
        ),
        (
            "gpu-absent",
            json!({"nodeAffinity": {"matchExpressions": [
                {"key": "gpu", "operator": "DoesNotExist"}]}}),
            vec!["nb", "nd"],
        ),
        (
            "zone-c-labels",
            json!({"nodeAffinity": {"matchLabels": {"zone": "c"}}}),
            vec!["nc"],
        ),
    ]
}

fn deployment(name: &str, replicas: u32, pools: &[&str]) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shapes"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name},
                "annotations": {"ipam.spidernet.io/ippool":
                    serde_json::to_string(&json!({"ipv4": pools})).unwrap()}},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/app:1"}]}}}})
}

/// Waits for `pod` to run; its node and its address.
async fn running(env: &Env, pod: &Pod) -> (String, String) {
    let p = wait_running(env, pod, Duration::from_secs(60))
        .await
        .unwrap();
    (
        p.spec.unwrap().node_name.unwrap(),
        p.status.unwrap().pod_ip.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_restriction_is_valid_and_honoured_by_the_real_scheduler() {
    if use_stand_in() {
        eprintln!("\n*** SKIPPED: the stand-in has no scheduler and no Pod validation ***\n");
        return;
    }
    let env = Env::start(Options::default()).await.unwrap();
    let mut world = vec![json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shapes"}})];
    for (name, labels) in NODES {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        world.push(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels}}));
    }
    for (i, (name, restriction, _)) in pools().into_iter().enumerate() {
        let mut spec = json!({"subnet": format!("10.8{i}.0.0/24"),
            "ips": [format!("10.8{i}.0.10-10.8{i}.0.30")], "gateway": format!("10.8{i}.0.1")});
        for (k, v) in restriction.as_object().unwrap() {
            spec[k] = v.clone();
        }
        world.push(json!({"apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderIPPool", "metadata": {"name": name}, "spec": spec}));
    }
    for d in &world {
        env.apply(d).await.unwrap();
    }
    if let Some(n) = env.nodes() {
        n.wait_ready(Duration::from_secs(60)).await.unwrap();
    }

    let mut cases: Vec<(String, Vec<&str>, BTreeSet<&str>)> = pools()
        .into_iter()
        .map(|(name, _, nodes)| (name.to_string(), vec![name], nodes.into_iter().collect()))
        .collect();
    // Several zones at once: candidate pools bound to different nodes; the Pod may go to a
    // node of either, and keeps the address of the pool its node is served by.
    cases.push((
        "two-zones".to_string(),
        vec!["zone-in", "zone-c-labels"],
        ["nb", "nc"].into_iter().collect(),
    ));
    for (name, pool_list, nodes) in &cases {
        let last = std::sync::Mutex::new(String::new());
        let out = wait_for(
            &format!("the webhook to see the pools of {name}"),
            Duration::from_secs(30),
            || {
                let (env, last) = (&env, &last);
                async move {
                    let d = deployment(name, 2, pool_list);
                    let out = run_workload(env, &d).await.ok()?;
                    if out.iter().all(|o| o.result.is_ok()) {
                        return Some(out);
                    }
                    if let (Ok(mut l), Some(Err(m))) = (
                        last.lock(),
                        out.iter().map(|o| o.result.as_ref()).find(|r| r.is_err()),
                    ) {
                        *l = m.clone();
                    }
                    // Refused (a pool not seen yet): start again.
                    let api = env.api_for(&d).await.ok()?;
                    let _ = api.delete(name, &Default::default()).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    None
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}: the last refusal: {}", last.lock().unwrap()));
        assert_eq!(out.len(), 2, "{name}: {out:?}");
        for o in &out {
            let pod = o.result.as_ref().unwrap();
            let (node, ip) = running(&env, pod).await;
            assert!(
                nodes.contains(node.as_str()),
                "{name}: Pod {} placed on {node}, not one of {nodes:?}",
                pod.metadata.name.clone().unwrap()
            );
            // The address is from the pool serving that node.
            let served_by: Vec<usize> = pools()
                .iter()
                .enumerate()
                .filter(|(_, (p, _, ns))| pool_list.contains(p) && ns.contains(&node.as_str()))
                .map(|(i, _)| i)
                .collect();
            assert!(
                served_by
                    .iter()
                    .any(|i| ip.starts_with(&format!("10.8{i}.0."))),
                "{name}: {ip} on {node} is not from a pool serving it"
            );
        }
    }
    env.stop().await;
}
