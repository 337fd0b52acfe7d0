//! CNI errors: the spec's codes plus this plugin's own (100 and up), printed on stdout in the CNI
//! error format `{"cniVersion","code","msg","details"}`.

use serde::Serialize;

/// Incompatible CNI version (spec code 1).
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in the network configuration (spec code 2).
pub const UNSUPPORTED_FIELD: u32 = 2;
/// Invalid or missing environment variables (spec code 4).
pub const INVALID_ENV: u32 = 4;
/// I/O failure (spec code 5).
pub const IO_FAILURE: u32 = 5;
/// Failed to decode the input (spec code 6).
pub const DECODING_FAILURE: u32 = 6;
/// Invalid network configuration (spec code 7).
pub const INVALID_CONFIG: u32 = 7;
/// Try again later (spec code 11): the reservation is not there yet or the API is unreachable.
pub const TRY_AGAIN_LATER: u32 = 11;
/// STATUS: the plugin is not available (spec code 50).
pub const NOT_AVAILABLE: u32 = 50;

/// The API server rejected the credential (HTTP 401).
pub const UNAUTHORIZED: u32 = 100;
/// The API server refused the request for this credential (HTTP 403).
pub const FORBIDDEN: u32 = 101;
/// The API server answered something this plugin cannot use (unexpected status, undecodable body).
pub const UNEXPECTED_RESPONSE: u32 = 102;
/// The reservation exists but is malformed (an address, gateway or route that does not parse).
pub const MALFORMED_RESERVATION: u32 = 103;
/// The credentials cannot be loaded (kubeconfig, token file, certificates, in-cluster files).
pub const CREDENTIALS: u32 = 104;
/// CHECK: the reservation is gone or differs from the addresses in `prevResult`.
pub const CHECK_MISMATCH: u32 = 105;

/// One CNI error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
pub struct CniError {
    /// The CNI error code.
    pub code: u32,
    /// A one-line message that says what to check.
    pub msg: String,
    /// More details (may be empty).
    pub details: String,
}

impl CniError {
    /// A new error with no details.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error with details.
    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The error as the JSON object CNI runtimes read from stdout.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            details: &'a str,
        }
        serde_json::to_string(&Wire {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_else(|_| {
            format!(
                "{{\"cniVersion\":\"{cni_version}\",\"code\":{},\"msg\":\"error\"}}",
                self.code
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_fields() {
        let e = CniError::new(TRY_AGAIN_LATER, "not yet").with_details("why");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 11);
        assert_eq!(v["msg"], "not yet");
        assert_eq!(v["details"], "why");
    }
}
