//! Fault injection: delays, 409 storms, 500s and dropped watches, at a chosen rate.

use std::sync::Mutex;
use std::time::Duration;

/// What to inject. Rates are probabilities in [0, 1] per request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Delay added before every request is handled.
    pub delay: Duration,
    /// Rate at which writes (POST/PUT/PATCH/DELETE) fail with 409 Conflict.
    pub conflict_rate: f64,
    /// Rate at which any request fails with 500 InternalError.
    pub error_rate: f64,
    /// Rate at which a watch is dropped (its connection closed) after each event or bookmark.
    pub watch_drop_rate: f64,
    /// Rate at which a request is slowed down by [`FaultConfig::slow`] (on top of `delay`).
    pub slow_rate: f64,
    /// How long a slowed request waits.
    pub slow: Duration,
}

/// A kind of injected fault, as counted by [`Faults::counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A request slowed by `slow` (`slow_rate`); the fixed `delay` is not counted.
    Slow,
    /// A write refused with 409.
    Conflict,
    /// A request refused with 500.
    Error,
    /// A watch connection closed.
    WatchDrop,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Slow,
        FaultKind::Conflict,
        FaultKind::Error,
        FaultKind::WatchDrop,
    ];

    /// Its name in [`Faults::counts`].
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Slow => "slow",
            FaultKind::Conflict => "conflict",
            FaultKind::Error => "error",
            FaultKind::WatchDrop => "watch_drop",
        }
    }
}

/// The live fault configuration, changeable at run time through the handle.
#[derive(Debug, Default)]
pub struct Faults {
    cfg: Mutex<FaultConfig>,
    counts: [std::sync::atomic::AtomicU64; 4],
}

impl Faults {
    /// With an initial configuration.
    pub fn new(cfg: FaultConfig) -> Self {
        Self {
            cfg: Mutex::new(cfg),
            counts: Default::default(),
        }
    }

    /// Replaces the configuration.
    pub fn set(&self, cfg: FaultConfig) {
        *self.cfg.lock().unwrap_or_else(|e| e.into_inner()) = cfg;
    }

    /// The current configuration.
    pub fn get(&self) -> FaultConfig {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts one injected fault.
    pub fn hit(&self, kind: FaultKind) {
        let i = FaultKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.counts[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Faults injected so far, by kind (`slow`, `conflict`, `error`, `watch_drop`).
    pub fn counts(&self) -> std::collections::BTreeMap<&'static str, u64> {
        FaultKind::ALL
            .iter()
            .zip(&self.counts)
            .map(|(k, c)| (k.name(), c.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
    }

    /// Draws with probability `rate`.
    pub fn roll(rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        if rate >= 1.0 {
            return true;
        }
        (crate::store::random_u64() % 1_000_000) as f64 / 1_000_000.0 < rate
    }
}
