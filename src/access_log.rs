//! The access log: one line per request, to stderr, to a file, or nowhere.
//!
//! Line format (space-separated, the request in quotes):
//! `TIME CLIENT HOST "METHOD PATH" STATUS BYTES DURATIONms APP`, for example
//! `2026-11-25T20:41:23Z 127.0.0.1:50432 hello.localhost "GET /x?y" 200 1234 3ms hello`.
//! `BYTES` counts response body bytes sent; `APP` is `-` when no app was chosen.
//!
//! Workers never write to the log's file or to stderr themselves: a write there
//! can block for milliseconds (an ext4 journal commit, a page under writeback, a
//! full pipe to journald), and a worker that blocks delays every connection it
//! would serve next. A worker formats its line in a buffer of its own and appends
//! it to a shared in-memory buffer (a short lock, a copy); the `access-log`
//! thread writes that buffer out once it holds [`WRITE_BYTES`], or
//! [`FLUSH_INTERVAL`] after its first line, whichever comes first, and sleeps
//! while there is nothing to write. If the disk falls so far behind that
//! [`MAX_PENDING_BYTES`] are waiting, the worker that finds it so writes them out
//! itself: the log then goes at the disk's pace, and no line is dropped. A file log
//! is reopened on SIGHUP so that logrotate can move it away.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use crate::config::AccessLog as Target;
use crate::http1::{push_decimal, push_ip};

/// Lines waiting in memory that wake the writer before [`FLUSH_INTERVAL`] is up.
pub const WRITE_BYTES: usize = 64 * 1024;
/// The longest a line waits in memory before the writer writes it out.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Lines waiting in memory past which a worker writes them out itself.
pub const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;
/// Capacity above which a buffer is given back after a write (a burst's).
const KEEP_CAPACITY_BYTES: usize = 2 * WRITE_BYTES;
/// The writer thread's stack size (it formats nothing; it only writes).
const WRITER_STACK_BYTES: usize = 64 * 1024;

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
    for (before, text) in [(" ", e.host), (" \"", e.method), (" ", e.path)] {
        out.extend_from_slice(before.as_bytes());
        out.extend_from_slice(text.as_bytes());
    }
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

/// Where written lines go.
enum Dest {
    Stderr,
    File(File),
}

impl Dest {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Dest::Stderr => io::stderr().lock().write_all(bytes),
            Dest::File(file) => file.write_all(bytes),
        }
    }
}

/// Lines formatted but not written yet, and the writer thread's orders.
struct Pending {
    bytes: Vec<u8>,
    stop: bool,
}

/// The destination, held while writing so that lines go out in the order in
/// which they were taken, with the writer's spare buffer.
struct Out {
    dest: Dest,
    spare: Vec<u8>,
}

/// What the workers and the writer thread share.
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer: a first line, [`WRITE_BYTES`] reached, or stop.
    wake: Condvar,
    /// Lock order: `out` before `pending`.
    out: Mutex<Out>,
}

impl Shared {
    /// Appends a formatted line; wakes the writer when it has work, or writes
    /// the lines out here when [`MAX_PENDING_BYTES`] are waiting.
    fn push(&self, line: &[u8]) -> io::Result<()> {
        let (wake, full) = {
            let mut p = self.pending.lock();
            let before = p.bytes.len();
            p.bytes.extend_from_slice(line);
            let after = p.bytes.len();
            (
                before == 0 || (before < WRITE_BYTES && after >= WRITE_BYTES),
                after >= MAX_PENDING_BYTES,
            )
        };
        if full {
            return self.write_out();
        }
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Writes every line waiting. Holding `out` across the swap and the write
    /// keeps lines in order whichever thread writes them.
    fn write_out(&self) -> io::Result<()> {
        self.write_out_to(&mut self.out.lock())
    }

    /// [`Shared::write_out`] with `out` already held.
    fn write_out_to(&self, out: &mut Out) -> io::Result<()> {
        let Out { dest, spare } = out;
        {
            let mut p = self.pending.lock();
            if p.bytes.is_empty() {
                return Ok(());
            }
            std::mem::swap(&mut p.bytes, spare);
        }
        let res = dest.write_all(spare);
        spare.clear();
        if spare.capacity() > KEEP_CAPACITY_BYTES {
            *spare = Vec::with_capacity(KEEP_CAPACITY_BYTES);
        }
        res
    }

    /// The writer thread: sleeps until there is a line, gives the lines up to
    /// [`FLUSH_INTERVAL`] to make [`WRITE_BYTES`], writes them, and again.
    fn run_writer(&self) {
        loop {
            {
                let mut p = self.pending.lock();
                while p.bytes.is_empty() && !p.stop {
                    self.wake.wait(&mut p);
                }
                let deadline = Instant::now() + FLUSH_INTERVAL;
                while p.bytes.len() < WRITE_BYTES && !p.stop {
                    if self.wake.wait_until(&mut p, deadline).timed_out() {
                        break;
                    }
                }
                if p.stop && p.bytes.is_empty() {
                    return;
                }
            }
            if let Err(e) = self.write_out() {
                log::warn!("access log write failed: {e}");
            }
        }
    }
}

/// Where access-log lines go.
pub struct AccessLog {
    /// `None` when the log is off.
    shared: Option<Arc<Shared>>,
    writer: Option<JoinHandle<()>>,
    /// A file log's path, for reopening it.
    path: Option<PathBuf>,
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
    /// its writer thread.
    pub fn open(target: &Target) -> io::Result<AccessLog> {
        let dest = match target {
            Target::Off => {
                return Ok(AccessLog {
                    shared: None,
                    writer: None,
                    path: None,
                })
            }
            Target::Stderr => Dest::Stderr,
            Target::File(path) => Dest::File(open_append(path)?),
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                bytes: Vec::with_capacity(KEEP_CAPACITY_BYTES),
                stop: false,
            }),
            wake: Condvar::new(),
            out: Mutex::new(Out {
                dest,
                spare: Vec::with_capacity(KEEP_CAPACITY_BYTES),
            }),
        });
        let for_writer = shared.clone();
        let writer = thread::Builder::new()
            .name("access-log".into())
            .stack_size(WRITER_STACK_BYTES)
            .spawn(move || for_writer.run_writer())?;
        Ok(AccessLog {
            shared: Some(shared),
            writer: Some(writer),
            path: match target {
                Target::File(path) => Some(path.clone()),
                _ => None,
            },
        })
    }

    /// True when lines are thrown away (so callers can skip formatting).
    pub fn is_off(&self) -> bool {
        self.shared.is_none()
    }

    /// Logs one line. A write error (when this call had to write) is logged.
    pub fn log(&self, e: &Entry<'_>) {
        let Some(shared) = &self.shared else {
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
            shared.push(text)
        });
        if let Err(err) = res {
            log::warn!("access log write failed: {err}");
        }
    }

    /// Writes out every line logged so far (at shutdown).
    pub fn flush(&self) {
        if let Some(shared) = &self.shared {
            if let Err(e) = shared.write_out() {
                log::warn!("access log flush failed: {e}");
            }
        }
    }

    /// Reopens a file log (after logrotate moved it); the lines logged before
    /// go to the old file.
    pub fn reopen(&self) {
        let (Some(shared), Some(path)) = (&self.shared, &self.path) else {
            return;
        };
        match open_append(path) {
            Ok(file) => {
                let mut out = shared.out.lock();
                if let Err(e) = shared.write_out_to(&mut out) {
                    log::warn!("access log write failed: {e}");
                }
                out.dest = Dest::File(file);
                drop(out);
                log::info!("access log reopened: {}", path.display());
            }
            Err(e) => log::error!("cannot reopen access log {}: {e}", path.display()),
        }
    }
}

impl Drop for AccessLog {
    /// Stops the writer thread once it has written every line.
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.pending.lock().stop = true;
            shared.wake.notify_one();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
        }
    }

    /// The line as `fmt` writes it: what the hand-written formatter must match.
    fn reference(stamp: &str, e: &Entry<'_>) -> String {
        format!(
            "{} {} {} \"{} {}\" {} {} {}ms {}\n",
            stamp,
            e.client,
            e.host,
            e.method,
            e.path,
            e.status,
            e.bytes,
            e.duration.as_millis(),
            e.app
        )
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
