//! The access log: one line per request, to stderr, to a file, or nowhere.
//!
//! Line format (space-separated, the request in quotes):
//! `TIME CLIENT HOST "METHOD PATH" STATUS BYTES DURATIONms APP`, for example
//! `2026-11-25T20:41:23Z 127.0.0.1:50432 hello.localhost "GET /x?y" 200 1234 3ms hello`.
//! `BYTES` counts response body bytes sent; `APP` is `-` when no app was chosen.
//! A WebSocket tunnel's line (written when it ends) has status 101, the bytes
//! from the app to the client as `BYTES`, the tunnel's whole life as the
//! duration, and one more field, `in=N`: the bytes from the client to the app.
//!
//! HOST and PATH are escaped ([`escape::push_escaped`]): the parser refuses
//! control bytes, but what it accepts changes with it (a target in UTF-8 may
//! hold C1 and bidi controls), and the log does not rely on it.
//!
//! Workers never write to the log's file or to stderr themselves: a worker
//! formats its line in a buffer of its own and pushes it into a [`Sink`], whose
//! writer thread writes it out (see [`log_sink`](crate::log_sink)). A file log
//! that falls [`MAX_PENDING_BYTES`] behind is then written by the worker that
//! finds it so (the log goes at the disk's pace, no line is dropped); a log on
//! stderr shares the error log's sink, one writer for both, and lines past that
//! are dropped and counted instead, so that a stuck reader of stderr cannot
//! stop the serving. A file log is reopened on SIGHUP so that logrotate can
//! move it away.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::AccessLog as Target;
use crate::escape;
use crate::http1::{push_decimal, push_ip};
use crate::log_sink::{Dest, Overflow, Sink, MAX_PENDING_BYTES};

/// The longest [`AccessLog::flush`] waits for the lines to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// A worker's line buffer and the time text of the current second.
#[derive(Default)]
struct Line {
    text: Vec<u8>,
    second: Option<u64>,
    stamp: String,
}

thread_local! {
    static LINE: std::cell::RefCell<Line> = std::cell::RefCell::new(Line::default());
}

/// One request, as logged.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The client's address.
    pub client: SocketAddr,
    /// The host asked for ("-" when unknown).
    pub host: &'a str,
    /// The method.
    pub method: &'a str,
    /// The request target.
    pub path: &'a str,
    /// The status sent (0 when the connection broke before one was).
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// From the complete head to the end of the response.
    pub duration: Duration,
    /// The app that answered ("-" when none).
    pub app: &'a str,
    /// For a tunnel, the bytes from the client (`None` for a request).
    pub bytes_in: Option<u64>,
}

/// Formats `e` as one line, newline included, into `out` (cleared first).
/// Written by hand, not with `fmt`: its machinery was most of the cost of a
/// line (the profile at 64 connections had `fmt::write` at 1.7% of the
/// workers' samples, an IPv4 address's `Display` at 1%).
fn format_line(out: &mut Vec<u8>, stamp: &str, e: &Entry<'_>) {
    out.clear();
    out.extend_from_slice(stamp.as_bytes());
    out.push(b' ');
    push_addr(out, e.client);
    out.push(b' ');
    escape::push_escaped(out, e.host.as_bytes());
    out.extend_from_slice(b" \"");
    out.extend_from_slice(e.method.as_bytes());
    out.push(b' ');
    escape::push_escaped(out, e.path.as_bytes());
    out.extend_from_slice(b"\" ");
    push_decimal(out, u64::from(e.status));
    out.push(b' ');
    push_decimal(out, e.bytes);
    out.push(b' ');
    push_decimal(
        out,
        u64::try_from(e.duration.as_millis()).unwrap_or(u64::MAX),
    );
    out.extend_from_slice(b"ms ");
    out.extend_from_slice(e.app.as_bytes());
    if let Some(n) = e.bytes_in {
        out.extend_from_slice(b" in=");
        push_decimal(out, n);
    }
    out.push(b'\n');
}

/// Appends `addr` as `Display` writes it (`1.2.3.4:5`, `[::1]:5`).
fn push_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            push_ip(out, (*a.ip()).into());
            out.push(b':');
            push_decimal(out, u64::from(a.port()));
        }
        // With its scope, if any: left to `fmt`, like any IPv6 address.
        SocketAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// Where access-log lines go.
enum Kind {
    Off,
    /// The error log's sink: shared, never stopped from here.
    Stderr(Arc<Sink>),
    /// A sink of its own, with the path for reopening.
    File {
        sink: Arc<Sink>,
        path: PathBuf,
    },
}

/// Where access-log lines go.
pub struct AccessLog {
    kind: Kind,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessLog")
    }
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl AccessLog {
    /// Opens the configured target (creating a file log if needed) and starts
    /// its writer thread (a log on stderr uses the error log's).
    pub fn open(target: &Target) -> io::Result<AccessLog> {
        let kind = match target {
            Target::Off => Kind::Off,
            Target::Stderr => Kind::Stderr(crate::logger::stderr_sink()?),
            Target::File(path) => Kind::File {
                sink: Sink::start(
                    Dest::File(open_append(path)?),
                    Overflow::WriteThrough,
                    "access-log",
                )?,
                path: path.clone(),
            },
        };
        Ok(AccessLog { kind })
    }

    fn sink(&self) -> Option<&Arc<Sink>> {
        match &self.kind {
            Kind::Off => None,
            Kind::Stderr(sink) | Kind::File { sink, .. } => Some(sink),
        }
    }

    /// True when lines are thrown away (so callers can skip formatting).
    pub fn is_off(&self) -> bool {
        matches!(self.kind, Kind::Off)
    }

    /// Logs one line. A write error (when this call had to write) is logged.
    pub fn log(&self, e: &Entry<'_>) {
        let Some(sink) = self.sink() else {
            return;
        };
        // Each worker formats into its own reused line, with the time text
        // formatted once per second: no allocation per request.
        let res = LINE.with(|cell| {
            let mut l = cell.borrow_mut();
            let Line {
                text,
                second,
                stamp,
            } = &mut *l;
            let now = SystemTime::now();
            let secs = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if *second != Some(secs) {
                *stamp = crate::time::format_rfc3339(now);
                *second = Some(secs);
            }
            format_line(text, stamp, e);
            sink.push(text, MAX_PENDING_BYTES)
        });
        if let Err(err) = res {
            crate::warn_limited!("access log write failed: {err}");
        }
    }

    /// Writes out every line logged so far (at shutdown), waiting a bounded
    /// time for a destination that does not take them.
    pub fn flush(&self) {
        match &self.kind {
            Kind::Off => {}
            // A warning would go where the lines are stuck.
            Kind::Stderr(sink) => {
                sink.flush(crate::logger::EXIT_FLUSH_WAIT);
            }
            Kind::File { sink, .. } => {
                if !sink.flush(FLUSH_WAIT) {
                    log::warn!("access log flush: lines still unwritten after {FLUSH_WAIT:?}");
                }
            }
        }
    }

    /// Reopens a file log (after logrotate moved it); the lines logged before
    /// go to the old file.
    pub fn reopen(&self) {
        let Kind::File { sink, path } = &self.kind else {
            return;
        };
        match open_append(path) {
            Ok(file) => {
                if let Err(e) = sink.replace_dest(Dest::File(file)) {
                    log::warn!("access log write failed: {e}");
                }
                log::info!("access log reopened: {}", path.display());
            }
            Err(e) => log::error!("cannot reopen access log {}: {e}", path.display()),
        }
    }
}

impl Drop for AccessLog {
    /// Stops a file log's writer thread once it has written every line.
    fn drop(&mut self) {
        if let Kind::File { sink, .. } = &self.kind {
            sink.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;
    use std::time::Instant;

    fn entry<'a>(client: SocketAddr, path: &'a str, status: u16, bytes: u64) -> Entry<'a> {
        Entry {
            client,
            host: "hello.localhost",
            method: "GET",
            path,
            status,
            bytes,
            duration: Duration::from_micros(3_456),
            app: "hello",
            bytes_in: None,
        }
    }

    /// The line as `fmt` writes it: what the hand-written formatter must match.
    fn reference(stamp: &str, e: &Entry<'_>) -> String {
        format!(
            "{} {} {} \"{} {}\" {} {} {}ms {}{}\n",
            stamp,
            e.client,
            e.host,
            e.method,
            e.path,
            e.status,
            e.bytes,
            e.duration.as_millis(),
            e.app,
            e.bytes_in.map(|n| format!(" in={n}")).unwrap_or_default()
        )
    }

    #[test]
    fn a_tunnel_line_ends_with_the_bytes_from_the_client() {
        let mut e = entry("127.0.0.1:5".parse().unwrap(), "/ws", 101, 42);
        e.bytes_in = Some(7);
        assert_eq!(formatted(&e), reference(STAMP, &e));
        assert!(formatted(&e).ends_with(" 101 42 3ms hello in=7\n"));
    }

    const STAMP: &str = "2026-11-25T20:41:23Z";

    fn formatted(e: &Entry<'_>) -> String {
        let mut out = b"left over".to_vec();
        format_line(&mut out, STAMP, e);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn line_matches_fmt_for_ipv4() {
        let e = entry("127.0.0.1:50432".parse().unwrap(), "/x?y", 200, 1234);
        assert_eq!(formatted(&e), reference(STAMP, &e));
        assert_eq!(
            formatted(&e),
            "2026-11-25T20:41:23Z 127.0.0.1:50432 hello.localhost \"GET /x?y\" 200 1234 3ms hello\n"
        );
    }

    #[test]
    fn line_matches_fmt_for_ipv6() {
        for addr in ["[::1]:443", "[fe80::1%2]:8443", "[::ffff:1.2.3.4]:5"] {
            let e = entry(addr.parse().unwrap(), "/", 404, 0);
            assert_eq!(formatted(&e), reference(STAMP, &e));
        }
    }

    #[test]
    fn line_matches_fmt_for_extreme_numbers() {
        for (addr, status, bytes) in [
            ("0.0.0.0:0", 0, 0),
            ("255.255.255.255:65535", 599, u64::MAX),
            ("10.0.200.9:1", 100, 10),
        ] {
            let mut e = entry(addr.parse().unwrap(), "/a b", status, bytes);
            e.duration = Duration::from_secs(86_400 * 365);
            assert_eq!(formatted(&e), reference(STAMP, &e));
        }
    }

    #[test]
    fn host_and_path_are_escaped() {
        let mut e = entry(
            "127.0.0.1:1".parse().unwrap(),
            "/a\u{202e}b\x1b[0m%1B",
            200,
            1,
        );
        e.host = "h\u{85}ost";
        assert_eq!(
            formatted(&e),
            "2026-11-25T20:41:23Z 127.0.0.1:1 h\\u{85}ost \"GET /a\\u{202e}b\\x1b[0m%1B\" 200 1 3ms hello\n"
        );
    }

    /// A fresh file path under the temp dir, removed (with its `.1`) on drop.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(label: &str) -> TempPath {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            TempPath(std::env::temp_dir().join(format!(
                "nexushub-access-{}-{}-{label}.log",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            )))
        }

        fn rotated(&self) -> PathBuf {
            self.0.with_extension("log.1")
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
            let _ = fs::remove_file(self.rotated());
        }
    }

    fn read(path: &std::path::Path) -> String {
        fs::read_to_string(path).unwrap_or_default()
    }

    fn log_path(log: &AccessLog, path: &str) {
        log.log(&entry("127.0.0.1:1".parse().unwrap(), path, 200, 1));
    }

    #[test]
    fn a_line_reaches_the_file_within_the_flush_interval_without_a_flush() {
        let tmp = TempPath::new("interval");
        let log = AccessLog::open(&Target::File(tmp.0.clone())).expect("open");
        log_path(&log, "/first");
        // The writer thread writes it (nobody calls flush); polled, bounded.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !read(&tmp.0).contains("\"GET /first\"") {
            assert!(Instant::now() < deadline, "not written after 5 s");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn lines_from_several_threads_are_all_written_whole_and_in_order_per_thread() {
        let tmp = TempPath::new("threads");
        let log = Arc::new(AccessLog::open(&Target::File(tmp.0.clone())).expect("open"));
        // Enough lines to pass MAX_PENDING_BYTES, so that workers write too.
        const THREADS: usize = 4;
        const LINES: usize = 40_000;
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let log = log.clone();
                thread::spawn(move || {
                    for i in 0..LINES {
                        log_path(&log, &format!("/t{t}/{i:06}"));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        log.flush();
        let text = read(&tmp.0);
        assert!(text.len() > MAX_PENDING_BYTES, "{} bytes", text.len());
        let mut next = [0usize; THREADS];
        for line in text.lines() {
            let path = line
                .split('"')
                .nth(1)
                .and_then(|r| r.strip_prefix("GET /t"))
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            let (t, i) = path.split_once('/').expect("t/i");
            let (t, i): (usize, usize) = (t.parse().expect("t"), i.parse().expect("i"));
            assert_eq!(i, next[t], "thread {t}: line {line:?} out of order");
            assert!(line.ends_with(" 200 1 3ms hello"), "{line:?}");
            next[t] += 1;
        }
        assert_eq!(next, [LINES; THREADS]);
    }

    #[test]
    fn reopen_sends_later_lines_to_the_new_file() {
        let tmp = TempPath::new("reopen");
        let log = AccessLog::open(&Target::File(tmp.0.clone())).expect("open");
        log_path(&log, "/before");
        fs::rename(&tmp.0, tmp.rotated()).expect("rename");
        log.reopen();
        log_path(&log, "/after");
        log.flush();
        let (old, new) = (read(&tmp.rotated()), read(&tmp.0));
        assert!(
            old.contains("/before") && !old.contains("/after"),
            "{old:?}"
        );
        assert!(
            new.contains("/after") && !new.contains("/before"),
            "{new:?}"
        );
    }

    #[test]
    fn dropping_the_log_writes_every_line() {
        let tmp = TempPath::new("drop");
        let log = AccessLog::open(&Target::File(tmp.0.clone())).expect("open");
        for i in 0..1000 {
            log_path(&log, &format!("/d{i}"));
        }
        drop(log);
        assert_eq!(read(&tmp.0).lines().count(), 1000);
    }

    #[test]
    fn an_off_log_is_off() {
        let log = AccessLog::open(&Target::Off).expect("open");
        assert!(log.is_off());
        log_path(&log, "/nowhere");
        log.flush();
        log.reopen();
    }
}
