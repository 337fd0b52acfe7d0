//! The HTTP layer: decodes and encodes `AdmissionReview` v1, limits body size and time, and
//! refuses reviews of kinds or operations a path is not registered for. The hooks never see
//! HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation, META_API_VERSION_V1, META_KIND,
};
use kube::core::DynamicObject;
use tracing::{debug, warn};

use crate::cache::Cache;
use crate::effects::Effects;
use crate::metrics::Metrics;
use crate::pod::PodHooks;
use crate::pod_guard::PodGuard;
use crate::pools::PoolHooks;
use crate::response::deny;

/// Largest AdmissionReview body accepted (kube-apiserver's own request limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The group of the Spiderpool kinds.
const SPIDER_GROUP: &str = aipam_crds::GROUP;

/// One hook and what it is registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `/mutate-pod`: Pod CREATE.
    MutatePod,
    /// `/validate-pod`: Pod CREATE.
    ValidatePod,
    /// `/validate-pod-update`: Pod UPDATE (the reservation annotation guard).
    GuardPod,
    /// `/mutate-ippool`: SpiderIPPool CREATE.
    MutatePool,
    /// `/validate-ippool`: SpiderIPPool CREATE, UPDATE, DELETE.
    ValidatePool,
    /// `/validate-subnet`: SpiderSubnet CREATE, UPDATE, DELETE.
    ValidateSubnet,
    /// `/validate-reservedip`: SpiderReservedIP CREATE, UPDATE.
    ValidateReservedIp,
}

impl Hook {
    /// Every hook.
    pub const ALL: [Hook; 7] = [
        Hook::MutatePod,
        Hook::ValidatePod,
        Hook::GuardPod,
        Hook::MutatePool,
        Hook::ValidatePool,
        Hook::ValidateSubnet,
        Hook::ValidateReservedIp,
    ];

    /// The URL path.
    pub fn path(self) -> &'static str {
        match self {
            Hook::MutatePod => "/mutate-pod",
            Hook::ValidatePod => "/validate-pod",
            Hook::GuardPod => "/validate-pod-update",
            Hook::MutatePool => "/mutate-ippool",
            Hook::ValidatePool => "/validate-ippool",
            Hook::ValidateSubnet => "/validate-subnet",
            Hook::ValidateReservedIp => "/validate-reservedip",
        }
    }

    /// API group, version and resource (plural) it serves.
    pub fn resource(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Hook::MutatePod | Hook::ValidatePod | Hook::GuardPod => ("", "v1", "pods"),
            Hook::MutatePool | Hook::ValidatePool => (SPIDER_GROUP, "v2beta1", "spiderippools"),
            Hook::ValidateSubnet => (SPIDER_GROUP, "v2beta1", "spidersubnets"),
            Hook::ValidateReservedIp => (SPIDER_GROUP, "v2beta1", "spiderreservedips"),
        }
    }

    /// The kind it serves.
    pub fn kind(self) -> &'static str {
        match self {
            Hook::MutatePod | Hook::ValidatePod | Hook::GuardPod => "Pod",
            Hook::MutatePool | Hook::ValidatePool => "SpiderIPPool",
            Hook::ValidateSubnet => "SpiderSubnet",
            Hook::ValidateReservedIp => "SpiderReservedIP",
        }
    }

    /// Operations it serves.
    pub fn operations(self) -> &'static [Operation] {
        match self {
            Hook::MutatePod | Hook::ValidatePod | Hook::MutatePool => &[Operation::Create],
            Hook::GuardPod => &[Operation::Update],
            Hook::ValidatePool | Hook::ValidateSubnet => {
                &[Operation::Create, Operation::Update, Operation::Delete]
            }
            Hook::ValidateReservedIp => &[Operation::Create, Operation::Update],
        }
    }

    /// Whether it mutates.
    pub fn is_mutating(self) -> bool {
        matches!(self, Hook::MutatePod | Hook::MutatePool)
    }

    fn accepts(self, req: &AdmissionRequest<DynamicObject>) -> Result<(), String> {
        if self == Hook::GuardPod && crate::pod_guard::guarded_subresource(req) {
            return Ok(());
        }
        let (group, _, resource) = self.resource();
        let ok_kind = req.kind.group == group && req.kind.kind == self.kind();
        let ok_resource = req.resource.resource == resource && req.sub_resource.is_none();
        let ok_op = self.operations().contains(&req.operation);
        if ok_kind && ok_resource && ok_op {
            return Ok(());
        }
        let ops: Vec<String> = self
            .operations()
            .iter()
            .map(|o| format!("{o:?}").to_uppercase())
            .collect();
        Err(format!(
            "{} serves {} {} only, not {} {}{} {}; check the webhook configuration's rules",
            self.path(),
            self.kind(),
            ops.join("/"),
            if req.kind.group.is_empty() {
                req.kind.kind.clone()
            } else {
                format!("{}.{}", req.kind.kind, req.kind.group)
            },
            req.resource.resource,
            req.sub_resource
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default(),
            format!("{:?}", req.operation).to_uppercase()
        ))
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct App<E> {
    /// The Pod hooks.
    pub pods: PodHooks<E>,
    /// The pool hooks.
    pub pools: PoolHooks,
    /// The Pod UPDATE guard.
    pub guard: PodGuard,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Time allowed for one review.
    pub timeout: Duration,
}

impl<E: Effects> App<E> {
    /// An application over a cache and side effects.
    pub fn new(cache: Cache, effects: E) -> App<E> {
        let metrics = Arc::new(Metrics::new());
        let mut pods = PodHooks::new(cache.clone(), effects);
        pods.metrics = metrics.clone();
        App {
            pods,
            pools: PoolHooks::new(cache),
            guard: PodGuard::default(),
            metrics,
            timeout: Duration::from_secs(8),
        }
    }

    /// Runs one hook on one request (no HTTP involved).
    pub async fn review(
        &self,
        hook: Hook,
        req: &AdmissionRequest<DynamicObject>,
    ) -> AdmissionResponse {
        if let Err(msg) = hook.accepts(req) {
            return deny(req, 400, &msg);
        }
        // Judging with a cache that has not listed everything would refuse Pods for pools it
        // has not seen and let overlapping pools through. (Binding never refuses; the guard
        // reads nothing from the cluster.)
        let missing = self.pools.cache.unsynced();
        if !missing.is_empty() && !matches!(hook, Hook::ValidatePod | Hook::GuardPod) {
            let names: Vec<&str> = missing.iter().map(|k| k.name()).collect();
            return deny(
                req,
                503,
                &format!(
                    "aipam-webhook is starting and has not read the cluster yet (waiting for {}); retry in a moment",
                    names.join(", ")
                ),
            );
        }
        let work = async {
            match hook {
                Hook::MutatePod => self.pods.mutate(req).await,
                Hook::ValidatePod => self.pods.bind(req).await,
                Hook::GuardPod => self.guard.review(req),
                Hook::MutatePool => self.pools.mutate_pool(req),
                Hook::ValidatePool => self.pools.validate_pool(req),
                Hook::ValidateSubnet => self.pools.validate_subnet(req),
                Hook::ValidateReservedIp => self.pools.validate_reserved_ip(req),
            }
        };
        let deadline = std::time::Instant::now() + self.timeout;
        let work = crate::effects::REVIEW_DEADLINE.scope(deadline, work);
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => deny(
                req,
                500,
                &format!(
                    "{} did not answer within {:?}; nothing was recorded on the object, retry",
                    hook.path(),
                    self.timeout
                ),
            ),
        }
    }
}

fn text(status: StatusCode, msg: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

/// Decodes an AdmissionReview v1 request body as kube-apiserver sends it; the error is the
/// plain-text answer (400) that says what is wrong with the body.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, String> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not an AdmissionReview: {e}"))?;
    if review.types.api_version != META_API_VERSION_V1 || review.types.kind != META_KIND {
        return Err(format!(
            "expected kind {META_KIND} apiVersion {META_API_VERSION_V1}, got kind {:?} apiVersion {:?}; set admissionReviewVersions: [v1]",
            review.types.kind, review.types.api_version
        ));
    }
    let req: AdmissionRequest<DynamicObject> = review.try_into().map_err(
        |_: kube::core::admission::ConvertAdmissionReviewError| {
            "the AdmissionReview has no `request`: kube-apiserver sends the request to review in it"
                .to_string()
        },
    )?;
    if req.uid.is_empty() {
        return Err("the AdmissionReview's request.uid is empty: kube-apiserver sets it to identify the review".to_string());
    }
    Ok(req)
}

async fn handle<E: Effects>(app: Arc<App<E>>, hook: Hook, body: Bytes) -> Response {
    let req = match decode(&body) {
        Ok(r) => r,
        Err(msg) => {
            app.metrics.admission(hook.path(), "error");
            return text(StatusCode::BAD_REQUEST, msg);
        }
    };
    let resp = app.review(hook, &req).await;
    let outcome = if !resp.allowed {
        "denied"
    } else if resp.patch.is_some() {
        "patched"
    } else {
        "allowed"
    };
    if resp.allowed {
        debug!(path = hook.path(), uid = %req.uid, outcome, "admission");
    } else {
        warn!(path = hook.path(), uid = %req.uid, namespace = ?req.namespace, name = %req.name,
            message = %resp.result.message, "denied");
    }
    app.metrics.admission(hook.path(), outcome);
    axum::Json(encode_review(resp)).into_response()
}

/// The response as kube-apiserver reads it: `response.patch` is base64 (Go's `[]byte`), not the
/// array of numbers serde makes of a `Vec<u8>`.
pub fn encode_review(resp: AdmissionResponse) -> serde_json::Value {
    use base64::Engine;
    let patch = resp.patch.clone();
    let mut v = serde_json::to_value(resp.into_review()).unwrap_or_default();
    if let (Some(bytes), Some(slot)) = (patch, v.pointer_mut("/response/patch")) {
        *slot = serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    v
}

/// The HTTPS router: one POST route per hook.
pub fn router<E: Effects>(app: Arc<App<E>>) -> Router {
    let mut r = Router::new();
    for hook in Hook::ALL {
        let app = app.clone();
        r = r.route(
            hook.path(),
            post(move |body: Bytes| handle(app.clone(), hook, body)),
        );
    }
    r.layer(DefaultBodyLimit::max(MAX_BODY))
}

/// The plain-HTTP router: `/healthz`, `/readyz`, `/metrics`. `/readyz` fails once `draining`
/// is set (the process is shutting down: the Service must stop sending it new connections while
/// it still serves those it has).
pub fn health_router(cache: Cache, metrics: Arc<Metrics>, draining: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let cache = cache.clone();
                let draining = draining.clone();
                async move {
                    let missing = cache.unsynced();
                    if draining.load(Ordering::SeqCst) {
                        text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "shutting down: finishing the requests of open connections".to_string(),
                        )
                    } else if missing.is_empty() {
                        text(StatusCode::OK, "ok".to_string())
                    } else {
                        let names: Vec<&str> = missing.iter().map(|k| k.name()).collect();
                        text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("waiting for the first listing of: {}", names.join(", ")),
                        )
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
}
