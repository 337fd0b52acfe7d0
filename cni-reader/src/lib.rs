//! The CNI IPAM plugin `spiderpool` of aipam: the addresses of a Pod are reserved when the Pod is
//! admitted (by the aipam webhook) and recorded in a SpiderEndpoint named like the Pod; at ADD this
//! plugin reads that record back and prints it as a CNI result. It allocates nothing and releases
//! nothing: DEL succeeds, the operator releases addresses when the Pod is deleted.
//!
//! Kept small on purpose: no async runtime, no kube client; one blocking HTTPS GET over rustls.

pub mod api;
pub mod config;
pub mod credentials;
pub mod env;
pub mod error;
pub mod http;
pub mod logging;
pub mod plugin;
pub mod result;
