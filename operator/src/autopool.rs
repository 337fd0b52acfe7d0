//! SpiderSubnet auto-pools: an application whose Pod template carries
//! `ipam.spidernet.io/subnet(s)` gets a SpiderIPPool carved from the subnet, named as the
//! webhook expects ([`aipam_core::select::auto_pool_name`]), sized by
//! `ipam.spidernet.io/ippool-ip-number` (`N`, or `+N` over the replicas; default
//! `+clusterSubnetDefaultFlexibleIPNumber`), grown and shrunk with the replicas (never dropping
//! an address a claim holds), and deleted with the application unless
//! `ipam.spidernet.io/ippool-reclaim: "false"` (the pool finalizer then waits for its claims).
//!
//! Applications: Deployments, StatefulSets, DaemonSets, CronJobs, and ReplicaSets and Jobs that
//! no controller owns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aipam_core::annotations::{pod_ipam_annotations, SubnetRequest};
use aipam_core::config::IpamConfig;
use aipam_core::model::Pool;
use aipam_core::ranges::{IpFamily, IpSet};
use aipam_core::select::auto_pool_name;
use aipam_core::validate::{validate_subnet, Subnet};
use aipam_crds::convert::subnet_draft;
use aipam_crds::record::used_by_pool;
use aipam_crds::SpiderIPPool;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use serde_json::json;

use crate::ctx::{pool_ref, Ctx};
use crate::error::Error;
use crate::write::{delete_if_unchanged, Deleted};

/// Label on an auto-pool: its SpiderSubnet.
pub const LABEL_SUBNET: &str = "ipam.spidernet.io/owner-spider-subnet";
/// Label on an auto-pool: the UID of its application.
pub const LABEL_APP_UID: &str = "ipam.spidernet.io/owner-application-uid";
/// Label on an auto-pool: its application's kind.
pub const LABEL_APP_KIND: &str = "ipam.spidernet.io/owner-application-kind";
/// Label on an auto-pool: its application's namespace.
pub const LABEL_APP_NAMESPACE: &str = "ipam.spidernet.io/owner-application-namespace";
/// Label on an auto-pool: its application's name.
pub const LABEL_APP_NAME: &str = "ipam.spidernet.io/owner-application-name";
/// Label on an auto-pool: `"true"` when it goes with its application.
pub const LABEL_RECLAIM: &str = "ipam.spidernet.io/ippool-reclaim";
/// Label on an auto-pool: the interface it serves.
pub const LABEL_INTERFACE: &str = "ipam.spidernet.io/interface";

/// The controller's name in metrics.
pub const NAME: &str = "autopool";

/// An application as the rules see it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct App {
    /// `Deployment`, `StatefulSet`, `ReplicaSet`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Desired replicas.
    pub replicas: u64,
    /// The Pod template's annotations.
    pub annotations: BTreeMap<String, String>,
    /// `spec.selector`: the auto-pool's podAffinity.
    pub selector: Option<LabelSelector>,
}

/// One auto-pool an application needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    /// The pool's name.
    pub pool: String,
    /// The SpiderSubnet.
    pub subnet: String,
    /// The family.
    pub family: IpFamily,
    /// The interface.
    pub interface: String,
    /// Addresses it should hold.
    pub desired: u64,
    /// Deleted with the application.
    pub reclaim: bool,
}

/// The auto-pools an application needs (none without the annotations, or with the feature or
/// `enableAutoPoolForApplication` off). Errors name the annotation at fault.
pub fn wants(app: &App, cfg: &IpamConfig) -> Result<Vec<Want>, String> {
    if !cfg.enable_spider_subnet || !cfg.enable_auto_pool_for_application {
        return Ok(Vec::new());
    }
    let annos = pod_ipam_annotations(&app.annotations).map_err(|e| e.to_string())?;
    let reqs: Vec<SubnetRequest> = match (&annos.subnets, &annos.subnet) {
        (Some(list), _) => list.clone(),
        (None, Some(one)) => vec![one.clone()],
        (None, None) => return Ok(Vec::new()),
    };
    let desired = match annos.ip_number {
        Some(number) => number.desired(app.replicas),
        None => cfg.default_auto_pool_size(app.replicas),
    };
    let mut out = Vec::new();
    for req in reqs {
        let iface = req.interface.clone().unwrap_or_else(|| "eth0".to_string());
        for family in cfg.families() {
            let list = match family {
                IpFamily::V4 => &req.ipv4,
                IpFamily::V6 => &req.ipv6,
            };
            let Some(subnet) = list.first() else {
                continue;
            };
            out.push(Want {
                pool: auto_pool_name(
                    family,
                    &app.kind,
                    &app.namespace,
                    &app.name,
                    &iface,
                    &app.uid,
                ),
                subnet: subnet.clone(),
                family,
                interface: iface.clone(),
                desired,
                reclaim: annos.reclaim.unwrap_or(true),
            });
        }
    }
    Ok(out)
}

/// The addresses of a subnet that no pool of its CIDR holds.
pub fn free_in_subnet<'a, I>(subnet: &Subnet, pools: I, reserved: &IpSet) -> IpSet
where
    I: IntoIterator<Item = &'a Pool>,
{
    let mut as_pool = Pool::new(&subnet.name, subnet.subnet, subnet.ips.clone());
    as_pool.exclude_ips = subnet.exclude_ips.clone();
    as_pool.gateway = subnet.gateway;
    let mut free = as_pool.allocatable(reserved);
    for p in pools {
        free = free.difference(&p.ips);
    }
    free
}

/// Largest pool shrunk address by address.
const MAX_SHRINK_SCAN: u128 = 1 << 16;

/// An auto-pool's addresses resized to `desired`: grown from `free` (lowest first), shrunk by
/// dropping the highest addresses no claim holds (`held`). `None` when nothing changes.
pub fn resize(current: &IpSet, desired: u64, free: &IpSet, held: &IpSet) -> Option<IpSet> {
    let len = current.len();
    let want = u128::from(desired);
    if len < want {
        let add = IpSet::from_addrs(free.iter().take(usize::try_from(want - len).ok()?)).ok()?;
        if add.is_empty() {
            return None;
        }
        return current.union(&add).ok();
    }
    if len > want && len <= MAX_SHRINK_SCAN {
        let mut out = current.clone();
        let mut n = len;
        let all: Vec<_> = current.iter().collect();
        for ip in all.iter().rev() {
            if n <= want {
                break;
            }
            if !held.contains(ip) {
                out.remove(ip);
                n -= 1;
            }
        }
        if out != *current {
            return Some(out);
        }
    }
    None
}

fn app_of(
    kind: &str,
    meta: &kube::core::ObjectMeta,
    replicas: Option<i32>,
    template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>,
    selector: Option<&LabelSelector>,
) -> App {
    App {
        kind: kind.to_string(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        replicas: u64::try_from(replicas.unwrap_or(1)).unwrap_or(0),
        annotations: template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default(),
        selector: selector.cloned(),
    }
}

fn controlled(meta: &kube::core::ObjectMeta) -> bool {
    meta.owner_references
        .as_ref()
        .is_some_and(|r| r.iter().any(|r| r.controller == Some(true)))
}

/// The applications, from the caches (objects being deleted are left out: their pools go).
pub fn apps(stores: &AppStores, sets: &Store<StatefulSet>) -> Vec<App> {
    let mut out = Vec::new();
    for d in stores.daemon_sets.state() {
        if d.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let s = d.spec.as_ref();
        let scheduled = d.status.as_ref().map(|s| s.desired_number_scheduled);
        out.push(app_of(
            "DaemonSet",
            &d.metadata,
            Some(scheduled.unwrap_or(1)),
            s.map(|s| &s.template),
            s.map(|s| &s.selector),
        ));
    }
    for d in stores.jobs.state() {
        if controlled(&d.metadata) || d.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let s = d.spec.as_ref();
        out.push(app_of(
            "Job",
            &d.metadata,
            s.and_then(|s| s.parallelism),
            s.map(|s| &s.template),
            s.and_then(|s| s.selector.as_ref()),
        ));
    }
    for d in stores.cron_jobs.state() {
        if d.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let job = d.spec.as_ref().and_then(|s| s.job_template.spec.as_ref());
        out.push(app_of(
            "CronJob",
            &d.metadata,
            job.and_then(|s| s.parallelism),
            job.map(|s| &s.template),
            None,
        ));
    }
    let deployments = &stores.deployments;
    let replica_sets = &stores.replica_sets;
    for d in deployments.state() {
        if d.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let s = d.spec.as_ref();
        out.push(app_of(
            "Deployment",
            &d.metadata,
            s.and_then(|s| s.replicas),
            s.map(|s| &s.template),
            s.map(|s| &s.selector),
        ));
    }
    for d in sets.state() {
        if d.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let s = d.spec.as_ref();
        out.push(app_of(
            "StatefulSet",
            &d.metadata,
            s.and_then(|s| s.replicas),
            s.map(|s| &s.template),
            s.map(|s| &s.selector),
        ));
    }
    for d in replica_sets.state() {
        if controlled(&d.metadata) || d.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let s = d.spec.as_ref();
        out.push(app_of(
            "ReplicaSet",
            &d.metadata,
            s.and_then(|s| s.replicas),
            s.and_then(|s| s.template.as_ref()),
            s.map(|s| &s.selector),
        ));
    }
    out
}

/// The workload caches the auto-pool controller reads.
#[derive(Clone, Debug)]
pub struct AppStores {
    /// Deployments.
    pub deployments: Store<Deployment>,
    /// ReplicaSets.
    pub replica_sets: Store<ReplicaSet>,
    /// DaemonSets.
    pub daemon_sets: Store<DaemonSet>,
    /// Jobs.
    pub jobs: Store<Job>,
    /// CronJobs.
    pub cron_jobs: Store<CronJob>,
}

fn label_ok(v: &str) -> bool {
    v.len() <= aipam_core::labels::LABEL_VALUE_MAX_LEN
}

/// One pass: create, resize and reclaim auto-pools. Returns the writes made.
pub async fn sync(ctx: &Ctx, apps_now: &[App], cfg: &IpamConfig) -> Result<usize, Error> {
    let api: Api<SpiderIPPool> = Api::all(ctx.client.clone());
    let pools = ctx.pools();
    let subnets: BTreeMap<String, Subnet> = ctx
        .stores
        .subnets
        .state()
        .iter()
        .filter_map(|s| validate_subnet(&subnet_draft(s)).ok())
        .map(|s| (s.name.clone(), s))
        .collect();
    let claims = ctx.stores.claims.state();
    let held = used_by_pool(claims.iter().map(|c| &**c));
    let raw: BTreeMap<String, Arc<SpiderIPPool>> = ctx
        .stores
        .pools
        .state()
        .into_iter()
        .filter_map(|p| p.metadata.name.clone().map(|n| (n, p)))
        .collect();
    let mut writes = 0;
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    // Pools made in this pass, so that two pools of one pass never take the same addresses.
    let mut taken_now: Vec<Pool> = Vec::new();
    for app in apps_now {
        let list = match wants(app, cfg) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(kind = %app.kind, namespace = %app.namespace, name = %app.name, error = %e, "auto-pool annotations");
                continue;
            }
        };
        for w in list {
            wanted.insert(w.pool.clone());
            let Some(subnet) = subnets.get(&w.subnet) else {
                tracing::warn!(pool = %w.pool, subnet = %w.subnet, "auto-pool: SpiderSubnet not found");
                continue;
            };
            let reserved = ctx.reserved(w.family);
            let free = free_in_subnet(subnet, pools.values().chain(taken_now.iter()), &reserved);
            let empty = IpSet::new();
            match (raw.get(&w.pool), pools.get(&w.pool)) {
                (Some(_), Some(existing)) => {
                    let held = held.get(&w.pool).unwrap_or(&empty);
                    if let Some(ips) = resize(&existing.ips, w.desired, &free, held) {
                        let patch = json!({ "spec": { "ips": ips.to_strings() } });
                        api.patch(&w.pool, &PatchParams::default(), &Patch::Merge(&patch))
                            .await?;
                        let mut p = existing.clone();
                        p.ips = ips;
                        taken_now.push(p);
                        writes += 1;
                    }
                }
                (Some(_), None) => {} // exists but invalid: leave it to its owner
                (None, _) => {
                    let Some(ips) = resize(&IpSet::new(), w.desired, &free, &empty) else {
                        ctx.event(
                            &pool_ref(&w.pool, None),
                            true,
                            "SubnetExhausted",
                            "AutoPool",
                            format!(
                                "SpiderSubnet {} has no free address for auto-pool {}",
                                w.subnet, w.pool
                            ),
                        )
                        .await;
                        continue;
                    };
                    let mut labels = serde_json::Map::new();
                    for (k, v) in [
                        (LABEL_SUBNET, w.subnet.as_str()),
                        (LABEL_APP_UID, app.uid.as_str()),
                        (LABEL_APP_KIND, app.kind.as_str()),
                        (LABEL_APP_NAMESPACE, app.namespace.as_str()),
                        (LABEL_APP_NAME, app.name.as_str()),
                        (LABEL_RECLAIM, if w.reclaim { "true" } else { "false" }),
                        (LABEL_INTERFACE, w.interface.as_str()),
                    ] {
                        if label_ok(v) {
                            labels.insert(k.to_string(), json!(v));
                        }
                    }
                    let mut spec = json!({
                        "ipVersion": w.family.version(),
                        "subnet": subnet.subnet.to_string(),
                        "ips": ips.to_strings(),
                    });
                    if let Some(gw) = subnet.gateway {
                        spec["gateway"] = json!(gw.to_string());
                    }
                    if let Some(v) = subnet.vlan {
                        spec["vlan"] = json!(v);
                    }
                    if !subnet.routes.is_empty() {
                        spec["routes"] = json!(subnet
                            .routes
                            .iter()
                            .map(|r| json!({"dst": r.dst.to_string(), "gw": r.gw.to_string()}))
                            .collect::<Vec<_>>());
                    }
                    if let Some(sel) = &app.selector {
                        spec["podAffinity"] = serde_json::to_value(sel).unwrap_or_default();
                    }
                    let pool: SpiderIPPool = match serde_json::from_value(json!({
                        "apiVersion": aipam_crds::API_VERSION, "kind": "SpiderIPPool",
                        "metadata": { "name": w.pool, "labels": labels },
                        "spec": spec,
                    })) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(pool = %w.pool, error = %e, "auto-pool");
                            continue;
                        }
                    };
                    match api.create(&PostParams::default(), &pool).await {
                        Ok(_) => {
                            writes += 1;
                            let mut p = Pool::new(&w.pool, subnet.subnet, ips);
                            p.family = w.family;
                            taken_now.push(p);
                        }
                        Err(kube::Error::Api(s)) if s.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
    // Reclaim: auto-pools whose application is gone (or no longer asks for them).
    let live_uids: BTreeSet<&str> = apps_now.iter().map(|a| a.uid.as_str()).collect();
    for (name, p) in &raw {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        let Some(uid) = labels.get(LABEL_APP_UID) else {
            continue;
        };
        if labels.get(LABEL_RECLAIM).map(String::as_str) != Some("true")
            || p.metadata.deletion_timestamp.is_some()
            || wanted.contains(name)
            || live_uids.contains(uid.as_str())
        {
            continue;
        }
        // By name, without a precondition (a 404 is fine, as before).
        if delete_if_unchanged(&api, name, None, None).await? == Deleted::Deleted {
            writes += 1;
        }
    }
    Ok(writes)
}

/// The auto-pool loop (only when `enableSpiderSubnet`).
pub async fn run(ctx: Arc<Ctx>, stores: AppStores, cfg: IpamConfig, every: Duration) {
    loop {
        let list = apps(&stores, &ctx.stores.sets);
        if let Err(e) = sync(&ctx, &list, &cfg).await {
            ctx.metrics.error(NAME, e.kind());
            tracing::warn!(error = %e, "auto-pools");
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn cfg() -> IpamConfig {
        IpamConfig {
            enable_spider_subnet: true,
            ..IpamConfig::default()
        }
    }

    fn app(annos: &[(&str, &str)], replicas: u64) -> App {
        App {
            kind: "Deployment".into(),
            namespace: "apps".into(),
            name: "web".into(),
            uid: "1111-2222-abcdef".into(),
            replicas,
            annotations: annos
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            selector: None,
        }
    }

    #[test]
    fn an_application_wants_one_pool_per_interface_and_family_sized_by_its_replicas() {
        let a = app(&[("ipam.spidernet.io/subnet", r#"{"ipv4":["s9"]}"#)], 2);
        let w = wants(&a, &cfg()).unwrap();
        assert_eq!(
            w,
            vec![Want {
                pool: "auto4-deployment-apps-web-eth0-abcdef".into(),
                subnet: "s9".into(),
                family: IpFamily::V4,
                interface: "eth0".into(),
                desired: 3,
                reclaim: true,
            }]
        );
        let a = app(
            &[
                ("ipam.spidernet.io/subnet", r#"{"ipv4":["s9"]}"#),
                ("ipam.spidernet.io/ippool-ip-number", "5"),
                ("ipam.spidernet.io/ippool-reclaim", "false"),
            ],
            2,
        );
        let w = wants(&a, &cfg()).unwrap();
        assert_eq!((w[0].desired, w[0].reclaim), (5, false));
        let a = app(
            &[
                ("ipam.spidernet.io/ippool-ip-number", "+2"),
                ("ipam.spidernet.io/subnet", r#"{"ipv4":["s9"]}"#),
            ],
            4,
        );
        assert_eq!(wants(&a, &cfg()).unwrap()[0].desired, 6);
        // A negative cluster default shrinks the pool below the replicas, as in Spiderpool.
        let plain = app(&[("ipam.spidernet.io/subnet", r#"{"ipv4":["s9"]}"#)], 4);
        let fewer = IpamConfig {
            cluster_subnet_default_flexible_ip_number: -1,
            ..cfg()
        };
        assert_eq!(wants(&plain, &fewer).unwrap()[0].desired, 3);
        // Feature off, auto-pools off, or no annotation: nothing.
        assert!(wants(&a, &IpamConfig::default()).unwrap().is_empty());
        let off = IpamConfig {
            enable_auto_pool_for_application: false,
            ..cfg()
        };
        assert!(wants(&a, &off).unwrap().is_empty());
        assert!(wants(&app(&[], 3), &cfg()).unwrap().is_empty());
        assert!(wants(&app(&[("ipam.spidernet.io/subnet", "{")], 3), &cfg()).is_err());
    }

    #[test]
    fn applications_are_read_from_every_workload_kind() {
        use kube::runtime::reflector::store;
        use kube::runtime::watcher::Event;
        fn fill<K>(objs: Vec<serde_json::Value>) -> Store<K>
        where
            K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + 'static,
        {
            let (r, mut w) = store::<K>();
            w.apply_watcher_event(&Event::Init);
            for o in objs {
                w.apply_watcher_event(&Event::InitApply(serde_json::from_value(o).unwrap()));
            }
            w.apply_watcher_event(&Event::InitDone);
            r
        }
        let tpl = json!({"metadata": {"annotations": {"ipam.spidernet.io/subnet": "{\"ipv4\":[\"s9\"]}"}}});
        let meta = |name: &str, owned: bool| {
            let mut m = json!({"name": name, "namespace": "apps", "uid": format!("{name}-uid")});
            if owned {
                m["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "cj", "uid": "cj-uid", "controller": true}]);
            }
            m
        };
        let stores = AppStores {
            deployments: fill(vec![
                json!({"metadata": meta("d", false), "spec": {"replicas": 2, "selector": {}, "template": tpl}}),
            ]),
            replica_sets: fill(vec![
                json!({"metadata": meta("rs-owned", true), "spec": {"selector": {}, "template": tpl}}),
                json!({"metadata": meta("rs", false), "spec": {"replicas": 4, "selector": {}, "template": tpl}}),
            ]),
            daemon_sets: fill(vec![
                json!({"metadata": meta("ds", false), "spec": {"selector": {}, "template": tpl}, "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 3}}),
            ]),
            jobs: fill(vec![
                json!({"metadata": meta("job-of-cj", true), "spec": {"template": tpl}}),
                json!({"metadata": meta("job", false), "spec": {"parallelism": 2, "template": tpl}}),
            ]),
            cron_jobs: fill(vec![
                json!({"metadata": meta("cj", false), "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"parallelism": 5, "template": tpl}}}}),
            ]),
        };
        let sets = fill::<StatefulSet>(vec![
            json!({"metadata": meta("ss", false), "spec": {"replicas": 1, "selector": {}, "serviceName": "ss", "template": tpl}}),
        ]);
        let mut got: Vec<(String, String, u64)> = apps(&stores, &sets)
            .into_iter()
            .map(|a| (a.kind, a.name, a.replicas))
            .collect();
        got.sort();
        let want: Vec<(String, String, u64)> = [
            ("CronJob", "cj", 5),
            ("DaemonSet", "ds", 3),
            ("Deployment", "d", 2),
            ("Job", "job", 2),
            ("ReplicaSet", "rs", 4),
            ("StatefulSet", "ss", 1),
        ]
        .iter()
        .map(|(k, n, r)| (k.to_string(), n.to_string(), *r))
        .collect();
        assert_eq!(got, want);
        let a = apps(&stores, &sets)
            .into_iter()
            .find(|a| a.kind == "CronJob")
            .unwrap();
        assert_eq!(
            wants(&a, &cfg()).unwrap()[0].pool,
            "auto4-cronjob-apps-cj-eth0-cj-uid".replace("cj-uid", "uid")
        );
    }

    #[test]
    fn resizing_grows_from_the_free_addresses_and_never_drops_a_held_one() {
        let set = |l: &[&str]| IpSet::parse_list(l).unwrap();
        let free = set(&["10.9.0.40-10.9.0.99"]);
        let grown = resize(&set(&["10.9.0.30-10.9.0.32"]), 5, &free, &IpSet::new()).unwrap();
        assert_eq!(grown, set(&["10.9.0.30-10.9.0.32", "10.9.0.40-10.9.0.41"]));
        assert_eq!(resize(&grown, 5, &free, &IpSet::new()), None);
        let held = set(&["10.9.0.41", "10.9.0.40"]);
        let shrunk = resize(&grown, 3, &free, &held).unwrap();
        assert_eq!(shrunk, set(&["10.9.0.30", "10.9.0.40-10.9.0.41"]));
        // Everything held: cannot shrink further.
        assert_eq!(resize(&held, 1, &free, &held), None);
        assert_eq!(resize(&IpSet::new(), 2, &IpSet::new(), &IpSet::new()), None);
    }
}
