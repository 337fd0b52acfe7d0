#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What the real API server does after our mutating webhook has reserved addresses, and what
//! is left of those reservations:
//! - a Pod created under a name a live Pod has: our webhooks run before the store's create
//!   fails with AlreadyExists; the live Pod keeps its endpoint and addresses, and the claims
//!   reserved for the refused create are collected after the grace period;
//! - a Pod refused after our mutation by a built-in admission plugin (ResourceQuota or
//!   PodSecurity, which run after the webhooks) or by another validating admission (a
//!   ValidatingAdmissionPolicy) and retried by its ReplicaSet: the claims its attempts leave are
//!   collected after the grace period, so that they stay bounded by the attempts of one grace
//!   period, and nothing is left once the Deployment is gone. The figures are printed.
//!
//! Real control plane only (the stand-in runs no admission plugins and no controllers).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aipam_core::reservation::{Reservation, ANNO_RESERVATION};
use aipam_crds::{SpiderEndpoint, SpiderIPClaim};
use aipam_e2e::env::use_stand_in;
use aipam_e2e::{wait_for, Env, Options};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

const GRACE_SECONDS: u64 = 5;

async fn world(env: &Env, ns: &str, pool: &str, subnet: u8) {
    for d in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("{ns}-node")}}),
        json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
            "metadata": {"name": pool},
            "spec": {"subnet": format!("10.{subnet}.0.0/24"),
                "ips": [format!("10.{subnet}.0.10-10.{subnet}.0.200")],
                "gateway": format!("10.{subnet}.0.1")}}),
    ] {
        env.apply(&d).await.unwrap();
    }
}

fn pod(ns: &str, name: &str, pool: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "annotations": {
            "ipam.spidernet.io/ippool": format!("{{\"ipv4\": [\"{pool}\"]}}")}},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/app:1"}]}
    }))
    .unwrap()
}

async fn claims_of(env: &Env, pool: &str) -> Vec<SpiderIPClaim> {
    Api::<SpiderIPClaim>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|c| c.spec.pool == pool)
        .collect()
}

/// The reservation ids the live Pods of `ns` carry.
async fn live_ids(env: &Env, ns: &str) -> BTreeSet<String> {
    Api::<Pod>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|p| p.annotations().get(ANNO_RESERVATION).cloned())
        .filter_map(|r| Reservation::parse(&r).ok().map(|r| r.id))
        .collect()
}

fn skipped() -> bool {
    let skip = use_stand_in() || std::env::var("E2E_KUBECONFIG").is_ok();
    if skip {
        eprintln!("\n*** SKIPPED: real control plane started here only ***\n");
    }
    skip
}

fn options() -> Options {
    Options {
        reservation_grace_seconds: GRACE_SECONDS,
        gc_interval: Duration::from_secs(2),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_created_under_a_taken_name_leaves_the_live_pod_alone() {
    if skipped() {
        return;
    }
    let env = Env::start(options()).await.unwrap();
    world(&env, "twins", "twins", 71).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "twins");
    let live = wait_for("twin admitted", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &pod("twins", "twin", "twins"))
                .await
                .ok()
        }
    })
    .await
    .unwrap();
    let eps: Api<SpiderEndpoint> = Api::namespaced(env.client.clone(), "twins");
    let uid = live.uid().unwrap();
    let before = wait_for("twin's endpoint", Duration::from_secs(30), || {
        let (eps, uid) = (eps.clone(), uid.clone());
        async move {
            // Once scheduled: the endpoint has its node, and nothing of ours writes it again.
            let ep = eps.get_opt("twin").await.ok()??;
            let cur = &ep.status.as_ref()?.current;
            (cur.uid == uid && !cur.node.is_empty()).then_some(ep)
        }
    })
    .await
    .unwrap();

    // The same name again, as a user's second `kubectl create` does.
    match pods
        .create(&PostParams::default(), &pod("twins", "twin", "twins"))
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let after = eps.get("twin").await.unwrap();
    assert_eq!(
        after.status.as_ref().unwrap().current,
        before.status.as_ref().unwrap().current,
        "the live Pod's endpoint was rewritten by a create that failed"
    );
    // Our mutation reserved for the refused create; those claims go after the grace period.
    let own = Reservation::parse(&live.annotations()[ANNO_RESERVATION])
        .unwrap()
        .id;
    wait_for(
        "the refused create's claims to be collected",
        Duration::from_secs(GRACE_SECONDS + 30),
        || {
            let (env, own) = (&env, own.clone());
            async move {
                let c = claims_of(env, "twins").await;
                (c.len() == 1 && c[0].spec.reservation == own).then_some(())
            }
        },
    )
    .await
    .unwrap();
    env.stop().await;
}

/// The attempts the ReplicaSets of `deploy` made and the quota refused (the FailedCreate
/// events' counts).
async fn refused_attempts(env: &Env, ns: &str, deploy: &str) -> i32 {
    Api::<Event>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default().fields("reason=FailedCreate"))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| {
            e.involved_object
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&format!("{deploy}-")))
        })
        .map(|e| e.count.unwrap_or(1))
        .sum()
}

/// What refuses the Pods after our mutation.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// A ResourceQuota of one Pod: the ReplicaSet's second and third Pods are refused.
    Quota,
    /// PodSecurity `baseline` enforced on the namespace and a privileged container: every Pod
    /// is refused.
    PodSecurity,
    /// Another validating admission (a ValidatingAdmissionPolicy, the built-in form of what
    /// policy webhooks such as Kyverno or Gatekeeper do) refusing the Deployment's Pods.
    Policy,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_refused_by_resource_quota_after_our_mutation_leave_bounded_claims() {
    refused_after_mutation(Refusal::Quota, "quota", 72).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_refused_by_pod_security_after_our_mutation_leave_bounded_claims() {
    refused_after_mutation(Refusal::PodSecurity, "podsec", 73).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_refused_by_another_validating_policy_after_our_mutation_leave_bounded_claims() {
    refused_after_mutation(Refusal::Policy, "policy", 74).await;
}

/// A Deployment of three whose Pods `refusal` refuses after our webhooks reserved for them,
/// retried by its ReplicaSet for `RETRY_SECONDS` (default 40; 600, ten minutes, the long form): each
/// claim without a Pod must go within the grace period and one collection pass, and nothing is
/// left once the Deployment is deleted. Prints the figures.
async fn refused_after_mutation(refusal: Refusal, ns: &str, subnet: u8) {
    if skipped() {
        return;
    }
    let seconds: u64 = std::env::var("RETRY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let env = Env::start(options()).await.unwrap();
    world(&env, ns, ns, subnet).await;
    let mut container = json!({"name": "c", "image": "registry.invalid/app:1",
        "resources": {"requests": {"cpu": "10m"}}});
    match refusal {
        Refusal::Quota => {
            env.apply(&json!({"apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": {"name": "one-pod", "namespace": ns}, "spec": {"hard": {"pods": "1"}}}))
                .await
                .unwrap();
        }
        Refusal::PodSecurity => {
            env.apply(
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns,
                "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}),
            )
            .await
            .unwrap();
            container["securityContext"] = json!({"privileged": true});
        }
        Refusal::Policy => {
            let name = format!("no-web-in-{ns}");
            env.apply(&json!({"apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy", "metadata": {"name": name},
                "spec": {"failurePolicy": "Fail",
                    "matchConstraints": {"resourceRules": [{"apiGroups": [""],
                        "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]},
                    "validations": [{"expression":
                        "!has(object.metadata.labels) || !('app' in object.metadata.labels) || object.metadata.labels['app'] != 'web'",
                        "message": "Pods labelled app=web are not allowed here (the policy under test)"}]}}))
                .await
                .unwrap();
            env.apply(&json!({"apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
                "spec": {"policyName": name, "validationActions": ["Deny"],
                    "matchResources": {"namespaceSelector":
                        {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}}))
                .await
                .unwrap();
            // The policy is in force once a Pod like the Deployment's is refused by it (by it:
            // our webhook refuses a Pod without a pool too, which proves nothing).
            let probe = {
                let mut p = pod(ns, "probe", ns);
                p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
                p
            };
            let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
            let dry = PostParams {
                dry_run: true,
                ..Default::default()
            };
            wait_for("the policy in force", Duration::from_secs(30), || {
                let (pods, probe, dry) = (pods.clone(), probe.clone(), dry.clone());
                async move {
                    match pods.create(&dry, &probe).await {
                        Err(kube::Error::Api(s)) if s.message.contains("the policy under test") => {
                            Some(())
                        }
                        _ => None,
                    }
                }
            })
            .await
            .unwrap();
        }
    }
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"},
                "annotations": {"ipam.spidernet.io/ippool": format!("{{\"ipv4\": [\"{ns}\"]}}")}},
                "spec": {"containers": [container]}}}});
    env.apply(&deploy).await.unwrap();

    // The ReplicaSet retries the Pods that are refused; sample what is reserved, and how long
    // each claim without a live Pod lives.
    let start = Instant::now();
    let mut seen: std::collections::BTreeMap<String, (Instant, Instant)> = Default::default();
    let (mut max_orphans, mut samples) = (0usize, 0usize);
    while start.elapsed() < Duration::from_secs(seconds) {
        let live = live_ids(&env, ns).await;
        let now = Instant::now();
        let orphans: Vec<String> = claims_of(&env, ns)
            .await
            .iter()
            .filter(|c| !live.contains(&c.spec.reservation))
            .map(|c| format!("{}/{}", c.name_any(), c.uid().unwrap_or_default()))
            .collect();
        for o in &orphans {
            seen.entry(o.clone()).or_insert((now, now)).1 = now;
        }
        max_orphans = max_orphans.max(orphans.len());
        samples += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let attempts = refused_attempts(&env, ns, "web").await;
    let longest = seen
        .values()
        .map(|(a, b)| b.duration_since(*a))
        .max()
        .unwrap_or_default();
    let endpoints = Api::<SpiderEndpoint>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    println!(
        "{refusal:?}: {seconds} s of ReplicaSet retries: {attempts} creates refused after our mutation; \
         {} claims without a Pod seen, at most {max_orphans} at once, the longest-lived {:.1} s \
         ({samples} samples, grace {GRACE_SECONDS} s, collection every 2 s); {endpoints} SpiderEndpoints in the namespace at the end",
        seen.len(),
        longest.as_secs_f64()
    );
    assert!(
        attempts >= 2,
        "{refusal:?} refused the ReplicaSet's creates"
    );
    assert!(!seen.is_empty(), "each refused create reserved an address");
    // The bound: a refused create's claim lives the grace period and one collection pass, so
    // the claims held at once are the attempts of that window, however long the retries go.
    assert!(
        longest <= Duration::from_secs(GRACE_SECONDS + 2 + 5),
        "a claim without a Pod lived {longest:?}"
    );
    let api = env.api_for(&deploy).await.unwrap();
    api.delete("web", &Default::default()).await.unwrap();
    wait_for(
        "every claim and endpoint of the namespace to go",
        Duration::from_secs(GRACE_SECONDS + 60),
        || {
            let env = &env;
            async move {
                let c = claims_of(env, ns).await;
                let e = Api::<SpiderEndpoint>::namespaced(env.client.clone(), ns)
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items;
                (c.is_empty() && e.is_empty()).then_some(())
            }
        },
    )
    .await
    .unwrap();
    env.stop().await;
}
