//! The node simulator on a real control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler): two nodes registered as their kubelets (Node authorizer and NodeRestriction
//! apply), kept Ready by their heartbeats, Pods placed by the real scheduler and started with
//! real CNI plugins (bridge + host-local on `eth0`, a macvlan NetworkAttachmentDefinition on
//! `net1`) inside the nodes' own network namespaces, a Pod whose sandbox cannot be made
//! (Events, retries), and every Pod deleted with nothing left behind.
//!
//! Needs root and `ip` (network namespaces), Debian's CNI plugins in `/usr/lib/cni`, and the
//! control plane's binaries (`hack/kube-build.sh` builds them on first use).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aipam_e2e::controlplane::ControlPlane;
use aipam_e2e::node::{pod_netns_name, NodeSim, NodeSimOptions, NodeSpec};
use aipam_e2e::{wait_for, Error, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use serde_json::{json, Value};

const NS: &str = "default";

fn io(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        what: what.to_string(),
        source,
    }
}

/// A random suffix, so that node names (and their namespaces) are unique per run.
fn suffix() -> Result<String> {
    let mut bytes = [0u8; 4];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(io("opening /dev/urandom"))?,
        &mut bytes,
    )
    .map_err(io("reading /dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn netns_list() -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map_err(io("ip netns list"))?;
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn addresses_in(netns: &str, dev: &str) -> Result<String> {
    let out = Command::new("ip")
        .args(["-n", netns, "-o", "addr", "show", "dev", dev])
        .output()
        .map_err(io("ip addr"))?;
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn failed(what: impl Into<String>) -> Error {
    Error::Manifest {
        what: "node simulator test".to_string(),
        problem: what.into(),
    }
}

fn check(ok: bool, what: impl Into<String>) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(failed(what))
    }
}

fn host_local(subnet: &str, data_dir: &Path) -> Value {
    json!({"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": data_dir.display().to_string()})
}

fn pod(name: &str, host_network: bool, networks: Option<&str>) -> Result<Pod> {
    let mut v = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "hostNetwork": host_network,
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
            "terminationGracePeriodSeconds": 30,
        },
    });
    if let Some(n) = networks {
        v["metadata"]["annotations"] = json!({"k8s.v1.cni.cncf.io/networks": n});
    }
    serde_json::from_value(v).map_err(|e| failed(e.to_string()))
}

async fn install_nad_crd(admin: &kube::Client) -> Result<()> {
    let path = aipam_e2e::repo().join("e2e/fixtures/00-network-attachment-definition-crd.yaml");
    let text = std::fs::read_to_string(&path).map_err(io("reading the NAD CRD"))?;
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&text).map_err(|e| failed(format!("NAD CRD: {e}")))?;
    let api: Api<CustomResourceDefinition> = Api::all(admin.clone());
    api.create(&PostParams::default(), &crd).await?;
    let name = crd.metadata.name.clone().unwrap_or_default();
    wait_for(
        "the NAD CRD to be Established",
        Duration::from_secs(60),
        || {
            let (api, name) = (api.clone(), name.clone());
            async move {
                let c = api.get(&name).await.ok()?;
                c.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        },
    )
    .await
}

async fn create_nad(admin: &kube::Client, name: &str, config: &Value) -> Result<()> {
    let gvk = GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "network-attachment-definitions");
    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), NS, &ar);
    let nad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"config": config.to_string()},
    }))
    .map_err(|e| failed(e.to_string()))?;
    // Creating a resource of a just-established CRD can briefly 404.
    wait_for(
        "the NetworkAttachmentDefinition",
        Duration::from_secs(30),
        || {
            let (api, nad) = (api.clone(), nad.clone());
            async move {
                api.create(&PostParams::default(), &nad)
                    .await
                    .ok()
                    .map(|_| ())
            }
        },
    )
    .await
}

/// Waits until the Pod is Running with Pod IPs; returns it.
async fn running(api: &Api<Pod>, name: &str) -> Result<Pod> {
    wait_for(
        &format!("Pod {name} Running"),
        Duration::from_secs(90),
        || async move {
            let p = api.get(name).await.ok()?;
            let s = p.status.as_ref()?;
            (s.phase.as_deref() == Some("Running")
                && s.pod_ips.as_ref().is_some_and(|i| !i.is_empty()))
            .then_some(p.clone())
        },
    )
    .await
}

fn pod_ip(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

struct Fixture {
    _dir: tempfile::TempDir,
    cp: ControlPlane,
    admin: kube::Client,
    sim: NodeSim,
    cache: PathBuf,
    data: PathBuf,
    nodes: Vec<String>,
}

async fn fixture() -> Result<Fixture> {
    let dir = tempfile::tempdir().map_err(io("temp dir"))?;
    let cp = ControlPlane::start(&dir.path().join("cp")).await?;
    let admin = cp.admin_client().await?;
    let sfx = suffix()?;
    let nodes = vec![format!("sim-a-{sfx}"), format!("sim-b-{sfx}")];
    let mut clients = HashMap::new();
    for n in &nodes {
        let c = cp
            .client_for_user(&format!("system:node:{n}"), &["system:nodes"])
            .await?;
        clients.insert(n.clone(), c);
    }
    let fallback = admin.clone();
    let cache = dir.path().join("cni-cache");
    let data = dir.path().join("host-local");
    let primary = json!({
        "cniVersion": "1.0.0",
        "name": "aipam-test",
        "plugins": [{"type": "bridge", "bridge": "aipam0", "ipam": host_local("10.99.0.0/24", &data)}],
    });
    let sim = NodeSim::start(
        admin.clone(),
        move |n| clients.get(n).cloned().unwrap_or_else(|| fallback.clone()),
        NodeSimOptions {
            nodes: nodes
                .iter()
                .map(|n| NodeSpec {
                    name: n.clone(),
                    labels: [("topology.kubernetes.io/zone".to_string(), "z1".to_string())].into(),
                    primary_network: None,
                })
                .collect(),
            primary_network: primary,
            cni_kubeconfig: dir.path().join("unused-kubeconfig"),
            plugin_dirs: vec![PathBuf::from("/usr/lib/cni")],
            cache_dir: cache.clone(),
        },
    )
    .await?;
    Ok(Fixture {
        _dir: dir,
        cp,
        admin,
        sim,
        cache,
        data,
        nodes,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_nodes_run_pods_through_cni_and_finish_their_deletion() -> Result<()> {
    let f = fixture().await?;
    let outcome = scenario(&f).await;
    if outcome.is_err() {
        use aipam_e2e::controlplane::Component;
        for c in [
            Component::ApiServer,
            Component::ControllerManager,
            Component::Scheduler,
        ] {
            eprintln!("--- {} ---\n{}", c.name(), f.cp.log_tail(c, 30));
        }
    }
    let node_netns: Vec<String> = f.nodes.iter().filter_map(|n| f.sim.node_netns(n)).collect();
    let Fixture { sim, cp, .. } = f;
    sim.stop().await;
    cp.stop();
    outcome?;
    let left = netns_list()?;
    for ns in node_netns {
        check(
            !left.contains(&ns),
            format!("node netns {ns} left after stop: {left}"),
        )?;
    }
    Ok(())
}

async fn scenario(f: &Fixture) -> Result<()> {
    f.sim.wait_ready(Duration::from_secs(90)).await?;
    let first_beat = heartbeat_times(f).await?;
    install_nad_crd(&f.admin).await?;
    // The master names an interface the node namespace lacks: the simulator uses its eth0.
    let macvlan = json!({
        "cniVersion": "1.0.0",
        "name": "macvlan-net",
        "type": "macvlan",
        "master": "ens5",
        "mode": "bridge",
        "ipam": host_local("10.98.0.0/24", &f.data),
    });
    create_nad(&f.admin, "macvlan-net", &macvlan).await?;

    let pods: Api<Pod> = Api::namespaced(f.admin.clone(), NS);
    let pp = PostParams::default();
    pods.create(&pp, &pod("host", true, None)?).await?;
    pods.create(&pp, &pod("bridged", false, None)?).await?;
    pods.create(&pp, &pod("multi", false, Some("macvlan-net"))?)
        .await?;
    pods.create(&pp, &pod("broken", false, Some("no-such-net"))?)
        .await?;

    // hostNetwork: the node's address, no CNI.
    let host = running(&pods, "host").await?;
    let node = node_of(&host);
    check(f.nodes.contains(&node), format!("host scheduled on {node}"))?;
    check(
        Some(pod_ip(&host)) == f.sim.node_ip(&node),
        format!("host Pod IP {} is not its node's", pod_ip(&host)),
    )?;
    check(
        f.sim.interfaces(NS, "host").is_none(),
        "hostNetwork Pod got interfaces",
    )?;

    // Bridge + host-local on eth0, inside the Pod's namespace.
    let bridged = running(&pods, "bridged").await?;
    let ip = pod_ip(&bridged);
    check(ip.starts_with("10.99.0."), format!("bridged Pod IP {ip}"))?;
    let netns = pod_netns_name(&uid(&bridged));
    let addrs = addresses_in(&netns, "eth0")?;
    check(
        addrs.contains(&format!("{ip}/24")),
        format!("{netns} eth0: {addrs}"),
    )?;
    let ifaces = f
        .sim
        .interfaces(NS, "bridged")
        .ok_or_else(|| failed("no interfaces for bridged"))?;
    check(
        ifaces.len() == 1
            && ifaces[0].ifname == "eth0"
            && ifaces[0].ips == vec![format!("{ip}/24")],
        format!("bridged interfaces: {ifaces:?}"),
    )?;
    let status = bridged.status.clone().unwrap_or_default();
    check(
        status.host_ip == f.sim.node_ip(&node_of(&bridged)),
        "bridged hostIP",
    )?;
    let ready = status
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    check(ready, "bridged not Ready")?;

    // eth0 and a macvlan net1 from the NetworkAttachmentDefinition.
    let multi = running(&pods, "multi").await?;
    let ifaces = f
        .sim
        .interfaces(NS, "multi")
        .ok_or_else(|| failed("no interfaces for multi"))?;
    let names: Vec<&str> = ifaces.iter().map(|i| i.ifname.as_str()).collect();
    check(
        names == ["eth0", "net1"],
        format!("multi interfaces: {ifaces:?}"),
    )?;
    check(ifaces[1].network == "macvlan-net", "net1's network")?;
    let net1 = ifaces[1].ips.first().cloned().unwrap_or_default();
    check(net1.starts_with("10.98.0."), format!("net1 address {net1}"))?;
    let addrs = addresses_in(&pod_netns_name(&uid(&multi)), "net1")?;
    check(addrs.contains(&net1), format!("multi net1: {addrs}"))?;
    check(
        pod_ip(&multi).starts_with("10.99.0."),
        "multi's Pod IP is eth0's",
    )?;
    let cached = files_in(&f.cache.join("results"));
    check(cached.len() == 3, format!("cache files: {cached:?}"))?;
    check(
        cached
            .iter()
            .any(|c| c.starts_with("macvlan-net-") && c.ends_with("-net1")),
        format!("cache files: {cached:?}"),
    )?;

    // A network that does not exist: Warning Events, the error kept, retries with backoff.
    let events: Api<Event> = Api::namespaced(f.admin.clone(), NS);
    let lp = ListParams::default().fields("involvedObject.name=broken");
    let failures = wait_for(
        "FailedCreatePodSandBox events",
        Duration::from_secs(30),
        || {
            let (events, lp) = (events.clone(), lp.clone());
            async move {
                let list = events.list(&lp).await.ok()?.items;
                let failures: Vec<Event> = list
                    .into_iter()
                    .filter(|e| e.reason.as_deref() == Some("FailedCreatePodSandBox"))
                    .collect();
                (failures.len() >= 2).then_some(failures)
            }
        },
    )
    .await?;
    let message = failures[0].message.clone().unwrap_or_default();
    check(
        message.contains("no-such-net"),
        format!("event message: {message}"),
    )?;
    check(
        failures[0].type_.as_deref() == Some("Warning"),
        "event type",
    )?;
    let last = f.sim.last_error(NS, "broken").unwrap_or_default();
    check(last.contains("no-such-net"), format!("last error: {last}"))?;
    let counters = f.sim.counters();
    check(
        counters.adds_ok == 2 && counters.adds_failed >= 2 && counters.running == 3,
        format!("counters: {counters:?}"),
    )?;

    // Graceful deletion: the simulator tears down and makes kubelet's final delete.
    // Force-deleted (gone at once, no graceful phase): torn down all the same.
    pods.create(&pp, &pod("forced", false, None)?).await?;
    let forced = uid(&running(&pods, "forced").await?);
    let force = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    pods.delete("forced", &force).await?;
    let forced_netns = pod_netns_name(&forced);
    wait_for(
        "the forced Pod's namespace removed",
        Duration::from_secs(30),
        || {
            let gone = netns_list().is_ok_and(|l| !l.contains(&forced_netns));
            async move { gone.then_some(()) }
        },
    )
    .await?;

    let uids: Vec<String> = [&bridged, &multi]
        .iter()
        .map(|p| uid(p))
        .chain([forced])
        .collect();
    for name in ["host", "bridged", "multi", "broken"] {
        pods.delete(name, &DeleteParams::default()).await?;
    }
    wait_for("every Pod gone", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        }
    })
    .await?;
    let left = netns_list()?;
    for u in &uids {
        let ns = pod_netns_name(u);
        check(!left.contains(&ns), format!("{ns} left: {left}"))?;
    }
    let mine = f.sim.netns_names();
    check(
        mine.iter().all(|n| n.starts_with("aipam-n-")) && mine.len() == 2,
        format!("simulator namespaces after deletion: {mine:?}"),
    )?;
    let cached = files_in(&f.cache.join("results"));
    check(cached.is_empty(), format!("cache files left: {cached:?}"))?;
    for net in ["aipam-test", "macvlan-net"] {
        let held: Vec<String> = files_in(&f.data.join(net))
            .into_iter()
            .filter(|n| n.starts_with("10."))
            .collect();
        check(
            held.is_empty(),
            format!("host-local {net} still holds {held:?}"),
        )?;
    }
    let counters = f.sim.counters();
    check(
        counters.dels == 3 && counters.running == 0,
        format!("counters after deletion: {counters:?}"),
    )?;
    heartbeats_go_on(f, first_beat).await
}

/// The first node's Lease renewTime and Ready lastHeartbeatTime.
async fn heartbeat_times(f: &Fixture) -> Result<(Timestamp, Timestamp)> {
    let leases: Api<Lease> = Api::namespaced(f.admin.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(f.admin.clone());
    for n in &f.nodes {
        let lease = leases.get(n).await?;
        let spec = lease.spec.unwrap_or_default();
        check(
            spec.holder_identity.as_deref() == Some(n.as_str())
                && spec.lease_duration_seconds == Some(40),
            format!("lease of {n}: {spec:?}"),
        )?;
    }
    let renew = leases
        .get(&f.nodes[0])
        .await?
        .spec
        .and_then(|s| s.renew_time)
        .map(|t| t.0)
        .ok_or_else(|| failed("no renewTime"))?;
    let beat = ready_heartbeat(&nodes.get(&f.nodes[0]).await?)
        .ok_or_else(|| failed("no Ready heartbeat"))?;
    Ok((renew, beat))
}

fn ready_heartbeat(node: &Node) -> Option<Timestamp> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0)
}

/// The Lease is renewed (every 10 s) and the Ready condition refreshed (every 20 s), and the
/// node lifecycle controller leaves the nodes untainted.
async fn heartbeats_go_on(f: &Fixture, (renew, beat): (Timestamp, Timestamp)) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(f.admin.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(f.admin.clone());
    let name = f.nodes[0].clone();
    wait_for("the Lease renewed", Duration::from_secs(25), || {
        let (leases, name) = (leases.clone(), name.clone());
        async move {
            let t = leases.get(&name).await.ok()?.spec?.renew_time?.0;
            (t > renew).then_some(())
        }
    })
    .await?;
    wait_for(
        "the Ready condition refreshed",
        Duration::from_secs(35),
        || {
            let (nodes, name) = (nodes.clone(), name.clone());
            async move {
                let t = ready_heartbeat(&nodes.get(&name).await.ok()?)?;
                (t > beat).then_some(())
            }
        },
    )
    .await?;
    f.sim.wait_ready(Duration::from_secs(5)).await
}
