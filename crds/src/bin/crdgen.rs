//! Writes `config/crd/<group>_<plural>.yaml` for every CRD of aipam-crds.
//!
//! Usage: `cargo run -p aipam-crds --bin crdgen [-- --check] [-- --out DIR]`.
//! With `--check` nothing is written: the command exits 1 and lists the files that differ from
//! what the types generate (missing, changed, or stray `.yaml` files).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn default_out_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("config")
        .join("crd")
}

fn main() -> ExitCode {
    let mut check = false;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--out" => match args.next() {
                Some(dir) => out = Some(PathBuf::from(dir)),
                None => {
                    eprintln!("crdgen: --out needs a directory");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!(
                    "usage: crdgen [--check] [--out DIR]\n  writes the CRDs to DIR (default: config/crd/ of the workspace)\n  --check: write nothing, exit 1 listing drifted files"
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("crdgen: unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    let dir = out.unwrap_or_else(default_out_dir);
    match run(&dir, check) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::from(2)
        }
    }
}

/// Returns whether the directory is (or now is) up to date.
fn run(dir: &Path, check: bool) -> Result<bool, Box<dyn std::error::Error>> {
    let files = aipam_crds::render_all()?;
    let wanted: BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let mut drifted = Vec::new();
    for (name, content) in &files {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() != Some(content.as_str()) {
            drifted.push(format!(
                "{} ({})",
                path.display(),
                if current.is_some() {
                    "changed"
                } else {
                    "missing"
                }
            ));
            if !check {
                std::fs::create_dir_all(dir)?;
                std::fs::write(&path, content)?;
                println!("wrote {}", path.display());
            }
        }
    }
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if (name.ends_with(".yaml") || name.ends_with(".yml"))
                && !wanted.contains(name.as_str())
            {
                drifted.push(format!("{} (stray: not generated)", entry.path().display()));
                if !check {
                    std::fs::remove_file(entry.path())?;
                    println!("removed {}", entry.path().display());
                }
            }
        }
    }
    if check && !drifted.is_empty() {
        eprintln!(
            "CRDs in {} are out of date; run `{}`:",
            dir.display(),
            aipam_crds::GENERATOR_COMMAND
        );
        for d in &drifted {
            eprintln!("  {d}");
        }
        return Ok(false);
    }
    if !check && drifted.is_empty() {
        println!("{} is up to date", dir.display());
    }
    Ok(true)
}
