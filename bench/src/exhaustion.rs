//! Issue 15, item 2: a pool one address short of a Deployment's replicas, for each IPAM on a
//! fresh real control plane with one simulated node. What the user sees and how fast: ours
//! refuses the last Pod's create (the ReplicaSet's `FailedCreate` event carries the reason);
//! the peers let it be created and its sandbox fails (`FailedCreatePodSandBox`, retried by the
//! node). Then the Deployment is deleted and what is still held is counted.

use std::time::{Duration, Instant};

use aipam_e2e::peers::{addresses_held, AddressRange, Ipam};
use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{json, Value};

use crate::common::{json_line, r3, table};
use crate::running::{deployment, start, Peer};

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Replicas; the pool holds one address fewer.
    pub replicas: usize,
    /// How long to wait for the failure to show.
    pub deadline: Duration,
}

const SUBNET: &str = "10.61.0.0/24";

/// The peers, each with a range of `addresses` addresses (10.61.0.10 on).
fn peers(addresses: usize) -> Vec<Peer> {
    let range = AddressRange {
        subnet: SUBNET.to_string(),
        first: Some("10.61.0.10".to_string()),
        last: Some(format!("10.61.0.{}", 9 + addresses)),
    };
    vec![
        Peer {
            ipam: Ipam::HostLocal(vec![range.clone()]),
            webhook_replicas: 0,
        },
        Peer {
            ipam: Ipam::Ours,
            webhook_replicas: 1,
        },
        Peer {
            ipam: Ipam::Whereabouts(range),
            webhook_replicas: 0,
        },
    ]
}

/// The first Warning Event in `ns` with one of `reasons`: (reason, message).
async fn first_warning(events: &Api<Event>, reasons: &[&str]) -> Option<(String, String)> {
    let list = events.list(&ListParams::default()).await.ok()?.items;
    list.into_iter().find_map(|e| {
        let reason = e.reason.clone().unwrap_or_default();
        reasons
            .contains(&reason.as_str())
            .then(|| (reason, e.message.clone().unwrap_or_default()))
    })
}

async fn one(peer: &Peer, sizes: &Sizes) -> Result<Value> {
    let ns = "bench-exhaustion";
    let addresses = sizes.replicas - 1;
    let range = format!("10.61.0.10-10.61.0.{}", 9 + addresses);
    let env = start(peer, ns, 1, (SUBNET, &range)).await?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let events: Api<Event> = Api::namespaced(env.client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), ns);
    let begin = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment(ns, 0, sizes.replicas))
        .await?;
    let mut seen = None;
    let mut running = 0;
    let mut created = 0;
    while begin.elapsed() < sizes.deadline {
        if seen.is_none() {
            seen = first_warning(&events, &["FailedCreate", "FailedCreatePodSandBox"])
                .await
                .map(|w| (w, begin.elapsed()));
        }
        let list = pods.list(&ListParams::default()).await?.items;
        created = list.len();
        running = list
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        if seen.is_some() && running == addresses {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stuck = created.saturating_sub(running);
    let held = addresses_held(&env).await?.len();
    deployments
        .delete("run-0", &DeleteParams::background())
        .await?;
    let gone = Instant::now();
    let mut leaked = usize::MAX;
    while gone.elapsed() < Duration::from_secs(120) {
        let left = pods.list(&ListParams::default()).await?.items.len();
        leaked = addresses_held(&env).await?.len();
        if left == 0 && leaked == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let failed_adds = env.nodes().map_or(0, |n| n.counters().adds_failed);
    env.stop().await;
    let ((reason, message), after) = seen
        .map(|(w, t)| (w, Some(t)))
        .unwrap_or_else(|| (("none".to_string(), String::new()), None));
    Ok(json!({
        "ipam": peer.label(), "replicas": sizes.replicas, "addresses": addresses,
        "running": running, "created": created, "stuck_pods": stuck,
        "what_the_user_sees": reason, "message": message,
        "seconds_to_see_it": after.map(|d| r3(d.as_secs_f64())),
        "failed_cni_adds": failed_adds, "held_at_full": held, "held_after_delete": leaked,
    }))
}

/// The part of an event message that says what went wrong (the runtime's and the API server's
/// prefixes dropped), at most 120 characters.
fn short(message: &str) -> String {
    let tail = ["failed (add): ", "denied the request: "]
        .iter()
        .find_map(|p| message.split_once(p).map(|(_, t)| t))
        .unwrap_or(message);
    if tail.chars().count() > 120 {
        format!("{}…", tail.chars().take(120).collect::<String>())
    } else {
        tail.to_string()
    }
}

pub async fn run(sizes: Sizes) -> Result<Value> {
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for peer in peers(sizes.replicas - 1) {
        let r = one(&peer, &sizes).await?;
        let f = |p: &str| r.pointer(p).cloned().unwrap_or(Value::Null);
        let message = short(f("/message").as_str().unwrap_or(""));
        rows.push(vec![
            peer.label(),
            format!(
                "{}/{} Running, {} created",
                f("/running"),
                f("/replicas"),
                f("/created")
            ),
            f("/what_the_user_sees").as_str().unwrap_or("").to_string(),
            match f("/seconds_to_see_it").as_f64() {
                Some(s) => format!("{s:.2} s"),
                None => "never".to_string(),
            },
            f("/failed_cni_adds").to_string(),
            f("/held_after_delete").to_string(),
            message,
        ]);
        out.push(r);
    }
    table(
        &format!(
            "exhaustion: a Deployment of {} replicas, a pool of {} addresses, one simulated node",
            sizes.replicas,
            sizes.replicas - 1
        ),
        &[
            "IPAM",
            "Pods",
            "the user sees",
            "after",
            "failed CNI ADDs",
            "held after delete",
            "message",
        ],
        &rows,
    );
    let v = json!({"replicas": sizes.replicas, "rows": out});
    json_line("exhaustion", v.clone());
    Ok(v)
}
