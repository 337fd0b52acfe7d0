#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The peer IPAMs the benchmarks compare us with run as their users run them, on the real
//! control plane with the same node simulator and `bridge` plugin as ours: host-local with a
//! range per node, Whereabouts (built from its pinned module) with one range and its own
//! ServiceAccount. A Deployment's Pods get distinct addresses from the right range, and deleting
//! it gives every address back (the node's CNI DEL). Without this the benchmark's rows of the
//! peers would measure a misconfigured peer.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use aipam_e2e::peers::{addresses_held, Ipam};
use aipam_e2e::{wait_for, Env, Options};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;

const REPLICAS: usize = 4;

async fn serves_a_deployment(ipam: Ipam, ranges: &[&str]) {
    let env = Env::start(Options {
        operator: false,
        ipam: ipam.clone(),
        ..Options::default()
    })
    .await
    .expect("environment");
    if env.nodes().is_none() {
        eprintln!("peers: not on a control plane started here (E2E_KUBECONFIG): skipped");
        return;
    }
    let ns = "peer";
    for doc in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "peer-node-0"}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "peer-node-1"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}),
    ] {
        env.apply(&doc).await.expect("apply");
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let running = wait_for(
        &format!("{REPLICAS} Pods Running with {}", ipam.name()),
        Duration::from_secs(120),
        || {
            let pods = pods.clone();
            async move {
                let list = pods.list(&ListParams::default()).await.ok()?.items;
                let ips: Vec<(String, String)> = list
                    .iter()
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .filter_map(|p| {
                        let s = p.status.as_ref()?;
                        let node = p.spec.as_ref()?.node_name.clone()?;
                        Some((node, s.pod_ip.clone()?))
                    })
                    .collect();
                (ips.len() == REPLICAS).then_some(ips)
            }
        },
    )
    .await
    .unwrap_or_else(|e| {
        let why: Vec<String> = env
            .nodes()
            .map(|n| n.node_names())
            .unwrap_or_default()
            .into_iter()
            .collect();
        panic!(
            "{e} (nodes {why:?}; whereabouts log: {:?})",
            std::fs::read_to_string(env.dir().join("whereabouts.log")).ok()
        )
    });
    let distinct: BTreeSet<&String> = running.iter().map(|(_, ip)| ip).collect();
    assert_eq!(
        distinct.len(),
        REPLICAS,
        "an address given twice: {running:?}"
    );
    let nets: Vec<(Ipv4Addr, u32)> = ranges
        .iter()
        .map(|r| {
            let (a, p) = r.split_once('/').unwrap();
            (a.parse().unwrap(), p.parse().unwrap())
        })
        .collect();
    let contains = |(net, prefix): (Ipv4Addr, u32), ip: Ipv4Addr| {
        let mask = u32::MAX << (32 - prefix);
        u32::from(net) & mask == u32::from(ip) & mask
    };
    for (node, ip) in &running {
        let ip: Ipv4Addr = ip.parse().unwrap();
        let net = match &ipam {
            // host-local: the node's own range (peer-node-0 the first registered).
            Ipam::HostLocal(_) => nets[usize::from(node.ends_with('1'))],
            _ => nets[0],
        };
        assert!(contains(net, ip), "{ip} on {node} is not in {net:?}");
    }
    assert_eq!(
        addresses_held(&env).await.unwrap().len(),
        REPLICAS,
        "{} holds one address per Pod",
        ipam.name()
    );

    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(env.client.clone(), ns);
    deployments
        .delete("web", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_for(
        "every address given back after the Deployment is deleted",
        Duration::from_secs(90),
        || {
            let (env, pods) = (&env, pods.clone());
            async move {
                let left = pods.list(&ListParams::default()).await.ok()?.items.len();
                let held = addresses_held(env).await.ok()?;
                (left == 0 && held.is_empty()).then_some(())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e} ({})", ipam.name()));
    env.stop().await;
}

#[tokio::test]
async fn host_local_gives_each_node_its_range() {
    serves_a_deployment(Ipam::host_local(2), &["10.200.0.0/22", "10.200.4.0/22"]).await;
}

#[tokio::test]
async fn whereabouts_serves_one_range_from_its_crds() {
    serves_a_deployment(Ipam::whereabouts(), &["10.201.0.0/16"]).await;
}
