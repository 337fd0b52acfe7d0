//! The aipam admission webhook.
//!
//! - [`pod`]: reserve addresses when a Pod is admitted (mutating) and bind them to the Pod's
//!   final name and UID (validating);
//! - [`pod_guard`]: refuse changes of a Pod's reservation annotation after creation by anyone
//!   but the operator (Pod UPDATE);
//! - [`pools`]: mutate and validate SpiderIPPool, SpiderSubnet and SpiderReservedIP;
//! - [`http`]: AdmissionReview v1 over HTTP, the routes and what each is registered for;
//! - [`server`] and [`tls`]: rustls (TLS 1.2/1.3, certificate reloaded from its files) and
//!   graceful shutdown;
//! - [`cache`] and [`watch`]: the cluster as the hooks read it, fed by watches;
//! - [`effects`]: the side effects, over kube or in memory.

pub mod cache;
pub mod effects;
pub mod http;
pub mod metrics;
pub mod network;
pub mod pod;
pub mod pod_guard;
#[cfg(test)]
mod pod_tests;
pub mod pools;
#[cfg(test)]
mod pools_tests;
pub mod response;
pub mod server;
pub mod testkit;
pub mod tls;
pub mod watch;

pub use cache::{Cache, Object, StoreKind};
pub use effects::{Effects, KubeEffects, MemoryEffects};
pub use http::{health_router, router, App, Hook};
