//! `aipamctl`: the command-line tool for cluster admins and GitOps pipelines.

mod manifests;
mod plan;
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
    about = "Admission-time IPAM for underlay networks (Spiderpool-compatible): offline checks for pool manifests"
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
            let mut out = std::io::stdout().lock();
            match output {
                Output::Json => {
                    serde_json::to_writer_pretty(&mut out, &plan)?;
                    writeln!(out)?;
                }
                Output::Text => {
                    writeln!(out, "Planning {source}\n")?;
                    write!(out, "{}", plan::render(&plan))?;
                }
            }
            Ok(ExitCode::SUCCESS)
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
