#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Switching a live Spiderpool in place (`aipamctl migrate`, docs/migrating.md) on the real
//! control plane. The cluster starts as Spiderpool leaves it: Pods running on a node with the
//! addresses Spiderpool gave them, each recorded in its pool's `status.allocatedIPs` and in a
//! SpiderEndpoint (with Spiderpool's finalizer), plus an entry of a Pod that is gone. Then:
//! a dry run writes nothing; an inconsistent state (an address listed for two running Pods) is
//! refused, writing nothing; the migration runs; aipam is installed; new Pods fill the pool
//! until it is exhausted and none gets an address a running Pod holds; an old Pod's CNI ADD (a
//! sandbox restart) returns its old address; deleting an old Pod frees its address for the next
//! new Pod.
//!
//! Needs the real control plane started here (aipam must not be installed yet), so it is
//! skipped with `E2E_KUBECONFIG` or the stand-in. The binaries must be built first
//! (`cargo build --workspace --bins`).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use aipam_core::reservation::{Reservation, ANNO_RESERVATION};
use aipam_crds::{SpiderEndpoint, SpiderIPClaim, SpiderIPPool};
use aipam_e2e::cni::{self, CniOutcome};
use aipam_e2e::env::use_stand_in;
use aipam_e2e::sim::wait_running;
use aipam_e2e::{bin_path, wait_for, Env, Options};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};

const NS: &str = "legacy";
const POOL: &str = "legacy-v4";
const NODE: &str = "legacy-node";
/// The pool's addresses: 10.40.0.10 to 10.40.0.17.
const SIZE: usize = 8;

fn skipped() -> bool {
    let skip = use_stand_in() || std::env::var("E2E_KUBECONFIG").is_ok();
    if skip {
        eprintln!("\n*** SKIPPED: needs the real control plane started here, without aipam ***\n");
    }
    skip
}

fn pod(name: &str, node: Option<&str>) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "registry.invalid/app:1"}]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS, "annotations": {
            "ipam.spidernet.io/ippool": format!("{{\"ipv4\": [\"{POOL}\"]}}")}},
        "spec": spec
    }))
    .unwrap()
}

/// The SpiderEndpoint Spiderpool's agent writes at CNI ADD: owned by the Pod, with its finalizer.
fn spiderpool_endpoint(p: &Pod, address: &str) -> Value {
    json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderEndpoint",
        "metadata": {"name": p.name_any(), "namespace": NS,
            "finalizers": ["spiderpool.spidernet.io"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": p.name_any(),
                "uid": p.uid().unwrap(), "controller": true, "blockOwnerDeletion": true}]},
        "status": {"current": {"uid": p.uid().unwrap(), "node": NODE, "ips": [
            {"interface": "eth0", "ipv4": format!("{address}/24"), "ipv4Pool": POOL,
             "ipv4Gateway": "10.40.0.1", "vlan": 0, "cleanGateway": false}]},
            "ownerControllerType": "Pod", "ownerControllerName": p.name_any()}
    })
}

async fn set_allocations(env: &Env, pool: &str, entries: &Value) {
    let pools: Api<SpiderIPPool> = Api::all(env.client.clone());
    let n = entries.as_object().map(|m| m.len()).unwrap_or(0);
    pools
        .patch_status(
            pool,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"allocatedIPs": entries.to_string(),
                "allocatedIPCount": n, "totalIPCount": SIZE}})),
        )
        .await
        .unwrap();
}

async fn claims(env: &Env) -> Vec<SpiderIPClaim> {
    Api::<SpiderIPClaim>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

fn aipamctl(env: &Env, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin_path("aipamctl").unwrap())
        .args(args)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The IPv4 address aipam reserved for a Pod (its record).
fn reserved(p: &Pod) -> String {
    let r = Reservation::parse(&p.annotations()[ANNO_RESERVATION]).unwrap();
    r.interfaces[0].ipv4[0].address.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_spiderpool_state_migrates_in_place() {
    if skipped() {
        return;
    }
    let opts = Options {
        defer_ours: true,
        reservation_grace_seconds: 5,
        gc_interval: Duration::from_secs(2),
        ..Options::default()
    };
    let mut env = Env::start(opts.clone()).await.unwrap();
    for d in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}),
        json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
            "metadata": {"name": POOL, "finalizers": ["spiderpool.spidernet.io"]},
            "spec": {"ipVersion": 4, "subnet": "10.40.0.0/24", "ips": ["10.40.0.10-10.40.0.17"],
                "gateway": "10.40.0.1"}}),
    ] {
        env.apply(&d).await.unwrap();
    }

    // What Spiderpool left: three running Pods, and the entry of a Pod deleted since.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let old_addresses = ["10.40.0.11", "10.40.0.14", "10.40.0.16"];
    let mut old = Vec::new();
    let mut entries = serde_json::Map::new();
    for (i, address) in old_addresses.iter().enumerate() {
        let p = pods
            .create(
                &PostParams::default(),
                &pod(&format!("old-{i}"), Some(NODE)),
            )
            .await
            .unwrap();
        env.apply(&spiderpool_endpoint(&p, address)).await.unwrap();
        entries.insert(
            address.to_string(),
            json!({"pod": format!("{NS}/{}", p.name_any()), "podUid": p.uid().unwrap()}),
        );
        old.push(p);
    }
    entries.insert(
        "10.40.0.12".to_string(),
        json!({"pod": format!("{NS}/gone-0"), "podUid": "0b7f0000-dead-4000-8000-000000000000"}),
    );
    set_allocations(&env, POOL, &Value::Object(entries.clone())).await;
    for p in &old {
        // The node's CNI ADD reads the SpiderEndpoint, as Spiderpool's Pods were started.
        let running = wait_running(&env, p, Duration::from_secs(60))
            .await
            .unwrap();
        let ifs = env.nodes().unwrap().interfaces(NS, &p.name_any()).unwrap();
        assert_eq!(ifs.len(), 1, "{running:?}");
    }

    // A dry run writes nothing.
    let (code, out, err) = aipamctl(&env, &["migrate", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing was written"), "{out}");
    assert!(
        out.contains("Pods whose addresses become aipam claims: 3"),
        "{out}"
    );
    assert!(
        out.contains("legacy-v4 10.40.0.12  legacy/gone-0: the Pod is gone"),
        "{out}"
    );
    assert!(claims(&env).await.is_empty());

    // Inconsistent: a second pool lists old-1's address for old-0. Refused, nothing written.
    env.apply(
        &json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
        "metadata": {"name": "legacy-dup"},
        "spec": {"ipVersion": 4, "subnet": "10.40.0.0/24", "ips": ["10.40.0.14"]}}),
    )
    .await
    .unwrap();
    set_allocations(
        &env,
        "legacy-dup",
        &json!({"10.40.0.14": {"pod": format!("{NS}/old-0"), "podUid": old[0].uid().unwrap()}}),
    )
    .await;
    let (code, out, err) = aipamctl(&env, &["migrate"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(err.contains("address 10.40.0.14 is listed twice"), "{err}");
    assert!(claims(&env).await.is_empty());
    let unchanged = pods.get("old-0").await.unwrap();
    assert!(!unchanged.annotations().contains_key(ANNO_RESERVATION));
    Api::<SpiderIPPool>::all(env.client.clone())
        .delete("legacy-dup", &DeleteParams::default())
        .await
        .unwrap();

    // The migration.
    let (code, out, err) = wait_for("the duplicate pool to go", Duration::from_secs(20), || {
        let env = &env;
        async move {
            let r = aipamctl(env, &["migrate"]);
            (r.0 != 1).then_some(r)
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Written: 3 claim(s) created, 3 Pod(s) recorded, 3 endpoint(s) released, 1 pool(s) cleared"), "{out}");
    let held: BTreeSet<String> = claims(&env)
        .await
        .iter()
        .map(|c| c.spec.address.clone())
        .collect();
    let want: BTreeSet<String> = old_addresses.iter().map(|s| s.to_string()).collect();
    assert_eq!(held, want);
    // Running it again writes nothing.
    let (code, out, _) = aipamctl(&env, &["migrate"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Written: 0 claim(s) created, 0 Pod(s) recorded"),
        "{out}"
    );

    // Install aipam, then fill the pool.
    env.start_ours(&opts).await.unwrap();
    let mut new_addresses = Vec::new();
    let mut refused = None;
    for i in 0..SIZE {
        let name = format!("new-{i}");
        let created = wait_for("the webhook to answer", Duration::from_secs(30), || {
            let pods = pods.clone();
            let p = pod(&name, None);
            async move {
                match pods.create(&PostParams::default(), &p).await {
                    Ok(p) => Some(Ok(p)),
                    // Refused by our webhook (not a connection error while it starts).
                    Err(kube::Error::Api(s)) if s.message.contains(POOL) => Some(Err(s)),
                    Err(_) => None,
                }
            }
        })
        .await
        .unwrap();
        match created {
            Ok(p) => new_addresses.push(reserved(&p)),
            Err(s) => {
                refused = Some(s);
                break;
            }
        }
    }
    assert_eq!(
        new_addresses.len(),
        SIZE - old_addresses.len(),
        "{new_addresses:?}"
    );
    for a in &new_addresses {
        assert!(
            !old_addresses.contains(&a.as_str()),
            "{a} was handed out again"
        );
    }
    assert!(
        new_addresses.contains(&"10.40.0.12".to_string()),
        "the gone Pod's address is free again"
    );
    let refused = refused.expect("the pool is exhausted");
    assert!(
        refused.message.contains("no free address") || refused.message.contains("in use"),
        "{}",
        refused.message
    );

    // A sandbox restart of an old Pod reads its old address back.
    let old0 = &old[0];
    match cni::run(&env, "ADD", NS, "old-0", &old0.uid().unwrap(), "eth0").unwrap() {
        CniOutcome::Ok(result) => {
            assert_eq!(
                result["ips"][0]["address"],
                json!("10.40.0.11/24"),
                "{result}"
            );
        }
        CniOutcome::Err(e) => panic!("CNI ADD for old-0 failed: {e}"),
    }

    // Deleting an old Pod frees its address for the next one.
    pods.delete("old-1", &DeleteParams::default())
        .await
        .unwrap();
    let next = wait_for(
        "old-1's address to be free",
        Duration::from_secs(90),
        || {
            let pods = pods.clone();
            async move {
                pods.create(&PostParams::default(), &pod("after-old-1", None))
                    .await
                    .ok()
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(reserved(&next), "10.40.0.14");
    let eps: Api<SpiderEndpoint> = Api::namespaced(env.client.clone(), NS);
    wait_for(
        "old-1's endpoint to be deleted",
        Duration::from_secs(60),
        || {
            let eps = eps.clone();
            async move { eps.get_opt("old-1").await.ok()?.is_none().then_some(()) }
        },
    )
    .await
    .unwrap();
    env.stop().await;
}
