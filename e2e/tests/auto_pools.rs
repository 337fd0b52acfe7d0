#![allow(clippy::unwrap_used, clippy::expect_used)]
//! SpiderSubnet auto pools across a switch from Spiderpool (docs/migrating.md), on the real
//! control plane. The cluster starts as Spiderpool leaves it: a SpiderSubnet, a Deployment
//! annotated with it, and the Deployment's auto pool exactly as Spiderpool made it — its name
//! (`auto4-{name}-{interface}-{uid}`), its owner labels, the SpiderSubnet as controller, the
//! `ippool-ip-number` annotation, the application podAffinity. Then aipam is installed and the
//! Deployment scaled up: the Pods take their addresses from that pool, the operator grows that
//! pool, and no second auto pool appears. And a third-party controller's Pods (an OpenKruise
//! CloneSet's, with a fixed pool size): refused with the pool to make by hand under the default
//! RBAC; once the webhook is granted `create` on SpiderIPPools (docs/reference.md), the first
//! Pod's admission makes the pool, the next Pods use it, and none is made twice.
//!
//! Needs the real control plane started here (aipam must not be installed yet), so it is
//! skipped with `E2E_KUBECONFIG` or the stand-in. The binaries must be built first
//! (`cargo build --workspace --bins`).

use std::collections::BTreeSet;
use std::time::Duration;

use aipam_core::ranges::IpSet;
use aipam_core::reservation::{Reservation, ANNO_RESERVATION};
use aipam_crds::{SpiderIPPool, SpiderSubnet};
use aipam_e2e::env::{use_stand_in, yaml_docs, SYSTEM_NAMESPACE};
use aipam_e2e::{wait_for, Env, Options};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

const NS: &str = "auto-mig";
const SUBNET: &str = "auto-mig-v4";

fn skipped() -> bool {
    let skip = use_stand_in() || std::env::var("E2E_KUBECONFIG").is_ok();
    if skip {
        eprintln!("\n*** SKIPPED: needs the real control plane started here, without aipam ***\n");
    }
    skip
}

/// The IPv4 addresses aipam reserved for a Pod (its record).
fn reserved(p: &Pod) -> Option<String> {
    let r = Reservation::parse(p.annotations().get(ANNO_RESERVATION)?).ok()?;
    Some(r.interfaces.first()?.ipv4.first()?.address.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_pool_spiderpool_made_is_adopted_after_the_switch() {
    if skipped() {
        return;
    }
    let opts = Options {
        defer_ours: true,
        ..Options::default()
    };
    let mut env = Env::start(opts.clone()).await.unwrap();
    for d in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "auto-mig-node"}}),
        json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderSubnet",
            "metadata": {"name": SUBNET, "labels": {"ipam.spidernet.io/subnet-cidr": "10-41-0-0-24"}},
            "spec": {"ipVersion": 4, "subnet": "10.41.0.0/24", "ips": ["10.41.0.10-10.41.0.40"],
                "gateway": "10.41.0.1"}}),
    ] {
        env.apply(&d).await.unwrap();
    }
    let subnet = Api::<SpiderSubnet>::all(env.client.clone())
        .get(SUBNET)
        .await
        .unwrap();
    // The Deployment, scaled to 0 while the IPAMs change hands.
    let deps: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"},
                "annotations": {"ipam.spidernet.io/subnet": format!("{{\"ipv4\":[\"{SUBNET}\"]}}")}},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/app:1"}]}}}
    }))
    .unwrap();
    let d = deps.create(&PostParams::default(), &d).await.unwrap();
    let uid = d.uid().unwrap();
    let suffix: String = uid.rsplit('-').next().unwrap().chars().take(5).collect();
    let name = format!("auto4-web-eth0-{suffix}");
    // Its auto pool as Spiderpool's controller made it (replicas 0 + 1).
    env.apply(&json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
        "metadata": {
            "name": name,
            "finalizers": ["spiderpool.spidernet.io"],
            "labels": {
                "ipam.spidernet.io/owner-spider-subnet": SUBNET,
                "ipam.spidernet.io/owner-application-gv": "apps_v1",
                "ipam.spidernet.io/owner-application-kind": "Deployment",
                "ipam.spidernet.io/owner-application-namespace": NS,
                "ipam.spidernet.io/owner-application-name": "web",
                "ipam.spidernet.io/owner-application-uid": uid,
                "ipam.spidernet.io/interface": "eth0",
                "ipam.spidernet.io/ippool-reclaim": "true",
                "ipam.spidernet.io/ip-version": "IPv4",
                "ipam.spidernet.io/ippool-cidr": "10-41-0-0-24",
            },
            "annotations": {"ipam.spidernet.io/ippool-ip-number": "+1"},
            "ownerReferences": [{"apiVersion": "spiderpool.spidernet.io/v2beta1",
                "kind": "SpiderSubnet", "name": SUBNET, "uid": subnet.uid().unwrap(),
                "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {"ipVersion": 4, "subnet": "10.41.0.0/24", "ips": ["10.41.0.30"],
            "gateway": "10.41.0.1",
            "podAffinity": {"matchLabels": {
                "ipam.spidernet.io/app-api-group": "apps",
                "ipam.spidernet.io/app-api-version": "v1",
                "ipam.spidernet.io/app-kind": "Deployment",
                "ipam.spidernet.io/app-namespace": NS,
                "ipam.spidernet.io/app-name": "web"}}},
    }))
    .await
    .unwrap();

    // aipam comes with the SpiderSubnet feature on, as Spiderpool ran.
    env.apply(&json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "spiderpool-conf", "namespace": SYSTEM_NAMESPACE},
        "data": {"enableSpiderSubnet": "true"}}))
        .await
        .unwrap();
    env.start_ours(&opts).await.unwrap();
    deps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();

    let pools: Api<SpiderIPPool> = Api::all(env.client.clone());
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let got = wait_for(
        "both Pods admitted from the adopted pool, grown to 3",
        Duration::from_secs(120),
        || {
            let (pools, pods, name) = (pools.clone(), pods.clone(), name.clone());
            async move {
                let p = pools.get(&name).await.ok()?;
                let ips = IpSet::parse_list(&p.spec.ips.clone().unwrap_or_default()).ok()?;
                let list = pods
                    .list(&ListParams::default().labels("app=web"))
                    .await
                    .ok()?;
                let addrs: Vec<String> = list.items.iter().filter_map(reserved).collect();
                (ips.len() == 3 && addrs.len() == 2).then_some((ips, addrs))
            }
        },
    )
    .await
    .unwrap();
    let (ips, addrs) = got;
    for a in &addrs {
        assert!(
            ips.contains(&a.parse().unwrap()),
            "{a} is not of the adopted pool {name} ({ips})"
        );
    }
    assert!(ips.contains(&"10.41.0.30".parse().unwrap()), "{ips}");
    // One auto pool: Spiderpool's, found by its labels; nothing made beside it.
    let all = pools.list(&ListParams::default()).await.unwrap();
    let autos: BTreeSet<String> = all
        .items
        .iter()
        .filter(|p| {
            p.labels()
                .get("ipam.spidernet.io/owner-application-name")
                .is_some()
                || p.name_any().starts_with("auto")
        })
        .map(|p| p.name_any())
        .collect();
    assert_eq!(autos, BTreeSet::from([name.clone()]));
    env.stop().await;
}

/// A Pod of an OpenKruise CloneSet (no such controller runs here: the Pod is created as it
/// would create it, with its controller ownerReference).
fn clone_set_pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("kruise-{i}"), "namespace": NS,
            "annotations": {
                "ipam.spidernet.io/subnet": format!("{{\"ipv4\":[\"{SUBNET}\"]}}"),
                "ipam.spidernet.io/ippool-ip-number": "2"},
            "ownerReferences": [{"apiVersion": "apps.kruise.io/v1alpha1", "kind": "CloneSet",
                "name": "kruise", "uid": "5c3a0000-b1e2-4000-8000-028d6f4e7a10",
                "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/app:1"}]}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_controllers_pod_gets_its_auto_pool_once_the_webhook_may_make_it() {
    if skipped() {
        return;
    }
    let env = Env::start(Options::default()).await.unwrap();
    for d in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "spiderpool-conf", "namespace": SYSTEM_NAMESPACE},
            "data": {"enableSpiderSubnet": "true"}}),
        json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderSubnet",
            "metadata": {"name": SUBNET},
            "spec": {"ipVersion": 4, "subnet": "10.41.0.0/24", "ips": ["10.41.0.10-10.41.0.40"],
                "gateway": "10.41.0.1"}}),
    ] {
        env.apply(&d).await.unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    // The default RBAC: refused, with the pool to create by hand.
    let refusal = wait_for(
        "the webhook to refuse for want of RBAC",
        Duration::from_secs(30),
        || {
            let pods = pods.clone();
            async move {
                match pods.create(&PostParams::default(), &clone_set_pod(0)).await {
                    Err(kube::Error::Api(s))
                        if s.message.contains("may not create SpiderIPPools") =>
                    {
                        Some(s.message)
                    }
                    _ => None,
                }
            }
        },
    )
    .await
    .unwrap();
    assert!(
        refusal.contains("auto4-kruise-eth0-028d6")
            && refusal.contains("ipam.spidernet.io/owner-application-kind=CloneSet"),
        "{refusal}"
    );
    // The grant of docs/reference.md.
    for d in yaml_docs(
        "grant",
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: aipam-webhook-third-party-auto-pools}
rules:
  - apiGroups: ["spiderpool.spidernet.io"]
    resources: ["spiderippools"]
    verbs: ["create"]
  - apiGroups: ["spiderpool.spidernet.io"]
    resources: ["spidersubnets/finalizers"]
    verbs: ["update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: aipam-webhook-third-party-auto-pools}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: aipam-webhook-third-party-auto-pools}
subjects: [{kind: ServiceAccount, name: aipam-webhook, namespace: aipam-system}]
"#,
    )
    .unwrap()
    {
        env.apply(&d).await.unwrap();
    }
    let first = wait_for("the first Pod admitted", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &clone_set_pod(0))
                .await
                .ok()
        }
    })
    .await
    .unwrap();
    let second = pods
        .create(&PostParams::default(), &clone_set_pod(1))
        .await
        .unwrap();
    let name = "auto4-kruise-eth0-028d6";
    let pool = Api::<SpiderIPPool>::all(env.client.clone())
        .get(name)
        .await
        .unwrap();
    let labels = pool.labels();
    assert_eq!(
        labels["ipam.spidernet.io/owner-application-gv"],
        "apps.kruise.io_v1alpha1"
    );
    assert_eq!(labels["ipam.spidernet.io/ippool-cidr"], "10-41-0-0-24");
    assert_eq!(
        pool.spec.ips.clone().unwrap(),
        vec!["10.41.0.10-10.41.0.11"]
    );
    let ips = IpSet::parse_list(&pool.spec.ips.unwrap()).unwrap();
    let got: BTreeSet<String> = [&first, &second]
        .iter()
        .filter_map(|p| reserved(p))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    for a in &got {
        assert!(ips.contains(&a.parse().unwrap()), "{a}");
    }
    // A third Pod finds the fixed-size pool full: refused, no second pool made.
    let err = pods
        .create(&PostParams::default(), &clone_set_pod(2))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(name), "{err}");
    let all = Api::<SpiderIPPool>::all(env.client.clone())
        .list(&ListParams::default().labels("ipam.spidernet.io/owner-application-kind=CloneSet"))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);
    env.stop().await;
}
