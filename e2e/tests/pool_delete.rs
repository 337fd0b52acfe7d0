#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Deleting a SpiderIPPool whose addresses are in use, with the real `kubectl` against the
//! control plane: refused with `enableValidatingResourcesDeletedWebhook: true` in
//! spiderpool-conf; by default (Spiderpool's) allowed with the warning kubectl prints, the pool
//! staying Terminating, serving no new Pod, until its Pods are gone, then removed.
//!
//! The binaries must be built first (`cargo build --workspace --bins`; hack/test.sh does it).

use std::process::Command;
use std::time::Duration;

use aipam_crds::SpiderIPPool;
use aipam_e2e::env::yaml_docs;
use aipam_e2e::sim::{run_workload, schedule, wait_running};
use aipam_e2e::{repo, wait_for, Env, Options};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams};
use serde_json::Value;

const WORLD: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: worker-node-1
  labels: {kubernetes.io/hostname: worker-node-1}
---
apiVersion: v1
kind: Namespace
metadata: {name: del}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: del-v4}
spec:
  subnet: 10.77.0.0/24
  ips: [10.77.0.10-10.77.0.20]
"#;

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: del}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations:
        ipam.spidernet.io/ippool: '{"ipv4": ["del-v4"]}'
    spec:
      containers: [{name: c, image: x}]
"#;

fn conf(refuse: bool) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "spiderpool-conf", "namespace": "aipam-system"},
        "data": {"conf.yml": format!("enableValidatingResourcesDeletedWebhook: {refuse}\n")}
    })
}

fn kubectl(env: &Env, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_in_use_is_deleted_as_spiderpool_deletes_it() {
    let env = Env::start(Options::default()).await.unwrap();
    for d in yaml_docs("world", WORLD).unwrap() {
        env.apply(&d).await.unwrap();
    }
    env.wait_pool_visible("del", "del-v4").await.unwrap();
    let web = yaml_docs("web", WEB).unwrap().remove(0);
    let pods: Vec<_> = run_workload(&env, &web)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|o| o.result.ok())
        .collect();
    assert_eq!(pods.len(), 1, "the Pod is admitted");
    schedule(&env, &pods[0], 0).await.unwrap().expect("a node");
    wait_running(&env, &pods[0], Duration::from_secs(60))
        .await
        .unwrap();

    // With the key: refused, naming the addresses in use.
    env.apply(&conf(true)).await.unwrap();
    let refused = wait_for(
        "the webhook to read spiderpool-conf",
        Duration::from_secs(20),
        || async {
            let (ok, out) = kubectl(
                &env,
                &["delete", "spiderippool", "del-v4", "--dry-run=server"],
            );
            (!ok).then_some(out)
        },
    )
    .await
    .unwrap();
    assert!(
        refused.contains("the pool still has 1 address(es) in use"),
        "{refused}"
    );
    let (ok, out) = kubectl(&env, &["delete", "spiderippool", "del-v4", "--wait=false"]);
    assert!(
        !ok && out.contains("still has 1 address(es) in use"),
        "{out}"
    );

    // Spiderpool's default: allowed, with the warning; the finalizer holds the pool.
    env.apply(&conf(false)).await.unwrap();
    let allowed = wait_for(
        "the webhook to read spiderpool-conf again",
        Duration::from_secs(20),
        || async {
            let (ok, out) = kubectl(
                &env,
                &["delete", "spiderippool", "del-v4", "--dry-run=server"],
            );
            ok.then_some(out)
        },
    )
    .await
    .unwrap();
    assert!(
        allowed.contains("Warning: SpiderIPPool del-v4 still has 1 address(es) in use"),
        "{allowed}"
    );
    let (ok, out) = kubectl(&env, &["delete", "spiderippool", "del-v4", "--wait=false"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Warning: SpiderIPPool del-v4 still has 1 address(es) in use (10.77.0.")
            && out.contains("it stays Terminating"),
        "{out}"
    );
    let pools: Api<SpiderIPPool> = Api::all(env.client.clone());
    let held = pools.get("del-v4").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(
        held.metadata.finalizers.unwrap_or_default(),
        vec!["spiderpool.spidernet.io".to_string()]
    );

    // Its Pods go: the last address is released and the pool with it.
    Api::<Deployment>::namespaced(env.client.clone(), "del")
        .delete("web", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_for("the pool to go", Duration::from_secs(90), || {
        let pools = pools.clone();
        async move { pools.get_opt("del-v4").await.ok()?.is_none().then_some(()) }
    })
    .await
    .unwrap();
    env.stop().await;
}
