//! `aipamctl migrate`: a live Spiderpool's allocations turned into this IPAM's record, in place
//! (the rule is [`aipam_rules::migrate::plan_migration`]; this module reads the cluster once and
//! writes what the plan says).
//!
//! Order of the writes, each safe to repeat: the claims of a Pod, then the Pod's
//! `aipam.io/reservation` annotation (only while the Pod has the UID the plan saw), then
//! Spiderpool's finalizer off the SpiderEndpoints, then every pool's `status.allocatedIPs`
//! cleared. A run cut short is finished by running it again.

use std::collections::BTreeMap;

use aipam_core::reservation::ANNO_RESERVATION;
use aipam_crds::{ClaimOwner, SpiderEndpoint, SpiderIPClaim, SpiderIPPool};
use aipam_rules::migrate::{namespaced_name, plan_migration, Inconsistent, Migration, SpiderState};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde::Serialize;
use serde_json::json;

use crate::cluster::{self, ClusterError};

/// The MutatingWebhookConfiguration `config/webhook/` installs.
pub const WEBHOOK_CONFIGURATION: &str = "aipam-webhook";

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Reading the cluster failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The state cannot be migrated as it is.
    #[error(transparent)]
    Inconsistent(#[from] Inconsistent),
    /// aipam's webhook already serves Pods.
    #[error(
        "aipam's webhook is already registered (MutatingWebhookConfiguration {0}): while it admits \
         Pods it may hand out addresses Spiderpool's Pods still hold, and its Pod guard refuses \
         the aipam.io/reservation annotation this migration writes. Run migrate after stopping \
         Spiderpool and before installing aipam's webhook (docs/migrating.md), or delete the \
         MutatingWebhookConfiguration and ValidatingWebhookConfiguration {0} first"
    )]
    WebhookInstalled(String),
    /// The SpiderIPClaim kind is not installed.
    #[error(
        "the SpiderIPClaim CRD is not installed, so there is nothing to record the addresses in: \
         apply aipam's CRDs first (kubectl apply -f config/crd/; they keep every field of \
         Spiderpool's four kinds)"
    )]
    NoClaimCrd,
    /// A write failed.
    #[error("cannot {what}: {source}")]
    Write {
        /// What was being written.
        what: String,
        /// The client's error.
        source: kube::Error,
    },
    /// A claim of the plan exists with another reservation (written in between).
    #[error(
        "SpiderIPClaim {0} appeared with reservation {1} while migrating; something else hands out \
         addresses of this pool. Stop it and run migrate again"
    )]
    Raced(String, String),
}

/// What one run did (or, dry, would do).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Nothing was written.
    pub dry_run: bool,
    /// The plan.
    pub plan: Migration,
    /// Claims created by this run.
    pub claims_created: usize,
    /// Pods given their reservation annotation by this run.
    pub pods_recorded: usize,
    /// Pods the plan named that were deleted or replaced before their annotation was written
    /// (their claims are collected by the operator like any claim without its Pod).
    pub pods_gone: Vec<String>,
    /// SpiderEndpoints whose Spiderpool finalizer was removed.
    pub endpoints_released: usize,
    /// Pools whose `status.allocatedIPs` was cleared.
    pub pools_cleared: usize,
}

/// Reads the cluster, plans, and unless `dry_run` writes the plan.
pub async fn migrate(
    client: &Client,
    config_namespace: &str,
    dry_run: bool,
) -> Result<Report, MigrateError> {
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let installed = hooks
        .get_opt(WEBHOOK_CONFIGURATION)
        .await
        .map_err(|source| ClusterError::Request {
            what: format!("read MutatingWebhookConfiguration {WEBHOOK_CONFIGURATION}"),
            source,
        })?
        .is_some();
    if installed && !dry_run {
        return Err(MigrateError::WebhookInstalled(
            WEBHOOK_CONFIGURATION.to_string(),
        ));
    }
    let claims_api: Api<SpiderIPClaim> = Api::all(client.clone());
    if let Err(kube::Error::Api(s)) = claims_api.list(&Default::default()).await {
        if s.code == 404 {
            return Err(MigrateError::NoClaimCrd);
        }
    }
    let snap = cluster::snapshot(client, config_namespace).await?;
    let owners = owners(client, &snap).await;
    let mut plan = plan_migration(SpiderState {
        pools: &snap.pools,
        endpoints: &snap.endpoints,
        pods: &snap.pods,
        claims: &snap.claims,
        owners: &owners,
    })?;
    if installed {
        plan.warnings.push(format!(
            "aipam's webhook is registered (MutatingWebhookConfiguration {WEBHOOK_CONFIGURATION}): \
             the migration itself will refuse to run until it is removed"
        ));
    }
    let mut report = Report {
        dry_run,
        plan,
        claims_created: 0,
        pods_recorded: 0,
        pods_gone: Vec::new(),
        endpoints_released: 0,
        pools_cleared: 0,
    };
    if !dry_run {
        write(client, &mut report).await?;
    }
    Ok(report)
}

/// The top controller of every Pod that has a SpiderEndpoint (the Pods the plan may migrate).
async fn owners(
    client: &Client,
    snap: &cluster::Snapshot,
) -> BTreeMap<(String, String), ClaimOwner> {
    let with_endpoint: std::collections::BTreeSet<(&str, &str)> = snap
        .endpoints
        .iter()
        .filter_map(|e| namespaced_name(&e.metadata))
        .collect();
    let mut out = BTreeMap::new();
    for pod in &snap.pods {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        if !with_endpoint.contains(&(ns.as_str(), name.as_str())) {
            continue;
        }
        if let Some(o) = crate::pod_owner(client, snap, pod).await {
            out.insert(
                (ns.clone(), name.clone()),
                ClaimOwner {
                    kind: o.kind,
                    name: o.name,
                    uid: o.uid,
                },
            );
        }
    }
    out
}

fn failed(what: String) -> impl FnOnce(kube::Error) -> MigrateError {
    move |source| MigrateError::Write { what, source }
}

async fn write(client: &Client, report: &mut Report) -> Result<(), MigrateError> {
    let claims: Api<SpiderIPClaim> = Api::all(client.clone());
    for pm in &report.plan.pods {
        for claim in &pm.claims {
            let name = claim.metadata.name.clone().unwrap_or_default();
            match claims.create(&PostParams::default(), claim).await {
                Ok(_) => report.claims_created += 1,
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let live = claims
                        .get(&name)
                        .await
                        .map_err(failed(format!("read SpiderIPClaim {name}")))?;
                    if live.spec.reservation != claim.spec.reservation {
                        return Err(MigrateError::Raced(name, live.spec.reservation));
                    }
                }
                Err(e) => return Err(failed(format!("create SpiderIPClaim {name}"))(e)),
            }
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &pm.namespace);
        let has_annotations = pods
            .get_opt(&pm.name)
            .await
            .map_err(failed(format!("read Pod {}/{}", pm.namespace, pm.name)))?
            .map(|p| p.metadata.annotations.is_some());
        let Some(has_annotations) = has_annotations else {
            report
                .pods_gone
                .push(format!("{}/{}", pm.namespace, pm.name));
            continue;
        };
        let record = pm.reservation.to_annotation();
        let key = ANNO_RESERVATION.replace('~', "~0").replace('/', "~1");
        let add = if has_annotations {
            json!({"op": "add", "path": format!("/metadata/annotations/{key}"), "value": record})
        } else {
            json!({"op": "add", "path": "/metadata/annotations", "value": {ANNO_RESERVATION: record}})
        };
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/uid", "value": pm.uid},
            add,
        ]))
        .map_err(|e| MigrateError::Write {
            what: format!("build the patch of Pod {}/{}", pm.namespace, pm.name),
            source: kube::Error::SerdeError(e),
        })?;
        match pods
            .patch(&pm.name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => report.pods_recorded += 1,
            // Deleted, or replaced by a Pod of another UID (the test failed) in between.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 422 => {
                report
                    .pods_gone
                    .push(format!("{}/{}", pm.namespace, pm.name));
            }
            Err(e) => {
                return Err(failed(format!(
                    "write the reservation of Pod {}/{}",
                    pm.namespace, pm.name
                ))(e))
            }
        }
    }
    for (ns, name) in &report.plan.endpoint_finalizers {
        let endpoints: Api<SpiderEndpoint> = Api::namespaced(client.clone(), ns);
        let Some(ep) = endpoints
            .get_opt(name)
            .await
            .map_err(failed(format!("read SpiderEndpoint {ns}/{name}")))?
        else {
            continue;
        };
        let finalizers = ep.metadata.finalizers.unwrap_or_default();
        let kept: Vec<&String> = finalizers
            .iter()
            .filter(|f| *f != aipam_rules::migrate::SPIDERPOOL_FINALIZER)
            .collect();
        if kept.len() == finalizers.len() {
            continue;
        }
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "replace", "path": "/metadata/finalizers", "value": kept},
        ]))
        .map_err(|e| MigrateError::Write {
            what: format!("build the patch of SpiderEndpoint {ns}/{name}"),
            source: kube::Error::SerdeError(e),
        })?;
        match endpoints
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => report.endpoints_released += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(failed(format!(
                    "remove Spiderpool's finalizer from SpiderEndpoint {ns}/{name}"
                ))(e))
            }
        }
    }
    let pools: Api<SpiderIPPool> = Api::all(client.clone());
    for name in &report.plan.pools_to_clear {
        let clear = json!({"status": {"allocatedIPs": null}});
        match pools
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&clear))
            .await
        {
            Ok(_) => report.pools_cleared += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(failed(format!(
                    "clear status.allocatedIPs of SpiderIPPool {name}"
                ))(e))
            }
        }
    }
    Ok(())
}

/// The report for people.
pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let p = &r.plan;
    let _ = writeln!(
        s,
        "{}",
        if r.dry_run {
            "Migration from Spiderpool (dry run: nothing was written)"
        } else {
            "Migration from Spiderpool"
        }
    );
    let _ = writeln!(
        s,
        "\nPods whose addresses become aipam claims: {}",
        p.pods.len()
    );
    for pm in &p.pods {
        let _ = writeln!(
            s,
            "  {}/{}  {}  ({} claim(s) to create, {} present)",
            pm.namespace,
            pm.name,
            pm.reservation,
            pm.claims.len(),
            pm.claims_present
        );
    }
    if !p.already.is_empty() {
        let _ = writeln!(
            s,
            "\nPods already recorded by aipam (left alone): {}",
            p.already.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\nAddresses Spiderpool lists that no running Pod holds (free after the switch): {}",
        p.freed.len()
    );
    for f in &p.freed {
        let _ = writeln!(s, "  {} {}  {}: {}", f.pool, f.address, f.pod, f.why);
    }
    let _ = writeln!(
        s,
        "\nPools whose status.allocatedIPs is cleared: {}",
        if p.pools_to_clear.is_empty() {
            "none".to_string()
        } else {
            p.pools_to_clear.join(", ")
        }
    );
    let _ = writeln!(
        s,
        "SpiderEndpoints that lose Spiderpool's finalizer: {}",
        p.endpoint_finalizers.len()
    );
    for w in &p.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    if !r.dry_run {
        let _ = writeln!(
            s,
            "\nWritten: {} claim(s) created, {} Pod(s) recorded, {} endpoint(s) released, {} pool(s) cleared",
            r.claims_created, r.pods_recorded, r.endpoints_released, r.pools_cleared
        );
        for g in &r.pods_gone {
            let _ = writeln!(
                s,
                "note: Pod {g} went away during the migration; the operator collects its claims"
            );
        }
    } else {
        let _ = writeln!(
            s,
            "\nWould write: {} claim(s), {} Pod annotation(s)",
            p.claims_to_create(),
            p.pods.len()
        );
    }
    s
}
