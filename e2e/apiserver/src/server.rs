//! Serving over HTTPS on loopback with a CA generated at start; the library handle.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::admission::Admission;
use crate::error::ApiError;
use crate::faults::{FaultConfig, Faults};
use crate::handler::{self, Ctx};
use crate::rest::{self, State, WriteOpts};

/// Errors starting or driving the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Cert(#[from] rcgen::Error),
    /// TLS configuration failed.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// Socket or file error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The kube client could not be built.
    #[error("kube client: {0}")]
    Kube(String),
    /// A CRD or manifest could not be applied.
    #[error("applying {path}: {error}")]
    Apply {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
}

/// Options for [`ApiServer::start`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Bearer token required by the HTTPS listener (written into the kubeconfig).
    pub token: String,
    /// Number of events kept for watches; watches from older resourceVersions get 410 Gone.
    pub event_window: usize,
    /// Interval between BOOKMARK events on watches with `allowWatchBookmarks=true`.
    pub bookmark_interval: Duration,
    /// Directory of CRD YAML files applied at start.
    pub crd_dir: Option<PathBuf>,
    /// Faults injected from the start.
    pub faults: FaultConfig,
    /// Simulate the kubelets of Ready nodes (gracefully deleted Pods on them are removed at once).
    pub simulate_kubelet: bool,
    /// Webhook `clientConfig.service` (namespace, name) mapped to loopback addresses.
    pub webhook_services: Vec<(String, String, SocketAddr)>,
    /// More bearer tokens, each with the user (username, groups) it authenticates as; `token`
    /// is `system:admin`. Every user may do everything (no authorization), but admission
    /// webhooks see who asks.
    pub users: Vec<(String, String, Vec<String>)>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            port: 0,
            token: "aipam-apiserver-token".into(),
            event_window: 10_000,
            bookmark_interval: Duration::from_secs(5),
            crd_dir: None,
            faults: FaultConfig::default(),
            simulate_kubelet: true,
            webhook_services: Vec::new(),
            users: Vec::new(),
        }
    }
}

/// The API stand-in.
#[derive(Debug)]
pub struct ApiServer;

/// A running server. Dropping it stops it; [`ApiServerHandle::shutdown`] also waits for the end.
#[derive(Debug)]
pub struct ApiServerHandle {
    addr: SocketAddr,
    ca_pem: String,
    token: String,
    state: Arc<State>,
    router: axum::Router,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct Certs {
    ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn make_certs() -> Result<Certs, Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "aipam-apiserver-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "aipam-apiserver");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    Ok(Certs {
        ca_pem: ca.pem(),
        chain: vec![cert.der().clone()],
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    })
}

/// kube's rustls client uses the process-wide crypto provider: make it ring (ours), unless one is
/// installed already, so that a workspace build that also enables aws-lc-rs does not panic.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

impl ApiServer {
    /// Starts the server on 127.0.0.1 and applies the CRDs of `opts.crd_dir`.
    pub async fn start(opts: ServerOptions) -> Result<ApiServerHandle, Error> {
        install_crypto_provider();
        let certs = make_certs()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(certs.chain, certs.key)?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(
            opts.event_window,
            Admission::default(),
            opts.bookmark_interval,
            Faults::new(opts.faults.clone()),
        ));
        state
            .kubelet
            .store(opts.simulate_kubelet, std::sync::atomic::Ordering::Relaxed);
        for (token, username, groups) in &opts.users {
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            state
                .users
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    token.clone(),
                    crate::admission::UserInfo::new(username, &groups),
                );
        }
        for (ns, name, addr) in &opts.webhook_services {
            state.admission.set_service(ns, name, *addr);
        }
        let router = handler::router(Ctx {
            st: state.clone(),
            token: Some(opts.token.clone()),
            addr: addr.to_string(),
        });
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let gc = tokio::spawn(rest::gc_loop(state.clone()));
        let serve_router = router.clone();
        let st2 = state.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    acc = listener.accept() => {
                        let Ok((tcp, _)) = acc else { continue };
                        let acceptor = acceptor.clone();
                        let svc = serve_router.clone();
                        conns.spawn(async move {
                            let Ok(tls) = acceptor.accept(tcp).await else { return };
                            let svc = svc.map_request(|r: http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new));
                            let _ = auto::Builder::new(TokioExecutor::new())
                                .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(svc))
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            st2.shutdown.send_replace(true);
            conns.abort_all();
            while conns.join_next().await.is_some() {}
            gc.abort();
        });
        let handle = ApiServerHandle {
            addr,
            ca_pem: certs.ca_pem,
            token: opts.token,
            state,
            router,
            stop: Some(stop_tx),
            task: Some(task),
        };
        if let Some(dir) = &opts.crd_dir {
            handle.apply_dir(dir).await?;
        }
        Ok(handle)
    }
}

impl Drop for ApiServerHandle {
    /// Stops the server if [`ApiServerHandle::shutdown`] was not called.
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl ApiServerHandle {
    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token the server expects.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A kubeconfig (YAML) for this server, context `aipam`, namespace `default`.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_yaml_for(&self.token)
    }

    /// Adds a bearer token that authenticates as `username` with `groups` (plus
    /// `system:authenticated`, and the service-account groups for
    /// `system:serviceaccount:NS:NAME`). Admission webhooks see that user in `userInfo`.
    pub fn add_user(&self, token: &str, username: &str, groups: &[&str]) {
        self.state
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                token.to_string(),
                crate::admission::UserInfo::new(username, groups),
            );
    }

    /// A kubeconfig (YAML) like [`Self::kubeconfig_yaml`] with another bearer token (see
    /// [`Self::add_user`]).
    pub fn kubeconfig_yaml_for(&self, token: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: aipam\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: aipam\n  user:\n    token: {}\ncontexts:\n- name: aipam\n  context:\n    cluster: aipam\n    user: aipam\n    namespace: default\ncurrent-context: aipam\n",
            self.url(),
            token
        )
    }

    /// Writes the kubeconfig to a file, atomically (a reader never sees a partial file).
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), Error> {
        self.write_kubeconfig_for(path, &self.token)
    }

    /// Writes a kubeconfig with another bearer token (see [`Self::add_user`]), atomically.
    pub fn write_kubeconfig_for(&self, path: &Path, token: &str) -> Result<(), Error> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, self.kubeconfig_yaml_for(token))?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// A kube client talking HTTPS to the server, verifying its CA.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        self.client_for(&self.token).await
    }

    /// A kube client over HTTPS with another bearer token (see [`Self::add_user`]).
    pub async fn client_for(&self, token: &str) -> Result<kube::Client, Error> {
        install_crypto_provider();
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml_for(token))
            .map_err(|e| Error::Kube(e.to_string()))?;
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Kube(e.to_string()))?;
        kube::Client::try_from(cfg).map_err(|e| Error::Kube(e.to_string()))
    }

    /// A kube client calling the server in-process, as a tower service (no sockets, no TLS).
    pub fn in_process_client(&self) -> kube::Client {
        let token = format!("Bearer {}", self.token);
        let svc = self
            .router
            .clone()
            .map_request(move |r: http::Request<kube::client::Body>| {
                let mut r = r.map(axum::body::Body::new);
                if let Ok(v) = http::HeaderValue::from_str(&token) {
                    r.headers_mut().insert(http::header::AUTHORIZATION, v);
                }
                r
            });
        kube::Client::new(svc, "default")
    }

    /// Maps a webhook `clientConfig.service` (namespace, name) to a loopback address, since there
    /// are no Services here. The TLS server name stays `NAME.NAMESPACE.svc`.
    pub fn set_webhook_service(&self, namespace: &str, name: &str, addr: SocketAddr) {
        self.state.admission.set_service(namespace, name, addr);
    }

    /// Maps a webhook `clientConfig.service` to several endpoints (replicas). Calls go to them
    /// round-robin; an endpoint refusing the connection is skipped for the next (as kube-proxy
    /// does once a dead Pod's endpoint is removed). An empty list removes the mapping.
    pub fn set_webhook_endpoints(&self, namespace: &str, name: &str, addrs: Vec<SocketAddr>) {
        self.state.admission.set_endpoints(namespace, name, addrs);
    }

    /// Successful write requests (POST/PUT/PATCH/DELETE, not dry run) so far per resource,
    /// `plural[.group][/subresource]` (`pods`, `pods/binding`,
    /// `spiderippools.spiderpool.spidernet.io/status`). Writes of the stand-in's own garbage
    /// collector and of `apply_*` on this handle are not requests and are not counted.
    pub fn write_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.state
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The webhook calls made so far: (webhook name, operation, dryRun).
    pub fn webhook_calls(&self) -> Vec<(String, String, bool)> {
        self.state.admission.calls()
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: FaultConfig) {
        self.state.faults.set(faults);
    }

    /// Faults injected so far, by kind: `slow`, `conflict`, `error`, `watch_drop`.
    pub fn fault_counts(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.state.faults.counts()
    }

    /// Turns the kubelet simulation on or off.
    pub fn set_kubelet_simulation(&self, on: bool) {
        self.state
            .kubelet
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Drops the whole watch event window: a watch from any older resourceVersion gets 410 Gone.
    pub fn compact(&self) {
        self.state.lock().compact();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().rv
    }

    /// Creates (or, if it exists, replaces) every object of the YAML files in `dir` (`.yaml`, `.yml`, `.json`),
    /// in file-name order. Used for `--crd-dir`.
    pub async fn apply_dir(&self, dir: &Path) -> Result<usize, Error> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            })
            .collect();
        files.sort();
        let mut n = 0;
        for f in files {
            let text = std::fs::read_to_string(&f)?;
            n += self.apply_yaml(&text).await.map_err(|e| Error::Apply {
                path: f.clone(),
                error: e.message,
            })?;
        }
        Ok(n)
    }

    /// Creates or replaces every document of a multi-document YAML text.
    pub async fn apply_yaml(&self, text: &str) -> Result<usize, ApiError> {
        use serde::Deserialize;
        let mut n = 0;
        for doc in serde_yaml::Deserializer::from_str(text) {
            let v = Value::deserialize(doc).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if v.is_null() {
                continue;
            }
            self.apply_object(v).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Creates an object, or replaces it when it exists.
    pub async fn apply_object(&self, obj: Value) -> Result<Value, ApiError> {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let def = self
            .state
            .lock()
            .registry
            .lookup_kind(api_version, kind)
            .ok_or_else(ApiError::not_found_path)?;
        let ns = crate::store::meta_str(&obj, "namespace")
            .unwrap_or("default")
            .to_string();
        let name = crate::store::meta_str(&obj, "name")
            .unwrap_or_default()
            .to_string();
        let opts = WriteOpts::default();
        match rest::create(&self.state, &def, &ns, obj.clone(), &opts).await {
            Err(e) if e.code == 409 && e.reason == "AlreadyExists" => {
                let cur = rest::get(&self.state, &def, &ns, &name)?;
                let mut obj = obj;
                crate::store::meta_mut(&mut obj).insert(
                    "resourceVersion".into(),
                    cur.pointer("/metadata/resourceVersion")
                        .cloned()
                        .unwrap_or(Value::Null),
                );
                rest::update(
                    &self.state,
                    &def,
                    &ns,
                    &name,
                    None,
                    rest::Change::Replace(obj),
                    &opts,
                )
                .await
                .map(|(_, o)| o)
            }
            other => other,
        }
    }

    /// Stops the server: closes the listener, ends watches and open connections.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}
