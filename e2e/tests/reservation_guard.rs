#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The reservation record end to end (docs/threat-model.md, "Pod annotations"): the Pod
//! carrying a reservation id holds its claims, so a user who may create or update Pods must not
//! be able to put another reservation's id on a Pod. On UPDATE the guard refuses any change of
//! `aipam.io/reservation` (and its removal); on CREATE the webhook replaces a record the Pod
//! brings with a fresh reservation. Nothing is given to the wrong Pod, and other updates of the
//! Pod still go through. The users are real on the stand-in: each client has its own bearer token and
//! the webhook sees that user in `userInfo`; the operator runs as its service account.
//!
//! The binaries must be built first (`cargo build --workspace --bins`).

use std::net::IpAddr;
use std::time::Duration;

use aipam_core::reservation::{Reservation, ReservedAddress, ReservedInterface, ANNO_RESERVATION};
use aipam_crds::record::{claim_for, ClaimTarget};
use aipam_crds::{SpiderEndpoint, SpiderIPClaim};
use aipam_e2e::env::yaml_docs;
use aipam_e2e::sim::schedule;
use aipam_e2e::{wait_for, Env, Options};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

const ALICE: &str = "alice";

async fn create_pod(client: kube::Client, name: &str) -> Pod {
    create_pod_with(client, name, None).await
}

async fn create_pod_with(client: kube::Client, name: &str, record: Option<String>) -> Pod {
    let mut pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "tenant", "annotations": {
            "ipam.spidernet.io/ippool": "{\"ipv4\": [\"g\"]}"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    if let Some(r) = record {
        pod.annotations_mut()
            .insert(ANNO_RESERVATION.to_string(), r);
    }
    let api: Api<Pod> = Api::namespaced(client, "tenant");
    wait_for("the webhook to admit", Duration::from_secs(20), || {
        let (api, pod) = (api.clone(), pod.clone());
        async move { api.create(&PostParams::default(), &pod).await.ok() }
    })
    .await
    .unwrap()
}

fn record(pod: &Pod) -> Reservation {
    Reservation::parse(&pod.annotations()[ANNO_RESERVATION]).unwrap()
}

async fn patch_annotation(
    client: kube::Client,
    pod: &str,
    value: Option<String>,
) -> Result<Pod, kube::core::Status> {
    let api: Api<Pod> = Api::namespaced(client, "tenant");
    api.patch(
        pod,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {ANNO_RESERVATION: value}}})),
    )
    .await
    .map_err(|e| match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API refusal, got {other}"),
    })
}

/// A write that must be refused by the guard: 403 from our webhook, naming the annotation.
fn refused(what: &str, res: Result<Pod, kube::Error>) {
    match res {
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains(ANNO_RESERVATION) => {}
        Err(e) => panic!("{what}: expected the guard's 403, got {e}"),
        Ok(p) => panic!(
            "{what}: the write went through; the record is now {:?}",
            p.annotations().get(ANNO_RESERVATION)
        ),
    }
}

async fn every_other_path_is_guarded(env: &Env, alice: &kube::Client, forged: &Reservation) {
    let value = forged.to_annotation();
    let pods: Api<Pod> = Api::namespaced(alice.clone(), "tenant");
    let anno = json!({"metadata": {"annotations": {ANNO_RESERVATION: value}}});
    refused(
        "a strategic merge patch",
        pods.patch(
            "attacker",
            &PatchParams::default(),
            &Patch::Strategic(anno.clone()),
        )
        .await,
    );
    let op: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/metadata/annotations/aipam.io~1reservation", "value": value}
    ]))
    .unwrap();
    refused(
        "a JSON patch",
        pods.patch("attacker", &PatchParams::default(), &Patch::<()>::Json(op))
            .await,
    );
    let apply = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "attacker", "namespace": "tenant",
            "annotations": {ANNO_RESERVATION: value}}});
    refused(
        "a server-side apply",
        pods.patch(
            "attacker",
            &PatchParams::apply("alice").force(),
            &Patch::Apply(apply),
        )
        .await,
    );
    // On a real server the scheduler and the node write the Pod too, so a read-modify-write can
    // meet a 409 first; a user retries with a fresh read, and so do we (bounded).
    let mut put = None;
    for _ in 0..10 {
        let mut whole = pods.get("attacker").await.unwrap();
        whole
            .annotations_mut()
            .insert(ANNO_RESERVATION.to_string(), value.clone());
        match pods
            .replace("attacker", &PostParams::default(), &whole)
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => {
                put = Some(other);
                break;
            }
        }
    }
    refused(
        "an update (PUT)",
        put.expect("10 conflicts in a row on the attacker Pod"),
    );
    // pods/status keeps metadata changes on a real API server; the admin may write it.
    let admin_pods: Api<Pod> = Api::namespaced(env.client.clone(), "tenant");
    refused(
        "a pods/status patch",
        admin_pods
            .patch_status(
                "attacker",
                &PatchParams::default(),
                &Patch::Merge(anno.clone()),
            )
            .await,
    );
    // A Binding's annotations are copied onto the Pod it binds: a Pod not scheduled yet
    // (no node matches its selector), bound by hand with the forged record.
    let parked: Pod = serde_json::from_value(json!({
        "metadata": {"name": "parked", "namespace": "tenant", "annotations": {
            "ipam.spidernet.io/ippool": "{\"ipv4\": [\"g\"]}"}},
        "spec": {"nodeSelector": {"nowhere": "true"}, "containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    let parked = admin_pods
        .create(&PostParams::default(), &parked)
        .await
        .unwrap();
    let binding = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "parked", "namespace": "tenant",
            "annotations": {ANNO_RESERVATION: value}},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let res: Result<serde_json::Value, kube::Error> = admin_pods
        .create_subresource("binding", "parked", &PostParams::default(), &binding)
        .await;
    let after = admin_pods.get("parked").await.unwrap();
    assert_eq!(
        after.annotations().get(ANNO_RESERVATION),
        parked.annotations().get(ANNO_RESERVATION),
        "a Binding rewrote the record of Pod parked (binding answered {res:?})"
    );
    match res {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        other => panic!("a Binding carrying a record: expected the guard's 403, got {other:?}"),
    }
    admin_pods
        .delete("parked", &Default::default())
        .await
        .unwrap();
    // Its claims go with it (the checks of the test's end count every claim).
    let parked_id = record(&parked).id;
    let claims: Api<SpiderIPClaim> = Api::all(env.client.clone());
    wait_for(
        "the parked Pod's claims to go",
        Duration::from_secs(30),
        || {
            let (claims, id) = (claims.clone(), parked_id.clone());
            async move {
                let list = claims.list(&ListParams::default()).await.ok()?;
                (!list.items.iter().any(|c| c.spec.reservation == id)).then_some(())
            }
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_rewrite_a_pods_reservation_and_steals_nothing() {
    let env = Env::start(Options::default()).await.unwrap();
    for d in yaml_docs(
        "world",
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: tenant}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {conditions: [{type: Ready, status: "True"}]}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: g}
spec: {subnet: 10.70.0.0/24, ips: [10.70.0.10-10.70.0.20], gateway: 10.70.0.1}
"#,
    )
    .unwrap()
    {
        env.apply(&d).await.unwrap();
    }
    if env.has_controllers() {
        // Alice edits her namespace, as a tenant does (the real authorizer enforces it).
        env.apply(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "alice-edit", "namespace": "tenant"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": ALICE}]}))
            .await
            .unwrap();
    }
    let alice = env.client_as(ALICE).await.unwrap();
    let attacker = create_pod(alice.clone(), "attacker").await;
    let own = record(&attacker);

    // A reservation of the namespace not bound to a Pod yet (as in the window between mutating
    // admission and binding): a claim with the reservation id and no Pod UID.
    // The webhook picks at random within the pool: the loot is an address the attacker does
    // not hold already.
    let held: Vec<IpAddr> = own.addresses().iter().map(|a| a.address).collect();
    let loot_ip: IpAddr = ["10.70.0.20", "10.70.0.19"]
        .iter()
        .map(|a| a.parse::<IpAddr>().unwrap())
        .find(|a| !held.contains(a))
        .unwrap();
    let loot = ReservedAddress {
        pool: "g".to_string(),
        address: loot_ip,
    };
    let claims: Api<SpiderIPClaim> = Api::all(env.client.clone());
    claims
        .create(
            &PostParams::default(),
            &claim_for(
                &loot,
                &ClaimTarget {
                    namespace: "tenant",
                    pod_name: None,
                    interface: "eth0",
                    reservation: "r-unbound",
                    owner: None,
                    provisional: false,
                },
            ),
        )
        .await
        .unwrap();
    let forged = Reservation {
        id: "r-unbound".to_string(),
        interfaces: vec![ReservedInterface {
            interface: "eth0".to_string(),
            ipv4: vec![loot.clone()],
            ..ReservedInterface::default()
        }],
    };

    // Rewriting, removing, even re-adding: all refused, with the reason.
    let e = patch_annotation(alice.clone(), "attacker", Some(forged.to_annotation()))
        .await
        .unwrap_err();
    assert_eq!(e.code, 403, "{}", e.message);
    assert_eq!(
        e.message,
        "admission webhook \"pods-update.validate.aipam.io\" denied the request: user \"alice\" may not change the annotation aipam.io/reservation of Pod tenant/attacker: it records the addresses aipam reserved for the Pod when it was created, and only the aipam operator (system:serviceaccount:aipam-system:aipam-operator) changes it afterwards; to get other addresses, delete the Pod and create it again"
    );
    let e = patch_annotation(alice.clone(), "attacker", None)
        .await
        .unwrap_err();
    assert!(
        e.message.contains("may not remove the annotation"),
        "{}",
        e.message
    );
    // A cluster administrator is not the operator either.
    let e = patch_annotation(env.client.clone(), "attacker", Some(forged.to_annotation()))
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains(&format!("user \"{}\" may not change", env.admin_user())),
        "{}",
        e.message
    );
    // Every other way of writing a Pod's annotations (each patch type, a full update, the
    // status subresource, and a Binding, whose annotations the API server copies onto the
    // Pod) is refused too: checked on the real API server, whose paths these are.
    if env.has_controllers() {
        every_other_path_is_guarded(&env, &alice, &forged).await;
    }

    // Nor can she create a Pod that brings the record along: it gets a reservation of its own.
    let thief = create_pod_with(alice.clone(), "thief", Some(forged.to_annotation())).await;
    let thief_record = record(&thief);
    assert_ne!(thief_record.id, forged.id);
    assert!(thief_record
        .addresses()
        .iter()
        .all(|a| a.address != loot_ip));

    // Other updates of the Pod still go through for her.
    let pods: Api<Pod> = Api::namespaced(alice.clone(), "tenant");
    let labelled = pods
        .patch(
            "attacker",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "web"}}})),
        )
        .await
        .expect("a label change is not the guard's business");
    assert_eq!(
        record(&labelled),
        own,
        "the record is what the webhook wrote"
    );

    // Nothing was stolen: once scheduled and bound, the attacker's endpoint holds its own
    // address, and the unbound claim was never given to it.
    let pod = pods.get("attacker").await.unwrap();
    schedule(&env, &pod, 0).await.unwrap().expect("node n1");
    let uid = pod.uid().unwrap();
    let eps: Api<SpiderEndpoint> = Api::namespaced(env.client.clone(), "tenant");
    let ep = wait_for("the attacker's endpoint", Duration::from_secs(30), || {
        let (eps, uid) = (eps.clone(), uid.clone());
        async move {
            let ep = eps.get_opt("attacker").await.ok()??;
            let cur = ep.status.clone()?.current;
            (cur.uid == uid && cur.node == "n1").then_some(cur)
        }
    })
    .await
    .unwrap();
    let addrs: Vec<String> = ep
        .ips
        .iter()
        .filter_map(|i| i.ipv4.clone())
        .map(|a| a.split('/').next().unwrap().to_string())
        .collect();
    let own_addrs: Vec<String> = own
        .addresses()
        .iter()
        .map(|a| a.address.to_string())
        .collect();
    assert_eq!(addrs, own_addrs);
    assert!(!addrs.contains(&loot_ip.to_string()));
    for c in claims.list(&ListParams::default()).await.unwrap() {
        let expected = if c.spec.address == loot_ip.to_string() {
            "r-unbound"
        } else if thief_record.claim_names().contains(&c.name_any()) {
            thief_record.id.as_str()
        } else {
            own.id.as_str()
        };
        assert_eq!(c.spec.reservation, expected, "{}", c.name_any());
    }
    env.stop().await;
}
