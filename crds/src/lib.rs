//! Rust types of the Spiderpool-compatible custom resources (group `spiderpool.spidernet.io`,
//! version `v2beta1`), and the generator of the CRD manifests in `config/crd/`.
//!
//! The four Spiderpool kinds ([`SpiderIPPool`], [`SpiderSubnet`], [`SpiderEndpoint`],
//! [`SpiderReservedIP`]) follow Spiderpool's Go types and its generated CRDs field for field, so
//! that manifests written for Spiderpool deserialise and apply unchanged. [`SpiderIPClaim`] is this
//! project's own kind: one cluster-scoped claim object per reserved address.
//!
//! Regenerate the manifests with `cargo run -p aipam-crds --bin crdgen`; a test fails when the
//! committed files drift from what the types generate.

// kube-derive's repeated `printcolumn(type_ = ...)` arguments look like duplicated attributes
// to clippy; they are not.
#![allow(clippy::duplicated_attributes)]

pub mod auto_pool;
pub mod claim;
pub mod common;
pub mod convert;
pub mod endpoint;
pub mod ippool;
pub mod record;
pub mod render;
pub mod reservedip;
pub mod subnet;

pub use claim::{ClaimOwner, SpiderIPClaim, SpiderIPClaimSpec};
pub use common::{InvalidIpVersion, IpVersion, Route};
pub use endpoint::{
    IPAllocationDetail, PodIPAllocation, SpiderEndpoint, SpiderEndpointFields,
    WorkloadEndpointStatus,
};
pub use ippool::{IPPoolSpec, IPPoolStatus, PoolIPAllocation, SpiderIPPool};
pub use render::{all_crds, crd_file_name, render_all, render_crd, RenderError, GENERATOR_COMMAND};
pub use reservedip::{ReservedIPSpec, SpiderReservedIP};
pub use subnet::{SpiderSubnet, SubnetSpec, SubnetStatus};

/// The API group of every kind in this crate.
pub const GROUP: &str = "spiderpool.spidernet.io";
/// The API version of every kind in this crate.
pub const VERSION: &str = "v2beta1";
/// `GROUP/VERSION`, as written in an object's `apiVersion`.
pub const API_VERSION: &str = "spiderpool.spidernet.io/v2beta1";
/// The `kubectl get` category shared by every kind (as in Spiderpool).
pub const CATEGORY: &str = "spiderpool";
