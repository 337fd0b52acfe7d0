//! The webhook served over real TLS on 127.0.0.1, and a client that talks to it as
//! kube-apiserver does.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aipam_webhook::tls::{server_config, ReloadingCert};
use aipam_webhook::{router, App, Cache, MemoryEffects};
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A CA and a serving certificate it signed.
pub struct Certs {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn make_certs(cn: &str) -> Certs {
    make_certs_for(cn, &["localhost", "127.0.0.1"])
}

pub fn make_certs_for(cn: &str, sans: &[&str]) -> Certs {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{cn} CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    Certs {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// A running webhook.
pub struct Running {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub resolver: Arc<ReloadingCert>,
    pub cache: Cache,
    pub effects: Arc<MemoryEffects>,
    pub app: Arc<App<Arc<MemoryEffects>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("graceful shutdown finishes")
                .unwrap();
        }
    }
}

pub async fn start_with(app: App<Arc<MemoryEffects>>, effects: Arc<MemoryEffects>) -> Running {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs("aipam-webhook.aipam-system.svc");
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, &certs.cert_pem).unwrap();
    std::fs::write(&key_path, &certs.key_pem).unwrap();
    let resolver = Arc::new(ReloadingCert::load(&cert_path, &key_path).unwrap());
    let tls = Arc::new(server_config(resolver.clone()).unwrap());
    let cache = app.pods.cache.clone();
    let app = Arc::new(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(aipam_webhook::server::serve_tls(
        listener,
        tls,
        router(app.clone()),
        async move {
            let _ = rx.await;
        },
    ));
    Running {
        addr,
        ca_pem: certs.ca_pem,
        cert_path,
        key_path,
        resolver,
        cache,
        effects,
        app,
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

/// The webhook over the fixture world.
pub async fn start() -> Running {
    let cache = aipam_webhook::testkit::synced_cache();
    let effects = Arc::new(MemoryEffects::new());
    aipam_webhook::testkit::load(&fixture("world.yaml"), &cache, &effects).unwrap();
    let app = App::new(cache, effects.clone());
    start_with(app, effects).await
}

pub fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

pub async fn connect(addr: SocketAddr, ca_pem: &str) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    TlsConnector::from(client_config(ca_pem))
        .connect(name, tcp)
        .await
}

/// POSTs `body` to `path`; returns the status and the body.
pub async fn post(r: &Running, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let tls = connect(r.addr, &r.ca_pem).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header("host", "aipam-webhook.aipam-system.svc:443")
        .header("content-type", "application/json")
        .header("accept", "application/json, */*")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

/// POSTs an AdmissionReview; returns the `response` of the answer, checked for shape.
pub async fn review(r: &Running, path: &str, body: &Value) -> Value {
    let (status, bytes) = post(r, path, serde_json::to_vec(body).unwrap()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], body["request"]["uid"]);
    v["response"].clone()
}

/// The JSON Patch of a response (base64 as kube-apiserver reads it), applied to `object`.
pub fn patched(object: &Value, response: &Value) -> Value {
    let mut out = object.clone();
    if let Some(p) = response["patch"].as_str() {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut out, &patch).unwrap();
    }
    out
}

pub fn patch_ops(response: &Value) -> Value {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
