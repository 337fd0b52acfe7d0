//! What a cluster's controllers and scheduler would do, done with the same API calls, for the
//! stand-in (which stores workloads but runs no controllers). On a real cluster the workloads
//! are created and the cluster makes the Pods.

use aipam_crds::record::required_node_terms;
use std::collections::BTreeMap;
use std::time::Duration;

use aipam_core::affinity::{terms_match, FIELD_NODE_NAME};
use aipam_core::model::NodeInfo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};

use crate::env::describe;
use crate::{wait_for, Env, Error, Result};

/// What became of one Pod a workload asked for.
#[derive(Debug, Clone)]
pub struct PodOutcome {
    /// `Kind/name` of the workload.
    pub workload: String,
    /// Namespace.
    pub namespace: String,
    /// The stored Pod, or the admission refusal's message.
    pub result: std::result::Result<Pod, String>,
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A 10-character hash in Kubernetes' "safe" alphabet, as pod-template-hash looks.
fn template_hash(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = fnv(s);
    (0..10)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize];
            h /= ALPHABET.len() as u64;
            char::from(c)
        })
        .collect()
}

fn owner_ref(obj: &kube::api::DynamicObject, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": obj.metadata.name.clone().unwrap_or_default(),
        "uid": obj.metadata.uid.clone().unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

async fn create_pod(env: &Env, ns: &str, pod: Value, workload: &str) -> Result<PodOutcome> {
    let pod: Pod = serde_json::from_value(pod).map_err(|e| Error::Manifest {
        what: workload.to_string(),
        problem: e.to_string(),
    })?;
    let api: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let result = match api.create(&PostParams::default(), &pod).await {
        Ok(p) => Ok(p),
        Err(kube::Error::Api(e)) if (400..500).contains(&e.code) => Err(e.message),
        Err(e) => return Err(e.into()),
    };
    Ok(PodOutcome {
        workload: workload.to_string(),
        namespace: ns.to_string(),
        result,
    })
}

/// A Pod made from a template, as the workload's controller makes it.
fn pod_from_template(template: &Value, meta: Value) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec").cloned().unwrap_or(json!({}))});
    let labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let annotations = template
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or(json!({}));
    if let Some(m) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        let mut l = labels.as_object().cloned().unwrap_or_default();
        if let Some(extra) = m.get("labels").and_then(Value::as_object) {
            l.extend(extra.clone());
        }
        m.insert("labels".to_string(), Value::Object(l));
        m.insert("annotations".to_string(), annotations);
    }
    pod
}

async fn nodes(env: &Env) -> Result<Vec<NodeInfo>> {
    nodes_with(&env.client).await
}

async fn nodes_with(client: &kube::Client) -> Result<Vec<NodeInfo>> {
    let api: Api<Node> = Api::all(client.clone());
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|n| NodeInfo {
            name: n.metadata.name.unwrap_or_default(),
            labels: n.metadata.labels.unwrap_or_default(),
        })
        .collect())
}

/// Creates a workload and the Pods its controller would create (stand-in), or just the
/// workload and waits for its Pods (real cluster).
pub async fn run_workload(env: &Env, doc: &Value) -> Result<Vec<PodOutcome>> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let ns = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let workload = format!("{kind}/{name}");
    if kind == "Pod" {
        return Ok(vec![create_pod(env, &ns, doc.clone(), &workload).await?]);
    }
    let stored = env.apply(doc).await?;
    if env.has_controllers() {
        return wait_for_real_pods(env, doc, &ns, &workload).await;
    }
    let template = match kind {
        "CronJob" => doc.pointer("/spec/jobTemplate/spec/template"),
        _ => doc.pointer("/spec/template"),
    }
    .cloned()
    .ok_or_else(|| Error::Manifest {
        what: describe(doc),
        problem: "no Pod template".to_string(),
    })?;
    let count = |p: &str| doc.pointer(p).and_then(Value::as_u64).unwrap_or(1);
    let mut out = Vec::new();
    match kind {
        "Deployment" => {
            let hash = template_hash(&format!("{ns}/{name}/{template}"));
            let rs_name = format!("{name}-{hash}");
            let mut rs_template = template.clone();
            if let Some(l) = rs_template
                .pointer_mut("/metadata/labels")
                .and_then(Value::as_object_mut)
            {
                l.insert("pod-template-hash".to_string(), json!(hash));
            }
            let rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": rs_name, "namespace": ns,
                    "ownerReferences": [owner_ref(&stored, "apps/v1", "Deployment")]},
                "spec": {"replicas": count("/spec/replicas"),
                    "selector": doc.pointer("/spec/selector").cloned().unwrap_or(json!({})),
                    "template": rs_template.clone()},
            });
            let rs = env.apply(&rs).await?;
            for _ in 0..count("/spec/replicas") {
                let meta = json!({"generateName": format!("{rs_name}-"), "namespace": ns,
                    "ownerReferences": [owner_ref(&rs, "apps/v1", "ReplicaSet")]});
                out.push(
                    create_pod(env, &ns, pod_from_template(&rs_template, meta), &workload).await?,
                );
            }
        }
        "ReplicaSet" | "Job" => {
            let n = if kind == "Job" {
                count("/spec/parallelism")
            } else {
                count("/spec/replicas")
            };
            let api_version = if kind == "Job" { "batch/v1" } else { "apps/v1" };
            for _ in 0..n {
                let meta = json!({"generateName": format!("{name}-"), "namespace": ns,
                    "ownerReferences": [owner_ref(&stored, api_version, kind)]});
                out.push(
                    create_pod(env, &ns, pod_from_template(&template, meta), &workload).await?,
                );
            }
        }
        "StatefulSet" => {
            for i in 0..count("/spec/replicas") {
                let pod_name = format!("{name}-{i}");
                let meta = json!({"name": pod_name, "namespace": ns,
                    "labels": {"statefulset.kubernetes.io/pod-name": pod_name},
                    "ownerReferences": [owner_ref(&stored, "apps/v1", "StatefulSet")]});
                out.push(
                    create_pod(env, &ns, pod_from_template(&template, meta), &workload).await?,
                );
            }
        }
        "DaemonSet" => {
            let selector: BTreeMap<String, String> = template
                .pointer("/spec/nodeSelector")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            for node in nodes(env).await? {
                if !selector.iter().all(|(k, v)| node.labels.get(k) == Some(v)) {
                    continue;
                }
                // The DaemonSet controller pins each Pod with a required node affinity.
                let mut t = template.clone();
                let pin = json!({"nodeSelectorTerms": [{"matchFields": [
                    {"key": FIELD_NODE_NAME, "operator": "In", "values": [node.name]}]}]});
                if let Some(spec) = t.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert(
                        "affinity".to_string(),
                        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": pin}}),
                    );
                }
                let meta = json!({"generateName": format!("{name}-"), "namespace": ns,
                    "ownerReferences": [owner_ref(&stored, "apps/v1", "DaemonSet")]});
                out.push(create_pod(env, &ns, pod_from_template(&t, meta), &workload).await?);
            }
        }
        _ => {}
    }
    Ok(out)
}

/// The Pods a cluster's controller made for a workload, and one refusal for each Pod it could
/// not make (the message of its `FailedCreate` Event, as `kubectl describe` shows it). Waits
/// until the Pods made and the refusals add up to what the workload asks for, then until the
/// count has held for two seconds (the controller retries refused creates).
async fn wait_for_real_pods(
    env: &Env,
    doc: &Value,
    ns: &str,
    workload: &str,
) -> Result<Vec<PodOutcome>> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let labels: BTreeMap<String, String> = doc
        .pointer("/spec/template/metadata/labels")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let api: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let lp = ListParams::default().labels(&selector.join(","));
    let stored = env.api_for(doc).await?;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(env.client.clone(), ns);
    // The last count seen and since when it holds.
    let seen = std::sync::Mutex::new((None::<(usize, usize)>, std::time::Instant::now()));
    let (pods, refusals) = wait_for(
        &format!("Pods of {workload}"),
        Duration::from_secs(120),
        || {
            let (api, lp, stored, events, name) = (
                api.clone(),
                lp.clone(),
                stored.clone(),
                events.clone(),
                name.clone(),
            );
            let seen = &seen;
            async move {
                let want = wanted(kind, &stored.get(&name).await.ok()?)?;
                let pods: Vec<Pod> = api
                    .list(&lp)
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect();
                let refusal = failed_create(&events, kind, &name).await;
                let refused = if refusal.is_some() {
                    want.saturating_sub(pods.len())
                } else {
                    0
                };
                let now = (pods.len(), refused);
                let held = {
                    let mut g = seen.lock().ok()?;
                    if g.0 != Some(now) {
                        *g = (Some(now), std::time::Instant::now());
                    }
                    g.1.elapsed()
                };
                (pods.len() + refused >= want && held >= Duration::from_secs(2))
                    .then(|| (pods, vec![refusal.unwrap_or_default(); refused]))
            }
        },
    )
    .await?;
    let outcome = |result| PodOutcome {
        workload: workload.to_string(),
        namespace: ns.to_string(),
        result,
    };
    Ok(pods
        .into_iter()
        .map(|p| outcome(Ok(p)))
        .chain(refusals.into_iter().map(|m| outcome(Err(m))))
        .collect())
}

/// How many Pods a workload asks for, as its controller sees it (`None` until a DaemonSet's
/// controller has counted its nodes).
fn wanted(kind: &str, obj: &kube::api::DynamicObject) -> Option<usize> {
    let n = |p: &str| obj.data.pointer(p).and_then(Value::as_u64);
    let want = match kind {
        "DaemonSet" => n("/status/desiredNumberScheduled").filter(|&d| d > 0)?,
        "Job" => n("/spec/parallelism").unwrap_or(1),
        _ => n("/spec/replicas").unwrap_or(1),
    };
    usize::try_from(want).ok()
}

/// The message of the newest `FailedCreate` Event of the controller that makes `kind/name`'s
/// Pods (a Deployment's ReplicaSets are named `<name>-<hash>`), without the controller's
/// `Error creating: ` prefix.
async fn failed_create(
    events: &Api<k8s_openapi::api::core::v1::Event>,
    kind: &str,
    name: &str,
) -> Option<String> {
    let lp = ListParams::default().fields("reason=FailedCreate");
    let mut found: Vec<_> = events
        .list(&lp)
        .await
        .ok()?
        .items
        .into_iter()
        .filter(|e| {
            let o = &e.involved_object;
            let on = o.name.as_deref().unwrap_or("");
            match kind {
                "Deployment" => {
                    o.kind.as_deref() == Some("ReplicaSet")
                        && on.strip_prefix(name).is_some_and(|r| r.starts_with('-'))
                }
                _ => o.kind.as_deref() == Some(kind) && on == name,
            }
        })
        .collect();
    found.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
    let msg = found.last()?.message.clone()?;
    Some(
        msg.strip_prefix("Error creating: ")
            .unwrap_or(&msg)
            .to_string(),
    )
}

/// Places an unscheduled Pod on a node that its required node affinity and nodeSelector admit
/// (the `spread`-th of them, to spread Pods over zones) and binds it, as the scheduler does.
/// Returns the node, or `None` when no node admits the Pod.
///
/// Where a real scheduler runs ([`Env::has_controllers`]), it waits for the scheduler to bind
/// the Pod instead (60 s; `None` if it does not).
pub async fn schedule(env: &Env, pod: &Pod, spread: usize) -> Result<Option<String>> {
    if env.has_controllers() {
        return wait_scheduled(&env.client, pod).await;
    }
    schedule_with(&env.client, pod, spread).await
}

/// Waits until `pod` is Running (its node ran the CNI chain), for up to `deadline`; the Pod as
/// stored then. On a time-out the error names the node simulator's last CNI error for it.
pub async fn wait_running(env: &Env, pod: &Pod, deadline: Duration) -> Result<Pod> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let res = wait_for(&format!("{ns}/{name} to be Running"), deadline, || {
        let (api, name) = (api.clone(), name.clone());
        async move {
            let p = api.get(&name).await.ok()?;
            (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
        }
    })
    .await;
    res.map_err(
        |e| match env.nodes().and_then(|n| n.last_error(&ns, &name)) {
            Some(why) => Error::Timeout {
                what: format!("{ns}/{name} to be Running (the node's last CNI error: {why})"),
                secs: deadline.as_secs_f64(),
            },
            None => e,
        },
    )
}

/// Waits until the scheduler has bound `pod`; its node, or `None` after 60 s.
pub async fn wait_scheduled(client: &kube::Client, pod: &Pod) -> Result<Option<String>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let res = wait_for(
        &format!("the scheduler to bind {ns}/{name}"),
        Duration::from_secs(60),
        || {
            let (api, name) = (api.clone(), name.clone());
            async move { api.get(&name).await.ok()?.spec?.node_name }
        },
    )
    .await;
    match res {
        Ok(n) => Ok(Some(n)),
        Err(Error::Timeout { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`schedule`] with a client (for tasks that do not hold the environment).
pub async fn schedule_with(
    client: &kube::Client,
    pod: &Pod,
    spread: usize,
) -> Result<Option<String>> {
    if let Some(n) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
        return Ok(Some(n));
    }
    let terms = required_node_terms(pod);
    let selector = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.clone())
        .unwrap_or_default();
    let fits: Vec<NodeInfo> = nodes_with(client)
        .await?
        .into_iter()
        .filter(|n| terms_match(&terms, n))
        .filter(|n| selector.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
        .collect();
    if fits.is_empty() {
        return Ok(None);
    }
    let node = fits[spread % fits.len()].name.clone();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": ns},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let _: Value = api
        .create_subresource("binding", &name, &PostParams::default(), &binding)
        .await?;
    Ok(Some(node))
}
