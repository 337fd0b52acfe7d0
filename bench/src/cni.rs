//! Item 6: the CNI binary `spiderpool` — whole-process time of ADD against the API server on
//! loopback, peak memory of the process, stripped binary size; beside it (issue 15, item 5),
//! Debian's `host-local` IPAM plugin run the same way, in the same run, on the same machine:
//! the floor of an IPAM plugin process that reads no API.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aipam_crds::SpiderEndpoint;
use aipam_e2e::{bin_path, wait_for, Env, Options};
use anyhow::{anyhow, Context, Result};
use kube::api::Api;
use serde_json::{json, Value};

use crate::common::{self, json_line, r3, table, Stats};

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// ADD runs timed.
    pub runs: usize,
    /// ADD runs measured for peak memory (under `/usr/bin/time`).
    pub mem_runs: usize,
}

struct Invocation {
    bin: std::path::PathBuf,
    conf: String,
    env: Vec<(String, String)>,
    /// Give each run its own `CNI_CONTAINERID` (host-local allocates one address per id).
    fresh_ids: Option<std::sync::atomic::AtomicUsize>,
}

impl Invocation {
    fn command(&self, wrapper: Option<&Path>) -> Command {
        let mut c = match wrapper {
            Some(w) => {
                let mut c = Command::new("/usr/bin/time");
                c.arg("-f").arg("%M").arg("-o").arg(w).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(n) = &self.fresh_ids {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            c.env("CNI_CONTAINERID", format!("bench-host-local-{i}"));
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs ADD once; the whole-process time and the result.
    fn run(&self, wrapper: Option<&Path>) -> Result<(Duration, Value)> {
        let t = Instant::now();
        let mut child = self
            .command(wrapper)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(self.conf.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        let took = t.elapsed();
        let v: Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "{}'s stdout: {} (stderr: {})",
                self.bin.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        if !out.status.success() {
            return Err(anyhow!("ADD failed: {v}"));
        }
        Ok((took, v))
    }
}

pub async fn run(sizes: Sizes) -> Result<Value> {
    let env = Env::start(Options {
        operator: false,
        ..Options::default()
    })
    .await?;
    let ns = "bench-cni";
    common::apply_all(
        &env,
        &[
            common::namespace(ns, json!({})),
            common::ippool(
                "cni-v4",
                "10.20.0.0/16",
                "10.20.0.10-10.20.0.250",
                Some("10.20.0.1"),
            ),
            common::spiderpool_conf(&["cni-v4"], &[]),
        ],
    )
    .await?;
    let template = common::pod(ns, "cni", json!({}));
    common::wait_admits(&env.client, ns, &template, 1).await?;
    // The Pod whose reservation the plugin reads back.
    let load = common::create_pods(&env.client, ns, 1, 1, move |_| template.clone()).await?;
    let pod = load
        .pods
        .first()
        .ok_or_else(|| anyhow!("the Pod was not admitted: {:?}", load.refused))?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let eps: Api<SpiderEndpoint> = Api::namespaced(env.client.clone(), ns);
    wait_for("the Pod's SpiderEndpoint", Duration::from_secs(20), || {
        let (eps, name) = (eps.clone(), name.clone());
        async move {
            let ep = eps.get_opt(&name).await.ok()??;
            (!ep.status?.current.ips.is_empty()).then_some(())
        }
    })
    .await?;

    let bin = bin_path("spiderpool")?;
    let inv = Invocation {
        conf: json!({
            "cniVersion": "1.0.0", "name": "bench", "type": "macvlan",
            "ipam": {"type": "spiderpool", "kubeconfig": env.kubeconfig.display().to_string(),
                     "timeout_seconds": 10}
        })
        .to_string(),
        env: vec![
            ("CNI_COMMAND".into(), "ADD".into()),
            ("CNI_CONTAINERID".into(), format!("bench-{uid}")),
            ("CNI_NETNS".into(), format!("/var/run/netns/bench-{name}")),
            ("CNI_IFNAME".into(), "eth0".into()),
            (
                "CNI_PATH".into(),
                bin.parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            (
                "CNI_ARGS".into(),
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_UID={uid}"
                ),
            ),
        ],
        bin: bin.clone(),
        fresh_ids: None,
    };
    // host-local, the IPAM plugin that reads no API, run the same way on the same machine.
    let host_local = Invocation {
        bin: "/usr/lib/cni/host-local".into(),
        conf: json!({
            "cniVersion": "1.0.0", "name": "bench-host-local", "type": "macvlan",
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.21.0.0/16"}]],
                     "dataDir": env.dir().join("host-local").display().to_string()}
        })
        .to_string(),
        env: inv
            .env
            .iter()
            .filter(|(k, _)| k != "CNI_CONTAINERID" && k != "CNI_PATH")
            .cloned()
            .chain([("CNI_PATH".to_string(), "/usr/lib/cni".to_string())])
            .collect(),
        fresh_ids: Some(Default::default()),
    };
    // Warm-up (page cache, the stand-in's first TLS sessions), then the timed runs, one after
    // another as a runtime calls the plugin.
    let mut first = Value::Null;
    for _ in 0..3 {
        first = inv.run(None)?.1;
    }
    let inv = std::sync::Arc::new(inv);
    let runs = sizes.runs;
    let timed = {
        let inv = inv.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<Duration>> {
            (0..runs).map(|_| inv.run(None).map(|r| r.0)).collect()
        })
        .await??
    };
    let stats = Stats::of(&timed);
    for _ in 0..3 {
        host_local.run(None)?;
    }
    let hl_timed = tokio::task::spawn_blocking(move || -> Result<Vec<Duration>> {
        (0..runs)
            .map(|_| host_local.run(None).map(|r| r.0))
            .collect()
    })
    .await??;
    let hl = Stats::of(&hl_timed);
    // Peak memory, per process, with /usr/bin/time (when present).
    let mem_runs = sizes.mem_runs;
    let peak_kib: Option<Vec<u64>> = if Path::new("/usr/bin/time").is_file() {
        let inv = inv.clone();
        let dir = env.dir().to_path_buf();
        Some(
            tokio::task::spawn_blocking(move || -> Result<Vec<u64>> {
                let f = dir.join("cni-time.txt");
                (0..mem_runs)
                    .map(|_| {
                        inv.run(Some(&f))?;
                        let t = std::fs::read_to_string(&f)?;
                        t.lines()
                            .rev()
                            .find_map(|l| l.trim().parse::<u64>().ok())
                            .ok_or_else(|| anyhow!("/usr/bin/time wrote {t:?}"))
                    })
                    .collect()
            })
            .await??,
        )
    } else {
        None
    };
    let peak_max = peak_kib.as_ref().and_then(|v| v.iter().max().copied());
    let peak_med = peak_kib.as_ref().map(|v| {
        let mut s = v.clone();
        s.sort_unstable();
        s[s.len() / 2]
    });
    // Sizes: as built, and stripped.
    let size = std::fs::metadata(&bin)?.len();
    let stripped = env.dir().join("spiderpool.stripped");
    std::fs::copy(&bin, &stripped)?;
    let stripped_size = match Command::new("strip").arg(&stripped).status() {
        Ok(s) if s.success() => Some(std::fs::metadata(&stripped)?.len()),
        _ => None,
    };
    env.stop().await;

    let mb = |b: u64| format!("{:.2} MB", b as f64 / 1e6);
    table(
        &format!(
            "cni: the spiderpool binary, ADD against {} on loopback",
            aipam_e2e::env::api_in_use()
        ),
        &["what", "figure"],
        &[
            vec![
                format!("ADD whole process, {} runs", stats.n),
                format!(
                    "median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    stats.p50_ms, stats.p99_ms, stats.max_ms
                ),
            ],
            vec![
                format!("host-local ADD whole process, same run, {} runs", hl.n),
                format!(
                    "median {:.2} ms, p99 {:.2} ms (ours / host-local median: {:.2}x)",
                    hl.p50_ms,
                    hl.p99_ms,
                    stats.p50_ms / hl.p50_ms.max(1e-9)
                ),
            ],
            vec![
                format!("peak RSS (ru_maxrss), {mem_runs} runs"),
                match (peak_med, peak_max) {
                    (Some(m), Some(x)) => format!(
                        "median {:.2} MiB, max {:.2} MiB",
                        m as f64 / 1024.0,
                        x as f64 / 1024.0
                    ),
                    _ => "n/a (no /usr/bin/time)".to_string(),
                },
            ],
            vec!["binary as built".to_string(), mb(size)],
            vec![
                "binary stripped".to_string(),
                stripped_size.map_or("n/a (no strip)".to_string(), mb),
            ],
        ],
    );
    let out = json!({
        "add": stats.json(),
        "host_local_add": hl.json(),
        "ratio_add_p50_ours_over_host_local": r3(stats.p50_ms / hl.p50_ms.max(1e-9)),
        "peak_rss_kib": {"median": peak_med, "max": peak_max, "runs": mem_runs},
        "binary_bytes": size, "stripped_bytes": stripped_size,
        "result_ips": first.get("ips").cloned().unwrap_or(Value::Null),
        "mean_ms": r3(stats.mean_ms),
    });
    json_line("cni", out.clone());
    Ok(out)
}
