//! Item 5: three webhook replicas (each with its own cache), one pool of exactly as many
//! addresses as Pods, all Pods created at once: every Pod served (refusals counted), no address
//! twice, conflicts per allocation from the replicas' `aipam_webhook_claim_conflicts_total`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use aipam_crds::SpiderIPClaim;
use aipam_e2e::{Env, Options};
use anyhow::{anyhow, Result};
use kube::api::{Api, ListParams};
use serde_json::{json, Value};

use crate::common::{self, json_line, r3, table, Stats};
use crate::replicas;

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub replicas: usize,
    /// Pods, and addresses in the pool.
    pub pods: usize,
    pub concurrency: usize,
}

const POOL: &str = "contention-v4";

pub async fn run(sizes: Sizes) -> Result<Value> {
    let env = Env::start(Options {
        operator: false,
        webhook_replicas: sizes.replicas,
        ..Options::default()
    })
    .await?;
    let health = replicas::health_addrs(&env)?;
    let ns = "bench-contention";
    // Exactly `pods` addresses: 10.80.1.0 .. 10.80.1.0 + pods - 1.
    let first = u32::from(Ipv4Addr::new(10, 80, 1, 0));
    let last = Ipv4Addr::from(first + sizes.pods as u32 - 1);
    let range = format!("{}-{last}", Ipv4Addr::from(first));
    // The measured pool first, then a probe pool: a replica whose cache holds the probe pool
    // has seen the measured one (one watch, in order).
    common::apply_all(
        &env,
        &[
            common::namespace(ns, json!({})),
            common::ippool(POOL, "10.80.0.0/16", &range, Some("10.80.0.1")),
            common::spiderpool_conf(&[POOL], &[]),
        ],
    )
    .await?;
    common::apply_all(
        &env,
        &[common::ippool(
            "contention-probe",
            "10.81.0.0/16",
            "10.81.0.10-10.81.0.250",
            Some("10.81.0.1"),
        )],
    )
    .await?;
    let probe = common::pod(
        ns,
        "probe",
        json!({"ipam.spidernet.io/ippool": "{\"ipv4\": [\"contention-probe\"]}"}),
    );
    for _ in 0..sizes.replicas * 2 {
        common::wait_admits(&env.client, ns, &probe, 1).await?;
    }
    let m0 = replicas::scrape(&health)?;
    let template = common::pod(ns, "c", json!({}));
    let load = common::create_pods(&env.client, ns, sizes.pods, sizes.concurrency, move |_| {
        template.clone()
    })
    .await?;
    let m = replicas::scrape(&health)?.minus(&m0);
    let claims: Api<SpiderIPClaim> = Api::all(env.client.clone());
    let held: Vec<SpiderIPClaim> = claims
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|c| c.spec.pool == POOL)
        .collect();
    let mut seen = BTreeSet::new();
    for c in &held {
        if !seen.insert(c.spec.address.clone()) {
            return Err(anyhow!("{} held twice", c.spec.address));
        }
    }
    let reserved = load
        .pods
        .iter()
        .filter(|p| common::reservation(p).is_some_and(|r| common::reserved_addresses(&r) == 1))
        .count();
    env.stop().await;

    let s = Stats::of(&load.latencies);
    let cpa = m.claim_conflicts / (load.pods.len().max(1) as f64);
    table(
        &format!(
            "contention: {} replicas, one pool of exactly {} addresses, {} Pods, {} concurrent creates",
            sizes.replicas, sizes.pods, sizes.pods, sizes.concurrency
        ),
        &["served", "refused", "errors", "claims held", "conflicts", "conflicts/alloc", "time", "p50 ms", "p99 ms"],
        &[vec![
            format!("{reserved}/{}", sizes.pods),
            load.refused.len().to_string(),
            load.errors.len().to_string(),
            held.len().to_string(),
            format!("{}", m.claim_conflicts),
            format!("{cpa:.3}"),
            format!("{:.2} s", load.elapsed.as_secs_f64()),
            format!("{:.1}", s.p50_ms),
            format!("{:.1}", s.p99_ms),
        ]],
    );
    let out = json!({
        "replicas": sizes.replicas, "replicas_scraped": health.len(), "pool_size": sizes.pods,
        "pods": sizes.pods, "served": reserved, "refused": load.refused.len(),
        "errors": load.errors.len(), "first_problem": load.refused.first().or(load.errors.first()),
        "claims_held": held.len(), "claim_conflicts": m.claim_conflicts,
        "conflicts_per_allocation": r3(cpa), "seconds": r3(load.elapsed.as_secs_f64()),
        "latency": s.json(),
    });
    json_line("contention", out.clone());
    Ok(out)
}
