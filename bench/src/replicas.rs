//! The webhook replicas of an environment, found by their logs (each logs `serving` with its
//! health address), and their Prometheus counters.

use std::net::SocketAddr;

use aipam_e2e::Env;
use anyhow::Result;

use crate::common::{http_get, prom_value};

/// The health/metrics addresses of every webhook process of `env`.
pub fn health_addrs(env: &Env) -> Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    let mut logs: Vec<_> = std::fs::read_dir(env.dir())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("aipam-webhook") && n.ends_with(".log"))
        })
        .collect();
    logs.sort();
    for log in logs {
        let text = strip_ansi(&std::fs::read_to_string(&log)?);
        for line in text.lines().filter(|l| l.contains("serving")) {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("health="))
                .and_then(|a| a.trim_matches('"').parse::<SocketAddr>().ok());
            if let Some(a) = addr {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// Counters summed over the replicas.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scrape {
    pub replicas: usize,
    pub claim_conflicts: f64,
    pub reservation_seconds_sum: f64,
    pub reservation_count: f64,
}

impl Scrape {
    pub fn minus(&self, before: &Scrape) -> Scrape {
        Scrape {
            replicas: self.replicas,
            claim_conflicts: self.claim_conflicts - before.claim_conflicts,
            reservation_seconds_sum: self.reservation_seconds_sum - before.reservation_seconds_sum,
            reservation_count: self.reservation_count - before.reservation_count,
        }
    }

    /// Mean time inside the webhook's reservation step, in ms.
    pub fn mean_reservation_ms(&self) -> f64 {
        self.reservation_seconds_sum * 1e3 / self.reservation_count.max(1.0)
    }
}

/// Scrapes `/metrics` of every replica.
pub fn scrape(addrs: &[SocketAddr]) -> Result<Scrape> {
    let mut s = Scrape {
        replicas: addrs.len(),
        ..Scrape::default()
    };
    for a in addrs {
        let text = http_get(*a, "/metrics")?;
        s.claim_conflicts += prom_value(&text, "aipam_webhook_claim_conflicts_total");
        s.reservation_seconds_sum += prom_value(&text, "aipam_webhook_reservation_seconds_sum");
        s.reservation_count += prom_value(&text, "aipam_webhook_reservation_seconds_count");
    }
    Ok(s)
}

/// Removes ANSI colour sequences (`ESC [ ... m`) that the processes' logs may carry.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
