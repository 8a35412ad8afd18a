//! wsbench: the WebSocket side of `benches/compare`, synchronous, threads only.
//!
//! ```text
//! wsbench echo-server --listen 127.0.0.1:PORT
//! wsbench load  --url wss://HOST:PORT/PATH --ca PEM [--conns 64] [--seconds 5] [--size 64]
//! wsbench bulk  --url wss://HOST:PORT/PATH --ca PEM [--conns 16] [--seconds 5] [--size 1048576]
//! wsbench hold  --url wss://HOST:PORT/PATH --ca PEM --conns N [--deadline 60]
//! ```
//!
//! `echo-server` is the plain-HTTP backend: it answers a WebSocket upgrade with its
//! 101 and echoes every message, anything else with `200 ok` (the health check). A
//! thread per connection, with a 64 KiB stack and a read buffer that starts at 4 KiB,
//! so that 10,000 idle tunnels cost it about 100 MiB and no CPU.
//!
//! `load` opens `--conns` tunnels (all before the clock starts), then each sends a
//! binary message of `--size` bytes, waits for its echo, checks it and sends the next,
//! for `--seconds`; `bulk` is the same with large messages. Both print one line,
//! `WSJSON {...}`: round trips, seconds, payload bytes echoed, latency percentiles in
//! microseconds, errors. `hold` opens N tunnels (one echo on each), prints `READY ok
//! failed seconds first-error`, idles until stdin closes, then echoes once more on
//! each and prints `ALIVE n`.
//!
//! Every connection goes to 127.0.0.1 (the URL's host is the SNI and the `Host`
//! header only), `wss://` through rustls (ring, as nexushub itself) trusting `--ca`,
//! `ws://` in plain TCP (the backend measured directly). The RFC 6455 framing is the
//! tests' own (`tests/support/ws_frame.rs`).

#![forbid(unsafe_code)]

#[allow(dead_code)]
#[path = "../tests/support/base64.rs"]
mod base64;
#[path = "../tests/support/sha1.rs"]
mod sha1;
#[allow(dead_code)]
#[path = "../tests/support/ws_frame.rs"]
mod ws_frame;

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use ws_frame::{decode, Frame, Opcode, Role};

/// RFC 6455's GUID, appended to the key for `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Stack of a backend connection thread: decoding keeps payloads on the heap.
const CONN_STACK_BYTES: usize = 64 * 1024;
/// First read size of a connection; it doubles, up to [`MAX_READ_BYTES`], while
/// reads fill it (bulk messages), so that idle connections stay small.
const MIN_READ_BYTES: usize = 4 * 1024;
/// Largest single read.
const MAX_READ_BYTES: usize = 256 * 1024;
/// Longest HTTP head either side reads.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Read and write timeout of every client socket: a stuck proxy is an error, not a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Threads `hold` opens its tunnels with.
const HOLD_THREADS: usize = 8;

/// Why a command failed.
#[derive(Debug)]
enum BenchError {
    /// A socket or TLS error.
    Io(io::Error),
    /// The peer broke the WebSocket protocol or the handshake.
    Protocol(String),
    /// A bad command line.
    Usage(String),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // A socket timeout: the peer (or the proxy) stopped moving bytes.
            BenchError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                write!(f, "stalled: no byte moved for {} s", IO_TIMEOUT.as_secs())
            }
            BenchError::Io(e) => write!(f, "{e}"),
            BenchError::Protocol(why) => write!(f, "protocol: {why}"),
            BenchError::Usage(why) => write!(f, "usage: {why}"),
        }
    }
}

impl From<io::Error> for BenchError {
    fn from(e: io::Error) -> BenchError {
        BenchError::Io(e)
    }
}

impl From<ws_frame::ProtocolError> for BenchError {
    fn from(e: ws_frame::ProtocolError) -> BenchError {
        BenchError::Protocol(e.to_string())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("echo-server") => Opts::parse(&args[1..]).and_then(|o| echo_server(&o)),
        Some("load") => Opts::parse(&args[1..]).and_then(|o| load(&o, 64, 64)),
        Some("bulk") => Opts::parse(&args[1..]).and_then(|o| load(&o, 16, 1 << 20)),
        Some("hold") => Opts::parse(&args[1..]).and_then(|o| hold(&o)),
        _ => Err(BenchError::Usage(
            "wsbench echo-server|load|bulk|hold [--listen A] [--url U] [--ca PEM] \
             [--conns N] [--seconds S] [--size B] [--deadline S]"
                .into(),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsbench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command line's `--key value` pairs.
struct Opts(Vec<(String, String)>);

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, BenchError> {
        let mut pairs = Vec::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .ok_or_else(|| BenchError::Usage(format!("unexpected {k}")))?;
            let v = it
                .next()
                .ok_or_else(|| BenchError::Usage(format!("{k} needs a value")))?;
            pairs.push((key.to_string(), v.clone()));
        }
        Ok(Opts(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn need(&self, key: &str) -> Result<&str, BenchError> {
        self.get(key)
            .ok_or_else(|| BenchError::Usage(format!("--{key} is needed")))
    }

    fn num(&self, key: &str, default: u64) -> Result<u64, BenchError> {
        self.get(key).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| BenchError::Usage(format!("--{key} {v}: not a number")))
        })
    }
}

// ---------------------------------------------------------------- framing

/// A WebSocket peer over any stream: reads frames into a buffer that grows only as
/// far as the traffic needs.
struct Peer<S> {
    stream: S,
    /// What the other side sends: a client's frames are masked, a server's not.
    from: Role,
    buf: Vec<u8>,
    pos: usize,
    read_bytes: usize,
    rng: u64,
}

impl<S: Read + Write> Peer<S> {
    fn new(stream: S, from: Role, leftover: Vec<u8>) -> Peer<S> {
        Peer {
            stream,
            from,
            buf: leftover,
            pos: 0,
            read_bytes: MIN_READ_BYTES,
            rng: seed(),
        }
    }

    /// Reads more bytes; `Ok(false)` at EOF.
    fn fill(&mut self) -> io::Result<bool> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + self.read_bytes, 0);
        let n = loop {
            match self.stream.read(&mut self.buf[old..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => break r,
            }
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(old);
                return Err(e);
            }
        };
        self.buf.truncate(old + n);
        if n == self.read_bytes && self.read_bytes < MAX_READ_BYTES {
            self.read_bytes *= 2;
        }
        Ok(n > 0)
    }

    /// The next frame; `Ok(None)` at EOF.
    fn recv(&mut self) -> Result<Option<Frame>, BenchError> {
        loop {
            if let Some((frame, n)) = decode(&self.buf[self.pos..], self.from)? {
                self.pos += n;
                return Ok(Some(frame));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Sends one frame, masked when we are the client.
    fn send(&mut self, mut frame: Frame) -> io::Result<()> {
        if self.from == Role::Server {
            self.rng = xorshift(self.rng);
            frame = frame.masked((self.rng as u32).to_ne_bytes());
        }
        self.stream.write_all(&frame.encode())?;
        self.stream.flush()
    }

    /// Sends `payload` as one binary message and waits for its echo, answering pings.
    fn round_trip(&mut self, payload: &[u8]) -> Result<(), BenchError> {
        self.send(Frame::new(true, Opcode::Binary, payload.to_vec()))?;
        loop {
            match self.recv()? {
                None => return Err(BenchError::Protocol("closed before the echo".into())),
                Some(f) if f.opcode == Opcode::Ping => {
                    self.send(Frame::new(true, Opcode::Pong, f.payload))?
                }
                Some(f) if f.opcode == Opcode::Binary && f.fin => {
                    if f.payload != payload {
                        return Err(BenchError::Protocol("echo differs".into()));
                    }
                    return Ok(());
                }
                Some(f) => {
                    return Err(BenchError::Protocol(format!("{:?} frame", f.opcode)));
                }
            }
        }
    }
}

/// A seed that differs between threads and runs.
fn seed() -> u64 {
    static COUNT: AtomicUsize = AtomicUsize::new(1);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let t = now.map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id());
    (t ^ (COUNT.fetch_add(1, Ordering::Relaxed) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Reads one HTTP head from `stream`: the head and the bytes after it.
fn read_head(stream: &mut impl Read) -> Result<(String, Vec<u8>), BenchError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(at + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(BenchError::Protocol("head too long".into()));
        }
        match stream.read(&mut chunk)? {
            0 => return Err(BenchError::Protocol("closed inside the head".into())),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A header's value in a head (the first, case-insensitive name).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn accept_value(key: &str) -> String {
    base64::base64(&sha1::sha1(format!("{key}{ACCEPT_GUID}").as_bytes()))
}

// ---------------------------------------------------------------- echo-server

fn echo_server(o: &Opts) -> Result<(), BenchError> {
    let listener = TcpListener::bind(o.need("listen")?)?;
    eprintln!("wsbench: echo server on {}", listener.local_addr()?);
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let spawned = thread::Builder::new()
            .stack_size(CONN_STACK_BYTES)
            .spawn(move || {
                let _ = serve(conn);
            });
        if let Err(e) = spawned {
            eprintln!("wsbench: cannot start a connection thread: {e}");
        }
    }
    Ok(())
}

/// One backend connection: plain requests answered `200 ok` until an upgrade, then
/// echo until the client closes.
fn serve(mut conn: TcpStream) -> Result<(), BenchError> {
    conn.set_nodelay(true)?;
    loop {
        let (head, rest) = read_head(&mut conn)?;
        let Some(key) = header(&head, "sec-websocket-key") else {
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
            continue;
        };
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_value(key)
        );
        conn.write_all(answer.as_bytes())?;
        let mut peer = Peer::new(conn, Role::Client, rest);
        while let Some(frame) = peer.recv()? {
            match frame.opcode {
                Opcode::Ping => peer.send(Frame::new(true, Opcode::Pong, frame.payload))?,
                Opcode::Pong => {}
                Opcode::Close => {
                    peer.send(Frame::new(true, Opcode::Close, frame.payload))?;
                    break;
                }
                op => peer.send(Frame::new(frame.fin, op, frame.payload))?,
            }
        }
        let _ = peer.stream.shutdown(Shutdown::Both);
        return Ok(());
    }
}

// ---------------------------------------------------------------- clients

/// Where the clients go: `ws://` or `wss://` HOST:PORT/PATH, always on 127.0.0.1.
struct Target {
    tls: Option<Arc<ClientConfig>>,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn new(o: &Opts) -> Result<Target, BenchError> {
        let url = o.need("url")?;
        let bad = || BenchError::Usage(format!("--url {url}: not ws[s]://HOST:PORT/PATH"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("wss://") {
            (true, r)
        } else {
            (false, url.strip_prefix("ws://").ok_or_else(bad)?)
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        let tls = if tls {
            Some(client_config(o.need("ca")?)?)
        } else {
            None
        };
        Ok(Target {
            tls,
            host: host.to_string(),
            port,
            path: if path.is_empty() { "/" } else { path }.to_string(),
        })
    }

    /// A new tunnel: TCP, TLS if asked, the upgrade handshake checked.
    fn connect(&self) -> Result<Peer<Box<dyn ReadWrite>>, BenchError> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut stream: Box<dyn ReadWrite> = match &self.tls {
            Some(config) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| BenchError::Usage(format!("{}: {e}", self.host)))?;
                let conn = ClientConnection::new(Arc::clone(config), name)
                    .map_err(|e| BenchError::Protocol(format!("tls: {e}")))?;
                Box::new(StreamOwned::new(conn, tcp))
            }
            None => Box::new(tcp),
        };
        let mut nonce = [0u8; 16];
        let (a, b) = (xorshift(seed()), xorshift(seed() ^ 0x5555));
        nonce[..8].copy_from_slice(&a.to_ne_bytes());
        nonce[8..].copy_from_slice(&b.to_ne_bytes());
        let key = base64::base64(&nonce);
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            self.path, self.host
        );
        stream.write_all(request.as_bytes())?;
        stream.flush()?;
        let (head, rest) = read_head(&mut stream)?;
        let status = head.split(' ').nth(1).unwrap_or("");
        if status != "101" || header(&head, "sec-websocket-accept") != Some(&accept_value(&key)) {
            let first = head.lines().next().unwrap_or("");
            return Err(BenchError::Protocol(format!(
                "handshake answered {first:?}"
            )));
        }
        Ok(Peer::new(stream, Role::Server, rest))
    }
}

/// A client stream, TLS or plain.
trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// A rustls client config trusting the certificates in `ca` and offering http/1.1.
fn client_config(ca: &str) -> Result<Arc<ClientConfig>, BenchError> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| BenchError::Usage(format!("--ca {ca}: {e}")))?;
    for cert in certs {
        let cert = cert.map_err(|e| BenchError::Usage(format!("--ca {ca}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| BenchError::Usage(format!("--ca {ca}: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BenchError::Usage(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One load thread's tally.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

fn load(o: &Opts, default_conns: u64, default_size: u64) -> Result<(), BenchError> {
    let target = Arc::new(Target::new(o)?);
    let conns = o.num("conns", default_conns)? as usize;
    let seconds = o.num("seconds", 5)?;
    let size = o.num("size", default_size)? as usize;
    if conns == 0 || seconds == 0 || seconds > 600 || size > 64 << 20 {
        return Err(BenchError::Usage(
            "conns 1.., seconds 1..600, size ..64 MiB".into(),
        ));
    }
    // Every tunnel opens before the clock starts; the handshakes are not measured.
    let ready = Arc::new(Barrier::new(conns + 1));
    let run = Duration::from_secs(seconds);
    let mut threads = Vec::new();
    for i in 0..conns {
        let (target, ready) = (Arc::clone(&target), Arc::clone(&ready));
        threads.push(thread::spawn(move || {
            let mut tally = Tally::default();
            let peer = target.connect();
            ready.wait();
            let mut peer = match peer {
                Ok(p) => p,
                Err(e) => {
                    tally.errors += 1;
                    tally.first_error = Some(format!("connect: {e}"));
                    return (tally, true);
                }
            };
            let deadline = Instant::now() + run;
            let payload: Vec<u8> = (0..size).map(|b| (b * 31 + i) as u8).collect();
            while Instant::now() < deadline {
                let sent = Instant::now();
                match peer.round_trip(&payload) {
                    Ok(()) => tally
                        .latencies_us
                        .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32),
                    Err(e) => {
                        tally.errors += 1;
                        tally.first_error = Some(e.to_string());
                        break;
                    }
                }
            }
            let _ = peer.send(Frame::new(
                true,
                Opcode::Close,
                1000u16.to_be_bytes().to_vec(),
            ));
            (tally, false)
        }));
    }
    ready.wait();
    let began = Instant::now();
    let mut all = Vec::new();
    let (mut errors, mut connect_errors, mut first_error) = (0, 0, None);
    for t in threads {
        let (tally, connect_failed) = t.join().expect("load thread panicked");
        all.extend_from_slice(&tally.latencies_us);
        errors += tally.errors;
        connect_errors += u64::from(connect_failed);
        first_error = first_error.or(tally.first_error);
    }
    let secs = began.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)));
    let n = all.len() as f64;
    println!(
        "WSJSON {{\"conns\":{conns},\"size\":{size},\"seconds\":{secs:.3},\"messages\":{},\
         \"msgs_per_s\":{:.1},\"mib_per_s\":{:.2},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\
         \"errors\":{errors},\"connect_errors\":{connect_errors},\"first_error\":{:?}}}",
        all.len(),
        n / secs,
        n * size as f64 / secs / (1 << 20) as f64,
        pct(0.50).copied().unwrap_or(0),
        pct(0.99).copied().unwrap_or(0),
        all.last().copied().unwrap_or(0),
        first_error.unwrap_or_default(),
    );
    Ok(())
}

fn hold(o: &Opts) -> Result<(), BenchError> {
    let target = Arc::new(Target::new(o)?);
    let conns = o.num("conns", 1000)? as usize;
    let deadline = Instant::now() + Duration::from_secs(o.num("deadline", 60)?);
    let began = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(Mutex::new(Vec::with_capacity(conns)));
    let failed = Arc::new(Mutex::new((0usize, None::<String>)));
    let workers: Vec<_> = (0..HOLD_THREADS)
        .map(|_| {
            let (target, next) = (Arc::clone(&target), Arc::clone(&next));
            let (opened, failed) = (Arc::clone(&opened), Arc::clone(&failed));
            thread::spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < conns {
                    let r = if Instant::now() > deadline {
                        Err(BenchError::Protocol("deadline passed".into()))
                    } else {
                        target
                            .connect()
                            .and_then(|mut p| p.round_trip(b"hello").map(|()| p))
                    };
                    match r {
                        Ok(p) => opened.lock().unwrap().push(p),
                        Err(e) => {
                            let mut f = failed.lock().unwrap();
                            f.0 += 1;
                            f.1.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("hold thread panicked");
    }
    let peers = std::mem::take(&mut *opened.lock().unwrap());
    let (nfailed, first) = failed.lock().unwrap().clone();
    println!(
        "READY {} {nfailed} {:.1} {}",
        peers.len(),
        began.elapsed().as_secs_f64(),
        first.unwrap_or_default()
    );
    io::stdout().flush()?;
    // Idle until the parent closes our stdin.
    for line in io::stdin().lock().lines() {
        line?;
    }
    // Still tunnels? One more echo on each, a few threads at once.
    let alive = AtomicUsize::new(0);
    let chunk = peers.len().div_ceil(HOLD_THREADS).max(1);
    let mut peers = peers;
    thread::scope(|s| {
        for part in peers.chunks_mut(chunk) {
            let alive = &alive;
            s.spawn(move || {
                for p in part {
                    if p.round_trip(b"still there?").is_ok() {
                        alive.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    println!("ALIVE {}", alive.load(Ordering::Relaxed));
    Ok(())
}
