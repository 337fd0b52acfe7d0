#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The server: TLS versions, certificate reload, plaintext, body limits, timeouts, health and
//! metrics, graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aipam_webhook::{health_router, App, MemoryEffects};
use common::{connect, fixture, fixture_json, make_certs, post, review, start, start_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn peer_cn(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn certificate_is_reloaded_when_the_files_change() {
    let r = start().await;
    let first = connect(r.addr, &r.ca_pem).await.unwrap();
    let old_der = peer_cn(&first);
    // cert-manager writes a new pair signed by a new CA.
    let next = make_certs("rotated");
    std::fs::write(&r.key_path, &next.key_pem).unwrap();
    // Half-written rotation: the key no longer matches; the old certificate stays.
    assert!(r.resolver.reload_if_changed().is_err());
    let still = connect(r.addr, &r.ca_pem).await.unwrap();
    assert_eq!(peer_cn(&still), old_der);
    std::fs::write(&r.cert_path, &next.cert_pem).unwrap();
    // The poller (as spawned by main) picks it up.
    let reloader = r.resolver.spawn_reloader(Duration::from_millis(50));
    let mut ok = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(tls) = connect(r.addr, &next.ca_pem).await {
            assert_ne!(peer_cn(&tls), old_der);
            ok = true;
            break;
        }
    }
    reloader.abort();
    assert!(ok, "new connections never saw the new certificate");
    // Clients trusting only the old CA now fail.
    assert!(connect(r.addr, &r.ca_pem).await.is_err());
    // The connection opened before keeps working... it was established with the old one.
    drop(first);
    r.shutdown().await;
}

/// A TLS 1.1 ClientHello (record version 3.1, client_version 3.2, RSA/AES-CBC suites).
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0x00, 0x2f, 0x00, 0x35]); // suites
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    let mut hs = vec![0x01, 0x00, 0x00, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01, 0x00, hs.len() as u8];
    rec.extend_from_slice(&hs);
    rec
}

async fn read_some(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(n)) => buf[..n].to_vec(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn tls_1_1_is_refused() {
    let r = start().await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(&tls11_client_hello()).await.unwrap();
    let answer = read_some(&mut s).await;
    // An alert (protocol_version) or a closed connection; never a ServerHello.
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "server answered {answer:02x?}"
    );
    if !answer.is_empty() {
        // Fatal alert: protocol_version (70) or handshake_failure (40).
        assert_eq!(answer[answer.len() - 2], 2, "{answer:02x?}");
        assert!(
            [40, 70].contains(&answer[answer.len() - 1]),
            "{answer:02x?}"
        );
    }
    // TLS 1.2 and TLS 1.3 clients are served.
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut r.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(r.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
    }
    r.shutdown().await;
}

#[tokio::test]
async fn plaintext_http_is_refused() {
    let r = start().await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    let body = fixture("pod-bare.json");
    let req = format!(
        "POST /mutate-pod HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let answer = read_some(&mut s).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plaintext got an HTTP answer"
    );
    assert!(r.effects.state().claims.len() == 1);
    r.shutdown().await;
}

#[tokio::test]
async fn malformed_oversized_and_old_reviews_are_bad_requests() {
    let r = start().await;
    let (status, body) = post(&r, "/mutate-pod", b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).starts_with("the body is not an AdmissionReview"));
    let mut v1beta1 = fixture_json("pod-bare.json");
    v1beta1["apiVersion"] = serde_json::json!("admission.k8s.io/v1beta1");
    let (status, body) = post(&r, "/mutate-pod", serde_json::to_vec(&v1beta1).unwrap()).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("admissionReviewVersions: [v1]"));
    let mut big = fixture_json("pod-bare.json");
    big["request"]["object"]["metadata"]["annotations"]["filler"] =
        serde_json::json!("x".repeat(4 * 1024 * 1024));
    let (status, _) = post(&r, "/mutate-pod", serde_json::to_vec(&big).unwrap()).await;
    assert_eq!(status, 413);
    let (status, _) = post(&r, "/nope", b"{}".to_vec()).await;
    assert_eq!(status, 404);
    r.shutdown().await;
}

fn slow_app(delay: Duration, timeout: Duration) -> (App<Arc<MemoryEffects>>, Arc<MemoryEffects>) {
    let cache = aipam_webhook::testkit::synced_cache();
    let effects = Arc::new(MemoryEffects::new());
    aipam_webhook::testkit::load(&fixture("world.yaml"), &cache, &effects).unwrap();
    effects.with(|s| s.create_delay = Some(delay));
    let mut app = App::new(cache, effects.clone());
    app.timeout = timeout;
    (app, effects)
}

#[tokio::test]
async fn a_review_that_takes_too_long_is_denied() {
    let (app, effects) = slow_app(Duration::from_secs(2), Duration::from_millis(200));
    let r = start_with(app, effects).await;
    let resp = review(&r, "/mutate-pod", &fixture_json("pod-bare.json")).await;
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 500);
    assert!(resp["status"]["message"]
        .as_str()
        .unwrap()
        .starts_with("/mutate-pod did not answer within"));
    r.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    let (app, effects) = slow_app(Duration::from_millis(700), Duration::from_secs(5));
    let r = start_with(app, effects).await;
    let addr = r.addr;
    let ca = r.ca_pem.clone();
    // Connect first, then send while shutdown starts.
    let tls = connect(addr, &ca).await.unwrap();
    let body = serde_json::to_vec(&fixture_json("pod-bare.json")).unwrap();
    let in_flight = tokio::spawn(async move {
        use http_body_util::{BodyExt, Full};
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::post("/mutate-pod")
            .header("host", "x")
            .header("content-type", "application/json")
            .body(Full::new(hyper::body::Bytes::from(body)))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, bytes)
    });
    // Wait until the request is being handled (its claim creation has begun).
    for _ in 0..500 {
        if r.effects.state().creates_started > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(r.effects.state().creates_started > 0);
    let effects = r.effects.clone();
    let shut = tokio::spawn(r.shutdown());
    let (status, bytes) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["response"]["allowed"], true, "{v}");
    shut.await.unwrap();
    assert_eq!(effects.state().claims.len(), 2);
    // No new connections after shutdown.
    assert!(connect(addr, &ca).await.is_err());
}

#[tokio::test]
async fn reviews_are_refused_until_every_store_is_listed() {
    let cache = aipam_webhook::Cache::new();
    cache.mark_synced(aipam_webhook::StoreKind::Pools);
    let effects = Arc::new(MemoryEffects::new());
    let r = start_with(App::new(cache.clone(), effects.clone()), effects).await;
    let resp = review(&r, "/validate-ippool", &fixture_json("ippool-create.json")).await;
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 503);
    assert!(resp["status"]["message"]
        .as_str()
        .unwrap()
        .contains("waiting for spideripclaims"));
    // Binding never refuses.
    let resp = review(&r, "/validate-pod", &fixture_json("pod-bare.json")).await;
    assert_eq!(resp["allowed"], true);
    for k in aipam_webhook::StoreKind::ALL {
        cache.mark_synced(k);
    }
    let resp = review(&r, "/validate-ippool", &fixture_json("ippool-create.json")).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    r.shutdown().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let cache = aipam_webhook::Cache::new();
    let metrics = Arc::new(aipam_webhook::metrics::Metrics::new());
    metrics.admission("/mutate-pod", "patched");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(aipam_webhook::server::serve_plain(
        listener,
        health_router(cache.clone(), metrics.clone(), draining.clone()),
        async move {
            let _ = rx.await;
        },
    ));
    let get = |path: &'static str| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    let ready = get("/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("spideripclaims"), "{ready}");
    for k in aipam_webhook::StoreKind::ALL {
        cache.mark_synced(k);
    }
    assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
    // Shutting down: not ready any more (the Service stops sending it new connections), still
    // alive and serving.
    draining.store(true, std::sync::atomic::Ordering::SeqCst);
    let ready = get("/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("shutting down"), "{ready}");
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    let m = get("/metrics").await;
    assert!(
        m.contains(r#"aipam_webhook_admissions_total{path="/mutate-pod",outcome="patched"} 1"#),
        "{m}"
    );
    assert!(m.contains("aipam_webhook_reservation_seconds_bucket"));
    assert!(m.contains("aipam_webhook_claim_conflicts_total 0"));
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}
