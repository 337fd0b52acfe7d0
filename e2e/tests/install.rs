#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The installation: what `kubectl kustomize config/default` and `kubectl kustomize
//! config/cert-manager` render, checked object by object, then applied to the API stand-in, and
//! the certgen script run against it.
//!
//! Needs the `kubectl` of the machine (its embedded kustomize); every test here says SKIPPED
//! loudly and passes when there is none. The stand-in validates custom resources against their
//! CRD schemas but not built-in kinds (their objects are only stored), and it does not serve
//! RBAC, PodDisruptionBudgets or cert-manager's kinds at all: those are checked here by
//! deserializing them into the k8s-openapi types (built-in kinds) and by the rules below, not by
//! an API server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use aipam_e2e::repo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

const NAMESPACE: &str = "aipam-system";
/// The project's images, without the tag; every container runs one of them.
const IMAGES: [&str; 4] = [
    "aipam/aipam-webhook",
    "aipam/aipam-operator",
    "aipam/aipam-cni",
    "aipam/aipam-certgen",
];
/// Kinds without a namespace.
const CLUSTER_SCOPED: [&str; 6] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];
/// Kinds the API stand-in does not serve (see e2e/apiserver/README.md): checked here only.
const NOT_SERVED_BY_STAND_IN: [&str; 7] = [
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "PodDisruptionBudget",
    "Issuer",
    "Certificate",
];

fn kubectl_available() -> bool {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "\n*** SKIPPED: kubectl is not installed; the installation (config/default, \
             config/cert-manager) was NOT checked ***\n"
        );
    }
    ok
}

/// `kubectl kustomize config/<dir>`, as documents.
fn render(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join("config").join(dir))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize config/{dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs(&String::from_utf8(out.stdout).unwrap())
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn name(d: &Value) -> &str {
    s(&d["metadata"]["name"])
}

fn id(d: &Value) -> String {
    format!(
        "{} {}/{}",
        s(&d["kind"]),
        s(&d["metadata"]["namespace"]),
        name(d)
    )
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str, n: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && name(d) == n)
        .unwrap_or_else(|| panic!("no {kind} {n} rendered"))
}

fn arr(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// Workloads with their Pod template spec.
fn workloads(docs: &[Value]) -> Vec<(&Value, &Value)> {
    docs.iter()
        .filter(|d| matches!(s(&d["kind"]), "Deployment" | "DaemonSet" | "Job"))
        .map(|d| (d, &d["spec"]["template"]))
        .collect()
}

fn containers(template: &Value) -> Vec<Value> {
    let mut all = arr(&template["spec"]["containers"]);
    all.extend(arr(&template["spec"]["initContainers"]));
    all
}

/// The container running `image` (without tag), with its Pod template.
fn container_of<'a>(docs: &'a [Value], image: &str) -> (&'a Value, Value) {
    for (_, t) in workloads(docs) {
        for c in containers(t) {
            if s(&c["image"]).split(':').next() == Some(image) {
                return (t, c);
            }
        }
    }
    panic!("no container runs {image}")
}

/// `--flag=value` arguments of a container, as (flag, value).
fn flags(container: &Value) -> Vec<(String, String)> {
    arr(&container["args"])
        .iter()
        .filter_map(|a| a.as_str())
        .filter(|a| a.starts_with("--"))
        .map(|a| match a.split_once('=') {
            Some((f, v)) => (f.to_string(), v.to_string()),
            None => (a.to_string(), String::new()),
        })
        .collect()
}

fn flag<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// The long flags a binary accepts: from its clap definition (`struct Args` in `main_rs`), and
/// from `--help` of the built binary in the target directory when it is there.
fn accepted_flags(main_rs: &str, binary: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join(main_rs)).unwrap();
    let start = text.find("struct Args {").unwrap();
    let body = &text[start..];
    let body = &body[..body.find("\n}").unwrap()];
    let mut from_source = BTreeSet::new();
    let mut attrs = String::new();
    for line in body.lines().skip(1) {
        let t = line.trim();
        if t.starts_with("///") || t.starts_with("//") {
            continue;
        }
        let field = t
            .strip_prefix("pub ")
            .unwrap_or(t)
            .split_once(':')
            .map(|(n, _)| n.trim())
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        match field {
            Some(f) if !t.starts_with('#') => {
                if attrs.contains("long") {
                    from_source.insert(format!("--{}", f.replace('_', "-")));
                }
                attrs.clear();
            }
            _ => attrs.push_str(t),
        }
    }
    assert!(!from_source.is_empty(), "no flags found in {main_rs}");
    match aipam_e2e::bin_path(binary) {
        Ok(bin) => {
            let out = Command::new(&bin).arg("--help").output().unwrap();
            let help = String::from_utf8_lossy(&out.stdout).into_owned();
            let from_help: BTreeSet<String> = help
                .lines()
                .map(str::trim_start)
                .filter(|l| l.starts_with('-'))
                .flat_map(|l| l.split([' ', ',']))
                .filter(|w| w.starts_with("--"))
                .map(|w| w.split(['=', '<']).next().unwrap().to_string())
                .collect();
            // Both must accept what the manifests pass: the intersection.
            from_source.intersection(&from_help).cloned().collect()
        }
        Err(e) => {
            eprintln!("{e}: checking {binary}'s flags against {main_rs} only");
            from_source
        }
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(doc: &Value) {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} is not a valid {}: {e}", id(doc), s(&doc["kind"])));
    let back = serde_json::to_value(&typed).unwrap();
    // A field the type does not know (a typo, a wrong level) is dropped by the round trip.
    if let Some(path) = first_difference(doc, &back, String::new()) {
        panic!(
            "{}: {path} is not a field of {} (dropped when read as its type)",
            id(doc),
            s(&doc["kind"])
        );
    }
}

/// Where `a` and `b` differ (numbers compared by value: `4094` is `4094.0`).
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => (x.as_f64() != y.as_f64()).then_some(at),
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    format!("{at}.{k}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, format!("{at}[{i}]"))),
        _ => (a != b).then_some(at),
    }
}

/// Every built-in object deserializes into its k8s-openapi type without losing a field.
fn check_kinds(docs: &[Value]) {
    use k8s_openapi::api::admissionregistration::v1 as adm;
    use k8s_openapi::api::apps::v1 as apps;
    use k8s_openapi::api::batch::v1 as batch;
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::policy::v1 as policy;
    use k8s_openapi::api::rbac::v1 as rbac;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    for d in docs {
        match (s(&d["apiVersion"]), s(&d["kind"])) {
            ("v1", "Namespace") => roundtrip::<core::Namespace>(d),
            ("v1", "ConfigMap") => roundtrip::<core::ConfigMap>(d),
            ("v1", "Secret") => roundtrip::<core::Secret>(d),
            ("v1", "Service") => roundtrip::<core::Service>(d),
            ("v1", "ServiceAccount") => roundtrip::<core::ServiceAccount>(d),
            ("apps/v1", "Deployment") => roundtrip::<apps::Deployment>(d),
            ("apps/v1", "DaemonSet") => roundtrip::<apps::DaemonSet>(d),
            ("batch/v1", "Job") => roundtrip::<batch::Job>(d),
            ("policy/v1", "PodDisruptionBudget") => roundtrip::<policy::PodDisruptionBudget>(d),
            ("rbac.authorization.k8s.io/v1", "Role") => roundtrip::<rbac::Role>(d),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => roundtrip::<rbac::RoleBinding>(d),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => roundtrip::<rbac::ClusterRole>(d),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                roundtrip::<rbac::ClusterRoleBinding>(d)
            }
            ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
                roundtrip::<adm::MutatingWebhookConfiguration>(d)
            }
            ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
                roundtrip::<adm::ValidatingWebhookConfiguration>(d)
            }
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                roundtrip::<ext::CustomResourceDefinition>(d)
            }
            ("cert-manager.io/v1", "Issuer" | "Certificate") => {
                assert!(d["spec"].is_object(), "{}", id(d))
            }
            (v, k) => panic!("unexpected {k} ({v}) {}", name(d)),
        }
    }
}

/// What both renderings must satisfy.
fn check_installation(docs: &[Value], expected_images: &[&str]) {
    // Identity and namespaces.
    let mut seen = BTreeSet::new();
    for d in docs {
        for field in ["apiVersion", "kind"] {
            assert!(!s(&d[field]).is_empty(), "{field} missing: {d}");
        }
        assert!(!name(d).is_empty(), "metadata.name missing: {d}");
        let ns = &d["metadata"]["namespace"];
        if CLUSTER_SCOPED.contains(&s(&d["kind"])) {
            assert!(ns.is_null(), "{}: cluster-scoped, has a namespace", id(d));
        } else {
            assert_eq!(s(ns), NAMESPACE, "{}", id(d));
        }
        assert!(seen.insert(id(d)), "{} rendered twice", id(d));
    }
    assert_eq!(name(of_kind(docs, "Namespace")[0]), NAMESPACE);
    check_kinds(docs);

    // Images: the project's, one tag, the workspace version.
    let mut images = BTreeSet::new();
    let mut tags = BTreeSet::new();
    for (w, t) in workloads(docs) {
        for c in containers(t) {
            let image = s(&c["image"]);
            let (repo_name, tag) = image
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("{}: image {image} has no tag", id(w)));
            assert!(
                IMAGES.contains(&repo_name),
                "{}: {image} is not one of the project's images {IMAGES:?}",
                id(w)
            );
            images.insert(repo_name.to_string());
            tags.insert(tag.to_string());
            assert_eq!(c["imagePullPolicy"], "IfNotPresent", "{}", id(w));
        }
    }
    let want: BTreeSet<String> = expected_images.iter().map(|i| i.to_string()).collect();
    assert_eq!(images, want);
    assert_eq!(
        tags,
        BTreeSet::from([env!("CARGO_PKG_VERSION").to_string()]),
        "one tag for every image: the workspace version"
    );

    // Services: they select Pods, and every targetPort exists in those Pods.
    for svc in of_kind(docs, "Service") {
        let selector = svc["spec"]["selector"].as_object().unwrap();
        let selected: Vec<&Value> = workloads(docs)
            .into_iter()
            .filter(|(_, t)| {
                selector
                    .iter()
                    .all(|(k, v)| &t["metadata"]["labels"][k] == v)
            })
            .map(|(_, t)| t)
            .collect();
        assert!(!selected.is_empty(), "{} selects no Pods", id(svc));
        for p in arr(&svc["spec"]["ports"]) {
            let target = if p["targetPort"].is_null() {
                p["port"].clone()
            } else {
                p["targetPort"].clone()
            };
            for t in &selected {
                let found = containers(t)
                    .iter()
                    .flat_map(|c| arr(&c["ports"]))
                    .any(|cp| match &target {
                        Value::String(n) => &cp["name"] == n,
                        n => &cp["containerPort"] == n,
                    });
                assert!(
                    found,
                    "{}: targetPort {target} is no container port",
                    id(svc)
                );
            }
        }
    }

    // Webhook configurations: the Service, its port, the paths the server serves.
    let mut registered = BTreeSet::new();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let configs = of_kind(docs, kind);
        assert_eq!(configs.len(), 1, "{kind}");
        for wh in arr(&configs[0]["webhooks"]) {
            let whn = s(&wh["name"]);
            let cc = &wh["clientConfig"];
            assert!(cc["url"].is_null(), "{whn}: url instead of service");
            let svc_ref = &cc["service"];
            let svc = docs
                .iter()
                .find(|d| {
                    d["kind"] == "Service"
                        && d["metadata"]["name"] == svc_ref["name"]
                        && d["metadata"]["namespace"] == svc_ref["namespace"]
                })
                .unwrap_or_else(|| panic!("{whn}: Service {svc_ref} is not rendered"));
            let port = if svc_ref["port"].is_null() {
                Value::from(443)
            } else {
                svc_ref["port"].clone()
            };
            assert!(
                arr(&svc["spec"]["ports"]).iter().any(|p| p["port"] == port),
                "{whn}: port {port} is not a port of {}",
                id(svc)
            );
            let path = s(&svc_ref["path"]);
            let hook = aipam_webhook::Hook::ALL
                .into_iter()
                .find(|h| h.path() == path)
                .unwrap_or_else(|| panic!("{whn}: path {path} is not served by the webhook"));
            assert_eq!(
                hook.is_mutating(),
                kind.starts_with("Mutating"),
                "{whn}: {path}"
            );
            // The guard's path serves two configurations (Pod UPDATE, and a Binding carrying
            // the reservation annotation).
            assert!(
                registered.insert(path.to_string()) || whn == "pods-binding.validate.aipam.io",
                "{path} twice"
            );
        }
    }
    let served: BTreeSet<String> = aipam_webhook::Hook::ALL
        .iter()
        .map(|h| h.path().to_string())
        .collect();
    assert_eq!(
        registered, served,
        "every path the webhook serves is registered"
    );

    // Arguments: flags the binaries accept, consistent with the ports and the configuration.
    let conf = one(docs, "ConfigMap", "spiderpool-conf");
    let conf_ns = s(&conf["metadata"]["namespace"]);
    let (wt, wc) = container_of(docs, "aipam/aipam-webhook");
    let (_, oc) = container_of(docs, "aipam/aipam-operator");
    for (c, main_rs, bin) in [
        (&wc, "webhook/src/main.rs", "aipam-webhook"),
        (&oc, "operator/src/main.rs", "aipam-operator"),
    ] {
        let accepted = accepted_flags(main_rs, bin);
        for (f, _) in flags(c) {
            assert!(
                accepted.contains(&f),
                "{bin} does not accept {f}: {accepted:?}"
            );
        }
        assert!(
            c["command"].is_null(),
            "{bin}: the image's entrypoint runs the binary"
        );
        assert_eq!(
            flag(&flags(c), "--config-namespace"),
            Some(conf_ns),
            "{bin} reads spiderpool-conf where it is installed"
        );
    }
    let named_port = |c: &Value, n: &str| -> u64 {
        arr(&c["ports"])
            .iter()
            .find(|p| p["name"] == n)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no port {n}"))
    };
    let wf = flags(&wc);
    assert_eq!(
        port_of(flag(&wf, "--listen").unwrap()),
        named_port(&wc, "https")
    );
    assert_eq!(
        port_of(flag(&wf, "--health-listen").unwrap()),
        named_port(&wc, "health")
    );
    assert_eq!(
        port_of(flag(&flags(&oc), "--metrics-addr").unwrap()),
        named_port(&oc, "metrics")
    );
    for c in [&wc, &oc] {
        for probe in ["readinessProbe", "livenessProbe"] {
            let port = &c[probe]["httpGet"]["port"];
            assert!(
                arr(&c["ports"]).iter().any(|p| &p["name"] == port),
                "{probe} port {port}"
            );
        }
        let req = &c["resources"]["requests"];
        assert!(
            req["cpu"].is_string() && req["memory"].is_string(),
            "requests: {c}"
        );
    }
    // The serving certificate: the files the webhook reads come from the Secret the installation
    // fills (certgen or cert-manager).
    let tls_mount = arr(&wc["volumeMounts"])
        .into_iter()
        .find(|m| {
            flag(&wf, "--tls-cert")
                .unwrap()
                .starts_with(s(&m["mountPath"]))
        })
        .expect("--tls-cert is in a mounted volume");
    let tls_volume = arr(&wt["spec"]["volumes"])
        .into_iter()
        .find(|v| v["name"] == tls_mount["name"])
        .unwrap();
    let tls_secret = s(&tls_volume["secret"]["secretName"]).to_string();
    let produced = docs.iter().any(|d| {
        (d["kind"] == "Secret" && name(d) == tls_secret)
            || (d["kind"] == "Certificate" && d["spec"]["secretName"] == tls_secret.as_str())
    });
    assert!(produced, "nothing makes the Secret {tls_secret}");

    // The webhook: two replicas on different nodes if possible, a PodDisruptionBudget.
    let wd = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && std::ptr::eq(&d["spec"]["template"], wt))
        .unwrap();
    assert_eq!(wd["spec"]["replicas"], 2);
    assert!(
        !wt["spec"]["affinity"]["podAntiAffinity"].is_null(),
        "webhook anti-affinity"
    );
    let pdb = of_kind(docs, "PodDisruptionBudget")
        .into_iter()
        .find(|p| p["spec"]["selector"]["matchLabels"] == wd["spec"]["selector"]["matchLabels"])
        .expect("a PodDisruptionBudget for the webhook");
    assert!(pdb["spec"]["minAvailable"].as_u64().unwrap_or(0) >= 1);

    // The configuration reads as the core reads it.
    let data: BTreeMap<String, String> = serde_json::from_value(conf["data"].clone()).unwrap();
    let conf_yml = data.get("conf.yml").expect("conf.yml");
    for key in [
        "enableIPv4",
        "enableIPv6",
        "clusterDefaultIPv4IPPool",
        "clusterDefaultIPv6IPPool",
        "reservationGraceSeconds",
    ] {
        assert!(
            conf_yml.contains(&format!("{key}:")),
            "conf.yml lacks {key}"
        );
    }
    aipam_core::config::IpamConfig::from_configmap_data(&data).unwrap();

    // RBAC: no wildcard; bindings name roles and ServiceAccounts that are rendered; every
    // workload's ServiceAccount exists.
    for d in docs
        .iter()
        .filter(|d| matches!(s(&d["kind"]), "Role" | "ClusterRole"))
    {
        assert!(d["aggregationRule"].is_null(), "{}", id(d));
        for rule in arr(&d["rules"]) {
            assert!(rule["nonResourceURLs"].is_null(), "{}", id(d));
            for field in ["verbs", "resources", "apiGroups", "resourceNames"] {
                for v in arr(&rule[field]) {
                    assert!(!s(&v).contains('*'), "{}: `*` in {field}", id(d));
                }
            }
        }
    }
    let sa_exists = |n: &str| {
        docs.iter()
            .any(|d| d["kind"] == "ServiceAccount" && name(d) == n)
    };
    for b in docs
        .iter()
        .filter(|d| matches!(s(&d["kind"]), "RoleBinding" | "ClusterRoleBinding"))
    {
        let role = one(docs, s(&b["roleRef"]["kind"]), s(&b["roleRef"]["name"]));
        if b["kind"] == "RoleBinding" {
            assert_eq!(role["metadata"]["namespace"], b["metadata"]["namespace"]);
        }
        for sub in arr(&b["subjects"]) {
            assert_eq!(sub["kind"], "ServiceAccount", "{}", id(b));
            assert_eq!(sub["namespace"], NAMESPACE, "{}", id(b));
            assert!(sa_exists(s(&sub["name"])), "{}: no {}", id(b), sub["name"]);
        }
    }

    // docs/install.md upgrades one component at a time with
    // `kubectl apply -k config/default -l app.kubernetes.io/name=<component>`: each workload,
    // its ServiceAccount and everything bound to it carry that label, and the webhook
    // configurations do not (they are applied last).
    let label = |d: &Value| s(&d["metadata"]["labels"]["app.kubernetes.io/name"]).to_string();
    for (w, t) in workloads(docs) {
        let sa = s(&t["spec"]["serviceAccountName"]);
        assert_eq!(label(w), sa, "{}", id(w));
        assert_eq!(label(one(docs, "ServiceAccount", sa)), sa);
        for b in docs
            .iter()
            .filter(|d| matches!(s(&d["kind"]), "RoleBinding" | "ClusterRoleBinding"))
            .filter(|b| arr(&b["subjects"]).iter().any(|x| x["name"] == sa))
        {
            assert_eq!(label(b), sa, "{}", id(b));
            let role = one(docs, s(&b["roleRef"]["kind"]), s(&b["roleRef"]["name"]));
            assert_eq!(label(role), sa, "{}", id(role));
        }
    }
    for d in docs
        .iter()
        .filter(|d| s(&d["kind"]).ends_with("WebhookConfiguration"))
    {
        assert_eq!(
            label(d),
            "",
            "{}: applied last, without a component label",
            id(d)
        );
    }

    // Pods: non-root (the CNI installer excepted: it writes root-owned host directories, with
    // every capability dropped), read-only root filesystem, no privilege escalation.
    for (w, t) in workloads(docs) {
        let spec = &t["spec"];
        assert!(sa_exists(s(&spec["serviceAccountName"])), "{}", id(w));
        let cni_installer = w["kind"] == "DaemonSet" && name(w) == "aipam-cni";
        for c in containers(t) {
            let sc = &c["securityContext"];
            let at = |k: &str| {
                if sc[k].is_null() {
                    spec["securityContext"][k].clone()
                } else {
                    sc[k].clone()
                }
            };
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", id(w));
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", id(w));
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{}",
                id(w)
            );
            assert!(sc["privileged"].is_null() || sc["privileged"] == false);
            if cni_installer {
                assert_eq!(
                    at("runAsUser"),
                    0,
                    "the CNI installer is the root exception"
                );
            } else {
                assert_eq!(at("runAsNonRoot"), true, "{}", id(w));
                assert!(at("runAsUser").as_u64().is_some_and(|u| u > 0), "{}", id(w));
            }
        }
    }

    // The CRDs are exactly config/crd/.
    let mut want = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("config/crd")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            for d in yaml_docs(&std::fs::read_to_string(&p).unwrap()) {
                want.insert(name(&d).to_string(), d);
            }
        }
    }
    let got: BTreeMap<String, Value> = of_kind(docs, "CustomResourceDefinition")
        .into_iter()
        .map(|d| (name(d).to_string(), d.clone()))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "config/crd/Kustomization lists exactly the generated CRDs"
    );
    for (n, crd) in &got {
        if let Some(at) = first_difference(crd, &want[n], String::new()) {
            panic!("rendered CRD {n} differs from config/crd/ at {at}");
        }
    }
}

#[test]
fn config_default_renders_a_consistent_installation() {
    if !kubectl_available() {
        return;
    }
    let docs = render("default");
    check_installation(&docs, &IMAGES);

    // Certificates by the certgen Job, whose RBAC reaches only its Secret and the two webhook
    // configurations.
    let job = one(&docs, "Job", "aipam-certgen");
    let spec = &job["spec"]["template"]["spec"];
    let sa = s(&spec["serviceAccountName"]);
    let script_cm = arr(&spec["volumes"])
        .into_iter()
        .find_map(|v| v["configMap"]["name"].as_str().map(str::to_string))
        .unwrap();
    let cm = one(&docs, "ConfigMap", &script_cm);
    assert_eq!(
        cm["data"]["certgen.sh"],
        std::fs::read_to_string(repo().join("config/certgen/certgen.sh")).unwrap()
    );
    let configs: BTreeSet<&str> = docs
        .iter()
        .filter(|d| s(&d["kind"]).ends_with("WebhookConfiguration"))
        .map(name)
        .collect();
    let (_, wc) = container_of(&docs, "aipam/aipam-webhook");
    let secret = one(&docs, "Secret", "aipam-webhook-tls");
    assert!(secret["data"].is_null() && secret["stringData"].is_null());
    let env: BTreeMap<String, String> =
        arr(&job["spec"]["template"]["spec"]["containers"][0]["env"])
            .iter()
            .filter_map(|e| Some((s(&e["name"]).to_string(), e["value"].as_str()?.to_string())))
            .collect();
    assert_eq!(env["SECRET"], name(secret));
    assert!(configs.contains(env["WEBHOOK_CONFIG"].as_str()));
    one(&docs, "Service", &env["SERVICE"]);
    assert!(
        !env.contains_key("NAMESPACE"),
        "NAMESPACE comes from the downward API"
    );
    assert!(flags(&wc).iter().any(|(f, _)| f == "--tls-cert"));
    let mut grants = 0;
    for b in docs
        .iter()
        .filter(|d| matches!(s(&d["kind"]), "RoleBinding" | "ClusterRoleBinding"))
        .filter(|b| arr(&b["subjects"]).iter().any(|x| x["name"] == sa))
    {
        let role = one(&docs, s(&b["roleRef"]["kind"]), s(&b["roleRef"]["name"]));
        for rule in arr(&role["rules"]) {
            grants += 1;
            let verbs: BTreeSet<&str> = rule["verbs"].as_array().unwrap().iter().map(s).collect();
            assert!(verbs.is_subset(&BTreeSet::from(["get", "patch"])), "{rule}");
            let names: BTreeSet<&str> = rule["resourceNames"]
                .as_array()
                .unwrap_or_else(|| panic!("{}: a rule without resourceNames", id(role)))
                .iter()
                .map(s)
                .collect();
            match s(&rule["apiGroups"][0]) {
                "" => {
                    assert_eq!(rule["resources"], serde_json::json!(["secrets"]));
                    assert_eq!(names, BTreeSet::from([name(secret)]));
                }
                "admissionregistration.k8s.io" => assert_eq!(names, configs),
                g => panic!("certgen needs nothing in {g}"),
            }
        }
    }
    assert_eq!(
        grants, 2,
        "certgen: one rule for its Secret, one for the configurations"
    );

    // No caBundle in the configurations: `kubectl apply` must never reset the one certgen set.
    for d in docs
        .iter()
        .filter(|d| s(&d["kind"]).ends_with("WebhookConfiguration"))
    {
        for wh in arr(&d["webhooks"]) {
            assert!(wh["clientConfig"]["caBundle"].is_null(), "{}", id(d));
        }
    }
}

#[test]
fn config_cert_manager_renders_a_consistent_installation() {
    if !kubectl_available() {
        return;
    }
    let docs = render("cert-manager");
    check_installation(
        &docs,
        &[
            "aipam/aipam-webhook",
            "aipam/aipam-operator",
            "aipam/aipam-cni",
        ],
    );
    for d in &docs {
        assert!(
            !name(d).contains("certgen"),
            "{} left in the overlay",
            id(d)
        );
    }
    assert!(
        of_kind(&docs, "Secret").is_empty(),
        "cert-manager makes the Secret"
    );
    for d in docs
        .iter()
        .filter(|d| s(&d["kind"]).ends_with("WebhookConfiguration"))
    {
        let from = s(&d["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]);
        let (ns, cert) = from.split_once('/').unwrap();
        assert_eq!(ns, NAMESPACE);
        let cert = one(&docs, "Certificate", cert);
        assert_eq!(cert["spec"]["secretName"], "aipam-webhook-tls");
        let dns: Vec<String> = arr(&cert["spec"]["dnsNames"])
            .iter()
            .map(|d| s(d).to_string())
            .collect();
        assert!(
            dns.iter().any(|d| d == "aipam-webhook.aipam-system.svc"),
            "{dns:?}"
        );
        let issuer = one(&docs, "Issuer", s(&cert["spec"]["issuerRef"]["name"]));
        let ca_secret = s(&issuer["spec"]["ca"]["secretName"]);
        let ca = docs
            .iter()
            .find(|c| c["kind"] == "Certificate" && c["spec"]["secretName"] == ca_secret)
            .expect("the CA Issuer's Secret is made by a Certificate");
        assert_eq!(ca["spec"]["isCA"], true);
        one(&docs, "Issuer", s(&ca["spec"]["issuerRef"]["name"]));
    }
}

fn kubectl_on(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn run_certgen(kubeconfig: &Path, home: &Path) -> String {
    let out = Command::new("/bin/sh")
        .arg(repo().join("config/certgen/certgen.sh"))
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env("NAMESPACE", NAMESPACE)
        .env("WAIT_SECONDS", "10")
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "certgen.sh failed:\n{log}");
    log
}

fn b64d(v: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(v).unwrap()
}

/// Every rendered object of a kind the stand-in serves is accepted by it (custom resources
/// against their schemas; built-in kinds only stored), then certgen.sh, run with the real
/// kubectl and openssl against it, fills the Secret and both configurations' caBundle, and a
/// second run keeps the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_accepts_the_installation_and_certgen_fills_the_ca_bundle() {
    if !kubectl_available() {
        return;
    }
    for overlay in ["default", "cert-manager"] {
        let docs = render(overlay);
        let server = aipam_apiserver::ApiServer::start(aipam_apiserver::ServerOptions::default())
            .await
            .unwrap();
        let mut skipped = BTreeSet::new();
        for d in &docs {
            if NOT_SERVED_BY_STAND_IN.contains(&s(&d["kind"])) {
                skipped.insert(s(&d["kind"]).to_string());
                continue;
            }
            server
                .apply_object(d.clone())
                .await
                .unwrap_or_else(|e| panic!("config/{overlay}: {} refused: {e}", id(d)));
        }
        eprintln!(
            "config/{overlay}: not served by the stand-in, checked statically only: {skipped:?}"
        );
        if overlay != "default" {
            server.shutdown().await;
            continue;
        }
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("\n*** SKIPPED: openssl is not installed; certgen.sh was NOT run ***\n");
            server.shutdown().await;
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        let log = run_certgen(&kubeconfig, dir.path());
        assert!(log.contains("making a new CA"), "{log}");

        let secret: Value = serde_json::from_str(&kubectl_on(
            &kubeconfig,
            &[
                "-n",
                NAMESPACE,
                "get",
                "secret",
                "aipam-webhook-tls",
                "-o",
                "json",
            ],
        ))
        .unwrap();
        let ca = b64d(s(&secret["data"]["ca.crt"]));
        let crt = b64d(s(&secret["data"]["tls.crt"]));
        assert!(!b64d(s(&secret["data"]["tls.key"])).is_empty());
        std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
        std::fs::write(dir.path().join("tls.pem"), &crt).unwrap();
        let verify = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(dir.path().join("ca.pem"))
            .arg(dir.path().join("tls.pem"))
            .output()
            .unwrap();
        assert!(verify.status.success(), "{verify:?}");
        let san = Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(dir.path().join("tls.pem"))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&san.stdout).contains("DNS:aipam-webhook.aipam-system.svc"));

        let bundles = |kubeconfig: &Path| -> Vec<Vec<u8>> {
            let mut all = Vec::new();
            for kind in [
                "mutatingwebhookconfiguration",
                "validatingwebhookconfiguration",
            ] {
                let c: Value = serde_json::from_str(&kubectl_on(
                    kubeconfig,
                    &["get", kind, "aipam-webhook", "-o", "json"],
                ))
                .unwrap();
                for wh in arr(&c["webhooks"]) {
                    all.push(b64d(s(&wh["clientConfig"]["caBundle"])));
                }
            }
            all
        };
        let first = bundles(&kubeconfig);
        // One webhook per hook, and the binding guard beside the update guard.
        assert_eq!(first.len(), aipam_webhook::Hook::ALL.len() + 1);
        assert!(
            first.iter().all(|b| *b == ca),
            "every caBundle is the new CA"
        );

        // Again: the certificate is kept, the caBundle set again.
        let log = run_certgen(&kubeconfig, dir.path());
        assert!(log.contains("kept"), "{log}");
        let again: Value = serde_json::from_str(&kubectl_on(
            &kubeconfig,
            &[
                "-n",
                NAMESPACE,
                "get",
                "secret",
                "aipam-webhook-tls",
                "-o",
                "json",
            ],
        ))
        .unwrap();
        assert_eq!(again["data"], secret["data"]);
        assert_eq!(bundles(&kubeconfig), first);

        // Renewal (the certificate expires within RENEW_BEFORE_DAYS): a new pair, and the
        // caBundle trusts the new CA and the previous one while replicas switch over.
        let out = Command::new("/bin/sh")
            .arg(repo().join("config/certgen/certgen.sh"))
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", dir.path())
            .env("NAMESPACE", NAMESPACE)
            .env("RENEW_BEFORE_DAYS", "100000")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let renewed: Value = serde_json::from_str(&kubectl_on(
            &kubeconfig,
            &[
                "-n",
                NAMESPACE,
                "get",
                "secret",
                "aipam-webhook-tls",
                "-o",
                "json",
            ],
        ))
        .unwrap();
        let new_ca = b64d(s(&renewed["data"]["ca.crt"]));
        assert_ne!(new_ca, ca);
        let mut both = new_ca.clone();
        both.extend_from_slice(&ca);
        assert!(bundles(&kubeconfig).iter().all(|b| *b == both));
        server.shutdown().await;
    }
}
