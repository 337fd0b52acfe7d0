//! `aipam-webhook`: the admission webhook server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aipam_webhook::effects::Overload;
use aipam_webhook::network::InterfaceOptions;
use aipam_webhook::pod::PodOptions;
use aipam_webhook::tls::{server_config, ReloadingCert};
use aipam_webhook::{health_router, router, watch, App, Cache, KubeEffects};
use anyhow::Context;
use clap::Parser;
use tokio::sync::watch as signal_watch;
use tracing::info;

/// The aipam admission webhook: reserves Pod addresses at admission and validates pools.
#[derive(Debug, Parser)]
#[command(name = "aipam-webhook", version, args_override_self = true)]
struct Args {
    /// Address of the HTTPS admission endpoint.
    #[arg(long, env = "AIPAM_WEBHOOK_LISTEN", default_value = "0.0.0.0:9443")]
    listen: SocketAddr,
    /// Address of the plain-HTTP /healthz, /readyz and /metrics endpoint.
    #[arg(
        long,
        env = "AIPAM_WEBHOOK_HEALTH_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    health_listen: SocketAddr,
    /// PEM certificate chain served.
    #[arg(long, env = "AIPAM_WEBHOOK_TLS_CERT", default_value = "/tls/tls.crt")]
    tls_cert: PathBuf,
    /// PEM private key.
    #[arg(long, env = "AIPAM_WEBHOOK_TLS_KEY", default_value = "/tls/tls.key")]
    tls_key: PathBuf,
    /// Seconds between checks of the certificate files for a new certificate.
    #[arg(long, env = "AIPAM_WEBHOOK_TLS_RELOAD_SECONDS", default_value_t = 5)]
    tls_reload_seconds: u64,
    /// Namespace of the spiderpool-conf ConfigMap.
    #[arg(
        long,
        env = "AIPAM_WEBHOOK_CONFIG_NAMESPACE",
        default_value = "aipam-system"
    )]
    config_namespace: String,
    /// Name of the Pod's primary interface.
    #[arg(long, env = "AIPAM_WEBHOOK_PRIMARY_INTERFACE", default_value = "eth0")]
    primary_interface: String,
    /// Do not serve the primary interface when the Pod names no default network (this IPAM
    /// serves Multus networks only).
    #[arg(long, env = "AIPAM_WEBHOOK_NO_PRIMARY")]
    no_primary: bool,
    /// Namespace of a default network named without one (Multus's own namespace).
    #[arg(
        long,
        env = "AIPAM_WEBHOOK_MULTUS_NAMESPACE",
        default_value = "kube-system"
    )]
    multus_namespace: String,
    /// Milliseconds allowed for one admission review (keep below the configuration's
    /// timeoutSeconds).
    #[arg(long, env = "AIPAM_WEBHOOK_REQUEST_TIMEOUT_MS", default_value_t = 8000)]
    request_timeout_ms: u64,
    /// Milliseconds one API call may spend retrying while the API server answers 429 Too Many
    /// Requests (its priority and fairness shedding load); then the admission is refused with
    /// 429 and a message saying so. Keep well below --request-timeout-ms.
    #[arg(long, env = "AIPAM_WEBHOOK_OVERLOAD_RETRY_MS", default_value_t = 3000)]
    overload_retry_ms: u64,
    /// The user (as Kubernetes authenticates it) allowed to change the `aipam.io/reservation`
    /// annotation of an existing Pod: the operator's service account. Everyone else is refused.
    #[arg(
        long,
        env = "AIPAM_WEBHOOK_OPERATOR_USER",
        default_value = aipam_webhook::pod_guard::DEFAULT_OPERATOR_USER
    )]
    operator_user: String,
    /// Claim creations tried per pool (each conflict picks another address).
    #[arg(long, env = "AIPAM_WEBHOOK_ATTEMPTS_PER_POOL", default_value_t = 16)]
    attempts_per_pool: u32,
    /// Seconds between SIGTERM and closing the listener: `/readyz` fails at once, so that the
    /// Service (its EndpointSlice, kube-proxy) stops sending new connections here, while the
    /// hooks go on serving the connections already open (the API server keeps its HTTP/2
    /// connections and does not retry a POST whose connection breaks). Then the listener
    /// closes, open connections get a graceful GOAWAY and the requests in flight finish. Keep
    /// it above the readiness probe's period and below terminationGracePeriodSeconds.
    #[arg(
        long,
        env = "AIPAM_WEBHOOK_SHUTDOWN_DELAY_SECONDS",
        default_value_t = 5
    )]
    shutdown_delay_seconds: u64,
}

async fn terminated() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let resolver = Arc::new(
        ReloadingCert::load(&args.tls_cert, &args.tls_key)
            .context("loading the serving certificate")?,
    );
    let tls = Arc::new(server_config(resolver.clone())?);
    let _reloader = resolver.spawn_reloader(Duration::from_secs(args.tls_reload_seconds.max(1)));

    // kube's default retry layer retries a 429 up to 15 times with waits that grow to minutes:
    // an admission must answer within its timeoutSeconds, so 429s are retried by the effects
    // within the review's deadline instead (found on a real API server shedding load).
    let mut kube_config = kube::Config::infer()
        .await
        .context("reading the Kubernetes client configuration")?;
    kube_config.default_retry = false;
    let client = kube::Client::try_from(kube_config).context("connecting to the Kubernetes API")?;
    let cache = Cache::new();
    let _watches = watch::spawn_watches(client.clone(), &cache, &args.config_namespace);

    let overload = Overload {
        budget: Duration::from_millis(args.overload_retry_ms),
        ..Overload::default()
    };
    let mut app = App::new(
        cache.clone(),
        KubeEffects::new(client).with_overload(overload),
    );
    app.timeout = Duration::from_millis(args.request_timeout_ms);
    app.guard.operator_user = args.operator_user.clone();
    app.pods.options = PodOptions {
        interfaces: InterfaceOptions {
            primary_interface: args.primary_interface.clone(),
            serve_primary: !args.no_primary,
        },
        attempts_per_pool: args.attempts_per_pool.max(1),
    };
    let app = Arc::new(app);

    let draining = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = signal_watch::channel(false);
    let (health_stop_tx, health_stop_rx) = signal_watch::channel(false);
    let wait = |mut rx: signal_watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let health = tokio::net::TcpListener::bind(args.health_listen)
        .await
        .with_context(|| format!("binding {}", args.health_listen))?;
    let health_task = tokio::spawn(aipam_webhook::server::serve_plain(
        health,
        health_router(cache.clone(), app.metrics.clone(), draining.clone()),
        wait(health_stop_rx),
    ));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    info!(listen = %args.listen, health = %args.health_listen, "serving");
    let hooks = tokio::spawn(aipam_webhook::server::serve_tls(
        listener,
        tls,
        router(app),
        wait(stop_rx),
    ));

    terminated().await;
    // Not ready first, still serving: new connections go to the other replicas meanwhile.
    draining.store(true, Ordering::SeqCst);
    let delay = Duration::from_secs(args.shutdown_delay_seconds);
    info!(
        delay_seconds = args.shutdown_delay_seconds,
        "SIGTERM: reporting not ready, serving open connections until the delay ends"
    );
    tokio::time::sleep(delay).await;
    info!("closing the listener; finishing requests in flight");
    let _ = stop_tx.send(true);
    let _ = hooks.await;
    // /readyz and /metrics answer until the hooks have finished.
    let _ = health_stop_tx.send(true);
    let _ = health_task.await;
    info!("stopped");
    Ok(())
}
