//! Deletion: finalizers, graceful Pod deletion, garbage collection, namespaces, CRDs.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::{json, Value};

use super::common::*;

fn cm_owned(name: &str, owners: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": owners}})).unwrap()
}

#[tokio::test]
async fn finalizers_hold_deletion_until_the_last_one_is_removed() {
    let (s, c) = start_with_widgets().await;
    let w = widgets(&c, "t");
    let mut o = widget("f", json!({}));
    o.metadata.finalizers = Some(vec!["a.io/one".into(), "a.io/two".into()]);
    w.create(&PostParams::default(), &o).await.unwrap();
    w.delete("f", &DeleteParams::default()).await.unwrap();
    let cur = w.get("f").await.unwrap();
    assert!(cur.metadata.deletion_timestamp.is_some());
    // A second delete changes nothing; no new finalizer may be added now.
    w.delete("f", &DeleteParams::default()).await.unwrap();
    let e = status(
        w.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": ["a.io/one", "a.io/two", "a.io/three"]}}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    w.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["a.io/two"]}})),
    )
    .await
    .unwrap();
    assert!(w.get("f").await.is_ok());
    let json: json_patch::Patch = serde_json::from_value(json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "a.io/two"}, {"op": "remove", "path": "/metadata/finalizers/0"}])).unwrap();
    w.patch("f", &PatchParams::default(), &Patch::<()>::Json(json))
        .await
        .unwrap();
    assert_eq!(status(w.get("f").await.unwrap_err()).code, 404);
    // Preconditions.
    let created = w
        .create(&PostParams::default(), &widget("g", json!({})))
        .await
        .unwrap();
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("other".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    assert_eq!(status(w.delete("g", &dp).await.unwrap_err()).code, 409);
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: created.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    w.delete("g", &dp).await.unwrap();
    assert_eq!(
        status(w.delete("g", &DeleteParams::default()).await.unwrap_err()).code,
        404
    );
    s.shutdown().await;
}

#[tokio::test]
async fn unscheduled_pods_go_at_once_bound_pods_wait_for_grace() {
    let (s, c) = start().await;
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &p).await.unwrap();
    api.delete("p", &DeleteParams::default()).await.unwrap();
    assert_eq!(status(api.get("p").await.unwrap_err()).code, 404);
    api.create(&PostParams::default(), &p).await.unwrap();
    let _: Value = api
        .create_subresource(
            "binding",
            "p",
            &PostParams::default(),
            &json!({"target": {"kind": "Node", "name": "n"}}),
        )
        .await
        .unwrap();
    api.delete("p", &DeleteParams::default()).await.unwrap();
    let cur = api.get("p").await.unwrap();
    assert!(cur.metadata.deletion_timestamp.is_some());
    assert_eq!(cur.metadata.deletion_grace_period_seconds, Some(30));
    // The kubelet's confirmation: a delete with grace period 0.
    api.delete(
        "p",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(status(api.get("p").await.unwrap_err()).code, 404);
    s.shutdown().await;
}

#[tokio::test]
async fn garbage_collection_of_objects_owned_by_custom_resources() {
    let (s, c) = start_with_widgets().await;
    let w = widgets(&c, "t");
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "t");
    let mk_owner = |name: &str, uid: &str| json!({"apiVersion": "test.aipam.io/v1", "kind": "Widget", "name": name, "uid": uid});
    // Background (default).
    let owner = w
        .create(&PostParams::default(), &widget("bg", json!({})))
        .await
        .unwrap();
    let other = w
        .create(&PostParams::default(), &widget("other", json!({})))
        .await
        .unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    let other_uid = other.metadata.uid.clone().unwrap();
    cms.create(
        &PostParams::default(),
        &cm_owned("dep", json!([mk_owner("bg", &uid)])),
    )
    .await
    .unwrap();
    cms.create(
        &PostParams::default(),
        &cm_owned(
            "shared",
            json!([mk_owner("bg", &uid), mk_owner("other", &other_uid)]),
        ),
    )
    .await
    .unwrap();
    w.delete("bg", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        status(w.get("bg").await.unwrap_err()).code,
        404,
        "owner goes at once in background deletion"
    );
    eventually("dependent collected", || async {
        cms.get_opt("dep").await.unwrap().is_none()
    })
    .await;
    eventually("dangling owner reference removed", || async {
        cms.get("shared")
            .await
            .unwrap()
            .metadata
            .owner_references
            .unwrap()
            .len()
            == 1
    })
    .await;
    // Orphan: dependents stay, without the owner reference.
    let owner = w
        .create(&PostParams::default(), &widget("orph", json!({})))
        .await
        .unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    cms.create(
        &PostParams::default(),
        &cm_owned("kept", json!([mk_owner("orph", &uid)])),
    )
    .await
    .unwrap();
    w.delete(
        "orph",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(status(w.get("orph").await.unwrap_err()).code, 404);
    let kept = cms.get("kept").await.unwrap();
    assert!(kept
        .metadata
        .owner_references
        .unwrap_or_default()
        .is_empty());
    // Foreground: the owner stays (deletionTimestamp, foregroundDeletion) until its dependents are gone.
    let owner = w
        .create(&PostParams::default(), &widget("fg", json!({})))
        .await
        .unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    let mut dep = cm_owned("fgdep", json!([mk_owner("fg", &uid)]));
    dep.metadata.finalizers = Some(vec!["test/hold".into()]);
    cms.create(&PostParams::default(), &dep).await.unwrap();
    w.delete("fg", &DeleteParams::foreground()).await.unwrap();
    let cur = w.get("fg").await.unwrap();
    assert!(cur.metadata.deletion_timestamp.is_some());
    assert!(cur
        .metadata
        .finalizers
        .unwrap()
        .contains(&"foregroundDeletion".to_string()));
    eventually("dependent marked for deletion", || async {
        cms.get("fgdep")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    assert!(w.get("fg").await.is_ok());
    cms.patch(
        "fgdep",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("owner deleted after its dependents", || async {
        w.get_opt("fg").await.unwrap().is_none()
    })
    .await;
    s.shutdown().await;
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_content() {
    let (s, c) = start().await;
    create_ns(&c, "gone").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "gone");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "a", "finalizers": ["test/hold"]}}))
            .unwrap(),
    )
    .await
    .unwrap();
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.delete("gone", &DeleteParams::default()).await.unwrap();
    let ns = nss.get("gone").await.unwrap();
    assert!(ns.metadata.deletion_timestamp.is_some());
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    // While terminating, creating in it is Forbidden.
    let e = status(
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "b"}})).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert!(
        e.message.contains("because it is being terminated"),
        "{}",
        e.message
    );
    // The namespace waits for its content's finalizers.
    eventually("content marked for deletion", || async {
        cms.get("a")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    assert!(nss.get_opt("gone").await.unwrap().is_some());
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("namespace removed", || async {
        nss.get_opt("gone").await.unwrap().is_none()
    })
    .await;
    assert!(cms.get_opt("a").await.unwrap().is_none());
    let e = status(
        nss.delete("default", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    s.shutdown().await;
}

#[tokio::test]
async fn crds_make_resources_served_and_deleting_them_stops_it() {
    let (s, c) = start_with_widgets().await;
    let (code, _) = raw(
        &c,
        "GET",
        "/apis/test.aipam.io/v1/namespaces/t/widgets",
        "application/json",
        None,
    )
    .await;
    assert_eq!(code, 200);
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(c.clone());
    let crd = crds.get("widgets.test.aipam.io").await.unwrap();
    let conds = crd.status.unwrap().conditions.unwrap();
    assert!(conds
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True"));
    widgets(&c, "t")
        .create(&PostParams::default(), &widget("x", json!({})))
        .await
        .unwrap();
    crds.delete("widgets.test.aipam.io", &DeleteParams::default())
        .await
        .unwrap();
    let (code, _) = raw(
        &c,
        "GET",
        "/apis/test.aipam.io/v1/namespaces/t/widgets",
        "application/json",
        None,
    )
    .await;
    assert_eq!(code, 404);
    s.shutdown().await;
}

#[tokio::test]
async fn kubelet_simulation_confirms_deletions_on_ready_nodes_only() {
    let (s, c) = start().await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(c.clone());
    for (n, ready) in [("ready", "True"), ("dead", "Unknown")] {
        let node = serde_json::from_value(json!({"metadata": {"name": n}, "status": {"conditions": [{"type": "Ready", "status": ready}]}})).unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    for (p, n) in [("on-ready", "ready"), ("on-dead", "dead")] {
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": p}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        )
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let _: Value = pods
            .create_subresource(
                "binding",
                p,
                &PostParams::default(),
                &json!({"target": {"kind": "Node", "name": n}}),
            )
            .await
            .unwrap();
        pods.delete(p, &DeleteParams::default()).await.unwrap();
    }
    eventually("pod on a Ready node removed", || async {
        pods.get_opt("on-ready").await.unwrap().is_none()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let stuck = pods.get("on-dead").await.unwrap();
    assert!(
        stuck.metadata.deletion_timestamp.is_some(),
        "stays Terminating on a node that is not Ready"
    );
    s.set_kubelet_simulation(false);
    s.shutdown().await;
}
