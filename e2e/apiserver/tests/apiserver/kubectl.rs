//! Discovery and Table responses, checked with kube's discovery and the real kubectl binaries.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::common::*;

fn kubectl_binaries() -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(o) = Command::new("sh")
        .arg("-c")
        .arg("command -v kubectl")
        .output()
    else {
        return out;
    };
    let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if p.is_empty() {
        return out;
    }
    let real = std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(&p));
    out.push(real.clone());
    if let Some(dir) = real.parent() {
        for v in 27..=33 {
            let b = dir.join(format!("kubectl.1.{v}"));
            if b.exists() {
                out.push(b);
            }
        }
    }
    out
}

fn kubectl(bin: &Path, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(bin)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

fn columns(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

fn crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/crd")
}

#[tokio::test]
async fn discovery_documents() {
    let (s, c) = start_with_widgets().await;
    let (code, v) = raw(&c, "GET", "/version", "application/json", None).await;
    assert_eq!(
        (code, v["major"].as_str(), v["minor"].as_str()),
        (200, Some("1"), Some("33"))
    );
    let (_, apis) = raw(&c, "GET", "/apis", "application/json", None).await;
    assert_eq!(apis["kind"], "APIGroupList");
    assert!(apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "test.aipam.io" && g["preferredVersion"]["version"] == "v1"));
    let (_, gv) = raw(
        &c,
        "GET",
        "/apis/test.aipam.io/v1",
        "application/json",
        None,
    )
    .await;
    assert_eq!(gv["kind"], "APIResourceList");
    let res = gv["resources"].as_array().unwrap();
    let w = res.iter().find(|r| r["name"] == "widgets").unwrap();
    assert_eq!(w["namespaced"], true);
    assert_eq!(w["kind"], "Widget");
    assert_eq!(w["shortNames"], json!(["wd"]));
    assert_eq!(w["categories"], json!(["aipamtest"]));
    assert!(w["verbs"].as_array().unwrap().contains(&json!("watch")));
    assert!(res.iter().any(|r| r["name"] == "widgets/status"));
    let (_, core) = raw(&c, "GET", "/api/v1", "application/json", None).await;
    let names: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for n in [
        "namespaces",
        "nodes",
        "pods",
        "pods/binding",
        "pods/status",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "events",
    ] {
        assert!(names.contains(&n), "{n} in /api/v1");
    }
    for gv in [
        "/apis/apps/v1",
        "/apis/coordination.k8s.io/v1",
        "/apis/events.k8s.io/v1",
        "/apis/admissionregistration.k8s.io/v1",
        "/apis/apiextensions.k8s.io/v1",
    ] {
        assert_eq!(
            raw(&c, "GET", gv, "application/json", None).await.0,
            200,
            "{gv}"
        );
    }
    // kube's own discovery finds the custom resource.
    let d = kube::Discovery::new(c.clone()).run().await.unwrap();
    let (ar, caps) = d
        .get("test.aipam.io")
        .unwrap()
        .recommended_kind("Widget")
        .unwrap();
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    s.shutdown().await;
}

#[tokio::test]
async fn table_responses_use_printer_columns() {
    let (s, c) = start_with_widgets().await;
    let w = widgets(&c, "t");
    w.create(
        &PostParams::default(),
        &widget("w1", json!({"subnet": "10.0.0.0/24"})),
    )
    .await
    .unwrap();
    w.patch_status(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"count": 7, "current": {"ips": [{"interface": "eth0"}]}}})),
    )
    .await
    .unwrap();
    let (code, t) = raw_accept(
        &c,
        "GET",
        "/apis/test.aipam.io/v1/namespaces/t/widgets",
        "application/json",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        vec!["Name", "SUBNET", "IFACE", "COUNT", "WIDE-ONLY", "AGE"]
    );
    let row = &t["rows"][0];
    assert_eq!(row["cells"][0], "w1");
    assert_eq!(row["cells"][1], "10.0.0.0/24");
    assert_eq!(row["cells"][2], "eth0");
    assert_eq!(row["cells"][3], 7);
    assert!(row["cells"][4].is_null());
    assert!(row["cells"][5].as_str().unwrap().ends_with('s'));
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    // Built-ins get NAME, their columns and AGE.
    let (_, t) = raw_accept(
        &c,
        "GET",
        "/api/v1/namespaces",
        "application/json",
        "application/json;as=Table;v=v1;g=meta.k8s.io",
        None,
    )
    .await;
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, vec!["Name", "Status", "Age"]);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_delete_with_printer_columns_short_names_and_categories() {
    let bins = kubectl_binaries();
    if bins.is_empty() {
        eprintln!("kubectl not found: skipped");
        return;
    }
    let (s, c) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    s.write_kubeconfig(&kc).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/widgets.yaml");
    let k = &bins[0];
    let (ok, out) = kubectl(k, &kc, &["apply", "-f", fixture.to_str().unwrap()], None);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(k, &kc, &["create", "namespace", "t"], None);
    if !ok {
        // kubectl ≥1.32 sends built-in objects from `create` as protobuf, which the stand-in refuses (415).
        assert!(out.contains("UnsupportedMediaType"), "{out}");
        let (ok, out) = kubectl(
            k,
            &kc,
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: t\n"),
        );
        assert!(ok, "{out}");
    }
    let manifest = "apiVersion: test.aipam.io/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: t\nspec:\n  subnet: 10.0.0.0/24\n  note: hello\n";
    let (ok, out) = kubectl(k, &kc, &["apply", "-f", "-"], Some(manifest));
    assert!(
        ok && out.contains("widget.test.aipam.io/w1 created"),
        "{out}"
    );
    let (ok, out) = kubectl(k, &kc, &["apply", "-f", "-"], Some(manifest));
    assert!(ok && out.contains("unchanged"), "{out}");
    widgets(&c, "t")
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"count": 3, "current": {"ips": [{"interface": "net1"}]}}}),
            ),
        )
        .await
        .unwrap();
    for bin in &bins {
        for what in ["widgets", "wd", "widget.test.aipam.io", "aipamtest"] {
            let (ok, out) = kubectl(bin, &kc, &["get", what, "-n", "t"], None);
            assert!(ok, "{} get {what}: {out}", bin.display());
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(
                columns(lines[0]),
                vec!["NAME", "SUBNET", "IFACE", "COUNT", "AGE"],
                "{} get {what}: {out}",
                bin.display()
            );
            let row = columns(lines[1]);
            assert!(row[0].ends_with("w1"), "{out}");
            assert_eq!(&row[1..4], &["10.0.0.0/24", "net1", "3"], "{out}");
        }
        let (ok, out) = kubectl(bin, &kc, &["get", "wd", "-n", "t", "-o", "wide"], None);
        assert!(
            ok && columns(out.lines().next().unwrap()).contains(&"WIDE-ONLY".to_string())
                && out.contains("hello"),
            "{out}"
        );
    }
    let (ok, out) = kubectl(
        k,
        &kc,
        &[
            "get",
            "wd",
            "w1",
            "-n",
            "t",
            "-o",
            "jsonpath={.status.count}",
        ],
        None,
    );
    assert!(ok && out.trim() == "3", "{out}");
    let (ok, out) = kubectl(k, &kc, &["delete", "-f", "-"], Some(manifest));
    assert!(ok && out.contains("deleted"), "{out}");
    let (_, out) = kubectl(k, &kc, &["get", "wd", "-n", "t"], None);
    assert!(out.contains("No resources found"), "{out}");
    let (ok, out) = kubectl(k, &kc, &["get", "wd", "nope", "-n", "t"], None);
    assert!(
        !ok && out.contains("widgets.test.aipam.io \"nope\" not found"),
        "{out}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_spiderippools_from_the_project_crds() {
    let bins = kubectl_binaries();
    let crds = crd_dir();
    if bins.is_empty()
        || !crds
            .join("spiderpool.spidernet.io_spiderippools.yaml")
            .exists()
    {
        eprintln!("kubectl or config/crd not found: skipped");
        return;
    }
    let opts = aipam_apiserver::ServerOptions {
        crd_dir: Some(crds),
        ..Default::default()
    };
    let s = aipam_apiserver::ApiServer::start(opts).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    s.write_kubeconfig(&kc).unwrap();
    let pool = "apiVersion: spiderpool.spidernet.io/v2beta1\nkind: SpiderIPPool\nmetadata:\n  name: pool-a\nspec:\n  ipVersion: 4\n  subnet: 10.6.0.0/16\n  ips: [\"10.6.0.10-10.6.0.20\"]\n  default: true\n";
    let (ok, out) = kubectl(&bins[0], &kc, &["apply", "-f", "-"], Some(pool));
    assert!(ok, "{out}");
    for what in ["spiderippool", "sp", "spiderpool"] {
        let (ok, out) = kubectl(&bins[0], &kc, &["get", what], None);
        assert!(ok, "{out}");
        let head = columns(out.lines().next().unwrap());
        assert_eq!(
            &head[..4],
            &["NAME", "VERSION", "SUBNET", "ALLOCATED-IP-COUNT"],
            "{out}"
        );
        assert!(out.contains("10.6.0.0/16"), "{out}");
    }
    let c = s.client().await.unwrap();
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("spiderpool.spidernet.io", "v2beta1", "SpiderIPPool"),
        "spiderippools",
    );
    let api: Api<kube::api::DynamicObject> = Api::all_with(c, &ar);
    assert_eq!(
        api.get("pool-a").await.unwrap().data["spec"]["subnet"],
        "10.6.0.0/16"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_typed_create_commands_of_every_version() {
    let bins = kubectl_binaries();
    if bins.is_empty() {
        eprintln!("kubectl not found: skipped");
        return;
    }
    let (s, c) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    s.write_kubeconfig(&kc).unwrap();
    for (i, bin) in bins.iter().enumerate() {
        let ns = format!("ns-{i}");
        for args in [
            vec!["create", "namespace", ns.as_str()],
            vec![
                "create",
                "configmap",
                "cm",
                "-n",
                ns.as_str(),
                "--from-literal=k=v",
            ],
            vec![
                "create",
                "secret",
                "generic",
                "sec",
                "-n",
                ns.as_str(),
                "--from-literal=a=b",
            ],
            vec!["create", "serviceaccount", "sa", "-n", ns.as_str()],
            vec!["label", "configmap", "cm", "-n", ns.as_str(), "x=y"],
        ] {
            let (ok, out) = kubectl(bin, &kc, &args, None);
            assert!(ok, "{} {args:?}: {out}", bin.display());
        }
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(c.clone(), &ns);
        let cm = cms.get("cm").await.unwrap();
        assert_eq!(cm.data.unwrap()["k"], "v");
        assert_eq!(cm.metadata.labels.unwrap()["x"], "y");
        let secs: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.clone(), &ns);
        let sec = secs.get("sec").await.unwrap();
        assert_eq!(sec.type_.as_deref(), Some("Opaque"));
        assert_eq!(sec.data.unwrap()["a"].0, b"b".to_vec());
    }
    s.shutdown().await;
}
