//! Item 7 (latency): with the operator running, time from a Pod's deletion to its address being
//! free — its claim gone (seen on a watch) — and until the pool's counter is back down.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aipam_crds::{SpiderIPClaim, SpiderIPPool};
use aipam_e2e::{wait_for, Env, Options};
use anyhow::{anyhow, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::watcher;
use serde_json::{json, Value};

use crate::common::{self, json_line, r3, table, Stats};

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub pods: usize,
    /// Time between two deletions.
    pub gap: Duration,
}

const POOL: &str = "release-v4";

pub async fn run(sizes: Sizes) -> Result<Value> {
    let env = Env::start(Options::default()).await?;
    let ns = "bench-release";
    common::apply_all(
        &env,
        &[
            common::namespace(ns, json!({})),
            common::ippool(
                POOL,
                "10.60.0.0/16",
                "10.60.0.10-10.60.255.250",
                Some("10.60.0.1"),
            ),
            common::spiderpool_conf(&[POOL], &[]),
        ],
    )
    .await?;
    // A probe namespace, so that the measured pool holds only the measured Pods' addresses
    // once they are gone.
    let probe_pod = common::pod(ns, "probe", json!({}));
    common::wait_admits(&env.client, ns, &probe_pod, 1).await?;
    let template = common::pod(ns, "rel", json!({}));
    let load =
        common::create_pods(&env.client, ns, sizes.pods, 8, move |_| template.clone()).await?;
    if load.pods.len() != sizes.pods {
        return Err(anyhow!(
            "only {} of {} Pods admitted: {:?} {:?}",
            load.pods.len(),
            sizes.pods,
            load.refused.first(),
            load.errors.first()
        ));
    }
    let claims: Api<SpiderIPClaim> = Api::all(env.client.clone());
    let pools: Api<SpiderIPPool> = Api::all(env.client.clone());
    // Claims by Pod name (bound at validation).
    let by_pod: BTreeMap<String, Vec<String>> = {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in claims.list(&ListParams::default()).await?.items {
            if let Some(p) = c.spec.pod_name.clone() {
                m.entry(p)
                    .or_default()
                    .push(c.metadata.name.clone().unwrap_or_default());
            }
        }
        m
    };
    let held_before = by_pod.values().map(Vec::len).sum::<usize>() as i64;
    // The operator's counter has caught up before the deletions start.
    wait_for(
        "the pool counter to count the Pods",
        Duration::from_secs(30),
        || {
            let pools = pools.clone();
            async move {
                let p = pools.get(POOL).await.ok()?;
                (p.status?.allocated_ip_count? == held_before).then_some(())
            }
        },
    )
    .await?;

    // Deletion times of claims, from a watch.
    let gone: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let (gone, claims) = (gone.clone(), claims.clone());
        tokio::spawn(async move {
            let mut s = watcher(claims, watcher::Config::default()).boxed();
            while let Some(ev) = s.next().await {
                if let Ok(watcher::Event::Delete(c)) = ev {
                    if let Ok(mut g) = gone.lock() {
                        g.insert(c.metadata.name.clone().unwrap_or_default(), Instant::now());
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let mut deleted_at: Vec<(String, Instant)> = Vec::new();
    let start = Instant::now();
    for p in &load.pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        let t = Instant::now();
        pods.delete(&name, &DeleteParams::default()).await?;
        deleted_at.push((name, t));
        tokio::time::sleep(sizes.gap).await;
    }
    let last_delete = Instant::now();
    let want: usize = deleted_at
        .iter()
        .map(|(n, _)| by_pod.get(n).map_or(0, Vec::len))
        .sum();
    wait_for("every claim released", Duration::from_secs(60), || {
        let gone = gone.clone();
        async move { (gone.lock().ok()?.len() >= want).then_some(()) }
    })
    .await?;
    let all_claims_gone = start.elapsed();
    // The pool counter down to the probe's address only.
    let probe_held = held_before - want as i64;
    wait_for("the pool counter down", Duration::from_secs(60), || {
        let pools = pools.clone();
        async move {
            let p = pools.get(POOL).await.ok()?;
            (p.status?.allocated_ip_count? == probe_held).then_some(())
        }
    })
    .await?;
    let counter_down = last_delete.elapsed();
    watch.abort();
    let g = gone.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    let mut lat = Vec::new();
    for (pod, t) in &deleted_at {
        for c in by_pod.get(pod).into_iter().flatten() {
            if let Some(at) = g.get(c) {
                lat.push(at.saturating_duration_since(*t));
            }
        }
    }
    env.stop().await;

    let s = Stats::of(&lat);
    table(
        &format!(
            "release: {} Pods deleted one every {} ms, operator running",
            sizes.pods,
            sizes.gap.as_millis()
        ),
        &[
            "claims released",
            "deletion -> claim gone p50",
            "p99",
            "max",
            "last deletion -> pool counter down",
        ],
        &[vec![
            format!("{} / {want}", lat.len()),
            format!("{:.1} ms", s.p50_ms),
            format!("{:.1} ms", s.p99_ms),
            format!("{:.1} ms", s.max_ms),
            format!("{:.0} ms", counter_down.as_secs_f64() * 1e3),
        ]],
    );
    let out = json!({
        "pods": sizes.pods, "gap_ms": sizes.gap.as_millis() as u64, "claims": want,
        "released": lat.len(), "delete_to_claim_gone": s.json(),
        "all_claims_gone_s": r3(all_claims_gone.as_secs_f64()),
        "last_delete_to_counter_down_ms": r3(counter_down.as_secs_f64() * 1e3),
    });
    json_line("release", out.clone());
    Ok(out)
}
