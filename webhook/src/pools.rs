//! The hooks of SpiderIPPool, SpiderSubnet and SpiderReservedIP: the rules of
//! `aipam_core::validate` (the same `aipamctl validate` applies offline), checked against the
//! cluster as the cache mirrors it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aipam_core::auto_pool;
use aipam_core::config::CONFIGMAP_NAME;
use aipam_core::model::{Labels, Pool};
use aipam_core::ranges::{IpFamily, IpSet};
use aipam_core::validate::{
    abbreviate, validate_pool, validate_pool_delete, validate_pool_in_subnets,
    validate_pool_overlaps, validate_pool_update, validate_pool_with, validate_reserved_ip,
    validate_subnet_overlaps, validate_subnet_with, FieldError, Invalid, Mode,
};
use aipam_crds::convert::{pool_draft, reserved_ip_draft, subnet_draft};
use aipam_crds::{SpiderIPPool, SpiderReservedIP, SpiderSubnet};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::DynamicObject;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::cache::Cache;
use crate::response::{allow, allow_with_warnings, deny};

/// The finalizer the operator removes once a pool's addresses are free (Spiderpool's name).
pub const POOL_FINALIZER: &str = "spiderpool.spidernet.io";

/// The spiderpool-conf key that makes deleting a pool or subnet in use a refusal.
const DELETE_KEY: &str = "enableValidatingResourcesDeletedWebhook";

/// The IP version of a CIDR (or address) as written, if it reads as one.
fn parse_family(subnet: &str) -> Option<i64> {
    let addr = subnet.split('/').next()?.trim();
    match addr.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(_) => Some(4),
        std::net::IpAddr::V6(_) => Some(6),
    }
}

/// Why a hook could not read its request.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No object where one is needed.
    #[error("the AdmissionReview carries no {0}")]
    Missing(&'static str),
    /// The object does not have the kind's shape.
    #[error("cannot read the {kind}: {source}")]
    Shape {
        /// The kind.
        kind: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

fn decode<T: DeserializeOwned>(
    obj: Option<&DynamicObject>,
    kind: &'static str,
) -> Result<T, DecodeError> {
    let obj = obj.ok_or(DecodeError::Missing(kind))?;
    serde_json::to_value(obj)
        .and_then(serde_json::from_value)
        .map_err(|source| DecodeError::Shape { kind, source })
}

fn invalid(req: &AdmissionRequest<DynamicObject>, e: &Invalid) -> AdmissionResponse {
    deny(req, 422, &e.to_string())
}

fn bad(req: &AdmissionRequest<DynamicObject>, e: &DecodeError) -> AdmissionResponse {
    deny(req, 400, &e.to_string())
}

fn pool_invalid(name: &str, field: &str, message: String) -> Invalid {
    Invalid {
        kind: "SpiderIPPool",
        name: name.to_string(),
        errors: vec![FieldError {
            field: field.to_string(),
            message,
        }],
    }
}

/// How long a pool this replica admitted counts for overlap checks before the cache has it.
const RECENT_FOR: Duration = Duration::from_secs(60);

/// The pool hooks.
#[derive(Debug, Clone)]
pub struct PoolHooks {
    /// What the cluster looks like.
    pub cache: Cache,
    /// Pools this replica allowed lately, until its cache shows them: two overlapping pools
    /// applied one right after the other (`kubectl apply -f dir/`) must not both pass because
    /// the first one's watch event had not arrived yet. Overlapping pools would hand out the
    /// same address twice, as claims are named per pool.
    recent: Arc<Mutex<Vec<(Pool, Instant)>>>,
}

impl PoolHooks {
    /// Over this cache.
    pub fn new(cache: Cache) -> PoolHooks {
        PoolHooks {
            cache,
            recent: Arc::default(),
        }
    }

    /// The valid pools other than `name`: the cache's, and those allowed here lately that the
    /// cache has not seen yet (by name).
    fn other_pools(&self, name: &str) -> Vec<Pool> {
        let mut out: Vec<Pool> = self
            .cache
            .pools()
            .into_iter()
            .filter_map(|e| e.pool.ok())
            .filter(|p| p.name != name)
            .collect();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.retain(|(p, at)| at.elapsed() < RECENT_FOR && self.cache.pool(&p.name).is_none());
        for (p, _) in recent.iter() {
            if p.name != name && !out.iter().any(|o| o.name == p.name) {
                out.push(p.clone());
            }
        }
        out
    }

    fn remember(&self, pool: Pool) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.retain(|(p, _)| p.name != pool.name);
        recent.push((pool, Instant::now()));
    }

    /// `/mutate-ippool` (CREATE): `spec.ipVersion` from the subnet when absent, the finalizer,
    /// the `ippool-cidr` label, and the SpiderSubnet link and inheritance
    /// ([`PoolHooks::subnet_link_ops`]). The user's `ips` are left as written.
    pub fn mutate_pool(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        if req.operation != Operation::Create {
            return allow(req);
        }
        let Some(obj) = req.object.as_ref() else {
            return bad(req, &DecodeError::Missing("SpiderIPPool"));
        };
        let raw = match serde_json::to_value(obj) {
            Ok(v) => v,
            Err(source) => {
                return bad(
                    req,
                    &DecodeError::Shape {
                        kind: "SpiderIPPool",
                        source,
                    },
                )
            }
        };
        let mut ops = Vec::new();
        let version = raw.pointer("/spec/ipVersion").filter(|v| !v.is_null());
        if version.is_none() && raw.pointer("/spec").is_some_and(Value::is_object) {
            if let Some(v) = raw
                .pointer("/spec/subnet")
                .and_then(Value::as_str)
                .and_then(parse_family)
            {
                ops.push(PatchOperation::Add(AddOperation {
                    path: PointerBuf::from_tokens(["spec", "ipVersion"]),
                    value: json!(v),
                }));
            }
        }
        match raw
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
        {
            Some(list) if list.iter().any(|f| f == POOL_FINALIZER) => {}
            Some(_) => ops.push(PatchOperation::Add(AddOperation {
                path: PointerBuf::from_tokens(["metadata", "finalizers", "-"]),
                value: json!(POOL_FINALIZER),
            })),
            None => ops.push(PatchOperation::Add(AddOperation {
                path: PointerBuf::from_tokens(["metadata", "finalizers"]),
                value: json!([POOL_FINALIZER]),
            })),
        }
        ops.extend(self.subnet_link_ops(&raw));
        if ops.is_empty() {
            return allow(req);
        }
        match allow(req).with_patch(Patch(ops)) {
            Ok(r) => r,
            Err(e) => deny(req, 500, &format!("cannot encode the patch: {e}")),
        }
    }

    /// Spiderpool's pool mutation beyond the finalizer: the `ipam.spidernet.io/ippool-cidr`
    /// label on every pool, and, with the SpiderSubnet feature on, the link to the SpiderSubnet
    /// of the pool's CIDR (controller ownerReference, `owner-spider-subnet` label) and the
    /// subnet's gateway and routes for a pool that sets none ([`auto_pool::inherit`]).
    fn subnet_link_ops(&self, raw: &Value) -> Vec<PatchOperation> {
        let mut ops = Vec::new();
        let Some(cidr) = raw.pointer("/spec/subnet").and_then(Value::as_str) else {
            return ops;
        };
        let labels: Labels = raw
            .pointer("/metadata/labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        let mut add_labels: Labels = Labels::new();
        let cidr_label = auto_pool::cidr_label_value(cidr);
        if labels.get(auto_pool::LABEL_IPPOOL_CIDR) != Some(&cidr_label) {
            add_labels.insert(auto_pool::LABEL_IPPOOL_CIDR.to_string(), cidr_label);
        }
        let enabled = self
            .cache
            .config()
            .map(|c| c.enable_spider_subnet)
            .unwrap_or(false);
        let refs: Vec<Value> = raw
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let controller = refs
            .iter()
            .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            .map(|r| {
                (
                    r.get("kind").and_then(Value::as_str).unwrap_or(""),
                    r.get("name").and_then(Value::as_str).unwrap_or(""),
                )
            });
        let link = enabled
            .then(|| {
                auto_pool::inherit(
                    &auto_pool::PoolAsWritten {
                        subnet: cidr,
                        labels: &labels,
                        controller,
                        has_gateway: raw.pointer("/spec/gateway").is_some_and(|g| !g.is_null()),
                        has_routes: raw.pointer("/spec/routes").is_some_and(|r| !r.is_null()),
                    },
                    &self.cache.subnets(),
                )
            })
            .flatten();
        if let Some(link) = &link {
            if link.set_label {
                add_labels.insert(
                    auto_pool::LABEL_OWNER_SUBNET.to_string(),
                    link.subnet.clone(),
                );
            }
            if let (true, Some(uid)) = (link.set_controller, self.cache.subnet_uid(&link.subnet)) {
                let owner = json!({
                    "apiVersion": aipam_crds::API_VERSION, "kind": "SpiderSubnet",
                    "name": link.subnet, "uid": uid,
                    "controller": true, "blockOwnerDeletion": true,
                });
                ops.push(PatchOperation::Add(AddOperation {
                    path: if refs.is_empty() {
                        PointerBuf::from_tokens(["metadata", "ownerReferences"])
                    } else {
                        PointerBuf::from_tokens(["metadata", "ownerReferences", "-"])
                    },
                    value: if refs.is_empty() {
                        json!([owner])
                    } else {
                        owner
                    },
                }));
            }
            if let Some(gw) = link.gateway {
                ops.push(PatchOperation::Add(AddOperation {
                    path: PointerBuf::from_tokens(["spec", "gateway"]),
                    value: json!(gw.to_string()),
                }));
            }
            if let Some(routes) = &link.routes {
                ops.push(PatchOperation::Add(AddOperation {
                    path: PointerBuf::from_tokens(["spec", "routes"]),
                    value: json!(routes
                        .iter()
                        .map(|r| json!({"dst": r.dst.to_string(), "gw": r.gw.to_string()}))
                        .collect::<Vec<_>>()),
                }));
            }
        }
        if !add_labels.is_empty() {
            if raw
                .pointer("/metadata/labels")
                .is_some_and(Value::is_object)
            {
                for (k, v) in add_labels {
                    ops.push(PatchOperation::Add(AddOperation {
                        path: PointerBuf::from_tokens(["metadata", "labels", k.as_str()]),
                        value: json!(v),
                    }));
                }
            } else {
                ops.push(PatchOperation::Add(AddOperation {
                    path: PointerBuf::from_tokens(["metadata", "labels"]),
                    value: json!(add_labels),
                }));
            }
        }
        ops
    }

    fn in_use(&self, pool: &str) -> IpSet {
        self.cache.used(pool)
    }

    /// `/validate-ippool` (CREATE, UPDATE, DELETE).
    pub fn validate_pool(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        match req.operation {
            Operation::Create | Operation::Update => {}
            Operation::Delete => return self.validate_pool_delete(req),
            Operation::Connect => return allow(req),
        }
        let new: SpiderIPPool = match decode(req.object.as_ref(), "SpiderIPPool") {
            Ok(p) => p,
            Err(e) => return bad(req, &e),
        };
        let old: Option<SpiderIPPool> = if req.operation == Operation::Update {
            match decode(req.old_object.as_ref(), "SpiderIPPool") {
                Ok(p) => Some(p),
                Err(e) => return bad(req, &e),
            }
        } else {
            None
        };
        if let Some(old) = &old {
            // Metadata and status changes (finalizer removal, labels) are not re-judged.
            if old.spec == new.spec {
                return allow(req);
            }
        }
        let name = new.metadata.name.clone().unwrap_or_default();
        let draft = match pool_draft(&new) {
            Ok(d) => d,
            Err(e) => return invalid(req, &pool_invalid(&name, e.field, e.source.to_string())),
        };
        let (pool, warnings) = match validate_pool_with(&draft, mode_of(req)) {
            Ok(c) => (c.value, c.warnings),
            Err(e) => return invalid(req, &e),
        };
        let others = self.other_pools(&pool.name);
        if let Err(e) = validate_pool_overlaps(&pool, others.iter()) {
            return invalid(req, &e);
        }
        if let Some(old) = &old {
            let old_pool = pool_draft(old).ok().and_then(|d| validate_pool(&d).ok());
            if let Some(old_pool) = old_pool {
                if let Err(e) = validate_pool_update(&old_pool, &pool, &self.in_use(&name)) {
                    return invalid(req, &e);
                }
            }
        }
        let mut warnings = warnings;
        if self.cache.config().is_ok_and(|c| c.enable_spider_subnet) {
            let subnets = self.cache.subnets();
            match validate_pool_in_subnets(&pool, subnets.iter()) {
                Ok(c) => warnings.extend(c.warnings),
                Err(e) => return invalid(req, &e),
            }
        }
        if !req.dry_run {
            self.remember(pool);
        }
        allow_with_warnings(req, described("SpiderIPPool", &name, &warnings))
    }

    fn validate_pool_delete(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let old: SpiderIPPool = match decode(req.old_object.as_ref(), "SpiderIPPool") {
            Ok(p) => p,
            // Nothing to judge by: let the deletion through, the finalizer still holds it.
            Err(_) => return allow(req),
        };
        let name = old
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| req.name.clone());
        let Some(pool) = pool_draft(&old).ok().and_then(|d| validate_pool(&d).ok()) else {
            return allow(req);
        };
        let in_use = self.in_use(&name);
        if in_use.is_empty() {
            return allow(req);
        }
        if self.refuse_deletes_in_use() {
            return match validate_pool_delete(&pool, &in_use) {
                Ok(()) => allow(req),
                Err(e) => invalid(req, &e),
            };
        }
        // Spiderpool's default: the deletion goes through and the finalizer holds the pool.
        let held = old
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == POOL_FINALIZER));
        let fate = if held {
            format!(
                "it stays Terminating, serving no new Pod, until they are released (finalizer {POOL_FINALIZER}); delete their Pods to release them"
            )
        } else {
            format!(
                "it has no finalizer {POOL_FINALIZER}, so it goes at once and their SpiderIPClaims stay until their Pods are deleted"
            )
        };
        let warning = format!(
            "SpiderIPPool {name} still has {} address(es) in use ({}): {fate}. Set {DELETE_KEY}: true in {CONFIGMAP_NAME} to refuse such deletions instead",
            in_use.len(),
            abbreviate(&in_use)
        );
        allow_with_warnings(req, vec![warning])
    }

    /// Whether deleting a pool or subnet still in use is refused
    /// (`enableValidatingResourcesDeletedWebhook`; an unreadable configuration reads as the
    /// default, false: the finalizer still keeps the addresses safe).
    fn refuse_deletes_in_use(&self) -> bool {
        self.cache
            .config()
            .is_ok_and(|c| c.enable_validating_resources_deleted_webhook)
    }

    /// `/validate-subnet` DELETE: refused while the subnet gives addresses to pools
    /// (`status.allocatedIPCount`, as Spiderpool judges it) when
    /// `enableValidatingResourcesDeletedWebhook` is true; allowed otherwise.
    fn validate_subnet_delete(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        if !self.refuse_deletes_in_use() {
            return allow(req);
        }
        let Ok(old) = decode::<SpiderSubnet>(req.old_object.as_ref(), "SpiderSubnet") else {
            return allow(req);
        };
        let allocated = old
            .status
            .as_ref()
            .and_then(|s| s.allocated_ip_count)
            .unwrap_or(0);
        if allocated <= 0 {
            return allow(req);
        }
        let name = old
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| req.name.clone());
        let pools: Vec<String> = match validate_subnet_with(&subnet_draft(&old), Mode::Existing) {
            Ok(s) => self
                .cache
                .pools()
                .into_iter()
                .filter_map(|e| e.pool.ok())
                .filter(|p| p.subnet == s.value.subnet)
                .map(|p| p.name)
                .collect(),
            Err(_) => Vec::new(),
        };
        let which = if pools.is_empty() {
            String::new()
        } else {
            format!(" ({})", pools.join(", "))
        };
        invalid(
            req,
            &Invalid {
                kind: "SpiderSubnet",
                name,
                errors: vec![FieldError {
                    field: "metadata.name".to_string(),
                    message: format!(
                        "the subnet still gives {allocated} address(es) to its pools{which}; delete or shrink those pools first ({DELETE_KEY} is true in {CONFIGMAP_NAME})"
                    ),
                }],
            },
        )
    }

    /// `/validate-subnet` (CREATE, UPDATE, DELETE).
    pub fn validate_subnet(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        match req.operation {
            Operation::Create | Operation::Update => {}
            Operation::Delete => return self.validate_subnet_delete(req),
            Operation::Connect => return allow(req),
        }
        let new: SpiderSubnet = match decode(req.object.as_ref(), "SpiderSubnet") {
            Ok(s) => s,
            Err(e) => return bad(req, &e),
        };
        if req.operation == Operation::Update {
            if let Ok(old) = decode::<SpiderSubnet>(req.old_object.as_ref(), "SpiderSubnet") {
                if old.spec == new.spec {
                    return allow(req);
                }
            }
        }
        let (subnet, warnings) = match validate_subnet_with(&subnet_draft(&new), mode_of(req)) {
            Ok(c) => (c.value, c.warnings),
            Err(e) => return invalid(req, &e),
        };
        let others = self.cache.subnets();
        match validate_subnet_overlaps(&subnet, others.iter()) {
            Ok(()) => {
                let text = described("SpiderSubnet", &subnet.name, &warnings);
                allow_with_warnings(req, text)
            }
            Err(e) => invalid(req, &e),
        }
    }

    /// `/validate-reservedip` (CREATE, UPDATE): well-formed; an address a Pod holds now is a
    /// warning.
    pub fn validate_reserved_ip(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        if !matches!(req.operation, Operation::Create | Operation::Update) {
            return allow(req);
        }
        let new: SpiderReservedIP = match decode(req.object.as_ref(), "SpiderReservedIP") {
            Ok(s) => s,
            Err(e) => return bad(req, &e),
        };
        let r = match validate_reserved_ip(&reserved_ip_draft(&new)) {
            Ok(r) => r,
            Err(e) => return invalid(req, &e),
        };
        // Spiderpool admits reserving an address a Pod holds; so do we, saying who keeps it.
        let mut warnings = Vec::new();
        for c in self.cache.claims() {
            let Some(a) = c.address else { continue };
            if IpFamily::of(&a) != r.family || !r.ips.contains(&a) {
                continue;
            }
            let s = &c.object.spec;
            let holder = match &s.pod_name {
                Some(p) => format!("Pod {}/{p}", s.namespace),
                None => format!(
                    "a Pod being created in namespace {} (reservation {})",
                    s.namespace, s.reservation
                ),
            };
            warnings.push(FieldError {
                field: "spec.ips".to_string(),
                message: format!(
                    "{a} is held by {holder} (SpiderIPClaim {}, pool {}); it stays with that Pod \
                     and is not handed out again once released",
                    c.object.metadata.name.as_deref().unwrap_or_default(),
                    s.pool
                ),
            });
        }
        allow_with_warnings(req, described("SpiderReservedIP", &r.name, &warnings))
    }
}

/// How an admitted object is read: strictly when it is created, as Spiderpool reads stored
/// objects when it is updated.
fn mode_of(req: &AdmissionRequest<DynamicObject>) -> Mode {
    if req.operation == Operation::Create {
        Mode::Create
    } else {
        Mode::Existing
    }
}

/// Admission warnings, each naming the object.
fn described(kind: &str, name: &str, warnings: &[FieldError]) -> Vec<String> {
    warnings
        .iter()
        .map(|w| format!("{kind} {name}: {w}"))
        .collect()
}
