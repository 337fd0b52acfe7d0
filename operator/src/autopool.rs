//! SpiderSubnet auto-pools: an application whose Pod template carries
//! `ipam.spidernet.io/subnet(s)` gets a SpiderIPPool carved from the subnet, named, labelled
//! and found as Spiderpool does ([`aipam_core::auto_pool`]): found by its owner labels (so that
//! a pool Spiderpool made is adopted, whatever its name), else created as
//! `auto{4|6}-{name}-{interface}-{uid}` with every label Spiderpool writes, the SpiderSubnet
//! as its controller ownerReference, the subnet's gateway and routes, and Spiderpool's
//! application `podAffinity`. Sized by `ipam.spidernet.io/ippool-ip-number` (`N`, or `+N` over
//! the replicas; default `+clusterSubnetDefaultFlexibleIPNumber`), grown and shrunk with the
//! replicas (never dropping an address a claim holds), and deleted with the application unless
//! `ipam.spidernet.io/ippool-reclaim: "false"` (the pool finalizer then waits for its claims).
//! A kept pool (`"false"`) found again for a new application of the same name is relabelled
//! with the new UID, as Spiderpool does.
//!
//! Applications: Deployments, StatefulSets, DaemonSets, CronJobs, and ReplicaSets and Jobs that
//! no controller owns. Auto pools of third-party controllers (an OpenKruise CloneSet) are
//! neither resized nor reclaimed here: this operator cannot read those kinds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aipam_core::annotations::{pod_ipam_annotations, IpNumber, SubnetRequest};
use aipam_core::auto_pool::{self, free_in_subnet, resize, Key};
use aipam_core::config::IpamConfig;
use aipam_core::model::{Labels, Pool};
use aipam_core::ranges::{IpFamily, IpSet};
use aipam_core::validate::{validate_subnet, Subnet};
use aipam_crds::auto_pool::new_pool;
use aipam_crds::convert::subnet_draft;
use aipam_crds::record::used_by_pool;
use aipam_crds::{SpiderIPPool, SpiderSubnet};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use serde_json::{json, Value};

use crate::ctx::{pool_ref, Ctx};
use crate::error::Error;
use crate::write::{delete_if_unchanged, Deleted};

/// The controller's name in metrics.
pub const NAME: &str = "autopool";

/// An application as the rules see it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct App {
    /// `apps/v1` or `batch/v1`.
    pub api_version: String,
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
    /// `spec.selector` (kept for callers; the auto-pool's podAffinity names the application).
    pub selector: Option<LabelSelector>,
}

impl App {
    /// The application as the auto pool rules name it.
    pub fn as_auto_pool_app(&self) -> auto_pool::App {
        auto_pool::App {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }
}

/// One auto-pool an application needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
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
    /// `ipam.spidernet.io/ippool-ip-number` as Spiderpool writes it on the pool (`+1`, `5`).
    pub ip_number: String,
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
    // The size as Spiderpool writes it into the pool's ippool-ip-number annotation.
    let ip_number = match annos.ip_number {
        Some(IpNumber::Fixed(n)) => n.to_string(),
        Some(IpNumber::Flexible(n)) => format!("+{n}"),
        None if cfg.cluster_subnet_default_flexible_ip_number >= 0 => {
            format!("+{}", cfg.cluster_subnet_default_flexible_ip_number)
        }
        None => cfg.cluster_subnet_default_flexible_ip_number.to_string(),
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
                subnet: subnet.clone(),
                family,
                interface: iface.clone(),
                desired,
                reclaim: annos.reclaim.unwrap_or(true),
                ip_number: ip_number.clone(),
            });
        }
    }
    Ok(out)
}

/// The labels to write on a pool found for `key` (by labels or by name): every auto-pool
/// label it lacks or has otherwise, so that a pool kept from an earlier application of the
/// name carries the new UID and reclaim (as Spiderpool refreshes them), and a pool found by
/// name becomes findable by labels. `None` when nothing changes.
pub fn label_patch(current: &Labels, key: &Key<'_>, reclaim: bool, cidr: &str) -> Option<Value> {
    let want = key.labels(reclaim, cidr);
    let diff: serde_json::Map<String, Value> = want
        .into_iter()
        .filter(|(k, v)| {
            current.get(k) != Some(v) && v.len() <= aipam_core::labels::LABEL_VALUE_MAX_LEN
        })
        .map(|(k, v)| (k, json!(v)))
        .collect();
    (!diff.is_empty()).then(|| json!({ "metadata": { "labels": diff } }))
}

/// Whether the operator reclaims a pool: an auto pool (owner labels) of a built-in workload
/// kind, `ippool-reclaim: "true"`, whose application UID is not among the live applications.
/// Third-party controllers' pools are left alone: their kinds are not read here.
pub fn reclaimable(labels: &Labels, live_uids: &BTreeSet<&str>) -> bool {
    let Some(uid) = labels.get(auto_pool::LABEL_APP_UID) else {
        return false;
    };
    let kind = labels
        .get(auto_pool::LABEL_APP_KIND)
        .map_or("", String::as_str);
    // An absent gv label: a pool an earlier aipam made (built-in kinds only).
    let api_version = match labels.get(auto_pool::LABEL_APP_GV) {
        Some(gv) => gv.replacen('_', "/", 1),
        None => match kind {
            "Job" | "CronJob" => "batch/v1".to_string(),
            _ => "apps/v1".to_string(),
        },
    };
    labels.get(auto_pool::LABEL_RECLAIM).map(String::as_str) == Some("true")
        && !auto_pool::is_third_party(&api_version, kind)
        && !live_uids.contains(uid.as_str())
}

fn app_of(
    api_version: &str,
    kind: &str,
    meta: &kube::core::ObjectMeta,
    replicas: Option<i32>,
    template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>,
    selector: Option<&LabelSelector>,
) -> App {
    App {
        api_version: api_version.to_string(),
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
            "apps/v1",
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
            "batch/v1",
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
            "batch/v1",
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
            "apps/v1",
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
            "apps/v1",
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
            "apps/v1",
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

/// One pass: create, resize and reclaim auto-pools. Returns the writes made.
pub async fn sync(ctx: &Ctx, apps_now: &[App], cfg: &IpamConfig) -> Result<usize, Error> {
    let api: Api<SpiderIPPool> = Api::all(ctx.client.clone());
    let pools = ctx.pools();
    let raw_subnets: BTreeMap<String, Arc<SpiderSubnet>> = ctx
        .stores
        .subnets
        .state()
        .into_iter()
        .filter_map(|s| s.metadata.name.clone().map(|n| (n, s)))
        .collect();
    let subnets: BTreeMap<String, Subnet> = raw_subnets
        .values()
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
    let labels_of: Vec<(String, Labels)> = raw
        .iter()
        .filter(|(_, p)| p.metadata.deletion_timestamp.is_none())
        .map(|(n, p)| (n.clone(), p.metadata.labels.clone().unwrap_or_default()))
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
        let who = app.as_auto_pool_app();
        for w in list {
            let key = Key {
                app: &who,
                subnet: &w.subnet,
                family: w.family,
                interface: &w.interface,
            };
            let found =
                auto_pool::find_for_app(labels_of.iter().map(|(n, l)| (n.as_str(), l)), &key);
            let name = found.clone().unwrap_or_else(|| key.pool_name());
            wanted.insert(name.clone());
            let Some(subnet) = subnets.get(&w.subnet) else {
                tracing::warn!(pool = %name, subnet = %w.subnet, "auto-pool: SpiderSubnet not found");
                continue;
            };
            let reserved = ctx.reserved(w.family);
            let free = free_in_subnet(subnet, pools.values().chain(taken_now.iter()), &reserved);
            let empty = IpSet::new();
            match (found.as_ref().and_then(|n| raw.get(n)), pools.get(&name)) {
                (Some(obj), Some(existing)) => {
                    if existing.subnet != subnet.subnet {
                        // Spiderpool refuses too (ApplicationSubnetChanged).
                        ctx.event(
                            &pool_ref(&name, obj.metadata.uid.as_deref()),
                            true,
                            "ApplicationSubnetChanged",
                            "AutoPool",
                            format!(
                                "the application {} {}/{} now names SpiderSubnet {} ({}), but its auto-pool {} is in {}: delete the pool, or name the subnet it was carved from",
                                app.kind, app.namespace, app.name, w.subnet, subnet.subnet, name, existing.subnet
                            ),
                        )
                        .await;
                        continue;
                    }
                    let current = obj.metadata.labels.clone().unwrap_or_default();
                    let cidr = obj.spec.subnet.clone();
                    let mut patch =
                        label_patch(&current, &key, w.reclaim, &cidr).unwrap_or_else(|| json!({}));
                    let held = held.get(&name).unwrap_or(&empty);
                    if let Some(ips) = resize(&existing.ips, w.desired, &free, held) {
                        patch["spec"] = json!({ "ips": ips.to_strings() });
                        let mut p = existing.clone();
                        p.ips = ips;
                        taken_now.push(p);
                    }
                    if patch.as_object().is_some_and(|m| !m.is_empty()) {
                        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await?;
                        writes += 1;
                    }
                }
                (Some(_), None) => {} // exists but invalid: leave it to its owner
                (None, _) if raw.contains_key(&name) => {
                    // The name is taken by a pool of another application (or being deleted).
                    tracing::warn!(pool = %name, "auto-pool: the name is taken by another pool");
                }
                (None, _) => {
                    let Some(ips) = resize(&IpSet::new(), w.desired, &free, &empty) else {
                        ctx.event(
                            &pool_ref(&name, None),
                            true,
                            "SubnetExhausted",
                            "AutoPool",
                            format!(
                                "SpiderSubnet {} has no free address for auto-pool {}",
                                w.subnet, name
                            ),
                        )
                        .await;
                        continue;
                    };
                    let subnet_uid = raw_subnets
                        .get(&w.subnet)
                        .and_then(|s| s.metadata.uid.clone())
                        .unwrap_or_default();
                    let pool: SpiderIPPool = match serde_json::from_value(new_pool(
                        &key,
                        w.reclaim,
                        &w.ip_number,
                        subnet,
                        &subnet_uid,
                        &ips,
                    )) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(pool = %name, error = %e, "auto-pool");
                            continue;
                        }
                    };
                    match api.create(&PostParams::default(), &pool).await {
                        Ok(_) => {
                            writes += 1;
                            let mut p = Pool::new(&name, subnet.subnet, ips);
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
        if p.metadata.deletion_timestamp.is_some()
            || wanted.contains(name)
            || !reclaimable(&labels, &live_uids)
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
            api_version: "apps/v1".into(),
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
                subnet: "s9".into(),
                family: IpFamily::V4,
                interface: "eth0".into(),
                desired: 3,
                reclaim: true,
                ip_number: "+1".into(),
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
        assert_eq!(
            (w[0].desired, w[0].reclaim, w[0].ip_number.as_str()),
            (5, false, "5")
        );
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
        let mut got: Vec<(String, String, String, u64)> = apps(&stores, &sets)
            .into_iter()
            .map(|a| (a.kind, a.api_version, a.name, a.replicas))
            .collect();
        got.sort();
        let want: Vec<(String, String, String, u64)> = [
            ("CronJob", "batch/v1", "cj", 5),
            ("DaemonSet", "apps/v1", "ds", 3),
            ("Deployment", "apps/v1", "d", 2),
            ("Job", "batch/v1", "job", 2),
            ("ReplicaSet", "apps/v1", "rs", 4),
            ("StatefulSet", "apps/v1", "ss", 1),
        ]
        .iter()
        .map(|(k, g, n, r)| (k.to_string(), g.to_string(), n.to_string(), *r))
        .collect();
        assert_eq!(got, want);
    }

    fn subnet() -> Subnet {
        let mut d = aipam_core::validate::SubnetDraft {
            name: "s9".into(),
            subnet: "10.9.0.0/16".into(),
            ips: vec!["10.9.0.10-10.9.0.99".into()],
            gateway: Some("10.9.0.1".into()),
            vlan: Some(7),
            ..Default::default()
        };
        d.routes = vec![("10.10.0.0/16".into(), "10.9.0.2".into())];
        validate_subnet(&d).unwrap()
    }

    #[test]
    fn a_new_auto_pool_is_what_spiderpool_creates() {
        let a = app(&[("ipam.spidernet.io/subnet", r#"{"ipv4":["s9"]}"#)], 2);
        let w = wants(&a, &cfg()).unwrap().remove(0);
        let who = a.as_auto_pool_app();
        let key = Key {
            app: &who,
            subnet: &w.subnet,
            family: w.family,
            interface: &w.interface,
        };
        let ips = IpSet::parse_list(&["10.9.0.10-10.9.0.12"]).unwrap();
        let got = new_pool(&key, w.reclaim, &w.ip_number, &subnet(), "subnet-uid", &ips);
        assert_eq!(
            got,
            json!({
                "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
                "metadata": {
                    "name": "auto4-web-eth0-abcde",
                    "labels": {
                        "ipam.spidernet.io/owner-spider-subnet": "s9",
                        "ipam.spidernet.io/owner-application-gv": "apps_v1",
                        "ipam.spidernet.io/owner-application-kind": "Deployment",
                        "ipam.spidernet.io/owner-application-namespace": "apps",
                        "ipam.spidernet.io/owner-application-name": "web",
                        "ipam.spidernet.io/owner-application-uid": "1111-2222-abcdef",
                        "ipam.spidernet.io/interface": "eth0",
                        "ipam.spidernet.io/ippool-reclaim": "true",
                        "ipam.spidernet.io/ip-version": "IPv4",
                        "ipam.spidernet.io/ippool-cidr": "10-9-0-0-16",
                    },
                    "annotations": {"ipam.spidernet.io/ippool-ip-number": "+1"},
                    "finalizers": ["spiderpool.spidernet.io"],
                    "ownerReferences": [{
                        "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderSubnet",
                        "name": "s9", "uid": "subnet-uid",
                        "controller": true, "blockOwnerDeletion": true,
                    }],
                },
                "spec": {
                    "ipVersion": 4,
                    "subnet": "10.9.0.0/16",
                    "ips": ["10.9.0.10-10.9.0.12"],
                    "gateway": "10.9.0.1",
                    "routes": [{"dst": "10.10.0.0/16", "gw": "10.9.0.2"}],
                    "podAffinity": {"matchLabels": {
                        "ipam.spidernet.io/app-api-group": "apps",
                        "ipam.spidernet.io/app-api-version": "v1",
                        "ipam.spidernet.io/app-kind": "Deployment",
                        "ipam.spidernet.io/app-namespace": "apps",
                        "ipam.spidernet.io/app-name": "web",
                    }},
                },
            })
        );
        // It reads back as a SpiderIPPool.
        let _: SpiderIPPool = serde_json::from_value(got).unwrap();
    }

    #[test]
    fn a_found_pool_gets_the_labels_it_lacks_and_the_new_uid() {
        let a = app(&[], 1);
        let who = a.as_auto_pool_app();
        let key = Key {
            app: &who,
            subnet: "s9",
            family: IpFamily::V4,
            interface: "eth0",
        };
        let full = key.labels(false, "10.9.0.0/16");
        assert_eq!(label_patch(&full, &key, false, "10.9.0.0/16"), None);
        let mut kept = full.clone();
        kept.insert(auto_pool::LABEL_APP_UID.into(), "old-uid".into());
        assert_eq!(
            label_patch(&kept, &key, false, "10.9.0.0/16"),
            Some(json!({"metadata": {"labels": {
                "ipam.spidernet.io/owner-application-uid": "1111-2222-abcdef"}}}))
        );
        let patch = label_patch(&Labels::new(), &key, true, "10.9.0.0/16").unwrap();
        assert_eq!(patch["metadata"]["labels"].as_object().unwrap().len(), 10);
    }

    #[test]
    fn only_built_in_workloads_pools_are_reclaimed() {
        let live: BTreeSet<&str> = ["live-uid"].into_iter().collect();
        let l = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let uid = auto_pool::LABEL_APP_UID;
        let reclaim = auto_pool::LABEL_RECLAIM;
        let kind = auto_pool::LABEL_APP_KIND;
        let gv = auto_pool::LABEL_APP_GV;
        assert!(reclaimable(
            &l(&[
                (uid, "gone"),
                (reclaim, "true"),
                (kind, "Deployment"),
                (gv, "apps_v1")
            ]),
            &live
        ));
        // An earlier aipam's pool: no gv label.
        assert!(reclaimable(
            &l(&[(uid, "gone"), (reclaim, "true"), (kind, "Job")]),
            &live
        ));
        assert!(!reclaimable(
            &l(&[(uid, "live-uid"), (reclaim, "true"), (kind, "Deployment")]),
            &live
        ));
        assert!(!reclaimable(
            &l(&[(uid, "gone"), (reclaim, "false"), (kind, "Deployment")]),
            &live
        ));
        assert!(!reclaimable(
            &l(&[
                (uid, "gone"),
                (reclaim, "true"),
                (kind, "CloneSet"),
                (gv, "apps.kruise.io_v1alpha1")
            ]),
            &live
        ));
        assert!(!reclaimable(&l(&[(reclaim, "true")]), &live));
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
