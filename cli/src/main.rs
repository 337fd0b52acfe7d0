//! `aipamctl`: the command-line tool for cluster admins and GitOps pipelines.

mod cluster;
mod free;
mod inspect;
mod manifests;
mod migrate;
mod plan;
mod status;
mod table;
mod validate;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "aipamctl",
    version,
    about = "Admission-time IPAM for underlay networks (Spiderpool-compatible): offline checks for pool manifests, status and inspection of a cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Human-readable lines.
    Text,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check SpiderIPPool, SpiderSubnet and SpiderReservedIP manifests with the webhook's rules,
    /// including overlaps between the files given, plus the IPAM annotations of Namespaces and
    /// workloads and the spiderpool-conf ConfigMap. Exits 1 when anything is invalid.
    ///
    /// Without paths, checks the sample manifests compiled into the tool (config/samples).
    Validate {
        /// Files or directories (searched recursively for .yaml, .yml and .json).
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show which pool and address every Pod of the given manifests would get at admission,
    /// or why it would be refused, without a cluster: pools, namespaces, nodes, the
    /// spiderpool-conf ConfigMap, NetworkAttachmentDefinitions and workloads (Pods,
    /// Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs), in manifest order.
    ///
    /// Without paths, plans the sample manifests compiled into the tool (config/samples).
    Plan {
        /// Files or directories (searched recursively for .yaml, .yml and .json).
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Against a cluster: pools with used/free/total (counted from the live SpiderIPClaims and
    /// checked against the pools' status), SpiderEndpoints per namespace, reservations not yet
    /// bound to a Pod, and what the operator's collector will reclaim, with why.
    Status {
        #[command(flatten)]
        cluster: cluster::ClusterArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Against a cluster running Spiderpool (its agent and controller stopped, aipam's CRDs
    /// applied, aipam's webhook not yet installed): turns what Spiderpool holds for the Pods
    /// running now (every pool's status.allocatedIPs, every SpiderEndpoint) into SpiderIPClaims
    /// and each Pod's aipam.io/reservation record, so that no running Pod's address is handed out
    /// again and each reads it back at a sandbox restart. Refuses, writing nothing, when the
    /// state is inconsistent (exit 1). Safe to run again.
    Migrate {
        /// Print what would be written; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        cluster: cluster::ClusterArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Against a cluster: for each pool (or the pools named), the free addresses as ranges,
    /// the counts, and who holds every address in use (the Pod, or why none is named).
    /// Exits 1 when a pool named does not exist.
    Free {
        /// Pools to show (default: all).
        pools: Vec<String>,
        #[command(flatten)]
        cluster: cluster::ClusterArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Against a cluster: the selection trace for one Pod (which rule chose which pools, why
    /// each other pool was excluded) and what it holds (claims, endpoint). Exits 1 when the Pod
    /// does not exist.
    Inspect {
        /// The Pod's name.
        pod: String,
        /// The Pod's namespace (default: the kubeconfig context's namespace).
        #[arg(short, long)]
        namespace: Option<String>,
        #[command(flatten)]
        cluster: cluster::ClusterArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// Writes `value` as JSON or YAML, or `text` for the human format.
fn emit<T: serde::Serialize>(
    output: Output,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, value)?;
            writeln!(out)?;
        }
        Output::Yaml => serde_yaml::to_writer(&mut out, value)?,
        Output::Text => write!(out, "{}", text())?,
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The Pod's top owner by the webhook's rule ([`aipam_rules::owner`]): the direct controller,
/// read when the rule says so (a ReplicaSet or Job live, a StatefulSet from the snapshot).
async fn pod_owner(
    client: &kube::Client,
    snap: &cluster::Snapshot,
    pod: &k8s_openapi::api::core::v1::Pod,
) -> Option<aipam_core::model::Owner> {
    use aipam_rules::owner::{direct_controller, needs_lookup, top_owner};
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let direct = direct_controller(&pod.metadata)?;
    let facts = if needs_lookup(&direct) {
        cluster::controller_facts(client, snap, &ns, &direct.kind, &direct.name).await
    } else {
        None
    };
    Some(top_owner(direct, facts))
}

fn load(paths: &[PathBuf]) -> Result<(Vec<manifests::Document>, String)> {
    if paths.is_empty() {
        Ok((
            manifests::load_embedded()?,
            "the embedded sample manifests (config/samples)".to_string(),
        ))
    } else {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        Ok((manifests::load_paths(paths)?, names.join(", ")))
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { paths, output } => {
            let (docs, source) = load(&paths)?;
            let report = validate::validate(&docs);
            let mut out = std::io::stdout().lock();
            match output {
                Output::Json => {
                    serde_json::to_writer_pretty(&mut out, &report)?;
                    writeln!(out)?;
                }
                Output::Yaml => serde_yaml::to_writer(&mut out, &report)?,
                Output::Text => print_text(&mut out, &source, &report)?,
            }
            Ok(if report.invalid() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Plan { paths, output } => {
            let (docs, source) = load(&paths)?;
            let plan = plan::plan(&docs);
            emit(output, &plan, || {
                format!("Planning {source}\n\n{}", plan::render(&plan))
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate {
            dry_run,
            cluster,
            output,
        } => {
            let result = runtime()?.block_on(async {
                let client = cluster::connect(&cluster)
                    .await
                    .map_err(migrate::MigrateError::from)?;
                migrate::migrate(&client, &cluster.config_namespace, dry_run).await
            });
            match result {
                Ok(report) => {
                    emit(output, &report, || migrate::render(&report))?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(migrate::MigrateError::Inconsistent(e)) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Free {
            pools,
            cluster,
            output,
        } => {
            let (space, unknown) = runtime()?.block_on(async {
                let client = cluster::connect(&cluster).await?;
                let snap = cluster::snapshot(&client, &cluster.config_namespace).await?;
                Ok::<_, cluster::ClusterError>(free::free(&snap, &pools))
            })?;
            emit(output, &space, || free::render(&space))?;
            if unknown.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: no SpiderIPPool named {}", unknown.join(", "));
                Ok(ExitCode::from(1))
            }
        }
        Command::Status { cluster, output } => {
            let status = runtime()?.block_on(async {
                let client = cluster::connect(&cluster).await?;
                let mut snap = cluster::snapshot(&client, &cluster.config_namespace).await?;
                snap.grace_override = cluster.reservation_grace_seconds;
                Ok::<_, cluster::ClusterError>(status::status(
                    &snap,
                    k8s_openapi::jiff::Timestamp::now(),
                ))
            })?;
            emit(output, &status, || status::render(&status))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect {
            pod,
            namespace,
            cluster,
            output,
        } => {
            let found = runtime()?.block_on(async {
                let client = cluster::connect(&cluster).await?;
                let ns = namespace.unwrap_or_else(|| client.default_namespace().to_string());
                let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
                    kube::Api::namespaced(client.clone(), &ns);
                let Some(live) =
                    api.get_opt(&pod)
                        .await
                        .map_err(|source| cluster::ClusterError::Request {
                            what: format!("read Pod {ns}/{pod}"),
                            source,
                        })?
                else {
                    return Ok(Err(format!("Pod {ns}/{pod} not found")));
                };
                let mut snap = cluster::snapshot(&client, &cluster.config_namespace).await?;
                snap.grace_override = cluster.reservation_grace_seconds;
                let owner = pod_owner(&client, &snap, &live).await;
                Ok::<_, cluster::ClusterError>(Ok(inspect::inspect(
                    &snap,
                    &live,
                    owner,
                    k8s_openapi::jiff::Timestamp::now(),
                )))
            })?;
            match found {
                Ok(i) => {
                    emit(output, &i, || inspect::render(&i))?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

fn print_text(out: &mut impl Write, source: &str, report: &validate::Report) -> Result<()> {
    writeln!(out, "Validating {source}")?;
    for f in &report.findings {
        let verdict = if f.errors.is_empty() {
            "ok     "
        } else {
            "INVALID"
        };
        let summary = if f.summary.is_empty() {
            String::new()
        } else {
            format!(": {}", f.summary)
        };
        writeln!(out, "{verdict} {} {}{summary}", f.kind, f.name)?;
        writeln!(out, "        at {}", f.location)?;
        for e in &f.errors {
            writeln!(out, "        error: {e}")?;
        }
        for w in &f.warnings {
            writeln!(out, "        warning: {w}")?;
        }
    }
    writeln!(
        out,
        "{} object(s) checked, {} invalid, {} document(s) of other kinds skipped",
        report.findings.len(),
        report.invalid(),
        report.skipped
    )?;
    Ok(())
}
