//! The collector's full scan at 100,000 reservations: time and memory.
//! `cargo bench -p aipam-operator --bench gc_scan` (`GC_SCAN_PODS=N` to change the count).
//!
//! The objects are real: Pods admitted through the webhook's Pod hook (in memory), carrying
//! the `aipam.io/reservation` annotation it writes, with their claims as it creates them. A scan
//! is what `collect::scan` does before it talks to the API: index the cached Pods
//! (`PodView::from_pod` + `World::new`, as `Ctx::world` does) and judge every claim (the scan
//! reads the claim store's own Arcs; the copy it used to make is timed beside, for the record). Reported: each step's median over 7 scans, the verdicts
//! (every Pod is alive, so every claim must be kept: a delete here would be a bug), and the
//! resident memory of holding the Pods and claims (what the operator's reflector stores hold).

use std::sync::Arc;
use std::time::Instant;

use aipam_crds::SpiderIPClaim;
use aipam_operator::run::slim;
use aipam_rules::claims::{judge_claim, ClaimVerdict};
use aipam_rules::world::{PodView, Rules, World};
use aipam_webhook::pod::PodHooks;
use aipam_webhook::testkit::{apply_patch, load, pod_create, resident_kib, synced_cache};
use aipam_webhook::MemoryEffects;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

const WORLD: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: bench
  annotations:
    ipam.spidernet.io/default-ipv4-ippool: '["bench-pool"]'
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: bench-pool}
spec:
  subnet: 10.0.0.0/8
  ips: [10.0.0.1-10.255.255.254]
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Some(dir) = std::env::var_os(PROBE_ENV) {
        probe(std::path::Path::new(&dir));
        return;
    }
    let n: u64 = std::env::var("GC_SCAN_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let cache = synced_cache();
    let effects = Arc::new(MemoryEffects::new());
    if let Err(e) = load(WORLD, &cache, &effects) {
        panic!("loading the bench world: {e}");
    }
    let hooks = PodHooks::new(cache, effects.clone());
    let t = Instant::now();
    let mut pods_json: Vec<Value> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p-{i}"), "namespace": "bench", "uid": format!("uid-{i}"),
                         "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "c", "image": "registry.example/team/app:1.4.2",
                                     "args": ["--listen=:8080", "--log-level=info"],
                                     "env": [{"name": "MODE", "value": "production"}],
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                                     "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}}}]}
        });
        let Ok(req) = pod_create(&format!("uid-{i}"), &pod, false) else {
            panic!("building the request for Pod {i}");
        };
        let resp = hooks.mutate(&req).await;
        if !resp.allowed {
            panic!("Pod {i} refused: {:?}", resp.result.message);
        }
        match apply_patch(&pod, &resp) {
            Ok(mut p) => {
                // Scheduled and running, as the collector finds a live Pod.
                p["spec"]["nodeName"] = json!(format!("node-{}", i % 100));
                p["status"] = json!({"phase": "Running"});
                pods_json.push(p)
            }
            Err(e) => panic!("Pod {i}: {e}"),
        }
    }
    eprintln!("admitted {n} Pods in {:.1} s", t.elapsed().as_secs_f64());
    drop(hooks);
    // Measure in a fresh process, so that memory freed above does not hide the growth.
    let dir = std::env::temp_dir().join(format!("aipam-gc-scan-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("{}: {e}", dir.display());
    }
    let mut pods_text = String::new();
    for p in &pods_json {
        pods_text.push_str(&p.to_string());
        pods_text.push('\n');
    }
    let mut claims_text = String::new();
    effects.with(|s| {
        for c in s.claims.values() {
            if let Ok(l) = serde_json::to_string(c) {
                claims_text.push_str(&l);
                claims_text.push('\n');
            }
        }
    });
    for (name, text) in [("pods.jsonl", &pods_text), ("claims.jsonl", &claims_text)] {
        if let Err(e) = std::fs::write(dir.join(name), text) {
            panic!("writing {name}: {e}");
        }
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let status = std::process::Command::new(exe)
        .env(PROBE_ENV, &dir)
        .status()
        .unwrap_or_else(|e| panic!("running the scan probe: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(status.code().unwrap_or(1));
}

/// Set to a directory holding pods.jsonl and claims.jsonl: load them and time the scans.
const PROBE_ENV: &str = "GC_SCAN_PROBE";

fn read_lines<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    prepare: fn(&mut T),
) -> Vec<Arc<T>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::BufReader::new(file)
        .lines()
        .map(|l| {
            let l = l.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut o: T =
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            prepare(&mut o);
            Arc::new(o)
        })
        .collect()
}

fn probe(dir: &std::path::Path) {
    let before = resident_kib();
    // As the operator's Pod cache holds them (`run::slim`, applied as each Pod is read, as the
    // watch does, so the memory measured is what is retained).
    // `GC_SCAN_UNSLIMMED=1`: whole Pods, as the cache held them before.
    let prepare: fn(&mut Pod) = if std::env::var_os("GC_SCAN_UNSLIMMED").is_some() {
        |_| {}
    } else {
        slim::<Pod>
    };
    let pods: Vec<Arc<Pod>> = read_lines(&dir.join("pods.jsonl"), prepare);
    let claims: Vec<Arc<SpiderIPClaim>> =
        read_lines(&dir.join("claims.jsonl"), slim::<SpiderIPClaim>);
    let after = resident_kib();
    let n = pods.len().max(1) as u64;
    let rules = Rules::default();
    let (mut t_world, mut t_copy, mut t_judge) = (Vec::new(), Vec::new(), Vec::new());
    let mut kept = 0usize;
    let mut deleted = 0usize;
    for _ in 0..7 {
        let t = Instant::now();
        let world = World::new(pods.iter().filter_map(|p| PodView::from_pod(p)).collect());
        t_world.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let copy: Vec<SpiderIPClaim> = claims.iter().map(|c| (**c).clone()).collect();
        t_copy.push(t.elapsed().as_secs_f64() * 1e3);
        let now = Timestamp::now();
        let t = Instant::now();
        kept = 0;
        deleted = 0;
        for c in &copy {
            match judge_claim(c, &world, now, &rules) {
                ClaimVerdict::Delete { .. } => deleted += 1,
                _ => kept += 1,
            }
        }
        t_judge.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (w, c, j) = (median(t_world), median(t_copy), median(t_judge));
    println!(
        "collector scan over {} Pods and {} claims, median of 7, milliseconds:",
        pods.len(),
        claims.len()
    );
    println!("  index the Pods (PodView::from_pod + World::new)  {w:>9.1}");
    println!("  (copying the claim store, as scan did before)    {c:>9.1}");
    println!("  judge every claim (claims::judge_claim)          {j:>9.1}");
    println!(
        "  scan total (index + judge)                       {:>9.1}",
        w + j
    );
    println!("  verdicts: {kept} kept, {deleted} to delete (all Pods alive: must be 0)");
    println!(
        "  resident memory of the Pods and claims held: {} MiB ({} bytes per Pod with its claim)",
        after.saturating_sub(before) / 1024,
        after.saturating_sub(before) * 1024 / n
    );
    if deleted > 0 {
        std::process::exit(1);
    }
}
