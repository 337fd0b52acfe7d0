//! End-to-end harness: a Kubernetes API (the stand-in by default, a real cluster when
//! `E2E_KUBECONFIG` names one), the webhook and the operator as the processes they are, and the
//! CNI binary run as the container runtime runs it.
//!
//! Against the stand-in there are no controllers, no scheduler and no kubelet, so [`sim`] plays
//! their part with the same API calls they make (ReplicaSet and Pods with `generateName` and
//! owner references, the DaemonSet's pinned node affinity, `pods/binding`). Against a real
//! cluster those calls are left to the cluster; the scenarios only create workloads and read
//! what the IPAM recorded.

pub mod cni;
pub mod controlplane;
pub mod env;
pub mod invariants;
pub mod kubectl;
pub mod node;
pub mod peers;
pub mod proxy;
pub mod rng;
pub mod sim;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use env::{Env, Options};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A file or process could not be handled.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A kubeconfig could not be read or used.
    #[error("kubeconfig {}: {problem}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Certificates could not be generated.
    #[error("generating certificates: {0}")]
    Certificates(String),
    /// The real control plane could not be built, started or used.
    #[error("control plane: {0}")]
    ControlPlane(String),
    /// The API stand-in failed.
    #[error("API stand-in: {0}")]
    StandIn(String),
    /// A manifest could not be read.
    #[error("manifest {what}: {problem}")]
    Manifest {
        /// Which one.
        what: String,
        /// What is wrong.
        problem: String,
    },
    /// A condition was not reached in time.
    #[error("timed out after {secs:.1} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        secs: f64,
    },
    /// A project binary is missing.
    #[error("binary {0} not found: build the workspace first (cargo build --workspace --bins)")]
    MissingBinary(String),
}

/// Harness result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A client from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &std::path::Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| Error::Kubeconfig {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
    Ok(kube::Client::try_from(config)?)
}

/// Polls `check` until it returns `Some`, or fails after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() > deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                secs: start.elapsed().as_secs_f64(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `times` dry-run creates of `probe` in a row are admitted through `pods`' API:
/// the webhook serves and (every replica, given twice as many tries as replicas) sees the pools
/// the probe names. Nothing is created.
pub async fn wait_admitting(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    probe: &k8s_openapi::api::core::v1::Pod,
    times: usize,
    what: &str,
    deadline: Duration,
) -> Result<()> {
    let dry = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    wait_for(what, deadline, || {
        let (pods, probe, dry) = (pods.clone(), probe.clone(), dry.clone());
        async move {
            for _ in 0..times.max(1) {
                pods.create(&dry, &probe).await.ok()?;
            }
            Some(())
        }
    })
    .await
}

/// Where the project's binaries are: `AIPAM_BIN_DIR`, else the target directory this binary
/// (or test) runs from.
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(d) = std::env::var("AIPAM_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            dirs.push(dir.to_path_buf());
            // Tests run from target/<profile>/deps.
            if let Some(up) = dir.parent() {
                dirs.push(up.to_path_buf());
            }
        }
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::MissingBinary(name.to_string()))
}
