//! The error and event log: the `log` crate's lines and the apps' output, to
//! stderr through a sink (`log_sink.rs`), so that no thread that logs ever waits on stderr.
//!
//! Line format: `TIME [LEVEL] MESSAGE`, the time in RFC 3339 UTC with as many
//! fractional digits as it needs (`2026-12-04T16:04:09.5978073Z [WARN] ...`).
//! Every message goes through one escaping function (`escape.rs`): a request target, a host
//! or an app's output inside a message cannot end the line or drive the reader's
//! terminal. An app's output line is logged as `[NAME] line` at INFO, its bytes
//! escaped as they came (bytes that are not UTF-8 as `\xNN`).
//!
//! The access log, when it goes to stderr too, shares the same sink: one writer,
//! so lines of both keep their order and never interleave. When stderr's reader
//! falls 4 MiB behind, lines are dropped and counted (see
//! `log_sink.rs`); the apps' output is dropped first, at
//! [`APP_OUTPUT_CAP_BYTES`], so that an app flooding its stdout cannot crowd out
//! nexushub's own lines.
//!
//! [`warn_limited!`](crate::warn_limited) rate-limits a warning that can repeat
//! in a storm (accept failing with EMFILE): one line per second per call site,
//! the next one saying how many were left out.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use crate::escape;
use crate::log_sink::{Dest, Overflow, Sink, MAX_PENDING_BYTES};

/// Pending bytes past which the apps' output lines are dropped (nexushub's own
/// lines still have the rest of the sink's 4 MiB).
pub const APP_OUTPUT_CAP_BYTES: usize = MAX_PENDING_BYTES / 4 * 3;

/// The longest [`flush`] waits for stderr's reader at exit.
pub const EXIT_FLUSH_WAIT: Duration = Duration::from_secs(2);

/// One line per this long per [`warn_limited!`](crate::warn_limited) call site.
pub const RATE_LIMIT_PERIOD: Duration = Duration::from_secs(1);

static STDERR: OnceLock<Arc<Sink>> = OnceLock::new();
static STDERR_INIT: Mutex<()> = Mutex::new(());
static INSTALLED: AtomicBool = AtomicBool::new(false);
static LOGGER: Logger = Logger;

/// The stderr sink shared by the error log and an access log on stderr,
/// started on first use.
pub fn stderr_sink() -> io::Result<Arc<Sink>> {
    if let Some(s) = STDERR.get() {
        return Ok(s.clone());
    }
    let _guard = STDERR_INIT.lock();
    if let Some(s) = STDERR.get() {
        return Ok(s.clone());
    }
    let sink = Sink::start(Dest::Stderr, Overflow::Drop, "log-writer")?;
    let _ = STDERR.set(sink.clone());
    Ok(sink)
}

/// Installs the logger at `level` (once per process; later calls only change
/// the level).
pub fn init(level: log::LevelFilter) -> io::Result<()> {
    stderr_sink()?;
    if log::set_logger(&LOGGER).is_ok() {
        INSTALLED.store(true, Ordering::Release);
        // A panic's message is written straight to stderr by the default hook:
        // the lines logged before it go first.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush(Duration::from_millis(500));
            previous(info);
        }));
    }
    log::set_max_level(level);
    Ok(())
}

/// Writes every line logged so far to stderr, waiting at most `within` for its
/// reader. True when they were written.
pub fn flush(within: Duration) -> bool {
    STDERR.get().is_none_or(|s| s.flush(within))
}

/// A worker's line buffers and the time text of the current second.
#[derive(Default)]
struct LineBuf {
    line: Vec<u8>,
    message: Vec<u8>,
    second: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    stamp: String,
}

thread_local! {
    static LINE: RefCell<LineBuf> = RefCell::new(LineBuf::default());
}

/// Formats `TIME [LEVEL] ` + `body` (escaped) + `\n` in this thread's buffer
/// and hands it to `f`.
fn with_line<R>(
    level: log::Level,
    body: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>),
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    let fill = |b: &mut LineBuf| {
        let LineBuf {
            line,
            message,
            second,
            stamp,
        } = b;
        line.clear();
        crate::time::push_stamp(line, second, stamp, SystemTime::now());
        let _ = write!(line, " [{level}] ");
        body(line, message);
        line.push(b'\n');
    };
    LINE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut b) => {
            fill(&mut b);
            f(&b.line)
        }
        // Logging from inside a message's `Display`: a buffer of its own.
        Err(_) => {
            let mut b = LineBuf::default();
            fill(&mut b);
            f(&b.line)
        }
    })
}

/// The `log` crate's logger.
struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Ok(sink) = stderr_sink() else { return };
        with_line(
            record.level(),
            |line, message| match record.args().as_str() {
                Some(s) => escape::push_escaped(line, s.as_bytes()),
                None => {
                    message.clear();
                    let _ = write!(message, "{}", record.args());
                    escape::push_escaped(line, message);
                }
            },
            |l| sink.push_now(l, MAX_PENDING_BYTES),
        )
        .unwrap_or(());
    }

    fn flush(&self) {
        flush(EXIT_FLUSH_WAIT);
    }
}

/// Logs one line of app `app`'s output as `[app] line` at INFO, its bytes
/// escaped; dropped first when stderr falls behind.
pub fn app_line(app: &str, line: &[u8]) {
    if !log::log_enabled!(log::Level::Info) {
        return;
    }
    if !INSTALLED.load(Ordering::Acquire) {
        // Another logger (a library user's): it gets the text already escaped.
        log::info!("[{app}] {}", escape::escaped(line));
        return;
    }
    let Ok(sink) = stderr_sink() else { return };
    with_line(
        log::Level::Info,
        |out, _| {
            out.push(b'[');
            escape::push_escaped(out, app.as_bytes());
            out.extend_from_slice(b"] ");
            escape::push_escaped(out, line);
        },
        |l| sink.push_now(l, APP_OUTPUT_CAP_BYTES),
    )
    .unwrap_or(());
}

/// The rate limit of one call site: lock-free, two atomics.
#[derive(Debug)]
pub struct RateLimit {
    /// Milliseconds since [`clock_start`] of the last line let through, plus
    /// one (0: never).
    last_ms: AtomicU64,
    /// Lines held back since then.
    held: AtomicU64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new()
    }
}

/// What a line let through by a [`RateLimit`] appends: nothing, or how many
/// were held back before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct More {
    /// Lines held back.
    pub count: u64,
    /// Whole seconds since the last line let through (at least 1).
    pub secs: u64,
}

impl std::fmt::Display for More {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.count == 0 {
            return Ok(());
        }
        write!(
            f,
            " ({} more like this in the last {} s)",
            self.count, self.secs
        )
    }
}

fn clock_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

impl RateLimit {
    /// A limit that lets the first line through.
    pub const fn new() -> RateLimit {
        RateLimit {
            last_ms: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// Whether a line may go out now; `Some` with what to append if so.
    pub fn allow(&self) -> Option<More> {
        self.allow_at(clock_start().elapsed())
    }

    /// [`RateLimit::allow`] at `now` (time since any fixed start, the same for
    /// every call).
    pub fn allow_at(&self, now: Duration) -> Option<More> {
        let now_ms = u64::try_from(now.as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let period_ms = u64::try_from(RATE_LIMIT_PERIOD.as_millis()).unwrap_or(1000);
        let last = self.last_ms.load(Ordering::Acquire);
        if (last == 0 || now_ms.saturating_sub(last) >= period_ms)
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let count = self.held.swap(0, Ordering::AcqRel);
            let secs = if last == 0 {
                0
            } else {
                ((now_ms - last) / 1000).max(1)
            };
            return Some(More { count, secs });
        }
        self.held.fetch_add(1, Ordering::AcqRel);
        None
    }
}

/// `log::warn!`, at most once per second from this call site; the next line
/// after a burst ends with `(N more like this in the last S s)`.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::logger::RateLimit = $crate::logger::RateLimit::new();
        if let Some(more) = LIMIT.allow() {
            ::log::warn!("{}{}", format_args!($($arg)+), more);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp_of(secs: u64, nanos: u32) -> String {
        let t = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
        let mut out = Vec::new();
        crate::time::push_stamp(&mut out, &mut None, &mut String::new(), t);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn stamp_whole_second() {
        assert_eq!(stamp_of(1_764_864_249, 0), "2025-12-04T16:04:09Z");
    }

    #[test]
    fn stamp_nanoseconds() {
        assert_eq!(
            stamp_of(1_764_864_249, 597_807_345),
            "2025-12-04T16:04:09.597807345Z"
        );
    }

    #[test]
    fn stamp_trailing_zeros_left_out() {
        assert_eq!(stamp_of(0, 500_000_000), "1970-01-01T00:00:00.5Z");
        assert_eq!(stamp_of(0, 1_000), "1970-01-01T00:00:00.000001Z");
        assert_eq!(stamp_of(0, 1), "1970-01-01T00:00:00.000000001Z");
    }

    #[test]
    fn stamp_second_cache_follows_the_clock() {
        let (mut second, mut stamp) = (None, String::new());
        let mut out = Vec::new();
        for (secs, want) in [(0, "1970-01-01T00:00:00Z"), (61, "1970-01-01T00:01:01Z")] {
            out.clear();
            crate::time::push_stamp(
                &mut out,
                &mut second,
                &mut stamp,
                SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            );
            assert_eq!(out, want.as_bytes());
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rate_limit_lets_the_first_through_bare() {
        let l = RateLimit::new();
        assert_eq!(l.allow_at(ms(5_000)), Some(More { count: 0, secs: 0 }));
        assert_eq!(l.allow_at(ms(5_000)).map(|m| m.to_string()), None);
    }

    #[test]
    fn rate_limit_holds_back_within_the_period_and_counts() {
        let l = RateLimit::new();
        assert!(l.allow_at(ms(0)).is_some());
        for t in [1, 10, 500, 999] {
            assert_eq!(l.allow_at(ms(t)), None, "at {t} ms");
        }
        let more = l.allow_at(ms(1_000)).expect("a second later");
        assert_eq!(more, More { count: 4, secs: 1 });
        assert_eq!(more.to_string(), " (4 more like this in the last 1 s)");
        // The count starts again.
        assert_eq!(l.allow_at(ms(1_500)), None);
        assert_eq!(l.allow_at(ms(2_000)), Some(More { count: 1, secs: 1 }));
    }

    #[test]
    fn rate_limit_after_a_quiet_spell_names_the_whole_gap() {
        let l = RateLimit::new();
        assert!(l.allow_at(ms(0)).is_some());
        assert_eq!(l.allow_at(ms(200)), None);
        assert_eq!(l.allow_at(ms(65_400)), Some(More { count: 1, secs: 65 }));
    }

    #[test]
    fn rate_limit_nothing_held_back_appends_nothing() {
        let l = RateLimit::new();
        assert!(l.allow_at(ms(0)).is_some());
        let more = l.allow_at(ms(3_000)).expect("later");
        assert_eq!(more.to_string(), "");
    }

    #[test]
    fn rate_limit_counts_every_call_from_many_threads() {
        let l = Arc::new(RateLimit::new());
        assert!(l.allow_at(ms(0)).is_some());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        assert_eq!(l.allow_at(ms(10)), None);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        assert_eq!(
            l.allow_at(ms(1_010)),
            Some(More {
                count: 4000,
                secs: 1
            })
        );
    }
}
