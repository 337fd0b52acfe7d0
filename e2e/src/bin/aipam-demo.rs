//! The local demo: a real control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler), simulated nodes, the webhook and the operator as processes, the sample
//! manifests applied, Pods made by the real controllers and admitted (or refused), placed by
//! the real scheduler, their networks set up by the nodes with the real `bridge` plugin and our
//! `spiderpool` IPAM binary, then printed as `kubectl get` shows them. Leaves nothing running.
//! `E2E_API=stand-in` runs it on the API stand-in instead (the harness plays the controllers,
//! the scheduler and the CNI runtime).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aipam_core::reservation::{Reservation, ANNO_RESERVATION};
use aipam_crds::{SpiderEndpoint, SpiderIPClaim, SpiderIPPool};
use aipam_e2e::cni::{self, CniOutcome};
use aipam_e2e::env::{describe, yaml_docs};
use aipam_e2e::kubectl::kubectl;
use aipam_e2e::sim::{run_workload, schedule, wait_running};
use aipam_e2e::{repo, wait_for, Env, Options};
use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::Value;

const INFRA_ORDER: &[&str] = &[
    "Namespace",
    "Node",
    "ConfigMap",
    "NetworkAttachmentDefinition",
    "SpiderReservedIP",
    "SpiderSubnet",
    "SpiderIPPool",
];

fn sample_docs() -> Result<Vec<Value>> {
    let mut files = Vec::new();
    for scenario in ["zones", "priorities"] {
        let dir = repo().join("config/samples").join(scenario);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        entries.sort();
        files.extend(entries);
    }
    let mut docs = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        docs.extend(yaml_docs(&f.display().to_string(), &text)?);
    }
    Ok(docs)
}

fn show(kubeconfig: &Path, title: &str, args: &[&str]) {
    println!("\n$ kubectl {}    # {title}", args.join(" "));
    match kubectl(kubeconfig, args) {
        Some(Ok(out)) => print!("{out}"),
        Some(Err(err)) => print!("(kubectl failed: {err})"),
        None => println!(
            "(kubectl is not installed; KUBECONFIG={})",
            kubeconfig.display()
        ),
    }
}

/// Waits until the webhook's cache has every pool: a dry-run Pod naming a pool is no longer
/// refused for "no SpiderIPPool of that name exists".
async fn wait_pools_visible(env: &Env, pools: &[String]) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    for pool in pools {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"generateName": "probe-", "annotations": {
                "ipam.spidernet.io/ippool": format!("{{\"ipv4\": [\"{pool}\"], \"ipv6\": [\"{pool}\"]}}")}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}
        }))?;
        let pp = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        wait_for(
            &format!("the webhook to see pool {pool}"),
            Duration::from_secs(20),
            || {
                let api = api.clone();
                let pod = pod.clone();
                let pp = pp.clone();
                async move {
                    match api.create(&pp, &pod).await {
                        Err(kube::Error::Api(e))
                            if e.message.contains("no SpiderIPPool of that name exists") =>
                        {
                            None
                        }
                        _ => Some(()),
                    }
                }
            },
        )
        .await?;
    }
    Ok(())
}

/// Waits until the operator's batched counters agree with the claims of every pool.
async fn wait_counted(env: &Env, pools: &[String]) -> Result<()> {
    let claims: Api<SpiderIPClaim> = Api::all(env.client.clone());
    let api: Api<SpiderIPPool> = Api::all(env.client.clone());
    wait_for(
        "the operator's pool counters",
        Duration::from_secs(20),
        || {
            let claims = claims.clone();
            let api = api.clone();
            async move {
                let held = claims.list(&ListParams::default()).await.ok()?.items;
                for name in pools {
                    let pool = api.get(name).await.ok()?;
                    let want = held.iter().filter(|c| c.spec.pool == *name).count() as i64;
                    let status = pool.status?;
                    (status.allocated_ip_count == Some(want) && status.total_ip_count.is_some())
                        .then_some(())?;
                }
                Some(())
            }
        },
    )
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    if aipam_e2e::env::use_stand_in() {
        println!("aipam local demo: API stand-in + aipam-webhook + aipam-operator + the spiderpool CNI binary");
    } else {
        println!("aipam local demo: a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler; built on first use, about 10 minutes) + simulated nodes + aipam-webhook + aipam-operator + the spiderpool CNI binary under the bridge plugin");
    }
    let env = Env::start(Options::default()).await.context(
        "starting the environment (build the binaries first: cargo build --workspace --bins)",
    )?;
    let result = run(&env).await;
    if result.is_err() {
        eprintln!("--- aipam-webhook log ---\n{}", env.log("aipam-webhook"));
        eprintln!("--- aipam-operator log ---\n{}", env.log("aipam-operator"));
    }
    env.stop().await;
    result
}

async fn run(env: &Env) -> Result<()> {
    let docs = sample_docs()?;
    println!(
        "\n== 1. Pools, namespaces, nodes and networks from config/samples (through the webhook)"
    );
    let mut pools = Vec::new();
    for kind in INFRA_ORDER {
        for d in docs
            .iter()
            .filter(|d| d.get("kind").and_then(Value::as_str) == Some(kind))
        {
            env.apply(d)
                .await
                .with_context(|| format!("applying {}", describe(d)))?;
            println!("   created {}", describe(d));
            if *kind == "SpiderIPPool" {
                pools.push(
                    d.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                );
            }
        }
    }
    wait_pools_visible(env, &pools).await?;

    println!("\n== 2. Workloads: Pods admitted by the webhook (addresses reserved now) or refused");
    let mut admitted: Vec<Pod> = Vec::new();
    for d in docs.iter().filter(|d| {
        matches!(
            d.get("kind").and_then(Value::as_str),
            Some("Pod" | "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job")
        )
    }) {
        for outcome in run_workload(env, d).await? {
            match outcome.result {
                Ok(pod) => {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let reserved = pod
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(ANNO_RESERVATION))
                        .and_then(|r| Reservation::parse(r).ok())
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "nothing reserved".to_string());
                    println!(
                        "   admitted {}/{name} ({}): {reserved}",
                        outcome.namespace, outcome.workload
                    );
                    admitted.push(pod);
                }
                Err(msg) => println!(
                    "   REFUSED  a Pod of {} in {}:\n            {}",
                    outcome.workload,
                    outcome.namespace,
                    msg.replace('\n', "\n            ")
                ),
            }
        }
    }

    println!("\n== 3. Scheduling (the Pod's required node affinity holds it to its zones' nodes)");
    let mut spread: BTreeMap<String, usize> = BTreeMap::new();
    for pod in &admitted {
        let key = pod
            .metadata
            .owner_references
            .as_ref()
            .and_then(|o| o.first())
            .map(|o| o.name.clone())
            .unwrap_or_default();
        let n = spread.entry(key).or_default();
        let node = schedule(env, pod, *n).await?;
        *n += 1;
        let name = pod.metadata.name.clone().unwrap_or_default();
        match node {
            Some(node) => println!(
                "   {}/{name} -> {node}",
                pod.metadata.namespace.clone().unwrap_or_default()
            ),
            None => println!(
                "   {}/{name}: no node admits it",
                pod.metadata.namespace.clone().unwrap_or_default()
            ),
        }
    }

    if env.nodes().is_some() {
        println!("\n== 4. The nodes run CNI ADD: the bridge plugin, with the spiderpool IPAM binary reading the SpiderEndpoint");
        running_pods(env, &admitted).await?;
    } else {
        println!(
            "\n== 4. CNI ADD through the real spiderpool binary (it reads the SpiderEndpoint)"
        );
        read_back(env, &admitted).await?;
    }
    finish(env, &pools, &admitted).await
}

/// Waits for each Pod to be Running (its node ran the CNI chain) and prints what each
/// interface got, then the addresses inside one Pod's network namespace.
async fn running_pods(env: &Env, admitted: &[Pod]) -> Result<()> {
    let Some(nodes) = env.nodes() else {
        return Ok(());
    };
    for pod in admitted {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let running = wait_running(env, pod, Duration::from_secs(60)).await?;
        let node = running
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        for i in nodes.interfaces(&ns, &name).unwrap_or_default() {
            let gw: Vec<&str> = i.result["ips"]
                .as_array()
                .map(|a| a.iter().filter_map(|ip| ip["gateway"].as_str()).collect())
                .unwrap_or_default();
            println!(
                "   {ns}/{name} on {node}, {} ({}): {} gw {}",
                i.ifname,
                i.network,
                i.ips.join(", "),
                if gw.is_empty() {
                    "-".to_string()
                } else {
                    gw.join(", ")
                }
            );
        }
    }
    if let Some(pod) = admitted.first() {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let netns = aipam_e2e::node::pod_netns_name(&uid);
        println!(
            "\n$ ip netns exec {netns} ip -brief address    # inside {}",
            pod.metadata.name.clone().unwrap_or_default()
        );
        match std::process::Command::new("ip")
            .args(["netns", "exec", &netns, "ip", "-brief", "address"])
            .output()
        {
            Ok(o) => print!("{}", String::from_utf8_lossy(&o.stdout)),
            Err(e) => println!("(ip failed: {e})"),
        }
    }
    Ok(())
}

/// Runs the CNI binary's ADD for each interface of each Pod, as a runtime would (stand-in).
async fn read_back(env: &Env, admitted: &[Pod]) -> Result<()> {
    for pod in admitted {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let eps: Api<SpiderEndpoint> = Api::namespaced(env.client.clone(), &ns);
        // The operator fills the endpoint once the Pod is bound (late binding for zone pools).
        let ep = wait_for(
            &format!("the SpiderEndpoint of {ns}/{name}"),
            Duration::from_secs(30),
            || {
                let eps = eps.clone();
                let name = name.clone();
                let uid = uid.clone();
                async move {
                    let ep = eps.get_opt(&name).await.ok()??;
                    let cur = &ep.status.as_ref()?.current;
                    (cur.uid == uid && !cur.ips.is_empty()).then_some(ep)
                }
            },
        )
        .await?;
        for ifname in ep
            .status
            .iter()
            .flat_map(|s| s.current.ips.iter().map(|i| i.nic.clone()))
        {
            match cni::run(env, "ADD", &ns, &name, &uid, &ifname)? {
                CniOutcome::Ok(v) => {
                    let ips: Vec<String> = v["ips"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|ip| {
                                    format!(
                                        "{} gw {}",
                                        ip["address"].as_str().unwrap_or("?"),
                                        ip["gateway"].as_str().unwrap_or("-")
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let routes = v["routes"].as_array().map(Vec::len).unwrap_or(0);
                    println!(
                        "   {ns}/{name} {ifname}: {} ({routes} route(s))",
                        ips.join(", ")
                    );
                }
                CniOutcome::Err(e) => bail!("CNI ADD for {ns}/{name} {ifname} failed: {e}"),
            }
        }
    }

    Ok(())
}

async fn finish(env: &Env, pools: &[String], admitted: &[Pod]) -> Result<()> {
    wait_counted(env, pools).await?;
    show(
        &env.kubeconfig,
        "pools, counted by the operator",
        &["get", "spiderippool"],
    );
    show(
        &env.kubeconfig,
        "what each Pod holds",
        &["get", "spiderendpoint", "-A"],
    );
    show(
        &env.kubeconfig,
        "one claim per reserved address",
        &["get", "spideripclaims"],
    );

    println!("\n== 5. Release: deleting a Pod returns its addresses to the pool");
    if let Some(pod) = admitted.iter().find(|p| {
        p.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|r| r.kind == "ReplicaSet"))
    }) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        // Its claims carry the reservation id of its record.
        let id = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNO_RESERVATION))
            .and_then(|v| Reservation::parse(v).ok())
            .map(|r| r.id)
            .with_context(|| format!("{ns}/{name} has no reservation record"))?;
        let api: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
        // Graceful on a real control plane: the node runs CNI DEL, then removes the Pod.
        let dp = if env.has_controllers() {
            DeleteParams::default()
        } else {
            DeleteParams::default().grace_period(0)
        };
        api.delete(&name, &dp).await?;
        let claims: Api<SpiderIPClaim> = Api::all(env.client.clone());
        wait_for(
            &format!("the claims of {ns}/{name} to be released"),
            Duration::from_secs(30),
            || {
                let claims = claims.clone();
                let id = id.clone();
                async move {
                    let list = claims.list(&ListParams::default()).await.ok()?;
                    (!list.items.iter().any(|c| c.spec.reservation == id)).then_some(())
                }
            },
        )
        .await?;
        println!("   deleted {ns}/{name}; its claims are gone");
        wait_counted(env, pools).await?;
        show(
            &env.kubeconfig,
            "counts after the release",
            &["get", "spiderippool"],
        );
    }
    println!("\nDone: everything stopped, nothing left running.");
    Ok(())
}
