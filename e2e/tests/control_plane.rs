#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What only a real kube-apiserver can say: the installation is accepted by its validation
//! (client-side and server-side apply), the CRDs are served and explained, and each of our
//! components is held to its own role by the real RBAC authorizer.
//!
//! These tests start the real control plane (`hack/kube-build.sh` builds it on first use); with
//! `E2E_KUBECONFIG` or `E2E_API=stand-in` they have nothing to check and say so.

use std::process::Command;

use aipam_e2e::controlplane::ControlPlane;
use aipam_e2e::env::{use_stand_in, CNI_USER, OPERATOR_USER, WEBHOOK_USER};
use aipam_e2e::{repo, wait_for, Env, Options};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams};

fn skipped() -> bool {
    let skip = std::env::var("E2E_KUBECONFIG").is_ok() || use_stand_in();
    if skip {
        eprintln!("\n*** SKIPPED: not on the real control plane started here ***\n");
    }
    skip
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
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
async fn config_default_is_accepted_by_the_real_validation_client_and_server_side() {
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path()).await.unwrap();
    let kc = cp.admin_kubeconfig();

    let (ok, out) = kubectl(&kc, &["apply", "-k", "config/default"]);
    assert!(ok, "kubectl apply -k config/default:\n{out}");
    let (ok, out) = kubectl(
        &kc,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ],
    );
    assert!(ok, "CRDs not Established:\n{out}");
    // Server-side apply over the client-side one: every object accepted again, by the field
    // manager rules of the real server.
    let (ok, out) = kubectl(
        &kc,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            "config/default",
        ],
    );
    assert!(ok, "kubectl apply --server-side -k config/default:\n{out}");
    assert!(out.contains("serverside-applied"), "{out}");

    let (ok, out) = kubectl(&kc, &["explain", "spiderippool.spec"]);
    assert!(ok, "kubectl explain spiderippool.spec:\n{out}");
    for field in ["subnet", "ips", "gateway", "excludeIPs"] {
        assert!(out.contains(field), "explain lacks {field}:\n{out}");
    }
    let (ok, out) = kubectl(
        &kc,
        &[
            "get",
            "spiderippools,spidersubnets,spiderendpoints,spideripclaims,spiderreservedips",
            "-A",
        ],
    );
    assert!(ok, "the custom resources are not served:\n{out}");
    cp.stop();
}

/// A call that the API server answers 403 for.
async fn forbidden<T>(what: &str, res: kube::Result<T>) {
    match res {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        Err(e) => panic!("{what}: expected 403 Forbidden, got {e}"),
        Ok(_) => panic!("{what}: expected 403 Forbidden, it was allowed"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_component_runs_as_its_own_service_account_and_is_held_to_its_role() {
    if skipped() {
        return;
    }
    let env = Env::start(Options::default()).await.unwrap();
    // The processes run: they are ready with their own tokens (Env::start waited for
    // /readyz, which needs their informers synced, i.e. list and watch allowed).
    for user in [WEBHOOK_USER, OPERATOR_USER, CNI_USER] {
        let c = env.client_as(user).await.unwrap();
        forbidden(
            &format!("{user} listing Secrets"),
            Api::<Secret>::all(c.clone())
                .list(&ListParams::default())
                .await,
        )
        .await;
        forbidden(
            &format!("{user} deleting a Namespace"),
            Api::<Namespace>::all(c.clone())
                .delete("default", &Default::default())
                .await,
        )
        .await;
    }
    // The CNI binary may read endpoints and nothing else of ours.
    let cni = env.client_as(CNI_USER).await.unwrap();
    Api::<aipam_crds::SpiderEndpoint>::namespaced(cni.clone(), "default")
        .list(&ListParams::default())
        .await
        .map(|_| ())
        .or_else(|e| match e {
            // get is granted, list may not be: a 403 for list is the role working too.
            kube::Error::Api(a) if a.code == 403 => Ok(()),
            e => Err(e),
        })
        .unwrap();
    forbidden(
        "the CNI binary listing SpiderIPClaims",
        Api::<aipam_crds::SpiderIPClaim>::all(cni)
            .list(&ListParams::default())
            .await,
    )
    .await;
    // The webhook never deletes pools.
    let wh = env.client_as(WEBHOOK_USER).await.unwrap();
    forbidden(
        "the webhook deleting a SpiderIPPool",
        Api::<aipam_crds::SpiderIPPool>::all(wh)
            .delete("any", &Default::default())
            .await,
    )
    .await;
    // The admin's own calls go through (the 403s above are the roles, not a broken client).
    wait_for(
        "the admin to list Secrets",
        std::time::Duration::from_secs(5),
        || {
            let c = env.client.clone();
            async move {
                Api::<Secret>::all(c)
                    .list(&ListParams::default())
                    .await
                    .ok()
                    .map(|_| ())
            }
        },
    )
    .await
    .unwrap();
    env.stop().await;
}
