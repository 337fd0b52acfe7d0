//! Admission cost through the webhook's Pod hook against pool size and the number of live
//! reservations, and the cache's memory at 100,000 reservations:
//! `cargo bench -p aipam-webhook --bench admission_cost`.
//!
//! In process, no HTTP, no API server: a synced cache, the real `PodHooks::mutate` over
//! in-memory side effects (claim creation is a map insert), so what is timed is the webhook's
//! own work per Pod: decoding, selection, picking, the claim object and the JSON Patch. Pools
//! of /24, /16, /8 IPv4 and a /64 IPv6, filled by admitting Pods through the same hook (so the
//! reservations are scattered as random picks leave them): empty, half full and 99% full, with
//! fills capped at 100,000 reservations (a /8 or /64 cannot be half full of claim objects).
//! Prints the median and p90 of 300 admissions per case, each Pod's claims released after it is
//! timed so that fullness stays put, and the ratio to the /24. Timing, not asserted.
//!
//! `ADMISSION_COST_QUICK=1` shrinks the fills to seconds (used by nothing in CI; for trying).

use std::time::Instant;

use aipam_core::reservation::{Reservation, ANNO_RESERVATION};
use aipam_webhook::cache::Cache;
use aipam_webhook::pod::PodHooks;
use aipam_webhook::testkit::{apply_patch, load, pod_create, resident_kib, synced_cache};
use aipam_webhook::{MemoryEffects, Object};
use serde_json::{json, Value};

const CAP: u64 = 100_000;

fn world(cidr: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: bench
  annotations:
    ipam.spidernet.io/default-ipv4-ippool: '["bench-pool"]'
    ipam.spidernet.io/default-ipv6-ippool: '["bench-pool"]'
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: spiderpool-conf, namespace: aipam-system}}
data:
  conf.yml: |
    enableIPv4: {v4}
    enableIPv6: {v6}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {{name: bench-pool}}
spec:
  subnet: {cidr}
  ips: {ips:?}
"#,
        ips = {
            let net: ipnet::IpNet = cidr.parse().unwrap_or_else(|_| panic!("bad CIDR {cidr}"));
            aipam_core::ranges::usable_hosts(&net).to_strings()
        },
        v4 = !cidr.contains(':'),
        v6 = cidr.contains(':'),
    )
}

fn pod(i: u64) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("p-{i}"), "namespace": "bench"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    })
}

/// Admits Pod `i`; the names of the claims made for it, or `None` when it was refused, and
/// the time `mutate` took, in microseconds (decoding the review body is not counted).
async fn admit(
    hooks: &PodHooks<std::sync::Arc<MemoryEffects>>,
    i: u64,
    took: &mut f64,
) -> Option<Vec<String>> {
    let p = pod(i);
    let req = pod_create(&format!("uid-{i}"), &p, false).ok()?;
    let t = Instant::now();
    let resp = hooks.mutate(&req).await;
    *took = t.elapsed().as_secs_f64() * 1e6;
    if !resp.allowed {
        eprintln!("refused: {}", resp.result.message);
        return None;
    }
    let patched = apply_patch(&p, &resp).ok()?;
    let record = patched["metadata"]["annotations"][ANNO_RESERVATION].as_str()?;
    let r = Reservation::parse(record).ok()?;
    Some(r.addresses().iter().map(|a| a.claim_name()).collect())
}

/// Releases claims from the cache and the effects (outside the timed part).
fn release(cache: &Cache, effects: &MemoryEffects, claims: &[String]) {
    effects.with(|s| {
        for n in claims {
            s.claims.remove(n);
        }
    });
    for n in claims {
        cache.claim_deleted(n);
    }
}

fn setup(
    cidr: &str,
) -> (
    Cache,
    std::sync::Arc<MemoryEffects>,
    PodHooks<std::sync::Arc<MemoryEffects>>,
) {
    let cache = synced_cache();
    let effects = std::sync::Arc::new(MemoryEffects::new());
    if let Err(e) = load(&world(cidr), &cache, &effects) {
        panic!("loading the bench world: {e}");
    }
    let hooks = PodHooks::new(cache.clone(), effects.clone());
    (cache, effects, hooks)
}

fn capacity(cidr: &str) -> u128 {
    let net: ipnet::IpNet = cidr.parse().unwrap_or_else(|_| panic!("bad CIDR {cidr}"));
    aipam_core::ranges::usable_hosts(&net).len()
}

fn pct(v: &mut [f64], p: usize) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[(v.len() * p / 100).min(v.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Ok(path) = std::env::var(LOAD_ENV) {
        memory_probe(&path);
        return;
    }
    let quick = std::env::var_os("ADMISSION_COST_QUICK").is_some();
    let cap = if quick { 2_000 } else { CAP };
    let pools = ["10.0.0.0/24", "10.0.0.0/16", "10.0.0.0/8", "fd00::/64"];
    let fills: [(&str, f64); 3] = [("empty", 0.0), ("half full", 0.5), ("99% full", 0.99)];
    println!("one Pod admission through PodHooks::mutate (in-memory effects), microseconds; ratio = median / median of the /24 at the same fill");
    println!(
        "{:<10} {:<12} {:>12} {:>9} {:>9} {:>6}",
        "fill", "pool", "reservations", "p50", "p90", "ratio"
    );
    for (label, fraction) in fills {
        let mut base = None;
        for cidr in pools {
            let (cache, effects, hooks) = setup(cidr);
            let want = ((capacity(cidr) as f64 * fraction) as u128).min(u128::from(cap)) as u64;
            let mut next = 0u64;
            while next < want {
                if admit(&hooks, next, &mut 0.0).await.is_none() {
                    panic!("filling {cidr}: Pod {next} refused");
                }
                next += 1;
            }
            let mut samples = Vec::with_capacity(300);
            for i in 0..330u64 {
                let id = 10_000_000 + i;
                let mut dt = 0.0;
                let claims = admit(&hooks, id, &mut dt).await;
                let Some(claims) = claims else {
                    panic!("{cidr} at {label}: Pod refused");
                };
                release(&cache, &effects, &claims);
                if i >= 30 {
                    samples.push(dt);
                }
            }
            let p50 = pct(&mut samples, 50);
            let p90 = pct(&mut samples, 90);
            let b = *base.get_or_insert(p50);
            println!(
                "{label:<10} {cidr:<12} {want:>12} {p50:>9.1} {p90:>9.1} {:>6.2}",
                p50 / b
            );
        }
    }

    // Memory: the cache alone, loaded with the claims of 100,000 Pods admitted into a /8, in a
    // fresh process (so that memory freed by the runs above does not hide the growth).
    let (_, effects, hooks) = setup("10.0.0.0/8");
    for i in 0..cap {
        if admit(&hooks, i, &mut 0.0).await.is_none() {
            panic!("Pod {i} refused while filling the /8");
        }
    }
    drop(hooks);
    let path = std::env::temp_dir().join(format!("aipam-claims-{}.jsonl", std::process::id()));
    let mut lines = String::new();
    effects.with(|s| {
        for c in s.claims.values() {
            if let Ok(l) = serde_json::to_string(c) {
                lines.push_str(&l);
                lines.push('\n');
            }
        }
    });
    if let Err(e) = std::fs::write(&path, &lines) {
        panic!("writing {}: {e}", path.display());
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let out = std::process::Command::new(exe)
        .env(LOAD_ENV, &path)
        .output()
        .unwrap_or_else(|e| panic!("running the memory probe: {e}"));
    let _ = std::fs::remove_file(&path);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

/// Set to a file of claims (JSON lines): measure the cache's resident memory holding them.
const LOAD_ENV: &str = "ADMISSION_COST_MEMORY_PROBE";

fn memory_probe(path: &str) {
    let cache = synced_cache();
    if let Err(e) = load(&world("10.0.0.0/8"), &cache, &MemoryEffects::new()) {
        panic!("{e}");
    }
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let before = resident_kib();
    let mut bytes_json = 0usize;
    for line in text.lines() {
        bytes_json += line.len();
        match serde_json::from_str(line) {
            Ok(c) => cache.apply(Object::Claim(c)),
            Err(e) => panic!("a claim line: {e}"),
        }
    }
    let after = resident_kib();
    let n = cache.claims().len().max(1) as u64;
    let grown = after.saturating_sub(before);
    println!(
        "webhook cache holding a /8 pool and {n} reservations: +{} MiB resident, {} bytes per reservation (a claim is {} bytes as JSON)",
        grown / 1024,
        grown * 1024 / n,
        bytes_json as u64 / n
    );
}
