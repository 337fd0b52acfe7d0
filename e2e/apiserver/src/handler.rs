//! HTTP: routing of Kubernetes REST paths, query parameters, list, watch, Table, discovery.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State as AxState;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::admission::UserInfo;
use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::faults::{FaultKind, Faults};
use crate::patch::PatchKind;
use crate::resources::ResourceDef;
use crate::rest::{self, at_version, Change, DeleteOpts, State, WriteOpts};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{meta_str, parse_rv, StoredEvent};

/// What the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Shared state.
    pub st: Arc<State>,
    /// Bearer token required on requests (None: no authentication).
    pub token: Option<String>,
    /// host:port the server listens on (for `/api`).
    pub addr: String,
}

/// Builds the axum router.
pub fn router(ctx: Ctx) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(ctx)
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

type Query = HashMap<String, String>;

fn query(req: &Request<Body>) -> Query {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn truthy(q: &Query, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "1" || v == "true")
}

fn dry_run(q: &Query) -> ApiResult<bool> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(v) => Err(ApiError::bad_request(format!(
            "Invalid dry run value: \"{v}\": supported values: \"All\""
        ))),
    }
}

/// The handler for every request.
pub async fn handle(AxState(ctx): AxState<Ctx>, req: Request<Body>) -> Response<Body> {
    let user = match &ctx.token {
        None => UserInfo::admin(),
        Some(tok) => {
            let bearer = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(str::trim);
            match bearer {
                Some(t) if t == tok => UserInfo::admin(),
                Some(t) => {
                    let known = ctx
                        .st
                        .users
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(t)
                        .cloned();
                    match known {
                        Some(u) => u,
                        None => return error_response(&ApiError::unauthorized()),
                    }
                }
                None => return error_response(&ApiError::unauthorized()),
            }
        }
    };
    if req.uri().path().starts_with("/_aipam/") {
        if user != UserInfo::admin() {
            return error_response(&ApiError::new(
                403,
                "Forbidden",
                format!(
                    "user \"{}\" cannot use the stand-in's control endpoints",
                    user.username
                ),
            ));
        }
        return match admin(&ctx, req).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
    }
    let faults = ctx.st.faults.get();
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    if !faults.slow.is_zero() && Faults::roll(faults.slow_rate) {
        ctx.st.faults.hit(FaultKind::Slow);
        tokio::time::sleep(faults.slow).await;
    }
    if Faults::roll(faults.error_rate) {
        ctx.st.faults.hit(FaultKind::Error);
        return error_response(&ApiError::internal(
            "Internal error occurred: injected fault",
        ));
    }
    let method = req.method().clone();
    if method != Method::GET && Faults::roll(faults.conflict_rate) {
        ctx.st.faults.hit(FaultKind::Conflict);
        return error_response(&ApiError::new(409, "Conflict", "Operation cannot be fulfilled: injected conflict; please apply your changes to the latest version and try again"));
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let q = query(&req);
    tracing::debug!(%method, %path, "request");
    match route(&ctx, req, &path, &q, user).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

/// The stand-in's own control endpoints (same token): faults, webhook services, compaction.
async fn admin(ctx: &Ctx, req: Request<Body>) -> ApiResult<Response<Body>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = read_body(req).await?;
    let v: Value = if body.is_empty() {
        json!({})
    } else {
        parse_object(&body)?
    };
    match (method, path.as_str()) {
        (Method::PUT, "/_aipam/faults") => {
            let rate = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            ctx.st.faults.set(crate::faults::FaultConfig {
                delay: Duration::from_millis(v.get("delayMs").and_then(Value::as_u64).unwrap_or(0)),
                conflict_rate: rate("conflictRate"),
                error_rate: rate("errorRate"),
                watch_drop_rate: rate("watchDropRate"),
                slow_rate: rate("slowRate"),
                slow: Duration::from_millis(v.get("slowMs").and_then(Value::as_u64).unwrap_or(0)),
            });
            Ok(json_response(200, &v))
        }
        (Method::PUT, "/_aipam/webhook-services") => {
            let ns = v
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
            let parse = |a: &Value| {
                a.as_str()
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| ApiError::bad_request("address must be host:port"))
            };
            let addrs = match (
                v.get("address"),
                v.get("addresses").and_then(Value::as_array),
            ) {
                (Some(a), _) => vec![parse(a)?],
                (None, Some(list)) => list.iter().map(parse).collect::<ApiResult<Vec<_>>>()?,
                (None, None) => {
                    return Err(ApiError::bad_request(
                        "address (host:port) or addresses ([host:port]) is required",
                    ))
                }
            };
            ctx.st.admission.set_endpoints(ns, name, addrs);
            Ok(json_response(200, &v))
        }
        (Method::POST, "/_aipam/compact") => {
            ctx.st.lock().compact();
            Ok(json_response(200, &json!({"compacted": true})))
        }
        (Method::GET, "/_aipam/write-counts") => {
            let counts = ctx
                .st
                .writes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            Ok(json_response(200, &json!(counts)))
        }
        (Method::GET, "/_aipam/webhook-calls") => {
            let calls: Vec<Value> = ctx
                .st
                .admission
                .calls()
                .into_iter()
                .map(|(n, op, dry)| json!({"webhook": n, "operation": op, "dryRun": dry}))
                .collect();
            Ok(json_response(200, &json!(calls)))
        }
        _ => Err(ApiError::not_found_path()),
    }
}

async fn read_body(req: Request<Body>) -> ApiResult<Bytes> {
    axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))
}

fn parse_object_ct(b: &[u8], content_type: &str) -> ApiResult<Value> {
    if content_type.contains("protobuf") {
        if let Some(v) = crate::protobuf::decode(b) {
            return Ok(v);
        }
    }
    if content_type.contains("protobuf") || content_type.contains("cbor") {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type})"),
        ));
    }
    parse_object(b)
}

fn parse_object(b: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(b)
        .or_else(|_| serde_yaml::from_slice(b))
        .map_err(|e| ApiError::bad_request(format!("error decoding the object: {e}")))
}

async fn route(
    ctx: &Ctx,
    req: Request<Body>,
    path: &str,
    q: &Query,
    user: UserInfo,
) -> ApiResult<Response<Body>> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let st = &ctx.st;
    match segs.as_slice() {
        ["version"] => return Ok(json_response(200, &discovery::version())),
        ["healthz"] | ["livez"] | ["readyz"] => {
            let mut r = Response::new(Body::from("ok"));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
            return Ok(r);
        }
        ["api"] => return Ok(json_response(200, &discovery::api_versions(&ctx.addr))),
        ["openapi", "v2"] | ["swagger-2.0.0.pb-v1"] => {
            let accept = req
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            if accept.contains("protobuf") {
                let mut r = Response::new(Body::from(discovery::openapi_v2_protobuf()));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                    ),
                );
                return Ok(r);
            }
            return Ok(json_response(200, &discovery::openapi_v2_json()));
        }
        ["openapi", "v3"] => {
            return Ok(json_response(
                200,
                &discovery::openapi_v3_root(st.lock().registry.all()),
            ))
        }
        ["openapi", "v3", "api", "v1"] => {
            return discovery::openapi_v3_gv(st.lock().registry.all(), "", "v1")
                .map(|v| json_response(200, &v))
                .ok_or_else(ApiError::not_found_path)
        }
        ["openapi", "v3", "apis", g, v] => {
            return discovery::openapi_v3_gv(st.lock().registry.all(), g, v)
                .map(|v| json_response(200, &v))
                .ok_or_else(ApiError::not_found_path)
        }
        ["apis"] => {
            return Ok(json_response(
                200,
                &discovery::api_group_list(st.lock().registry.all()),
            ))
        }
        ["api", "v1"] => {
            return discovery::resource_list(st.lock().registry.all(), "", "v1")
                .map(|v| json_response(200, &v))
                .ok_or_else(ApiError::not_found_path)
        }
        ["apis", g] => {
            return discovery::api_group(st.lock().registry.all(), g)
                .map(|v| json_response(200, &v))
                .ok_or_else(ApiError::not_found_path)
        }
        ["apis", g, v] => {
            return discovery::resource_list(st.lock().registry.all(), g, v)
                .map(|v| json_response(200, &v))
                .ok_or_else(ApiError::not_found_path)
        }
        _ => {}
    }
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return Err(ApiError::not_found_path()),
    };
    // Resolve the target: namespaced (namespaces/{ns}/{resource}/...) or cluster-scoped.
    let (def, ns, name, sub) = {
        let s = st.lock();
        let namespaced = match rest {
            ["namespaces", _, r, ..] => s
                .registry
                .lookup(group, version, r)
                .filter(|d| d.namespaced),
            _ => None,
        };
        match (namespaced, rest) {
            (Some(d), [_, ns, _, tail @ ..]) if tail.len() <= 2 => (
                d,
                Some(ns.to_string()),
                tail.first().map(|s| s.to_string()),
                tail.get(1).map(|s| s.to_string()),
            ),
            (None, [r, tail @ ..]) if tail.len() <= 2 => {
                let d = s
                    .registry
                    .lookup(group, version, r)
                    .ok_or_else(ApiError::not_found_path)?;
                (
                    d,
                    None,
                    tail.first().map(|s| s.to_string()),
                    tail.get(1).map(|s| s.to_string()),
                )
            }
            _ => return Err(ApiError::not_found_path()),
        }
    };
    if def.namespaced && ns.is_none() && name.is_some() {
        return Err(ApiError::not_found_path());
    }
    let nsv = ns.clone().unwrap_or_default();
    let method = req.method().clone();
    let opts = WriteOpts {
        dry_run: dry_run(q)?,
        field_manager: q.get("fieldManager").cloned(),
        force: truthy(q, "force"),
        user,
    };
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let is_write = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) && !opts.dry_run;
    let resp = match (method, name.as_deref(), sub.as_deref()) {
        (Method::GET, None, None) => {
            if truthy(q, "watch") {
                return watch(ctx, def, ns, q, &accept);
            }
            list(st, &def, ns.as_deref(), q, &accept)
        }
        (Method::GET, Some(n), None | Some("status")) => {
            if sub.is_some() && !def.status_subresource {
                return Err(ApiError::not_found_path());
            }
            let o = rest::get(st, &def, &nsv, n)?;
            if accept.contains("as=PartialObjectMetadata") {
                return Ok(json_response(200, &partial(&o)));
            }
            if accept.contains("as=Table") {
                let rv = meta_str(&o, "resourceVersion")
                    .unwrap_or_default()
                    .to_string();
                return Ok(json_response(
                    200,
                    &discovery::table(
                        &def,
                        &[o],
                        &rv,
                        q.get("includeObject")
                            .map(String::as_str)
                            .unwrap_or("Metadata"),
                    ),
                ));
            }
            Ok(json_response(200, &o))
        }
        (Method::POST, None, None) => {
            if def.namespaced && ns.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            let body = parse_object_ct(&read_body(req).await?, &content_type)?;
            let o = rest::create(st, &def, &nsv, body, &opts).await?;
            Ok(json_response(201, &o))
        }
        (Method::POST, Some(n), Some("binding"))
            if def.group.is_empty() && def.plural == "pods" =>
        {
            let body = parse_object_ct(&read_body(req).await?, &content_type)?;
            let o = rest::bind(st, &def, &nsv, n, body, &opts).await?;
            Ok(json_response(201, &o))
        }
        (Method::PUT, Some(n), None | Some("status")) => {
            let body = parse_object_ct(&read_body(req).await?, &content_type)?;
            let (code, o) = rest::update(
                st,
                &def,
                &nsv,
                n,
                sub.as_deref(),
                Change::Replace(body),
                &opts,
            )
            .await?;
            Ok(json_response(code, &o))
        }
        (Method::PATCH, Some(n), None | Some("status")) => {
            let kind = PatchKind::from_content_type(&content_type)?;
            let body = read_body(req).await?;
            let (code, o) = rest::update(
                st,
                &def,
                &nsv,
                n,
                sub.as_deref(),
                Change::Patch(kind, &body),
                &opts,
            )
            .await?;
            Ok(json_response(code, &o))
        }
        (Method::DELETE, Some(n), None) => {
            let body = read_body(req).await?;
            let dopts = delete_opts(q, &body, &opts)?;
            let o = rest::delete(st, &def, &nsv, n, &dopts).await?;
            Ok(json_response(200, &o))
        }
        (Method::DELETE, None, None) => {
            let body = read_body(req).await?;
            let dopts = delete_opts(q, &body, &opts)?;
            let (lsel, fsel) = selectors(&def, q)?;
            let names: Vec<(String, String)> = {
                let s = st.lock();
                s.list(&def.storage_group, &def.plural, ns.as_deref())
                    .into_iter()
                    .filter(|o| lsel.matches(o) && fsel.matches(o))
                    .map(|o| {
                        (
                            meta_str(o, "namespace").unwrap_or_default().to_string(),
                            meta_str(o, "name").unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            };
            let mut items = Vec::new();
            for (ons, n) in names {
                match rest::delete(st, &def, &ons, &n, &dopts).await {
                    Ok(o) => items.push(o),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let rv = st.lock().rv.to_string();
            Ok(json_response(
                200,
                &json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(), "metadata": {"resourceVersion": rv}, "items": items}),
            ))
        }
        (Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE, _, Some(_)) => {
            Err(ApiError::not_found_path())
        }
        _ => Err(ApiError::method_not_allowed()),
    };
    if is_write && resp.as_ref().is_ok_and(|r| r.status().is_success()) {
        st.count_write(write_key(&def, sub.as_deref()));
    }
    resp
}

/// `plural[.group][/subresource]`, as kubectl names resources.
fn write_key(def: &ResourceDef, sub: Option<&str>) -> String {
    let mut k = def.plural.clone();
    if !def.group.is_empty() {
        k.push('.');
        k.push_str(&def.group);
    }
    if let Some(s) = sub {
        k.push('/');
        k.push_str(s);
    }
    k
}

fn delete_opts(q: &Query, body: &[u8], opts: &WriteOpts) -> ApiResult<DeleteOpts> {
    let dry = opts.dry_run;
    let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let mut propagation = q.get("propagationPolicy").cloned().or_else(|| {
        b.get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    if propagation.is_none() {
        if let Some(orphan) = b
            .get("orphanDependents")
            .and_then(Value::as_bool)
            .or_else(|| q.get("orphanDependents").map(|v| v == "true"))
        {
            propagation = Some(if orphan { "Orphan" } else { "Background" }.into());
        }
    }
    let body_dry = b
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOpts {
        dry_run: dry || body_dry,
        propagation,
        grace_period: q
            .get("gracePeriodSeconds")
            .and_then(|v| v.parse().ok())
            .or_else(|| b.get("gracePeriodSeconds").and_then(Value::as_i64)),
        precondition_uid: b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_rv: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        user: opts.user.clone(),
    })
}

fn selectors(def: &ResourceDef, q: &Query) -> ApiResult<(LabelSelector, FieldSelector)> {
    let l = LabelSelector::parse(
        q.get("labelSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    )?;
    let f = FieldSelector::parse(
        q.get("fieldSelector")
            .map(String::as_str)
            .unwrap_or_default(),
        def.extra_field_labels(),
        &def.kind,
        &def.api_version(),
    )?;
    Ok((l, f))
}

fn list(
    st: &State,
    def: &ResourceDef,
    ns: Option<&str>,
    q: &Query,
    accept: &str,
) -> ApiResult<Response<Body>> {
    let (lsel, fsel) = selectors(def, q)?;
    let (items, rv) = {
        let s = st.lock();
        let items: Vec<Value> = s
            .list(&def.storage_group, &def.plural, ns)
            .into_iter()
            .filter(|o| lsel.matches(o) && fsel.matches(o))
            .map(|o| at_version(def, o.clone()))
            .collect();
        (items, s.rv.to_string())
    };
    if accept.contains("as=PartialObjectMetadata") {
        let items: Vec<Value> = items.iter().map(partial).collect();
        return Ok(json_response(
            200,
            &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv}, "items": items}),
        ));
    }
    if accept.contains("as=Table") {
        return Ok(json_response(
            200,
            &discovery::table(
                def,
                &items,
                &rv,
                q.get("includeObject")
                    .map(String::as_str)
                    .unwrap_or("Metadata"),
            ),
        ));
    }
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(), "metadata": {"resourceVersion": rv}, "items": items}),
    ))
}

struct WatchFilter {
    def: Arc<ResourceDef>,
    ns: Option<String>,
    lsel: LabelSelector,
    fsel: FieldSelector,
    /// `Some(includeObject)` when the client asked for Table (`kubectl get -w`).
    table: Option<String>,
    /// Whether the client asked for PartialObjectMetadata (kube's metadata watches).
    meta_only: bool,
}

/// `PartialObjectMetadata` of an object.
fn partial(o: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))})
}

impl WatchFilter {
    /// The object as sent: itself, or a one-row Table.
    fn wrap(&self, obj: Value) -> Value {
        let obj = at_version(&self.def, obj);
        if self.meta_only {
            return partial(&obj);
        }
        match &self.table {
            None => obj,
            Some(inc) => {
                let rv = meta_str(&obj, "resourceVersion")
                    .unwrap_or_default()
                    .to_string();
                discovery::table(&self.def, &[obj], &rv, inc)
            }
        }
    }

    fn sel(&self, o: &Value) -> bool {
        self.lsel.matches(o) && self.fsel.matches(o)
    }

    /// The event a watcher sees, with selector transitions turned into ADDED/DELETED as the watch cache does.
    fn map(&self, e: &StoredEvent) -> Option<Value> {
        if e.group != self.def.storage_group || e.plural != self.def.plural {
            return None;
        }
        if let Some(ns) = &self.ns {
            if &e.namespace != ns {
                return None;
            }
        }
        let now = self.sel(&e.object);
        let etype = match (e.etype, e.old.as_ref().map(|o| self.sel(o))) {
            ("MODIFIED", Some(true)) if !now => "DELETED",
            ("MODIFIED", Some(false)) if now => "ADDED",
            ("MODIFIED", Some(false)) => return None,
            (t, _) if now => t,
            _ => return None,
        };
        Some(json!({"type": etype, "object": self.wrap(e.object.clone())}))
    }
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn watch(
    ctx: &Ctx,
    def: Arc<ResourceDef>,
    ns: Option<String>,
    q: &Query,
    accept: &str,
) -> ApiResult<Response<Body>> {
    let table = accept.contains("as=Table");
    let (lsel, fsel) = selectors(&def, q)?;
    let filter = WatchFilter {
        def: def.clone(),
        ns,
        lsel,
        fsel,
        table: table.then(|| {
            q.get("includeObject")
                .cloned()
                .unwrap_or_else(|| "Metadata".into())
        }),
        meta_only: accept.contains("as=PartialObjectMetadata"),
    };
    let bookmarks = truthy(q, "allowWatchBookmarks");
    let send_initial = truthy(q, "sendInitialEvents");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let st = ctx.st.clone();
    let (initial, start, expired) = {
        let s = st.lock();
        if rv_param.is_empty() || rv_param == "0" || send_initial {
            let items: Vec<Value> = s
                .list(&def.storage_group, &def.plural, filter.ns.as_deref())
                .into_iter()
                .filter(|o| filter.sel(o))
                .map(|o| json!({"type": "ADDED", "object": filter.wrap(o.clone())}))
                .collect();
            (items, s.rv, None)
        } else {
            let rv = parse_rv(&rv_param).ok_or_else(|| {
                ApiError::bad_request(format!("invalid resource version: \"{rv_param}\""))
            })?;
            if rv < s.compacted {
                (vec![], rv, Some(ApiError::expired(rv, s.compacted + 1)))
            } else {
                (vec![], rv, None)
            }
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let st2 = st.clone();
    tokio::spawn(async move {
        if let Some(e) = expired {
            let _ = tx
                .send(line(&json!({"type": "ERROR", "object": e.to_status()})))
                .await;
            return;
        }
        for ev in initial {
            if tx.send(line(&ev)).await.is_err() {
                return;
            }
        }
        let bookmark = |rv: u64, initial_end: bool| {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if initial_end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            line(
                &json!({"type": "BOOKMARK", "object": {"kind": filter.def.kind, "apiVersion": filter.def.api_version(), "metadata": meta}}),
            )
        };
        if send_initial && bookmarks && tx.send(bookmark(start, true)).await.is_err() {
            return;
        }
        let mut last = start;
        let mut changed = st2.changed.subscribe();
        let mut shutdown = st2.shutdown.subscribe();
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut tick = tokio::time::interval(st2.bookmark_interval);
        tick.tick().await;
        loop {
            let out: Result<Vec<Bytes>, ApiError> = {
                let s = st2.lock();
                if last < s.compacted {
                    Err(ApiError::expired(last, s.compacted + 1))
                } else {
                    let evs: Vec<Bytes> = s
                        .events
                        .range(s.events.partition_point(|e| e.rv <= last)..)
                        .filter_map(|e| filter.map(e))
                        .map(|v| line(&v))
                        .collect();
                    last = last.max(s.rv);
                    Ok(evs)
                }
            };
            match out {
                Err(e) => {
                    let _ = tx
                        .send(line(&json!({"type": "ERROR", "object": e.to_status()})))
                        .await;
                    return;
                }
                Ok(evs) => {
                    for b in evs {
                        if tx.send(b).await.is_err() {
                            return;
                        }
                        if Faults::roll(st2.faults.get().watch_drop_rate) {
                            st2.faults.hit(FaultKind::WatchDrop);
                            return;
                        }
                    }
                }
            }
            let sleep_until =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = tick.tick() => {
                    if bookmarks {
                        if tx.send(bookmark(last, false)).await.is_err() {
                            return;
                        }
                        if Faults::roll(st2.faults.get().watch_drop_rate) {
                            st2.faults.hit(FaultKind::WatchDrop);
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep_until(sleep_until) => return,
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
