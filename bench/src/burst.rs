//! Item 3: a burst of Deployments (100 x 10 replicas in the issue), their Pods made by the
//! simulated controllers (`aipam_e2e::sim`), all at once: time until every Pod is admitted with
//! its reservation. The operator runs, as in a cluster.

use std::collections::BTreeSet;
use std::time::Instant;

use aipam_crds::SpiderIPClaim;
use aipam_e2e::sim::run_workload;
use aipam_e2e::{Env, Options};
use anyhow::{anyhow, Result};
use kube::api::{Api, ListParams};
use serde_json::{json, Value};

use crate::common::{self, json_line, r3, table, Stats};

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub deployments: usize,
    pub replicas: usize,
}

pub async fn run(sizes: Sizes) -> Result<Value> {
    let env = Env::start(Options::default()).await?;
    let ns = "bench-burst";
    common::apply_all(
        &env,
        &[
            common::namespace(ns, json!({})),
            common::ippool(
                "burst-v4",
                "10.50.0.0/16",
                "10.50.0.10-10.50.255.250",
                Some("10.50.0.1"),
            ),
            common::spiderpool_conf(&["burst-v4"], &[]),
        ],
    )
    .await?;
    common::wait_admits(&env.client, ns, &common::pod(ns, "probe", json!({})), 1).await?;
    let claims: Api<SpiderIPClaim> = Api::all(env.client.clone());
    let claims_before = claims.list(&ListParams::default()).await?.items.len();

    let deployment = |i: usize| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("burst-{i}"), "namespace": ns},
            "spec": {"replicas": sizes.replicas,
                     "selector": {"matchLabels": {"app": format!("burst-{i}")}},
                     "template": {"metadata": {"labels": {"app": format!("burst-{i}")}},
                                  "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}
        })
    };
    let start = Instant::now();
    let runs = (0..sizes.deployments).map(|i| {
        let (env, doc) = (&env, deployment(i));
        async move {
            let r = run_workload(env, &doc).await;
            (r, start.elapsed())
        }
    });
    let results = futures::future::join_all(runs).await;
    let elapsed = start.elapsed();

    let mut admitted = 0usize;
    let mut reserved = 0usize;
    let mut refused = Vec::new();
    let mut done_at = Vec::new();
    for (r, at) in results {
        done_at.push(at);
        for o in r? {
            match o.result {
                Ok(p) => {
                    admitted += 1;
                    if common::reservation(&p).is_some_and(|r| common::reserved_addresses(&r) == 1)
                    {
                        reserved += 1;
                    }
                }
                Err(m) => refused.push(m),
            }
        }
    }
    // Every reservation is a live claim, no address twice.
    let held = claims.list(&ListParams::default()).await?.items;
    let mut seen = BTreeSet::new();
    for c in &held {
        if !seen.insert(c.spec.address.clone()) {
            return Err(anyhow!("{} held twice", c.spec.address));
        }
    }
    let new_claims = held.len().saturating_sub(claims_before);
    let want = sizes.deployments * sizes.replicas;
    env.stop().await;

    let d = Stats::of(&done_at);
    table(
        &format!(
            "burst: {} Deployments x {} replicas created at once (controllers: {}), operator running",
            sizes.deployments,
            sizes.replicas,
            if aipam_e2e::env::use_stand_in() {
                "simulated"
            } else {
                "kube-controller-manager"
            }
        ),
        &["Pods", "reserved", "refused", "new claims", "time to all reserved", "Pods/s", "Deployment done p50 / p99"],
        &[vec![
            want.to_string(),
            reserved.to_string(),
            refused.len().to_string(),
            new_claims.to_string(),
            format!("{:.2} s", elapsed.as_secs_f64()),
            format!("{:.1}", admitted as f64 / elapsed.as_secs_f64().max(1e-9)),
            format!("{:.2} s / {:.2} s", d.p50_ms / 1e3, d.p99_ms / 1e3),
        ]],
    );
    let out = json!({
        "deployments": sizes.deployments, "replicas": sizes.replicas, "pods": want,
        "admitted": admitted, "reserved": reserved, "refused": refused.len(),
        "first_refusal": refused.first(), "new_claims": new_claims,
        "seconds_to_all_reserved": r3(elapsed.as_secs_f64()),
        "pods_per_s": r3(admitted as f64 / elapsed.as_secs_f64().max(1e-9)),
        "deployment_done_s": {"p50": r3(d.p50_ms / 1e3), "p99": r3(d.p99_ms / 1e3)},
    });
    json_line("burst", out.clone());
    Ok(out)
}
