//! A Kubernetes API stand-in for tests and the local demo — never a production component.
//!
//! It serves the Kubernetes REST API over HTTPS on 127.0.0.1 for the kinds the project uses,
//! with the semantics the project relies on (resourceVersion and conflicts, finalizers, garbage
//! collection, watches with bookmarks and 410 Gone, selectors, patches, dry run, status and binding
//! subresources, discovery and Table responses for kubectl, admission webhooks). See README.md for
//! what is covered and how it differs from kube-apiserver.

pub mod admission;
pub mod discovery;
pub mod error;
pub mod faults;
pub mod handler;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod rest;
pub mod schema;
pub mod selector;
pub mod server;
pub mod store;

pub use error::ApiError;
pub use faults::FaultConfig;
pub use server::{ApiServer, ApiServerHandle, Error, ServerOptions};
