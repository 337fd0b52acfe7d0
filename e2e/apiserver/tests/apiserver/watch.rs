//! Watches: event types, selectors as in lists, bookmarks, 410 Gone, kube-runtime's watcher.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

use super::common::*;

async fn next<K>(
    s: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin),
) -> WatchEvent<K> {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("watch event in time")
            .expect("stream open")
            .unwrap();
        if !matches!(ev, WatchEvent::Bookmark(_)) {
            return ev;
        }
    }
}

fn kind<K>(e: &WatchEvent<K>) -> &'static str {
    match e {
        WatchEvent::Added(_) => "ADDED",
        WatchEvent::Modified(_) => "MODIFIED",
        WatchEvent::Deleted(_) => "DELETED",
        WatchEvent::Bookmark(_) => "BOOKMARK",
        WatchEvent::Error(_) => "ERROR",
    }
}

#[tokio::test]
async fn watch_from_resource_version_sees_added_modified_deleted() {
    let (s, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let rv = s.resource_version().to_string();
    let mut w = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap(),
    )
    .await
    .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let mut seen = vec![];
    let mut last_rv = 0u64;
    for _ in 0..3 {
        let ev = next(&mut w).await;
        let rv: u64 = match &ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o
                .metadata
                .resource_version
                .clone()
                .unwrap()
                .parse()
                .unwrap(),
            _ => 0,
        };
        assert!(rv > last_rv, "resourceVersions increase");
        last_rv = rv;
        seen.push(kind(&ev));
    }
    assert_eq!(seen, vec!["ADDED", "MODIFIED", "DELETED"]);
    // Watching from an old resourceVersion replays what followed it.
    let mut w = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    assert_eq!(kind(&next(&mut w).await), "ADDED");
    s.shutdown().await;
}

#[tokio::test]
async fn watch_honours_label_selectors_with_transitions() {
    let (s, c) = start_with_widgets().await;
    let api = widgets(&c, "t");
    let rv = s.resource_version().to_string();
    let mut w = api
        .watch(&WatchParams::default().labels("app=web"), &rv)
        .await
        .unwrap()
        .boxed();
    let mut o = widget("x", json!({}));
    o.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    api.create(&PostParams::default(), &o).await.unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"a": 1}})),
    )
    .await
    .unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    let mut seen = vec![];
    for _ in 0..3 {
        seen.push(kind(&next(&mut w).await));
    }
    // Entering the selector is ADDED, leaving it is DELETED, as the watch cache reports them.
    assert_eq!(seen, vec!["ADDED", "MODIFIED", "DELETED"]);
    s.shutdown().await;
}

#[tokio::test]
async fn watch_honours_field_selector_spec_node_name() {
    let (s, c) = start().await;
    let api: Api<Pod> = Api::all(c.clone());
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let rv = s.resource_version().to_string();
    let mut w = api
        .watch(&WatchParams::default().fields("spec.nodeName=n1"), &rv)
        .await
        .unwrap()
        .boxed();
    for n in ["p1", "p2"] {
        pods.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": n}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap()).await.unwrap();
    }
    let _: Value = pods
        .create_subresource(
            "binding",
            "p2",
            &PostParams::default(),
            &json!({"target": {"kind": "Node", "name": "n2"}}),
        )
        .await
        .unwrap();
    let _: Value = pods
        .create_subresource(
            "binding",
            "p1",
            &PostParams::default(),
            &json!({"target": {"kind": "Node", "name": "n1"}}),
        )
        .await
        .unwrap();
    match next(&mut w).await {
        WatchEvent::Added(p) => assert_eq!(p.metadata.name.as_deref(), Some("p1")),
        other => panic!("expected ADDED p1, got {other:?}"),
    }
    pods.delete(
        "p1",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(kind(&next(&mut w).await), "DELETED");
    s.shutdown().await;
}

#[tokio::test]
async fn compacted_resource_version_is_410_gone() {
    let (s, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap(),
    )
    .await
    .unwrap();
    s.compact();
    let mut w = api
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    match next(&mut w).await {
        WatchEvent::Error(st) => {
            assert_eq!(st.code, 410);
            assert_eq!(st.reason, "Expired");
            assert!(
                st.message.starts_with("too old resource version: 1"),
                "{}",
                st.message
            );
        }
        other => panic!("expected ERROR 410, got {other:?}"),
    }
    // A watch from the current resourceVersion is fine.
    let rv = s.resource_version().to_string();
    let mut w = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(kind(&next(&mut w).await), "DELETED");
    s.shutdown().await;
}

#[tokio::test]
async fn the_event_window_is_bounded() {
    let opts = aipam_apiserver::ServerOptions {
        event_window: 5,
        ..Default::default()
    };
    let s = aipam_apiserver::ApiServer::start(opts).await.unwrap();
    let c = s.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let rv0 = s.resource_version().to_string();
    for i in 0..10 {
        api.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": format!("c{i}")}})).unwrap(),
        )
        .await
        .unwrap();
    }
    let mut w = api
        .watch(&WatchParams::default(), &rv0)
        .await
        .unwrap()
        .boxed();
    match next(&mut w).await {
        WatchEvent::Error(st) => assert_eq!(st.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
    s.shutdown().await;
}

#[tokio::test]
async fn bookmarks_when_allowed() {
    let (s, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let rv = s.resource_version().to_string();
    let mut w = api
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default()
            },
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    // Without allowWatchBookmarks, none arrive.
    let mut w = api
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    assert!(tokio::time::timeout(Duration::from_millis(700), w.next())
        .await
        .is_err());
    s.shutdown().await;
}

#[tokio::test]
async fn watch_with_timeout_ends() {
    let (s, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let mut w = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .boxed();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while w.next().await.is_some() {}
    })
    .await;
    assert!(end.is_ok(), "the watch closes after timeoutSeconds");
    s.shutdown().await;
}

#[tokio::test]
async fn kube_runtime_watcher_lists_and_watches() {
    let (s, c) = start_with_widgets().await;
    let api = widgets(&c, "t");
    api.create(&PostParams::default(), &widget("before", json!({})))
        .await
        .unwrap();
    let mut stream = watcher(api.clone(), watcher::Config::default().labels("!skip"))
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("before"));
    api.create(&PostParams::default(), &widget("after", json!({})))
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.metadata.name.as_deref(), Some("after"));
    // Streaming lists (sendInitialEvents) too.
    let mut streaming = watcher(api.clone(), watcher::Config::default().streaming_lists())
        .applied_objects()
        .boxed();
    let mut names = vec![];
    for _ in 0..2 {
        let o = tokio::time::timeout(Duration::from_secs(10), streaming.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        names.push(o.metadata.name.unwrap());
    }
    names.sort();
    assert_eq!(names, vec!["after", "before"]);
    s.shutdown().await;
}

#[tokio::test]
async fn metadata_only_get_list_and_watch() {
    let (s, c) = start_with_widgets().await;
    let api = widgets(&c, "t");
    let mut o = widget("m", json!({"subnet": "x"}));
    o.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    api.create(&PostParams::default(), &o).await.unwrap();
    let m = api.get_metadata("m").await.unwrap();
    assert_eq!(m.metadata.labels.unwrap()["a"], "b");
    let l = api
        .list_metadata(&kube::api::ListParams::default().labels("a=b"))
        .await
        .unwrap();
    assert_eq!(l.items.len(), 1);
    let (_, raw_list) = raw_accept(
        &c,
        "GET",
        "/apis/test.aipam.io/v1/namespaces/t/widgets",
        "application/json",
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        None,
    )
    .await;
    assert_eq!(raw_list["kind"], "PartialObjectMetadataList");
    assert!(raw_list["items"][0].get("spec").is_none());
    let rv = s.resource_version().to_string();
    let mut w = api
        .watch_metadata(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"c": "d"}}})),
    )
    .await
    .unwrap();
    match next(&mut w).await {
        WatchEvent::Modified(p) => assert_eq!(p.metadata.labels.unwrap()["c"], "d"),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    s.shutdown().await;
}
