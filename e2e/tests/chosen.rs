#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Chosen addresses end to end (docs/reference.md, `aipam.io/ip-address`): a StatefulSet gives
//! one address per ordinal and each Pod gets its own; a Pod asking for an address another Pod
//! holds is refused at `kubectl apply` time, naming the holder, and nothing is reserved for it;
//! an address outside the pool is refused with the pool's reason. On the real control plane
//! (kube-controller-manager makes the StatefulSet's Pods), or the cluster of `E2E_KUBECONFIG`.
//!
//! The binaries must be built first (`cargo build --workspace --bins`).

use std::time::Duration;

use aipam_core::reservation::{Reservation, ANNO_RESERVATION};
use aipam_crds::SpiderIPClaim;
use aipam_e2e::{wait_for, Env, Options};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

const NS: &str = "chosen";
const POOL: &str = "chosen-v4";

fn pod(name: &str, address: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS, "annotations": {
            "ipam.spidernet.io/ippool": format!("{{\"ipv4\": [\"{POOL}\"]}}"),
            "aipam.io/ip-address": address}},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/app:1"}]}
    }))
    .unwrap()
}

fn reserved(p: &Pod) -> Option<String> {
    let r = Reservation::parse(p.annotations().get(ANNO_RESERVATION)?).ok()?;
    Some(r.interfaces.first()?.ipv4.first()?.address.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chosen_addresses_are_given_per_ordinal_and_never_twice() {
    let env = Env::start(Options::default()).await.unwrap();
    for d in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "chosen-node"}}),
        json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
            "metadata": {"name": POOL},
            "spec": {"subnet": "10.41.0.0/24", "ips": ["10.41.0.10-10.41.0.29"],
                "excludeIPs": ["10.41.0.25"], "gateway": "10.41.0.1"}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": NS},
            "spec": {"replicas": 2, "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}, "annotations": {
                    "ipam.spidernet.io/ippool": format!("{{\"ipv4\": [\"{POOL}\"]}}"),
                    "aipam.io/ip-address-by-ordinal": "[\"10.41.0.21\", \"10.41.0.20\"]"}},
                    "spec": {"containers": [{"name": "c", "image": "registry.invalid/db:1"}]}}}}),
    ] {
        env.apply(&d).await.unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    // Each ordinal gets its entry (db-0 the first, db-1 the second), whatever the pool's order.
    for (name, want) in [("db-0", "10.41.0.21"), ("db-1", "10.41.0.20")] {
        let got = wait_for(
            &format!("{name} to be admitted"),
            Duration::from_secs(90),
            || {
                let pods = pods.clone();
                async move { reserved(&pods.get_opt(name).await.ok()??) }
            },
        )
        .await
        .unwrap();
        assert_eq!(got, want, "{name}");
    }

    // Asking for db-0's address: refused, naming db-0, with nothing reserved.
    let before = Api::<SpiderIPClaim>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    let refusal = wait_for("the refusal", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            match pods
                .create(&PostParams::default(), &pod("thief", "10.41.0.21"))
                .await
            {
                Err(kube::Error::Api(s)) if s.message.contains("chosen address") => Some(s),
                _ => None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(refusal.code, 403);
    assert!(
        refusal
            .message
            .contains("the chosen address 10.41.0.21 is held by Pod chosen/db-0"),
        "{}",
        refusal.message
    );
    let after = Api::<SpiderIPClaim>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(before, after, "a refused Pod reserved something");

    // An excluded address: refused with the pool's reason.
    let e = pods
        .create(&PostParams::default(), &pod("excluded", "10.41.0.25"))
        .await
        .unwrap_err();
    let kube::Error::Api(s) = e else {
        panic!("expected a refusal, got {e}")
    };
    assert!(
        s.message.contains("pool chosen-v4: in its spec.excludeIPs"),
        "{}",
        s.message
    );

    // A free address is given as asked.
    let p = pods
        .create(&PostParams::default(), &pod("free", "10.41.0.28"))
        .await
        .unwrap();
    assert_eq!(reserved(&p).as_deref(), Some("10.41.0.28"));
    env.stop().await;
}
