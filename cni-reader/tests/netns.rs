//! The `spiderpool` binary driven by the real CNI plugins from Debian's
//! `containernetworking-plugins` (`bridge`, `macvlan`), in network namespaces made by each test:
//! the interface inside the namespace must carry the reserved address with its prefix, the default
//! route via the gateway (only where it belongs) and the pool's routes; DEL removes the interface.
//!
//! Needs root (network namespaces, links). Installs the plugins with apt-get when
//! `/usr/lib/cni/bridge` is missing; skips loudly when that is impossible. Every namespace and
//! link a test makes is removed by a Drop guard, also when the test fails. Only private test
//! addresses are used, and only inside the namespaces made here; no traffic is sent anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use common::*;
use serde_json::{json, Value};

const PLUGIN_DIR: &str = "/usr/lib/cni";
const UID: &str = "9a1c7e52-2222-4d0e-8c1b-00000000beef";

/// Makes sure the Debian plugins are installed; `false` (after a loud message) when impossible.
fn plugins_available() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    *READY.get_or_init(|| {
        let _g = LOCK.lock().unwrap();
        let have = || {
            Path::new(PLUGIN_DIR).join("bridge").exists()
                && Path::new(PLUGIN_DIR).join("macvlan").exists()
        };
        if !have() {
            let install = |update: bool| {
                if update {
                    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
                }
                Command::new("apt-get")
                    .args(["install", "-y", "-qq", "containernetworking-plugins"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            };
            if !install(false) {
                install(true);
            }
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        let netns_ok = root && {
            let probe = unique("aipprobe");
            let ok = sh(&["ip", "netns", "add", &probe]).is_ok();
            let _ = sh(&["ip", "netns", "del", &probe]);
            ok
        };
        let ok = have() && netns_ok;
        if !ok {
            eprintln!(
                "\n\n!!!!! SKIPPING the real-plugin tests: {} !!!!!\n\n",
                if !have() {
                    "containernetworking-plugins is not installed and apt-get install failed"
                } else {
                    "not root, or network namespaces cannot be created"
                }
            );
        }
        ok
    })
}

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A name of at most 15 characters, unique per process and call.
fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let name = format!("{prefix}{}{n}", std::process::id() % 10000);
    assert!(name.len() <= 15, "{name}");
    name
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = unique("aipns");
        sh(&["ip", "netns", "add", &name]).unwrap();
        Netns(name)
    }
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
    fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["ip", "netns", "exec", &self.0, "ip", "-j"];
        full.extend_from_slice(args);
        let out = sh(&full).unwrap();
        if out.trim().is_empty() {
            json!([])
        } else {
            serde_json::from_str(&out).unwrap()
        }
    }
    fn has_link(&self, ifname: &str) -> bool {
        self.ip_json(&["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ifname"] == ifname)
    }
    /// `(address, prefixlen)` of `ifname`, for one family (`inet` / `inet6`), global scope only.
    fn addrs(&self, ifname: &str, family: &str) -> Vec<(String, u64)> {
        let v = self.ip_json(&["addr", "show", "dev", ifname]);
        v[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["family"] == family && a["scope"] == "global")
            .map(|a| {
                (
                    a["local"].as_str().unwrap().to_string(),
                    a["prefixlen"].as_u64().unwrap(),
                )
            })
            .collect()
    }
    /// `(dst, gateway, dev)` of the routes of one family (`-4` / `-6`) in the main table.
    fn routes(&self, family: &str) -> Vec<(String, String, String)> {
        self.ip_json(&[family, "route", "show"])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["dst"].as_str().unwrap_or_default().to_string(),
                    r["gateway"].as_str().unwrap_or_default().to_string(),
                    r["dev"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.0]);
    }
}

/// A link in the root namespace (bridge, dummy or veth), deleted on drop.
struct Link(String);

impl Drop for Link {
    fn drop(&mut self) {
        let _ = sh(&["ip", "link", "del", &self.0]);
    }
}

/// A parent link for macvlan: a `dummy` if the kernel has it, else one end of a veth pair.
fn macvlan_parent() -> Link {
    let name = unique("aipmp");
    if sh(&["ip", "link", "add", &name, "type", "dummy"]).is_err() {
        let peer = unique("aippe");
        eprintln!(
            "this kernel has no dummy links; using a veth pair {name}/{peer} as macvlan parent"
        );
        sh(&[
            "ip", "link", "add", &name, "type", "veth", "peer", "name", &peer,
        ])
        .unwrap();
        sh(&["ip", "link", "set", &peer, "up"]).unwrap();
    }
    let link = Link(name);
    sh(&["ip", "link", "set", &link.0, "up"]).unwrap();
    link
}

/// A directory holding only our `spiderpool` binary (a symlink), for CNI_PATH.
fn our_plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(plugin_bin(), dir.path().join("spiderpool")).unwrap();
    dir
}

struct Attach<'a> {
    plugin: &'a str,
    netns: &'a Netns,
    ifname: &'a str,
    pod: &'a str,
    cni_path: String,
}

impl Attach<'_> {
    fn run(&self, command: &str, conf: &Value) -> Run {
        let mut env = cni_env(command, "ns1", self.pod, UID, self.ifname);
        env.retain(|(k, _)| k != "CNI_NETNS" && k != "CNI_PATH" && k != "CNI_CONTAINERID");
        env.push(("CNI_NETNS".into(), self.netns.path()));
        env.push(("CNI_PATH".into(), self.cni_path.clone()));
        env.push((
            "CNI_CONTAINERID".into(),
            format!("ctr-{}-{}", self.netns.0, self.ifname),
        ));
        let start = std::time::Instant::now();
        let out = Command::new(Path::new(PLUGIN_DIR).join(self.plugin))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(conf.to_string().as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        Run {
            exit: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
            elapsed: start.elapsed(),
        }
    }
}

fn cni_path(ours: &tempfile::TempDir) -> String {
    format!("{}:{PLUGIN_DIR}", ours.path().display())
}

fn ipam(kc: &PathBuf) -> Value {
    json!({"type": "spiderpool", "kubeconfig": kc, "timeout_seconds": 5})
}

#[test]
fn bridge_dual_stack_add_check_del() {
    if !plugins_available() {
        return;
    }
    let f = Fixture::start();
    f.put_endpoint(
        "ns1",
        "br-pod",
        endpoint(
            "ns1",
            "br-pod",
            UID,
            json!([{"interface": "eth0", "ipv4": "10.244.31.17/24", "ipv4Pool": "v4", "ipv4Gateway": "10.244.31.1",
                    "ipv6": "fd00:a1b2::17/64", "ipv6Pool": "v6", "ipv6Gateway": "fd00:a1b2::1",
                    "routes": [{"dst": "10.245.0.0/16", "gw": "10.244.31.254"}]}]),
        ),
    );
    let ns = Netns::new();
    let bridge = Link(unique("aipbr"));
    let ours = our_plugin_dir();
    let conf = json!({"cniVersion": "1.0.0", "name": "aipam-bridge", "type": "bridge", "bridge": bridge.0,
                      "isGateway": false, "ipMasq": false, "ipam": ipam(&f.kubeconfig())});
    let a = Attach {
        plugin: "bridge",
        netns: &ns,
        ifname: "eth0",
        pod: "br-pod",
        cni_path: cni_path(&ours),
    };

    let add = a.run("ADD", &conf);
    let result = add.ok();
    assert_eq!(result["ips"][0]["address"], "10.244.31.17/24", "{result}");

    assert_eq!(
        ns.addrs("eth0", "inet"),
        vec![("10.244.31.17".to_string(), 24)]
    );
    assert_eq!(
        ns.addrs("eth0", "inet6"),
        vec![("fd00:a1b2::17".to_string(), 64)]
    );
    let r4 = ns.routes("-4");
    assert!(
        r4.contains(&("default".into(), "10.244.31.1".into(), "eth0".into())),
        "{r4:?}"
    );
    assert!(
        r4.contains(&(
            "10.245.0.0/16".into(),
            "10.244.31.254".into(),
            "eth0".into()
        )),
        "{r4:?}"
    );
    let r6 = ns.routes("-6");
    assert!(
        r6.contains(&("default".into(), "fd00:a1b2::1".into(), "eth0".into())),
        "{r6:?}"
    );

    // CHECK through the bridge plugin, which hands its prevResult to our CHECK.
    let mut check = conf.clone();
    check["prevResult"] = result.clone();
    let run = a.run("CHECK", &check);
    assert_eq!(run.exit, Some(0), "{run:#?}");
    // The reservation changes under the Pod: CHECK fails with our code.
    f.put_endpoint(
        "ns1",
        "br-pod",
        endpoint(
            "ns1",
            "br-pod",
            UID,
            json!([{"interface": "eth0", "ipv4": "10.244.31.18/24", "ipv4Gateway": "10.244.31.1"}]),
        ),
    );
    let run = a.run("CHECK", &check);
    assert_eq!(run.exit, Some(1), "{run:#?}");
    assert_eq!(run.json()["code"], 105, "{run:#?}");

    // DEL removes the interface, and succeeds again when everything is gone.
    f.delete_endpoint("ns1", "br-pod");
    let del = a.run("DEL", &conf);
    assert_eq!(del.exit, Some(0), "{del:#?}");
    assert!(!ns.has_link("eth0"));
    let del = a.run("DEL", &conf);
    assert_eq!(del.exit, Some(0), "{del:#?}");
}

#[test]
fn bridge_eth0_and_macvlan_net1_with_clean_gateway_cni_0_3_1() {
    if !plugins_available() {
        return;
    }
    let f = Fixture::start();
    f.put_endpoint(
        "ns1",
        "multi-pod",
        endpoint(
            "ns1",
            "multi-pod",
            UID,
            json!([
                {"interface": "eth0", "ipv4": "10.246.8.40/22", "ipv4Pool": "a", "ipv4Gateway": "10.246.8.1", "cleanGateway": false},
                {"interface": "net1", "ipv4": "172.29.5.9/24", "ipv4Pool": "b", "ipv4Gateway": "172.29.5.1", "cleanGateway": true,
                 "routes": [{"dst": "172.30.0.0/16", "gw": "172.29.5.1"}]}
            ]),
        ),
    );
    let ns = Netns::new();
    let bridge = Link(unique("aipbr"));
    let parent = macvlan_parent();
    let ours = our_plugin_dir();
    let kc = f.kubeconfig();
    let eth0_conf = json!({"cniVersion": "0.3.1", "name": "aipam-bridge", "type": "bridge", "bridge": bridge.0,
                           "isGateway": false, "ipMasq": false, "ipam": ipam(&kc)});
    // As in Spiderpool's documentation: macvlan in bridge mode, "ipam": {"type": "spiderpool"}.
    let net1_conf = json!({"cniVersion": "0.3.1", "name": "macvlan-test", "type": "macvlan", "master": parent.0,
                           "mode": "bridge", "ipam": ipam(&kc)});
    let eth0 = Attach {
        plugin: "bridge",
        netns: &ns,
        ifname: "eth0",
        pod: "multi-pod",
        cni_path: cni_path(&ours),
    };
    let net1 = Attach {
        plugin: "macvlan",
        netns: &ns,
        ifname: "net1",
        pod: "multi-pod",
        cni_path: cni_path(&ours),
    };

    let r = eth0.run("ADD", &eth0_conf).ok();
    assert_eq!(r["cniVersion"], "0.3.1");
    assert_eq!(r["ips"][0]["version"], "4", "{r}");
    let r = net1.run("ADD", &net1_conf).ok();
    assert_eq!(r["ips"][0]["address"], "172.29.5.9/24", "{r}");

    assert_eq!(
        ns.addrs("eth0", "inet"),
        vec![("10.246.8.40".to_string(), 22)]
    );
    assert_eq!(
        ns.addrs("net1", "inet"),
        vec![("172.29.5.9".to_string(), 24)]
    );
    let r4 = ns.routes("-4");
    let defaults: Vec<_> = r4.iter().filter(|r| r.0 == "default").collect();
    assert_eq!(
        defaults,
        vec![&(
            "default".to_string(),
            "10.246.8.1".to_string(),
            "eth0".to_string()
        )],
        "{r4:?}"
    );
    assert!(
        r4.contains(&("172.30.0.0/16".into(), "172.29.5.1".into(), "net1".into())),
        "{r4:?}"
    );

    let run = net1.run("DEL", &net1_conf);
    assert_eq!(run.exit, Some(0), "{run:#?}");
    assert!(!ns.has_link("net1"));
    let run = eth0.run("DEL", &eth0_conf);
    assert_eq!(run.exit, Some(0), "{run:#?}");
    assert!(!ns.has_link("eth0"));
}

#[test]
fn macvlan_add_fails_cleanly_when_nothing_is_reserved() {
    if !plugins_available() {
        return;
    }
    let f = Fixture::start();
    let ns = Netns::new();
    let parent = macvlan_parent();
    let ours = our_plugin_dir();
    let conf = json!({"cniVersion": "1.0.0", "name": "macvlan-test", "type": "macvlan", "master": parent.0, "mode": "bridge",
                      "ipam": {"type": "spiderpool", "kubeconfig": f.kubeconfig(), "timeout_seconds": 1}});
    let a = Attach {
        plugin: "macvlan",
        netns: &ns,
        ifname: "net1",
        pod: "nobody",
        cni_path: cni_path(&ours),
    };
    let run = a.run("ADD", &conf);
    assert_eq!(run.exit, Some(1), "{run:#?}");
    let e = run.json();
    assert_eq!(
        e["code"], 11,
        "our code reaches the runtime through macvlan: {run:#?}"
    );
    assert!(e["msg"].as_str().unwrap().contains("webhook"), "{e}");
    // As a runtime does after a failed ADD: DEL, which succeeds and leaves no interface (Debian's
    // macvlan 1.1.1 keeps its link after an IPAM failure until DEL).
    let del = a.run("DEL", &conf);
    assert_eq!(del.exit, Some(0), "{del:#?}");
    assert!(!ns.has_link("net1"));
}
