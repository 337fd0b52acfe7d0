//! A TCP load balancer on loopback: what a Service's virtual IP does for the webhook replicas
//! (kube-proxy picks a backend per connection; a kept-alive connection stays on its backend).
//! The real API server is given this address as the webhook's `clientConfig.url`, since no
//! Service network exists here.
//!
//! With readiness ([`Balancer::start_with_readiness`]) it also plays the EndpointSlice: each
//! backend's `/readyz` is probed every [`PROBE_PERIOD`] (a kubelet's readiness probe, failure
//! threshold 1) and only backends whose last probe answered 200 get **new** connections, as
//! kube-proxy routes only to ready endpoints; connections already open stay where they are (the
//! conntrack entry of a connection outlives its endpoint), so a replica that shuts down must keep
//! serving them until it has closed them itself. With no ready backend a connection is refused.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{Error, Result};

/// How often each backend's readiness is probed.
pub const PROBE_PERIOD: Duration = Duration::from_millis(300);

/// One backend: where it serves, its readiness (always ready when it has no probe).
#[derive(Debug)]
struct Backend {
    addr: SocketAddr,
    health: Option<SocketAddr>,
    ready: AtomicBool,
}

/// The connections open through a balancer: both sockets of each, by a sequence number.
type Open = Arc<Mutex<BTreeMap<u64, (TcpStream, TcpStream)>>>;

/// A running balancer; dropping it stops accepting (open connections run to their end).
#[derive(Debug)]
pub struct Balancer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    backends: Arc<Vec<Backend>>,
    open: Open,
    accept: Option<JoinHandle<()>>,
    probe: Option<JoinHandle<()>>,
}

impl Balancer {
    /// Listens on a free loopback port and spreads connections over `backends` round-robin,
    /// skipping a backend that refuses the connection (a killed replica). No readiness.
    pub fn start(backends: Vec<SocketAddr>) -> Result<Balancer> {
        Self::start_inner(backends.into_iter().map(|a| (a, None)).collect())
    }

    /// As [`Balancer::start`], each backend given with the plain-HTTP address of its `/readyz`:
    /// new connections go only to backends that are ready (see the module's documentation).
    pub fn start_with_readiness(backends: Vec<(SocketAddr, SocketAddr)>) -> Result<Balancer> {
        Self::start_inner(backends.into_iter().map(|(a, h)| (a, Some(h))).collect())
    }

    fn start_inner(backends: Vec<(SocketAddr, Option<SocketAddr>)>) -> Result<Balancer> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
            what: "binding the webhook balancer".to_string(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            what: "reading the webhook balancer's address".to_string(),
            source,
        })?;
        let backends: Arc<Vec<Backend>> = Arc::new(
            backends
                .into_iter()
                .map(|(addr, health)| Backend {
                    addr,
                    health,
                    ready: AtomicBool::new(health.is_none_or(probe)),
                })
                .collect(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let probe = backends.iter().any(|b| b.health.is_some()).then(|| {
            let (backends, stop) = (backends.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    for b in backends.iter() {
                        if let Some(h) = b.health {
                            b.ready.store(probe(h), Ordering::SeqCst);
                        }
                    }
                    std::thread::sleep(PROBE_PERIOD);
                }
            })
        });
        let next = Arc::new(AtomicUsize::new(0));
        let open: Open = Arc::default();
        let (stop2, backends2, open2) = (stop.clone(), backends.clone(), open.clone());
        let accept = std::thread::spawn(move || {
            let seq = AtomicU64::new(0);
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let backends = backends2.clone();
                let next = next.clone();
                let open = open2.clone();
                let id = seq.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve(client, &backends, &next, &open, id));
            }
        });
        Ok(Balancer {
            addr,
            stop,
            backends,
            open,
            accept: Some(accept),
            probe,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets every connection open through the balancer now (a network fault: a flushed
    /// conntrack table, a restarted node proxy); both ends see it closed mid-stream. New
    /// connections are accepted as before. Returns how many were open.
    pub fn drop_connections(&self) -> usize {
        let open = std::mem::take(&mut *self.open.lock().unwrap_or_else(|p| p.into_inner()));
        for (client, upstream) in open.values() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
        open.len()
    }

    /// Whether the backend serving at `addr` gets new connections (its last probe was ready).
    pub fn routes_to(&self, addr: SocketAddr) -> bool {
        self.backends
            .iter()
            .any(|b| b.addr == addr && b.ready.load(Ordering::SeqCst))
    }
}

/// `GET /readyz` over plain HTTP/1.0: whether it answered 200.
fn probe(health: SocketAddr) -> bool {
    let status = || -> Option<u16> {
        let mut s = TcpStream::connect_timeout(&health, Duration::from_millis(200)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        write!(s, "GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut buf = [0u8; 32];
        let n = s.read(&mut buf).ok()?;
        let line = std::str::from_utf8(&buf[..n]).ok()?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    status() == Some(200)
}

fn serve(client: TcpStream, backends: &[Backend], next: &AtomicUsize, open: &Open, id: u64) {
    let n = backends.len();
    let first = next.fetch_add(1, Ordering::SeqCst);
    let upstream = (0..n)
        .map(|i| &backends[(first + i) % n])
        .filter(|b| b.ready.load(Ordering::SeqCst))
        .find_map(|b| TcpStream::connect_timeout(&b.addr, Duration::from_millis(500)).ok());
    let Some(upstream) = upstream else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
        client.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
        upstream.try_clone(),
    ) else {
        return;
    };
    open.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, (c3, u3));
    let up = std::thread::spawn(move || pipe(c2, u2));
    pipe(upstream, client);
    let _ = up.join();
    open.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                if to.write_all(&buf[..k]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        if let Some(h) = self.probe.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn echo_server(tag: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let mut c = c.unwrap();
                let _ = c.write_all(tag.as_bytes());
            }
        });
        addr
    }

    fn read_all(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut out = String::new();
        let mut buf = [0u8; 8];
        while let Ok(k) = s.read(&mut buf) {
            if k == 0 {
                break;
            }
            out.push_str(std::str::from_utf8(&buf[..k]).unwrap());
            if !out.is_empty() {
                break;
            }
        }
        out
    }

    #[test]
    fn connections_are_spread_and_a_dead_backend_is_skipped() {
        let a = echo_server("a");
        let b = echo_server("b");
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let lb = Balancer::start(vec![a, dead, b]).unwrap();
        let seen: Vec<String> = (0..6).map(|_| read_all(lb.addr())).collect();
        assert!(seen.iter().any(|s| s == "a"), "{seen:?}");
        assert!(seen.iter().any(|s| s == "b"), "{seen:?}");
        assert!(seen.iter().all(|s| s == "a" || s == "b"), "{seen:?}");
    }

    /// A `/readyz` answering 200 or 503 as `ready` says.
    fn health_server(ready: Arc<AtomicBool>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let mut c = c.unwrap();
                let mut buf = [0u8; 256];
                let _ = c.read(&mut buf);
                let code = if ready.load(Ordering::SeqCst) {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = write!(c, "HTTP/1.0 {code}\r\n\r\n");
            }
        });
        addr
    }

    #[test]
    fn new_connections_go_only_to_ready_backends() {
        let a = echo_server("a");
        let b = echo_server("b");
        let a_ready = Arc::new(AtomicBool::new(true));
        let b_ready = Arc::new(AtomicBool::new(true));
        let lb = Balancer::start_with_readiness(vec![
            (a, health_server(a_ready.clone())),
            (b, health_server(b_ready.clone())),
        ])
        .unwrap();
        // Both ready. (A first probe that fails on a loaded machine takes one out for a period:
        // wait for the next, bounded.)
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !(lb.routes_to(a) && lb.routes_to(b)) {
            assert!(
                std::time::Instant::now() < deadline,
                "both ready backends routed"
            );
            std::thread::sleep(PROBE_PERIOD / 3);
        }
        // b reports not ready (it is shutting down) while still serving: no new connection.
        b_ready.store(false, Ordering::SeqCst);
        while lb.routes_to(b) || !lb.routes_to(a) {
            std::thread::sleep(PROBE_PERIOD / 3);
        }
        // Never b. (A probe of a that fails on a loaded machine takes a out for a period too:
        // such a connection is refused, "", which is not what is tested here.)
        let seen: Vec<String> = (0..6).map(|_| read_all(lb.addr())).collect();
        assert!(seen.iter().all(|s| s == "a" || s.is_empty()), "{seen:?}");
        assert!(seen.iter().any(|s| s == "a"), "{seen:?}");
        // No ready backend: the connection is refused (closed without an answer).
        a_ready.store(false, Ordering::SeqCst);
        while lb.routes_to(a) {
            std::thread::sleep(PROBE_PERIOD / 3);
        }
        assert_eq!(read_all(lb.addr()), "");
        // Ready again: back in rotation.
        b_ready.store(true, Ordering::SeqCst);
        let back = (0..50).find_map(|_| {
            while !lb.routes_to(b) {
                std::thread::sleep(PROBE_PERIOD / 3);
            }
            let got = read_all(lb.addr());
            (!got.is_empty()).then_some(got)
        });
        assert_eq!(back.as_deref(), Some("b"));
    }

    #[test]
    fn dropped_connections_are_closed_at_both_ends_and_new_ones_served() {
        // A backend that answers "hi" and then holds the connection open until the peer closes.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let backend = l.local_addr().unwrap();
        let closed_upstream = Arc::new(AtomicBool::new(false));
        let seen = closed_upstream.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let mut c = c.unwrap();
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let _ = c.write_all(b"hi");
                    let mut buf = [0u8; 8];
                    while let Ok(k) = c.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                    }
                    seen.store(true, Ordering::SeqCst);
                });
            }
        });
        let lb = Balancer::start(vec![backend]).unwrap();
        let mut held = TcpStream::connect(lb.addr()).unwrap();
        held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 2];
        held.read_exact(&mut buf).unwrap();
        assert_eq!(lb.drop_connections(), 1);
        let mut rest = Vec::new();
        let n = held.read_to_end(&mut rest).unwrap_or(0);
        assert_eq!(n, 0, "the client's connection is closed");
        for _ in 0..50 {
            if closed_upstream.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            closed_upstream.load(Ordering::SeqCst),
            "the backend saw it closed"
        );
        assert_eq!(read_all(lb.addr()), "hi", "a new connection is served");
        assert_eq!(lb.drop_connections(), 1, "only the one still open");
    }
}
