//! Test support: a small HTTPS fixture that serves SpiderEndpoints as the Kubernetes API does
//! (read path only), and helpers to run the real `spiderpool` binary.
//!
//! The tests talk to the fixture only through [`ReservationApi`], so that it can be swapped for
//! the project's API stand-in (e2e/apiserver) once that is ready.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

/// What the tests need from an API server holding reservations.
pub trait ReservationApi {
    /// A kubeconfig that authenticates with a valid credential.
    fn kubeconfig(&self) -> PathBuf;
    /// A kubeconfig whose token the server rejects (401).
    fn kubeconfig_bad_token(&self) -> PathBuf;
    /// Creates or replaces the SpiderEndpoint `ns/name`.
    fn put_endpoint(&self, ns: &str, name: &str, obj: Value);
    /// Like `put_endpoint`, but the object appears only after `delay` (late binding).
    fn put_endpoint_after(&self, ns: &str, name: &str, obj: Value, delay: Duration);
    /// Deletes the SpiderEndpoint `ns/name`.
    fn delete_endpoint(&self, ns: &str, name: &str);
}

/// A SpiderEndpoint object as the webhook writes it.
pub fn endpoint(ns: &str, name: &str, uid: &str, ips: Value) -> Value {
    json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderEndpoint",
        "metadata": {"name": name, "namespace": ns, "uid": "0b6f3a1e-0000-4000-8000-000000000001",
                     "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "current": {"uid": uid, "node": "node-1", "ips": ips},
            "ownerControllerType": "StatefulSet",
            "ownerControllerName": "web"
        }
    })
}

struct Entry {
    obj: Value,
    visible_from: Instant,
}

#[derive(Default)]
struct State {
    endpoints: HashMap<(String, String), Entry>,
    forbidden_tokens: HashSet<String>,
    chunked: bool,
    /// Answer this many requests with 503 first.
    fail_503: usize,
}

/// The HTTPS fixture.
pub struct Fixture {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    pub token: String,
    ca_pem: String,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    pub dir: tempfile::TempDir,
}

fn make_ca() -> (rcgen::Certificate, rcgen::KeyPair) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "aipam-cni-test-ca");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    (cert, key)
}

fn leaf(
    names: &[&str],
    cn: &str,
    ca: &rcgen::Certificate,
    ca_key: &rcgen::KeyPair,
) -> (rcgen::Certificate, rcgen::KeyPair) {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca, ca_key).unwrap();
    (cert, key)
}

impl Fixture {
    /// Starts the fixture on 127.0.0.1 with a fresh CA and token.
    pub fn start() -> Fixture {
        let (ca, ca_key) = make_ca();
        let (cert, key) = leaf(
            &["localhost", "127.0.0.1"],
            "fixture-apiserver",
            &ca,
            &ca_key,
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let token = format!("test-token-{}", std::process::id());
        {
            let (state, stop, requests, token) =
                (state.clone(), stop.clone(), requests.clone(), token.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (config, state, requests, token) = (
                        config.clone(),
                        state.clone(),
                        requests.clone(),
                        token.clone(),
                    );
                    std::thread::spawn(move || {
                        let _ = serve(conn, config, &state, &requests, &token);
                    });
                }
            });
        }
        Fixture {
            addr,
            state,
            stop,
            requests,
            token,
            ca_pem: ca.pem(),
            ca,
            ca_key,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// How many requests the fixture has answered.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Answer 403 to this token.
    pub fn forbid_token(&self, token: &str) {
        self.state
            .lock()
            .unwrap()
            .forbidden_tokens
            .insert(token.to_string());
    }

    /// Send bodies with `Transfer-Encoding: chunked`.
    pub fn set_chunked(&self, on: bool) {
        self.state.lock().unwrap().chunked = on;
    }

    /// Answer the next `n` requests with 503.
    pub fn fail_next_with_503(&self, n: usize) {
        self.state.lock().unwrap().fail_503 = n;
    }

    /// Writes a kubeconfig file with the fixture's CA (as data) and `user` fields.
    pub fn write_kubeconfig(&self, file: &str, server: &str, ca_pem: &str, user: Value) -> PathBuf {
        let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        let kc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fixture", "cluster": {"server": server, "certificate-authority-data": ca_b64}}],
            "users": [{"name": "cni", "user": user}],
            "contexts": [{"name": "cni@fixture", "context": {"cluster": "fixture", "user": "cni"}}],
            "current-context": "cni@fixture"
        });
        let path = self.dir.path().join(file);
        std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
        path
    }

    /// A kubeconfig with the given token.
    pub fn kubeconfig_with_token(&self, file: &str, token: &str) -> PathBuf {
        self.write_kubeconfig(file, &self.server(), &self.ca_pem, json!({"token": token}))
    }

    /// A kubeconfig that authenticates with a client certificate signed by the fixture's CA.
    pub fn kubeconfig_client_cert(&self) -> PathBuf {
        let (cert, key) = leaf(
            &["aipam-cni"],
            "system:serviceaccount:aipam-system:aipam-cni",
            &self.ca,
            &self.ca_key,
        );
        let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
        self.write_kubeconfig(
            "kubeconfig-cert",
            &self.server(),
            &self.ca_pem,
            json!({"client-certificate-data": b64(cert.pem()), "client-key-data": b64(key.serialize_pem())}),
        )
    }

    /// A kubeconfig that trusts another CA than the fixture's.
    pub fn kubeconfig_wrong_ca(&self) -> PathBuf {
        let (other, _) = make_ca();
        self.write_kubeconfig(
            "kubeconfig-wrong-ca",
            &self.server(),
            &other.pem(),
            json!({"token": self.token}),
        )
    }

    /// A kubeconfig pointing at a port where nothing listens.
    pub fn kubeconfig_unreachable(&self) -> PathBuf {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        self.write_kubeconfig(
            "kubeconfig-unreachable",
            &format!("https://127.0.0.1:{port}"),
            &self.ca_pem,
            json!({"token": self.token}),
        )
    }
}

impl ReservationApi for Fixture {
    fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig_with_token("kubeconfig", &self.token)
    }

    fn kubeconfig_bad_token(&self) -> PathBuf {
        self.kubeconfig_with_token("kubeconfig-bad", "not-the-token")
    }

    fn put_endpoint(&self, ns: &str, name: &str, obj: Value) {
        self.put_endpoint_after(ns, name, obj, Duration::ZERO);
    }

    fn put_endpoint_after(&self, ns: &str, name: &str, obj: Value, delay: Duration) {
        self.state.lock().unwrap().endpoints.insert(
            (ns.to_string(), name.to_string()),
            Entry {
                obj,
                visible_from: Instant::now() + delay,
            },
        );
    }

    fn delete_endpoint(&self, ns: &str, name: &str) {
        self.state
            .lock()
            .unwrap()
            .endpoints
            .remove(&(ns.to_string(), name.to_string()));
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code});
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}

fn serve(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    state: &Mutex<State>,
    requests: &AtomicUsize,
    token: &str,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut auth = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("authorization") {
                auth = Some(v.trim().to_string());
            }
        }
    }
    let has_client_cert = tls
        .conn
        .peer_certificates()
        .is_some_and(|c: &[CertificateDer<'_>]| !c.is_empty());
    let mut parts = request_line.split(' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );

    let (code, body, json_body) = {
        let mut st = state.lock().unwrap();
        let presented = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
        let authenticated = presented == Some(token)
            || presented.is_some_and(|t| st.forbidden_tokens.contains(t))
            || (presented.is_none() && has_client_cert);
        if st.fail_503 > 0 {
            st.fail_503 -= 1;
            (
                503,
                status(
                    503,
                    "ServiceUnavailable",
                    "etcdserver: leader changed",
                    None,
                )
                .to_string(),
                true,
            )
        } else if !authenticated {
            (
                401,
                status(401, "Unauthorized", "Unauthorized", None).to_string(),
                true,
            )
        } else {
            let prefix = "/apis/spiderpool.spidernet.io/v2beta1/namespaces/";
            let route = path.strip_prefix(prefix).and_then(|rest| {
                let mut it = rest.split('/');
                match (it.next(), it.next(), it.next(), it.next()) {
                    (Some(ns), Some("spiderendpoints"), Some(name), None) => {
                        Some((ns.to_string(), name.to_string()))
                    }
                    _ => None,
                }
            });
            match route {
                _ if method != "GET" => (
                    405,
                    status(405, "MethodNotAllowed", "method not allowed", None).to_string(),
                    true,
                ),
                None => (404, "404 page not found\n".to_string(), false),
                Some((ns, name)) => {
                    if presented.is_some_and(|t| st.forbidden_tokens.contains(t)) {
                        let msg = format!("spiderendpoints.spiderpool.spidernet.io \"{name}\" is forbidden: User \"system:serviceaccount:aipam-system:aipam-cni\" cannot get resource \"spiderendpoints\" in API group \"spiderpool.spidernet.io\" in the namespace \"{ns}\"");
                        (403, status(403, "Forbidden", &msg, Some(json!({"name": name, "group": "spiderpool.spidernet.io", "kind": "spiderendpoints"}))).to_string(), true)
                    } else {
                        match st.endpoints.get(&(ns, name.clone())) {
                            Some(e) if e.visible_from <= Instant::now() => {
                                (200, e.obj.to_string(), true)
                            }
                            _ => {
                                let msg = format!(
                                    "spiderendpoints.spiderpool.spidernet.io \"{name}\" not found"
                                );
                                (404, status(404, "NotFound", &msg, Some(json!({"name": name, "group": "spiderpool.spidernet.io", "kind": "spiderendpoints"}))).to_string(), true)
                            }
                        }
                    }
                }
            }
        }
    };
    let chunked = state.lock().unwrap().chunked;
    let reason = match code {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let ctype = if json_body {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut resp =
        format!("HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nAudit-Id: test\r\n");
    if chunked {
        resp.push_str("Transfer-Encoding: chunked\r\n\r\n");
        for piece in body.as_bytes().chunks(37) {
            resp.push_str(&format!("{:x}\r\n", piece.len()));
            resp.push_str(std::str::from_utf8(piece).unwrap_or_default());
            resp.push_str("\r\n");
        }
        resp.push_str("0\r\n\r\n");
    } else {
        resp.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    }
    tls.write_all(resp.as_bytes())?;
    tls.conn.send_close_notify();
    tls.flush()?;
    Ok(())
}

/// The plugin binary under test.
pub fn plugin_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_spiderpool"))
}

/// What one run of the plugin printed and returned.
#[derive(Debug)]
pub struct Run {
    pub exit: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// stdout as JSON (panics with the output when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts success and returns the result JSON.
    pub fn ok(&self) -> Value {
        assert_eq!(self.exit, Some(0), "expected success: {self:#?}");
        self.json()
    }

    /// Asserts a CNI error with `code` and returns it.
    pub fn err(&self, code: u64) -> Value {
        assert_eq!(self.exit, Some(1), "expected a failure: {self:#?}");
        let v = self.json();
        assert_eq!(v["code"], code, "wrong code: {self:#?}");
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{self:#?}"
        );
        v
    }
}

/// Standard CNI variables for an attachment of Pod `ns/pod` (uid `uid`) on `ifname`.
pub fn cni_env(
    command: &str,
    ns: &str,
    pod: &str,
    uid: &str,
    ifname: &str,
) -> Vec<(String, String)> {
    vec![
        ("CNI_COMMAND".into(), command.into()),
        ("CNI_CONTAINERID".into(), format!("c0ffee{}", std::process::id())),
        ("CNI_NETNS".into(), "/var/run/netns/aipam-test".into()),
        ("CNI_IFNAME".into(), ifname.into()),
        ("CNI_PATH".into(), "/opt/cni/bin".into()),
        (
            "CNI_ARGS".into(),
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID={uid}"),
        ),
    ]
}

/// Runs the plugin with exactly these variables (the environment is cleared) and stdin.
pub fn run_plugin(env: &[(String, String)], stdin: &str) -> Run {
    let start = Instant::now();
    let mut child = Command::new(plugin_bin())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The plugin may exit before reading stdin (environment errors): a broken pipe is fine.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    Run {
        exit: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        elapsed: start.elapsed(),
    }
}

/// A network configuration with an `ipam` section of type spiderpool.
pub fn net_conf(version: &str, kubeconfig: &Path, extra_ipam: Value) -> String {
    let mut ipam = json!({"type": "spiderpool", "kubeconfig": kubeconfig});
    if let (Some(o), Some(extra)) = (ipam.as_object_mut(), extra_ipam.as_object()) {
        for (k, v) in extra {
            o.insert(k.clone(), v.clone());
        }
    }
    json!({"cniVersion": version, "name": "macvlan-test", "type": "macvlan", "master": "eth0", "mode": "bridge", "ipam": ipam})
        .to_string()
}
