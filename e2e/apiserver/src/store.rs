//! The in-memory store: objects keyed by group/resource, namespace and name, one global
//! resourceVersion counter, a bounded event window for watches, and the registry of served kinds.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::resources::{self, ResourceDef};

/// Key of one stored object: (group, plural, namespace or "", name).
pub type ObjKey = (String, String, String, String);

/// One entry of the event window.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// resourceVersion this event produced.
    pub rv: u64,
    /// Group of the object.
    pub group: String,
    /// Plural of the object.
    pub plural: String,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub etype: &'static str,
    /// The object after the change (the last state for DELETED).
    pub object: Value,
    /// The object before the change (for MODIFIED), used to turn selector transitions into ADDED/DELETED.
    pub old: Option<Value>,
}

/// The registry of served resources.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    defs: Vec<Arc<ResourceDef>>,
}

impl Registry {
    /// With the built-in kinds.
    pub fn with_builtins() -> Self {
        Self {
            defs: resources::builtins().into_iter().map(Arc::new).collect(),
        }
    }

    /// Looks a resource up by group, version and plural.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
            .cloned()
    }

    /// Looks a resource up by group and plural (any version), preferring the storage version.
    pub fn lookup_any(&self, group: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        let mut found: Vec<_> = self
            .defs
            .iter()
            .filter(|d| d.group == group && d.plural == plural)
            .collect();
        found.sort_by_key(|d| !d.preferred);
        found.first().map(|d| (*d).clone())
    }

    /// Looks a resource up by apiVersion and kind.
    pub fn lookup_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceDef>> {
        self.defs
            .iter()
            .find(|d| d.api_version() == api_version && d.kind == kind)
            .cloned()
    }

    /// All definitions.
    pub fn all(&self) -> &[Arc<ResourceDef>] {
        &self.defs
    }

    /// Replaces the definitions served from one CRD (group + plural).
    pub fn set_crd(&mut self, group: &str, plural: &str, defs: Vec<ResourceDef>) {
        self.defs
            .retain(|d| !(d.custom && d.group == group && d.plural == plural));
        self.defs.extend(defs.into_iter().map(Arc::new));
    }
}

/// The store proper. All methods are synchronous and run under the state's lock.
#[derive(Debug)]
pub struct Store {
    /// Last resourceVersion handed out.
    pub rv: u64,
    /// Stored objects.
    pub objects: BTreeMap<ObjKey, Value>,
    /// uid -> key.
    pub uids: HashMap<String, ObjKey>,
    /// The event window.
    pub events: VecDeque<StoredEvent>,
    /// The highest resourceVersion no longer covered by the window (watches from below it get 410).
    pub compacted: u64,
    /// Window size.
    pub window: usize,
    /// Served resources.
    pub registry: Registry,
    /// Server-side apply: the last configuration each manager applied, per object and subresource.
    pub applied: HashMap<(ObjKey, String), Value>,
    /// A write since the last collector pass could give it work: a removal, a deletion mark,
    /// a namespace or node change, or an owner reference to an object that does not exist.
    /// Writes that cannot (most creates and updates) leave the pass, which reads every object,
    /// to its periodic run.
    pub gc_needed: bool,
    /// Keys of objects carrying a deletionTimestamp (the collector, the kubelet simulation
    /// and the namespace controller only look at these and [`Store::owned`], not at every
    /// object).
    pub marked: BTreeSet<ObjKey>,
    /// Keys of objects with owner references.
    pub owned: BTreeSet<ObjKey>,
}

/// Current time in RFC 3339 (seconds), as Kubernetes writes timestamps.
pub fn now_rfc3339() -> String {
    format_ts(k8s_openapi::jiff::Timestamp::now())
}

/// Formats a timestamp as Kubernetes does.
pub fn format_ts(ts: k8s_openapi::jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A random-ish u64 (std's randomly keyed hasher; no extra dependency).
pub fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one((n, std::time::SystemTime::now()))
}

/// A random UUID v4 string.
pub fn new_uid() -> String {
    let a = random_u64();
    let b = random_u64();
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-{}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        ["8", "9", "a", "b"][(b % 4) as usize],
        &hex[17..20],
        &hex[20..32]
    )
}

/// The suffix Kubernetes appends to `generateName`: 5 characters from its alphabet.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut r = random_u64();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(r % ALPHABET.len() as u64) as usize] as char;
            r /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Reads `metadata.<field>` as a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

/// Mutable `metadata`, created when missing.
pub fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// The object's finalizers.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses a resourceVersion string.
pub fn parse_rv(s: &str) -> Option<u64> {
    s.parse().ok()
}

impl Store {
    /// A store with the built-in kinds and the three initial namespaces.
    pub fn new(window: usize) -> Self {
        let mut s = Self {
            rv: 0,
            objects: BTreeMap::new(),
            uids: HashMap::new(),
            events: VecDeque::new(),
            compacted: 0,
            window: window.max(1),
            registry: Registry::with_builtins(),
            applied: HashMap::new(),
            gc_needed: false,
            marked: BTreeSet::new(),
            owned: BTreeSet::new(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": new_uid(), "creationTimestamp": now_rfc3339(),
                    "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"}
            });
            s.insert_raw(&key("", "namespaces", "", ns), obj);
        }
        s
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn push_event(&mut self, k: &ObjKey, etype: &'static str, object: Value, old: Option<Value>) {
        self.events.push_back(StoredEvent {
            rv: self.rv,
            group: k.0.clone(),
            plural: k.1.clone(),
            namespace: k.2.clone(),
            etype,
            object,
            old,
        });
        while self.events.len() > self.window {
            if let Some(e) = self.events.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    /// Drops every event from the window (tests use this to provoke 410 Gone).
    pub fn compact(&mut self) {
        self.events.clear();
        self.compacted = self.rv;
    }

    /// Gets one object.
    pub fn get(&self, k: &ObjKey) -> Option<&Value> {
        self.objects.get(k)
    }

    /// Whether a namespace exists; `Some(true)` when it is terminating.
    pub fn namespace_state(&self, ns: &str) -> Option<bool> {
        self.objects
            .get(&key("", "namespaces", "", ns))
            .map(|n| n.pointer("/metadata/deletionTimestamp").is_some())
    }

    /// Inserts a new object, assigning its resourceVersion. Fails with AlreadyExists.
    pub fn insert_raw(&mut self, k: &ObjKey, mut obj: Value) -> Value {
        let rv = self.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        if let Some(uid) = meta_str(&obj, "uid") {
            self.uids.insert(uid.to_string(), k.clone());
        }
        self.note_gc(k, &obj);
        self.index(k, Some(&obj));
        self.objects.insert(k.clone(), obj.clone());
        self.push_event(k, "ADDED", obj.clone(), None);
        obj
    }

    /// Keeps [`Store::marked`] and [`Store::owned`] up to date for `k` (None: removed).
    fn index(&mut self, k: &ObjKey, obj: Option<&Value>) {
        let meta = obj.and_then(|o| o.get("metadata"));
        if meta.and_then(|m| m.get("deletionTimestamp")).is_some() {
            self.marked.insert(k.clone());
        } else {
            self.marked.remove(k);
        }
        let owned = meta
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty());
        if owned {
            self.owned.insert(k.clone());
        } else {
            self.owned.remove(k);
        }
    }

    /// Sets [`Store::gc_needed`] when a write of `obj` can give the collector work.
    fn note_gc(&mut self, k: &ObjKey, obj: &Value) {
        if self.gc_needed {
            return;
        }
        let meta = obj.get("metadata");
        let marked = meta.and_then(|m| m.get("deletionTimestamp")).is_some();
        let dangling = meta
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .is_some_and(|refs| {
                refs.iter().any(|r| {
                    r.get("uid")
                        .and_then(Value::as_str)
                        .is_some_and(|u| !self.uids.contains_key(u))
                })
            });
        let topology = k.0.is_empty() && (k.1 == "namespaces" || k.1 == "nodes");
        self.gc_needed = marked || dangling || topology;
    }

    /// Creates an object (AlreadyExists when the key is taken).
    pub fn create(&mut self, k: &ObjKey, obj: Value) -> ApiResult<Value> {
        if self.objects.contains_key(k) {
            return Err(ApiError::already_exists(&k.0, &k.1, &k.3));
        }
        let out = self.insert_raw(k, obj);
        self.after_write(k, &out);
        Ok(out)
    }

    /// Replaces an object whose stored resourceVersion must still be `expected_rv`.
    /// A write that changes nothing keeps the resourceVersion and emits no event.
    /// An object with a deletionTimestamp and no finalizers left is deleted.
    pub fn replace(&mut self, k: &ObjKey, mut obj: Value, expected_rv: &str) -> ApiResult<Value> {
        let Some(cur) = self.objects.get(k).cloned() else {
            return Err(ApiError::not_found(&k.0, &k.1, &k.3));
        };
        if meta_str(&cur, "resourceVersion") != Some(expected_rv) {
            return Err(ApiError::conflict(&k.0, &k.1, &k.3));
        }
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(expected_rv));
        if obj == cur {
            return Ok(cur);
        }
        let rv = self.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let graceful = obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            > 0;
        if obj.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers(&obj).is_empty()
            && !graceful
            && k.1 != "namespaces"
        {
            self.remove_at(k, obj.clone(), false);
            return Ok(obj);
        }
        self.note_gc(k, &obj);
        self.index(k, Some(&obj));
        self.objects.insert(k.clone(), obj.clone());
        self.push_event(k, "MODIFIED", obj.clone(), Some(cur));
        self.after_write(k, &obj);
        Ok(obj)
    }

    /// Removes an object for good, emitting DELETED with a new resourceVersion.
    pub fn remove(&mut self, k: &ObjKey) -> Option<Value> {
        let cur = self.objects.get(k).cloned()?;
        Some(self.remove_at(k, cur, true))
    }

    fn remove_at(&mut self, k: &ObjKey, mut obj: Value, bump: bool) -> Value {
        if bump {
            let rv = self.next_rv();
            meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        }
        self.objects.remove(k);
        self.index(k, None);
        self.gc_needed = true;
        if let Some(uid) = meta_str(&obj, "uid") {
            self.uids.remove(uid);
        }
        if !self.applied.is_empty() {
            self.applied.retain(|(key, _), _| key != k);
        }
        self.push_event(k, "DELETED", obj.clone(), None);
        if k.0 == "apiextensions.k8s.io" && k.1 == "customresourcedefinitions" {
            self.crd_removed(&obj);
        }
        obj
    }

    /// Side effects of writes: CRDs register their resources.
    fn after_write(&mut self, k: &ObjKey, obj: &Value) {
        if k.0 == "apiextensions.k8s.io"
            && k.1 == "customresourcedefinitions"
            && obj.pointer("/metadata/deletionTimestamp").is_none()
        {
            if let Ok(defs) = resources::from_crd(obj) {
                if let (Some(g), Some(p)) = (
                    obj.pointer("/spec/group").and_then(Value::as_str),
                    obj.pointer("/spec/names/plural").and_then(Value::as_str),
                ) {
                    self.registry.set_crd(g, p, defs);
                }
            }
        }
    }

    fn crd_removed(&mut self, crd: &Value) {
        let (Some(g), Some(p)) = (
            crd.pointer("/spec/group")
                .and_then(Value::as_str)
                .map(str::to_string),
            crd.pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .map(str::to_string),
        ) else {
            return;
        };
        let keys: Vec<ObjKey> = self
            .objects
            .keys()
            .filter(|k| k.0 == g && k.1 == p)
            .cloned()
            .collect();
        for k in keys {
            self.remove(&k);
        }
        self.registry.set_crd(&g, &p, vec![]);
    }

    /// Objects of one resource, optionally in one namespace, in key order.
    pub fn list(&self, group: &str, plural: &str, ns: Option<&str>) -> Vec<&Value> {
        let start = key(group, plural, ns.unwrap_or_default(), "");
        self.objects
            .range(start..)
            .take_while(|(k, _)| k.0 == group && k.1 == plural && ns.is_none_or(|n| k.2 == n))
            .map(|(_, v)| v)
            .collect()
    }
}

/// Builds an object key.
pub fn key(group: &str, plural: &str, ns: &str, name: &str) -> ObjKey {
    (
        group.to_string(),
        plural.to_string(),
        ns.to_string(),
        name.to_string(),
    )
}
