//! `aipam-operator`: the controllers, under a Lease.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use aipam_core::config::{IpamConfig, CONFIGMAP_NAME};
use aipam_operator::leader::{Elector, LeaseConfig};
use aipam_operator::{start, Metrics, Settings};
use aipam_rules::world::Rules;
use anyhow::Context;
use clap::Parser;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::SignedDuration;
use kube::Api;

/// The aipam operator: binds admission-time reservations to their Pods, late binding for zone
/// pools, release, garbage collection, pool counters and finalizer.
#[derive(Parser, Debug)]
#[command(name = "aipam-operator", version)]
struct Args {
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "AIPAM_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    metrics_addr: SocketAddr,
    /// Namespace of the leader-election Lease (and of the spiderpool-conf ConfigMap).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-system")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "aipam-operator")]
    lease_name: String,
    /// This replica's identity in the Lease (defaults to the Pod name, else the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Renew deadline in seconds.
    #[arg(long, default_value_t = 10)]
    renew_deadline: u64,
    /// Retry period in seconds.
    #[arg(long, default_value_t = 2)]
    retry_period: u64,
    /// Run without leader election (a single replica only).
    #[arg(long)]
    no_leader_elect: bool,
    /// Interval of the full garbage-collection scan, e.g. `300s`, `5m`.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    gc_interval: Duration,
    /// Pool counters are recomputed at most this often, in milliseconds.
    #[arg(long, default_value_t = 500)]
    status_interval_ms: u64,
    /// A pool whose allocated share reaches this percentage gets a PoolNearlyFull warning
    /// event, and a Normal PoolBelowThreshold one when it goes back under; 0 turns it off.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(0..=100))]
    pool_fullness_percent: u8,
    /// Namespace of the spiderpool-conf ConfigMap (defaults to the Lease namespace).
    #[arg(long)]
    config_namespace: Option<String>,
    /// Overrides reservationGraceSeconds of spiderpool-conf.
    #[arg(long)]
    reservation_grace_seconds: Option<u64>,
    /// Release the addresses of stateless Pods stuck Terminating on a Ready node (`true` or
    /// `false`, as Go's strconv.ParseBool reads them). Overrides
    /// enableGCStatelessTerminatingPodOnReadyNode of spiderpool-conf (default true); the env
    /// name is Spiderpool's controller's.
    #[arg(
        long,
        env = "SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_READY_NODE_ENABLED",
        value_parser = parse_go_bool
    )]
    gc_stateless_terminating_pod_on_ready_node: Option<bool>,
    /// The same on a node that is not Ready or is gone. Overrides
    /// enableGCStatelessTerminatingPodOnNotReadyNode of spiderpool-conf (default true).
    #[arg(
        long,
        env = "SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_NOT_READY_NODE_ENABLED",
        value_parser = parse_go_bool
    )]
    gc_stateless_terminating_pod_on_not_ready_node: Option<bool>,
    /// Seconds waited beyond a Terminating Pod's grace period before that release. Overrides
    /// gcAdditionalGraceDelay of spiderpool-conf (default 0).
    #[arg(long, env = "SPIDERPOOL_GC_ADDITIONAL_GRACE_DELAY")]
    gc_additional_grace_delay: Option<u64>,
}

/// A boolean as Go's `strconv.ParseBool` reads it (Spiderpool reads its env vars so).
fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!("{other:?}: expected true or false")),
    }
}

/// The collector's rules: spiderpool-conf, then the flags (or their Spiderpool env vars).
fn rules_of(config: &IpamConfig, args: &Args) -> Rules {
    let mut rules = Rules::from_config(config);
    if let Some(g) = args.reservation_grace_seconds {
        rules.grace = SignedDuration::from_secs(i64::try_from(g).unwrap_or(i64::MAX));
    }
    if let Some(on) = args.gc_stateless_terminating_pod_on_ready_node {
        rules.gc_terminating_on_ready_node = on;
    }
    if let Some(on) = args.gc_stateless_terminating_pod_on_not_ready_node {
        rules.gc_terminating_on_not_ready_node = on;
    }
    if let Some(d) = args.gc_additional_grace_delay {
        rules.gc_additional_grace = SignedDuration::from_secs(i64::try_from(d).unwrap_or(i64::MAX));
    }
    rules
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit (s, m, h)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "ms" => return Ok(Duration::from_millis(n)),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs(secs))
}

async fn read_config(client: &kube::Client, ns: &str) -> anyhow::Result<IpamConfig> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    // A busy or restarting API server (5xx, 429, no connection) is waited for, up to half a
    // minute, rather than exiting at start-up; a bad configuration fails at once.
    let mut wait = Duration::from_millis(100);
    let started = std::time::Instant::now();
    let found = loop {
        match api.get_opt(CONFIGMAP_NAME).await {
            Ok(found) => break found,
            Err(e) if transient(&e) && started.elapsed() < Duration::from_secs(30) => {
                tracing::warn!(error = %e, "cannot read the configuration yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.into()),
        }
    };
    match found {
        None => Ok(IpamConfig::default()),
        Some(cm) => {
            let read = IpamConfig::read(&cm.data.unwrap_or_else(BTreeMap::new))?;
            for w in &read.warnings {
                tracing::warn!(configmap = CONFIGMAP_NAME, "{w}");
            }
            Ok(read.config)
        }
    }
}

/// An API error worth retrying: the server was busy or unreachable.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client")?;
    let cfg_ns = args
        .config_namespace
        .clone()
        .unwrap_or_else(|| args.lease_namespace.clone());
    let config = read_config(&client, &cfg_ns)
        .await
        .with_context(|| format!("reading ConfigMap {cfg_ns}/{CONFIGMAP_NAME}"))?;
    let settings = Settings {
        rules: rules_of(&config, &args),
        gc_interval: args.gc_interval,
        status_interval: Duration::from_millis(args.status_interval_ms),
        ipam: config.clone(),
        pool_fullness_percent: args.pool_fullness_percent,
        ..Settings::default()
    };
    let metrics = Metrics::new();
    let server = tokio::spawn(metrics.clone().serve(args.metrics_addr));
    tracing::info!(?settings, metrics = %args.metrics_addr, "starting");

    let work = {
        let client = client.clone();
        let metrics = metrics.clone();
        async move {
            metrics.leader.set(1);
            let mut running = start(client, settings, metrics).await;
            running.wait().await;
        }
    };
    let shutdown = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    if args.no_leader_elect {
        metrics.set_ready(false);
        tokio::select! {
            _ = work => anyhow::bail!("a controller stopped"),
            _ = shutdown => {}
        }
    } else {
        let identity = args
            .identity
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("aipam-operator-{}", std::process::id()));
        let mut lc = LeaseConfig::new(&args.lease_namespace, &args.lease_name, &identity);
        lc.lease_duration = Duration::from_secs(args.lease_duration);
        lc.renew_deadline = Duration::from_secs(args.renew_deadline);
        lc.retry_period = Duration::from_secs(args.retry_period);
        let mut elector = Elector::new(client.clone(), lc);
        // A standby replica is healthy and ready: it serves nothing but its metrics.
        metrics.set_ready(true);
        tokio::select! {
            r = elector.lead(work) => match r {
                Ok(()) => anyhow::bail!("a controller stopped"),
                Err(lost) => {
                    metrics.leader.set(0);
                    // As client-go: a replica that lost the Lease exits and is restarted.
                    return Err(lost.into());
                }
            },
            _ = shutdown => {
                let _ = elector.release().await;
            }
        }
    }
    server.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn durations_read_with_units() {
        assert_eq!(parse_duration("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn flags_parse() {
        let a = Args::try_parse_from([
            "aipam-operator",
            "--lease-namespace=aipam-system",
            "--gc-interval=1m",
            "--no-leader-elect",
        ])
        .unwrap();
        assert_eq!(a.gc_interval, Duration::from_secs(60));
        assert!(a.no_leader_elect);
        assert_eq!(a.lease_name, "aipam-operator");
    }

    #[test]
    fn gc_switches_come_from_spiderpool_conf_then_spiderpools_env_names() {
        use clap::CommandFactory;
        // The env vars are Spiderpool's controller's.
        let cmd = Args::command();
        let env_of = |id: &str| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned())
        };
        assert_eq!(
            env_of("gc_stateless_terminating_pod_on_ready_node").as_deref(),
            Some("SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_READY_NODE_ENABLED")
        );
        assert_eq!(
            env_of("gc_stateless_terminating_pod_on_not_ready_node").as_deref(),
            Some("SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_NOT_READY_NODE_ENABLED")
        );
        assert_eq!(
            env_of("gc_additional_grace_delay").as_deref(),
            Some("SPIDERPOOL_GC_ADDITIONAL_GRACE_DELAY")
        );
        // Nothing given: Spiderpool's defaults.
        let none = Args::try_parse_from(["aipam-operator"]).unwrap();
        let r = rules_of(&IpamConfig::default(), &none);
        assert!(r.gc_terminating_on_ready_node && r.gc_terminating_on_not_ready_node);
        assert_eq!(r.gc_additional_grace, SignedDuration::ZERO);
        // spiderpool-conf, then the flags over it.
        let conf = IpamConfig {
            enable_gc_stateless_terminating_pod_on_ready_node: false,
            gc_additional_grace_delay: 9,
            ..IpamConfig::default()
        };
        let r = rules_of(&conf, &none);
        assert!(!r.gc_terminating_on_ready_node);
        assert_eq!(r.gc_additional_grace, SignedDuration::from_secs(9));
        let flags = Args::try_parse_from([
            "aipam-operator",
            "--gc-stateless-terminating-pod-on-ready-node=T",
            "--gc-stateless-terminating-pod-on-not-ready-node=0",
            "--gc-additional-grace-delay=3",
            "--reservation-grace-seconds=60",
        ])
        .unwrap();
        let r = rules_of(&conf, &flags);
        assert!(r.gc_terminating_on_ready_node && !r.gc_terminating_on_not_ready_node);
        assert_eq!(r.gc_additional_grace, SignedDuration::from_secs(3));
        assert_eq!(r.grace, SignedDuration::from_secs(60));
        let bad = Args::try_parse_from([
            "aipam-operator",
            "--gc-stateless-terminating-pod-on-ready-node=yes",
        ]);
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("expected true or false"));
    }
}
