//! The invariants an IPAM must keep, checked against what the API holds (the chaos scenarios'
//! checkpoints):
//! - no address is held by two live Pods (their SpiderEndpoints and their reservation records);
//! - every live Pod holds exactly its reservations: the claims of its record's id are the
//!   record's addresses; once scheduled, its SpiderEndpoint is its UID, node and record;
//! - after the grace period no claim is left without its Pod (a StatefulSet keeping the address
//!   of an ordinal it still wants excepted);
//! - every pool's `allocatedIPCount` equals its claims.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aipam_core::reservation::{Reservation, ANNO_RESERVATION};
use aipam_crds::{SpiderEndpoint, SpiderIPClaim, SpiderIPPool};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams};
use kube::ResourceExt;
use serde_json::Value;

use crate::Env;

/// What a check found.
#[derive(Default, Debug)]
pub struct Findings {
    /// Addresses held by two live Pods (their records or their SpiderEndpoints).
    pub duplicates: Vec<String>,
    /// Live Pods whose claims, record and endpoint disagree.
    pub mismatches: Vec<String>,
    /// Claims without a Pod (after the grace period: leaks).
    pub leaks: Vec<String>,
    /// Pools whose `allocatedIPCount` differs from their claims (or a listing that failed).
    pub counts: Vec<String>,
}

impl Findings {
    /// Nothing found.
    pub fn is_clean(&self) -> bool {
        self.duplicates.is_empty()
            && self.mismatches.is_empty()
            && self.leaks.is_empty()
            && self.counts.is_empty()
    }
}

/// The objects the invariants are about: the Pods, endpoints and StatefulSets of `ns`, every
/// claim and pool.
#[allow(clippy::type_complexity)]
pub async fn list_all(
    client: &kube::Client,
    ns: &str,
) -> Option<(
    Vec<Pod>,
    Vec<SpiderIPClaim>,
    Vec<SpiderEndpoint>,
    Vec<SpiderIPPool>,
    Vec<DynamicObject>,
)> {
    let lp = ListParams::default();
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .ok()?
        .items;
    let claims = Api::<SpiderIPClaim>::all(client.clone())
        .list(&lp)
        .await
        .ok()?
        .items;
    let eps = Api::<SpiderEndpoint>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .ok()?
        .items;
    let pools = Api::<SpiderIPPool>::all(client.clone())
        .list(&lp)
        .await
        .ok()?
        .items;
    let sts_ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("apps", "v1", "StatefulSet"),
        "statefulsets",
    );
    let sets = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &sts_ar)
        .list(&lp)
        .await
        .ok()?
        .items;
    Some((pods, claims, eps, pools, sets))
}

/// Checks every invariant once for the Pods of `ns` (every claim of the cluster is expected to
/// be theirs). `settled`: the grace period has passed since the churn stopped, so claims
/// without a Pod are leaks.
pub async fn check(client: &kube::Client, ns: &str, settled: bool) -> Findings {
    let mut f = Findings::default();
    let Some((pods, claims, eps, pools, sets)) = list_all(client, ns).await else {
        f.counts.push("listing failed".to_string());
        return f;
    };
    let mut holders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut recorded: BTreeSet<String> = BTreeSet::new();
    for p in &pods {
        let name = p.name_any();
        let uid = p.uid().unwrap_or_default();
        let Some(rec) = p
            .annotations()
            .get(ANNO_RESERVATION)
            .and_then(|a| Reservation::parse(a).ok())
        else {
            f.mismatches
                .push(format!("Pod {name} has no reservation record"));
            continue;
        };
        // The id is what binds claims to the Pod: no two Pods may carry the same one.
        if !recorded.insert(rec.id.clone()) {
            f.mismatches.push(format!(
                "Pod {name} {uid}: reservation {} is carried by another Pod too",
                rec.id
            ));
        }
        for a in rec.addresses() {
            holders
                .entry(a.address.to_string())
                .or_default()
                .insert(format!("{name} (record)"));
        }
        let want: BTreeSet<String> = rec.claim_names().into_iter().collect();
        let have: BTreeSet<String> = claims
            .iter()
            .filter(|c| c.spec.reservation == rec.id)
            .map(|c| c.name_any())
            .collect();
        if want != have {
            f.mismatches
                .push(format!("Pod {name}: record {want:?}, claims {have:?}"));
        }
        for c in claims.iter().filter(|c| c.spec.reservation == rec.id) {
            if c.spec.namespace != ns {
                f.mismatches.push(format!(
                    "Pod {name} {uid}: claim {} is for namespace {}",
                    c.name_any(),
                    c.spec.namespace
                ));
            }
        }
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        if let Some(node) = node {
            if rec.is_provisional() {
                f.mismatches.push(format!(
                    "Pod {name} on {node}: record still provisional {rec}"
                ));
            }
            let cur = eps
                .iter()
                .find(|e| e.name_any() == name)
                .and_then(|e| e.status.as_ref())
                .map(|s| s.current.clone());
            match cur {
                Some(cur) if cur.uid == uid && cur.node == node => {
                    let got: BTreeSet<String> = cur
                        .ips
                        .iter()
                        .filter_map(|i| i.ipv4.clone())
                        .map(|a| a.split('/').next().unwrap_or_default().to_string())
                        .collect();
                    for a in &got {
                        holders
                            .entry(a.clone())
                            .or_default()
                            .insert(format!("{name} (endpoint)"));
                    }
                    let rec_addrs: BTreeSet<String> = rec
                        .addresses()
                        .iter()
                        .map(|a| a.address.to_string())
                        .collect();
                    if got != rec_addrs {
                        f.mismatches.push(format!(
                            "Pod {name}: endpoint {got:?}, record {rec_addrs:?}"
                        ));
                    }
                }
                other => f.mismatches.push(format!(
                    "Pod {name} {uid} on {node}: endpoint {:?}",
                    other.map(|c| (c.uid, c.node))
                )),
            }
        }
    }
    for (addr, who) in &holders {
        let pods_holding: BTreeSet<&str> = who
            .iter()
            .map(|w| w.split(' ').next().unwrap_or_default())
            .collect();
        if pods_holding.len() > 1 {
            f.duplicates.push(format!("{addr} held by {who:?}"));
        }
    }
    if settled {
        let wanted = |c: &SpiderIPClaim| {
            let Some(o) = c.spec.owner.as_ref().filter(|o| o.kind == "StatefulSet") else {
                return false;
            };
            let Some(set) = sets.iter().find(|s| s.name_any() == o.name) else {
                return false;
            };
            // Kept for the ordinal's next Pod only while there is none: a live Pod of that
            // name that does not hold it means the address is nobody's.
            if c.spec
                .pod_name
                .as_deref()
                .is_some_and(|n| pods.iter().any(|p| p.name_any() == n))
            {
                return false;
            }
            let replicas = set
                .data
                .pointer("/spec/replicas")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            c.spec
                .pod_name
                .as_deref()
                .and_then(|n| n.strip_prefix(&format!("{}-", o.name)))
                .and_then(|i| i.parse::<u64>().ok())
                .is_some_and(|i| i < replicas)
        };
        for c in &claims {
            if !recorded.contains(&c.spec.reservation) && !wanted(c) {
                f.leaks.push(format!(
                    "claim {} (reservation {}, Pod {:?}) has no Pod",
                    c.name_any(),
                    c.spec.reservation,
                    c.spec.pod_name
                ));
            }
        }
    }
    for p in &pools {
        let name = p.name_any();
        let held = claims.iter().filter(|c| c.spec.pool == name).count() as i64;
        let counted = p.status.as_ref().and_then(|s| s.allocated_ip_count);
        if counted.unwrap_or(0) != held {
            f.counts.push(format!(
                "pool {name}: allocatedIPCount {counted:?}, claims {held}"
            ));
        }
    }
    f
}

/// Polls [`check`] until it is clean or `limit` passes; the last findings and how long it took.
pub async fn settle(client: &kube::Client, ns: &str, limit: Duration) -> (Findings, Duration) {
    let start = Instant::now();
    loop {
        let f = check(client, ns, true).await;
        if f.is_clean() || start.elapsed() > limit {
            return (f, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The processes' log lines that mention an address of the findings, for the diagnosis.
pub fn print_logs_about(env: &Env, findings: &[String]) {
    let addrs: Vec<&str> = findings
        .iter()
        .filter_map(|f| f.split_whitespace().next())
        .collect();
    for name in ["aipam-webhook", "aipam-operator"] {
        for line in env.log(name).lines() {
            if addrs.iter().any(|a| line.contains(a)) {
                println!("{name}: {line}");
            }
        }
    }
}
