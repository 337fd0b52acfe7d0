//! Prometheus metrics: admissions by path and outcome, reservation latency, claim conflicts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of the admissions counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// The hook's path (`/mutate-pod`...).
    pub path: String,
    /// `allowed`, `patched`, `denied` or `error`.
    pub outcome: String,
}

/// The webhook's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Admission reviews answered.
    pub admissions: Family<AdmissionLabels, Counter>,
    /// Seconds spent reserving addresses for one Pod (creating its claims).
    pub reservation_seconds: Histogram,
    /// Claim creations that found the address already taken (a concurrent reservation).
    pub claim_conflicts: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric under the `aipam_webhook` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("aipam_webhook");
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admissions",
            "Admission reviews answered, by path and outcome",
            admissions.clone(),
        );
        let reservation_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reservation_seconds",
            "Time spent reserving the addresses of one Pod",
            reservation_seconds.clone(),
        );
        let claim_conflicts = Counter::default();
        registry.register(
            "claim_conflicts",
            "SpiderIPClaim creations that found the address already taken",
            claim_conflicts.clone(),
        );
        Metrics {
            registry,
            admissions,
            reservation_seconds,
            claim_conflicts,
        }
    }

    /// Counts one answered review.
    pub fn admission(&self, path: &str, outcome: &str) {
        self.admissions
            .get_or_create(&AdmissionLabels {
                path: path.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
