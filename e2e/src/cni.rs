//! The CNI binary `spiderpool`, run as a container runtime runs it: `CNI_*` variables and the
//! network configuration on stdin, the result (or a CNI error) on stdout.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::{bin_path, Env, Error, Result};

/// What one ADD returned.
#[derive(Debug, Clone)]
pub enum CniOutcome {
    /// The CNI result.
    Ok(Value),
    /// The CNI error (`code`, `msg`).
    Err(Value),
}

/// Runs `spiderpool` with `command` (ADD, CHECK, DEL) for one interface of one Pod, with the
/// environment's kubeconfig in the IPAM configuration.
pub fn run(
    env: &Env,
    command: &str,
    namespace: &str,
    pod: &str,
    uid: &str,
    ifname: &str,
) -> Result<CniOutcome> {
    let bin = bin_path("spiderpool")?;
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "aipam-e2e",
        "type": "macvlan",
        "ipam": {
            "type": "spiderpool",
            "kubeconfig": env.kubeconfig.display().to_string(),
            "timeout_seconds": 10,
        }
    });
    let mut child = Command::new(&bin)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("e2e-{uid}"))
        .env("CNI_NETNS", format!("/var/run/netns/e2e-{pod}"))
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", bin.parent().map(|p| p.display().to_string()).unwrap_or_default())
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod};K8S_POD_UID={uid}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Io {
            what: format!("starting {}", bin.display()),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(conf.to_string().as_bytes())
            .map_err(|source| Error::Io {
                what: "writing the CNI configuration".to_string(),
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| Error::Io {
        what: "running the CNI binary".to_string(),
        source,
    })?;
    if out.stdout.is_empty() && out.status.success() {
        return Ok(CniOutcome::Ok(Value::Null));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| Error::Manifest {
        what: "the CNI binary's stdout".to_string(),
        problem: format!("{e}: {}", String::from_utf8_lossy(&out.stdout)),
    })?;
    Ok(if out.status.success() {
        CniOutcome::Ok(v)
    } else {
        CniOutcome::Err(v)
    })
}
