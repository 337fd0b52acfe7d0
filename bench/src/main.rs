//! `aipam-bench`: the benchmarks of issue 8 that need the processes — the API stand-in, the
//! webhook and the operator as the e2e harness starts them, the CNI binary. Each subcommand
//! prints a table and one JSON line (`{"bench": ...}`); `all` runs every one with the issue's
//! sizes, `--quick` shrinks them so that the whole runs in seconds (the smoke test).
//!
//! Build everything in one mode first (release preferred; the harness finds the webhook,
//! operator and `spiderpool` binaries beside this one):
//! `cargo build --release --bins && target/release/aipam-bench all`.

mod admission;
mod baseline;
mod burst;
mod cni;
mod common;
mod contention;
mod release;
mod replicas;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "aipam-bench",
    about = "Benchmarks of issue 8 (see BENCHMARKS.md)"
)]
struct Cli {
    /// Small sizes: the whole suite in seconds (smoke test), figures not meaningful.
    #[arg(long, global = true)]
    quick: bool,
    /// Concurrent creates (admission, baseline, contention).
    #[arg(long, global = true, default_value_t = 64)]
    concurrency: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Every bench below, in order.
    All,
    /// Item 1: admission throughput/latency, 1 and 3 replicas, beside the raw create rate.
    Admission {
        /// Pods per row.
        #[arg(long)]
        pods: Option<usize>,
    },
    /// Item 2: the same single-stack load against a one-status-map allocator (OCC).
    Baseline {
        #[arg(long)]
        pods: Option<usize>,
    },
    /// Item 3: Deployments x replicas created at once; time until every Pod is reserved.
    Burst {
        #[arg(long)]
        deployments: Option<usize>,
        #[arg(long)]
        replicas: Option<usize>,
    },
    /// Item 5: three replicas, one pool of exactly N addresses, N Pods.
    Contention {
        #[arg(long)]
        pods: Option<usize>,
    },
    /// Item 6: the CNI binary: ADD whole-process time, peak memory, size.
    Cni {
        #[arg(long)]
        runs: Option<usize>,
    },
    /// Item 7 (latency): Pod deletion to address free, operator running.
    Release {
        #[arg(long)]
        pods: Option<usize>,
    },
    /// The baseline webhook process (started by `baseline`).
    #[command(hide = true)]
    ServeBaseline {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        stats_listen: SocketAddr,
        #[arg(long)]
        tls_cert: PathBuf,
        #[arg(long)]
        tls_key: PathBuf,
    },
}

/// The sizes of every bench: the issue's, or the quick ones.
struct Plan {
    quick: bool,
    concurrency: usize,
}

impl Plan {
    fn admission(&self, pods: Option<usize>) -> admission::Sizes {
        admission::Sizes {
            pods: pods.unwrap_or(if self.quick { 64 } else { 1000 }),
            concurrency: self.concurrency,
            replicas: vec![1, 3],
        }
    }
    fn baseline(&self, pods: Option<usize>) -> baseline::Sizes {
        baseline::Sizes {
            pods: pods.unwrap_or(if self.quick { 64 } else { 1000 }),
            concurrency: self.concurrency,
        }
    }
    fn burst(&self, deployments: Option<usize>, replicas: Option<usize>) -> burst::Sizes {
        burst::Sizes {
            deployments: deployments.unwrap_or(if self.quick { 10 } else { 100 }),
            replicas: replicas.unwrap_or(if self.quick { 3 } else { 10 }),
        }
    }
    fn contention(&self, pods: Option<usize>) -> contention::Sizes {
        contention::Sizes {
            replicas: 3,
            pods: pods.unwrap_or(if self.quick { 60 } else { 1000 }),
            concurrency: self.concurrency,
        }
    }
    fn cni(&self, runs: Option<usize>) -> cni::Sizes {
        let runs = runs.unwrap_or(if self.quick { 10 } else { 200 });
        cni::Sizes {
            runs,
            mem_runs: (runs / 10).clamp(3, 20),
        }
    }
    fn release(&self, pods: Option<usize>) -> release::Sizes {
        release::Sizes {
            pods: pods.unwrap_or(if self.quick { 10 } else { 200 }),
            gap: Duration::from_millis(if self.quick { 5 } else { 20 }),
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let plan = Plan {
        quick: cli.quick,
        concurrency: cli.concurrency,
    };
    match cli.cmd {
        Cmd::All => {
            println!("machine: {}", common::machine());
            admission::run(plan.admission(None)).await?;
            baseline::run(plan.baseline(None)).await?;
            burst::run(plan.burst(None, None)).await?;
            contention::run(plan.contention(None)).await?;
            cni::run(plan.cni(None)).await?;
            release::run(plan.release(None)).await?;
        }
        Cmd::Admission { pods } => {
            admission::run(plan.admission(pods)).await?;
        }
        Cmd::Baseline { pods } => {
            baseline::run(plan.baseline(pods)).await?;
        }
        Cmd::Burst {
            deployments,
            replicas,
        } => {
            burst::run(plan.burst(deployments, replicas)).await?;
        }
        Cmd::Contention { pods } => {
            contention::run(plan.contention(pods)).await?;
        }
        Cmd::Cni { runs } => {
            cni::run(plan.cni(runs)).await?;
        }
        Cmd::Release { pods } => {
            release::run(plan.release(pods)).await?;
        }
        Cmd::ServeBaseline {
            kubeconfig,
            listen,
            stats_listen,
            tls_cert,
            tls_key,
        } => {
            baseline::serve(kubeconfig, listen, stats_listen, tls_cert, tls_key).await?;
        }
    }
    Ok(())
}
