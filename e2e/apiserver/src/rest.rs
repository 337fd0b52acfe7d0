//! REST semantics: create, update, patch, delete, binding, and background garbage collection.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

use crate::admission::{Admission, AdmissionCall, Operation};
use crate::error::{ApiError, ApiResult};
use crate::patch::{self, PatchKind};
use crate::resources::{ResourceDef, StatusOnCreate};
use crate::store::{self, finalizers, key, meta_mut, meta_str, ObjKey, Store};

/// Shared server state.
#[derive(Debug)]
pub struct State {
    store: Mutex<Store>,
    /// Latest resourceVersion; watchers wait on it.
    pub changed: tokio::sync::watch::Sender<u64>,
    /// Wakes the garbage collector.
    pub gc: tokio::sync::Notify,
    /// Set to true on shutdown; watch streams end.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// Admission (webhook) configuration.
    pub admission: Admission,
    /// Interval between BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Faults to inject.
    pub faults: crate::faults::Faults,
    /// Simulate the kubelets of Ready nodes: confirm graceful Pod deletions on them at once.
    pub kubelet: std::sync::atomic::AtomicBool,
    /// Users other than the administrator, by bearer token.
    pub users: Mutex<std::collections::HashMap<String, crate::admission::UserInfo>>,
    /// Successful write requests (POST/PUT/PATCH/DELETE, not dry run) per resource.
    pub writes: Mutex<std::collections::BTreeMap<String, u64>>,
}

/// Options common to writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `force` (server-side apply).
    pub force: bool,
    /// Who asks (the user of the bearer token), as admission webhooks see it.
    pub user: crate::admission::UserInfo,
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `propagationPolicy`: Background (default), Foreground, Orphan.
    pub propagation: Option<String>,
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
    /// Who asks (the user of the bearer token), as admission webhooks see it.
    pub user: crate::admission::UserInfo,
}

const MAX_RETRIES: usize = 100;
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

impl State {
    /// New state with the built-in kinds and initial namespaces.
    pub fn new(
        window: usize,
        admission: Admission,
        bookmark_interval: Duration,
        faults: crate::faults::Faults,
    ) -> Self {
        let store = Store::new(window);
        let rv = store.rv;
        Self {
            store: Mutex::new(store),
            changed: tokio::sync::watch::channel(rv).0,
            gc: tokio::sync::Notify::new(),
            shutdown: tokio::sync::watch::channel(false).0,
            admission,
            bookmark_interval,
            faults,
            kubelet: std::sync::atomic::AtomicBool::new(true),
            users: Mutex::new(std::collections::HashMap::new()),
            writes: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// Counts one successful write request on `resource`.
    pub fn count_write(&self, resource: String) {
        *self
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(resource)
            .or_insert(0) += 1;
    }

    /// Locks the store.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` under the lock, then wakes watchers (and the collector).
    pub fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let (out, rv) = {
            let mut s = self.lock();
            let out = f(&mut s);
            (out, s.rv)
        };
        self.changed.send_replace(rv);
        self.gc.notify_one();
        out
    }
}

fn obj_key(def: &ResourceDef, ns: &str, name: &str) -> ObjKey {
    key(
        &def.storage_group,
        &def.plural,
        if def.namespaced { ns } else { "" },
        name,
    )
}

/// Sets `apiVersion` to the version a request was made in (no conversion: as `strategy: None`).
pub fn at_version(def: &ResourceDef, mut obj: Value) -> Value {
    if def.group == "events.k8s.io" {
        rename(&mut obj, EVENT_FIELDS, false);
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(def.api_version()));
        m.insert("kind".into(), json!(def.kind));
    }
    obj
}

/// core/v1 Event field ↔ events.k8s.io/v1 Event field (Kubernetes stores both as one object).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

fn rename(obj: &mut Value, fields: &[(&str, &str)], to_core: bool) {
    if let Some(m) = obj.as_object_mut() {
        for (core, v1) in fields {
            let (from, to) = if to_core { (v1, core) } else { (core, v1) };
            if let Some(v) = m.remove(*from) {
                m.insert((*to).to_string(), v);
            }
        }
    }
}

/// The object as stored: events.k8s.io/v1 Events are kept as core/v1 Events.
pub fn to_storage(def: &ResourceDef, mut obj: Value) -> Value {
    if def.group == "events.k8s.io" {
        rename(&mut obj, EVENT_FIELDS, true);
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), json!("v1"));
        }
    }
    obj
}

fn valid_name(def: &ResourceDef, name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ends_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    let max = if def.plural == "namespaces" { 63 } else { 253 };
    if def.plural == "namespaces" && name.contains('.') {
        return Err(format!("Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
    }
    if !ok_chars || !ends_ok || name.len() > max {
        return Err(format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"));
    }
    Ok(())
}

fn check_kind(def: &ResourceDef, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str) {
        if !k.is_empty() && k != def.kind {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({}), or kind {k} does not match {}",
                obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default(),
                def.api_version(),
                def.kind
            )));
        }
    }
    Ok(())
}

fn check_namespace(def: &ResourceDef, ns: &str, obj: &mut Value) -> ApiResult<()> {
    if !def.namespaced {
        meta_mut(obj).remove("namespace");
        return Ok(());
    }
    match meta_str(obj, "namespace") {
        Some(n) if !n.is_empty() && n != ns => return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            meta_mut(obj).insert("namespace".into(), json!(ns));
        }
    }
    Ok(())
}

fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

fn crd_status(obj: &Value) -> Value {
    let now = store::now_rfc3339();
    json!({
        "acceptedNames": obj.pointer("/spec/names").cloned().unwrap_or(json!({})),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now}
        ],
        "storedVersions": obj.pointer("/spec/versions").and_then(Value::as_array).map(|vs| vs.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).filter_map(|v| v.get("name").cloned()).collect::<Vec<_>>()).unwrap_or_default()
    })
}

/// Defaulting and pruning of custom resources from their structural schema.
fn structural(def: &ResourceDef, obj: &mut Value) {
    if let Some(schema) = &def.schema {
        crate::schema::default_and_prune(obj, schema, true);
    }
}

/// Validation of custom resources against their schema: 422 Invalid listing every field error.
fn schema_validate(def: &ResourceDef, obj: &Value) -> ApiResult<()> {
    let Some(schema) = &def.schema else {
        return Ok(());
    };
    let mut errs = Vec::new();
    crate::schema::validate(obj, schema, "", &mut errs);
    if errs.is_empty() {
        return Ok(());
    }
    let name = meta_str(obj, "name").unwrap_or_default();
    let list = if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    };
    let causes: Vec<Value> = errs
        .iter()
        .map(|e| {
            let (field, msg) = e.split_once(": ").unwrap_or(("", e));
            json!({"reason": "FieldValueInvalid", "message": msg, "field": field})
        })
        .collect();
    let mut e = ApiError::new(
        422,
        "Invalid",
        format!("{}.{} \"{name}\" is invalid: {list}", def.kind, def.group),
    );
    e.details = Some(json!({"name": name, "group": def.group, "kind": def.kind, "causes": causes}));
    Err(e)
}

/// Kind-specific normalisation applied on every write.
fn normalize(def: &ResourceDef, obj: &mut Value) -> ApiResult<()> {
    if def.group.is_empty() && def.plural == "namespaces" {
        let name = meta_str(obj, "name").unwrap_or_default().to_string();
        let m = meta_mut(obj);
        if !m.get("labels").is_some_and(Value::is_object) {
            m.insert("labels".into(), json!({}));
        }
        if let Some(Value::Object(l)) = m.get_mut("labels") {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        if obj.pointer("/spec/finalizers").is_none() {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
    }
    if def.group.is_empty() && def.plural == "secrets" {
        if obj
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            obj["type"] = json!("Opaque");
        }
        // stringData is write-only: merged into data, base64-encoded.
        use base64::Engine;
        if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
            if !obj.get("data").is_some_and(Value::is_object) {
                obj["data"] = json!({});
            }
            for (k, v) in sd {
                let enc = base64::engine::general_purpose::STANDARD
                    .encode(v.as_str().unwrap_or_default());
                obj["data"][k] = json!(enc);
            }
        }
    }
    if def.group == "apiextensions.k8s.io" && def.plural == "customresourcedefinitions" {
        crate::resources::from_crd(obj).map_err(|e| {
            ApiError::invalid(
                &def.kind,
                &def.group,
                meta_str(obj, "name").unwrap_or_default(),
                "spec",
                &e,
            )
        })?;
        obj["status"] = crd_status(obj);
    }
    Ok(())
}

/// Creates an object: mutating admission, then generateName/uid/timestamps and status reset, then
/// validating admission, then the store (unless dry run).
pub async fn create(
    st: &Arc<State>,
    def: &ResourceDef,
    ns: &str,
    mut obj: Value,
    opts: &WriteOpts,
) -> ApiResult<Value> {
    check_kind(def, &obj)?;
    obj = at_version(def, obj);
    structural(def, &mut obj);
    check_namespace(def, ns, &mut obj)?;
    if def.namespaced {
        match st.lock().namespace_state(ns) {
            None => return Err(ApiError::not_found("", "namespaces", ns)),
            Some(true) => {
                let mut e = ApiError::forbidden(format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    crate::error::qualified(&def.group, &def.plural),
                    meta_str(&obj, "name").unwrap_or_default()
                ));
                e.details = Some(
                    json!({"causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}]}),
                );
                return Err(e);
            }
            Some(false) => {}
        }
    }
    let name = meta_str(&obj, "name").unwrap_or_default().to_string();
    let generate = meta_str(&obj, "generateName")
        .unwrap_or_default()
        .to_string();
    if name.is_empty() && generate.is_empty() {
        return Err(ApiError::invalid(
            &def.kind,
            &def.group,
            "",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    }
    // Mutating admission sees the object as sent: no name when generateName is used, no uid.
    obj = st
        .admission
        .mutate(
            st,
            AdmissionCall {
                op: Operation::Create,
                def,
                sub: None,
                ns,
                name: &name,
                object: Some(&obj),
                old: None,
                dry_run: opts.dry_run,
                user: &opts.user,
            },
        )
        .await?;
    obj = at_version(def, obj);
    structural(def, &mut obj);
    check_namespace(def, ns, &mut obj)?;
    // rest.BeforeCreate: status reset, server-set metadata, name from generateName.
    match &def.status_on_create {
        StatusOnCreate::Keep => {}
        StatusOnCreate::Drop => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        StatusOnCreate::Set(v) => obj["status"] = v.clone(),
    }
    {
        let m = meta_mut(&mut obj);
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            m.remove(f);
        }
        m.insert("uid".into(), json!(store::new_uid()));
        m.insert("creationTimestamp".into(), json!(store::now_rfc3339()));
        m.insert("generation".into(), json!(1));
    }
    let mut name = meta_str(&obj, "name").unwrap_or_default().to_string();
    let generated = name.is_empty();
    if generated {
        // A generated name already taken is drawn again (kube-apiserver's RetryGenerateName,
        // GA in 1.32), so 1000 ReplicaSet Pods do not fail on a 1-in-14-million collision.
        for _ in 0..8 {
            name = format!("{generate}{}", store::name_suffix());
            if st.lock().get(&obj_key(def, ns, &name)).is_none() {
                break;
            }
        }
        meta_mut(&mut obj).insert("name".into(), json!(name));
    }
    valid_name(def, &name)
        .map_err(|e| ApiError::invalid(&def.kind, &def.group, &name, "metadata.name", &e))?;
    normalize(def, &mut obj)?;
    schema_validate(def, &obj)?;
    // Validating admission sees the generated name and the uid.
    st.admission
        .validate(
            st,
            AdmissionCall {
                op: Operation::Create,
                def,
                sub: None,
                ns,
                name: &name,
                object: Some(&obj),
                old: None,
                dry_run: opts.dry_run,
                user: &opts.user,
            },
        )
        .await?;
    let k = obj_key(def, ns, &name);
    if opts.dry_run {
        let s = st.lock();
        if s.get(&k).is_some() {
            return Err(ApiError::already_exists(&def.group, &def.plural, &name));
        }
        return Ok(obj);
    }
    let out = st.write(|s| s.create(&k, to_storage(def, obj)))?;
    Ok(at_version(def, out))
}

/// Gets one object.
pub fn get(st: &State, def: &ResourceDef, ns: &str, name: &str) -> ApiResult<Value> {
    st.lock()
        .get(&obj_key(def, ns, name))
        .cloned()
        .map(|o| at_version(def, o))
        .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, name))
}

/// How an update computes the new object from the current one.
#[derive(Debug)]
pub enum Change<'a> {
    /// PUT with a full object.
    Replace(Value),
    /// PATCH with a body.
    Patch(PatchKind, &'a [u8]),
}

fn apply_change(
    change: &Change<'_>,
    def: &ResourceDef,
    sub: Option<&str>,
    cur: &Value,
    opts: &WriteOpts,
) -> ApiResult<Value> {
    match change {
        Change::Replace(v) => Ok(v.clone()),
        Change::Patch(PatchKind::Json, b) => patch::apply_json_patch(cur, b),
        Change::Patch(PatchKind::Merge, b) => patch::apply_merge_patch(cur, b),
        Change::Patch(PatchKind::Strategic, b) => {
            if def.custom {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json",
                ));
            }
            patch::apply_strategic(cur, b)
        }
        Change::Patch(PatchKind::Apply, b) => {
            let applied = parse_apply(b, opts)?;
            let _ = sub;
            Ok(patch::strategic_merge(cur, &applied, true))
        }
    }
}

/// Whether the client's body carries a resourceVersion (a precondition on the write).
fn client_sets_resource_version(change: &Change<'_>) -> bool {
    match change {
        Change::Replace(v) => meta_str(v, "resourceVersion").is_some_and(|r| !r.is_empty()),
        Change::Patch(PatchKind::Json, b) => serde_json::from_slice::<Vec<Value>>(b)
            .map(|ops| {
                ops.iter().any(|op| {
                    op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion")
                })
            })
            .unwrap_or(false),
        Change::Patch(PatchKind::Apply, b) => serde_yaml::from_slice::<Value>(b)
            .map(|v| meta_str(&v, "resourceVersion").is_some_and(|r| !r.is_empty()))
            .unwrap_or(false),
        Change::Patch(_, b) => serde_json::from_slice::<Value>(b)
            .map(|v| meta_str(&v, "resourceVersion").is_some_and(|r| !r.is_empty()))
            .unwrap_or(false),
    }
}

fn apply_key(opts: &WriteOpts, sub: Option<&str>) -> String {
    format!(
        "{}/{}",
        opts.field_manager.as_deref().unwrap_or_default(),
        sub.unwrap_or_default()
    )
}

fn leaf_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                prefix.push(k.clone());
                leaf_paths(c, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

fn has_path(v: &Value, path: &[String]) -> bool {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(c) => cur = c,
            None => return false,
        }
    }
    true
}

fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        match cur.get_mut(p) {
            Some(c) => cur = c,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// Server-side apply: fields this manager applied last time and no longer applies are removed,
/// unless another manager's applied configuration still has them.
fn drop_unapplied_fields(st: &State, k: &ObjKey, manager: &str, applied: &Value, obj: &mut Value) {
    let (prev, others) = {
        let s = st.lock();
        let prev = s.applied.get(&(k.clone(), manager.to_string())).cloned();
        let others: Vec<Value> = s
            .applied
            .iter()
            .filter(|((key, m), _)| key == k && m != manager)
            .map(|(_, v)| v.clone())
            .collect();
        (prev, others)
    };
    let Some(prev) = prev else {
        return;
    };
    let mut paths = Vec::new();
    leaf_paths(&prev, &mut Vec::new(), &mut paths);
    for p in paths {
        let protected = matches!(p.first().map(String::as_str), Some("apiVersion" | "kind"))
            || (p.first().map(String::as_str) == Some("metadata")
                && matches!(p.get(1).map(String::as_str), Some("name" | "namespace")));
        if protected || has_path(applied, &p) || others.iter().any(|o| has_path(o, &p)) {
            continue;
        }
        remove_path(obj, &p);
    }
}

fn parse_apply(b: &[u8], opts: &WriteOpts) -> ApiResult<Value> {
    if opts.field_manager.as_deref().unwrap_or_default().is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let v: Value = serde_yaml::from_slice(b)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the apply patch must be an object",
        ));
    }
    Ok(v)
}

/// Updates (PUT) or patches (PATCH) an object or its `status` subresource.
/// Returns the HTTP code (201 when server-side apply created the object) and the object.
pub async fn update(
    st: &Arc<State>,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    change: Change<'_>,
    opts: &WriteOpts,
) -> ApiResult<(u16, Value)> {
    if let Some(s) = sub {
        if s != "status" || !def.status_subresource {
            return Err(ApiError::not_found_path());
        }
    }
    let k = obj_key(def, ns, name);
    let is_patch = matches!(change, Change::Patch(..));
    let explicit_rv = client_sets_resource_version(&change);
    for _ in 0..MAX_RETRIES {
        let cur = st.lock().get(&k).cloned();
        let Some(cur) = cur else {
            if let (Change::Patch(PatchKind::Apply, b), None) = (&change, sub) {
                let mut obj = parse_apply(b, opts)?;
                check_kind(def, &obj)?;
                meta_mut(&mut obj).insert("name".into(), json!(name));
                let applied = obj.clone();
                let out = create(st, def, ns, obj, opts).await?;
                if !opts.dry_run {
                    st.lock()
                        .applied
                        .insert((k.clone(), apply_key(opts, sub)), applied);
                }
                return Ok((201, out));
            }
            return Err(ApiError::not_found(&def.group, &def.plural, name));
        };
        let cur_rv = meta_str(&cur, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        let cur_v = at_version(def, cur.clone());
        let mut new = apply_change(&change, def, sub, &cur_v, opts)?;
        let ssa = match &change {
            Change::Patch(PatchKind::Apply, b) => Some(parse_apply(b, opts)?),
            _ => None,
        };
        if let Some(applied) = &ssa {
            drop_unapplied_fields(st, &k, &apply_key(opts, sub), applied, &mut new);
        }
        check_kind(def, &new)?;
        new = at_version(def, new);
        structural(def, &mut new);
        if let Some(n) = meta_str(&new, "name") {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        check_namespace(def, ns, &mut new)?;
        let new_rv = meta_str(&new, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        if new_rv.is_empty() {
            if !(is_patch || def.unconditional_update) {
                return Err(ApiError::invalid(
                    &def.kind,
                    &def.group,
                    name,
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                ));
            }
        } else if new_rv != cur_rv {
            return Err(ApiError::conflict(&def.group, &def.plural, name));
        }
        new = prepare_update(def, sub, &cur_v, new)?;
        {
            new = st
                .admission
                .mutate(
                    st,
                    AdmissionCall {
                        op: Operation::Update,
                        def,
                        sub,
                        ns,
                        name,
                        object: Some(&new),
                        old: Some(&cur_v),
                        dry_run: opts.dry_run,
                        user: &opts.user,
                    },
                )
                .await?;
            new = at_version(def, new);
            structural(def, &mut new);
            new = prepare_update(def, sub, &cur_v, new)?;
        }
        schema_validate(def, &new)?;
        st.admission
            .validate(
                st,
                AdmissionCall {
                    op: Operation::Update,
                    def,
                    sub,
                    ns,
                    name,
                    object: Some(&new),
                    old: Some(&cur_v),
                    dry_run: opts.dry_run,
                    user: &opts.user,
                },
            )
            .await?;
        if opts.dry_run {
            return Ok((200, new));
        }
        match st.write(|s| s.replace(&k, to_storage(def, new), &cur_rv)) {
            Ok(out) => {
                if let Some(applied) = ssa {
                    st.lock()
                        .applied
                        .insert((k.clone(), apply_key(opts, sub)), applied);
                }
                return Ok((200, at_version(def, out)));
            }
            // Without a resourceVersion from the client, a concurrent write is retried on the
            // new state (kube-apiserver's GuaranteedUpdate); with one, it is a conflict.
            Err(e) if e.code == 409 && !explicit_rv => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(&def.group, &def.plural, name))
}

/// What kube-apiserver's PrepareForUpdate and metadata checks do.
fn prepare_update(
    def: &ResourceDef,
    sub: Option<&str>,
    cur: &Value,
    mut new: Value,
) -> ApiResult<Value> {
    let name = meta_str(cur, "name").unwrap_or_default().to_string();
    if sub == Some("status") {
        // Only .status changes; everything else comes from the stored object.
        let status = new.get("status").cloned();
        new = cur.clone();
        match status {
            Some(s) => new["status"] = s,
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    } else if def.status_subresource {
        match cur.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    let cm = cur.get("metadata").cloned().unwrap_or(json!({}));
    {
        let m = meta_mut(&mut new);
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "name",
            "namespace",
            "generation",
            "resourceVersion",
        ] {
            match cm.get(f) {
                Some(v) => {
                    m.insert(f.into(), v.clone());
                }
                None => {
                    m.remove(f);
                }
            }
        }
        m.remove("managedFields");
    }
    if cur.pointer("/metadata/deletionTimestamp").is_some() {
        let old_f = finalizers(cur);
        if finalizers(&new).iter().any(|f| !old_f.contains(f)) {
            return Err(ApiError::invalid(
                &def.kind,
                &def.group,
                &name,
                "metadata.finalizers",
                "Forbidden: no new finalizers can be added if the object is being deleted",
            ));
        }
    }
    if def.group.is_empty() && def.plural == "pods" {
        let old_node = cur
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let new_node = new
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if old_node != new_node && sub.is_none() {
            return Err(ApiError::invalid(&def.kind, &def.group, &name, "spec", "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
        }
    }
    if spec_part(cur) != spec_part(&new) {
        let g = cur
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        meta_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    if def.group == "apiextensions.k8s.io"
        && def.plural == "customresourcedefinitions"
        && sub.is_none()
    {
        normalize(def, &mut new)?;
    } else if def.group.is_empty() && def.plural == "namespaces" {
        normalize(def, &mut new)?;
        if let Some(s) = cur.get("status") {
            new["status"] = s.clone();
        }
    } else if def.group.is_empty() && def.plural == "secrets" {
        normalize(def, &mut new)?;
    }
    Ok(new)
}

/// Deletes an object: finalizers and graceful Pod deletion keep it with a deletionTimestamp;
/// otherwise it is removed and its dependents are collected in the background.
pub async fn delete(
    st: &Arc<State>,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    opts: &DeleteOpts,
) -> ApiResult<Value> {
    let k = obj_key(def, ns, name);
    let cur = st
        .lock()
        .get(&k)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, name))?;
    if let Some(uid) = &opts.precondition_uid {
        let have = meta_str(&cur, "uid").unwrap_or_default();
        if uid != have {
            return Err(ApiError::conflict_msg(
                &def.group,
                &def.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                ),
            ));
        }
    }
    if let Some(rv) = &opts.precondition_rv {
        let have = meta_str(&cur, "resourceVersion").unwrap_or_default();
        if rv != have {
            return Err(ApiError::conflict_msg(&def.group, &def.plural, name, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}")));
        }
    }
    if def.group.is_empty() && def.plural == "namespaces" && PROTECTED_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(format!(
            "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
        )));
    }
    let cur_v = at_version(def, cur.clone());
    st.admission
        .mutate(
            st,
            AdmissionCall {
                op: Operation::Delete,
                def,
                sub: None,
                ns,
                name,
                object: None,
                old: Some(&cur_v),
                dry_run: opts.dry_run,
                user: &opts.user,
            },
        )
        .await?;
    st.admission
        .validate(
            st,
            AdmissionCall {
                op: Operation::Delete,
                def,
                sub: None,
                ns,
                name,
                object: None,
                old: Some(&cur_v),
                dry_run: opts.dry_run,
                user: &opts.user,
            },
        )
        .await?;
    if opts.dry_run {
        return Ok(cur_v);
    }
    let policy = opts
        .propagation
        .clone()
        .unwrap_or_else(|| "Background".into());
    if !matches!(policy.as_str(), "Background" | "Foreground" | "Orphan") {
        return Err(ApiError::invalid("DeleteOptions", "", "", "propagationPolicy", &format!("Unsupported value: \"{policy}\": supported values: \"Foreground\", \"Background\", \"Orphan\"")));
    }
    let out = st.write(|s| delete_locked(s, &k, &policy, opts.grace_period))?;
    Ok(at_version(def, out))
}

/// The synchronous part of a delete, also used by the garbage collector and namespace cleanup.
pub fn delete_locked(
    s: &mut Store,
    k: &ObjKey,
    policy: &str,
    grace: Option<i64>,
) -> ApiResult<Value> {
    let cur = s
        .get(k)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&k.0, &k.1, &k.3))?;
    let rv = meta_str(&cur, "resourceVersion")
        .unwrap_or_default()
        .to_string();
    let deleting = cur.pointer("/metadata/deletionTimestamp").is_some();
    let mut new = cur.clone();
    if k.0.is_empty() && k.1 == "namespaces" {
        if deleting {
            return Ok(cur);
        }
        meta_mut(&mut new).insert("deletionTimestamp".into(), json!(store::now_rfc3339()));
        new["status"] = json!({"phase": "Terminating"});
        return s.replace(k, new, &rv);
    }
    if policy == "Orphan" {
        orphan_dependents(s, meta_str(&cur, "uid").unwrap_or_default());
    }
    // Graceful deletion of a Pod that is bound to a node and still running: the kubelet confirms.
    if k.0.is_empty() && k.1 == "pods" {
        let bound = cur
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let phase = cur
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let terminal = phase == "Succeeded" || phase == "Failed";
        let grace = grace.unwrap_or_else(|| {
            cur.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        if bound && !terminal && grace > 0 {
            if deleting {
                return Ok(cur);
            }
            let when = k8s_openapi::jiff::Timestamp::now()
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(grace))
                .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now());
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), json!(store::format_ts(when)));
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            return s.replace(k, new, &rv);
        }
    }
    let mut fins = finalizers(&cur);
    if policy == "Foreground"
        && !fins.iter().any(|f| f == "foregroundDeletion")
        && has_dependents(s, meta_str(&cur, "uid").unwrap_or_default())
    {
        fins.push("foregroundDeletion".into());
        meta_mut(&mut new).insert("finalizers".into(), json!(fins));
    }
    if fins.is_empty() {
        return s
            .remove(k)
            .ok_or_else(|| ApiError::not_found(&k.0, &k.1, &k.3));
    }
    if deleting && new == cur {
        return Ok(cur);
    }
    let m = meta_mut(&mut new);
    if !deleting {
        m.insert("deletionTimestamp".into(), json!(store::now_rfc3339()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
    }
    s.replace(k, new, &rv)
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn has_dependents(s: &Store, uid: &str) -> bool {
    !uid.is_empty()
        && s.objects
            .values()
            .any(|o| owner_uids(o).iter().any(|u| u == uid))
}

fn orphan_dependents(s: &mut Store, uid: &str) {
    if uid.is_empty() {
        return;
    }
    let deps: Vec<(ObjKey, Value)> = s
        .objects
        .iter()
        .filter(|(_, o)| owner_uids(o).iter().any(|u| u == uid))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    for (k, o) in deps {
        let rv = meta_str(&o, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        let mut n = o.clone();
        if let Some(Value::Array(refs)) = n.pointer_mut("/metadata/ownerReferences") {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
        }
        let _ = s.replace(&k, n, &rv);
    }
}

/// `metadata.<field>` (a `get` chain: `Value::pointer` parses its path on every call).
fn meta<'a>(o: &'a Value, field: &str) -> Option<&'a Value> {
    o.get("metadata")?.get(field)
}

/// One pass of the garbage collector and namespace controller. Returns whether it changed anything.
pub fn gc_pass(s: &mut Store, kubelet: bool) -> bool {
    let mut changed = false;
    if kubelet {
        changed |= kubelet_pass(s);
    }
    // Dependents whose owners are all gone are deleted (background); dangling references are removed;
    // dependents of owners deleted in the foreground are deleted.
    // Only objects with owner references or a foreground-deletion finalizer matter here. The
    // pass decides by reference and clones only what it changes (cloning every owned object
    // made it most of the stand-in's CPU under load), and `get` chains, not `Value::pointer`,
    // which parses its path each time.
    let is_foreground_deleting = |o: &Value| {
        meta(o, "deletionTimestamp").is_some()
            && meta(o, "finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"))
    };
    // Only objects being deleted can be deleted in the foreground (`Store::marked`), only
    // objects with owners can be collected (`Store::owned`): the pass does not read the rest.
    let foreground: Vec<String> = s
        .marked
        .iter()
        .filter_map(|k| s.objects.get(k))
        .filter(|o| is_foreground_deleting(o))
        .filter_map(|o| meta_str(o, "uid").map(str::to_string))
        .collect();
    let mut doomed: Vec<ObjKey> = Vec::new();
    let mut dangling: Vec<ObjKey> = Vec::new();
    for (k, o) in s.owned.iter().filter_map(|k| Some((k, s.objects.get(k)?))) {
        let Some(refs) = meta(o, "ownerReferences").and_then(Value::as_array) else {
            continue;
        };
        let owners: Vec<&str> = refs
            .iter()
            .filter_map(|r| r.get("uid").and_then(Value::as_str))
            .collect();
        if owners.is_empty() {
            continue;
        }
        let present = owners.iter().filter(|u| s.uids.contains_key(**u)).count();
        let deleting = meta(o, "deletionTimestamp").is_some();
        if present == 0 || owners.iter().any(|u| foreground.iter().any(|f| f == u)) {
            if !deleting {
                doomed.push(k.clone());
            }
        } else if present < owners.len() {
            dangling.push(k.clone());
        }
    }
    for k in doomed {
        let _ = delete_locked(s, &k, "Background", None);
        changed = true;
    }
    for k in dangling {
        let Some(o) = s.get(&k) else { continue };
        let rv = meta_str(o, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        let mut n = o.clone();
        if let Some(Value::Array(refs)) = n.pointer_mut("/metadata/ownerReferences") {
            refs.retain(|r| {
                r.get("uid")
                    .and_then(Value::as_str)
                    .is_some_and(|u| s.uids.contains_key(u))
            });
        }
        let _ = s.replace(&k, n, &rv);
        changed = true;
    }
    // Owners deleted in the foreground lose their finalizer once no dependent remains.
    for uid in foreground {
        if has_dependents(s, &uid) {
            continue;
        }
        if let Some(k) = s.uids.get(&uid).cloned() {
            if let Some(o) = s.get(&k).cloned() {
                let rv = meta_str(&o, "resourceVersion")
                    .unwrap_or_default()
                    .to_string();
                let mut n = o.clone();
                let fins: Vec<String> = finalizers(&o)
                    .into_iter()
                    .filter(|f| f != "foregroundDeletion")
                    .collect();
                meta_mut(&mut n).insert("finalizers".into(), json!(fins));
                let _ = s.replace(&k, n, &rv);
                changed = true;
            }
        }
    }
    // Terminating namespaces: delete their content; remove them once empty.
    let terminating: Vec<(ObjKey, Value)> = s
        .marked
        .iter()
        .filter(|k| k.0.is_empty() && k.1 == "namespaces")
        .filter_map(|k| Some((k.clone(), s.objects.get(k)?.clone())))
        .collect();
    for (nk, ns) in terminating {
        let name = nk.3.clone();
        let content: Vec<(ObjKey, bool)> = s
            .objects
            .iter()
            .filter(|(k, _)| k.2 == name)
            .map(|(k, o)| {
                (
                    k.clone(),
                    o.pointer("/metadata/deletionTimestamp").is_some(),
                )
            })
            .collect();
        if content.is_empty() {
            if finalizers(&ns).is_empty() {
                s.remove(&nk);
                changed = true;
            }
            continue;
        }
        for (k, deleting) in content {
            if !deleting {
                let _ = delete_locked(s, &k, "Background", Some(0));
                changed = true;
            } else if k.0.is_empty()
                && k.1 == "pods"
                && finalizers(s.get(&k).unwrap_or(&Value::Null)).is_empty()
            {
                s.remove(&k);
                changed = true;
            }
        }
    }
    changed
}

/// The kubelet simulation: a Pod being deleted gracefully on a node whose `Ready` condition is
/// `True` is confirmed (removed) once it has no finalizers; on other nodes it stays Terminating.
fn kubelet_pass(s: &mut Store) -> bool {
    let ready = |s: &Store, node: &str| {
        s.get(&key("", "nodes", "", node))
            .and_then(|n| n.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Ready")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
    };
    let doomed: Vec<ObjKey> = s
        .marked
        .iter()
        .filter_map(|k| Some((k, s.objects.get(k)?)))
        .filter(|(k, o)| {
            k.0.is_empty()
                && k.1 == "pods"
                && finalizers(o).is_empty()
                && o.pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| ready(s, n))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in &doomed {
        s.remove(k);
    }
    !doomed.is_empty()
}

/// The background garbage collector: runs after writes until shutdown.
pub async fn gc_loop(st: Arc<State>) {
    let mut shutdown = st.shutdown.subscribe();
    loop {
        // After writes, a pass runs only when one of them could give it work
        // (`Store::gc_needed`); every 500 ms it runs regardless.
        let notified = tokio::select! {
            _ = st.gc.notified() => true,
            _ = tokio::time::sleep(Duration::from_millis(500)) => false,
            _ = shutdown.changed() => return,
        };
        if notified && !st.lock().gc_needed {
            continue;
        }
        loop {
            let (changed, rv) = {
                let mut s = st.lock();
                s.gc_needed = false;
                (
                    gc_pass(
                        &mut s,
                        st.kubelet.load(std::sync::atomic::Ordering::Relaxed),
                    ),
                    s.rv,
                )
            };
            if !changed {
                break;
            }
            st.changed.send_replace(rv);
        }
    }
}

/// The Pod `binding` subresource: sets spec.nodeName; 409 when already bound.
pub async fn bind(
    st: &Arc<State>,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    body: Value,
    opts: &WriteOpts,
) -> ApiResult<Value> {
    let mut body = body;
    if let Some(m) = body.as_object_mut() {
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("kind".into(), json!("Binding"));
    }
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = json!({"name": name, "namespace": ns});
    }
    let body = st
        .admission
        .mutate(
            st,
            AdmissionCall {
                op: Operation::Create,
                def,
                sub: Some("binding"),
                ns,
                name,
                object: Some(&body),
                old: None,
                dry_run: opts.dry_run,
                user: &opts.user,
            },
        )
        .await?;
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid("Binding", "", name, "target.name", "Required value"))?
        .to_string();
    if let Some(bn) = meta_str(&body, "name") {
        if !bn.is_empty() && bn != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({bn}) does not match the name on the URL ({name})"
            )));
        }
    }
    st.admission
        .validate(
            st,
            AdmissionCall {
                op: Operation::Create,
                def,
                sub: Some("binding"),
                ns,
                name,
                object: Some(&body),
                old: None,
                dry_run: opts.dry_run,
                user: &opts.user,
            },
        )
        .await?;
    let k = obj_key(def, ns, name);
    for _ in 0..MAX_RETRIES {
        let cur = st
            .lock()
            .get(&k)
            .cloned()
            .ok_or_else(|| ApiError::not_found("", "pods", name))?;
        if cur.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict_msg(
                "",
                "pods/binding",
                name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(n) = cur
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict_msg(
                "",
                "pods/binding",
                name,
                &format!("pod {name} is already assigned to node \"{n}\""),
            ));
        }
        let rv = meta_str(&cur, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        let mut new = cur.clone();
        new["spec"]["nodeName"] = json!(node);
        let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": store::now_rfc3339()});
        match new.pointer_mut("/status/conditions") {
            Some(Value::Array(cs)) => {
                cs.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
                cs.push(cond);
            }
            _ => new["status"]["conditions"] = json!([cond]),
        }
        if opts.dry_run {
            break;
        }
        match st.write(|s| s.replace(&k, new, &rv)) {
            Ok(_) => break,
            Err(e) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}
