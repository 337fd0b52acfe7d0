//! Item 7 (latency): with the operator running, time from a Pod's deletion to its address being
//! free — its claim gone (seen on a watch) — and until the pool's counter is back down. The
//! Pods are scheduled on a node first, so the run also counts the API writes of a Pod's whole
//! life besides its own (create, binding, delete): reservation, endpoint, binding by the
//! operator, release.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aipam_core::reservation::{Reservation, ANNO_RESERVATION};
use aipam_crds::{SpiderEndpoint, SpiderIPClaim, SpiderIPPool};
use aipam_e2e::sim::schedule;
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
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "bench-node"},
                   "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        ],
    )
    .await?;
    // A probe namespace, so that the measured pool holds only the measured Pods' addresses
    // once they are gone.
    let probe_pod = common::pod(ns, "probe", json!({}));
    common::wait_admits(&env.client, ns, &probe_pod, 1).await?;
    let template = common::pod(ns, "rel", json!({}));
    let writes_before = env.write_counts().await?;
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
    // Claims by Pod name, from the records the webhook wrote on the Pods.
    let mut by_pod: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &load.pods {
        let record = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNO_RESERVATION))
            .and_then(|v| Reservation::parse(v).ok())
            .ok_or_else(|| anyhow!("an admitted Pod has no reservation record"))?;
        by_pod.insert(
            p.metadata.name.clone().unwrap_or_default(),
            record.claim_names(),
        );
    }
    // Scheduled, as the scheduler does; the operator fills in each endpoint's node.
    for p in &load.pods {
        schedule(&env, p, 0)
            .await?
            .ok_or_else(|| anyhow!("no node for a Pod"))?;
    }
    let eps: Api<SpiderEndpoint> = Api::namespaced(env.client.clone(), ns);
    let n_pods = load.pods.len();
    wait_for(
        "every endpoint to name the node",
        Duration::from_secs(60),
        || {
            let eps = eps.clone();
            async move {
                let l = eps.list(&ListParams::default()).await.ok()?;
                let done = l
                    .items
                    .iter()
                    .filter(|e| {
                        e.status
                            .as_ref()
                            .is_some_and(|s| s.current.node == "bench-node")
                    })
                    .count();
                (done >= n_pods).then_some(())
            }
        },
    )
    .await?;
    // The measured Pods' claims and the probe's.
    let held_before = claims.list(&ListParams::default()).await?.items.len() as i64;
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
    // Every endpoint of the deleted Pods gone too, then the writes of the Pods' lives.
    wait_for("every endpoint gone", Duration::from_secs(60), || {
        let eps = eps.clone();
        async move { (eps.list(&ListParams::default()).await.ok()?.items.len() <= 1).then_some(()) }
    })
    .await?;
    let life_writes = common::write_delta(&writes_before, &env.write_counts().await?);
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
    let per_pod = |k: &str| life_writes.get(k).copied().unwrap_or(0) as f64 / n_pods as f64;
    let ours: f64 = life_writes
        .iter()
        .filter(|(k, _)| !k.starts_with("pods"))
        .map(|(_, v)| *v as f64)
        .sum::<f64>()
        / n_pods as f64;
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
    let mut rows = vec![];
    for (k, v) in &life_writes {
        rows.push(vec![k.clone(), v.to_string(), format!("{:.2}", per_pod(k))]);
    }
    rows.push(vec![
        "all but the Pods' own".to_string(),
        "-".to_string(),
        format!("{ours:.2}"),
    ]);
    table(
        &format!(
            "API writes over {} single-stack Pods' lives (admitted, scheduled, deleted, released; operator running)",
            n_pods
        ),
        &["resource", "writes", "per Pod"],
        &rows,
    );
    let out = json!({
        "life_writes": life_writes, "life_writes_per_pod_excl_pod": r3(ours),
        "pods": sizes.pods, "gap_ms": sizes.gap.as_millis() as u64, "claims": want,
        "released": lat.len(), "delete_to_claim_gone": s.json(),
        "all_claims_gone_s": r3(all_claims_gone.as_secs_f64()),
        "last_delete_to_counter_down_ms": r3(counter_down.as_secs_f64() * 1e3),
    });
    json_line("release", out.clone());
    Ok(out)
}
