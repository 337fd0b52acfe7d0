//! The aipam operator: binds the reservations the webhook made at admission to their Pods,
//! resolves zone alternatives when a Pod lands on a node (late binding), releases addresses
//! when Pods go, collects reservations that were never used, keeps pool counters and the pool
//! finalizer, and runs under a Lease so that two replicas can be deployed.
//!
//! The rules are pure functions in the `aipam-rules` crate (shared with the webhook and
//! `aipamctl`); the controllers gather their inputs from the caches and carry out the answers.

pub mod autopool;
pub mod binding;
pub mod collect;
pub mod ctx;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod pools;
pub mod run;
pub mod write;

pub use ctx::{Ctx, Settings};
pub use metrics::Metrics;
pub use run::{start, Running};
