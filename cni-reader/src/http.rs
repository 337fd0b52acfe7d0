//! A minimal blocking HTTPS GET over rustls (ring provider) and `std::net::TcpStream`: one request
//! per connection (`Connection: close`), `Content-Length`, chunked and read-to-end bodies. That is
//! all one CNI invocation needs, and it keeps the binary small and its start-up fast.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::credentials::{Auth, Credentials};

/// The largest response body accepted (a SpiderEndpoint is a few kilobytes).
const MAX_RESPONSE: usize = 4 << 20;

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// A failure to get any response: all of these are worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// DNS, TCP connect or socket error.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    /// TLS handshake or record error (includes an untrusted server certificate).
    #[error("TLS with {0}: {1}")]
    Tls(String, String),
    /// The server's certificate was refused (untrusted issuer, wrong name, expired): retrying
    /// does not help, the CA or server name in the credentials must be fixed.
    #[error("the certificate of {0} is not trusted: {1}")]
    Certificate(String, String),
    /// The deadline passed.
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    /// The server's answer is not valid HTTP/1.1.
    #[error("invalid HTTP response from {0}: {1}")]
    Protocol(String, String),
}

/// A client for one API server, built once per invocation.
#[derive(Debug)]
pub struct Client {
    creds: Credentials,
    tls: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl Client {
    /// Builds the TLS configuration from the credentials.
    pub fn new(creds: Credentials) -> Result<Client, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let builder = if creds.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoServerVerification(provider)))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for c in &creds.roots {
                roots
                    .add(c.clone())
                    .map_err(|e| format!("{}: invalid CA certificate: {e}", creds.source))?;
            }
            builder.with_root_certificates(roots)
        };
        let config = match &creds.client_cert {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| format!("{}: invalid client certificate or key: {e}", creds.source))?,
            None => builder.with_no_client_auth(),
        };
        let name = creds
            .tls_server_name
            .clone()
            .unwrap_or_else(|| creds.server.host.clone());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| format!("{}: invalid server name {name:?}: {e}", creds.source))?;
        Ok(Client {
            creds,
            tls: Arc::new(config),
            server_name,
        })
    }

    /// The credentials in use.
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// `GET path` (path below the server's prefix), finishing within `timeout`.
    pub fn get(&self, path: &str, timeout: Duration) -> Result<Response, HttpError> {
        let deadline = Instant::now() + timeout;
        let server = self.creds.server.to_string();
        let remaining = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| HttpError::Timeout(server.clone(), timeout))
        };
        let authority = self.creds.server.authority();
        let addrs = (self.creds.server.host.as_str(), self.creds.server.port)
            .to_socket_addrs()
            .map_err(|e| HttpError::Connect(authority.clone(), e))?;
        let mut last_err = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, remaining()?) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let tcp = match tcp {
            Some(t) => t,
            None => {
                return Err(HttpError::Connect(
                    authority,
                    last_err.unwrap_or_else(|| {
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
                    }),
                ))
            }
        };
        let _ = tcp.set_nodelay(true);
        let conn = ClientConnection::new(self.tls.clone(), self.server_name.clone())
            .map_err(|e| HttpError::Tls(server.clone(), e.to_string()))?;
        let mut tls = StreamOwned::new(conn, tcp);

        let mut req = format!(
            "GET {}{} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: aipam-cni/{}\r\nConnection: close\r\n",
            self.creds.server.prefix,
            path,
            authority,
            env!("CARGO_PKG_VERSION")
        );
        match &self.creds.auth {
            Auth::None => {}
            Auth::Bearer(t) => req.push_str(&format!("Authorization: Bearer {t}\r\n")),
            Auth::Basic(u, p) => req.push_str(&format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )),
        }
        req.push_str("\r\n");

        let io_err = |e: std::io::Error| -> HttpError {
            match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                    HttpError::Timeout(server.clone(), timeout)
                }
                std::io::ErrorKind::InvalidData => {
                    let rustls_err = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
                    match rustls_err {
                        Some(rustls::Error::InvalidCertificate(c)) => {
                            HttpError::Certificate(server.clone(), format!("{c:?}"))
                        }
                        _ => HttpError::Tls(server.clone(), e.to_string()),
                    }
                }
                _ => HttpError::Connect(server.clone(), e),
            }
        };
        let set_timeouts = |s: &TcpStream| -> Result<(), HttpError> {
            let r = remaining()?;
            s.set_read_timeout(Some(r)).map_err(io_err)?;
            s.set_write_timeout(Some(r)).map_err(io_err)
        };
        set_timeouts(&tls.sock)?;
        tls.write_all(req.as_bytes()).map_err(io_err)?;
        tls.flush().map_err(io_err)?;

        let mut buf = Vec::with_capacity(8192);
        let mut chunk = [0u8; 8192];
        loop {
            set_timeouts(&tls.sock)?;
            let n = match tls.read(&mut chunk) {
                Ok(n) => n,
                // A server that closes without close_notify: treat as end of stream.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(io_err(e)),
            };
            if n == 0 {
                return parse_response(&buf, true)
                    .map_err(|e| HttpError::Protocol(server.clone(), e))?
                    .ok_or_else(|| {
                        HttpError::Protocol(server.clone(), "connection closed early".into())
                    });
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_RESPONSE {
                return Err(HttpError::Protocol(server, "response too large".into()));
            }
            if let Some(resp) =
                parse_response(&buf, false).map_err(|e| HttpError::Protocol(server.clone(), e))?
            {
                return Ok(resp);
            }
        }
    }
}

/// Parses a complete response from `buf`; `Ok(None)` when more bytes are needed. With `eof`, a
/// body without length ends at the end of the stream.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if eof {
            Err("connection closed before the end of the headers".into())
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let proto = parts.next().unwrap_or_default();
    if !proto.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                v.parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {v:?}"))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = &buf[head_end + 4..];
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Some(Response {
            status,
            body: Vec::new(),
        }));
    }
    if chunked {
        return match dechunk(body)? {
            Some(b) => Ok(Some(Response { status, body: b })),
            None if eof => Err("connection closed inside a chunked body".into()),
            None => Ok(None),
        };
    }
    match content_length {
        Some(n) if body.len() >= n => Ok(Some(Response {
            status,
            body: body[..n].to_vec(),
        })),
        Some(_) if eof => Err("connection closed before the end of the body".into()),
        Some(_) => Ok(None),
        None if eof => Ok(Some(Response {
            status,
            body: body.to_vec(),
        })),
        None => Ok(None),
    }
}

/// Decodes a chunked body; `Ok(None)` when incomplete.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(rest, b"\r\n") else {
            return Ok(None);
        };
        let size_line = std::str::from_utf8(&rest[..eol]).map_err(|_| "bad chunk size")?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            // Trailers, if any, are ignored; the body is complete.
            return Ok(Some(out));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&rest[..size]);
        if &rest[size..size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        rest = &rest[size + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `insecure-skip-tls-verify: true`: accept any server certificate, but still check handshake
/// signatures so the connection is at least consistent.
#[derive(Debug)]
struct NoServerVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_body() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        assert_eq!(
            parse_response(r, false).unwrap().unwrap(),
            Response {
                status: 200,
                body: b"hello".to_vec()
            }
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false).unwrap(),
            None
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", true).is_err());
    }

    #[test]
    fn chunked_body() {
        let r = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let resp = parse_response(r, false).unwrap().unwrap();
        assert_eq!(resp.status, 404);
        assert_eq!(resp.body, b"abcde");
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
                false
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn body_to_eof_and_bad_status() {
        let r = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert_eq!(parse_response(r, false).unwrap(), None);
        assert_eq!(parse_response(r, true).unwrap().unwrap().body, b"all of it");
        assert!(parse_response(b"SSH-2.0\r\n\r\n", false).is_err());
    }
}
