//! Item 1: admission throughput and latency through the API stand-in with our webhook
//! registered — single-stack, dual-stack and two-interface Pods, with one and with three webhook
//! replicas, `concurrency` creates in flight — beside the stand-in's raw create rate for Pods
//! with no webhook registered, measured in the same (fresh) environment just before. API writes per
//! admitted Pod from the stand-in's write counter. The operator is not started: only the
//! admission path is measured.

use std::collections::BTreeMap;

use aipam_e2e::{Env, Options};
use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{json, Value};

use crate::baseline::{remove_our_webhooks, restore_our_webhooks};
use crate::common::{self, json_line, r3, table, Load, Stats};
use crate::replicas;

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub pods: usize,
    pub concurrency: usize,
    pub replicas: Vec<usize>,
    /// Every kind of Pod for every replica count; else (the quick smoke run) replica counts
    /// after the first measure single-stack Pods only.
    pub every_kind: bool,
}

/// Targets of the issue.
const MAX_WRITES_SINGLE: f64 = 2.0;
const MIN_RAW_FRACTION: f64 = 0.40;

struct Row {
    replicas: usize,
    kind: &'static str,
    load: Load,
    addresses_per_pod: usize,
    writes: BTreeMap<String, u64>,
    webhook: replicas::Scrape,
    raw_rate: f64,
}

impl Row {
    fn writes_per_pod(&self) -> f64 {
        let total: u64 = self.writes.values().sum();
        let pods = self.writes.get("pods").copied().unwrap_or(0);
        total.saturating_sub(pods) as f64 / self.load.pods.len().max(1) as f64
    }

    fn all_reserved(&self) -> usize {
        self.load
            .pods
            .iter()
            .filter(|p| {
                common::reservation(p)
                    .is_some_and(|r| common::reserved_addresses(&r) == self.addresses_per_pod)
            })
            .count()
    }

    fn json(&self) -> Value {
        let s = Stats::of(&self.load.latencies);
        json!({
            "replicas": self.replicas, "kind": self.kind, "admitted": self.load.pods.len(),
            "fully_reserved": self.all_reserved(), "refused": self.load.refused.len(),
            "errors": self.load.errors.len(), "first_problem": self.load.refused.first().or(self.load.errors.first()),
            "pods_per_s": r3(self.load.rate()), "latency": s.json(),
            "raw_pods_per_s": r3(self.raw_rate),
            "fraction_of_raw": r3(self.load.rate() / self.raw_rate.max(1e-9)),
            "writes": self.writes, "writes_per_pod_excl_pod": r3(self.writes_per_pod()),
            "claim_conflicts": self.webhook.claim_conflicts,
            "webhook_reservation_mean_ms": r3(self.webhook.mean_reservation_ms()),
        })
    }
}

async fn measure(
    env: &Env,
    ns: &str,
    template: Value,
    sizes: &Sizes,
    health: &[std::net::SocketAddr],
) -> Result<(Load, BTreeMap<String, u64>, replicas::Scrape)> {
    let before = env.write_counts().await?;
    let m0 = replicas::scrape(health)?;
    let load = common::create_pods(&env.client, ns, sizes.pods, sizes.concurrency, move |_| {
        template.clone()
    })
    .await?;
    let writes = common::write_delta(&before, &env.write_counts().await?);
    let m1 = replicas::scrape(health)?;
    Ok((load, writes, m1.minus(&m0)))
}

/// The Pod kinds measured: name, Pod annotations, addresses per Pod, IPv6 enabled.
const KINDS: [(&str, &str, usize, bool); 3] = [
    ("single-stack", "", 1, false),
    ("two-interface", "net1", 2, false),
    ("dual-stack", "", 2, true),
];

/// One row: a fresh environment (the stand-in's cost per write grows with the objects it
/// holds, so every row starts from the same empty store), the raw create rate measured first
/// in it and its Pods deleted, then the Pods of `kind` through the webhook.
async fn one_row(replica_count: usize, kind_index: usize, sizes: &Sizes) -> Result<(Row, Row)> {
    let (kind, networks, want, v6) = KINDS[kind_index];
    let env = Env::start(Options {
        operator: false,
        webhook_replicas: replica_count,
        ..Options::default()
    })
    .await?;
    let health = replicas::health_addrs(&env)?;
    let (ns, raw_ns) = ("bench-adm", "bench-raw");
    let nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "net1", "namespace": ns},
        "spec": {"config": json!({"cniVersion": "0.3.1", "name": "net1", "type": "macvlan",
            "master": "eth1", "mode": "bridge",
            "ipam": {"type": "spiderpool", "default_ipv4_ippool": ["adm-net1-v4"]}}).to_string()}
    });
    let v6_pools: &[&str] = if v6 { &["adm-v6"] } else { &[] };
    common::apply_all(
        &env,
        &[
            common::namespace(ns, json!({})),
            common::namespace(raw_ns, json!({})),
            common::ippool(
                "adm-v4",
                "10.70.0.0/16",
                "10.70.0.10-10.70.255.250",
                Some("10.70.0.1"),
            ),
            common::ippool(
                "adm-net1-v4",
                "10.71.0.0/16",
                "10.71.0.10-10.71.255.250",
                Some("10.71.0.1"),
            ),
            common::ippool(
                "adm-v6",
                "fd00:70::/64",
                "fd00:70::10-fd00:70::ffff",
                Some("fd00:70::1"),
            ),
            nad,
            common::spiderpool_conf(&["adm-v4"], v6_pools),
        ],
    )
    .await?;

    // The limit: the stand-in's create rate with no webhook registered; then those Pods go.
    let saved = remove_our_webhooks(&env.client).await?;
    let raw_tpl = common::pod(raw_ns, "raw", json!({}));
    // Warm-up, not measured: the first creates of a fresh stand-in run cold (the first row
    // of a run measured half the rate of the others without it).
    let warm_tpl = raw_tpl.clone();
    common::create_pods(
        &env.client,
        raw_ns,
        (sizes.pods / 5).max(1),
        sizes.concurrency,
        move |_| warm_tpl.clone(),
    )
    .await?;
    let raw = common::create_pods(
        &env.client,
        raw_ns,
        sizes.pods,
        sizes.concurrency,
        move |_| raw_tpl.clone(),
    )
    .await?;
    restore_our_webhooks(&env.client, saved).await?;
    Api::<Pod>::namespaced(env.client.clone(), raw_ns)
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let raw_rate = raw.rate();
    let raw_row = Row {
        replicas: replica_count,
        kind: "raw (no webhook)",
        writes: BTreeMap::new(),
        addresses_per_pod: 0,
        load: raw,
        webhook: replicas::Scrape::default(),
        raw_rate,
    };

    let annotations = if networks.is_empty() {
        json!({})
    } else {
        json!({"k8s.v1.cni.cncf.io/networks": networks})
    };
    let template = common::pod(ns, "p", annotations);
    // Every replica has seen what this kind needs (requests go round-robin).
    for _ in 0..replica_count.max(1) * 2 {
        common::wait_admits(&env.client, ns, &template, want).await?;
    }
    let (load, writes, webhook) = measure(&env, ns, template, sizes, &health).await?;
    env.stop().await;
    Ok((
        raw_row,
        Row {
            replicas: replica_count,
            kind,
            load,
            addresses_per_pod: want,
            writes,
            webhook,
            raw_rate,
        },
    ))
}

pub async fn run(sizes: Sizes) -> Result<Value> {
    let mut rows = Vec::new();
    for (i, &r) in sizes.replicas.iter().enumerate() {
        let kinds = if sizes.every_kind || i == 0 {
            KINDS.len()
        } else {
            1
        };
        for k in 0..kinds {
            let (raw, row) = one_row(r, k, &sizes).await?;
            rows.push(raw);
            rows.push(row);
        }
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let s = Stats::of(&r.load.latencies);
            let is_raw = r.addresses_per_pod == 0;
            vec![
                r.replicas.to_string(),
                r.kind.to_string(),
                format!("{}/{}", r.load.pods.len(), sizes.pods),
                r.load.refused.len().to_string(),
                r.load.errors.len().to_string(),
                format!("{:.1}", r.load.rate()),
                format!("{:.1}", s.p50_ms),
                format!("{:.1}", s.p99_ms),
                if is_raw {
                    "1.00".into()
                } else {
                    format!("{:.2}", r.load.rate() / r.raw_rate.max(1e-9))
                },
                if is_raw {
                    "-".into()
                } else {
                    format!("{:.2}", r.writes_per_pod())
                },
                if is_raw {
                    "-".into()
                } else {
                    format!("{:.1}", r.webhook.mean_reservation_ms())
                },
                if is_raw {
                    "-".into()
                } else {
                    format!("{}", r.webhook.claim_conflicts)
                },
            ]
        })
        .collect();
    table(
        &format!(
            "admission: {} Pods per row, {} concurrent creates, through {} (operator off)",
            sizes.pods,
            sizes.concurrency,
            aipam_e2e::env::api_in_use()
        ),
        &[
            "replicas",
            "Pods",
            "admitted",
            "refused",
            "errors",
            "Pods/s",
            "p50 ms",
            "p99 ms",
            "of raw",
            "writes/Pod",
            "webhook reserve ms",
            "conflicts",
        ],
        &table_rows,
    );
    for r in rows.iter().filter(|r| r.addresses_per_pod > 0) {
        println!(
            "  {} replica(s), {}: writes {:?}",
            r.replicas, r.kind, r.writes
        );
    }
    let single: Vec<&Row> = rows.iter().filter(|r| r.kind == "single-stack").collect();
    for r in &single {
        let frac = r.load.rate() / r.raw_rate.max(1e-9);
        println!(
            "  target, {} replica(s): writes/Pod {:.2} (target <= {MAX_WRITES_SINGLE}: {}), throughput {:.0}% of raw (target >= {:.0}%: {})",
            r.replicas,
            r.writes_per_pod(),
            if r.writes_per_pod() <= MAX_WRITES_SINGLE { "met" } else { "missed" },
            frac * 100.0,
            MIN_RAW_FRACTION * 100.0,
            if frac >= MIN_RAW_FRACTION { "met" } else { "missed" },
        );
    }
    let out = json!({
        "pods": sizes.pods, "concurrency": sizes.concurrency,
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    json_line("admission", out.clone());
    Ok(out)
}
