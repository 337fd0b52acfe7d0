//! Security promises of the manifests in `config/` (issue 9, docs/threat-model.md), checked on
//! the YAML itself so that a widened role or a relaxed container fails here before it ships:
//!
//! - no `*` in any Role or ClusterRole (verbs, resources, apiGroups, resourceNames), no `escalate`,
//!   `bind` or `impersonate`, Secrets only by name;
//! - the CNI credential (ServiceAccount aipam-cni) can do exactly one thing: `get` spiderendpoints;
//! - what the webhook and operator credentials can never do (Secrets, RBAC, Pods' specs, …);
//! - every container runs as non-root with a read-only root filesystem, no privilege escalation,
//!   every capability dropped; the one exception is the CNI installer, which runs as root to write
//!   into exactly the host's /opt/cni/bin and /etc/cni/net.d, still with no capability;
//! - the node kubeconfig the installer writes is mode 0600 in a 0700 directory;
//! - admission webhooks are only reached through their Service over HTTPS.
//!
//! Plaintext admission and TLS < 1.2 are refused by the server itself: `webhook/tests/server.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            // Kustomizations list and patch the manifests; the manifests are checked themselves.
            let name = p.file_name().unwrap().to_string_lossy().to_lowercase();
            if !name.starts_with("kustomization") {
                out.push(p);
            }
        }
    }
}

/// Every document of every manifest under config/, with the file it came from.
fn documents() -> Vec<(String, Value)> {
    let mut files = Vec::new();
    yaml_files(&config_dir(), &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if !v.is_null() {
                out.push((
                    f.strip_prefix(config_dir()).unwrap().display().to_string(),
                    v,
                ));
            }
        }
    }
    assert!(out.len() > 20, "config/ holds only {} documents", out.len());
    out
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or("<not a string>").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

#[test]
fn roles_have_no_wildcards_and_no_escalation() {
    let docs = documents();
    let mut roles = 0;
    for (file, d) in &docs {
        if !matches!(kind(d), "Role" | "ClusterRole") {
            continue;
        }
        roles += 1;
        assert!(
            d.get("aggregationRule").is_none(),
            "{file}: {} aggregates other roles",
            name(d)
        );
        let rules = d["rules"].as_array().cloned().unwrap_or_default();
        assert!(!rules.is_empty(), "{file}: {} has no rules", name(d));
        for rule in rules {
            let at = format!("{file}: {} {}", kind(d), name(d));
            for field in [
                "verbs",
                "resources",
                "apiGroups",
                "resourceNames",
                "nonResourceURLs",
            ] {
                for item in strs(&rule[field]) {
                    assert!(!item.contains('*'), "{at}: `*` in {field}: {rule}");
                }
            }
            assert!(
                rule.get("nonResourceURLs").is_none(),
                "{at}: nonResourceURLs: {rule}"
            );
            for verb in strs(&rule["verbs"]) {
                assert!(
                    !matches!(
                        verb.as_str(),
                        "escalate" | "bind" | "impersonate" | "deletecollection"
                    ),
                    "{at}: verb {verb}: {rule}"
                );
            }
            if strs(&rule["resources"]).iter().any(|r| r == "secrets") {
                assert!(
                    !strs(&rule["resourceNames"]).is_empty(),
                    "{at}: Secrets without resourceNames: {rule}"
                );
            }
        }
    }
    assert!(roles >= 5, "only {roles} roles found");
}

/// (apiGroup, resource, verb, resourceNames) granted to a ServiceAccount of aipam-system by
/// every binding of config/.
fn permissions(docs: &[(String, Value)], sa: &str) -> BTreeSet<(String, String, String, String)> {
    let roles: BTreeMap<(String, String), &Value> = docs
        .iter()
        .filter(|(_, d)| matches!(kind(d), "Role" | "ClusterRole"))
        .map(|(_, d)| ((kind(d).to_string(), name(d).to_string()), d))
        .collect();
    let mut out = BTreeSet::new();
    let mut bound = 0;
    for (file, b) in docs {
        if !matches!(kind(b), "RoleBinding" | "ClusterRoleBinding") {
            continue;
        }
        let ours = b["subjects"].as_array().into_iter().flatten().any(|s| {
            s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == "aipam-system"
        });
        if !ours {
            continue;
        }
        bound += 1;
        let role_kind = b["roleRef"]["kind"].as_str().unwrap().to_string();
        let role_name = b["roleRef"]["name"].as_str().unwrap().to_string();
        let role = roles
            .get(&(role_kind.clone(), role_name.clone()))
            .unwrap_or_else(|| {
                panic!(
                    "{file}: {} binds {role_kind} {role_name}, not in config/",
                    name(b)
                )
            });
        for rule in role["rules"].as_array().unwrap() {
            for g in strs(&rule["apiGroups"]) {
                for r in strs(&rule["resources"]) {
                    for v in strs(&rule["verbs"]) {
                        out.insert((
                            g.clone(),
                            r.clone(),
                            v,
                            strs(&rule["resourceNames"]).join(","),
                        ));
                    }
                }
            }
        }
    }
    assert!(bound > 0, "ServiceAccount {sa} is bound to nothing");
    out
}

#[test]
fn the_cni_credential_can_only_get_spiderendpoints() {
    let docs = documents();
    let perms = permissions(&docs, "aipam-cni");
    assert_eq!(
        perms,
        BTreeSet::from([(
            "spiderpool.spidernet.io".to_string(),
            "spiderendpoints".to_string(),
            "get".to_string(),
            String::new()
        )]),
        "the node credential must read SpiderEndpoints by name and nothing else"
    );
    // The DaemonSet's token is projected with an expiry, never the automounted one.
    let (_, ds) = docs
        .iter()
        .find(|(_, d)| kind(d) == "DaemonSet" && name(d) == "aipam-cni")
        .unwrap();
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], "aipam-cni");
    assert_eq!(spec["automountServiceAccountToken"], false);
    let token = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v["projected"]["sources"].as_array())
        .and_then(|s| s.iter().find_map(|s| s.get("serviceAccountToken")))
        .expect("a projected ServiceAccount token");
    assert!(token["expirationSeconds"].as_u64().unwrap() <= 3600 * 24);
}

#[test]
fn the_webhook_and_operator_credentials_stay_in_their_lane() {
    let docs = documents();
    let never = |perms: &BTreeSet<(String, String, String, String)>, who: &str| {
        for (g, r, v, names) in perms {
            assert!(
                !(r == "secrets" || r == "serviceaccounts" || r.ends_with("/token")),
                "{who} may {v} {r}"
            );
            assert!(g != "rbac.authorization.k8s.io", "{who} may {v} {g}/{r}");
            assert!(g != "admissionregistration.k8s.io", "{who} may {v} {g}/{r}");
            assert!(g != "apiextensions.k8s.io", "{who} may {v} the CRDs ({r})");
            assert!(
                !(g.is_empty() && r == "configmaps") || names == "spiderpool-conf",
                "{who} may {v} ConfigMaps other than spiderpool-conf"
            );
            assert!(
                !(g.is_empty() && (r == "pods" || r == "nodes" || r == "namespaces"))
                    || matches!(v.as_str(), "get" | "list" | "watch" | "patch"),
                "{who} may {v} {r}"
            );
            assert!(
                r != "pods/exec" && r != "pods/eviction" && r != "nodes/proxy",
                "{who}: {r}"
            );
        }
    };
    let webhook = permissions(&docs, "aipam-webhook");
    never(&webhook, "the webhook");
    // The webhook reads pools, never changes them; it writes claims and endpoints only.
    for (g, r, v, _) in &webhook {
        if !matches!(v.as_str(), "get" | "list" | "watch") {
            assert!(
                g == "spiderpool.spidernet.io" && (r == "spideripclaims" || r == "spiderendpoints"),
                "the webhook may {v} {g}/{r}"
            );
        }
        assert!(
            !(g.is_empty() && r == "pods") || v == "get",
            "the webhook reads Pods from reviews, and one by name (StatefulSet take-over), never lists or watches them"
        );
    }
    let operator = permissions(&docs, "aipam-operator");
    never(&operator, "the operator");
    for (g, r, v, names) in &operator {
        if g == "coordination.k8s.io" && v != "create" {
            assert_eq!(names, "aipam-operator", "the operator may {v} other Leases");
        }
        if g.is_empty() || g == "apps" || g == "batch" {
            assert!(
                matches!(v.as_str(), "get" | "list" | "watch") || (r == "pods" && v == "patch"),
                "the operator may {v} {g}/{r}"
            );
        }
    }
}

/// Every container and init container of every workload aipam installs (config/ but the
/// samples, which are the users' own workloads).
fn containers(docs: &[(String, Value)]) -> Vec<(String, &Value, &Value)> {
    let mut out = Vec::new();
    for (file, d) in docs {
        if file.starts_with("samples") {
            continue;
        }
        let pod = match kind(d) {
            "Pod" => &d["spec"],
            "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet" | "Job" => {
                &d["spec"]["template"]["spec"]
            }
            "CronJob" => &d["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        for field in ["initContainers", "containers"] {
            for c in pod[field].as_array().into_iter().flatten() {
                out.push((
                    format!(
                        "{file}: {} {} container {}",
                        kind(d),
                        name(d),
                        c["name"].as_str().unwrap_or("?")
                    ),
                    pod,
                    c,
                ));
            }
        }
    }
    out
}

fn is_cni_installer(at: &str) -> bool {
    at.ends_with("DaemonSet aipam-cni container install")
}

#[test]
fn containers_are_non_root_read_only_and_unprivileged() {
    let docs = documents();
    let all = containers(&docs);
    let names: Vec<&str> = all.iter().map(|(at, _, _)| at.as_str()).collect();
    for expected in [
        "Deployment aipam-webhook container webhook",
        "Deployment aipam-operator container operator",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(expected)),
            "{expected} not found in {names:?}"
        );
    }
    assert_eq!(
        all.iter().filter(|(at, _, _)| is_cni_installer(at)).count(),
        1
    );
    for (at, pod, c) in &all {
        let sc = &c["securityContext"];
        let psc = &pod["securityContext"];
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{at}: allowPrivilegeEscalation"
        );
        assert_eq!(
            sc["readOnlyRootFilesystem"], true,
            "{at}: readOnlyRootFilesystem"
        );
        assert_ne!(sc["privileged"], true, "{at}: privileged");
        assert!(
            strs(&sc["capabilities"]["drop"]).contains(&"ALL".to_string()),
            "{at}: capabilities not dropped"
        );
        assert!(
            sc["capabilities"].get("add").is_none(),
            "{at}: capabilities added"
        );
        for k in ["hostPID", "hostIPC"] {
            assert_ne!(pod[k], true, "{at}: {k}");
        }
        let seccomp = sc["seccompProfile"]["type"]
            .as_str()
            .or(psc["seccompProfile"]["type"].as_str());
        assert_eq!(seccomp, Some("RuntimeDefault"), "{at}: seccompProfile");
        let user = sc["runAsUser"].as_i64().or(psc["runAsUser"].as_i64());
        if is_cni_installer(at) {
            continue;
        }
        let non_root = sc["runAsNonRoot"]
            .as_bool()
            .or(psc["runAsNonRoot"].as_bool());
        assert_eq!(non_root, Some(true), "{at}: runAsNonRoot");
        assert_ne!(user, Some(0), "{at}: runs as root");
        assert_ne!(pod["hostNetwork"], true, "{at}: hostNetwork");
        for v in pod["volumes"].as_array().into_iter().flatten() {
            assert!(v.get("hostPath").is_none(), "{at}: hostPath volume {v}");
        }
    }
}

/// The CNI installer is root because the host's CNI directories belong to root; it gets exactly
/// those two directories of the host, read-write, and nothing else of it.
#[test]
fn the_cni_installer_writes_exactly_the_host_cni_directories() {
    let docs = documents();
    let all = containers(&docs);
    let (at, pod, c) = all.iter().find(|(at, _, _)| is_cni_installer(at)).unwrap();
    assert_eq!(c["securityContext"]["runAsUser"], 0, "{at}");
    let host_paths: BTreeMap<String, String> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| {
            v["hostPath"]["path"]
                .as_str()
                .map(|p| (v["name"].as_str().unwrap().to_string(), p.to_string()))
        })
        .collect();
    assert_eq!(
        host_paths.values().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["/opt/cni/bin".to_string(), "/etc/cni/net.d".to_string()]),
        "{at}: host paths"
    );
    let mounts: BTreeMap<String, (String, bool)> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                (
                    m["mountPath"].as_str().unwrap().to_string(),
                    m["readOnly"] == true,
                ),
            )
        })
        .collect();
    for (vol, host) in &host_paths {
        let (path, ro) = &mounts[vol];
        assert_eq!(path, &format!("/host{host}"), "{at}: {vol}");
        assert!(!ro, "{at}: {vol} must be writable");
        assert!(c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m.get("subPath").is_none() || m["name"] != vol.as_str()));
    }
    for (vol, (path, ro)) in &mounts {
        if !host_paths.contains_key(vol) {
            assert!(ro, "{at}: {vol} at {path} is writable");
        }
    }
    // hostNetwork: it must start before the Pod network exists (it may be this IPAM's).
    assert_eq!(pod["hostNetwork"], true);
    // The kubeconfig holding the node's token: 0600 in a 0700 directory, created under umask 077.
    let script = c["command"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap();
    for needle in [
        "umask 077",
        "chmod 0700 \"$CONF_DIR\"",
        "chmod 0600 \"$tmp\"",
        "mv -f \"$tmp\" \"$CONF_DIR/kubeconfig\"",
    ] {
        assert!(script.contains(needle), "{at}: the script lacks `{needle}`");
    }
    assert!(
        !script.contains("echo \"$token\"") && !script.contains("set -x"),
        "{at}: the token may be printed"
    );
}

#[test]
fn admission_goes_through_the_service_over_https_only() {
    let docs = documents();
    let mut n = 0;
    for (file, d) in &docs {
        if !matches!(
            kind(d),
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"
        ) {
            continue;
        }
        for w in d["webhooks"].as_array().unwrap() {
            n += 1;
            let at = format!("{file}: {}", w["name"]);
            let cc = &w["clientConfig"];
            assert!(
                cc.get("url").is_none(),
                "{at}: a url instead of the Service: {cc}"
            );
            assert_eq!(cc["service"]["namespace"], "aipam-system", "{at}");
            assert!(
                matches!(cc["service"]["port"].as_u64(), None | Some(443)),
                "{at}"
            );
            assert_eq!(strs(&w["admissionReviewVersions"]), vec!["v1"], "{at}");
            // Scoped: never kube-system nor the webhook's own namespace.
            let sel = w["namespaceSelector"].to_string();
            assert!(
                sel.contains("kube-system") && sel.contains("aipam-system"),
                "{at}: {sel}"
            );
        }
    }
    assert_eq!(n, 8);
}

/// The Pod UPDATE guard of the reservation annotation (docs/threat-model.md) fails closed: with
/// `Ignore` it would be bypassed whenever no webhook replica answers. Its matchConditions only
/// narrow the calls to updates that change the annotation and do not come from the operator,
/// whose username is the webhook's default `--operator-user`.
#[test]
fn the_reservation_guard_fails_closed_and_exempts_only_the_operator() {
    let docs = documents();
    let guards: Vec<&Value> = docs
        .iter()
        .filter(|(_, d)| kind(d) == "ValidatingWebhookConfiguration")
        .flat_map(|(_, d)| d["webhooks"].as_array().unwrap())
        .filter(|w| w["clientConfig"]["service"]["path"] == "/validate-pod-update")
        .collect();
    // The update guard (Pods and pods/status, which keeps metadata changes on a real API
    // server) and the binding guard (a Binding's annotations are copied onto its Pod).
    assert_eq!(guards.len(), 2);
    let by_name = |n: &str| {
        *guards
            .iter()
            .find(|w| w["name"] == n)
            .unwrap_or_else(|| panic!("no webhook {n}"))
    };
    let w = by_name("pods-update.validate.aipam.io");
    let b = by_name("pods-binding.validate.aipam.io");
    for g in [w, b] {
        assert_eq!(g["failurePolicy"], "Fail", "{}", g["name"]);
        let conditions = g["matchConditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2, "{}", g["name"]);
        assert_eq!(
            conditions[1]["expression"].as_str().unwrap(),
            format!(
                "request.userInfo.username != '{}'",
                aipam_webhook::pod_guard::DEFAULT_OPERATOR_USER
            )
        );
    }
    assert_eq!(strs(&w["rules"][0]["operations"]), vec!["UPDATE"]);
    assert_eq!(
        strs(&w["rules"][0]["resources"]),
        vec!["pods", "pods/status"]
    );
    assert_eq!(strs(&b["rules"][0]["operations"]), vec!["CREATE"]);
    assert_eq!(strs(&b["rules"][0]["resources"]), vec!["pods/binding"]);
    assert!(b["matchConditions"][0]["expression"]
        .as_str()
        .unwrap()
        .contains("'aipam.io/reservation' in object.metadata.annotations"));
    let conditions = w["matchConditions"].as_array().unwrap();
    let changes = conditions[0]["expression"].as_str().unwrap();
    assert!(
        changes.contains("object.metadata.annotations['aipam.io/reservation'] != oldObject.metadata.annotations['aipam.io/reservation']"),
        "{changes}"
    );
    // The operator's service account is the one config/operator/ runs as.
    let sa = docs
        .iter()
        .find(|(_, d)| kind(d) == "Deployment" && name(d) == "aipam-operator")
        .map(|(_, d)| d["spec"]["template"]["spec"]["serviceAccountName"].clone())
        .unwrap();
    assert_eq!(
        format!(
            "system:serviceaccount:aipam-system:{}",
            sa.as_str().unwrap()
        ),
        aipam_webhook::pod_guard::DEFAULT_OPERATOR_USER
    );
}
