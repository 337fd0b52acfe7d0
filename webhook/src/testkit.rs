//! Helpers for tests (unit and integration): a cache and in-memory side effects loaded from
//! manifests, and AdmissionRequests shaped as kube-apiserver sends them.

use aipam_core::config::CONFIGMAP_NAME;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use kube::core::DynamicObject;
use serde_json::{json, Value};

use crate::cache::{Cache, Object, StoreKind};
use crate::effects::{ControllerObject, MemoryEffects};

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not YAML.
    #[error("manifest is not YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// Not the kind's shape.
    #[error("manifest of kind {kind}: {source}")]
    Shape {
        /// The kind.
        kind: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

fn typed<T: serde::de::DeserializeOwned>(kind: &str, v: Value) -> Result<T, LoadError> {
    serde_json::from_value(v).map_err(|source| LoadError::Shape {
        kind: kind.to_string(),
        source,
    })
}

/// Loads multi-document YAML: pools, subnets, reserved IPs, claims, namespaces, nodes and the
/// `spiderpool-conf` ConfigMap go to the cache; NetworkAttachmentDefinitions, ReplicaSets,
/// Jobs and claims go to the in-memory effects. Returns how many documents were used.
pub fn load(yaml: &str, cache: &Cache, effects: &MemoryEffects) -> Result<usize, LoadError> {
    let mut n = 0;
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if v.is_null() {
            continue;
        }
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let ns = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match kind.as_str() {
            "SpiderIPPool" => cache.apply(Object::Pool(Box::new(typed(&kind, v)?))),
            "SpiderSubnet" => cache.apply(Object::Subnet(typed(&kind, v)?)),
            "SpiderReservedIP" => cache.apply(Object::ReservedIp(typed(&kind, v)?)),
            "SpiderIPClaim" => {
                let c: aipam_crds::SpiderIPClaim = typed(&kind, v)?;
                effects.with(|s| s.claims.insert(name.clone(), c.clone()));
                cache.apply(Object::Claim(c));
            }
            "Namespace" => {
                let mut v = v;
                v["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                cache.apply(Object::Namespace(typed(&kind, v)?));
            }
            "Node" => cache.apply(Object::Node(Box::new(typed(&kind, v)?))),
            "ConfigMap" if name == CONFIGMAP_NAME => cache.apply(Object::Config(typed(&kind, v)?)),
            "NetworkAttachmentDefinition" => {
                let config = v["spec"]["config"].as_str().unwrap_or_default().to_string();
                effects.with(|s| s.networks.insert(format!("{ns}/{name}"), config));
            }
            "ReplicaSet" | "Job" => {
                let controller = v["metadata"]["ownerReferences"]
                    .as_array()
                    .and_then(|l| l.iter().find(|r| r["controller"] == json!(true)))
                    .cloned()
                    .map(|r| typed(&kind, r))
                    .transpose()?;
                let replicas = v["spec"]["replicas"]
                    .as_u64()
                    .or_else(|| v["spec"]["parallelism"].as_u64());
                effects.with(|s| {
                    s.controllers.insert(
                        format!("{kind}/{ns}/{name}"),
                        ControllerObject {
                            replicas,
                            controller,
                        },
                    )
                });
            }
            _ => continue,
        }
        n += 1;
    }
    Ok(n)
}

/// A cache with every store marked listed.
pub fn synced_cache() -> Cache {
    let cache = Cache::new();
    for k in StoreKind::ALL {
        cache.mark_synced(k);
    }
    cache
}

/// The AdmissionReview body kube-apiserver sends for `operation` on `object` (and `old`).
/// `resource` is (group, version, resource, kind).
pub fn review_body(
    uid: &str,
    resource: (&str, &str, &str, &str),
    operation: &str,
    namespace: Option<&str>,
    object: Option<&Value>,
    old: Option<&Value>,
    dry_run: bool,
) -> Value {
    let (group, version, plural, kind) = resource;
    let name = object
        .or(old)
        .and_then(|o| o["metadata"]["name"].as_str())
        .unwrap_or_default();
    let options_kind = match operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        _ => "DeleteOptions",
    };
    let mut request = json!({
        "uid": uid,
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": plural},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": plural},
        "name": name,
        "operation": operation,
        "userInfo": {"username": "system:admin", "groups": ["system:masters", "system:authenticated"]},
        "object": object.cloned().unwrap_or(Value::Null),
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": dry_run,
        "options": {"kind": options_kind, "apiVersion": "meta.k8s.io/v1"},
    });
    if let Some(ns) = namespace {
        request["namespace"] = json!(ns);
    }
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": request,
    })
}

/// Why a body is not an AdmissionReview request.
#[derive(Debug, thiserror::Error)]
#[error("not an AdmissionReview request: {0}")]
pub struct NotAReview(String);

/// Decodes a review body as the HTTP layer does.
pub fn request_of(body: &Value) -> Result<AdmissionRequest<DynamicObject>, NotAReview> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(body.clone()).map_err(|e| NotAReview(e.to_string()))?;
    review
        .try_into()
        .map_err(|e: kube::core::admission::ConvertAdmissionReviewError| NotAReview(e.to_string()))
}

/// A Pod CREATE request.
pub fn pod_create(
    uid: &str,
    pod: &Value,
    dry_run: bool,
) -> Result<AdmissionRequest<DynamicObject>, NotAReview> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    request_of(&review_body(
        uid,
        ("", "v1", "pods", "Pod"),
        "CREATE",
        Some(ns),
        Some(pod),
        None,
        dry_run,
    ))
}

/// Applies an admission response's JSON Patch to `object`.
pub fn apply_patch(
    object: &Value,
    resp: &kube::core::admission::AdmissionResponse,
) -> Result<Value, String> {
    let mut out = object.clone();
    if let Some(bytes) = &resp.patch {
        let patch: json_patch::Patch =
            serde_json::from_slice(bytes).map_err(|e| format!("patch is not JSON Patch: {e}"))?;
        json_patch::patch(&mut out, &patch).map_err(|e| format!("patch does not apply: {e}"))?;
    }
    Ok(out)
}

/// This process's resident memory in KiB (`VmRSS` of /proc/self/status; 0 where unreadable),
/// for the benches that state memory.
pub fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
