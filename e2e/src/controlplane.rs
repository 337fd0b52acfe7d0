//! A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager
//! and kube-scheduler, built from the pinned modules of `e2e/controlplane` by
//! `hack/kube-build.sh` into a cache outside the clone, started as processes.
//!
//! Everything listens on 127.0.0.1 at free ports. The API server serves TLS with a CA made
//! here, authenticates client certificates of that CA and ServiceAccount tokens it signs,
//! authorizes with `Node,RBAC` and runs the default admission plugins plus `NodeRestriction`,
//! `PodSecurity` and `ResourceQuota`. The controller manager and the scheduler authenticate as
//! `system:kube-controller-manager` and `system:kube-scheduler` (the identities the bootstrap
//! RBAC policy grants), and the controller manager gives each controller its own
//! ServiceAccount, as kubeadm clusters do. There is no kubelet: [`crate::node`] plays the nodes.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::{repo, wait_for, Error, Result};

/// The Service network the API server is given (nothing routes to it here).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The user of the admin kubeconfig (in `system:masters`).
pub const ADMIN_USER: &str = "kubernetes-admin";
/// The ServiceAccount token issuer.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// One process of the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// etcd (its data kept in the control plane's directory across restarts).
    Etcd,
    /// kube-apiserver.
    ApiServer,
    /// kube-controller-manager.
    ControllerManager,
    /// kube-scheduler.
    Scheduler,
}

impl Component {
    /// Every component, in start order.
    pub const ALL: [Component; 4] = [
        Component::Etcd,
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
    ];

    /// The binary's (and log's) name.
    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
        }
    }
}

/// A certificate authority made here: signs the API server's serving certificate and every
/// client certificate handed out, and the webhook's serving certificate.
pub(crate) struct Pki {
    ca_key: KeyPair,
    ca_cert: Certificate,
}

impl Pki {
    pub(crate) fn new() -> Result<Pki> {
        let ca_key = KeyPair::generate().map_err(cert_err)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.distinguished_name
            .push(DnType::CommonName, "aipam e2e kubernetes CA");
        let ca_cert = p.self_signed(&ca_key).map_err(cert_err)?;
        Ok(Pki { ca_key, ca_cert })
    }

    pub(crate) fn ca_pem(&self) -> String {
        self.ca_cert.pem()
    }

    /// A certificate and key (PEM) for `cn` in the groups `orgs`, for a client or a server.
    pub(crate) fn issue(
        &self,
        cn: &str,
        orgs: &[&str],
        sans: &[&str],
        server: bool,
    ) -> Result<(String, String)> {
        let key = KeyPair::generate().map_err(cert_err)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            p.distinguished_name.push(DnType::OrganizationName, *o);
        }
        for s in sans {
            p.subject_alt_names
                .push(match s.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName((*s).try_into().map_err(cert_err)?),
                });
        }
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = p
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .map_err(cert_err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn cert_err(e: rcgen::Error) -> Error {
    Error::Certificates(e.to_string())
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The flags the controller manager and the scheduler share: their identity's kubeconfig (also
/// for delegated authentication and authorization of their own endpoints), their secure port
/// on loopback, and no leader election (one replica each).
fn serving_args(kubeconfig: &str, port: u16) -> Vec<String> {
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".to_string(),
        format!("--secure-port={port}"),
        "--leader-elect=false".to_string(),
    ]
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("binding a free port"))?;
    Ok(l.local_addr().map_err(io("reading a free port"))?.port())
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// A kubeconfig for `server` trusting `ca_pem`, with the user given as kubeconfig `user:`
/// fields (already indented YAML).
fn kubeconfig_text(server: &str, ca_pem: &str, user: &str, user_fields: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: aipam-e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n{user_fields}contexts:\n- name: {user}@aipam-e2e\n  context:\n    cluster: aipam-e2e\n    user: {user}\ncurrent-context: {user}@aipam-e2e\n",
        ca = b64(ca_pem),
        user = file_safe(user),
    )
}

/// `user` with every character outside `[A-Za-z0-9-]` replaced, for file and entry names.
fn file_safe(user: &str) -> String {
    user.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Where the control plane's binaries are: `AIPAM_KUBE_BIN_DIR` when set, else what
/// `hack/kube-build.sh` builds or finds in its cache (it prints the directory).
pub fn binaries() -> Result<PathBuf> {
    cached_build("AIPAM_KUBE_BIN_DIR", "hack/kube-build.sh")
}

/// The directory named by the environment variable `var` when set, else the one the build
/// script `script` (relative to the repository) prints after building into, or finding, its
/// cache. Its progress goes to our stderr.
pub(crate) fn cached_build(var: &str, script: &str) -> Result<PathBuf> {
    if let Ok(d) = std::env::var(var) {
        return Ok(PathBuf::from(d));
    }
    let script = repo().join(script);
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(io(format!("running {}", script.display())))?;
    if !out.status.success() {
        return Err(Error::ControlPlane(format!(
            "{} failed ({}): see its output above",
            script.display(),
            out.status
        )));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(PathBuf::from(dir))
}

struct Proc {
    component: Component,
    args: Vec<String>,
    child: Option<Child>,
}

/// A running control plane. Dropping it stops every process (unless [`ControlPlane::detach`]
/// was called); its directory (etcd's data, certificates, logs, kubeconfigs) stays.
pub struct ControlPlane {
    dir: PathBuf,
    bin_dir: PathBuf,
    pki: Pki,
    /// `https://127.0.0.1:<port>`.
    server: String,
    procs: Vec<Proc>,
    detached: bool,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("dir", &self.dir)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Builds the binaries if needed, then starts etcd, kube-apiserver, kube-controller-manager
    /// and kube-scheduler with their files under `dir`, and returns once each is ready: the API
    /// server's `/readyz` answers ok, the controller manager has made the `default`
    /// ServiceAccount of namespace `default`, the scheduler serves its port.
    pub async fn start(dir: &Path) -> Result<ControlPlane> {
        let bin_dir = binaries()?;
        for c in Component::ALL {
            if !bin_dir.join(c.name()).is_file() {
                return Err(Error::ControlPlane(format!(
                    "{} is missing from {}",
                    c.name(),
                    bin_dir.display()
                )));
            }
        }
        std::fs::create_dir_all(dir.join("pki"))
            .map_err(io(format!("creating {}", dir.display())))?;
        let pki = Pki::new()?;
        let api_port = free_port()?;
        let server = format!("https://127.0.0.1:{api_port}");
        let mut cp = ControlPlane {
            dir: dir.to_path_buf(),
            bin_dir,
            pki,
            server,
            procs: Vec::new(),
            detached: false,
        };
        cp.write_pki()?;
        let etcd_client = free_port()?;
        let etcd_peer = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let d = |p: &str| cp.dir.join(p).display().to_string();

        let etcd = vec![
            "--name=aipam-e2e".to_string(),
            format!("--data-dir={}", d("etcd")),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=aipam-e2e=http://127.0.0.1:{etcd_peer}"),
            // A test cluster: its data survives a restart of the process, not of the machine.
            "--unsafe-no-fsync=true".to_string(),
            "--log-level=warn".to_string(),
        ];
        let apiserver = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", d("pki")),
            format!("--tls-cert-file={}", d("pki/apiserver.crt")),
            format!("--tls-private-key-file={}", d("pki/apiserver.key")),
            format!("--client-ca-file={}", d("pki/ca.crt")),
            format!("--service-account-issuer={ISSUER}"),
            format!("--service-account-key-file={}", d("pki/sa.pub")),
            format!("--service-account-signing-key-file={}", d("pki/sa.key")),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--authorization-mode=Node,RBAC".to_string(),
            "--enable-admission-plugins=NodeRestriction,PodSecurity,ResourceQuota".to_string(),
            "--allow-privileged=true".to_string(),
            // The `kubernetes` Service's endpoints would be 127.0.0.1, which Endpoint
            // validation refuses; nothing here reaches the API through that Service.
            "--endpoint-reconciler-type=none".to_string(),
            "--profiling=false".to_string(),
            "--v=1".to_string(),
        ];
        let kcm_port = free_port()?;
        let mut kcm = serving_args(&d("kube-controller-manager.kubeconfig"), kcm_port);
        kcm.extend([
            "--controllers=*".to_string(),
            "--use-service-account-credentials=true".to_string(),
            format!("--service-account-private-key-file={}", d("pki/sa.key")),
            format!("--root-ca-file={}", d("pki/ca.crt")),
            format!("--cluster-signing-cert-file={}", d("pki/ca.crt")),
            format!("--cluster-signing-key-file={}", d("pki/ca.key")),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // The tests create Pods by the hundred; the default 20 QPS would make the
            // controllers, not the IPAM, what they measure.
            "--kube-api-qps=200".to_string(),
            "--kube-api-burst=400".to_string(),
            "--v=1".to_string(),
        ]);
        let sched_port = free_port()?;
        let mut scheduler = serving_args(&d("kube-scheduler.kubeconfig"), sched_port);
        scheduler.extend([
            "--kube-api-qps=200".to_string(),
            "--kube-api-burst=400".to_string(),
            "--v=1".to_string(),
        ]);
        for (c, args) in [
            (Component::Etcd, etcd),
            (Component::ApiServer, apiserver),
            (Component::ControllerManager, kcm),
            (Component::Scheduler, scheduler),
        ] {
            cp.procs.push(Proc {
                component: c,
                args,
                child: None,
            });
        }
        for c in Component::ALL {
            cp.launch(c)?;
            cp.wait_ready(c).await?;
        }
        Ok(cp)
    }

    fn write_pki(&self) -> Result<()> {
        let pki = self.dir.join("pki");
        let write = |name: &str, text: &str| {
            std::fs::write(pki.join(name), text).map_err(io(format!("writing pki/{name}")))
        };
        write("ca.crt", &self.pki.ca_pem())?;
        write("ca.key", &self.pki.ca_key.serialize_pem())?;
        let (crt, key) = self.pki.issue(
            "kube-apiserver",
            &[],
            &[
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "10.96.0.1",
            ],
            true,
        )?;
        write("apiserver.crt", &crt)?;
        write("apiserver.key", &key)?;
        // The ServiceAccount token signing key (ECDSA P-256, PKCS#8) and its public half, which
        // the API server verifies tokens with.
        let sa = KeyPair::generate().map_err(cert_err)?;
        write("sa.key", &sa.serialize_pem())?;
        write("sa.pub", &sa.public_key_pem())?;
        self.write_cert_kubeconfig(
            &self.dir.join("kubeconfig"),
            ADMIN_USER,
            &["system:masters"],
        )?;
        self.write_cert_kubeconfig(
            &self.dir.join("kube-controller-manager.kubeconfig"),
            "system:kube-controller-manager",
            &[],
        )?;
        self.write_cert_kubeconfig(
            &self.dir.join("kube-scheduler.kubeconfig"),
            "system:kube-scheduler",
            &[],
        )?;
        Ok(())
    }

    fn write_cert_kubeconfig(&self, path: &Path, user: &str, groups: &[&str]) -> Result<()> {
        let (crt, key) = self.pki.issue(user, groups, &[], false)?;
        let fields = format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&crt),
            b64(&key)
        );
        let text = kubeconfig_text(&self.server, &self.pki.ca_pem(), user, &fields);
        std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))
    }

    fn log_path(&self, c: Component) -> PathBuf {
        self.dir.join(format!("{}.log", c.name()))
    }

    fn proc_mut(&mut self, c: Component) -> Result<&mut Proc> {
        self.procs
            .iter_mut()
            .find(|p| p.component == c)
            .ok_or_else(|| Error::ControlPlane(format!("{} was not set up", c.name())))
    }

    fn launch(&mut self, c: Component) -> Result<()> {
        let bin = self.bin_dir.join(c.name());
        let log = self.log_path(c);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(format!("opening {}", log.display())))?;
        let err = out.try_clone().map_err(io("duplicating a log file"))?;
        let args = self.proc_mut(c)?.args.clone();
        use std::os::unix::process::CommandExt;
        let child = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: a Ctrl-C of the caller's terminal does not reach it, and
            // hack/kube-up.sh can leave it running.
            .process_group(0)
            .spawn()
            .map_err(io(format!("starting {}", bin.display())))?;
        self.proc_mut(c)?.child = Some(child);
        Ok(())
    }

    /// Whether the process of `c` has exited.
    fn exited(&mut self, c: Component) -> bool {
        self.proc_mut(c)
            .ok()
            .and_then(|p| p.child.as_mut())
            .is_none_or(|ch| !matches!(ch.try_wait(), Ok(None)))
    }

    async fn wait_ready(&mut self, c: Component) -> Result<()> {
        // Readiness races with an early exit (a bad flag, a port taken): whichever comes first.
        let pid = self
            .proc_mut(c)?
            .child
            .as_ref()
            .map(Child::id)
            .unwrap_or_default();
        let ready = self.wait_ready_inner(c);
        let gone = async move {
            while alive(pid) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let res = tokio::select! {
            r = ready => r,
            () = gone => Err(Error::ControlPlane(format!("{} exited", c.name()))),
        };
        if res.is_err() || self.exited(c) {
            return Err(Error::ControlPlane(format!(
                "{} did not become ready; the end of its log ({}):\n{}",
                c.name(),
                self.log_path(c).display(),
                self.log_tail(c, 40)
            )));
        }
        Ok(())
    }

    async fn wait_ready_inner(&self, c: Component) -> Result<()> {
        let deadline = Duration::from_secs(match c {
            Component::ApiServer | Component::ControllerManager => 120,
            _ => 60,
        });
        let res = match c {
            Component::Etcd => {
                let addr = self.etcd_addr()?;
                wait_for("etcd", deadline, || async move {
                    TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                        .ok()
                        .map(|_| ())
                })
                .await
            }
            Component::ApiServer => {
                let client = self.admin_client().await?;
                wait_for("kube-apiserver /readyz", deadline, || {
                    let client = client.clone();
                    async move {
                        let req = http::Request::get("/readyz").body(Vec::new()).ok()?;
                        let text = client.request_text(req).await.ok()?;
                        (text.trim() == "ok").then_some(())
                    }
                })
                .await
            }
            Component::ControllerManager => {
                let client = self.admin_client().await?;
                wait_for(
                    "kube-controller-manager (the default ServiceAccount)",
                    deadline,
                    || {
                        let client = client.clone();
                        async move {
                            use k8s_openapi::api::core::v1::ServiceAccount;
                            let api: kube::Api<ServiceAccount> =
                                kube::Api::namespaced(client, "default");
                            api.get_opt("default").await.ok().flatten().map(|_| ())
                        }
                    },
                )
                .await
            }
            Component::Scheduler => {
                let addr = self.port_arg(c, "--secure-port=")?;
                wait_for("kube-scheduler", deadline, || async move {
                    TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                        .ok()
                        .map(|_| ())
                })
                .await
            }
        };
        res
    }

    fn port_arg(&self, c: Component, flag: &str) -> Result<SocketAddr> {
        let p = self
            .procs
            .iter()
            .find(|p| p.component == c)
            .ok_or_else(|| Error::ControlPlane(format!("{} was not set up", c.name())))?;
        p.args
            .iter()
            .find_map(|a| a.strip_prefix(flag))
            .and_then(|v| v.rsplit(':').next())
            .and_then(|v| v.parse::<u16>().ok())
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .ok_or_else(|| Error::ControlPlane(format!("{} has no {flag}", c.name())))
    }

    fn etcd_addr(&self) -> Result<SocketAddr> {
        self.port_arg(Component::Etcd, "--listen-client-urls=")
    }

    /// The last `lines` lines of a component's log.
    pub fn log_tail(&self, c: Component, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(c)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The control plane's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.pki.ca_pem()
    }

    /// The admin kubeconfig (`system:masters`).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// A client as the cluster admin.
    pub async fn admin_client(&self) -> Result<kube::Client> {
        crate::client_from_kubeconfig(&self.admin_kubeconfig()).await
    }

    /// Writes a kubeconfig authenticating as `user` in `groups` by a client certificate of the
    /// cluster CA (how a person or a kubelet authenticates); returns its path.
    pub fn kubeconfig_for_user(&self, user: &str, groups: &[&str]) -> Result<PathBuf> {
        let path = self
            .dir
            .join(format!("user-{}.kubeconfig", file_safe(user)));
        self.write_cert_kubeconfig(&path, user, groups)?;
        Ok(path)
    }

    /// A client authenticating as `user` in `groups` by a client certificate.
    pub async fn client_for_user(&self, user: &str, groups: &[&str]) -> Result<kube::Client> {
        crate::client_from_kubeconfig(&self.kubeconfig_for_user(user, groups)?).await
    }

    /// Writes a kubeconfig with a bearer `token` (a ServiceAccount's), named `name`.
    pub fn kubeconfig_with_token(&self, name: &str, token: &str) -> Result<PathBuf> {
        let path = self.dir.join(format!("{}.kubeconfig", file_safe(name)));
        let text = kubeconfig_text(
            &self.server,
            &self.pki.ca_pem(),
            name,
            &format!("    token: {token}\n"),
        );
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
        Ok(path)
    }

    /// SIGKILLs one component and waits for it to be gone.
    pub fn kill(&mut self, c: Component) -> Result<()> {
        let p = self.proc_mut(c)?;
        if let Some(mut ch) = p.child.take() {
            let _ = ch.kill();
            ch.wait().map_err(io(format!("waiting for {}", c.name())))?;
        }
        Ok(())
    }

    /// Stops one component (SIGKILL), starts it again with the same arguments, ports and data,
    /// and waits until it is ready.
    pub async fn restart(&mut self, c: Component) -> Result<()> {
        self.kill(c)?;
        self.launch(c)?;
        self.wait_ready(c).await
    }

    /// Leaves the processes running when this value is dropped (for `hack/kube-up.sh`); writes
    /// their process ids to `<dir>/pids`, one per line, for [`stop_detached`].
    pub fn detach(mut self) -> Result<()> {
        let pids: Vec<String> = self
            .procs
            .iter()
            .filter_map(|p| {
                p.child
                    .as_ref()
                    .map(|c| format!("{} {}", c.id(), p.component.name()))
            })
            .collect();
        let path = self.dir.join("pids");
        std::fs::write(&path, pids.join("\n") + "\n")
            .map_err(io(format!("writing {}", path.display())))?;
        self.detached = true;
        Ok(())
    }

    /// Stops every process: scheduler and controller manager first, etcd last.
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for p in self.procs.iter_mut().rev() {
            if let Some(ch) = p.child.as_mut() {
                terminate(ch.id());
            }
            if let Some(mut ch) = p.child.take() {
                for _ in 0..100 {
                    if !matches!(ch.try_wait(), Ok(None)) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = ch.kill();
                let _ = ch.wait();
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if !self.detached {
            self.stop_all();
        }
    }
}

fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

/// Stops a control plane left running by [`ControlPlane::detach`] in `dir` (SIGTERM, then
/// SIGKILL after 10 s), in reverse start order; returns the components it stopped.
pub fn stop_detached(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("pids");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
    };
    let procs: Vec<(u32, String)> = text
        .lines()
        .filter_map(|l| {
            let (pid, name) = l.split_once(' ')?;
            Some((pid.parse().ok()?, name.to_string()))
        })
        .collect();
    let mut stopped = Vec::new();
    for (pid, name) in procs.iter().rev() {
        if !alive(*pid) {
            continue;
        }
        terminate(*pid);
        for _ in 0..200 {
            if !alive(*pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(*pid) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        stopped.push(name.clone());
    }
    std::fs::remove_file(&path).map_err(io(format!("removing {}", path.display())))?;
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_kubeconfig_names_the_server_the_ca_and_the_user() {
        let text = kubeconfig_text(
            "https://127.0.0.1:6443",
            "PEM",
            "system:node:n1",
            "    token: abc\n",
        );
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            v["clusters"][0]["cluster"]["server"].as_str(),
            Some("https://127.0.0.1:6443")
        );
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"].as_str(),
            Some(b64("PEM").as_str())
        );
        assert_eq!(v["users"][0]["name"].as_str(), Some("system-node-n1"));
        assert_eq!(v["users"][0]["user"]["token"].as_str(), Some("abc"));
        assert_eq!(
            v["current-context"].as_str(),
            Some("system-node-n1@aipam-e2e")
        );
    }

    #[test]
    fn client_certificates_carry_the_user_and_groups() {
        let pki = Pki::new().unwrap();
        let (crt, key) = pki
            .issue("system:node:n1", &["system:nodes"], &[], false)
            .unwrap();
        assert!(crt.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        assert!(pki
            .issue("srv", &[], &["127.0.0.1", "localhost"], true)
            .is_ok());
    }
}
