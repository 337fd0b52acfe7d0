//! What every bench shares: latency statistics, the concurrent Pod creator, small HTTP reads,
//! the machine's description, and the objects a run needs in the API.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aipam_e2e::Env;
use anyhow::{anyhow, Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

/// Order statistics of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Stats {
    pub fn of(samples: &[Duration]) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let idx = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            v[idx]
        };
        Stats {
            n: v.len(),
            p50_ms: q(0.50),
            p99_ms: q(0.99),
            max_ms: v[v.len() - 1],
            mean_ms: v.iter().sum::<f64>() / v.len() as f64,
        }
    }

    pub fn json(&self) -> Value {
        json!({"n": self.n, "p50_ms": r3(self.p50_ms), "p99_ms": r3(self.p99_ms),
               "max_ms": r3(self.max_ms), "mean_ms": r3(self.mean_ms)})
    }
}

/// Rounds to three decimals (for the JSON lines).
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// What a batch of concurrent Pod creations gave.
#[derive(Debug, Default)]
pub struct Load {
    /// Latency of every create that succeeded.
    pub latencies: Vec<Duration>,
    /// The stored Pods.
    pub pods: Vec<Pod>,
    /// Admission refusals (4xx), with their messages.
    pub refused: Vec<String>,
    /// Other failures (5xx, transport).
    pub errors: Vec<String>,
    /// Wall time of the whole batch.
    pub elapsed: Duration,
}

impl Load {
    pub fn rate(&self) -> f64 {
        self.pods.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Creates `n` Pods made by `make(i)` in namespace `ns` with `concurrency` requests in flight.
pub async fn create_pods<F>(
    client: &kube::Client,
    ns: &str,
    n: usize,
    concurrency: usize,
    make: F,
) -> Result<Load>
where
    F: Fn(usize) -> Value + Send + Sync + 'static,
{
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (api, next, make) = (api.clone(), next.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Load::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let pod: Pod = match serde_json::from_value(make(i)) {
                    Ok(p) => p,
                    Err(e) => {
                        out.errors.push(format!("bad Pod manifest: {e}"));
                        continue;
                    }
                };
                let t = Instant::now();
                match api.create(&PostParams::default(), &pod).await {
                    Ok(p) => {
                        out.latencies.push(t.elapsed());
                        out.pods.push(p);
                    }
                    Err(kube::Error::Api(e)) if (400..500).contains(&e.code) => {
                        out.refused.push(e.message)
                    }
                    Err(e) => out.errors.push(e.to_string()),
                }
            }
            out
        }));
    }
    let mut all = Load::default();
    for t in tasks {
        let mut part = t.await.context("a load task panicked")?;
        all.latencies.append(&mut part.latencies);
        all.pods.append(&mut part.pods);
        all.refused.append(&mut part.refused);
        all.errors.append(&mut part.errors);
    }
    all.elapsed = start.elapsed();
    Ok(all)
}

/// A Pod manifest from `generateName`, as a ReplicaSet makes it.
pub fn pod(ns: &str, prefix: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": format!("{prefix}-"), "namespace": ns, "annotations": annotations,
                     "labels": {"app": prefix}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}
    })
}

/// `GET path` over plain HTTP/1.0 (health and metrics ports); the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let (head, body) = buf
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP answer from {addr}{path}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(anyhow!(
            "GET {addr}{path}: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(body.to_string())
}

/// The value of one Prometheus counter or gauge (summed over its label sets) in a scrape.
pub fn prom_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The machine the figures come from, and its load when the bench started.
pub fn machine() -> Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let profile = std::env::current_exe()
        .ok()
        .and_then(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().to_string())
        })
        .unwrap_or_default();
    json!({"cpus": cpus, "cpu_model": model, "loadavg": load, "build": profile})
}

/// Resident memory of process `pid` in MiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_mib(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = text
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Prints one figure table: a title and aligned rows.
pub fn table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.len());
            }
        }
    }
    println!("\n## {title}");
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:>w$}", w = width.get(i).copied().unwrap_or(0)))
            .collect();
        println!("| {} |", parts.join(" | "));
    };
    line(header.iter().map(|s| s.to_string()).collect());
    println!(
        "|{}|",
        width
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in rows {
        line(r.clone());
    }
}

/// Prints the machine-readable line of a bench.
pub fn json_line(bench: &str, mut v: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert("bench".to_string(), json!(bench));
        o.insert("machine".to_string(), machine());
    }
    println!("{v}");
}

/// Applies manifests given as JSON values (create or replace, through admission).
pub async fn apply_all(env: &Env, docs: &[Value]) -> Result<()> {
    for d in docs {
        env.apply(d)
            .await
            .with_context(|| aipam_e2e::env::describe(d))?;
    }
    Ok(())
}

/// A namespace.
pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// A SpiderIPPool over one range.
pub fn ippool(name: &str, subnet: &str, range: &str, gateway: Option<&str>) -> Value {
    let mut spec = json!({"subnet": subnet, "ips": [range]});
    if let Some(g) = gateway {
        spec["gateway"] = json!(g);
    }
    json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
           "metadata": {"name": name}, "spec": spec})
}

/// The `spiderpool-conf` ConfigMap with the cluster default pools.
pub fn spiderpool_conf(v4: &[&str], v6: &[&str]) -> Value {
    let list = |l: &[&str]| format!("[{}]", l.join(","));
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "spiderpool-conf", "namespace": aipam_e2e::env::SYSTEM_NAMESPACE},
           "data": {"enableIPv4": (!v4.is_empty()).to_string(), "enableIPv6": (!v6.is_empty()).to_string(),
                    "clusterDefaultIPv4IPPool": list(v4), "clusterDefaultIPv6IPPool": list(v6)}})
}

/// The reservation record the webhook wrote on a Pod (`aipam.io/reservation`), parsed.
pub fn reservation(pod: &Pod) -> Option<Value> {
    let a = pod
        .metadata
        .annotations
        .as_ref()?
        .get("aipam.io/reservation")?;
    serde_json::from_str(a).ok()
}

/// Number of addresses a reservation record holds (every interface, both families).
pub fn reserved_addresses(record: &Value) -> usize {
    record
        .get("interfaces")
        .and_then(Value::as_array)
        .map(|ifs| {
            ifs.iter()
                .map(|i| {
                    ["ipv4", "ipv6"]
                        .iter()
                        .map(|f| i.get(f).and_then(Value::as_array).map_or(0, Vec::len))
                        .sum::<usize>()
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Creates Pods until one is admitted with `want` addresses (the webhook's cache has seen the
/// pools and the configuration), for at most 30 s.
pub async fn wait_admits(client: &kube::Client, ns: &str, make: &Value, want: usize) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(make.clone())?;
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(30) {
        match api.create(&PostParams::default(), &pod).await {
            Ok(p) => {
                let got = reservation(&p).map_or(0, |r| reserved_addresses(&r));
                if got == want {
                    return Ok(());
                }
                last = format!("admitted with {got} addresses, want {want}");
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!(
        "the webhook never admitted a probe Pod in {ns}: {last}"
    ))
}

/// Writes counted by the stand-in since `before`, per resource.
pub fn write_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}
