//! Resource definitions: built-in kinds and kinds served from CustomResourceDefinitions.

use serde_json::{json, Value};

/// One printer column (`additionalPrinterColumns` of a CRD version, or a built-in default).
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: String,
    /// Optional format (`name`, ...).
    pub format: String,
    /// Description.
    pub description: String,
    /// 0 = shown by default, >0 = only with `-o wide`.
    pub priority: i64,
    /// Simple JSONPath, e.g. `.spec.subnet` or `.status.ips[0].interface`.
    pub json_path: String,
}

impl PrinterColumn {
    fn new(name: &str, type_: &str, json_path: &str, priority: i64) -> Self {
        Self {
            name: name.into(),
            type_: type_.into(),
            format: String::new(),
            description: String::new(),
            priority,
            json_path: json_path.into(),
        }
    }
}

/// What happens to `.status` when an object is created.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusOnCreate {
    /// Keep what the client sent.
    Keep,
    /// Drop it (custom resources with a status subresource, workloads).
    Drop,
    /// Replace it with this value (Pods start `Pending`, Namespaces `Active`).
    Set(Value),
}

/// A served resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    /// API group, empty for core.
    pub group: String,
    /// Version served.
    pub version: String,
    /// Plural resource name (URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster scoped.
    pub namespaced: bool,
    /// Short names for discovery.
    pub short_names: Vec<String>,
    /// Categories for discovery.
    pub categories: Vec<String>,
    /// Whether `/status` is a subresource (main writes then ignore `.status`).
    pub status_subresource: bool,
    /// Printer columns for Table responses (NAME is always first, AGE appended for built-ins).
    pub printer_columns: Vec<PrinterColumn>,
    /// Whether a PUT without resourceVersion is an unconditional update (true for most built-ins, false for CRs).
    pub unconditional_update: bool,
    /// `.status` on create.
    pub status_on_create: StatusOnCreate,
    /// Whether this is a custom resource (from a CRD).
    pub custom: bool,
    /// Whether this version is the storage/preferred version of its group (for discovery ordering).
    pub preferred: bool,
    /// The `openAPIV3Schema` of a custom resource version (defaulting, pruning, validation).
    pub schema: Option<Value>,
    /// The group objects are stored under (events.k8s.io Events are core Events, as in Kubernetes).
    pub storage_group: String,
}

impl ResourceDef {
    /// `apiVersion` string.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Group/version as used in discovery.
    pub fn group_version(&self) -> String {
        self.api_version()
    }

    /// Field selectors this resource accepts besides `metadata.name` and `metadata.namespace`.
    pub fn extra_field_labels(&self) -> &'static [&'static str] {
        match (self.group.as_str(), self.plural.as_str()) {
            ("", "pods") => &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
            ("", "events") => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ("", "secrets") => &["type"],
            ("", "namespaces") => &["status.phase"],
            ("", "nodes") => &["spec.unschedulable"],
            _ => &[],
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    categories: &[&str],
    status: bool,
    columns: Vec<PrinterColumn>,
    status_on_create: StatusOnCreate,
) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: categories.iter().map(|s| s.to_string()).collect(),
        status_subresource: status,
        printer_columns: columns,
        unconditional_update: true,
        status_on_create,
        custom: false,
        preferred: true,
        schema: None,
        storage_group: if group == "events.k8s.io" {
            String::new()
        } else {
            group.to_string()
        },
    }
}

/// The built-in kinds this stand-in serves.
pub fn builtins() -> Vec<ResourceDef> {
    use StatusOnCreate::{Drop, Keep, Set};
    let c = PrinterColumn::new;
    vec![
        builtin(
            "",
            "v1",
            "namespaces",
            "Namespace",
            false,
            &["ns"],
            &[],
            true,
            vec![c("Status", "string", ".status.phase", 0)],
            Set(json!({"phase": "Active"})),
        ),
        builtin(
            "",
            "v1",
            "nodes",
            "Node",
            false,
            &["no"],
            &[],
            true,
            vec![c(
                "Status",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
                0,
            )],
            Keep,
        ),
        builtin(
            "",
            "v1",
            "pods",
            "Pod",
            true,
            &["po"],
            &["all"],
            true,
            vec![
                c("Status", "string", ".status.phase", 0),
                c("IP", "string", ".status.podIP", 1),
                c("Node", "string", ".spec.nodeName", 1),
            ],
            Set(json!({"phase": "Pending", "qosClass": "BestEffort"})),
        ),
        builtin(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            true,
            &["cm"],
            &[],
            false,
            vec![],
            Keep,
        ),
        builtin(
            "",
            "v1",
            "secrets",
            "Secret",
            true,
            &[],
            &[],
            false,
            vec![c("Type", "string", ".type", 0)],
            Keep,
        ),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            &[],
            false,
            vec![],
            Keep,
        ),
        builtin(
            "",
            "v1",
            "services",
            "Service",
            true,
            &["svc"],
            &["all"],
            true,
            vec![
                c("Type", "string", ".spec.type", 0),
                c("Cluster-IP", "string", ".spec.clusterIP", 0),
            ],
            Keep,
        ),
        builtin(
            "",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            &[],
            false,
            vec![
                c("Type", "string", ".type", 0),
                c("Reason", "string", ".reason", 0),
                c("Message", "string", ".message", 0),
            ],
            Keep,
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            &[],
            false,
            vec![
                c("Type", "string", ".type", 0),
                c("Reason", "string", ".reason", 0),
                c("Note", "string", ".note", 0),
            ],
            Keep,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            &[],
            false,
            vec![c("Holder", "string", ".spec.holderIdentity", 0)],
            Keep,
        ),
        builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            &["all"],
            true,
            vec![c("Replicas", "integer", ".spec.replicas", 0)],
            Drop,
        ),
        builtin(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            true,
            &["rs"],
            &["all"],
            true,
            vec![c("Desired", "integer", ".spec.replicas", 0)],
            Drop,
        ),
        builtin(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            true,
            &["sts"],
            &["all"],
            true,
            vec![c("Replicas", "integer", ".spec.replicas", 0)],
            Drop,
        ),
        builtin(
            "apps",
            "v1",
            "daemonsets",
            "DaemonSet",
            true,
            &["ds"],
            &["all"],
            true,
            vec![],
            Drop,
        ),
        builtin(
            "batch",
            "v1",
            "jobs",
            "Job",
            true,
            &[],
            &["all"],
            true,
            vec![],
            Drop,
        ),
        builtin(
            "batch",
            "v1",
            "cronjobs",
            "CronJob",
            true,
            &["cj"],
            &["all"],
            true,
            vec![c("Schedule", "string", ".spec.schedule", 0)],
            Drop,
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
            &[],
            &["api-extensions"],
            false,
            vec![],
            Keep,
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
            &[],
            &["api-extensions"],
            false,
            vec![],
            Keep,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            &["api-extensions"],
            true,
            vec![],
            Drop,
        ),
    ]
}

/// The definitions a CustomResourceDefinition object serves (one per served version).
pub fn from_crd(crd: &Value) -> Result<Vec<ResourceDef>, String> {
    let spec = crd.get("spec").ok_or("spec: Required value")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or("spec.group: Required value")?;
    let names = spec.get("names").ok_or("spec.names: Required value")?;
    let plural = names
        .get("plural")
        .and_then(Value::as_str)
        .ok_or("spec.names.plural: Required value")?;
    let kind = names
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("spec.names.kind: Required value")?;
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let strs = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let short_names = strs(names.get("shortNames"));
    let categories = strs(names.get("categories"));
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let expected = format!("{plural}.{group}");
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name != expected {
        return Err(format!(
            "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or("spec.versions: Required value")?;
    let mut out = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let version = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("spec.versions[].name: Required value")?;
        let status_subresource = v.pointer("/subresources/status").is_some();
        let printer_columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: c
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        type_: c
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("string")
                            .to_string(),
                        format: c
                            .get("format")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        description: c
                            .get("description")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        json_path: c
                            .get("jsonPath")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|| {
                vec![PrinterColumn::new(
                    "Age",
                    "date",
                    ".metadata.creationTimestamp",
                    0,
                )]
            });
        out.push(ResourceDef {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            singular: singular.clone(),
            kind: kind.to_string(),
            namespaced,
            short_names: short_names.clone(),
            categories: categories.clone(),
            status_subresource,
            printer_columns,
            unconditional_update: false,
            status_on_create: if status_subresource {
                StatusOnCreate::Drop
            } else {
                StatusOnCreate::Keep
            },
            custom: true,
            preferred: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            storage_group: group.to_string(),
        });
    }
    if out.is_empty() {
        return Err("spec.versions: Invalid value: must have at least one served version".into());
    }
    Ok(out)
}
