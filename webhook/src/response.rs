//! Building admission responses.

use kube::core::admission::{AdmissionRequest, AdmissionResponse};
use kube::core::response::StatusSummary;
use kube::core::DynamicObject;

/// Allowed, nothing changed.
pub fn allow(req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    AdmissionResponse::from(req)
}

/// Allowed, nothing changed, with warnings the client shows (`kubectl` prints each as
/// `Warning: ...`).
pub fn allow_with_warnings(
    req: &AdmissionRequest<DynamicObject>,
    warnings: Vec<String>,
) -> AdmissionResponse {
    let mut r = AdmissionResponse::from(req);
    if !warnings.is_empty() {
        r.warnings = Some(warnings);
    }
    r
}

/// Refused with a code (400 malformed input, 403 cannot be served, 422 invalid object, 500 a
/// failure of ours, 503 not ready) and the message the user sees.
pub fn deny(req: &AdmissionRequest<DynamicObject>, code: u16, message: &str) -> AdmissionResponse {
    let mut r = AdmissionResponse::from(req).deny(message);
    r.result.code = code;
    r.result.status = Some(StatusSummary::Failure);
    r.result.reason = match code {
        400 => "BadRequest",
        403 => "Forbidden",
        422 => "Invalid",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    }
    .to_string();
    r
}
