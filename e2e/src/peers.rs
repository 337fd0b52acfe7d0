//! The IPAMs the benchmarks compare us with, each behind the same Debian `bridge` plugin and the
//! same node simulator as ours ([`crate::Env`] with [`crate::Options::ipam`]):
//!
//! - **host-local** (Debian's `containernetworking-plugins`): no API at all, a file per address
//!   in a directory of the node; each node is given its own range, as host-local users do.
//! - **Whereabouts** (the Go module pinned in `e2e/peers`, built by `hack/peers-build.sh`): its
//!   CNI plugin with a kubeconfig of its own ServiceAccount, its CRDs and the RBAC of its install
//!   manifest, one cluster-wide range, and its `ip-control-loop` reconciler.
//!
//! A new peer is one more [`Ipam`] variant: its network configuration, the binary the node runs
//! (through the same shim as ours when it needs the API), and what to install.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::env::yaml_docs;
use crate::{Error, Result};

/// The ServiceAccount Whereabouts' install manifest gives its plugin and reconciler.
pub const WHEREABOUTS_USER: &str = "system:serviceaccount:kube-system:whereabouts";
/// Whereabouts' flat configuration file in [`crate::Env::dir`] (see [`whereabouts_conf`]).
pub const WHEREABOUTS_CONF: &str = "whereabouts.conf";
/// The Whereabouts module version (what `e2e/peers/go.mod` requires).
pub const WHEREABOUTS_VERSION: &str = "v0.9.2";

/// A range of addresses: a subnet and, optionally, its first and last usable address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressRange {
    /// The subnet (`10.200.0.0/22`).
    pub subnet: String,
    /// The first address given out (the subnet's first host when `None`).
    pub first: Option<String>,
    /// The last address given out (the subnet's last host when `None`).
    pub last: Option<String>,
}

impl AddressRange {
    /// The whole subnet.
    pub fn subnet(subnet: &str) -> AddressRange {
        AddressRange {
            subnet: subnet.to_string(),
            first: None,
            last: None,
        }
    }
}

/// The IPAM of every Pod's `eth0`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Ipam {
    /// Ours: the webhook reserves at admission, the `spiderpool` plugin reads back.
    #[default]
    Ours,
    /// host-local, node `i` (in registration order) given range `i`.
    HostLocal(Vec<AddressRange>),
    /// Whereabouts with one range for the whole cluster.
    Whereabouts(AddressRange),
}

impl Ipam {
    /// host-local with a /22 of 10.200.0.0/16 per node (up to 64 nodes, 1,022 Pods each).
    pub fn host_local(nodes: usize) -> Ipam {
        Ipam::HostLocal(
            (0..nodes)
                .map(|i| AddressRange::subnet(&format!("10.200.{}.0/22", 4 * (i % 64))))
                .collect(),
        )
    }

    /// Whereabouts over 10.201.0.0/16.
    pub fn whereabouts() -> Ipam {
        Ipam::Whereabouts(AddressRange::subnet("10.201.0.0/16"))
    }

    /// A short name for reports (`ours`, `host-local`, `whereabouts`).
    pub fn name(&self) -> &'static str {
        match self {
            Ipam::Ours => "ours",
            Ipam::HostLocal(_) => "host-local",
            Ipam::Whereabouts(_) => "whereabouts",
        }
    }

    /// The name and version for reports.
    pub fn describe(&self) -> String {
        match self {
            Ipam::Ours => "ours (webhook + operator + spiderpool plugin)".to_string(),
            Ipam::HostLocal(_) => {
                "host-local (Debian containernetworking-plugins, a range per node)".to_string()
            }
            Ipam::Whereabouts(_) => format!("Whereabouts {WHEREABOUTS_VERSION} (one range)"),
        }
    }
}

/// The CNI network list of a Pod's `eth0`: Debian's `bridge` plugin (no gateway address on the
/// node's bridge, no masquerading: nothing routes) with the given IPAM section.
pub fn bridge_network(name: &str, ipam: Value) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{
            "type": "bridge",
            "bridge": "aipam0",
            "isGateway": false,
            "ipMasq": false,
            "ipam": ipam
        }]
    })
}

/// host-local over `range`, its files in `data_dir` (one directory per node: on a real node
/// it is the node's own disk).
pub fn host_local_network(range: &AddressRange, data_dir: &Path) -> Value {
    let mut r = json!({"subnet": range.subnet});
    if let Some(f) = &range.first {
        r["rangeStart"] = json!(f);
    }
    if let Some(l) = &range.last {
        r["rangeEnd"] = json!(l);
    }
    bridge_network(
        "host-local",
        json!({"type": "host-local", "ranges": [[r]], "dataDir": data_dir.display().to_string()}),
    )
}

/// Whereabouts over `range`. `conf` is its flat configuration file ([`whereabouts_conf`]),
/// which its plugin requires (the installer writes `/etc/cni/net.d/whereabouts.d/`).
pub fn whereabouts_network(range: &AddressRange, conf: &Path, log_file: &Path) -> Value {
    let mut ipam = json!({
        "type": "whereabouts",
        "range": range.subnet,
        "configuration_path": conf.display().to_string(),
        "log_file": log_file.display().to_string(),
        "log_level": "error",
    });
    if let Some(f) = &range.first {
        ipam["range_start"] = json!(f);
    }
    if let Some(l) = &range.last {
        ipam["range_end"] = json!(l);
    }
    bridge_network("whereabouts", ipam)
}

/// Whereabouts' flat configuration file as its installer (`script/lib.sh`,
/// `generateWhereaboutsConf`) writes it: the Kubernetes datastore with the kubeconfig of its
/// ServiceAccount.
pub fn whereabouts_conf(kubeconfig: &Path) -> Value {
    json!({
        "datastore": "kubernetes",
        "kubernetes": {"kubeconfig": kubeconfig.display().to_string()},
        "reconciler_cron_expression": "30 4 * * *",
    })
}

/// Where Whereabouts' binaries and manifests are: `AIPAM_WHEREABOUTS_DIR` when set, else what
/// `hack/peers-build.sh` builds or finds in its cache.
pub fn whereabouts_dir() -> Result<PathBuf> {
    crate::controlplane::cached_build("AIPAM_WHEREABOUTS_DIR", "hack/peers-build.sh")
}

/// What Whereabouts' module ships to install it: its CRDs, and from its install manifest the
/// ServiceAccount, RBAC and ConfigMap. The manifest's DaemonSet is left out: it runs an image
/// (no container runtime here); [`crate::Env`] runs its processes instead.
pub fn whereabouts_manifests(dir: &Path) -> Result<Vec<Value>> {
    let crds = dir.join("crds");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&crds)
        .map_err(|source| Error::Io {
            what: format!("reading {}", crds.display()),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for path in names {
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            what: format!("reading {}", path.display()),
            source,
        })?;
        let is_install = path
            .file_name()
            .is_some_and(|n| n == "daemonset-install.yaml");
        let is_crd_file = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("whereabouts.cni.cncf.io_"));
        if !is_install && !is_crd_file {
            continue;
        }
        for doc in yaml_docs(&path.display().to_string(), &text)? {
            if doc.get("kind").and_then(Value::as_str) != Some("DaemonSet") {
                out.push(doc);
            }
        }
    }
    Ok(out)
}

/// What the IPAM holds now, one entry per address given out: ours, the SpiderIPClaims'
/// addresses; host-local, the files of its data directories; Whereabouts, the allocations of
/// its IPPools (`pool/offset`). For leak and duplicate checks after a workload is gone.
pub async fn addresses_held(env: &crate::Env) -> Result<Vec<String>> {
    match env.ipam() {
        Ipam::Ours => {
            let objs = list_all(
                env,
                "spiderpool.spidernet.io",
                "v2beta1",
                "SpiderIPClaim",
                "spideripclaims",
            )
            .await?;
            Ok(objs
                .iter()
                .filter_map(|o| o.data.pointer("/spec/address").and_then(Value::as_str))
                .map(str::to_string)
                .collect())
        }
        Ipam::HostLocal(_) => {
            let mut out = Vec::new();
            let root = env.dir().join("host-local");
            for node in read_dir(&root)? {
                for network in read_dir(&node)? {
                    for file in read_dir(&network)? {
                        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        if name.parse::<std::net::IpAddr>().is_ok() {
                            out.push(name.to_string());
                        }
                    }
                }
            }
            Ok(out)
        }
        Ipam::Whereabouts(_) => {
            let pools = list_all(
                env,
                "whereabouts.cni.cncf.io",
                "v1alpha1",
                "IPPool",
                "ippools",
            )
            .await?;
            let mut out = Vec::new();
            for p in &pools {
                let name = p.metadata.name.clone().unwrap_or_default();
                if let Some(a) = p
                    .data
                    .pointer("/spec/allocations")
                    .and_then(Value::as_object)
                {
                    out.extend(a.keys().map(|k| format!("{name}/{k}")));
                }
            }
            Ok(out)
        }
    }
}

async fn list_all(
    env: &crate::Env,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Result<Vec<kube::api::DynamicObject>> {
    let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(env.client.clone(), &ar);
    Ok(api.list(&Default::default()).await?.items)
}

/// The entries of a directory (none when it does not exist).
fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(Error::Io {
            what: format!("reading {}", dir.display()),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_local_gives_each_node_its_own_range() {
        let Ipam::HostLocal(r) = Ipam::host_local(3) else {
            panic!("host-local")
        };
        let subnets: Vec<&str> = r.iter().map(|r| r.subnet.as_str()).collect();
        assert_eq!(subnets, ["10.200.0.0/22", "10.200.4.0/22", "10.200.8.0/22"]);
    }

    #[test]
    fn peer_networks_name_their_ranges() {
        let range = AddressRange {
            subnet: "10.9.0.0/24".into(),
            first: Some("10.9.0.10".into()),
            last: Some("10.9.0.19".into()),
        };
        let hl = host_local_network(&range, Path::new("/d"));
        assert_eq!(
            hl.pointer("/plugins/0/ipam/ranges/0/0/rangeEnd"),
            Some(&json!("10.9.0.19"))
        );
        assert_eq!(hl.pointer("/plugins/0/ipam/dataDir"), Some(&json!("/d")));
        let wa = whereabouts_network(&range, Path::new("/c"), Path::new("/l"));
        assert_eq!(
            wa.pointer("/plugins/0/ipam/range_start"),
            Some(&json!("10.9.0.10"))
        );
        assert_eq!(
            wa.pointer("/plugins/0/ipam/configuration_path"),
            Some(&json!("/c"))
        );
    }
}
