//! Health checks: one check (a TCP connect, or an HTTP `GET` of the app's
//! `health` path answered 2xx or 3xx), and the checker thread that repeats it
//! for one instance and reports every result to the supervisor.
//!
//! Each instance has its own checker, so a hanging check of one app never
//! delays another's; every check is bounded by [`CHECK_TIMEOUT`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// How often an instance that is not healthy is checked.
pub const CHECK_INTERVAL_STARTING: Duration = Duration::from_millis(100);
/// How often a healthy instance is checked.
pub const CHECK_INTERVAL_HEALTHY: Duration = Duration::from_secs(1);
/// Deadline of one health check (connect, request and response head).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// An `upstream` app failing for longer than this is checked at the healthy
/// pace: nothing of ours is starting it, so fast polling would only add load.
pub const UPSTREAM_FAST_CHECKS_FOR: Duration = Duration::from_secs(10);
/// Largest health-check response head read.
const CHECK_HEAD_BYTES: usize = 8192;

/// What one checker checks.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where the instance listens.
    pub addr: SocketAddr,
    /// The `health` path, or `None` for a TCP connect.
    pub path: Option<String>,
    /// The app's host names; the first is sent as `Host`.
    pub hosts: Vec<String>,
    /// True for `upstream` apps (see [`UPSTREAM_FAST_CHECKS_FOR`]).
    pub upstream: bool,
}

/// The body of a checker thread: checks `target` until `stop` is dropped, handing
/// each result to `report`, which returns false once nobody listens (the
/// supervisor is gone). Reporting through a closure keeps this file below the
/// supervisor: it knows nothing of the events the supervisor sleeps on.
pub(crate) fn run_checker(
    target: Target,
    mut report: impl FnMut(Result<(), String>) -> bool,
    stop: Receiver<()>,
) {
    let mut failing_since: Option<Instant> = None;
    loop {
        let result = check(target.addr, target.path.as_deref(), &target.hosts);
        let wait = if result.is_ok() {
            failing_since = None;
            CHECK_INTERVAL_HEALTHY
        } else {
            let since = *failing_since.get_or_insert_with(Instant::now);
            if target.upstream && since.elapsed() > UPSTREAM_FAST_CHECKS_FOR {
                CHECK_INTERVAL_HEALTHY
            } else {
                CHECK_INTERVAL_STARTING
            }
        };
        if !report(result) {
            return;
        }
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// One health check: a TCP connect, or a `GET` of `path` answered 2xx or 3xx.
pub fn check(addr: SocketAddr, path: Option<&str>, hosts: &[String]) -> Result<(), String> {
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let mut sock = TcpStream::connect_timeout(&addr, CHECK_TIMEOUT).map_err(|e| e.to_string())?;
    let Some(path) = path else { return Ok(()) };
    let host = hosts.first().map_or("localhost", |h| h.as_str());
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    sock.set_write_timeout(Some(remaining()))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: nexushub-health-check\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(req.as_bytes())
        .map_err(|e| format!("health check request failed: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        match crate::http1::parse_response(&buf, CHECK_HEAD_BYTES, false) {
            Ok(Some(resp)) if (200..400).contains(&resp.status) => return Ok(()),
            Ok(Some(resp)) => return Err(format!("health check {path} answered {}", resp.status)),
            Ok(None) => {}
            Err(e) => {
                return Err(format!(
                    "health check {path}: invalid answer: {}",
                    e.reason()
                ))
            }
        }
        if buf.len() > CHECK_HEAD_BYTES || Instant::now() >= deadline {
            return Err(format!("health check {path} got no valid answer"));
        }
        sock.set_read_timeout(Some(remaining()))
            .map_err(|e| e.to_string())?;
        match sock.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "health check {path}: connection closed without an answer"
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("health check {path} failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A one-shot HTTP server answering `answer` to the first request.
    fn serve_once(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn tcp_connect_passes_when_listening() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        assert_eq!(check(addr, None, &[]), Ok(()));
    }

    #[test]
    fn tcp_connect_fails_when_nothing_listens() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("addr");
        assert!(check(addr, None, &[]).is_err());
    }

    #[test]
    fn http_200_passes() {
        let addr = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(check(addr, Some("/healthz"), &["a.test".into()]), Ok(()));
    }

    #[test]
    fn http_302_passes() {
        let addr = serve_once("HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(check(addr, Some("/healthz"), &[]), Ok(()));
    }

    #[test]
    fn http_500_fails() {
        let addr = serve_once("HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            check(addr, Some("/healthz"), &[]),
            Err("health check /healthz answered 500".to_string())
        );
    }

    #[test]
    fn http_close_without_answer_fails() {
        let addr = serve_once("");
        assert!(check(addr, Some("/healthz"), &[]).is_err());
    }
}
