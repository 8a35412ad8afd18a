//! The client side of the tests: a real rustls client that trusts the committed test
//! CA, offers ALPN `http/1.1`, and reads HTTP/1.1 responses properly (status, fields,
//! a body by Content-Length, chunked or until close, 1xx skipped on request).
//!
//! The same [`Client`] runs over plain TCP for talking to `whoami` directly. Every
//! socket has a read timeout, and a read that ends is reported as a close or a
//! timeout, never confused.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned, SupportedProtocolVersion,
};

use super::wire::{
    field, fields_named, is_chunked, owned_fields, BodyError, Fields, Framing, Wire, WireError,
};
use super::{fixture, write_pattern, READ_TIMEOUT};

/// Longest response head the client accepts.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How long a write may block (a 100 MiB upload writes against back-pressure).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A rustls client stream over TCP.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// An HTTP/1.1 client over TLS.
pub type TlsClient = Client<TlsStream>;

/// An HTTP/1.1 client over plain TCP.
pub type PlainClient = Client<TcpStream>;

/// A client config trusting `tests/fixtures/ca.pem`, offering `http/1.1`, limited to
/// `versions`.
pub fn client_config(versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let ca = fixture("ca.pem");
    for cert in
        CertificateDer::pem_file_iter(&ca).unwrap_or_else(|e| panic!("cannot read {ca:?}: {e}"))
    {
        let cert = cert.unwrap_or_else(|e| panic!("bad PEM in {ca:?}: {e}"));
        roots
            .add(cert)
            .unwrap_or_else(|e| panic!("bad CA certificate in {ca:?}: {e}"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap_or_else(|e| panic!("client config: {e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The default client config (TLS 1.2 and 1.3), built once.
fn default_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| client_config(rustls::ALL_VERSIONS)))
}

/// Opens a TCP connection to 127.0.0.1:`port` with the tests' timeouts.
pub fn tcp_connect(port: u16) -> TcpStream {
    let sock = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .unwrap_or_else(|e| panic!("cannot connect to 127.0.0.1:{port}: {e}"));
    sock.set_read_timeout(Some(READ_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    sock.set_write_timeout(Some(WRITE_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = sock.set_nodelay(true);
    sock
}

/// A response head.
#[derive(Debug, Clone)]
pub struct Head {
    /// The minor version of `HTTP/1.x`.
    pub minor_version: u8,
    /// The status code.
    pub status: u16,
    /// The header fields, in order, names as sent.
    pub headers: Fields,
    /// The head as received, for failure messages.
    pub raw: String,
}

impl Head {
    /// Parses a complete response head.
    pub fn parse(raw: &[u8]) -> Result<Head, WireError> {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(raw) {
            Ok(httparse::Status::Complete(_)) => Ok(Head {
                minor_version: resp.version.unwrap_or(1),
                status: resp.code.unwrap_or(0),
                headers: owned_fields(resp.headers),
                raw: String::from_utf8_lossy(raw).into_owned(),
            }),
            Ok(httparse::Status::Partial) => Err(WireError::Malformed("partial head".into())),
            Err(e) => Err(WireError::Malformed(format!(
                "{e} in response head {:?}",
                String::from_utf8_lossy(raw)
            ))),
        }
    }

    /// The first value of a header field (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        field(&self.headers, name)
    }

    /// Every value of a header field, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        fields_named(&self.headers, name)
    }

    /// Whether the head has a field of this name.
    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// How the body after this head is delimited, for a request with `method`.
    pub fn framing(&self, method: &str) -> Framing {
        if method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            return Framing::Empty;
        }
        if self.has("transfer-encoding") {
            return if is_chunked(&self.headers) {
                Framing::Chunked
            } else {
                Framing::UntilClose
            };
        }
        match self.header("content-length") {
            Some(v) => Framing::Length(
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("bad Content-Length in {:?}", self.raw)),
            ),
            None => Framing::UntilClose,
        }
    }

    /// Whether the server says it will close after this response.
    pub fn says_close(&self) -> bool {
        self.headers_named("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"))
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Its head.
    pub head: Head,
    /// Its (decoded) body.
    pub body: Vec<u8>,
    /// How the body was delimited.
    pub framing: Framing,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of a header field.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// A one-line summary for assertion messages.
    pub fn summary(&self) -> String {
        format!("{}{:?}", self.head.raw, self.text())
    }
}

/// An HTTP/1.1 client over a stream.
#[derive(Debug)]
pub struct Client<S: Read + Write> {
    wire: Wire<S>,
}

impl Client<TlsStream> {
    /// Connects to 127.0.0.1:`port` with SNI `sni` and completes the handshake.
    pub fn connect(port: u16, sni: &str) -> TlsClient {
        let name = ServerName::try_from(sni.to_string())
            .unwrap_or_else(|e| panic!("bad server name {sni:?}: {e}"));
        Client::connect_with(port, name, default_config())
            .unwrap_or_else(|e| panic!("TLS handshake with 127.0.0.1:{port} as {sni:?}: {e}"))
    }

    /// Connects to 127.0.0.1:`port` with SNI `sni` and a read timeout of `timeout`;
    /// any failure (connect, handshake) as an error, never a panic, for client
    /// loops that count failures.
    pub fn try_connect(port: u16, sni: &str, timeout: Duration) -> io::Result<TlsClient> {
        let name = ServerName::try_from(sni.to_string()).map_err(io::Error::other)?;
        let sock = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let _ = sock.set_nodelay(true);
        let conn = ClientConnection::new(default_config(), name).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Client {
            wire: Wire::new(stream),
        })
    }

    /// Connects from the local loopback address `from` (e.g. 127.0.0.2), so that
    /// nexushub sees another client address; the handshake error if any.
    pub fn connect_from(from: Ipv4Addr, port: u16, sni: &str) -> io::Result<TlsClient> {
        let sock = nexushub::sys::connect_from(
            from,
            std::net::SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        )?;
        sock.set_read_timeout(Some(READ_TIMEOUT))?;
        sock.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let name = ServerName::try_from(sni.to_string()).map_err(io::Error::other)?;
        let conn = ClientConnection::new(default_config(), name).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Client {
            wire: Wire::new(stream),
        })
    }

    /// Connects naming the server by IP address, so no SNI is sent.
    pub fn connect_without_sni(port: u16) -> TlsClient {
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        Client::connect_with(port, name, default_config())
            .unwrap_or_else(|e| panic!("TLS handshake with 127.0.0.1:{port}: {e}"))
    }

    /// Connects with a given config and server name; the handshake error if any.
    pub fn connect_with(
        port: u16,
        name: ServerName<'static>,
        config: Arc<ClientConfig>,
    ) -> io::Result<TlsClient> {
        let sock = tcp_connect(port);
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Client {
            wire: Wire::new(stream),
        })
    }

    /// The rustls connection (ALPN, protocol version, ...).
    pub fn tls(&self) -> &ClientConnection {
        &self.wire.get_ref().conn
    }
}

impl Client<TcpStream> {
    /// Connects over plain TCP.
    pub fn connect_plain(port: u16) -> PlainClient {
        Client {
            wire: Wire::new(tcp_connect(port)),
        }
    }
}

/// The TCP socket under a client stream, for timeouts.
pub trait Socket {
    /// The TCP socket.
    fn socket(&self) -> &TcpStream;
}

impl Socket for TlsStream {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

impl Socket for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

impl<S: Read + Write + Socket> Client<S> {
    /// The stream, to speak another protocol on it (a WebSocket after a handshake
    /// done by hand, say); panics if bytes were read past the last response.
    pub fn into_stream(self) -> S {
        let (stream, rest) = self.wire.into_parts();
        assert!(
            rest.is_empty(),
            "{} bytes read past the last response: {:?}",
            rest.len(),
            String::from_utf8_lossy(&rest)
        );
        stream
    }

    /// Sets the read timeout of the socket.
    pub fn set_read_timeout(&mut self, d: Duration) {
        self.wire
            .get_ref()
            .socket()
            .set_read_timeout(Some(d))
            .unwrap_or_else(|e| panic!("set_read_timeout: {e}"));
    }

    /// Ends the sending side of the TCP socket (a FIN, no close_notify): the
    /// client has said all it will, and still reads.
    pub fn shutdown_write(&mut self) {
        self.wire
            .get_ref()
            .socket()
            .shutdown(Shutdown::Write)
            .unwrap_or_else(|e| panic!("shutdown: {e}"));
    }

    /// Writes bytes and flushes them (panics on error).
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes)
            .unwrap_or_else(|e| panic!("sending {} bytes: {e}", bytes.len()));
    }

    /// Writes bytes and flushes them.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let s = self.wire.get_mut();
        s.write_all(bytes)?;
        s.flush()
    }

    /// Writes the first `len` bytes of the test pattern.
    pub fn send_pattern(&mut self, len: u64) {
        let s = self.wire.get_mut();
        write_pattern(s, len)
            .and_then(|()| s.flush())
            .unwrap_or_else(|e| panic!("sending a {len}-byte pattern body: {e}"));
    }

    /// Reads the next response head, whatever its status (1xx included).
    pub fn try_head(&mut self) -> Result<Head, WireError> {
        let raw = self.wire.read_head(MAX_RESPONSE_HEAD)?;
        Head::parse(&raw)
    }

    /// Reads the next response head (panics on error).
    pub fn head(&mut self) -> Head {
        self.try_head()
            .unwrap_or_else(|e| panic!("reading a response head: {e}"))
    }

    /// Reads the next final (non-1xx) response head.
    pub fn final_head(&mut self) -> Head {
        loop {
            let head = self.head();
            if !(100..200).contains(&head.status) {
                return head;
            }
        }
    }

    /// Streams the body that follows `head` (for a request with `method`) into `sink`.
    pub fn body(
        &mut self,
        head: &Head,
        method: &str,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, BodyError> {
        self.wire.read_body(head.framing(method), sink)
    }

    /// Reads a whole final response to a request with `method` (panics on error).
    pub fn response_to(&mut self, method: &str) -> Response {
        let head = self.final_head();
        let framing = head.framing(method);
        let mut body = Vec::new();
        if let Err(e) = self
            .wire
            .read_body(framing, &mut |b| body.extend_from_slice(b))
        {
            panic!(
                "reading the body of {:?}: {e}; got {:?}",
                head.raw,
                String::from_utf8_lossy(&body)
            );
        }
        Response {
            head,
            body,
            framing,
        }
    }

    /// Reads a whole final response to a non-HEAD request.
    pub fn response(&mut self) -> Response {
        self.response_to("GET")
    }

    /// Sends `GET path` for `host` (keep-alive) and reads the response.
    pub fn get(&mut self, host: &str, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        self.response()
    }

    /// Sends `GET path` for `host` (keep-alive) and reads the response; a failure
    /// (a close, a timeout, bad framing) as text, never a panic.
    pub fn try_get(&mut self, host: &str, path: &str) -> Result<Response, String> {
        self.try_send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .map_err(|e| format!("sending GET {path}: {e}"))?;
        let head = loop {
            let head = self
                .try_head()
                .map_err(|e| format!("reading the response head: {e}"))?;
            if !(100..200).contains(&head.status) {
                break head;
            }
        };
        let framing = head.framing("GET");
        let mut body = Vec::new();
        self.wire
            .read_body(framing, &mut |b| body.extend_from_slice(b))
            .map_err(|e| format!("reading the body of {:?}: {e}", head.raw))?;
        Ok(Response {
            head,
            body,
            framing,
        })
    }

    /// Sends `method path` with a Content-Length body and reads the response.
    pub fn request(&mut self, method: &str, host: &str, path: &str, body: &[u8]) -> Response {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.send(&req);
        self.response_to(method)
    }

    /// Reads until the server closes. Returns the bytes that came before the close;
    /// panics if the connection stays open past the read timeout.
    pub fn expect_closed(&mut self) -> Vec<u8> {
        let started = Instant::now();
        match self.wire.read_until_close() {
            (extra, Ok(_)) => extra,
            (extra, Err(e)) => panic!(
                "expected the server to close the connection, but after {:?}: {e}; read {:?}",
                started.elapsed(),
                String::from_utf8_lossy(&extra)
            ),
        }
    }

    /// Reads until the server closes or the read times out; returns the bytes read
    /// and whether it was a close.
    pub fn read_until_close(&mut self) -> (Vec<u8>, Result<bool, WireError>) {
        self.wire.read_until_close()
    }
}
