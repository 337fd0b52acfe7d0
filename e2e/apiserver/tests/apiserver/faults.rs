//! Fault injection through the library handle.

use std::time::Duration;

use aipam_apiserver::FaultConfig;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use super::common::*;

#[tokio::test]
async fn injected_conflicts_errors_and_delays() {
    let (s, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();
    s.set_faults(FaultConfig {
        conflict_rate: 1.0,
        ..Default::default()
    });
    assert_eq!(
        status(api.create(&PostParams::default(), &cm).await.unwrap_err()).code,
        409
    );
    assert!(
        api.list(&ListParams::default()).await.is_ok(),
        "reads are not conflicted"
    );
    s.set_faults(FaultConfig {
        error_rate: 1.0,
        ..Default::default()
    });
    let e = status(api.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    s.set_faults(FaultConfig {
        delay: Duration::from_millis(300),
        ..Default::default()
    });
    let t = std::time::Instant::now();
    api.create(&PostParams::default(), &cm).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    s.set_faults(FaultConfig {
        slow_rate: 1.0,
        slow: Duration::from_millis(200),
        ..Default::default()
    });
    let t = std::time::Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
    s.set_faults(FaultConfig::default());
    let counts = s.fault_counts();
    assert_eq!(counts["conflict"], 1, "{counts:?}");
    assert_eq!(counts["error"], 1, "{counts:?}");
    assert_eq!(counts["slow"], 1, "{counts:?}");
    s.shutdown().await;
}

#[tokio::test]
async fn dropped_watches_end_the_stream() {
    use futures::StreamExt;
    let (s, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    s.set_faults(FaultConfig {
        watch_drop_rate: 1.0,
        ..Default::default()
    });
    let rv = s.resource_version().to_string();
    let mut w = api
        .watch(&kube::api::WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap(),
    )
    .await
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap();
    assert!(first.is_some());
    let end = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap();
    assert!(end.is_none(), "the watch was dropped after one event");
    s.shutdown().await;
}

#[tokio::test]
async fn faults_and_webhook_services_over_the_admin_endpoints() {
    let (s, c) = start().await;
    let (code, _) = raw(
        &c,
        "PUT",
        "/_aipam/faults",
        "application/json",
        Some(json!({"errorRate": 1.0})),
    )
    .await;
    assert_eq!(code, 200);
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    assert_eq!(
        status(api.list(&ListParams::default()).await.unwrap_err()).code,
        500
    );
    let (code, _) = raw(
        &c,
        "PUT",
        "/_aipam/faults",
        "application/json",
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 200, "admin endpoints are not subject to faults");
    assert!(api.list(&ListParams::default()).await.is_ok());
    let (code, _) = raw(
        &c,
        "PUT",
        "/_aipam/webhook-services",
        "application/json",
        Some(json!({"namespace": "n", "name": "w", "address": "127.0.0.1:9443"})),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = raw(
        &c,
        "PUT",
        "/_aipam/webhook-services",
        "application/json",
        Some(json!({"namespace": "n", "name": "w", "address": "nope"})),
    )
    .await;
    assert_eq!(code, 400);
    let (code, calls) = raw(&c, "GET", "/_aipam/webhook-calls", "application/json", None).await;
    assert_eq!((code, calls), (200, json!([])));
    s.shutdown().await;
}
