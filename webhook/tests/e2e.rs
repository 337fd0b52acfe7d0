#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end: the webhook, fed by real watches and writing through the real kube client, behind
//! the API stand-in's admission (e2e/apiserver): Pods and pools created with kube as a user
//! would, and three webhook replicas reserving concurrently from one small pool.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aipam_apiserver::{ApiServer, ServerOptions};
use aipam_crds::{SpiderEndpoint, SpiderIPClaim, SpiderIPPool};
use aipam_webhook::tls::{server_config, ReloadingCert};
use aipam_webhook::{router, watch, App, Cache, KubeEffects};
use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{json, Value};

const WORLD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: aipam-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: spiderpool-conf, namespace: aipam-system}
data:
  conf.yml: |
    enableValidatingResourcesDeletedWebhook: true
---
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
  annotations:
    ipam.spidernet.io/default-ipv4-ippool: '["team-a-v4"]'
---
apiVersion: v1
kind: Namespace
metadata:
  name: load
  annotations:
    ipam.spidernet.io/default-ipv4-ippool: '["small"]'
---
apiVersion: v1
kind: Node
metadata: {name: worker-node-1, labels: {node-subnet: subnet-7}}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: team-a-v4}
spec:
  ipVersion: 4
  subnet: 10.20.0.0/24
  ips: [10.20.0.10-10.20.0.19]
  gateway: 10.20.0.1
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: small}
spec:
  ipVersion: 4
  subnet: 10.40.0.0/24
  ips: [10.40.0.10-10.40.0.59]
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Webhook {
    addr: SocketAddr,
    cache: Cache,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Webhook {
    async fn start(client: kube::Client, certs: &common::Certs, dir: &Path, n: usize) -> Webhook {
        let cert = dir.join(format!("tls{n}.crt"));
        let key = dir.join(format!("tls{n}.key"));
        std::fs::write(&cert, &certs.cert_pem).unwrap();
        std::fs::write(&key, &certs.key_pem).unwrap();
        let resolver = Arc::new(ReloadingCert::load(&cert, &key).unwrap());
        let tls = Arc::new(server_config(resolver).unwrap());
        let cache = Cache::new();
        let mut tasks = watch::spawn_watches(client.clone(), &cache, "aipam-system");
        for _ in 0..200 {
            if cache.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(cache.is_ready(), "not synced: {:?}", cache.unsynced());
        let app = Arc::new(App::new(cache.clone(), KubeEffects::new(client)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.push(tokio::spawn(aipam_webhook::server::serve_tls(
            listener,
            tls,
            router(app),
            async move {
                let _ = rx.await;
            },
        )));
        Webhook {
            addr,
            cache,
            stop: Some(stop),
            tasks,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let serve = self.tasks.pop().unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(30), serve).await;
        for t in self.tasks {
            t.abort();
        }
    }
}

fn web_pod(ns: &str, annotations: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-", "namespace": ns, "labels": {"app": "web"}, "annotations": annotations},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}
    }))
    .unwrap()
}

async fn wait_until<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_api_stand_in() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("aipam_webhook=info")
        .try_init();
    let server = ApiServer::start(ServerOptions {
        crd_dir: Some(repo().join("config/crd")),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    server.apply_yaml(WORLD).await.unwrap();
    let client = server.client().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let certs = common::make_certs_for(
        "aipam-webhook.aipam-system.svc",
        &["aipam-webhook.aipam-system.svc"],
    );
    let wh = Webhook::start(client.clone(), &certs, dir.path(), 0).await;
    server.set_webhook_service("aipam-system", "aipam-webhook", wh.addr);
    let bundle = base64::engine::general_purpose::STANDARD.encode(&certs.ca_pem);
    // The configurations as shipped, with this CA put into every clientConfig (the shipped
    // files carry no caBundle: the cert Job or cert-manager's injector fills it in).
    let text = std::fs::read_to_string(repo().join("config/webhook/webhooks.yaml")).unwrap();
    for de in serde_yaml::Deserializer::from_str(&text) {
        use serde::Deserialize;
        let mut doc = Value::deserialize(de).unwrap();
        if doc.is_null() {
            continue;
        }
        for hook in doc["webhooks"].as_array_mut().unwrap() {
            hook["clientConfig"]["caBundle"] = json!(bundle);
        }
        server.apply_object(doc).await.unwrap();
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), "team-a");
    let claims: Api<SpiderIPClaim> = Api::all(client.clone());

    // A Deployment-style Pod from generateName: reserved, recorded, endpoint written.
    let pod = pods
        .create(&PostParams::default(), &web_pod("team-a", json!({})))
        .await
        .unwrap();
    let name = pod.metadata.name.clone().unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    let rec = aipam_core::reservation::Reservation::parse(
        &pod.metadata.annotations.as_ref().unwrap()["aipam.io/reservation"],
    )
    .unwrap();
    let addr = rec.interfaces[0].ipv4[0].clone();
    let claim = claims.get(&addr.claim_name()).await.unwrap();
    // Written once, at reservation, before the API server picked the name.
    assert_eq!(claim.spec.pod_name, None);
    assert_eq!(claim.spec.reservation, rec.id);
    assert_eq!(
        claim.metadata.labels.as_ref().unwrap()["aipam.io/reservation"],
        rec.id
    );
    let eps: Api<SpiderEndpoint> = Api::namespaced(client.clone(), "team-a");
    let ep = eps.get(&name).await.unwrap();
    let cur = ep.status.unwrap().current;
    assert_eq!(cur.uid, uid);
    assert_eq!(
        cur.ips[0].ipv4.as_deref(),
        Some(format!("{}/24", addr.address).as_str())
    );
    // Survives the garbage collector: no ownerReference to a Pod not yet stored.
    assert!(ep.metadata.owner_references.is_none());

    // A Pod that cannot be served is refused by the API server with our message.
    let err = pods
        .create(
            &PostParams::default(),
            &web_pod(
                "team-a",
                json!({"ipam.spidernet.io/ippool": "{\"ipv4\": [\"nope\"]}"}),
            ),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 403);
    assert_eq!(
        status.message,
        "admission webhook \"pods.mutate.aipam.io\" denied the request: interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: pool nope: no SpiderIPPool of that name exists"
    );
    // Dry run: nothing reserved.
    let before = claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    pods.create(&dry, &web_pod("team-a", json!({})))
        .await
        .unwrap();
    assert_eq!(
        claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        before
    );

    // Pools: mutated, validated against the others, deletion refused while in use (the world's
    // spiderpool-conf sets enableValidatingResourcesDeletedWebhook: true; by default it would
    // be allowed with a warning and the finalizer would hold the pool).
    let pools: Api<SpiderIPPool> = Api::all(client.clone());
    let p: SpiderIPPool = serde_json::from_value(json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
        "metadata": {"name": "rack-c"},
        "spec": {"subnet": "10.30.0.0/24", "ips": ["10.30.0.10-10.30.0.20"]}
    }))
    .unwrap();
    let created = pools.create(&PostParams::default(), &p).await.unwrap();
    assert_eq!(created.spec.ip_version, Some(4));
    assert_eq!(
        created.metadata.finalizers,
        Some(vec!["spiderpool.spidernet.io".to_string()])
    );
    let mut overlapping = p.clone();
    overlapping.metadata.name = Some("rack-d".into());
    overlapping.spec.ips = Some(vec!["10.30.0.20-10.30.0.30".into()]);
    let err = pools
        .create(&PostParams::default(), &overlapping)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "SpiderIPPool rack-d is invalid: spec.ips: overlaps SpiderIPPool rack-c on 1 address(es): 10.30.0.20"
        ),
        "{err}"
    );
    let cache = wh.cache.clone();
    wait_until("the claim in the cache", || {
        !cache.used("team-a-v4").is_empty()
    })
    .await;
    wait_until("spiderpool-conf in the cache", || {
        cache
            .config()
            .is_ok_and(|c| c.enable_validating_resources_deleted_webhook)
    })
    .await;
    let err = pools
        .delete("team-a-v4", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the pool still has 1 address(es) in use"),
        "{err}"
    );

    // Three replicas, each with its own cache, reserving concurrently (200 Pods) from a pool of 50:
    // exactly 50 Pods get an address, no address is held twice, refused Pods hold nothing.
    let mut replicas = vec![wh];
    for n in 1..3 {
        replicas.push(Webhook::start(client.clone(), &certs, dir.path(), n).await);
    }
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    let ca = certs.ca_pem.clone();
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let addr = addrs[i % 3];
        let ca = ca.clone();
        tasks.push(tokio::spawn(async move {
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "load-", "namespace": "load"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
            let uid = format!("00000000-0000-4000-8000-{i:012}");
            let body = aipam_webhook::testkit::review_body(
                &uid,
                ("", "v1", "pods", "Pod"),
                "CREATE",
                Some("load"),
                Some(&pod),
                None,
                false,
            );
            let v = post_to(addr, &ca, "aipam-webhook.aipam-system.svc", &body).await;
            (uid, v["response"].clone())
        }));
    }
    let mut allowed = 0;
    let mut refused_ids = Vec::new();
    for t in tasks {
        let (uid, resp) = t.await.unwrap();
        if resp["allowed"] == true {
            allowed += 1;
        } else {
            let msg = resp["status"]["message"].as_str().unwrap().to_string();
            assert!(
                msg.contains("pool small: all 50 addresses are in use")
                    || msg.contains("pool small: no free address left")
                    || msg.contains("attempts in a row"),
                "{msg}"
            );
            refused_ids.push(aipam_core::reservation::reservation_id(&uid));
        }
    }
    assert_eq!(allowed, 50);
    let all = claims.list(&ListParams::default()).await.unwrap().items;
    let small: Vec<&SpiderIPClaim> = all.iter().filter(|c| c.spec.pool == "small").collect();
    assert_eq!(small.len(), 50);
    let distinct: BTreeSet<&str> = small.iter().map(|c| c.spec.address.as_str()).collect();
    assert_eq!(distinct.len(), 50);
    for c in &all {
        assert!(
            !refused_ids.contains(&c.spec.reservation),
            "refused Pod holds {c:?}"
        );
    }

    for r in replicas {
        r.stop().await;
    }
    server.shutdown().await;
}

async fn post_to(addr: SocketAddr, ca_pem: &str, host: &str, body: &Value) -> Value {
    use http_body_util::{BodyExt, Full};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(common::client_config(ca_pem))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/mutate-pod")
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(hyper::body::Bytes::from(
            serde_json::to_vec(body).unwrap(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}
