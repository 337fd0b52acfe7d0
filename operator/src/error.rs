//! Reconcile errors, counted per kind.

/// A reconcile error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// The metric label of the error's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) => match s.code {
                404 => "not_found",
                409 => "conflict",
                422 => "invalid",
                401 | 403 => "forbidden",
                429 => "throttled",
                c if c >= 500 => "server",
                _ => "api",
            },
            Error::Kube(_) => "transport",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

/// Whether an error is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether an error is a 409.
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whether a conditional write found its condition gone: the object is gone (404), changed
/// (409, a precondition) or no longer carries what a JSON Patch `test` expects (422).
pub fn is_stale_write(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if matches!(s.code, 404 | 409 | 422))
}

/// `Ok` for a 404 (the object is already gone).
pub fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}
