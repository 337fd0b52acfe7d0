//! Issue 15, item 3: huge pools. A /8 IPv4 and a /64 IPv6 range with L live addresses (the
//! first L of the range, one contiguous block: what sequential allocation leaves), against a
//! /24 with none; time per allocation, each IPAM against itself:
//!
//! - host-local: its ADD process, the data directory filled with L files as its own ADDs write
//!   them;
//! - Whereabouts: its ADD process against the real API server, its IPPool filled with L
//!   allocations as its own ADDs write them (one object holds them all);
//! - ours: a Pod create through the webhook (the allocation happens at admission), L
//!   SpiderIPClaims live.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aipam_core::reservation::ReservedAddress;
use aipam_crds::record::{claim_for, ClaimTarget};
use aipam_e2e::peers::{whereabouts_network, AddressRange, Ipam, WHEREABOUTS_CONF};
use aipam_e2e::{Env, Options};
use anyhow::{anyhow, Context, Result};
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{json, Value};

use crate::common::{self, json_line, r3, table, Stats};

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Live addresses in the /8 and the /64.
    pub live: usize,
    /// Allocations timed per pool.
    pub allocations: usize,
}

/// A pool shape: its name, subnet, first and last address, live addresses.
struct Shape {
    name: &'static str,
    subnet: &'static str,
    first: &'static str,
    last: &'static str,
    live: usize,
}

fn shapes(live: usize) -> [Shape; 3] {
    [
        Shape {
            name: "/24",
            subnet: "192.168.72.0/24",
            first: "192.168.72.1",
            last: "192.168.72.254",
            live: 0,
        },
        Shape {
            name: "/8",
            subnet: "10.0.0.0/8",
            first: "10.0.0.1",
            last: "10.255.255.254",
            live,
        },
        Shape {
            name: "/64",
            subnet: "fd00:72::/64",
            first: "fd00:72::1",
            last: "fd00:72::ffff:ffff:ffff:fffe",
            live,
        },
    ]
}

impl Shape {
    fn range(&self) -> AddressRange {
        AddressRange {
            subnet: self.subnet.to_string(),
            first: Some(self.first.to_string()),
            last: Some(self.last.to_string()),
        }
    }
    /// The `i`-th address of the range.
    fn nth(&self, i: usize) -> Result<IpAddr> {
        let first: IpAddr = self.first.parse()?;
        Ok(match first {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) + u32::try_from(i)?).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) + i as u128).into()),
        })
    }
    fn pool_name(&self) -> String {
        format!("huge-{}", self.name.trim_start_matches('/'))
    }
    fn is_v6(&self) -> bool {
        self.subnet.contains(':')
    }
}

/// Runs an IPAM plugin's ADD as a process; its whole time.
fn add(bin: &Path, conf: &str, env: &[(String, String)]) -> Result<Duration> {
    let t = Instant::now();
    let mut child = Command::new(bin)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(conf.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let took = t.elapsed();
    if !out.status.success() {
        return Err(anyhow!(
            "{} ADD failed: {} {}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(took)
}

fn cni_env(id: &str, path: &str) -> Vec<(String, String)> {
    [
        ("CNI_COMMAND", "ADD".to_string()),
        ("CNI_CONTAINERID", id.to_string()),
        ("CNI_NETNS", format!("/var/run/netns/{id}")),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_PATH", path.to_string()),
        (
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench-huge;K8S_POD_NAME={id};K8S_POD_UID={id}"
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// host-local: the data directory filled as its ADDs fill it, then timed ADDs.
async fn host_local(shape: &Shape, sizes: Sizes, dir: &Path) -> Result<Stats> {
    let data = dir.join(format!("host-local-{}", shape.pool_name()));
    let net = data.join("huge");
    std::fs::create_dir_all(&net)?;
    for i in 0..shape.live {
        let ip = shape.nth(i)?;
        std::fs::write(net.join(ip.to_string()), format!("prefill-{i}\r\neth0"))?;
    }
    if shape.live > 0 {
        std::fs::write(
            net.join("last_reserved_ip.0"),
            shape.nth(shape.live - 1)?.to_string(),
        )?;
    }
    let r = shape.range();
    let conf = json!({"cniVersion": "1.0.0", "name": "huge", "type": "bridge",
        "ipam": {"type": "host-local", "dataDir": data.display().to_string(),
                 "ranges": [[{"subnet": r.subnet, "rangeStart": r.first, "rangeEnd": r.last}]]}})
    .to_string();
    let n = sizes.allocations;
    let times = tokio::task::spawn_blocking(move || -> Result<Vec<Duration>> {
        (0..n + 2)
            .map(|i| {
                add(
                    Path::new("/usr/lib/cni/host-local"),
                    &conf,
                    &cni_env(&format!("hl-{i}"), "/usr/lib/cni"),
                )
            })
            .collect()
    })
    .await??;
    Ok(Stats::of(&times[2..]))
}

/// Whereabouts: its IPPool filled with allocations shaped as its first ADD wrote, then timed
/// ADDs of its plugin against the real API server.
async fn whereabouts(env: &Env, shape: &Shape, sizes: Sizes, bin: &Path) -> Result<Stats> {
    let log = env.dir().join("whereabouts-huge.log");
    let list = whereabouts_network(&shape.range(), &env.dir().join(WHEREABOUTS_CONF), &log);
    let mut conf = list["plugins"][0].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = json!(format!("huge-{}", shape.pool_name()));
    let conf = conf.to_string();
    let path = bin
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    // The first ADD makes the pool; read it back to learn its name and an allocation's shape.
    {
        let (bin, conf, path) = (bin.to_path_buf(), conf.clone(), path.clone());
        tokio::task::spawn_blocking(move || add(&bin, &conf, &cni_env("wa-first", &path)))
            .await??;
    }
    let gvk = GroupVersionKind::gvk("whereabouts.cni.cncf.io", "v1alpha1", "IPPool");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "ippools");
    let all: Api<DynamicObject> = Api::all_with(env.client.clone(), &ar);
    let pool = all
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .find(|p| {
            p.data
                .pointer("/spec/range")
                .and_then(Value::as_str)
                .is_some_and(|r| r == shape.subnet)
        })
        .ok_or_else(|| anyhow!("Whereabouts made no IPPool for {}", shape.subnet))?;
    let sample = pool
        .data
        .pointer("/spec/allocations")
        .and_then(Value::as_object)
        .and_then(|a| a.values().next().cloned())
        .ok_or_else(|| {
            anyhow!(
                "Whereabouts' IPPool for {} holds no allocation",
                shape.subnet
            )
        })?;
    if shape.live > 1 {
        // Offsets 2.. (its first ADD took offset 1, the range's first address).
        let mut allocations = BTreeMap::new();
        for i in 1..shape.live {
            let mut a = sample.clone();
            a["id"] = json!(format!("prefill-{i}"));
            a["podref"] = json!(format!("bench-huge/prefill-{i}"));
            allocations.insert((i + 1).to_string(), a);
        }
        let ns = pool.metadata.namespace.clone().unwrap_or_default();
        let name = pool.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &ns, &ar);
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"allocations": allocations}})),
        )
        .await
        .with_context(|| format!("filling Whereabouts' IPPool {ns}/{name}"))?;
    }
    let (bin, n) = (bin.to_path_buf(), sizes.allocations);
    let times = tokio::task::spawn_blocking(move || -> Result<Vec<Duration>> {
        (0..n + 2)
            .map(|i| add(&bin, &conf, &cni_env(&format!("wa-{i}"), &path)))
            .collect()
    })
    .await??;
    Ok(Stats::of(&times[2..]))
}

/// Ours: L SpiderIPClaims live in the pool, then timed Pod creates through the webhook.
async fn ours(env: &Env, shape: &Shape, sizes: Sizes) -> Result<Stats> {
    let ns = "bench-huge";
    let pool = shape.pool_name();
    let claims: Api<aipam_crds::SpiderIPClaim> = Api::all(env.client.clone());
    let made = futures::stream::iter(0..shape.live)
        .map(|i| {
            let (claims, pool) = (claims.clone(), pool.clone());
            async move {
                let addr = ReservedAddress {
                    pool,
                    address: shape.nth(i)?,
                };
                let reservation = format!("prefill-{i}");
                let name = format!("prefill-{i}");
                let c = claim_for(
                    &addr,
                    &ClaimTarget {
                        namespace: ns,
                        pod_name: Some(&name),
                        interface: "eth0",
                        reservation: &reservation,
                        owner: None,
                        provisional: false,
                    },
                );
                claims.create(&PostParams::default(), &c).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    for m in made {
        m?;
    }
    let family = if shape.is_v6() { "ipv6" } else { "ipv4" };
    let annotations = json!({"ipam.spidernet.io/ippool": json!({family: [pool]}).to_string()});
    let v4: Vec<&str> = if shape.is_v6() {
        vec![]
    } else {
        vec!["huge-24"]
    };
    let v6: Vec<&str> = if shape.is_v6() {
        vec!["huge-64"]
    } else {
        vec![]
    };
    common::apply_all(env, &[common::spiderpool_conf(&v4, &v6)]).await?;
    // Admitted with one address: the webhook has seen the configuration; then give the watch
    // time to deliver the claims (a missed one costs a 409 and a retry, which would be timed).
    let probe = common::pod(ns, "probe", annotations.clone());
    common::wait_admits(&env.client, ns, &probe, 1).await?;
    tokio::time::sleep(Duration::from_secs(2 + (shape.live / 2000) as u64)).await;
    let tpl = common::pod(ns, "huge", annotations);
    let load = common::create_pods(&env.client, ns, sizes.allocations + 2, 1, move |_| {
        tpl.clone()
    })
    .await?;
    if !load.refused.is_empty() || !load.errors.is_empty() {
        return Err(anyhow!(
            "ours, {}: {:?} {:?}",
            shape.name,
            load.refused,
            load.errors
        ));
    }
    Ok(Stats::of(&load.latencies[2..]))
}

pub async fn run(sizes: Sizes) -> Result<Value> {
    let shapes = shapes(sizes.live);
    let mut results: Vec<(String, Vec<Stats>)> = Vec::new();

    let env = Env::start(Options {
        operator: false,
        ..Options::default()
    })
    .await?;
    let mut hl = Vec::new();
    for s in &shapes {
        hl.push(host_local(s, sizes, env.dir()).await?);
    }
    results.push(("host-local (ADD process)".to_string(), hl));
    let ns = "bench-huge";
    let mut docs = vec![common::namespace(ns, json!({}))];
    for s in &shapes {
        docs.push(common::ippool(
            &s.pool_name(),
            s.subnet,
            &format!("{}-{}", s.first, s.last),
            None,
        ));
    }
    common::apply_all(&env, &docs).await?;
    let mut o = Vec::new();
    for s in &shapes {
        o.push(ours(&env, s, sizes).await?);
    }
    env.stop().await;
    results.push(("ours (Pod create through the webhook)".to_string(), o));

    let env = Env::start(Options {
        operator: false,
        ipam: Ipam::whereabouts(),
        ..Options::default()
    })
    .await?;
    let bin = aipam_e2e::peers::whereabouts_dir()?.join("whereabouts");
    let mut w = Vec::new();
    for s in &shapes {
        w.push(whereabouts(&env, s, sizes, &bin).await?);
    }
    env.stop().await;
    results.push(("Whereabouts (ADD process)".to_string(), w));

    let mut rows = Vec::new();
    let mut out = Vec::new();
    for (name, stats) in &results {
        let ms = |s: &Stats| format!("{:.2} / {:.2} ms", s.p50_ms, s.p99_ms);
        let ratio = |s: &Stats| r3(s.p50_ms / stats[0].p50_ms.max(1e-9));
        rows.push(vec![
            name.clone(),
            ms(&stats[0]),
            ms(&stats[1]),
            format!("{:.2}x", ratio(&stats[1])),
            ms(&stats[2]),
            format!("{:.2}x", ratio(&stats[2])),
        ]);
        out.push(json!({"ipam": name, "p24": stats[0].json(), "p8": stats[1].json(), "p64": stats[2].json(),
            "ratio_p8_over_p24": ratio(&stats[1]), "ratio_p64_over_p24": ratio(&stats[2])}));
    }
    table(
        &format!(
            "huge pools: time per allocation (p50 / p99 of {} in a row), a /24 empty against a /8 and a /64 with {} live",
            sizes.allocations, sizes.live
        ),
        &["IPAM", "/24, none live", "/8", "/8 vs /24", "/64", "/64 vs /24"],
        &rows,
    );
    let v = json!({"live": sizes.live, "allocations": sizes.allocations, "rows": out});
    json_line("huge", v.clone());
    Ok(v)
}
