//! REST semantics: create/get/list/update/patch, selectors, dry run, status and binding subresources.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::common::*;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

fn pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox", "env": []}]}}))
    .unwrap()
}

#[tokio::test]
async fn create_get_and_already_exists() {
    let (s, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let created = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    let rv: u64 = created
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > 0);
    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");
    let e = status(
        api.create(&PostParams::default(), &cm("a"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "configmaps \"a\" already exists");
    let e = status(api.get("nope").await.unwrap_err());
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (404, "NotFound", "configmaps \"nope\" not found")
    );
    // The raw body is a metav1.Status.
    let (code, body) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/default/configmaps/nope",
        "application/json",
        None,
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["status"], "Failure");
    assert_eq!(
        body["details"],
        json!({"name": "nope", "kind": "configmaps"})
    );
    s.shutdown().await;
}

#[tokio::test]
async fn create_in_missing_namespace_is_404() {
    let (s, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "missing");
    let e = status(
        api.create(&PostParams::default(), &cm("a"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert_eq!(e.message, "namespaces \"missing\" not found");
    // A body namespace that differs from the URL is a 400.
    let (code, body) = raw(&c, "POST", "/api/v1/namespaces/default/configmaps", "application/json",
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "other"}}))).await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
    s.shutdown().await;
}

#[tokio::test]
async fn namespaces_carry_metadata_name_label_and_defaults_exist() {
    let (s, c) = start().await;
    let api: Api<Namespace> = Api::all(c.clone());
    for n in ["default", "kube-system", "kube-public"] {
        let ns = api.get(n).await.unwrap();
        assert_eq!(
            ns.metadata.labels.unwrap()["kubernetes.io/metadata.name"],
            n
        );
    }
    create_ns(&c, "team-a").await;
    let ns = api.get("team-a").await.unwrap();
    assert_eq!(
        ns.metadata.labels.clone().unwrap()["kubernetes.io/metadata.name"],
        "team-a"
    );
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    // The label cannot be removed.
    api.patch(
        "team-a",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"labels": {"kubernetes.io/metadata.name": null, "x": "y"}}}),
        ),
    )
    .await
    .unwrap();
    let labels = api.get("team-a").await.unwrap().metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/metadata.name"], "team-a");
    assert_eq!(labels["x"], "y");
    let nsl = api
        .list(&ListParams::default().labels("kubernetes.io/metadata.name in (team-a,kube-system)"))
        .await
        .unwrap();
    assert_eq!(nsl.items.len(), 2);
    s.shutdown().await;
}

#[tokio::test]
async fn generate_name_gets_five_char_suffix() {
    let (s, c) = start().await;
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let mut p = pod("", json!({}));
    p.metadata.name = None;
    p.metadata.generate_name = Some("web-".into());
    let created = api.create(&PostParams::default(), &p).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    assert!(name[4..]
        .chars()
        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit()));
    // Neither name nor generateName: 422 Invalid.
    let (code, body) = raw(
        &c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})),
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));
    s.shutdown().await;
}

#[tokio::test]
async fn stale_update_is_conflict_and_custom_resources_need_resource_version() {
    let (s, c) = start_with_widgets().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let v1 = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let mut v2 = v1.clone();
    v2.data = Some([("k".to_string(), "2".to_string())].into());
    let v2 = api.replace("a", &PostParams::default(), &v2).await.unwrap();
    assert!(
        v2.metadata
            .resource_version
            .as_ref()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > v1.metadata
                .resource_version
                .as_ref()
                .unwrap()
                .parse::<u64>()
                .unwrap()
    );
    let e = status(
        api.replace("a", &PostParams::default(), &v1)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(e.message, "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again");
    // Built-ins allow an unconditional update (no resourceVersion).
    let mut v3 = v1.clone();
    v3.metadata.resource_version = None;
    api.replace("a", &PostParams::default(), &v3).await.unwrap();
    // Custom resources do not.
    let w = widgets(&c, "t");
    let created = w
        .create(
            &PostParams::default(),
            &widget("w", json!({"subnet": "10.0.0.0/24"})),
        )
        .await
        .unwrap();
    let mut no_rv = created.clone();
    no_rv.metadata.resource_version = None;
    let e = status(
        w.replace("w", &PostParams::default(), &no_rv)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message.contains("metadata.resourceVersion"),
        "{}",
        e.message
    );
    let mut stale = created.clone();
    stale.data["spec"]["subnet"] = json!("10.1.0.0/24");
    w.replace("w", &PostParams::default(), &stale)
        .await
        .unwrap();
    let e = status(
        w.replace("w", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.message, "Operation cannot be fulfilled on widgets.test.aipam.io \"w\": the object has been modified; please apply your changes to the latest version and try again");
    // Spec changes bump generation; a write that changes nothing keeps the resourceVersion.
    let cur = w.get("w").await.unwrap();
    assert_eq!(cur.metadata.generation, Some(2));
    let same = w.replace("w", &PostParams::default(), &cur).await.unwrap();
    assert_eq!(
        same.metadata.resource_version,
        cur.metadata.resource_version
    );
    s.shutdown().await;
}

#[tokio::test]
async fn list_has_resource_version_and_label_selectors_on_custom_resources() {
    let (s, c) = start_with_widgets().await;
    let w = widgets(&c, "t");
    for (n, labels) in [
        ("a", json!({"app": "web", "tier": "fe"})),
        ("b", json!({"app": "db"})),
        ("c", json!({})),
    ] {
        let mut o = widget(n, json!({}));
        o.metadata.labels = Some(serde_json::from_value(labels).unwrap());
        w.create(&PostParams::default(), &o).await.unwrap();
    }
    let names = |l: kube::api::ObjectList<kube::api::DynamicObject>| {
        l.items
            .into_iter()
            .map(|o| o.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    for (sel, want) in [
        ("app=web", vec!["a"]),
        ("app==db", vec!["b"]),
        ("app!=web", vec!["b", "c"]),
        ("app in (web,db)", vec!["a", "b"]),
        ("app notin (web)", vec!["b", "c"]),
        ("app", vec!["a", "b"]),
        ("!app", vec!["c"]),
        ("app,tier=fe", vec!["a"]),
    ] {
        let l = w.list(&ListParams::default().labels(sel)).await.unwrap();
        assert_eq!(names(l), want, "{sel}");
    }
    let l = w.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(l.items.len(), 3, "limit may be ignored but must not break");
    let rv: u64 = l.metadata.resource_version.unwrap().parse().unwrap();
    assert_eq!(rv, s.resource_version());
    let all = Api::<kube::api::DynamicObject>::all_with(c.clone(), &widget_ar())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3);
    let (code, body) = raw(
        &c,
        "GET",
        "/apis/test.aipam.io/v1/namespaces/t/widgets?labelSelector=app%20in%20web",
        "application/json",
        None,
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
    s.shutdown().await;
}

#[tokio::test]
async fn field_selectors_on_pods() {
    let (s, c) = start().await;
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    for n in ["p1", "p2", "p3"] {
        api.create(&PostParams::default(), &pod(n, json!({})))
            .await
            .unwrap();
    }
    let _: Value = api.create_subresource("binding", "p1", &PostParams::default(), &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p1"}, "target": {"kind": "Node", "name": "n1"}})).await.unwrap();
    let names = |l: kube::api::ObjectList<Pod>| {
        l.items
            .into_iter()
            .map(|o| o.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("spec.nodeName=n1"))
                .await
                .unwrap()
        ),
        vec!["p1"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("spec.nodeName="))
                .await
                .unwrap()
        ),
        vec!["p2", "p3"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("spec.nodeName!=n1,metadata.name!=p2"))
                .await
                .unwrap()
        ),
        vec!["p3"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=p2"))
                .await
                .unwrap()
        ),
        vec!["p2"]
    );
    let all: Api<Pod> = Api::all(c.clone());
    assert_eq!(
        names(
            all.list(&ListParams::default().fields("metadata.namespace=default,spec.nodeName=n1"))
                .await
                .unwrap()
        ),
        vec!["p1"]
    );
    let e = status(
        api.list(&ListParams::default().fields("spec.unknown=x"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
    s.shutdown().await;
}

#[tokio::test]
async fn json_patch_all_six_operations_and_escapes() {
    let (s, c) = start().await;
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let mut p = pod("p", json!({}));
    p.metadata.annotations = Some(
        [
            ("a~b".to_string(), "1".to_string()),
            ("x/y".to_string(), "2".to_string()),
        ]
        .into(),
    );
    api.create(&PostParams::default(), &p).await.unwrap();
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/metadata/annotations/ipam.spidernet.io~1ippool", "value": "{\"ipv4\":[\"pool\"]}"},
        {"op": "test", "path": "/metadata/annotations/a~0b", "value": "1"},
        {"op": "test", "path": "/metadata/annotations/x~1y", "value": "2"},
        {"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "A", "value": "1"}},
        {"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "B", "value": "2"}},
        {"op": "copy", "from": "/metadata/annotations/a~0b", "path": "/metadata/labels"},
        {"op": "remove", "path": "/metadata/labels"},
        {"op": "copy", "from": "/spec/containers/0/env/0", "path": "/spec/containers/0/env/0"},
        {"op": "move", "from": "/metadata/annotations/x~1y", "path": "/metadata/annotations/moved"},
        {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx"},
        {"op": "remove", "path": "/metadata/annotations/a~0b"}
    ]))
    .unwrap();
    let out = api
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .unwrap();
    let ann = out.metadata.annotations.unwrap();
    assert_eq!(ann["ipam.spidernet.io/ippool"], "{\"ipv4\":[\"pool\"]}");
    assert_eq!(ann["moved"], "2");
    assert!(!ann.contains_key("a~b") && !ann.contains_key("x/y"));
    let c0 = &out.spec.unwrap().containers[0];
    assert_eq!(c0.image.as_deref(), Some("nginx"));
    let env: Vec<_> = c0
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(env, vec!["A", "A", "B"]);
    // A failing test operation refuses the whole patch with 422.
    let failing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/containers/0/image", "value": "other"},
        {"op": "test", "path": "/metadata/annotations/moved", "value": "nope"}
    ]))
    .unwrap();
    let e = status(
        api.patch("p", &PatchParams::default(), &Patch::<()>::Json(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert_eq!(
        api.get("p").await.unwrap().spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("nginx")
    );
    s.shutdown().await;
}

#[tokio::test]
async fn merge_strategic_and_apply_patches() {
    let (s, c) = start_with_widgets().await;
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &pod("p", json!({"a": "1"})))
        .await
        .unwrap();
    let out = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": null, "b": "2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        out.metadata.labels.unwrap(),
        [("b".to_string(), "2".to_string())].into()
    );
    // Strategic merge: containers merge by name.
    let out = api
        .patch("p", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"containers": [{"name": "c", "image": "v2"}]}, "metadata": {"finalizers": ["f/one"]}})))
        .await
        .unwrap();
    let spec = out.spec.unwrap();
    assert_eq!(spec.containers.len(), 1);
    assert_eq!(spec.containers[0].image.as_deref(), Some("v2"));
    api.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    // Merge patch with a stale resourceVersion is a conflict.
    let e = status(
        api.patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1", "labels": {"c": "3"}}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    // Server-side apply creates, then updates; a field manager is required.
    let w = widgets(&c, "t");
    let applied = json!({"apiVersion": "test.aipam.io/v1", "kind": "Widget", "metadata": {"name": "ssa", "labels": {"x": "1"}}, "spec": {"subnet": "10.0.0.0/24", "ips": ["10.0.0.1"]}});
    let o = w
        .patch(
            "ssa",
            &PatchParams::apply("tester").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(o.data["spec"]["subnet"], "10.0.0.0/24");
    let applied2 = json!({"apiVersion": "test.aipam.io/v1", "kind": "Widget", "metadata": {"name": "ssa"}, "spec": {"ips": ["10.0.0.2"]}});
    let o = w
        .patch(
            "ssa",
            &PatchParams::apply("another-manager").force(),
            &Patch::Apply(&applied2),
        )
        .await
        .unwrap();
    assert_eq!(
        o.data["spec"],
        json!({"subnet": "10.0.0.0/24", "ips": ["10.0.0.2"]})
    );
    assert_eq!(o.metadata.labels.unwrap()["x"], "1");
    let (code, body) = raw(
        &c,
        "PATCH",
        "/apis/test.aipam.io/v1/namespaces/t/widgets/ssa",
        "application/apply-patch+yaml",
        Some(applied2),
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("fieldManager: Required value"));
    // Strategic merge is not supported on custom resources (as in Kubernetes).
    let e = status(
        w.patch(
            "ssa",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 415);
    // Patching a missing object is 404 (except apply, which creates).
    let e = status(
        api.patch("nope", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);
    s.shutdown().await;
}

#[tokio::test]
async fn dry_run_stores_nothing() {
    let (s, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let rv0 = s.resource_version();
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let out = api.create(&pp, &cm("dry")).await.unwrap();
    assert_eq!(out.metadata.name.as_deref(), Some("dry"));
    assert!(out.metadata.uid.is_some());
    assert_eq!(status(api.get("dry").await.unwrap_err()).code, 404);
    assert_eq!(s.resource_version(), rv0);
    api.create(&PostParams::default(), &cm("real"))
        .await
        .unwrap();
    let rv1 = s.resource_version();
    let out = api
        .patch(
            "real",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"data": {"k": "dry"}})),
        )
        .await
        .unwrap();
    assert_eq!(out.data.unwrap()["k"], "dry");
    assert_eq!(api.get("real").await.unwrap().data.unwrap()["k"], "v");
    api.delete(
        "real",
        &DeleteParams {
            dry_run: true,
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert!(api.get("real").await.is_ok());
    assert_eq!(s.resource_version(), rv1);
    let (code, _) = raw(
        &c,
        "POST",
        "/api/v1/namespaces/default/configmaps?dryRun=Some",
        "application/json",
        Some(json!({"metadata": {"name": "z"}})),
    )
    .await;
    assert_eq!(code, 400);
    s.shutdown().await;
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status() {
    let (s, c) = start_with_widgets().await;
    let w = widgets(&c, "t");
    let mut o = widget("w", json!({"subnet": "10.0.0.0/24"}));
    o.data["status"] = json!({"count": 99});
    let created = w.create(&PostParams::default(), &o).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );
    // /status changes only .status.
    let out = w
        .patch_status("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"subnet": "changed"}, "metadata": {"labels": {"l": "1"}}, "status": {"count": 3}})))
        .await
        .unwrap();
    assert_eq!(out.data["status"]["count"], 3);
    assert_eq!(out.data["spec"]["subnet"], "10.0.0.0/24");
    assert!(out.metadata.labels.is_none());
    // Main-resource writes ignore .status.
    let out = w
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"subnet": "10.9.0.0/24"}, "status": {"count": 1000}})),
        )
        .await
        .unwrap();
    assert_eq!(out.data["status"]["count"], 3);
    assert_eq!(out.data["spec"]["subnet"], "10.9.0.0/24");
    // replace_status with a stale resourceVersion is a conflict.
    let mut stale = created.clone();
    stale.data["status"] = json!({"count": 4});
    let e = status(
        w.replace_status("w", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    let mut cur = w.get_status("w").await.unwrap();
    cur.data["status"] = json!({"count": 5, "current": {"ips": [{"interface": "eth0"}]}});
    let out = w
        .replace_status("w", &PostParams::default(), &cur)
        .await
        .unwrap();
    assert_eq!(out.data["status"]["count"], 5);
    // Server-side apply on /status.
    let out = w
        .patch_status("w", &PatchParams::apply("ctl").force(), &Patch::Apply(json!({"apiVersion": "test.aipam.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "status": {"count": 6}})))
        .await
        .unwrap();
    assert_eq!(out.data["status"]["count"], 6);
    assert_eq!(out.data["status"]["current"]["ips"][0]["interface"], "eth0");
    // Kinds without a status subresource have no /status.
    let (code, _) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/default/configmaps/x/status",
        "application/json",
        None,
    )
    .await;
    assert_eq!(code, 404);
    s.shutdown().await;
}

#[tokio::test]
async fn pod_binding_sets_node_and_conflicts_when_bound() {
    let (s, c) = start().await;
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &pod("p", json!({})))
        .await
        .unwrap();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    let st: Value = api
        .create_subresource("binding", "p", &PostParams::default(), &binding)
        .await
        .unwrap();
    assert_eq!(st["status"], "Success");
    let p = api.get("p").await.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("node-1"));
    let e = status(
        api.create_subresource::<_, Value>("binding", "p", &PostParams::default(), &binding)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(e.message, "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"node-1\"");
    let other = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "nope"}, "target": {"kind": "Node", "name": "node-1"}});
    let e = status(
        api.create_subresource::<_, Value>("binding", "nope", &PostParams::default(), &other)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);
    s.shutdown().await;
}

#[tokio::test]
async fn in_process_client_works() {
    let (s, _c) = start().await;
    let c = s.in_process_client();
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    api.create(&PostParams::default(), &cm("inproc"))
        .await
        .unwrap();
    assert!(api.get("inproc").await.is_ok());
    // Watches stream through the in-process service too.
    use futures::StreamExt;
    let rv = s.resource_version().to_string();
    let mut w = api
        .watch(&kube::api::WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.delete("inproc", &DeleteParams::default())
        .await
        .unwrap();
    loop {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let kube::api::WatchEvent::Deleted(o) = ev {
            assert_eq!(o.metadata.name.as_deref(), Some("inproc"));
            break;
        }
    }
    s.shutdown().await;
}

#[tokio::test]
async fn requests_without_the_token_are_unauthorized() {
    let (s, _c) = start().await;
    let mut kc = kube::config::Kubeconfig::from_yaml(&s.kubeconfig_yaml()).unwrap();
    if let Some(a) = kc.auth_infos[0].auth_info.as_mut() {
        a.token = Some("wrong".to_string().into());
    }
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let c = kube::Client::try_from(cfg).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    assert_eq!(
        status(api.list(&ListParams::default()).await.unwrap_err()).code,
        401
    );
    s.shutdown().await;
}

#[tokio::test]
async fn custom_resources_are_defaulted_pruned_and_validated_by_schema() {
    let (s, c) = start().await;
    s.apply_yaml(include_str!("../fixtures/gadgets.yaml"))
        .await
        .unwrap();
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("test.aipam.io", "v1", "Gadget"),
        "gadgets",
    );
    let api: Api<kube::api::DynamicObject> = Api::all_with(c.clone(), &ar);
    let mk = |name: &str, spec: Value| -> kube::api::DynamicObject {
        serde_json::from_value(json!({"apiVersion": "test.aipam.io/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": spec})).unwrap()
    };
    let o = api
        .create(
            &PostParams::default(),
            &mk(
                "g",
                json!({"subnet": "10.0.0.0/24", "unknown": 1, "extra": {"kept": true}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        o.data["spec"],
        json!({"subnet": "10.0.0.0/24", "disable": false, "extra": {"kept": true}})
    );
    let e = status(
        api.create(
            &PostParams::default(),
            &mk("bad", json!({"ipVersion": 5, "vlan": 5000})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message
            .starts_with("Gadget.test.aipam.io \"bad\" is invalid: ["),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("spec.subnet: Required value"),
        "{}",
        e.message
    );
    assert!(
        e.message
            .contains("spec.ipVersion: Unsupported value: 5: supported values: \"4\", \"6\""),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("spec.vlan: Invalid value: 5000"),
        "{}",
        e.message
    );
    let e = status(
        api.patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ipVersion": "four"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    let e = status(
        api.patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"count": -1}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    let o = api
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"count": 2, "junk": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(o.data["status"], json!({"count": 2}));
    s.shutdown().await;
}

#[tokio::test]
async fn secrets_string_data_is_merged_into_data() {
    use k8s_openapi::api::core::v1::Secret;
    let (s, c) = start().await;
    let api: Api<Secret> = Api::namespaced(c.clone(), "default");
    let sec: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"token": "abc"}}))
            .unwrap();
    let out = api.create(&PostParams::default(), &sec).await.unwrap();
    assert!(out.string_data.is_none());
    assert_eq!(out.data.unwrap()["token"].0, b"abc".to_vec());
    s.shutdown().await;
}

#[tokio::test]
async fn built_in_kinds_are_served() {
    let (s, c) = start().await;
    for (path, kind, body) in [
        (
            "/api/v1/nodes",
            "Node",
            json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        ),
        (
            "/api/v1/namespaces/default/serviceaccounts",
            "ServiceAccount",
            json!({"metadata": {"name": "sa"}}),
        ),
        (
            "/api/v1/namespaces/default/events",
            "Event",
            json!({"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "R"}),
        ),
        (
            "/apis/events.k8s.io/v1/namespaces/default/events",
            "Event",
            json!({"metadata": {"name": "e2"}, "reason": "R", "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "x", "reportingInstance": "y", "action": "A"}),
        ),
        (
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
            "Lease",
            json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}}),
        ),
        (
            "/apis/apps/v1/namespaces/default/deployments",
            "Deployment",
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        ),
        (
            "/apis/apps/v1/namespaces/default/replicasets",
            "ReplicaSet",
            json!({"metadata": {"name": "r"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}}}),
        ),
        (
            "/apis/apps/v1/namespaces/default/statefulsets",
            "StatefulSet",
            json!({"metadata": {"name": "s"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}}}),
        ),
        (
            "/apis/apps/v1/namespaces/default/daemonsets",
            "DaemonSet",
            json!({"metadata": {"name": "ds"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}}}),
        ),
    ] {
        let (code, out) = raw(&c, "POST", path, "application/json", Some(body)).await;
        assert_eq!(code, 201, "{path}: {out}");
        assert_eq!(out["kind"], kind);
        let name = out["metadata"]["name"].as_str().unwrap();
        let (code, _) = raw(
            &c,
            "GET",
            &format!("{path}/{name}"),
            "application/json",
            None,
        )
        .await;
        assert_eq!(code, 200, "{path}");
    }
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(c.clone());
    let n = nodes.get("n1").await.unwrap();
    assert_eq!(
        n.status.unwrap().conditions.unwrap()[0].type_,
        "Ready",
        "node status is kept on create"
    );
    let deps: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(c.clone(), "default");
    assert!(
        deps.get("d").await.unwrap().status.is_none(),
        "workload status is reset on create"
    );
    // deletecollection with a selector.
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": n, "labels": {"l": l}}})).unwrap(),
        )
        .await
        .unwrap();
    }
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("l=x"),
    )
    .await
    .unwrap();
    let left: Vec<_> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(left, vec!["c"]);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_is_a_lock_and_updates_are_optimistic_under_concurrency() {
    let (s, c) = start_with_widgets().await;
    let w = widgets(&c, "t");
    // 16 concurrent creates of the same name: exactly one wins, the others get AlreadyExists.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move {
                w.create(
                    &PostParams::default(),
                    &widget("claim-10-0-0-1", json!({"by": i})),
                )
                .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(status(e).reason, "AlreadyExists"),
        }
    }
    assert_eq!(won, 1);
    // 16 concurrent replaces from the same resourceVersion: exactly one wins, the others conflict.
    let base = w.get("claim-10-0-0-1").await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let w = w.clone();
            let mut o = base.clone();
            o.data["spec"]["by"] = json!(100 + i);
            tokio::spawn(async move {
                w.replace("claim-10-0-0-1", &PostParams::default(), &o)
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(status(e).code, 409),
        }
    }
    assert_eq!(won, 1);
    // Concurrent patches without a resourceVersion are all applied (retried on the new state).
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move {
                w.patch(
                    "claim-10-0-0-1",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {format!("l{i}"): "x"}}})),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        w.get("claim-10-0-0-1")
            .await
            .unwrap()
            .metadata
            .labels
            .unwrap()
            .len(),
        16
    );
    s.shutdown().await;
}

#[tokio::test]
async fn events_are_one_resource_seen_through_two_apis() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let (s, c) = start().await;
    let v1: Api<Event> = Api::namespaced(c.clone(), "default");
    let core: Api<CoreEvent> = Api::namespaced(c.clone(), "default");
    let e: Event = serde_json::from_value(json!({
        "metadata": {"name": "e1"}, "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "Allocated", "type": "Normal",
        "note": "10.0.0.1 from pool-a", "action": "Allocate", "reportingController": "aipam", "reportingInstance": "aipam-1",
        "regarding": {"kind": "Pod", "namespace": "default", "name": "p"}
    }))
    .unwrap();
    v1.create(&PostParams::default(), &e).await.unwrap();
    let seen = core.get("e1").await.unwrap();
    assert_eq!(seen.message.as_deref(), Some("10.0.0.1 from pool-a"));
    assert_eq!(seen.involved_object.name.as_deref(), Some("p"));
    assert_eq!(seen.reporting_component.as_deref(), Some("aipam"));
    let listed = core
        .list(&ListParams::default().fields("involvedObject.name=p,reason=Allocated"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let back = v1
        .patch(
            "e1",
            &PatchParams::default(),
            &Patch::Merge(json!({"note": "changed"})),
        )
        .await
        .unwrap();
    assert_eq!(back.note.as_deref(), Some("changed"));
    assert_eq!(
        core.get("e1").await.unwrap().message.as_deref(),
        Some("changed")
    );
    s.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_removes_fields_a_manager_stops_applying() {
    let (s, c) = start_with_widgets().await;
    let w = widgets(&c, "t");
    let cfg = |labels: Value, spec: Value| json!({"apiVersion": "test.aipam.io/v1", "kind": "Widget", "metadata": {"name": "a", "labels": labels}, "spec": spec});
    let pp = |m: &str| PatchParams::apply(m).force();
    w.patch(
        "a",
        &pp("one"),
        &Patch::Apply(cfg(
            json!({"x": "1", "y": "1"}),
            json!({"keep": 1, "drop": 1, "map": {"k1": "v", "k2": "v"}}),
        )),
    )
    .await
    .unwrap();
    w.patch(
        "a",
        &pp("two"),
        &Patch::Apply(cfg(json!({"y": "1"}), json!({"other": 2}))),
    )
    .await
    .unwrap();
    let o = w
        .patch(
            "a",
            &pp("one"),
            &Patch::Apply(cfg(
                json!({"x": "1"}),
                json!({"keep": 1, "map": {"k1": "v"}}),
            )),
        )
        .await
        .unwrap();
    assert_eq!(
        o.data["spec"],
        json!({"keep": 1, "map": {"k1": "v"}, "other": 2})
    );
    let labels = o.metadata.labels.unwrap();
    assert_eq!(
        labels.len(),
        2,
        "y is still applied by manager two: {labels:?}"
    );
    // Status is tracked separately.
    w.patch_status("a", &pp("one"), &Patch::Apply(json!({"apiVersion": "test.aipam.io/v1", "kind": "Widget", "metadata": {"name": "a"}, "status": {"ips": {"10.0.0.1": "p1", "10.0.0.2": "p2"}}}))).await.unwrap();
    let o = w.patch_status("a", &pp("one"), &Patch::Apply(json!({"apiVersion": "test.aipam.io/v1", "kind": "Widget", "metadata": {"name": "a"}, "status": {"ips": {"10.0.0.2": "p2"}}}))).await.unwrap();
    assert_eq!(o.data["status"], json!({"ips": {"10.0.0.2": "p2"}}));
    assert_eq!(o.data["spec"]["keep"], 1);
    s.shutdown().await;
}

#[tokio::test]
async fn successful_writes_are_counted_per_resource() {
    let (s, c) = start().await;
    create_ns(&c, "t").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "t");
    let cm = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"a": "1"}})).unwrap()
    };
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    cms.create(&PostParams::default(), &cm("b")).await.unwrap();
    // A refused write (AlreadyExists), a dry run and reads are not writes.
    cms.create(&PostParams::default(), &cm("a"))
        .await
        .unwrap_err();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    cms.create(&dry, &cm("c")).await.unwrap();
    cms.get("a").await.unwrap();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("b", &DeleteParams::default()).await.unwrap();
    let counts = s.write_counts();
    assert_eq!(counts.get("configmaps"), Some(&4), "{counts:?}");
    assert_eq!(counts.get("namespaces"), Some(&1), "{counts:?}");
    s.shutdown().await;
}
