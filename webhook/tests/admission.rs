#![allow(clippy::unwrap_used, clippy::expect_used)]
//! AdmissionReview bodies exactly as kube-apiserver sends them, over real TLS.

mod common;

use aipam_core::reservation::Reservation;
use common::{fixture_json, patch_ops, patched, review, start};
use serde_json::{json, Value};

fn record(pod: &Value) -> Reservation {
    Reservation::parse(
        pod["metadata"]["annotations"]["aipam.io/reservation"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn deployment_pod_from_generate_name() {
    let r = start().await;
    let body = fixture_json("pod-deployment.json");
    let resp = review(&r, "/mutate-pod", &body).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let pod = &body["request"]["object"];
    let out = patched(pod, &resp);
    // The only changes: the annotation map, with the reservation.
    let mut expected = pod.clone();
    let rec = record(&out);
    expected["metadata"]["annotations"] = json!({"aipam.io/reservation": rec.to_annotation()});
    assert_eq!(out, expected);
    assert_eq!(
        rec.id,
        aipam_core::reservation::reservation_id("705ab4f5-6393-11e8-b7cc-42010a800002")
    );
    // 10.20.0.11 is held: the Pod gets .10 or .12 of the namespace's default pool.
    let a = &rec.interfaces[0].ipv4[0];
    assert_eq!(a.pool, "team-a-v4");
    assert!(["10.20.0.10", "10.20.0.12"].contains(&a.address.to_string().as_str()));
    let claims = r.effects.state().claims;
    let claim = &claims[&a.claim_name()];
    assert_eq!(claim.spec.owner.as_ref().unwrap().kind, "Deployment");
    assert_eq!(claim.spec.pod_name, None);

    // The validating call that follows: the API server has set name and uid.
    let mut created = out.clone();
    created["metadata"]["name"] = json!("web-7d4b9c-x2x9z");
    created["metadata"]["uid"] = json!("5c7e0c1a-1111-2222-3333-444455556666");
    let mut vbody = body.clone();
    vbody["request"]["uid"] = json!("705ab4f5-6393-11e8-b7cc-42010a800099");
    vbody["request"]["name"] = json!("web-7d4b9c-x2x9z");
    vbody["request"]["object"] = created;
    let vresp = review(&r, "/validate-pod", &vbody).await;
    assert_eq!(vresp["allowed"], true);
    assert!(vresp.get("patch").is_none());
    let st = r.effects.state();
    assert_eq!(st.claims[&a.claim_name()].spec.reservation, rec.id);
    let ep = &st.endpoints["team-a/web-7d4b9c-x2x9z"];
    assert_eq!(
        ep.status.as_ref().unwrap().current.ips[0].ipv4.as_deref(),
        Some(format!("{}/24", a.address).as_str())
    );
    r.shutdown().await;
}

#[tokio::test]
async fn a_copied_record_is_replaced_and_the_original_keeps_its_claim() {
    let r = start().await;
    let first = fixture_json("pod-deployment.json");
    let resp = review(&r, "/mutate-pod", &first).await;
    let out = patched(&first["request"]["object"], &resp);
    let value = out["metadata"]["annotations"]["aipam.io/reservation"].clone();
    let original = Reservation::parse(value.as_str().unwrap()).unwrap();
    let mut body = fixture_json("pod-copied-record.json");
    body["request"]["object"]["metadata"]["annotations"]["aipam.io/reservation"] = value;
    let before = r.effects.state().claims.len();
    let resp = review(&r, "/mutate-pod", &body).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let out = patched(&body["request"]["object"], &resp);
    let fresh = record(&out);
    assert_ne!(fresh.id, original.id);
    let st = r.effects.state();
    assert_eq!(st.claims.len(), before + 1);
    for c in original.claim_names() {
        assert_eq!(st.claims[&c].spec.reservation, original.id);
    }
    r.shutdown().await;
}

#[tokio::test]
async fn dry_run_is_allowed_without_patch_or_claim() {
    let r = start().await;
    let body = fixture_json("pod-dryrun.json");
    let resp = review(&r, "/mutate-pod", &body).await;
    assert_eq!(resp["allowed"], true);
    assert!(resp.get("patch").is_none());
    assert_eq!(r.effects.state().claims.len(), 1); // the fixture's own
    let resp = review(&r, "/validate-pod", &body).await;
    assert_eq!(resp["allowed"], true);
    assert!(r.effects.state().endpoints.is_empty());
    r.shutdown().await;
}

#[tokio::test]
async fn daemonset_pod_gets_its_zones_pool() {
    let r = start().await;
    let body = fixture_json("pod-daemonset.json");
    let resp = review(&r, "/mutate-pod", &body).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let pod = &body["request"]["object"];
    let out = patched(pod, &resp);
    let rec = record(&out);
    assert_eq!(rec.interfaces.len(), 1);
    assert_eq!(rec.interfaces[0].interface, "eth0");
    assert_eq!(rec.interfaces[0].ipv4.len(), 1);
    assert_eq!(rec.interfaces[0].ipv4[0].pool, "test-ippool-7");
    let mut expected = pod.clone();
    expected["metadata"]["annotations"]["aipam.io/reservation"] = json!(rec.to_annotation());
    assert_eq!(out, expected);
    let ops = patch_ops(&resp);
    assert_eq!(
        ops,
        json!([{"op": "add", "path": "/metadata/annotations/aipam.io~1reservation", "value": rec.to_annotation()}])
    );
    r.shutdown().await;
}

#[tokio::test]
async fn statefulset_pod_keeps_its_address_across_incarnations() {
    let r = start().await;
    let body = fixture_json("pod-statefulset.json");
    let resp = review(&r, "/mutate-pod", &body).await;
    let out = patched(&body["request"]["object"], &resp);
    let first = record(&out);
    // Bound (validating call), then the Pod is deleted and created again.
    let mut v = body.clone();
    v["request"]["object"] = out.clone();
    v["request"]["object"]["metadata"]["uid"] = json!("aaaa0000-0000-4000-8000-000000000001");
    review(&r, "/validate-pod", &v).await;
    let ep = r.effects.state().endpoints["team-a/db-0"].clone();
    let st = ep.status.unwrap();
    assert_eq!(st.owner_controller_type, "StatefulSet");
    assert_eq!(st.owner_controller_name, "db");
    for c in r.effects.state().claims.into_values() {
        r.cache.claim_created(c);
    }
    let mut again = body.clone();
    again["request"]["uid"] = json!("8d7c6b5a-0000-4000-8000-0000000005e2");
    let resp = review(&r, "/mutate-pod", &again).await;
    let second = record(&patched(&again["request"]["object"], &resp));
    assert_ne!(first.id, second.id);
    assert_eq!(first.interfaces, second.interfaces);
    r.shutdown().await;
}

#[tokio::test]
async fn bare_pod_with_a_pool_annotation() {
    let r = start().await;
    let body = fixture_json("pod-bare.json");
    let resp = review(&r, "/mutate-pod", &body).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let out = patched(&body["request"]["object"], &resp);
    let rec = record(&out);
    assert_eq!(rec.interfaces[0].ipv4[0].pool, "backup-v4");
    let claims = r.effects.state().claims;
    let c = &claims[&rec.claim_names()[0]];
    assert_eq!(c.spec.pod_name.as_deref(), Some("debug"));
    assert_eq!(c.spec.owner, None);
    // Kept as the user wrote them.
    assert_eq!(
        out["metadata"]["annotations"]["ipam.spidernet.io/ippool"],
        body["request"]["object"]["metadata"]["annotations"]["ipam.spidernet.io/ippool"]
    );
    r.shutdown().await;
}

#[tokio::test]
async fn refusal_is_a_denied_review_with_the_message() {
    let r = start().await;
    let mut body = fixture_json("pod-bare.json");
    body["request"]["object"]["metadata"]["annotations"]["ipam.spidernet.io/ippool"] =
        json!("{\"ipv4\": [\"disabled-v4\"]}");
    let resp = review(&r, "/mutate-pod", &body).await;
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 403);
    assert_eq!(
        resp["status"]["message"],
        "interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: pool disabled-v4: the pool is disabled (spec.disable: true)"
    );
    assert!(resp.get("patch").is_none());
    assert_eq!(r.effects.state().claims.len(), 1);
    r.shutdown().await;
}

#[tokio::test]
async fn ippool_create_update_delete() {
    let r = start().await;
    // CREATE: mutated (version, finalizer), then validated.
    let body = fixture_json("ippool-create.json");
    let resp = review(&r, "/mutate-ippool", &body).await;
    assert_eq!(resp["allowed"], true);
    let out = patched(&body["request"]["object"], &resp);
    assert_eq!(out["spec"]["ipVersion"], 4);
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["spiderpool.spidernet.io"])
    );
    assert_eq!(out["spec"]["ips"], json!(["10.30.0.10-10.30.0.99"]));
    let mut vbody = body.clone();
    vbody["request"]["object"] = out;
    let resp = review(&r, "/validate-ippool", &vbody).await;
    assert_eq!(resp["allowed"], true, "{resp}");

    // UPDATE dropping an address in use.
    let body = fixture_json("ippool-update.json");
    let resp = review(&r, "/validate-ippool", &body).await;
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 422);
    assert_eq!(
        resp["status"]["message"],
        "SpiderIPPool team-a-v4 is invalid: spec.ips: the change would take away 1 address(es) in use: 10.20.0.11; release them first (delete or move their Pods)"
    );

    // DELETE while in use: allowed by default, as Spiderpool does, with a warning (the
    // finalizer holds the pool until its addresses are released)...
    let body = fixture_json("ippool-delete.json");
    let resp = review(&r, "/validate-ippool", &body).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let warning = resp["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.starts_with("SpiderIPPool team-a-v4 still has 1 address(es) in use (10.20.0.11)"),
        "{resp}"
    );
    // ... and refused with enableValidatingResourcesDeletedWebhook: true.
    aipam_webhook::testkit::load(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: spiderpool-conf, namespace: aipam-system}\ndata: {enableValidatingResourcesDeletedWebhook: \"true\"}\n",
        &r.cache,
        &r.effects,
    )
    .unwrap();
    let resp = review(&r, "/validate-ippool", &body).await;
    assert_eq!(resp["allowed"], false);
    assert_eq!(
        resp["status"]["message"],
        "SpiderIPPool team-a-v4 is invalid: metadata.name: the pool still has 1 address(es) in use (10.20.0.11); delete their Pods first, the pool is removed once they are released"
    );
    r.cache.claim_deleted("team-a-v4.10.20.0.11");
    let resp = review(&r, "/validate-ippool", &body).await;
    assert_eq!(resp["allowed"], true);
    r.shutdown().await;
}

#[tokio::test]
async fn paths_refuse_kinds_and_operations_they_are_not_registered_for() {
    let r = start().await;
    let pool = fixture_json("ippool-create.json");
    let resp = review(&r, "/mutate-pod", &pool).await;
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 400);
    assert_eq!(
        resp["status"]["message"],
        "/mutate-pod serves Pod CREATE only, not SpiderIPPool.spiderpool.spidernet.io spiderippools CREATE; check the webhook configuration's rules"
    );
    let update = fixture_json("ippool-update.json");
    let resp = review(&r, "/mutate-ippool", &update).await;
    assert_eq!(resp["allowed"], false);
    let pod = fixture_json("pod-bare.json");
    let resp = review(&r, "/validate-subnet", &pod).await;
    assert_eq!(resp["allowed"], false);
    r.shutdown().await;
}
