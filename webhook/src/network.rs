//! A Pod's interfaces: which ones this IPAM serves, from the Multus annotations and the
//! NetworkAttachmentDefinitions they name (read through [`Effects`]; the rules are
//! `aipam_core::network`'s).

use std::collections::BTreeMap;

use aipam_core::annotations::AnnotationError;
use aipam_core::model::InterfaceRequest;
use aipam_core::network::{interface_for, network_ipam, requested_networks};

use crate::effects::Effects;

/// Why a Pod's networks cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// The core's verdict: malformed annotation, missing network, bad CNI configuration.
    #[error(transparent)]
    Core(#[from] aipam_core::network::NetworkError),
    /// The NetworkAttachmentDefinition could not be read from the API.
    #[error("interface {interface}: cannot read NetworkAttachmentDefinition {network} ({key}): {problem}")]
    Unreadable {
        /// The interface.
        interface: String,
        /// `namespace/name`.
        network: String,
        /// The annotation that named it.
        key: &'static str,
        /// Why.
        problem: String,
    },
}

impl From<AnnotationError> for NetworkError {
    fn from(e: AnnotationError) -> Self {
        NetworkError::Core(e.into())
    }
}

impl NetworkError {
    /// Whether the Pod's own annotation is at fault (HTTP 400 rather than 403).
    pub fn is_malformed_annotation(&self) -> bool {
        matches!(
            self,
            NetworkError::Core(aipam_core::network::NetworkError::Annotation(_))
        )
    }
}

/// How the interfaces are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceOptions {
    /// The primary interface's name (`eth0`).
    pub primary_interface: String,
    /// Serve the primary interface when the Pod names no default network (the cluster network
    /// uses this IPAM).
    pub serve_primary: bool,
}

impl Default for InterfaceOptions {
    fn default() -> Self {
        InterfaceOptions {
            primary_interface: "eth0".to_string(),
            serve_primary: true,
        }
    }
}

/// The interfaces of a Pod this IPAM serves, primary first. Empty when none is.
pub async fn interfaces<E: Effects>(
    effects: &E,
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    opts: &InterfaceOptions,
) -> Result<Vec<InterfaceRequest>, NetworkError> {
    let (default, extra) = requested_networks(namespace, annotations)?;
    let mut out = Vec::new();
    if default.is_none() && opts.serve_primary {
        out.push(InterfaceRequest {
            name: opts.primary_interface.clone(),
            ..InterfaceRequest::default()
        });
    }
    let default = default.map(|mut d| {
        d.interface = opts.primary_interface.clone();
        d
    });
    for net in default.iter().chain(extra.iter()) {
        let config = effects
            .get_network(&net.namespace, &net.name)
            .await
            .map_err(|e| NetworkError::Unreadable {
                interface: net.interface.clone(),
                network: net.full_name(),
                key: net.key,
                problem: e.to_string(),
            })?
            .ok_or_else(|| aipam_core::network::NetworkError::Missing(net.full_name()))?;
        if let Some(i) = interface_for(net, network_ipam(&net.full_name(), &config)?) {
            out.push(i);
        }
    }
    Ok(out)
}
