//! The pure core of aipam: everything that decides *which* address a Pod gets and whether a
//! manifest is acceptable, with no Kubernetes client, no HTTP and no async runtime.
//!
//! Webhook, operator, CNI binary and command-line tool all call into this crate, so the rules
//! are written once and tested without any server.

pub mod affinity;
pub mod alloc;
pub mod annotations;
pub mod auto_pool;
pub mod config;
pub mod labels;
pub mod model;
pub mod names;
pub mod network;
pub mod ranges;
pub mod reservation;
pub mod reserve;
pub mod select;
pub mod usage;
pub mod validate;
