//! Item 2: a baseline allocator with the design Spiderpool and Whereabouts use — every
//! allocation of a pool in one status object (`SpiderIPPool.status.allocatedIPs`, the field
//! Spiderpool keeps), updated with optimistic concurrency — served as a real HTTPS mutating
//! admission webhook (a separate process: `aipam-bench serve-baseline`), registered with the
//! stand-in in place of ours.
//!
//! Per Pod: GET the pool, pick a free address not in its allocation map (at random, as
//! Spiderpool does), PUT the status back with the resourceVersion read, retry on 409 Conflict
//! (up to `MAX_ATTEMPTS`, with a short jittered back-off); then answer a JSON Patch that records
//! the address in a Pod annotation.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aipam_crds::SpiderIPPool;
use aipam_e2e::{Env, Options};
use anyhow::{anyhow, Context, Result};
use axum::body::Bytes;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, DeleteParams, PostParams};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::common::{self, json_line, r3, table, Stats};

/// The pool the baseline allocates from.
pub const POOL: &str = "baseline-v4";
/// Attempts per allocation before the Pod is refused (Whereabouts retries 100 times).
const MAX_ATTEMPTS: u32 = 100;
/// The Pod annotation the baseline records the address in.
const ANNOTATION: &str = "baseline.aipam.io/ip";

/// Counters of the baseline webhook, served as JSON on its plain port (`GET /stats`).
#[derive(Debug, Default)]
struct Counters {
    allocations: AtomicU64,
    conflicts: AtomicU64,
    gets: AtomicU64,
    refused: AtomicU64,
}

struct Baseline {
    pools: Api<SpiderIPPool>,
    counters: Counters,
}

/// A small deterministic generator (SplitMix64), seeded per request.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn seed_of(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The first IPv4 range of a pool (`a-b` or one address).
fn range(pool: &SpiderIPPool) -> Result<(u32, u32)> {
    let r = pool
        .spec
        .ips
        .as_ref()
        .and_then(|v| v.first())
        .ok_or_else(|| anyhow!("pool {POOL} has no spec.ips"))?;
    let (a, b) = r.split_once('-').unwrap_or((r, r));
    let a: Ipv4Addr = a.trim().parse()?;
    let b: Ipv4Addr = b.trim().parse()?;
    Ok((u32::from(a), u32::from(b)))
}

impl Baseline {
    /// Allocates one address for the request `uid`; the address and the attempts it took.
    async fn allocate(&self, uid: &str, pod: &str) -> Result<(Ipv4Addr, u32)> {
        let mut rng = seed_of(uid);
        for attempt in 1..=MAX_ATTEMPTS {
            self.counters.gets.fetch_add(1, Ordering::Relaxed);
            let mut pool = self.pools.get(POOL).await?;
            let (lo, hi) = range(&pool)?;
            let status = pool.status.get_or_insert_with(Default::default);
            let mut map: BTreeMap<String, Value> = match status.allocated_ips.as_deref() {
                Some(s) if !s.is_empty() => serde_json::from_str(s)?,
                _ => BTreeMap::new(),
            };
            let size = u64::from(hi - lo) + 1;
            if map.len() as u64 >= size {
                return Err(anyhow!("pool {POOL}: no free address left"));
            }
            // Random start, then the next free address.
            let start = splitmix(&mut rng) % size;
            let ip = (0..size)
                .map(|k| Ipv4Addr::from(lo + ((start + k) % size) as u32))
                .find(|ip| !map.contains_key(&ip.to_string()))
                .ok_or_else(|| anyhow!("pool {POOL}: no free address left"))?;
            map.insert(
                ip.to_string(),
                json!({"interface": "eth0", "pod": pod, "podUid": uid}),
            );
            status.allocated_ip_count = Some(map.len() as i64);
            status.allocated_ips = Some(serde_json::to_string(&map)?);
            match self
                .pools
                .replace_status(POOL, &PostParams::default(), &pool)
                .await
            {
                Ok(_) => {
                    self.counters.allocations.fetch_add(1, Ordering::Relaxed);
                    return Ok((ip, attempt));
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    self.counters.conflicts.fetch_add(1, Ordering::Relaxed);
                    // Jittered back-off, growing to 32 ms.
                    let cap = 1u64 << attempt.min(5);
                    let ms = splitmix(&mut rng) % cap;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(anyhow!(
            "pool {POOL}: {MAX_ATTEMPTS} conflicting updates in a row"
        ))
    }

    async fn review(&self, body: &[u8]) -> Value {
        let review: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let req = review.get("request").cloned().unwrap_or(Value::Null);
        let uid = req
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let s = |p: &str| req.pointer(p).and_then(Value::as_str).unwrap_or("");
        let pod = format!(
            "{}/{}",
            s("/namespace"),
            if s("/object/metadata/name").is_empty() {
                s("/object/metadata/generateName")
            } else {
                s("/object/metadata/name")
            }
        );
        let mut response = json!({"uid": uid, "allowed": true});
        if req.get("dryRun").and_then(Value::as_bool) != Some(true) {
            match self.allocate(&uid, &pod).await {
                Ok((ip, _)) => {
                    let has = req.pointer("/object/metadata/annotations").is_some();
                    let patch = if has {
                        json!([{"op": "add", "path": format!("/metadata/annotations/{}", ANNOTATION.replace('/', "~1")), "value": ip.to_string()}])
                    } else {
                        json!([{"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION: ip.to_string()}}])
                    };
                    response["patchType"] = json!("JSONPatch");
                    response["patch"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
                }
                Err(e) => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    response["allowed"] = json!(false);
                    response["status"] = json!({"code": 403, "message": e.to_string()});
                }
            }
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
    }

    fn stats(&self) -> Value {
        let c = &self.counters;
        json!({
            "allocations": c.allocations.load(Ordering::Relaxed),
            "conflicts": c.conflicts.load(Ordering::Relaxed),
            "gets": c.gets.load(Ordering::Relaxed),
            "refused": c.refused.load(Ordering::Relaxed),
        })
    }
}

/// `aipam-bench serve-baseline`: the baseline webhook process.
pub async fn serve(
    kubeconfig: PathBuf,
    listen: SocketAddr,
    stats_listen: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
) -> Result<()> {
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let state = Arc::new(Baseline {
        pools: Api::all(client),
        counters: Counters::default(),
    });

    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&std::fs::read(&cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("reading the certificate: {e:?}"))?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&std::fs::read(&key)?)
        .map_err(|e| anyhow!("reading the key: {e:?}"))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let hooks = {
        let state = state.clone();
        Router::new().route(
            "/mutate-pod",
            post(move |body: Bytes| {
                let state = state.clone();
                async move { axum::Json(state.review(&body).await) }
            }),
        )
    };
    let plain = {
        let state = state.clone();
        Router::new()
            .route("/readyz", get(|| async { "ok" }))
            .route(
                "/stats",
                get(move || {
                    let state = state.clone();
                    async move { axum::Json(state.stats()) }
                }),
            )
    };
    let plain_listener = TcpListener::bind(stats_listen).await?;
    tokio::spawn(async move {
        let _ = axum::serve(plain_listener, plain).await;
    });
    let listener = TcpListener::bind(listen).await?;
    let builder = Builder::new(TokioExecutor::new());
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, builder) = (acceptor.clone(), builder.clone());
        let service = TowerToHyperService::new(hooks.clone());
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(tcp).await {
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            }
        });
    }
}

/// The baseline webhook process, killed on drop.
struct BaselineProcess {
    child: Child,
    stats: SocketAddr,
}

impl Drop for BaselineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Starts the baseline webhook process and registers it in place of ours.
async fn start_baseline(env: &Env) -> Result<BaselineProcess> {
    let err = |e: rcgen::Error| anyhow!("generating certificates: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "baseline CA");
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "baseline-webhook");
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;
    let dir = env.dir();
    let (cert_path, key_path) = (dir.join("baseline.crt"), dir.join("baseline.key"));
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;
    let (listen, stats) = (free_port()?, free_port()?);
    let log = std::fs::File::create(dir.join("baseline.log"))?;
    let child = Command::new(std::env::current_exe()?)
        .arg("serve-baseline")
        .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
        .arg(format!("--listen={listen}"))
        .arg(format!("--stats-listen={stats}"))
        .arg(format!("--tls-cert={}", cert_path.display()))
        .arg(format!("--tls-key={}", key_path.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the baseline webhook")?;
    let proc = BaselineProcess { child, stats };
    aipam_e2e::wait_for("the baseline webhook", Duration::from_secs(20), || async {
        common::http_get(stats, "/readyz").ok().map(|_| ())
    })
    .await?;
    // Ours out, the baseline in.
    remove_our_webhooks(&env.client).await?;
    let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca.pem());
    let cfg: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "baseline"},
        "webhooks": [{
            "name": "pods.baseline.bench.aipam.io", "admissionReviewVersions": ["v1"],
            "sideEffects": "NoneOnDryRun", "failurePolicy": "Fail", "timeoutSeconds": 10,
            "clientConfig": {"url": format!("https://{listen}/mutate-pod"), "caBundle": ca_b64},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                "operator": "NotIn", "values": ["kube-system", "aipam-system"]}]}
        }]
    }))?;
    Api::<MutatingWebhookConfiguration>::all(env.client.clone())
        .create(&PostParams::default(), &cfg)
        .await?;
    Ok(proc)
}

/// Deletes the project's webhook configurations (returns them, to put them back).
pub async fn remove_our_webhooks(
    client: &kube::Client,
) -> Result<(
    Option<MutatingWebhookConfiguration>,
    Option<ValidatingWebhookConfiguration>,
)> {
    let m: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let v: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let name = "aipam-webhook";
    let (mo, vo) = (m.get_opt(name).await?, v.get_opt(name).await?);
    if mo.is_some() {
        m.delete(name, &DeleteParams::default()).await?;
    }
    if vo.is_some() {
        v.delete(name, &DeleteParams::default()).await?;
    }
    Ok((mo, vo))
}

/// Puts back what [`remove_our_webhooks`] removed.
pub async fn restore_our_webhooks(
    client: &kube::Client,
    saved: (
        Option<MutatingWebhookConfiguration>,
        Option<ValidatingWebhookConfiguration>,
    ),
) -> Result<()> {
    if let Some(mut m) = saved.0 {
        m.metadata.resource_version = None;
        m.metadata.uid = None;
        Api::<MutatingWebhookConfiguration>::all(client.clone())
            .create(&PostParams::default(), &m)
            .await?;
    }
    if let Some(mut v) = saved.1 {
        v.metadata.resource_version = None;
        v.metadata.uid = None;
        Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .create(&PostParams::default(), &v)
            .await?;
    }
    Ok(())
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub pods: usize,
    pub concurrency: usize,
}

/// One design's figures.
#[derive(Debug)]
pub struct DesignRun {
    pub load: common::Load,
    pub writes: BTreeMap<String, u64>,
}

/// Runs the single-stack load through our webhook, then through the baseline, each in a fresh
/// environment (no operator for either: only the admission path is measured).
pub async fn run(sizes: Sizes) -> Result<Value> {
    // Ours.
    let ours = {
        let env = Env::start(Options {
            operator: false,
            ..Options::default()
        })
        .await?;
        let ns = "bench-ours";
        common::apply_all(
            &env,
            &[
                common::namespace(ns, json!({})),
                common::ippool(
                    "ours-v4",
                    "10.30.0.0/16",
                    "10.30.0.10-10.30.255.250",
                    Some("10.30.0.1"),
                ),
                common::spiderpool_conf(&["ours-v4"], &[]),
            ],
        )
        .await?;
        let template = common::pod(ns, "ours", json!({}));
        common::wait_admits(&env.client, ns, &template, 1).await?;
        let before = env.write_counts().await?;
        let load = common::create_pods(&env.client, ns, sizes.pods, sizes.concurrency, move |_| {
            template.clone()
        })
        .await?;
        let writes = common::write_delta(&before, &env.write_counts().await?);
        env.stop().await;
        DesignRun { load, writes }
    };
    // The baseline.
    let (base, stats) = {
        let env = Env::start(Options {
            operator: false,
            ..Options::default()
        })
        .await?;
        let ns = "bench-baseline";
        // The pool first, while our pool validation is still registered (it is a valid pool).
        common::apply_all(
            &env,
            &[
                common::namespace(ns, json!({})),
                common::ippool(
                    POOL,
                    "10.40.0.0/16",
                    "10.40.0.10-10.40.255.250",
                    Some("10.40.0.1"),
                ),
            ],
        )
        .await?;
        let proc = start_baseline(&env).await?;
        let template = common::pod(ns, "base", json!({}));
        // Probe until the stand-in calls the baseline.
        let probe = template.clone();
        aipam_e2e::wait_for("the baseline to admit", Duration::from_secs(20), || {
            let (client, probe) = (env.client.clone(), probe.clone());
            async move {
                let l = common::create_pods(&client, ns, 1, 1, move |_| probe.clone())
                    .await
                    .ok()?;
                l.pods
                    .first()
                    .and_then(|p| p.metadata.annotations.as_ref()?.get(ANNOTATION).cloned())
                    .map(|_| ())
            }
        })
        .await?;
        let s0: Value = serde_json::from_str(&common::http_get(proc.stats, "/stats")?)?;
        let before = env.write_counts().await?;
        let load = common::create_pods(&env.client, ns, sizes.pods, sizes.concurrency, move |_| {
            template.clone()
        })
        .await?;
        let writes = common::write_delta(&before, &env.write_counts().await?);
        let s1: Value = serde_json::from_str(&common::http_get(proc.stats, "/stats")?)?;
        let d = |k: &str| {
            s1.get(k).and_then(Value::as_u64).unwrap_or(0)
                - s0.get(k).and_then(Value::as_u64).unwrap_or(0)
        };
        let stats = json!({"allocations": d("allocations"), "conflicts": d("conflicts"),
                           "gets": d("gets"), "refused": d("refused")});
        // Every admitted Pod has a distinct address.
        let mut seen = std::collections::BTreeSet::new();
        for p in &load.pods {
            if let Some(a) = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION))
            {
                if !seen.insert(a.clone()) {
                    return Err(anyhow!("the baseline gave {a} twice"));
                }
            }
        }
        drop(proc);
        env.stop().await;
        (DesignRun { load, writes }, stats)
    };

    let o = Stats::of(&ours.load.latencies);
    let b = Stats::of(&base.load.latencies);
    let allocs = stats
        .get("allocations")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let conflicts = stats.get("conflicts").and_then(Value::as_u64).unwrap_or(0);
    let cpa = conflicts as f64 / allocs.max(1) as f64;
    let wpp = |d: &DesignRun| {
        let total: u64 = d.writes.values().sum();
        let pods = d.writes.get("pods").copied().unwrap_or(0);
        (total.saturating_sub(pods)) as f64 / d.load.pods.len().max(1) as f64
    };
    let ratio = ours.load.rate() / base.load.rate().max(1e-9);
    table(
        &format!(
            "baseline: {} single-stack Pods, {} concurrent creates, one webhook replica",
            sizes.pods, sizes.concurrency
        ),
        &[
            "design",
            "admitted",
            "refused",
            "errors",
            "Pods/s",
            "p50 ms",
            "p99 ms",
            "writes/Pod (not the Pod)",
            "conflicts/alloc",
        ],
        &[
            vec![
                "aipam (claim per address)".into(),
                ours.load.pods.len().to_string(),
                ours.load.refused.len().to_string(),
                ours.load.errors.len().to_string(),
                format!("{:.1}", ours.load.rate()),
                format!("{:.1}", o.p50_ms),
                format!("{:.1}", o.p99_ms),
                format!("{:.2}", wpp(&ours)),
                "-".into(),
            ],
            vec![
                "baseline (one status map, OCC)".into(),
                base.load.pods.len().to_string(),
                base.load.refused.len().to_string(),
                base.load.errors.len().to_string(),
                format!("{:.1}", base.load.rate()),
                format!("{:.1}", b.p50_ms),
                format!("{:.1}", b.p99_ms),
                format!("{:.2}", wpp(&base)),
                format!("{cpa:.2}"),
            ],
        ],
    );
    println!(
        "ratio ours/baseline: throughput {ratio:.2}x, p50 {:.2}x lower, p99 {:.2}x lower",
        b.p50_ms / o.p50_ms.max(1e-9),
        b.p99_ms / o.p99_ms.max(1e-9)
    );
    let out = json!({
        "pods": sizes.pods, "concurrency": sizes.concurrency,
        "ours": {"admitted": ours.load.pods.len(), "refused": ours.load.refused.len(),
                 "errors": ours.load.errors.len(), "pods_per_s": r3(ours.load.rate()),
                 "latency": o.json(), "writes": ours.writes, "writes_per_pod_excl_pod": r3(wpp(&ours))},
        "baseline": {"admitted": base.load.pods.len(), "refused": base.load.refused.len(),
                 "errors": base.load.errors.len(), "pods_per_s": r3(base.load.rate()),
                 "latency": b.json(), "writes": base.writes, "writes_per_pod_excl_pod": r3(wpp(&base)),
                 "webhook": stats, "conflicts_per_allocation": r3(cpa),
                 "first_refusal": base.load.refused.first()},
        "ratio_throughput_ours_over_baseline": r3(ratio),
        "ratio_p50_baseline_over_ours": r3(b.p50_ms / o.p50_ms.max(1e-9)),
    });
    json_line("baseline", out.clone());
    Ok(out)
}
