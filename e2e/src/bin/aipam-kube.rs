//! `aipam-kube up DIR` starts the real control plane (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler) with its files under DIR, writes DIR/kubeconfig
//! (admin) and exits once every component is ready, leaving them running;
//! `aipam-kube down DIR` stops them. `hack/kube-up.sh` and `hack/kube-down.sh` call it.

use std::path::PathBuf;

use aipam_e2e::controlplane::{stop_detached, ControlPlane};
use anyhow::{bail, Context};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, dir) = match args.as_slice() {
        [cmd, dir] => (cmd.as_str(), PathBuf::from(dir)),
        _ => bail!("usage: aipam-kube up|down DIR"),
    };
    match cmd {
        "up" => {
            if dir.join("pids").exists() {
                bail!(
                    "{} holds a running control plane (pids): run `aipam-kube down {}` first",
                    dir.display(),
                    dir.display()
                );
            }
            let started = std::time::Instant::now();
            let cp = ControlPlane::start(&dir)
                .await
                .with_context(|| format!("starting the control plane in {}", dir.display()))?;
            println!(
                "control plane ready in {:.1} s: {} (admin kubeconfig {}, logs in {})",
                started.elapsed().as_secs_f64(),
                cp.server(),
                cp.admin_kubeconfig().display(),
                dir.display()
            );
            cp.detach()?;
        }
        "down" => {
            let stopped = stop_detached(&dir)?;
            if stopped.is_empty() {
                println!("nothing was running in {}", dir.display());
            } else {
                println!("stopped {}", stopped.join(", "));
            }
        }
        other => bail!("unknown command {other:?}: usage: aipam-kube up|down DIR"),
    }
    Ok(())
}
