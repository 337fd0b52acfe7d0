//! The environment a scenario runs in: an API server, the webhook and the operator.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aipam_apiserver::{ApiServer, ApiServerHandle, ServerOptions};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{pinned_kind, Scope};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::Value;

use crate::{bin_path, repo, wait_for, Error, Result};

/// Namespace the project runs in.
pub const SYSTEM_NAMESPACE: &str = "aipam-system";
/// The webhook's Service, as `config/webhook/` names it.
pub const WEBHOOK_SERVICE: &str = "aipam-webhook";
/// The user the operator processes authenticate as on the stand-in (its service account).
pub const OPERATOR_USER: &str = "system:serviceaccount:aipam-system:aipam-operator";
/// The user the webhook processes authenticate as on the stand-in (its service account).
pub const WEBHOOK_USER: &str = "system:serviceaccount:aipam-system:aipam-webhook";

/// How to set the environment up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Start the operator.
    pub operator: bool,
    /// Seconds a reservation waits for its Pod before the operator collects it.
    pub reservation_grace_seconds: u64,
    /// Namespace of the `spiderpool-conf` ConfigMap.
    pub config_namespace: String,
    /// Number of webhook processes (`aipam-webhook-0`, `-1`, …), all endpoints of the one
    /// webhook Service.
    pub webhook_replicas: usize,
    /// Number of operator processes (`aipam-operator-0`, `-1`, …), each with its process name
    /// as its `--identity` in the leader-election Lease (when `operator` is true).
    pub operator_replicas: usize,
    /// The operators' Lease duration in seconds (renew deadline 2/3 of it, retry period 1/4,
    /// at least 1 s each); `None` keeps the operator's defaults (15 s).
    pub lease_duration_seconds: Option<u64>,
    /// The operators' full garbage-collection scan interval (`--gc-interval`).
    pub gc_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            operator: true,
            reservation_grace_seconds: 30,
            config_namespace: SYSTEM_NAMESPACE.to_string(),
            webhook_replicas: 1,
            operator_replicas: 1,
            lease_duration_seconds: None,
            gc_interval: Duration::from_secs(10),
        }
    }
}

/// The webhook process name of replica `i`.
pub fn webhook_name(i: usize) -> String {
    format!("aipam-webhook-{i}")
}

/// The operator process name (and Lease identity) of replica `i`.
pub fn operator_name(i: usize) -> String {
    format!("aipam-operator-{i}")
}

/// A process started here, with what it takes to start it again.
struct Proc {
    name: String,
    bin: PathBuf,
    args: Vec<String>,
    /// Where `/readyz` is served.
    health: SocketAddr,
    /// Its kubeconfig (its own user).
    kubeconfig: PathBuf,
    /// `None` once killed.
    child: Option<Child>,
}

/// A running environment. Dropping it stops the processes and the stand-in and removes its
/// files.
pub struct Env {
    /// A client for the API.
    pub client: kube::Client,
    /// A kubeconfig file for other processes (kubectl, the CNI binary).
    pub kubeconfig: PathBuf,
    /// `true` when running against a real cluster (`E2E_KUBECONFIG`).
    pub real_cluster: bool,
    server: Option<ApiServerHandle>,
    children: Vec<Proc>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("kubeconfig", &self.kubeconfig)
            .field("real_cluster", &self.real_cluster)
            .finish_non_exhaustive()
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn free_port() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("binding a free port"))?;
    l.local_addr().map_err(io("reading a free port"))
}

/// `GET path` over plain HTTP/1.0; the status code.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Certs {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn make_certs(names: &[String]) -> Result<Certs> {
    let err = |e: rcgen::Error| Error::StandIn(format!("generating certificates: {e}"));
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "aipam e2e CA");
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "aipam-webhook");
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;
    Ok(Certs {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Parses a multi-document YAML text into JSON values (skipping empty documents).
pub fn yaml_docs(what: &str, text: &str) -> Result<Vec<Value>> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(de).map_err(|e| Error::Manifest {
            what: what.to_string(),
            problem: e.to_string(),
        })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

impl Env {
    /// Starts everything: against `E2E_KUBECONFIG` when set (the project must already be
    /// installed there, see hack/), else the stand-in with the webhook and operator processes.
    pub async fn start(opts: Options) -> Result<Env> {
        let dir = tempfile::tempdir().map_err(io("creating a temporary directory"))?;
        if let Ok(path) = std::env::var("E2E_KUBECONFIG") {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .map_err(|e| Error::StandIn(format!("reading E2E_KUBECONFIG {path}: {e}")))?;
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| Error::StandIn(format!("E2E_KUBECONFIG {path}: {e}")))?;
            let client = kube::Client::try_from(config)?;
            return Ok(Env {
                client,
                kubeconfig: PathBuf::from(path),
                real_cluster: true,
                server: None,
                children: Vec::new(),
                dir,
            });
        }
        let server = ApiServer::start(ServerOptions {
            crd_dir: Some(repo().join("config/crd")),
            ..ServerOptions::default()
        })
        .await
        .map_err(|e| Error::StandIn(e.to_string()))?;
        let kubeconfig = dir.path().join("kubeconfig");
        server
            .write_kubeconfig(&kubeconfig)
            .map_err(|e| Error::StandIn(e.to_string()))?;
        let client = server
            .client()
            .await
            .map_err(|e| Error::StandIn(e.to_string()))?;
        let fixtures = repo().join("e2e/fixtures");
        server
            .apply_dir(&fixtures)
            .await
            .map_err(|e| Error::StandIn(format!("{}: {e}", fixtures.display())))?;
        let mut env = Env {
            client,
            kubeconfig,
            real_cluster: false,
            server: Some(server),
            children: Vec::new(),
            dir,
        };
        env.start_webhooks(&opts).await?;
        if opts.operator {
            for i in 0..opts.operator_replicas {
                env.start_operator(&opts, i).await?;
            }
        }
        Ok(env)
    }

    /// The stand-in, when not on a real cluster.
    pub fn stand_in(&self) -> Option<&ApiServerHandle> {
        self.server.as_ref()
    }

    /// The temporary directory of this environment.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `bin` as process `name` (its log appended to `name.log`).
    fn launch(&self, name: &str, bin: &Path, args: &[String], kubeconfig: &Path) -> Result<Child> {
        let log = self.dir.path().join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(format!("opening {}", log.display())))?;
        let err = out.try_clone().map_err(io("duplicating a log file"))?;
        Command::new(bin)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("E2E_LOG").unwrap_or_else(|_| "info".to_string()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("starting {}", bin.display())))
    }

    fn spawn(
        &mut self,
        bin: &str,
        name: &str,
        args: Vec<String>,
        health: SocketAddr,
        user: &str,
    ) -> Result<()> {
        let bin = bin_path(bin)?;
        let kubeconfig = self.kubeconfig_for(user)?;
        let child = self.launch(name, &bin, &args, &kubeconfig)?;
        self.children.push(Proc {
            name: name.to_string(),
            bin,
            args,
            health,
            kubeconfig,
            child: Some(child),
        });
        Ok(())
    }

    /// A kubeconfig file for `user` (a bearer token of its own on the stand-in, which admission
    /// webhooks see as that user); the environment's kubeconfig on a real cluster.
    pub fn kubeconfig_for(&self, user: &str) -> Result<PathBuf> {
        let Some(server) = self.server.as_ref() else {
            return Ok(self.kubeconfig.clone());
        };
        let token = user_token(user);
        server.add_user(&token, user, &[]);
        let path = self.dir.path().join(format!("{token}.kubeconfig"));
        server
            .write_kubeconfig_for(&path, &token)
            .map_err(|e| Error::StandIn(e.to_string()))?;
        Ok(path)
    }

    /// A client authenticated as `user` (stand-in only: on a real cluster, the environment's
    /// own client).
    pub async fn client_as(&self, user: &str) -> Result<kube::Client> {
        let Some(server) = self.server.as_ref() else {
            return Ok(self.client.clone());
        };
        let token = user_token(user);
        server.add_user(&token, user, &[]);
        server
            .client_for(&token)
            .await
            .map_err(|e| Error::StandIn(e.to_string()))
    }

    /// The names of the processes started here, in start order (`aipam-webhook-0`, …,
    /// `aipam-operator-0`, …), killed ones included.
    pub fn process_names(&self) -> Vec<String> {
        self.children.iter().map(|p| p.name.clone()).collect()
    }

    fn proc_mut(&mut self, name: &str) -> Result<&mut Proc> {
        self.children
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::StandIn(format!("no process {name} was started here")))
    }

    /// Kills process `name` with SIGKILL (no chance to clean up, as a node failure or the OOM
    /// killer) and waits for it to be gone.
    pub fn kill(&mut self, name: &str) -> Result<()> {
        let p = self.proc_mut(name)?;
        if let Some(mut c) = p.child.take() {
            c.kill().map_err(io(format!("killing {name}")))?;
            c.wait().map_err(io(format!("waiting for {name}")))?;
        }
        Ok(())
    }

    /// Starts process `name` again with the same arguments (and ports) after [`Env::kill`] (a
    /// running process is killed first) and waits until it is ready.
    pub async fn restart(&mut self, name: &str) -> Result<()> {
        self.kill(name)?;
        let (bin, args, health, kubeconfig) = {
            let p = self.proc_mut(name)?;
            (
                p.bin.clone(),
                p.args.clone(),
                p.health,
                p.kubeconfig.clone(),
            )
        };
        let child = self.launch(name, &bin, &args, &kubeconfig)?;
        self.proc_mut(name)?.child = Some(child);
        self.wait_ready(name, health).await
    }

    /// Whether process `name` is running (started and not killed, and has not exited).
    pub fn is_running(&mut self, name: &str) -> bool {
        self.proc_mut(name)
            .ok()
            .and_then(|p| p.child.as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    async fn wait_ready(&mut self, name: &str, health: SocketAddr) -> Result<()> {
        let res = wait_for(
            &format!("{name} /readyz"),
            Duration::from_secs(30),
            || async move { (http_status(health, "/readyz") == Some(200)).then_some(()) },
        )
        .await;
        if res.is_err() {
            return Err(Error::StandIn(format!(
                "{name} did not become ready; its log:\n{}",
                self.log(name)
            )));
        }
        Ok(())
    }

    async fn start_webhooks(&mut self, opts: &Options) -> Result<()> {
        let certs = make_certs(&[
            format!("{WEBHOOK_SERVICE}.{SYSTEM_NAMESPACE}.svc"),
            "127.0.0.1".to_string(),
        ])?;
        let cert = self.dir.path().join("tls.crt");
        let key = self.dir.path().join("tls.key");
        std::fs::write(&cert, &certs.cert_pem).map_err(io("writing tls.crt"))?;
        std::fs::write(&key, &certs.key_pem).map_err(io("writing tls.key"))?;
        let mut endpoints = Vec::new();
        for i in 0..opts.webhook_replicas.max(1) {
            let listen = free_port()?;
            let health = free_port()?;
            let name = webhook_name(i);
            self.spawn(
                "aipam-webhook",
                &name,
                vec![
                    format!("--listen={listen}"),
                    format!("--health-listen={health}"),
                    format!("--tls-cert={}", cert.display()),
                    format!("--tls-key={}", key.display()),
                    format!("--config-namespace={}", opts.config_namespace),
                ],
                health,
                WEBHOOK_USER,
            )?;
            endpoints.push(listen);
        }
        for i in 0..opts.webhook_replicas.max(1) {
            let name = webhook_name(i);
            let health = self.proc_mut(&name)?.health;
            self.wait_ready(&name, health).await?;
        }
        // Register the webhook configurations exactly as config/webhook/ ships them, with the
        // CA filled in and the Service mapped to the processes (every replica an endpoint).
        let path = repo().join("config/webhook/webhooks.yaml");
        let text =
            std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
        let ca = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(certs.ca_pem.as_bytes())
        };
        let Some(server) = self.server.as_ref() else {
            return Ok(());
        };
        server.set_webhook_endpoints(SYSTEM_NAMESPACE, WEBHOOK_SERVICE, endpoints);
        for mut doc in yaml_docs("config/webhook/webhooks.yaml", &text)? {
            if let Some(hooks) = doc.get_mut("webhooks").and_then(Value::as_array_mut) {
                for h in hooks {
                    if let Some(cc) = h.get_mut("clientConfig").and_then(Value::as_object_mut) {
                        cc.insert("caBundle".to_string(), Value::String(ca.clone()));
                    }
                }
            }
            server
                .apply_object(doc)
                .await
                .map_err(|e| Error::StandIn(format!("registering the webhooks: {e}")))?;
        }
        Ok(())
    }

    async fn start_operator(&mut self, opts: &Options, i: usize) -> Result<()> {
        let metrics = free_port()?;
        let name = operator_name(i);
        let mut args = vec![
            format!("--metrics-addr={metrics}"),
            format!("--lease-namespace={SYSTEM_NAMESPACE}"),
            format!("--config-namespace={}", opts.config_namespace),
            format!("--gc-interval={}ms", opts.gc_interval.as_millis().max(1)),
            "--status-interval-ms=200".to_string(),
            format!(
                "--reservation-grace-seconds={}",
                opts.reservation_grace_seconds
            ),
            format!("--identity={name}"),
        ];
        if let Some(d) = opts.lease_duration_seconds {
            args.push(format!("--lease-duration={}", d.max(1)));
            args.push(format!("--renew-deadline={}", (d * 2 / 3).max(1)));
            args.push(format!("--retry-period={}", (d / 4).max(1)));
        }
        self.spawn("aipam-operator", &name, args, metrics, OPERATOR_USER)?;
        self.wait_ready(&name, metrics).await
    }

    /// The process holding the operators' leader-election Lease, if any (its Lease identity is
    /// its process name).
    pub async fn operator_leader(&self) -> Result<Option<String>> {
        use k8s_openapi::api::coordination::v1::Lease;
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), SYSTEM_NAMESPACE);
        Ok(leases
            .get_opt("aipam-operator")
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty()))
    }

    /// The log of a process started here. A name without its replica number
    /// (`aipam-webhook`, `aipam-operator`) gives the logs of all its replicas (with a header
    /// line each when there are several).
    pub fn log(&self, name: &str) -> String {
        let read = |n: &str| {
            std::fs::read_to_string(self.dir.path().join(format!("{n}.log")))
                .unwrap_or_else(|e| format!("(no log: {e})"))
        };
        if self.children.iter().any(|p| p.name == name) || self.children.is_empty() {
            return read(name);
        }
        let prefix = format!("{name}-");
        let replicas: Vec<&str> = self
            .children
            .iter()
            .map(|p| p.name.as_str())
            .filter(|n| {
                n.strip_prefix(&prefix)
                    .is_some_and(|i| i.chars().all(|c| c.is_ascii_digit()))
            })
            .collect();
        match replicas.as_slice() {
            [] => read(name),
            [one] => read(one),
            many => many
                .iter()
                .map(|n| format!("=== {n} ===\n{}", read(n)))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Creates an object (through admission, as `kubectl create` does); an object that exists
    /// already is replaced. Returns the stored object.
    pub async fn apply(&self, doc: &Value) -> Result<DynamicObject> {
        let obj: DynamicObject =
            serde_json::from_value(doc.clone()).map_err(|e| Error::Manifest {
                what: describe(doc),
                problem: e.to_string(),
            })?;
        let api = self.api_for(doc).await?;
        match api.create(&PostParams::default(), &obj).await {
            Ok(o) => Ok(o),
            Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => {
                let name = obj.metadata.name.clone().unwrap_or_default();
                let current = api.get(&name).await?;
                let mut next = obj;
                next.metadata.resource_version = current.metadata.resource_version;
                Ok(api.replace(&name, &PostParams::default(), &next).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A dynamic API for the kind of `doc` (its namespace when namespaced).
    pub async fn api_for(&self, doc: &Value) -> Result<Api<DynamicObject>> {
        let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = pinned_kind(&self.client, &gvk).await?;
        Ok(match caps.scope {
            Scope::Namespaced => {
                let ns = doc
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                Api::namespaced_with(self.client.clone(), ns, &ar)
            }
            Scope::Cluster => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// Stops the processes and the stand-in.
    pub async fn stop(mut self) {
        self.kill_children();
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    fn kill_children(&mut self) {
        for c in self.children.iter_mut().filter_map(|p| p.child.as_mut()) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
        for c in self.children.iter_mut().filter_map(|p| p.child.as_mut()) {
            for _ in 0..50 {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_children();
    }
}

/// The stand-in bearer token of a user: its name with every character outside `[A-Za-z0-9-]`
/// replaced.
fn user_token(user: &str) -> String {
    let t: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("token-{t}")
}

/// `Kind namespace/name` of a manifest, for messages.
pub fn describe(doc: &Value) -> String {
    let s = |p: &str| doc.pointer(p).and_then(Value::as_str).unwrap_or("");
    let ns = s("/metadata/namespace");
    let name = s("/metadata/name");
    if ns.is_empty() {
        format!("{} {name}", s("/kind"))
    } else {
        format!("{} {ns}/{name}", s("/kind"))
    }
}
