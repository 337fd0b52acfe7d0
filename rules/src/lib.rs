//! The cluster rules, as pure functions over snapshots: which Pod holds a claim, what to write
//! into a Pod's endpoint, what to release, what to collect, what the counters say, which
//! controller owns a Pod and whether a node is Ready — given Pods, claims, endpoints,
//! StatefulSets, nodes and the time. The webhook, the operator and `aipamctl` gather the inputs
//! (from caches, a live read or a one-shot snapshot) and carry out the answers, so every rule
//! here is tested without a server, and all three apply the same one.
//!
//! No kube client, no runtime, no HTTP: only `aipam-core`, `aipam-crds` and the Kubernetes
//! types.

pub mod binding;
pub mod claims;
pub mod counters;
pub mod endpoints;
pub mod migrate;
pub mod node;
pub mod owner;
pub mod world;

#[cfg(test)]
mod testkit;
