//! Reading a SpiderEndpoint (`GET .../namespaces/{ns}/spiderendpoints/{pod}`) and classifying
//! the answer.

use std::time::Duration;

use aipam_crds::PodIPAllocation;
use serde_json::Value;

use crate::http::{Client, HttpError};

/// What the API said about one SpiderEndpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// The endpoint exists; its `status.current` (`None` when it has no status yet).
    Found(Option<PodIPAllocation>),
    /// The endpoint does not exist.
    NotFound,
    /// The API does not serve `spiderendpoints` at all (the CRD is not installed).
    NoSuchResource,
}

/// A failed read.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No HTTP answer (connect, TLS, timeout): worth retrying.
    #[error(transparent)]
    Network(#[from] HttpError),
    /// HTTP 401.
    #[error("401 Unauthorized: {0}")]
    Unauthorized(String),
    /// HTTP 403.
    #[error("403 Forbidden: {0}")]
    Forbidden(String),
    /// HTTP 429 or 5xx: worth retrying.
    #[error("HTTP {0}: {1}")]
    Unavailable(u16, String),
    /// Any other status, or a body that is not a SpiderEndpoint.
    #[error("unexpected answer (HTTP {0}): {1}")]
    Unexpected(u16, String),
}

impl ApiError {
    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Network(HttpError::Certificate(..)) => false,
            ApiError::Network(_) | ApiError::Unavailable(..) => true,
            _ => false,
        }
    }
}

/// The API path of a SpiderEndpoint.
pub fn endpoint_path(namespace: &str, name: &str) -> String {
    format!(
        "/apis/{}/namespaces/{}/spiderendpoints/{}",
        aipam_crds::API_VERSION,
        namespace,
        name
    )
}

/// Something that reads SpiderEndpoints (the API client, or a fake in unit tests).
pub trait EndpointSource {
    /// Reads the SpiderEndpoint `namespace/name`.
    fn get_endpoint(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<Fetch, ApiError>;
    /// Where the endpoints are read from, and with which credential (for messages).
    fn describe(&self) -> String;
}

impl EndpointSource for Client {
    fn get_endpoint(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<Fetch, ApiError> {
        let resp = self.get(&endpoint_path(namespace, name), timeout)?;
        classify(resp.status, &resp.body, name)
    }

    fn describe(&self) -> String {
        let c = self.credentials();
        format!(
            "API server {} ({}; credential: {})",
            c.server, c.source, c.credential
        )
    }
}

/// The `message` of a metav1.Status body, or the start of the body.
fn status_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(m) = v.get("message").and_then(Value::as_str) {
            return m.to_string();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    text.chars().take(200).collect()
}

/// Classifies an API answer for the SpiderEndpoint `name`.
pub fn classify(status: u16, body: &[u8], name: &str) -> Result<Fetch, ApiError> {
    match status {
        200 => {
            let v: Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::Unexpected(status, format!("the SpiderEndpoint is not JSON: {e}"))
            })?;
            let Some(current) = v.get("status").and_then(|s| s.get("current")) else {
                return Ok(Fetch::Found(None));
            };
            // Spiderpool's Go types omit an empty `ips` (`omitempty`); accept that, and a
            // missing uid or node, rather than fail on a half-written record.
            let mut current = current.clone();
            if let Some(obj) = current.as_object_mut() {
                for (k, default) in [("uid", ""), ("node", "")] {
                    if obj.get(k).is_none_or(Value::is_null) {
                        obj.insert(k.to_string(), Value::String(default.to_string()));
                    }
                }
                if obj.get("ips").is_none_or(Value::is_null) {
                    obj.insert("ips".to_string(), Value::Array(Vec::new()));
                }
            }
            let alloc: PodIPAllocation = serde_json::from_value(current).map_err(|e| {
                ApiError::Unexpected(
                    status,
                    format!("status.current of the SpiderEndpoint does not decode: {e}"),
                )
            })?;
            Ok(Fetch::Found(Some(alloc)))
        }
        404 => {
            // A missing object is a metav1.Status naming it; a path the API does not serve at all
            // (CRD not installed) is a plain "404 page not found" or a Status without details.
            let v: Option<Value> = serde_json::from_slice(body).ok();
            let named = v
                .as_ref()
                .and_then(|v| v.get("details"))
                .and_then(|d| d.get("name"))
                .and_then(Value::as_str)
                == Some(name);
            if named {
                Ok(Fetch::NotFound)
            } else {
                Ok(Fetch::NoSuchResource)
            }
        }
        401 => Err(ApiError::Unauthorized(status_message(body))),
        403 => Err(ApiError::Forbidden(status_message(body))),
        429 | 500..=599 => Err(ApiError::Unavailable(status, status_message(body))),
        _ => Err(ApiError::Unexpected(status, status_message(body))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_vs_no_such_resource() {
        let status = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"spiderendpoints.spiderpool.spidernet.io \"web-0\" not found","reason":"NotFound","details":{"name":"web-0","group":"spiderpool.spidernet.io","kind":"spiderendpoints"},"code":404}"#;
        assert_eq!(classify(404, status, "web-0").unwrap(), Fetch::NotFound);
        assert_eq!(
            classify(404, b"404 page not found", "web-0").unwrap(),
            Fetch::NoSuchResource
        );
    }

    #[test]
    fn status_variants() {
        assert_eq!(
            classify(200, br#"{"metadata":{"name":"p"}}"#, "p").unwrap(),
            Fetch::Found(None)
        );
        let Fetch::Found(Some(a)) =
            classify(200, br#"{"status":{"current":{"uid":"u"}}}"#, "p").unwrap()
        else {
            panic!("expected an allocation")
        };
        assert!(a.ips.is_empty());
        assert!(matches!(
            classify(401, br#"{"message":"Unauthorized"}"#, "p"),
            Err(ApiError::Unauthorized(m)) if m == "Unauthorized"
        ));
        assert!(classify(503, b"", "p").unwrap_err().is_transient());
        assert!(!classify(400, b"", "p").unwrap_err().is_transient());
        assert!(classify(200, b"{not json", "p").is_err());
    }
}
