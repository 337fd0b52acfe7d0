//! Admission webhooks as kube-apiserver calls them.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::common::*;

fn pod(labels: Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"generateName": "web-", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "X", "value": "1"}]}]}}))
    .unwrap()
}

fn pod_rule() -> Value {
    json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}])
}

/// A webhook entry pointing at a Service mapped to the hook.
fn svc_webhook(name: &str, hook: &Hook, extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 5,
        "clientConfig": {"service": {"namespace": "webhooks", "name": "wh", "path": format!("/{name}"), "port": 443}, "caBundle": hook.ca_bundle()},
        "rules": pod_rule(),
    });
    for (k, v) in extra.as_object().unwrap() {
        w[k] = v.clone();
    }
    w
}

fn url_webhook(name: &str, addr: std::net::SocketAddr, ca_bundle: &str, extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 5,
        "clientConfig": {"url": format!("https://127.0.0.1:{}/{name}", addr.port()), "caBundle": ca_bundle},
        "rules": pod_rule(),
    });
    for (k, v) in extra.as_object().unwrap() {
        w[k] = v.clone();
    }
    w
}

async fn configure(s: &aipam_apiserver::ApiServerHandle, kind: &str, webhooks: Vec<Value>) {
    s.apply_object(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": format!("cfg-{}", kind.to_lowercase())}, "webhooks": webhooks}))
        .await
        .unwrap();
}

#[tokio::test]
async fn mutating_patch_then_generate_name_then_validating() {
    let (s, c) = start().await;
    create_ns(&c, "t").await;
    let hook = hook(|req| {
        if req["object"]["kind"] == "Pod" && req["operation"] == "CREATE" && req["object"]["metadata"]["name"].is_null() {
            let patch = json!([
                {"op": "add", "path": "/metadata/annotations", "value": {}},
                {"op": "add", "path": "/metadata/annotations/ipam.spidernet.io~1ippool", "value": "{\"ipv4\":[\"p\"]}"},
                {"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "Y", "value": "2"}},
                {"op": "test", "path": "/spec/containers/0/env/0/name", "value": "X"},
                {"op": "copy", "from": "/spec/containers/0/image", "path": "/metadata/annotations/image"},
                {"op": "move", "from": "/metadata/annotations/image", "path": "/metadata/annotations/moved~0image"},
                {"op": "replace", "path": "/spec/containers/0/image", "value": "patched"},
                {"op": "remove", "path": "/spec/containers/0/env/0"}
            ]);
            json!({"allowed": true, "patchType": "JSONPatch", "patch": b64_patch(patch)})
        } else {
            json!({"allowed": true})
        }
    })
    .await;
    s.set_webhook_service("webhooks", "wh", hook.addr);
    configure(
        &s,
        "MutatingWebhookConfiguration",
        vec![svc_webhook("mutate.test", &hook, json!({}))],
    )
    .await;
    configure(
        &s,
        "ValidatingWebhookConfiguration",
        vec![svc_webhook("validate.test", &hook, json!({}))],
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "t");
    let created = pods
        .create(&PostParams::default(), &pod(json!({})))
        .await
        .unwrap();
    let name = created.metadata.name.clone().unwrap();
    let ann = created.metadata.annotations.clone().unwrap();
    assert_eq!(ann["ipam.spidernet.io/ippool"], "{\"ipv4\":[\"p\"]}");
    assert_eq!(ann["moved~image"], "i");
    let c0 = &created.spec.as_ref().unwrap().containers[0];
    assert_eq!(c0.image.as_deref(), Some("patched"));
    assert_eq!(
        c0.env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.clone())
            .collect::<Vec<_>>(),
        vec!["Y"]
    );
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 2);
    let (m, v) = (&reqs[0], &reqs[1]);
    // Mutating admission: no name, no uid yet.
    assert!(m.get("name").is_none());
    assert!(m["object"]["metadata"]["name"].is_null() && m["object"]["metadata"]["uid"].is_null());
    assert_eq!(m["object"]["metadata"]["generateName"], "web-");
    assert_eq!(m["namespace"], "t");
    assert_eq!(m["dryRun"], false);
    assert_eq!(
        m["kind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert_eq!(
        m["resource"],
        json!({"group": "", "version": "v1", "resource": "pods"})
    );
    assert!(m["userInfo"]["username"].is_string());
    // Validating admission: the generated name and the uid are set, and the mutation is visible.
    assert_eq!(v["name"], name.as_str());
    assert_eq!(v["object"]["metadata"]["name"], name.as_str());
    assert!(v["object"]["metadata"]["uid"].is_string());
    assert_eq!(
        v["object"]["metadata"]["annotations"]["ipam.spidernet.io/ippool"],
        "{\"ipv4\":[\"p\"]}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn untrusted_server_is_a_call_failure_handled_by_failure_policy() {
    let (s, c) = start().await;
    create_ns(&c, "t").await;
    let hook = hook(|_| json!({"allowed": true})).await;
    let other = hook_ca_only().await;
    configure(
        &s,
        "ValidatingWebhookConfiguration",
        vec![url_webhook("untrusted.test", hook.addr, &other, json!({}))],
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "t");
    let e = status(
        pods.create(&PostParams::default(), &pod(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 500);
    assert!(
        e.message
            .contains("failed calling webhook \"untrusted.test\""),
        "{}",
        e.message
    );
    assert!(
        hook.requests().is_empty(),
        "the request never reached the untrusted server"
    );
    configure(
        &s,
        "ValidatingWebhookConfiguration",
        vec![url_webhook(
            "untrusted.test",
            hook.addr,
            &other,
            json!({"failurePolicy": "Ignore"}),
        )],
    )
    .await;
    pods.create(&PostParams::default(), &pod(json!({})))
        .await
        .unwrap();
    // With the right caBundle it is called.
    configure(
        &s,
        "ValidatingWebhookConfiguration",
        vec![url_webhook(
            "trusted.test",
            hook.addr,
            &hook.ca_bundle(),
            json!({}),
        )],
    )
    .await;
    pods.create(&PostParams::default(), &pod(json!({})))
        .await
        .unwrap();
    assert_eq!(hook.requests().len(), 1);
    s.shutdown().await;
}

/// A CA bundle that did not sign the hook's certificate.
async fn hook_ca_only() -> String {
    let h = hook(|_| json!({"allowed": true})).await;
    h.ca_bundle()
}

#[tokio::test]
async fn dry_run_is_passed_and_side_effects_enforced() {
    let (s, c) = start().await;
    create_ns(&c, "t").await;
    let hook = hook(|_| json!({"allowed": true})).await;
    s.set_webhook_service("webhooks", "wh", hook.addr);
    let pods: Api<Pod> = Api::namespaced(c.clone(), "t");
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    for se in ["None", "NoneOnDryRun"] {
        configure(
            &s,
            "MutatingWebhookConfiguration",
            vec![svc_webhook("se.test", &hook, json!({"sideEffects": se}))],
        )
        .await;
        pods.create(&dry, &pod(json!({}))).await.unwrap();
        assert_eq!(hook.requests().last().unwrap()["dryRun"], true);
    }
    let n = hook.requests().len();
    for se in ["Some", "Unknown"] {
        configure(
            &s,
            "MutatingWebhookConfiguration",
            vec![svc_webhook("se.test", &hook, json!({"sideEffects": se}))],
        )
        .await;
        let e = status(pods.create(&dry, &pod(json!({}))).await.unwrap_err());
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "admission webhook \"se.test\" does not support dry run"
        );
    }
    assert_eq!(hook.requests().len(), n, "not called");
    assert!(pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .is_empty());
    s.shutdown().await;
}

#[tokio::test]
async fn namespace_and_object_selectors_with_match_expressions() {
    let (s, c) = start().await;
    create_ns(&c, "t").await;
    let hook = hook(|_| json!({"allowed": true})).await;
    s.set_webhook_service("webhooks", "wh", hook.addr);
    configure(&s, "ValidatingWebhookConfiguration", vec![svc_webhook("sel.test", &hook, json!({
        "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]},
        "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}
    }))])
    .await;
    let in_t: Api<Pod> = Api::namespaced(c.clone(), "t");
    let in_sys: Api<Pod> = Api::namespaced(c.clone(), "kube-system");
    in_sys
        .create(&PostParams::default(), &pod(json!({})))
        .await
        .unwrap();
    in_t.create(&PostParams::default(), &pod(json!({"skip": "yes"})))
        .await
        .unwrap();
    assert!(hook.requests().is_empty());
    in_t.create(&PostParams::default(), &pod(json!({"other": "x"})))
        .await
        .unwrap();
    assert_eq!(hook.requests().len(), 1);
    s.shutdown().await;
}

#[tokio::test]
async fn refusals_carry_the_webhook_message_and_code() {
    let (s, c) = start().await;
    create_ns(&c, "t").await;
    let hook = hook(|req| {
        if req["object"]["metadata"]["labels"]["code"] == "none" {
            json!({"allowed": false, "status": {"message": "no pool can serve this Pod"}})
        } else {
            json!({"allowed": false, "status": {"code": 422, "reason": "Invalid", "message": "pool p is exhausted"}})
        }
    })
    .await;
    s.set_webhook_service("webhooks", "wh", hook.addr);
    configure(
        &s,
        "ValidatingWebhookConfiguration",
        vec![svc_webhook("deny.test", &hook, json!({}))],
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "t");
    let e = status(
        pods.create(&PostParams::default(), &pod(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        e.message,
        "admission webhook \"deny.test\" denied the request: pool p is exhausted"
    );
    let e = status(
        pods.create(&PostParams::default(), &pod(json!({"code": "none"})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "admission webhook \"deny.test\" denied the request: no pool can serve this Pod"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn reinvocation_if_needed() {
    let (s, c) = start().await;
    create_ns(&c, "t").await;
    let hook = hook(|req| {
        let labels = &req["object"]["metadata"]["labels"];
        let first = req["object"]["metadata"]["annotations"].is_null();
        // Webhook "a" adds label a; webhook "b" adds label b (and an annotation map first time).
        let want = if labels.get("a").is_none() { Some("a") } else if labels.get("b").is_none() { Some("b") } else { None };
        match want {
            Some(k) => {
                let mut ops = vec![];
                if labels.is_null() {
                    ops.push(json!({"op": "add", "path": "/metadata/labels", "value": {}}));
                }
                ops.push(json!({"op": "add", "path": format!("/metadata/labels/{k}"), "value": "1"}));
                if first && k == "b" {
                    ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {"b": "1"}}));
                }
                json!({"allowed": true, "patchType": "JSONPatch", "patch": b64_patch(Value::Array(ops))})
            }
            None => json!({"allowed": true}),
        }
    })
    .await;
    s.set_webhook_service("webhooks", "wh", hook.addr);
    configure(
        &s,
        "MutatingWebhookConfiguration",
        vec![
            svc_webhook("a.test", &hook, json!({"reinvocationPolicy": "IfNeeded"})),
            svc_webhook("b.test", &hook, json!({"reinvocationPolicy": "Never"})),
        ],
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "t");
    let p = pods
        .create(&PostParams::default(), &pod(Value::Null))
        .await
        .unwrap();
    let labels = p.metadata.labels.unwrap();
    assert!(labels.contains_key("a") && labels.contains_key("b"));
    let calls: Vec<String> = s.webhook_calls().into_iter().map(|c| c.0).collect();
    assert_eq!(
        calls,
        vec!["a.test", "b.test", "a.test"],
        "a is reinvoked once because b changed the object"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn timeouts_and_rules_on_operations_and_subresources() {
    let (s, c) = start().await;
    create_ns(&c, "t").await;
    let slow = hook(|_| json!({"allowed": true, "_delayMs": 1500})).await;
    s.set_webhook_service("webhooks", "wh", slow.addr);
    configure(
        &s,
        "ValidatingWebhookConfiguration",
        vec![svc_webhook(
            "slow.test",
            &slow,
            json!({"timeoutSeconds": 1}),
        )],
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "t");
    let e = status(
        pods.create(&PostParams::default(), &pod(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 500);
    assert!(e.message.contains("deadline"), "{}", e.message);
    configure(
        &s,
        "ValidatingWebhookConfiguration",
        vec![svc_webhook(
            "slow.test",
            &slow,
            json!({"timeoutSeconds": 1, "failurePolicy": "Ignore"}),
        )],
    )
    .await;
    let p = pods
        .create(&PostParams::default(), &pod(json!({})))
        .await
        .unwrap();
    let name = p.metadata.name.unwrap();
    // Rules: only UPDATE of pods/status.
    let fast = hook(|_| json!({"allowed": false, "status": {"message": "status refused"}})).await;
    s.set_webhook_service("webhooks", "wh", fast.addr);
    let rule = json!([{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/status"]}]);
    configure(
        &s,
        "ValidatingWebhookConfiguration",
        vec![svc_webhook("status.test", &fast, json!({"rules": rule}))],
    )
    .await;
    pods.create(&PostParams::default(), &pod(json!({})))
        .await
        .unwrap();
    pods.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    assert!(fast.requests().is_empty());
    let e = status(
        pods.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    let r = &fast.requests()[0];
    assert_eq!(r["subResource"], "status");
    assert_eq!(r["operation"], "UPDATE");
    assert!(r["oldObject"]["metadata"]["name"].is_string());
    s.shutdown().await;
}

#[tokio::test]
async fn a_service_with_several_endpoints_spreads_calls_and_skips_dead_ones() {
    let (s, c) = start().await;
    create_ns(&c, "t").await;
    let a = hook(|_| json!({"allowed": true})).await;
    let b = hook(|_| json!({"allowed": true})).await;
    let dead = hook(|_| json!({"allowed": true})).await;
    let dead_addr = dead.addr;
    drop(dead);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    s.set_webhook_endpoints("webhooks", "wh", vec![a.addr, b.addr, dead_addr]);
    let mut w = svc_webhook("spread.test", &a, json!({}));
    // Both live endpoints' CAs, as one bundle.
    use base64::Engine;
    w["clientConfig"]["caBundle"] = json!(
        base64::engine::general_purpose::STANDARD.encode(format!("{}{}", a.ca_pem, b.ca_pem))
    );
    configure(&s, "ValidatingWebhookConfiguration", vec![w]).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "t");
    for _ in 0..9 {
        pods.create(&PostParams::default(), &pod(json!({})))
            .await
            .expect("a dead endpoint is skipped, the call goes to a live one");
    }
    let (na, nb) = (a.requests().len(), b.requests().len());
    assert_eq!(na + nb, 9, "every create was reviewed once");
    assert!(na >= 3 && nb >= 3, "calls are spread: {na} and {nb}");
    // With no live endpoint at all, the call fails and failurePolicy Fail refuses the Pod.
    s.set_webhook_endpoints("webhooks", "wh", vec![dead_addr]);
    let e = status(
        pods.create(&PostParams::default(), &pod(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 500, "{}", e.message);
    assert!(
        e.message.contains("failed calling webhook"),
        "{}",
        e.message
    );
    s.shutdown().await;
}

#[tokio::test]
async fn webhooks_see_the_user_of_the_bearer_token() {
    let (s, c) = start().await;
    create_ns(&c, "t").await;
    let hook = hook(|_| json!({"allowed": true})).await;
    s.set_webhook_service("webhooks", "wh", hook.addr);
    configure(
        &s,
        "ValidatingWebhookConfiguration",
        vec![svc_webhook("who.test", &hook, json!({}))],
    )
    .await;
    s.add_user("alice-token", "alice", &["devs"]);
    s.add_user(
        "op-token",
        "system:serviceaccount:aipam-system:aipam-operator",
        &[],
    );
    let pods_as = |c: kube::Client| Api::<Pod>::namespaced(c, "t");
    pods_as(c.clone())
        .create(&PostParams::default(), &pod(json!({})))
        .await
        .unwrap();
    pods_as(s.client_for("alice-token").await.unwrap())
        .create(&PostParams::default(), &pod(json!({})))
        .await
        .unwrap();
    pods_as(s.client_for("op-token").await.unwrap())
        .create(&PostParams::default(), &pod(json!({})))
        .await
        .unwrap();
    let users: Vec<Value> = hook
        .requests()
        .iter()
        .map(|r| r["userInfo"].clone())
        .collect();
    assert_eq!(
        users,
        [
            json!({"username": "system:admin", "groups": ["system:masters", "system:authenticated"]}),
            json!({"username": "alice", "groups": ["devs", "system:authenticated"]}),
            json!({"username": "system:serviceaccount:aipam-system:aipam-operator",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:aipam-system", "system:authenticated"]}),
        ]
    );
    // An unknown token is refused; a user other than the administrator cannot drive the
    // stand-in's own controls.
    let e = pods_as(s.client_for("nobody").await.unwrap())
        .create(&PostParams::default(), &pod(json!({})))
        .await
        .unwrap_err();
    assert_eq!(status(e).code, 401);
    let alice = s.client_for("alice-token").await.unwrap();
    let (code, _) = raw(
        &alice,
        "PUT",
        "/_aipam/faults",
        "application/json",
        Some(json!({"errorRate": 1.0})),
    )
    .await;
    assert_eq!(code, 403);
    s.shutdown().await;
}
