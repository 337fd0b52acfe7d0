//! Prometheus metrics: admissions by path and outcome, reservation latency, claim conflicts;
//! and, under Spiderpool's names, the allocation series its agent exports (allocation happens
//! here, at admission, where Spiderpool's agent does it at CNI ADD).

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
    /// The series of Spiderpool's agent, under its names.
    pub spiderpool: SpiderpoolAllocation,
}

/// A float gauge.
type FloatGauge = Gauge<f64, AtomicU64>;

/// Spiderpool's agent's allocation series (its `docs/reference/metrics.md`), unprefixed.
/// Counters gain `_total` on the wire, as Spiderpool's OpenTelemetry exporter gives them
/// (`spiderpool_ipam_allocation_counts_total`, what its Grafana dashboard queries). One
/// allocation is one Pod admission this IPAM serves (not a dry run): pool selection, address
/// choice and the claims' creation.
#[derive(Debug)]
pub struct SpiderpoolAllocation {
    /// `spiderpool_ipam_allocation_counts`.
    pub counts: Counter,
    /// `spiderpool_ipam_allocation_failure_counts`: refused or failed.
    pub failures: Counter,
    /// `spiderpool_ipam_allocation_err_internal_counts`: failed on our side (code 500 and up).
    pub internal_errors: Counter,
    /// `spiderpool_ipam_allocation_update_ippool_conflict_counts`: a concurrent allocation took
    /// the address first (a claim create conflict here, a pool status update conflict there).
    pub conflicts: Counter,
    /// `spiderpool_ipam_allocation_duration_seconds`.
    pub duration: Histogram,
    /// `spiderpool_ipam_allocation_average_duration_seconds`.
    pub average: FloatGauge,
    /// `spiderpool_ipam_allocation_max_duration_seconds`.
    pub max: FloatGauge,
    /// `spiderpool_ipam_allocation_min_duration_seconds`.
    pub min: FloatGauge,
    /// `spiderpool_ipam_allocation_latest_duration_seconds`.
    pub latest: FloatGauge,
    /// (sum, count, min, max) of the durations so far.
    seen: Mutex<(f64, u64, f64, f64)>,
}

impl Default for SpiderpoolAllocation {
    fn default() -> Self {
        SpiderpoolAllocation {
            counts: Counter::default(),
            failures: Counter::default(),
            internal_errors: Counter::default(),
            conflicts: Counter::default(),
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            average: FloatGauge::default(),
            max: FloatGauge::default(),
            min: FloatGauge::default(),
            latest: FloatGauge::default(),
            seen: Mutex::new((0.0, 0, 0.0, 0.0)),
        }
    }
}

impl SpiderpoolAllocation {
    fn register(&self, r: &mut Registry) {
        r.register(
            "spiderpool_ipam_allocation_counts",
            "Pod admissions this IPAM allocated for (Spiderpool's name)",
            self.counts.clone(),
        );
        r.register(
            "spiderpool_ipam_allocation_failure_counts",
            "Allocations refused or failed (Spiderpool's name)",
            self.failures.clone(),
        );
        r.register(
            "spiderpool_ipam_allocation_err_internal_counts",
            "Allocations failed on the IPAM's side (Spiderpool's name)",
            self.internal_errors.clone(),
        );
        r.register(
            "spiderpool_ipam_allocation_update_ippool_conflict_counts",
            "Allocations that found their address taken by a concurrent one (Spiderpool's name)",
            self.conflicts.clone(),
        );
        r.register(
            "spiderpool_ipam_allocation_duration_seconds",
            "Histogram of allocation durations (Spiderpool's name)",
            self.duration.clone(),
        );
        r.register(
            "spiderpool_ipam_allocation_average_duration_seconds",
            "Average allocation duration (Spiderpool's name)",
            self.average.clone(),
        );
        r.register(
            "spiderpool_ipam_allocation_max_duration_seconds",
            "Longest allocation (Spiderpool's name)",
            self.max.clone(),
        );
        r.register(
            "spiderpool_ipam_allocation_min_duration_seconds",
            "Shortest allocation (Spiderpool's name)",
            self.min.clone(),
        );
        r.register(
            "spiderpool_ipam_allocation_latest_duration_seconds",
            "Latest allocation duration (Spiderpool's name)",
            self.latest.clone(),
        );
    }

    /// Records one allocation: its duration and, when it failed, the failure's code.
    pub fn observe(&self, seconds: f64, failed_with: Option<u16>) {
        self.counts.inc();
        if let Some(code) = failed_with {
            self.failures.inc();
            if code >= 500 {
                self.internal_errors.inc();
            }
        }
        self.duration.observe(seconds);
        self.latest.set(seconds);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (sum, count, min, max) = &mut *seen;
        *sum += seconds;
        *count += 1;
        if *count == 1 || seconds < *min {
            *min = seconds;
        }
        if seconds > *max {
            *max = seconds;
        }
        // Precision is not a concern for a mean of durations.
        #[allow(clippy::cast_precision_loss)]
        self.average.set(*sum / *count as f64);
        self.min.set(*min);
        self.max.set(*max);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric under the `aipam_webhook` prefix.
    pub fn new() -> Metrics {
        let mut root = Registry::default();
        let spiderpool = SpiderpoolAllocation::default();
        spiderpool.register(&mut root);
        let registry = root.sub_registry_with_prefix("aipam_webhook");
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
            registry: root,
            admissions,
            reservation_seconds,
            claim_conflicts,
            spiderpool,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_spiderpool_series_are_exported_under_spiderpools_names() {
        let m = Metrics::new();
        m.admission("/mutate-pod", "patched");
        m.spiderpool.observe(0.002, None);
        m.spiderpool.observe(0.004, Some(403));
        m.spiderpool.observe(0.006, Some(500));
        m.spiderpool.conflicts.inc();
        let text = m.encode();
        // Every Spiderpool-named series docs/reference.md claims, as Spiderpool exposes it
        // (counters with _total, what its Grafana dashboard queries).
        for want in [
            "spiderpool_ipam_allocation_counts_total 3",
            "spiderpool_ipam_allocation_failure_counts_total 2",
            "spiderpool_ipam_allocation_err_internal_counts_total 1",
            "spiderpool_ipam_allocation_update_ippool_conflict_counts_total 1",
            "spiderpool_ipam_allocation_duration_seconds_count 3",
            "spiderpool_ipam_allocation_duration_seconds_bucket{le=",
            "spiderpool_ipam_allocation_average_duration_seconds 0.004",
            "spiderpool_ipam_allocation_max_duration_seconds 0.006",
            "spiderpool_ipam_allocation_min_duration_seconds 0.002",
            "spiderpool_ipam_allocation_latest_duration_seconds 0.006",
            "# TYPE spiderpool_ipam_allocation_duration_seconds histogram",
            // Ours are kept as they were.
            "aipam_webhook_admissions_total{path=\"/mutate-pod\",outcome=\"patched\"} 1",
        ] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
        assert!(!text.contains("aipam_webhook_spiderpool"), "{text}");
    }
}
