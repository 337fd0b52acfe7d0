//! Admission webhooks as kube-apiserver calls them: mutating first (with reinvocation), then
//! validating; rules, namespaceSelector, objectSelector, failurePolicy, timeoutSeconds,
//! sideEffects on dry run, TLS checked against the configuration's caBundle, AdmissionReview v1.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::resources::ResourceDef;
use crate::rest::State;
use crate::selector::LabelSelector;
use crate::store::{key, meta_str};

/// Admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// CREATE
    Create,
    /// UPDATE
    Update,
    /// DELETE
    Delete,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }
    fn options_kind(self) -> &'static str {
        match self {
            Self::Create => "CreateOptions",
            Self::Update => "UpdateOptions",
            Self::Delete => "DeleteOptions",
        }
    }
}

/// Who makes a request, as `AdmissionReview.request.userInfo` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// `username`.
    pub username: String,
    /// `groups` (`system:authenticated` is always among them).
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The administrator: the stand-in's main token (`system:admin` in `system:masters`).
    pub fn admin() -> Self {
        Self::new("system:admin", &["system:masters"])
    }

    /// A user with its groups (`system:authenticated` added). A service account's username
    /// `system:serviceaccount:NS:NAME` also gets `system:serviceaccounts` and
    /// `system:serviceaccounts:NS`, as Kubernetes' token authenticator gives them.
    pub fn new(username: &str, groups: &[&str]) -> Self {
        let mut g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        if let Some(rest) = username.strip_prefix("system:serviceaccount:") {
            if let Some((ns, _)) = rest.split_once(':') {
                g.push("system:serviceaccounts".to_string());
                g.push(format!("system:serviceaccounts:{ns}"));
            }
        }
        g.push("system:authenticated".to_string());
        g.dedup();
        Self {
            username: username.to_string(),
            groups: g,
        }
    }
}

impl Default for UserInfo {
    fn default() -> Self {
        Self::admin()
    }
}

/// One admission call: what is being written.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionCall<'a> {
    /// Operation.
    pub op: Operation,
    /// Resource.
    pub def: &'a ResourceDef,
    /// Subresource (`status`, `binding`), if any.
    pub sub: Option<&'a str>,
    /// Namespace of the request ("" for cluster-scoped).
    pub ns: &'a str,
    /// Name ("" on CREATE with generateName).
    pub name: &'a str,
    /// New object (None on DELETE).
    pub object: Option<&'a Value>,
    /// Old object (UPDATE, DELETE).
    pub old: Option<&'a Value>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// Who asks.
    pub user: &'a UserInfo,
}

/// Admission settings: where Service references point to in tests.
#[derive(Debug, Default)]
pub struct Admission {
    /// Endpoints of each Service (namespace, name).
    services: Mutex<HashMap<(String, String), Vec<SocketAddr>>>,
    /// Round-robin position over a Service's endpoints, shared by all Services.
    next: std::sync::atomic::AtomicUsize,
    /// Log of webhook calls (webhook name, operation, dryRun), for tests.
    calls: Mutex<Vec<(String, String, bool)>>,
    /// TLS client configurations by caBundle, kept so that calls resume TLS sessions (as
    /// kube-apiserver's long-lived webhook clients do) instead of a full handshake each.
    tls: Mutex<HashMap<Vec<u8>, Arc<rustls::ClientConfig>>>,
    /// Idle connections to webhook servers, by (address, host, TLS configuration): reused as
    /// kube-apiserver's webhook clients keep theirs alive, instead of a TCP and TLS handshake
    /// per call.
    idle: Mutex<HashMap<ConnKey, Vec<Sender>>>,
    /// Webhooks per configuration kind, with the (name, resourceVersion) of the configurations
    /// they were read from.
    hooks_cache: Mutex<HooksCache>,
}

/// See [`Admission::webhooks`].
type HooksCache = HashMap<String, (Vec<(String, String)>, Arc<Vec<Value>>)>;

/// An HTTP/1.1 connection to a webhook server, ready for one request at a time.
type Sender = hyper::client::conn::http1::SendRequest<Full<bytes::Bytes>>;

/// Where a connection goes: address, TLS server name, and the client configuration (by
/// identity: one per caBundle).
type ConnKey = (SocketAddr, String, usize);

/// Idle connections kept per key.
const MAX_IDLE: usize = 64;

impl Admission {
    /// Maps a webhook `clientConfig.service` (namespace, name) to one loopback address.
    pub fn set_service(&self, namespace: &str, name: &str, addr: SocketAddr) {
        self.set_endpoints(namespace, name, vec![addr]);
    }

    /// Maps a webhook `clientConfig.service` (namespace, name) to several loopback addresses,
    /// the Service's endpoints (an empty list removes the mapping).
    pub fn set_endpoints(&self, namespace: &str, name: &str, addrs: Vec<SocketAddr>) {
        let mut m = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let k = (namespace.to_string(), name.to_string());
        if addrs.is_empty() {
            m.remove(&k);
        } else {
            m.insert(k, addrs);
        }
    }

    /// The Service's endpoints in the order to try them: round-robin, starting one further at
    /// every call.
    fn service(&self, namespace: &str, name: &str) -> Vec<SocketAddr> {
        let eps = self
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default();
        if eps.is_empty() {
            return eps;
        }
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % eps.len();
        eps[start..].iter().chain(&eps[..start]).copied().collect()
    }

    /// The webhook calls made so far: (webhook name, operation, dryRun).
    pub fn calls(&self) -> Vec<(String, String, bool)> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The webhooks of every configuration of `plural`, in name order. Read on every write, so
    /// kept until a configuration changes (its name and resourceVersion are the key) instead
    /// of copied out of the store each time.
    fn webhooks(&self, st: &State, plural: &str) -> Arc<Vec<Value>> {
        let s = st.lock();
        let cfgs = s.list("admissionregistration.k8s.io", plural, None);
        let fingerprint: Vec<(String, String)> = cfgs
            .iter()
            .map(|c| {
                (
                    meta_str(c, "name").unwrap_or_default().to_string(),
                    meta_str(c, "resourceVersion")
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        let mut cache = self.hooks_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((fp, hooks)) = cache.get(plural) {
            if *fp == fingerprint {
                return hooks.clone();
            }
        }
        let mut out = Vec::new();
        for cfg in cfgs {
            if let Some(whs) = cfg.get("webhooks").and_then(Value::as_array) {
                out.extend(whs.iter().cloned());
            }
        }
        let hooks = Arc::new(out);
        cache.insert(plural.to_string(), (fingerprint, hooks.clone()));
        hooks
    }

    /// Runs the mutating webhooks; returns the (possibly patched) object.
    pub async fn mutate(&self, st: &Arc<State>, call: AdmissionCall<'_>) -> ApiResult<Value> {
        let mut obj = call.object.cloned().unwrap_or(Value::Null);
        let hooks = self.webhooks(st, "mutatingwebhookconfigurations");
        if hooks.is_empty() {
            return Ok(obj);
        }
        // (index, object as it was after this webhook ran)
        let mut invoked: Vec<(usize, Value)> = Vec::new();
        for (i, wh) in hooks.iter().enumerate() {
            let c = AdmissionCall {
                object: call.object.map(|_| &obj),
                ..call
            };
            if !matches(st, wh, &c)? {
                continue;
            }
            if let Some(new) = self.invoke(wh, &c, true).await? {
                obj = new;
            }
            if wh.get("reinvocationPolicy").and_then(Value::as_str) == Some("IfNeeded") {
                invoked.push((i, obj.clone()));
            }
        }
        // reinvocationPolicy IfNeeded: called once more if a later webhook changed the object.
        let snapshot = invoked.clone();
        for (i, after) in snapshot {
            let wh = &hooks[i];
            if wh.get("reinvocationPolicy").and_then(Value::as_str) != Some("IfNeeded")
                || after == obj
            {
                continue;
            }
            let c = AdmissionCall {
                object: call.object.map(|_| &obj),
                ..call
            };
            if let Some(new) = self.invoke(wh, &c, true).await? {
                obj = new;
            }
        }
        Ok(obj)
    }

    /// Runs the validating webhooks.
    pub async fn validate(&self, st: &Arc<State>, call: AdmissionCall<'_>) -> ApiResult<()> {
        let hooks = self.webhooks(st, "validatingwebhookconfigurations");
        for wh in hooks.iter() {
            if matches(st, wh, &call)? {
                self.invoke(wh, &call, false).await?;
            }
        }
        Ok(())
    }

    /// Calls one webhook, applying failurePolicy. Returns the patched object for mutating webhooks.
    async fn invoke(
        &self,
        wh: &Value,
        call: &AdmissionCall<'_>,
        mutating: bool,
    ) -> ApiResult<Option<Value>> {
        let name = wh
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if call.dry_run {
            let se = wh
                .get("sideEffects")
                .and_then(Value::as_str)
                .unwrap_or("Unknown");
            if se != "None" && se != "NoneOnDryRun" {
                return Err(ApiError::bad_request(format!(
                    "admission webhook \"{name}\" does not support dry run"
                )));
            }
        }
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push((
            name.clone(),
            call.op.as_str().to_string(),
            call.dry_run,
        ));
        let uid = crate::store::new_uid();
        let review = review(call, &uid);
        let timeout = Duration::from_secs(
            wh.get("timeoutSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(10)
                .clamp(1, 30),
        );
        let result = tokio::time::timeout(timeout, self.post(wh, &review, timeout.as_secs())).await;
        let resp = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.failure(wh, &name, &e),
            Err(_) => return self.failure(wh, &name, "context deadline exceeded"),
        };
        let Some(r) = resp.get("response") else {
            return self.failure(wh, &name, "response was absent");
        };
        if r.get("uid").and_then(Value::as_str) != Some(uid.as_str()) {
            return self.failure(
                wh,
                &name,
                &format!("expected response.uid=\"{uid}\", got {:?}", r.get("uid")),
            );
        }
        if !r.get("allowed").and_then(Value::as_bool).unwrap_or(false) {
            let status = r.get("status").cloned().unwrap_or(json!({}));
            let mut code = status.get("code").and_then(Value::as_u64).unwrap_or(0) as u16;
            if code < 400 {
                code = 403;
            }
            let denied = format!("admission webhook \"{name}\" denied the request");
            let msg = status
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let reason = status
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let message = if !msg.is_empty() {
                format!("{denied}: {msg}")
            } else if !reason.is_empty() {
                format!("{denied}: {reason}")
            } else {
                format!("{denied} without explanation")
            };
            let mut e = ApiError::new(code, reason, message);
            e.details = status.get("details").cloned();
            return Err(e);
        }
        if !mutating {
            return Ok(None);
        }
        let Some(p) = r.get("patch").and_then(Value::as_str) else {
            return Ok(None);
        };
        if let Some(pt) = r.get("patchType").and_then(Value::as_str) {
            if pt != "JSONPatch" {
                return self.failure(wh, &name, &format!("unsupported patch type {pt:?}"));
            }
        }
        let bytes = match base64::engine::general_purpose::STANDARD.decode(p) {
            Ok(b) => b,
            Err(e) => return self.failure(wh, &name, &format!("patch is not base64: {e}")),
        };
        let obj = call.object.cloned().unwrap_or(Value::Null);
        match crate::patch::apply_json_patch(&obj, &bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => Err(ApiError::internal(format!(
                "Internal error occurred: failed to apply the patch of admission webhook \"{name}\": {}",
                e.message
            ))),
        }
    }

    fn failure(&self, wh: &Value, name: &str, why: &str) -> ApiResult<Option<Value>> {
        if wh.get("failurePolicy").and_then(Value::as_str) == Some("Ignore") {
            tracing::warn!(
                webhook = name,
                error = why,
                "webhook call failed, ignored by failurePolicy"
            );
            return Ok(None);
        }
        Err(ApiError::internal(format!(
            "Internal error occurred: failed calling webhook \"{name}\": failed to call webhook: {why}"
        )))
    }

    /// The TLS client configuration trusting `ca` (PEM), made once per caBundle.
    fn tls_config(&self, ca: Vec<u8>) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut cache = self.tls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cfg) = cache.get(&ca) {
            return Ok(cfg.clone());
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca.as_slice()).flatten() {
            let _ = roots.add(cert);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        cache.insert(ca, cfg.clone());
        Ok(cfg)
    }

    /// An idle connection for `key` that is still open and ready.
    async fn idle_connection(&self, key: &ConnKey) -> Option<Sender> {
        loop {
            let mut s = self
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(key)?
                .pop()?;
            if !s.is_closed() && s.ready().await.is_ok() {
                return Some(s);
            }
        }
    }

    fn keep_idle(&self, key: ConnKey, s: Sender) {
        if s.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let v = idle.entry(key).or_default();
        if v.len() < MAX_IDLE {
            v.push(s);
        }
    }

    async fn post(&self, wh: &Value, review: &Value, timeout_secs: u64) -> Result<Value, String> {
        let cc = wh.get("clientConfig").cloned().unwrap_or(json!({}));
        let (addrs, host, path, url_text) = if let Some(url) = cc.get("url").and_then(Value::as_str)
        {
            let rest = url
                .strip_prefix("https://")
                .ok_or_else(|| format!("webhook URL must use https: {url}"))?;
            let (hostport, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let (host, port) = split_host_port(hostport);
            let addr = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("Post \"{url}\": dial tcp: lookup {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("Post \"{url}\": no address for {host}"))?;
            (vec![addr], host, path.to_string(), url.to_string())
        } else if let Some(svc) = cc.get("service") {
            let ns = svc
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let n = svc.get("name").and_then(Value::as_str).unwrap_or_default();
            let path = svc
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_string();
            let port = svc.get("port").and_then(Value::as_u64).unwrap_or(443);
            let host = format!("{n}.{ns}.svc");
            let url = format!("https://{host}:{port}{path}");
            let addrs = self.service(ns, n);
            if addrs.is_empty() {
                return Err(format!(
                    "Post \"{url}\": service \"{ns}/{n}\" has no endpoint mapped in the stand-in"
                ));
            }
            (addrs, host, path, url)
        } else {
            return Err("webhook has neither url nor service".into());
        };
        let url_text = format!(
            "{url_text}{}timeout={timeout_secs}s",
            if url_text.contains('?') { '&' } else { '?' }
        );
        let ca = cc
            .get("caBundle")
            .and_then(Value::as_str)
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
            .transpose()
            .map_err(|e| format!("invalid caBundle: {e}"))?
            .unwrap_or_default();
        let cfg = self.tls_config(ca)?;
        let cfg_id = Arc::as_ptr(&cfg) as usize;
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let server_name =
            rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        // A Service's endpoints are tried round-robin; an endpoint that refuses the connection
        // (its process is gone) is skipped for the next one, as a dead Pod's endpoint is removed
        // from the Service in a cluster. An endpoint that accepts and then fails is not retried:
        // that call fails and failurePolicy applies, as in Kubernetes. An open connection to
        // the endpoint is reused.
        let mut found: Option<(Sender, ConnKey)> = None;
        let mut last_err = String::new();
        for addr in &addrs {
            let key: ConnKey = (*addr, host.clone(), cfg_id);
            if let Some(s) = self.idle_connection(&key).await {
                found = Some((s, key));
                break;
            }
            let tcp = match tokio::net::TcpStream::connect(addr).await {
                Ok(t) => t,
                Err(e) => {
                    last_err = format!("Post \"{url_text}\": dial tcp {addr}: {e}");
                    continue;
                }
            };
            let tls = connector
                .connect(server_name.clone(), tcp)
                .await
                .map_err(|e| format!("Post \"{url_text}\": tls: {e}"))?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .map_err(|e| format!("Post \"{url_text}\": {e}"))?;
            tokio::spawn(conn);
            found = Some((sender, key));
            break;
        }
        let (mut sender, key) = found.ok_or(last_err)?;
        // kube-apiserver appends the timeout to the webhook URL.
        let sep = if path.contains('?') { '&' } else { '?' };
        let path = format!("{path}{sep}timeout={timeout_secs}s");
        let req = http::Request::post(path)
            .header("host", host)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(Full::new(bytes::Bytes::from(review.to_string())))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("Post \"{url_text}\": {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        self.keep_idle(key, sender);
        if !status.is_success() {
            return Err(format!(
                "Post \"{url_text}\": server responded {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|e| format!("failed to decode the AdmissionReview: {e}"))
    }
}

fn split_host_port(hp: &str) -> (String, u16) {
    if let Some(rest) = hp.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once(']') {
            return (
                h.to_string(),
                p.trim_start_matches(':').parse().unwrap_or(443),
            );
        }
    }
    match hp.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(443)),
        None => (hp.to_string(), 443),
    }
}

fn review(call: &AdmissionCall<'_>, uid: &str) -> Value {
    let def = call.def;
    let (kind, kgroup, kversion) = if call.sub == Some("binding") {
        ("Binding", "", "v1")
    } else {
        (def.kind.as_str(), def.group.as_str(), def.version.as_str())
    };
    let mut req = json!({
        "uid": uid,
        "kind": {"group": kgroup, "version": kversion, "kind": kind},
        "resource": {"group": def.group, "version": def.version, "resource": def.plural},
        "requestKind": {"group": kgroup, "version": kversion, "kind": kind},
        "requestResource": {"group": def.group, "version": def.version, "resource": def.plural},
        "operation": call.op.as_str(),
        "userInfo": {"username": call.user.username, "groups": call.user.groups},
        "object": call.object.cloned().unwrap_or(Value::Null),
        "oldObject": call.old.cloned().unwrap_or(Value::Null),
        "dryRun": call.dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": call.op.options_kind()},
    });
    if !call.name.is_empty() {
        req["name"] = json!(call.name);
    }
    if def.namespaced {
        req["namespace"] = json!(call.ns);
    }
    if let Some(s) = call.sub {
        req["subResource"] = json!(s);
        req["requestSubResource"] = json!(s);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn rule_matches(rule: &Value, call: &AdmissionCall<'_>) -> bool {
    let def = call.def;
    let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
    if !any(&str_list(rule.get("operations")), call.op.as_str()) {
        return false;
    }
    if !any(&str_list(rule.get("apiGroups")), &def.group)
        || !any(&str_list(rule.get("apiVersions")), &def.version)
    {
        return false;
    }
    match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Cluster" if def.namespaced => return false,
        "Namespaced" if !def.namespaced => return false,
        _ => {}
    }
    str_list(rule.get("resources")).iter().any(|r| {
        let (res, sub) = match r.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (r.as_str(), None),
        };
        let res_ok = res == "*" || res == def.plural;
        let sub_ok = match (sub, call.sub) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some("*"), _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a == b,
        };
        res_ok && sub_ok
    })
}

/// Whether a webhook applies to a call: rules, namespaceSelector, objectSelector.
fn matches(st: &State, wh: &Value, call: &AdmissionCall<'_>) -> ApiResult<bool> {
    // As in kube-apiserver, webhooks are never called for webhook configurations themselves.
    if call.def.group == "admissionregistration.k8s.io" {
        return Ok(false);
    }
    let rules = wh
        .get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !rules.iter().any(|r| rule_matches(r, call)) {
        return Ok(false);
    }
    if let Some(sel) = wh.get("namespaceSelector") {
        let sel = LabelSelector::from_object(sel)?;
        if !sel.is_empty() {
            let ns_obj = if call.def.group.is_empty() && call.def.plural == "namespaces" {
                call.object.or(call.old).cloned()
            } else if call.def.namespaced {
                st.lock().get(&key("", "namespaces", "", call.ns)).cloned()
            } else {
                None
            };
            if let Some(ns_obj) = ns_obj {
                if !sel.matches(&ns_obj) {
                    return Ok(false);
                }
            } else if call.def.namespaced {
                return Ok(false);
            }
        }
    }
    if let Some(sel) = wh.get("objectSelector") {
        let sel = LabelSelector::from_object(sel)?;
        if !sel.is_empty() {
            let hit = [call.object, call.old]
                .into_iter()
                .flatten()
                .any(|o| sel.matches(o));
            if !hit {
                return Ok(false);
            }
        }
    }
    let _ = meta_str;
    Ok(true)
}
