//! The access log: one line per request, to stderr, to a file, or nowhere.
//!
//! Line format (space-separated, the request in quotes):
//! `TIME CLIENT HOST "METHOD PATH" STATUS BYTES DURATIONms APP`, for example
//! `2026-11-25T20:41:23Z 127.0.0.1:50432 hello.localhost "GET /x?y" 200 1234 3ms hello`.
//! `BYTES` counts response body bytes sent; `APP` is `-` when no app was chosen.
//! A file log is buffered and flushed every second by the caller's ticker (and at
//! shutdown), and reopened on SIGHUP so that logrotate can move it away.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::config::AccessLog as Target;

/// Buffer size of a file access log.
const FILE_BUFFER_BYTES: usize = 64 * 1024;

/// A worker's line buffer and the time text of the current second.
#[derive(Default)]
struct Line {
    text: String,
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

enum Sink {
    Off,
    Stderr,
    File {
        path: PathBuf,
        writer: Mutex<BufWriter<File>>,
    },
}

/// Where access-log lines go.
pub struct AccessLog {
    sink: Sink,
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
    /// Opens the configured target (creating a file log if needed).
    pub fn open(target: &Target) -> io::Result<AccessLog> {
        let sink = match target {
            Target::Off => Sink::Off,
            Target::Stderr => Sink::Stderr,
            Target::File(path) => Sink::File {
                path: path.clone(),
                writer: Mutex::new(BufWriter::with_capacity(
                    FILE_BUFFER_BYTES,
                    open_append(path)?,
                )),
            },
        };
        Ok(AccessLog { sink })
    }

    /// True when lines are thrown away (so callers can skip formatting).
    pub fn is_off(&self) -> bool {
        matches!(self.sink, Sink::Off)
    }

    /// Writes one line. A write error is reported once per line to the log.
    pub fn log(&self, e: &Entry<'_>) {
        if self.is_off() {
            return;
        }
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
                *stamp = crate::x509::format_rfc3339(now);
                *second = Some(secs);
            }
            text.clear();
            let _ = writeln!(
                text,
                "{} {} {} \"{} {}\" {} {} {}ms {}",
                stamp,
                e.client,
                e.host,
                e.method,
                e.path,
                e.status,
                e.bytes,
                e.duration.as_millis(),
                e.app
            );
            match &self.sink {
                Sink::Off => Ok(()),
                // One write call per line, so lines from workers never interleave.
                Sink::Stderr => io::stderr().lock().write_all(text.as_bytes()),
                Sink::File { writer, .. } => writer.lock().write_all(text.as_bytes()),
            }
        });
        if let Err(err) = res {
            log::warn!("access log write failed: {err}");
        }
    }

    /// Flushes a file log's buffer.
    pub fn flush(&self) {
        if let Sink::File { writer, .. } = &self.sink {
            if let Err(e) = writer.lock().flush() {
                log::warn!("access log flush failed: {e}");
            }
        }
    }

    /// Reopens a file log (after logrotate moved it).
    pub fn reopen(&self) {
        if let Sink::File { path, writer } = &self.sink {
            match open_append(path) {
                Ok(file) => {
                    let mut w = writer.lock();
                    let _ = w.flush();
                    *w = BufWriter::with_capacity(FILE_BUFFER_BYTES, file);
                    log::info!("access log reopened: {}", path.display());
                }
                Err(e) => log::error!("cannot reopen access log {}: {e}", path.display()),
            }
        }
    }
}
