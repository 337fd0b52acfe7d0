//! `aipam-apiserver`: runs the API stand-in until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::time::Duration;

use std::net::SocketAddr;

use aipam_apiserver::{ApiServer, FaultConfig, ServerOptions};
use clap::Parser;

/// A Kubernetes API stand-in for tests and the local demo (never a production component).
#[derive(Debug, Parser)]
#[command(name = "aipam-apiserver", version)]
struct Args {
    /// Where to write a kubeconfig for this server.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Port on 127.0.0.1 (0 picks a free port; read it from the kubeconfig).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Directory of CRD (or any object) YAML files to apply at start.
    #[arg(long)]
    crd_dir: Option<PathBuf>,
    /// Bearer token expected from clients.
    #[arg(long, default_value = "aipam-apiserver-token")]
    token: String,
    /// Number of events kept for watches.
    #[arg(long, default_value_t = 10_000)]
    event_window: usize,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 5)]
    bookmark_seconds: u64,
    /// Map a webhook Service to a loopback address: `NAMESPACE/NAME=HOST:PORT` (repeatable).
    #[arg(long = "webhook-service", value_parser = parse_service)]
    webhook_services: Vec<(String, String, SocketAddr)>,
    /// Another bearer token and the user it authenticates as: `TOKEN=USERNAME` (repeatable);
    /// admission webhooks see that user. `--token` is `system:admin`.
    #[arg(long = "user", value_parser = parse_user)]
    users: Vec<(String, String, Vec<String>)>,
    /// Do not simulate kubelets: gracefully deleted Pods stay Terminating on every node.
    #[arg(long)]
    no_kubelet: bool,
    /// Delay added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    fault_delay_ms: u64,
    /// Rate (0..1) of writes refused with 409 Conflict.
    #[arg(long, default_value_t = 0.0)]
    fault_conflict_rate: f64,
    /// Rate (0..1) of requests refused with 500.
    #[arg(long, default_value_t = 0.0)]
    fault_error_rate: f64,
    /// Rate (0..1), per event, of watches dropped.
    #[arg(long, default_value_t = 0.0)]
    fault_watch_drop_rate: f64,
    /// Rate (0..1) of requests slowed down by `--fault-slow-ms`.
    #[arg(long, default_value_t = 0.0)]
    fault_slow_rate: f64,
    /// How long a slowed request waits, in milliseconds.
    #[arg(long, default_value_t = 0)]
    fault_slow_ms: u64,
}

fn parse_service(s: &str) -> Result<(String, String, SocketAddr), String> {
    let (svc, addr) = s
        .split_once('=')
        .ok_or("expected NAMESPACE/NAME=HOST:PORT")?;
    let (ns, name) = svc
        .split_once('/')
        .ok_or("expected NAMESPACE/NAME=HOST:PORT")?;
    let addr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    Ok((ns.to_string(), name.to_string(), addr))
}

fn parse_user(s: &str) -> Result<(String, String, Vec<String>), String> {
    let (token, user) = s.split_once('=').ok_or("expected TOKEN=USERNAME")?;
    if token.is_empty() || user.is_empty() {
        return Err("expected TOKEN=USERNAME".into());
    }
    Ok((token.to_string(), user.to_string(), Vec::new()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let opts = ServerOptions {
        port: args.port,
        token: args.token,
        event_window: args.event_window,
        bookmark_interval: Duration::from_secs(args.bookmark_seconds.max(1)),
        crd_dir: args.crd_dir,
        simulate_kubelet: !args.no_kubelet,
        webhook_services: args.webhook_services,
        users: args.users,
        faults: FaultConfig {
            delay: Duration::from_millis(args.fault_delay_ms),
            conflict_rate: args.fault_conflict_rate,
            error_rate: args.fault_error_rate,
            watch_drop_rate: args.fault_watch_drop_rate,
            slow_rate: args.fault_slow_rate,
            slow: Duration::from_millis(args.fault_slow_ms),
        },
    };
    let server = ApiServer::start(opts).await?;
    if let Some(p) = &args.kubeconfig_out {
        server.write_kubeconfig(p)?;
    }
    tracing::info!(url = %server.url(), "aipam-apiserver serving");
    println!("{}", server.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    server.shutdown().await;
    Ok(())
}
