//! Logging with `tracing`, to stderr or to `ipam.log_file_path`, never to stdout (stdout carries
//! the CNI protocol). The level comes from `RUST_LOG` when set, else `ipam.log_level`, else `info`
//! when logging to a file and `warn` on stderr (the runtime's own log).

use std::fs::OpenOptions;
use std::str::FromStr;
use std::sync::Mutex;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

use crate::config::LogSettings;

/// Parses a level (`DEBUG`, `info`, ...) or a `target=level,...` list.
pub fn parse_filter(spec: &str) -> Option<Targets> {
    let spec = spec.trim();
    if let Ok(level) = LevelFilter::from_str(&spec.to_ascii_lowercase()) {
        return Some(Targets::new().with_default(level));
    }
    Targets::from_str(spec).ok()
}

/// Installs the global subscriber. Problems (unwritable file, bad level) fall back to stderr and
/// the default level, with a warning: logging never fails a CNI command.
pub fn init(settings: &LogSettings) {
    let mut problems = Vec::new();
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| settings.level.clone());
    let mut writer = None;
    if let Some(path) = &settings.file {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => writer = Some(BoxMakeWriter::new(Mutex::new(f))),
            Err(e) => problems.push(format!(
                "cannot open log file {}: {e}; logging to stderr",
                path.display()
            )),
        }
    }
    let to_file = writer.is_some();
    let default = Targets::new().with_default(if to_file {
        LevelFilter::INFO
    } else {
        LevelFilter::WARN
    });
    let filter = match spec.as_deref() {
        None => default,
        Some(s) => parse_filter(s).unwrap_or_else(|| {
            problems.push(format!("invalid log level {s:?}; using the default"));
            default
        }),
    };
    let writer = writer.unwrap_or_else(|| BoxMakeWriter::new(std::io::stderr));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false)
        .with_filter(filter);
    let subscriber = tracing_subscriber::registry().with(layer);
    let _ = tracing::subscriber::set_global_default(subscriber);
    for p in problems {
        tracing::warn!("{p}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_in_any_case_and_target_lists() {
        assert!(parse_filter("DEBUG").is_some());
        assert!(parse_filter("warn").is_some());
        assert!(parse_filter("aipam_cni=trace,info").is_some());
    }
}
