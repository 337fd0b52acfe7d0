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
mod exhaustion;
mod huge;
mod release;
mod replicas;
mod running;

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
    /// Issue 15, item 1: Deployments x replicas over simulated nodes, time to every Pod
    /// Running, beside host-local and Whereabouts (each on a fresh real control plane).
    Running {
        #[arg(long)]
        deployments: Option<usize>,
        #[arg(long)]
        replicas: Option<usize>,
        #[arg(long)]
        nodes: Option<usize>,
        /// Seconds one IPAM may take before its row says what it reached.
        #[arg(long)]
        deadline: Option<u64>,
        /// Only these IPAMs (host-local, ours, ours-3, whereabouts), comma-separated.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Issue 15, item 2: a pool one address short of a Deployment's replicas, per IPAM: what
    /// the user sees, how fast, and what is held after the Deployment is deleted.
    Exhaustion {
        #[arg(long)]
        replicas: Option<usize>,
    },
    /// Issue 15, item 3: time per allocation in a /8 and a /64 with many live addresses
    /// against an empty /24, per IPAM.
    Huge {
        /// Live addresses in the /8 and the /64.
        #[arg(long)]
        live: Option<usize>,
        #[arg(long)]
        allocations: Option<usize>,
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
            every_kind: !self.quick,
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
    fn running(
        &self,
        deployments: Option<usize>,
        replicas: Option<usize>,
        nodes: Option<usize>,
        deadline: Option<u64>,
        only: &[String],
    ) -> running::Sizes {
        let nodes = nodes.unwrap_or(if self.quick { 2 } else { 10 });
        let peers = running::all_peers(nodes)
            .into_iter()
            .filter(|p| only.is_empty() || only.iter().any(|o| *o == p.key()))
            .collect();
        running::Sizes {
            deployments: deployments.unwrap_or(if self.quick { 3 } else { 100 }),
            replicas: replicas.unwrap_or(if self.quick { 3 } else { 10 }),
            nodes,
            deadline: Duration::from_secs(deadline.unwrap_or(if self.quick { 120 } else { 900 })),
            peers,
        }
    }
    fn exhaustion(&self, replicas: Option<usize>) -> exhaustion::Sizes {
        exhaustion::Sizes {
            replicas: replicas.unwrap_or(if self.quick { 3 } else { 10 }).max(2),
            deadline: Duration::from_secs(120),
        }
    }
    fn huge(&self, live: Option<usize>, allocations: Option<usize>) -> huge::Sizes {
        huge::Sizes {
            live: live.unwrap_or(if self.quick { 50 } else { 10_000 }),
            allocations: allocations.unwrap_or(if self.quick { 5 } else { 50 }),
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
            running::run(plan.running(None, None, None, None, &[])).await?;
            exhaustion::run(plan.exhaustion(None)).await?;
            huge::run(plan.huge(None, None)).await?;
        }
        Cmd::Huge { live, allocations } => {
            huge::run(plan.huge(live, allocations)).await?;
        }
        Cmd::Exhaustion { replicas } => {
            exhaustion::run(plan.exhaustion(replicas)).await?;
        }
        Cmd::Running {
            deployments,
            replicas,
            nodes,
            deadline,
            only,
        } => {
            running::run(plan.running(deployments, replicas, nodes, deadline, &only)).await?;
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
