//! Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` endpoints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels as (name, value) pairs.
pub type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Histogram buckets for reconcile durations: 1 ms to ~30 s.
#[derive(Clone, Copy, Debug)]
pub struct DurationBuckets;

impl MetricConstructor<Histogram> for DurationBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.001, 2.0, 16))
    }
}

/// Every metric the operator exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Addresses given back because their Pod no longer needs them, by reason.
    pub releases: Family<Labels, Counter>,
    /// Leftover reservations collected, by reason.
    pub collections: Family<Labels, Counter>,
    /// Zone alternatives settled (`settle`), late bindings (`late`), endpoints written
    /// (`endpoint`).
    pub bindings: Family<Labels, Counter>,
    /// Reconcile errors by controller and kind.
    pub errors: Family<Labels, Counter>,
    /// Reconcile durations by controller.
    pub durations: Family<Labels, Histogram, DurationBuckets>,
    /// Allocated addresses per pool.
    pub pool_allocated: Family<Labels, Gauge>,
    /// Allocatable addresses per pool (saturates at i64::MAX).
    pub pool_total: Family<Labels, Gauge>,
    /// 1 while this replica leads.
    pub leader: Gauge,
    /// Status writes made to pools.
    pub status_writes: Counter,
    /// 1 while a pool is at or above the fullness threshold (`--pool-fullness-percent`).
    pub pool_above_threshold: Family<Labels, Gauge>,
    /// Crossings of the fullness threshold, by pool and direction (`up`, `down`).
    pub pool_threshold_crossings: Family<Labels, Counter>,
    /// The series Spiderpool's controller exports, under its names, where aipam measures the
    /// same thing (`docs/reference.md`, Metrics).
    pub spiderpool: SpiderpoolMetrics,
    ready: Arc<AtomicBool>,
}

/// Spiderpool's controller series (its `docs/reference/metrics.md`), unprefixed. Counters gain
/// `_total` on the wire, as Spiderpool's OpenTelemetry exporter gives them
/// (`spiderpool_ip_gc_counts_total`, what its Grafana dashboard queries).
#[derive(Debug, Clone, Default)]
pub struct SpiderpoolMetrics {
    /// `spiderpool_ip_gc_counts`: addresses the garbage collector gave back.
    pub ip_gc: Counter,
    /// `spiderpool_ip_gc_failure_counts`: its failed attempts.
    pub ip_gc_failures: Counter,
    /// `spiderpool_total_ippool_counts`.
    pub total_ippools: Gauge,
    /// `spiderpool_total_subnet_counts`.
    pub total_subnets: Gauge,
    /// `spiderpool_debug_ippool_total_ip_counts{SpiderIPPool}`.
    pub ippool_total_ips: Family<Labels, Gauge>,
    /// `spiderpool_debug_ippool_available_ip_counts{SpiderIPPool}`.
    pub ippool_available_ips: Family<Labels, Gauge>,
    /// `spiderpool_debug_subnet_ippool_counts{SpiderSubnet}`.
    pub subnet_ippools: Family<Labels, Gauge>,
    /// `spiderpool_debug_subnet_total_ip_counts{SpiderSubnet}`.
    pub subnet_total_ips: Family<Labels, Gauge>,
    /// `spiderpool_debug_subnet_available_ip_counts{SpiderSubnet}`.
    pub subnet_available_ips: Family<Labels, Gauge>,
}

impl SpiderpoolMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "spiderpool_ip_gc_counts",
            "Addresses given back by the garbage collector (Spiderpool's name)",
            self.ip_gc.clone(),
        );
        r.register(
            "spiderpool_ip_gc_failure_counts",
            "Failed garbage collections of an address (Spiderpool's name)",
            self.ip_gc_failures.clone(),
        );
        r.register(
            "spiderpool_total_ippool_counts",
            "Number of SpiderIPPools (Spiderpool's name)",
            self.total_ippools.clone(),
        );
        r.register(
            "spiderpool_total_subnet_counts",
            "Number of SpiderSubnets (Spiderpool's name)",
            self.total_subnets.clone(),
        );
        r.register(
            "spiderpool_debug_ippool_total_ip_counts",
            "Addresses a SpiderIPPool can hand out (Spiderpool's name)",
            self.ippool_total_ips.clone(),
        );
        r.register(
            "spiderpool_debug_ippool_available_ip_counts",
            "Addresses of a SpiderIPPool not allocated (Spiderpool's name)",
            self.ippool_available_ips.clone(),
        );
        r.register(
            "spiderpool_debug_subnet_ippool_counts",
            "SpiderIPPools of a SpiderSubnet's CIDR (Spiderpool's name)",
            self.subnet_ippools.clone(),
        );
        r.register(
            "spiderpool_debug_subnet_total_ip_counts",
            "Addresses of a SpiderSubnet (Spiderpool's name)",
            self.subnet_total_ips.clone(),
        );
        r.register(
            "spiderpool_debug_subnet_available_ip_counts",
            "Addresses of a SpiderSubnet no SpiderIPPool took (Spiderpool's name)",
            self.subnet_available_ips.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Metrics {
        let mut root = Registry::default();
        let spiderpool = SpiderpoolMetrics::default();
        spiderpool.register(&mut root);
        let r = root.sub_registry_with_prefix("aipam_operator");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            releases: Family::default(),
            collections: Family::default(),
            bindings: Family::default(),
            errors: Family::default(),
            durations: Family::new_with_constructor(DurationBuckets),
            pool_allocated: Family::default(),
            pool_total: Family::default(),
            leader: Gauge::default(),
            status_writes: Counter::default(),
            pool_above_threshold: Family::default(),
            pool_threshold_crossings: Family::default(),
            spiderpool,
            ready: Arc::new(AtomicBool::new(false)),
        };
        r.register(
            "releases",
            "Addresses released because their Pod no longer needs them",
            m.releases.clone(),
        );
        r.register(
            "collections",
            "Leftover reservations and endpoints collected",
            m.collections.clone(),
        );
        r.register(
            "bindings",
            "Zone alternatives settled, late bindings and endpoint writes",
            m.bindings.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconcile errors by controller and kind",
            m.errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Reconcile durations by controller",
            m.durations.clone(),
        );
        r.register(
            "pool_allocated_ips",
            "Addresses allocated per SpiderIPPool",
            m.pool_allocated.clone(),
        );
        r.register(
            "pool_total_ips",
            "Addresses a SpiderIPPool can hand out",
            m.pool_total.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the Lease",
            m.leader.clone(),
        );
        r.register(
            "pool_status_writes",
            "Status writes made to SpiderIPPools",
            m.status_writes.clone(),
        );
        r.register(
            "pool_above_fullness_threshold",
            "1 while a SpiderIPPool's allocated share is at or above --pool-fullness-percent",
            m.pool_above_threshold.clone(),
        );
        r.register(
            "pool_fullness_threshold_crossings",
            "A SpiderIPPool's allocated share crossing --pool-fullness-percent, up or down",
            m.pool_threshold_crossings.clone(),
        );
        Metrics {
            registry: Arc::new(root),
            ..m
        }
    }

    /// Counts a release.
    pub fn release(&self, reason: &str) {
        self.releases
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    /// Counts a collection.
    pub fn collect(&self, reason: &str) {
        self.collections
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    /// Counts a binding.
    pub fn bind(&self, kind: &str) {
        self.bindings
            .get_or_create(&labels(&[("kind", kind)]))
            .inc();
    }

    /// Counts an error.
    pub fn error(&self, controller: &str, kind: &str) {
        self.errors
            .get_or_create(&labels(&[("controller", controller), ("kind", kind)]))
            .inc();
    }

    /// Records a reconcile duration.
    pub fn observe(&self, controller: &str, seconds: f64) {
        self.durations
            .get_or_create(&labels(&[("controller", controller)]))
            .observe(seconds);
    }

    /// Sets a pool's gauges.
    /// A pool's side of the fullness threshold.
    pub fn pool_fullness(&self, pool: &str, above: bool) {
        self.pool_above_threshold
            .get_or_create(&labels(&[("pool", pool)]))
            .set(i64::from(above));
    }

    /// One crossing of the fullness threshold (`up` or `down`).
    pub fn fullness_crossed(&self, pool: &str, direction: &str) {
        self.pool_threshold_crossings
            .get_or_create(&labels(&[("pool", pool), ("direction", direction)]))
            .inc();
    }

    pub fn pool(&self, pool: &str, allocated: i64, total: i64) {
        let l = labels(&[("pool", pool)]);
        self.pool_allocated.get_or_create(&l).set(allocated);
        self.pool_total.get_or_create(&l).set(total);
        let sp = labels(&[("SpiderIPPool", pool)]);
        self.spiderpool
            .ippool_total_ips
            .get_or_create(&sp)
            .set(total);
        self.spiderpool
            .ippool_available_ips
            .get_or_create(&sp)
            .set(total.saturating_sub(allocated).max(0));
    }

    /// Sets a subnet's gauges: its pools, the addresses they took, its addresses.
    pub fn subnet(&self, subnet: &str, pools: i64, allocated: i64, total: i64) {
        let sp = labels(&[("SpiderSubnet", subnet)]);
        let s = &self.spiderpool;
        s.subnet_ippools.get_or_create(&sp).set(pools);
        s.subnet_total_ips.get_or_create(&sp).set(total);
        s.subnet_available_ips
            .get_or_create(&sp)
            .set(total.saturating_sub(allocated).max(0));
    }

    /// Sets the number of pools and subnets.
    pub fn objects(&self, pools: usize, subnets: usize) {
        let n = |x: usize| i64::try_from(x).unwrap_or(i64::MAX);
        self.spiderpool.total_ippools.set(n(pools));
        self.spiderpool.total_subnets.set(n(subnets));
    }

    /// Counts an address the collector gave back (`ok`) or failed to.
    pub fn gc(&self, ok: bool) {
        if ok {
            self.spiderpool.ip_gc.inc();
        } else {
            self.spiderpool.ip_gc_failures.inc();
        }
    }

    /// Marks the operator ready (caches synced, or standing by as a non-leader).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        let m = self.clone();
        let r = self.clone();
        Router::new()
            .route(
                "/metrics",
                get(move || {
                    let m = m.clone();
                    async move {
                        (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            m.encode(),
                        )
                            .into_response()
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let r = r.clone();
                    async move {
                        if r.is_ready() {
                            (StatusCode::OK, "ok")
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
                        }
                    }
                }),
            )
    }

    /// Serves the routes on `addr` until the task is dropped.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        self.serve_on(listener).await
    }

    /// Serves the routes on a bound listener.
    pub async fn serve_on(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn metrics_health_and_readiness_are_served() {
        let m = Metrics::new();
        m.release("pod_gone");
        m.collect("never_appeared");
        m.bind("late");
        m.error("binding", "conflict");
        m.observe("collector", 0.004);
        m.pool("p6", 3, 10);
        m.subnet("s6", 2, 7, 20);
        m.objects(4, 1);
        m.gc(true);
        m.gc(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(m.clone().serve_on(listener));
        let body = get(addr, "/metrics").await;
        for want in [
            "aipam_operator_releases_total{reason=\"pod_gone\"} 1",
            "aipam_operator_collections_total{reason=\"never_appeared\"} 1",
            "aipam_operator_bindings_total{kind=\"late\"} 1",
            "aipam_operator_reconcile_errors_total{controller=\"binding\",kind=\"conflict\"} 1",
            "aipam_operator_reconcile_duration_seconds_count{controller=\"collector\"} 1",
            "aipam_operator_pool_allocated_ips{pool=\"p6\"} 3",
            "aipam_operator_pool_total_ips{pool=\"p6\"} 10",
        ] {
            assert!(body.contains(want), "{want} missing from {body}");
        }
        // Every Spiderpool-named series docs/reference.md claims, as Spiderpool exposes it.
        for want in [
            "spiderpool_ip_gc_counts_total 1",
            "spiderpool_ip_gc_failure_counts_total 1",
            "spiderpool_total_ippool_counts 4",
            "spiderpool_total_subnet_counts 1",
            "spiderpool_debug_ippool_total_ip_counts{SpiderIPPool=\"p6\"} 10",
            "spiderpool_debug_ippool_available_ip_counts{SpiderIPPool=\"p6\"} 7",
            "spiderpool_debug_subnet_ippool_counts{SpiderSubnet=\"s6\"} 2",
            "spiderpool_debug_subnet_total_ip_counts{SpiderSubnet=\"s6\"} 20",
            "spiderpool_debug_subnet_available_ip_counts{SpiderSubnet=\"s6\"} 13",
            "# TYPE spiderpool_ip_gc_counts counter",
            "# TYPE spiderpool_total_ippool_counts gauge",
        ] {
            assert!(body.contains(want), "{want} missing from {body}");
        }
        assert!(!body.contains("aipam_operator_spiderpool"), "{body}");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        m.set_ready(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        task.abort();
    }
}
