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
}

/// The live fault configuration, changeable at run time through the handle.
#[derive(Debug, Default)]
pub struct Faults {
    cfg: Mutex<FaultConfig>,
}

impl Faults {
    /// With an initial configuration.
    pub fn new(cfg: FaultConfig) -> Self {
        Self {
            cfg: Mutex::new(cfg),
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
