//! Shared helpers.

use std::time::Duration;

use aipam_apiserver::{ApiServer, ApiServerHandle, ServerOptions};
use http_body_util::BodyExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::Client;
use serde_json::{json, Value};

pub const WIDGETS_CRD: &str = include_str!("../fixtures/widgets.yaml");

pub async fn start() -> (ApiServerHandle, Client) {
    let opts = ServerOptions {
        bookmark_interval: Duration::from_millis(200),
        ..ServerOptions::default()
    };
    let server = ApiServer::start(opts).await.unwrap();
    let client = server.client().await.unwrap();
    (server, client)
}

/// Starts a server with the Widget CRD installed and a namespace `t`.
pub async fn start_with_widgets() -> (ApiServerHandle, Client) {
    let (s, c) = start().await;
    s.apply_yaml(WIDGETS_CRD).await.unwrap();
    create_ns(&c, "t").await;
    (s, c)
}

pub async fn create_ns(c: &Client, name: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    let api: Api<Namespace> = Api::all(c.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
}

pub fn widget_ar() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("test.aipam.io", "v1", "Widget"),
        "widgets",
    )
}

pub fn widgets(c: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(c.clone(), ns, &widget_ar())
}

pub fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "test.aipam.io/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

/// The Status of a kube API error.
pub fn status(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Raw request through the kube client: (status code, JSON body).
pub async fn raw(
    c: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<Value>,
) -> (u16, Value) {
    raw_accept(c, method, path, content_type, "application/json", body).await
}

pub async fn raw_accept(
    c: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    accept: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .header("accept", accept)
        .body(kube::client::Body::from(bytes))
        .unwrap();
    let resp = c.send(req).await.unwrap();
    let code = resp.status().as_u16();
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    (
        code,
        serde_json::from_slice(&b).unwrap_or(Value::String(String::from_utf8_lossy(&b).into())),
    )
}

/// Polls `f` until it returns true or 10 s pass.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A webhook server over TLS with its own CA, answering AdmissionReviews with `f(request)`,
/// which returns the `response` fields (allowed, patch, status...). Records every request.
pub struct Hook {
    pub addr: std::net::SocketAddr,
    pub ca_pem: String,
    pub reviews: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hook {
    pub fn ca_bundle(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }
    pub fn requests(&self) -> Vec<Value> {
        self.reviews.lock().unwrap().clone()
    }
}

pub async fn hook<F>(f: F) -> Hook
where
    F: Fn(&Value) -> Value + Send + Sync + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use std::sync::{Arc, Mutex};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let params = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "wh.webhooks.svc".to_string(),
    ])
    .unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reviews = Arc::new(Mutex::new(Vec::new()));
    let f = Arc::new(f);
    let rec = reviews.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let f = f.clone();
            let rec = rec.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| {
                        let f = f.clone();
                        let rec = rec.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let review: Value = serde_json::from_slice(&body).unwrap();
                            let request = review["request"].clone();
                            rec.lock().unwrap().push(request.clone());
                            let mut response = f(&request);
                            if let Some(ms) = response
                                .as_object_mut()
                                .and_then(|o| o.remove("_delayMs"))
                                .and_then(|v| v.as_u64())
                            {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            response["uid"] = request["uid"].clone();
                            let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(out.to_string())),
                            ))
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Hook {
        addr,
        ca_pem: ca.pem(),
        reviews,
        task,
    }
}

/// A base64 JSON patch for a webhook response.
pub fn b64_patch(p: Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(p.to_string())
}
