//! A log destination behind a buffer in memory and a writer thread of its own:
//! what keeps every thread that logs (workers, the acceptor, the process
//! manager's output pumps) from ever waiting on a disk or a pipe.
//!
//! A write to a file can block for milliseconds (an ext4 journal commit, a page
//! under writeback), and one to a pipe for as long as its reader does not read
//! (journald busy, a terminal scrolled back, a `| less` left open). A thread that
//! logs only appends its line to the sink's buffer (a short lock, a copy); the
//! sink's writer thread writes that buffer out once it holds [`WRITE_BYTES`], or
//! [`FLUSH_INTERVAL`] after its first line, whichever comes first (at once for
//! a line pushed with [`Sink::push_now`]), and sleeps while there is nothing to
//! write.
//!
//! What happens when the destination falls [`MAX_PENDING_BYTES`] behind is the
//! sink's [`Overflow`]: a file access log is then written by the thread that finds
//! it full (at the disk's pace, no line lost); stderr drops the lines and counts
//! them, and the count is written after the lines before the gap, as one line,
//! so that a stuck reader of stderr never stops nexushub from serving.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Lines waiting in memory that wake the writer before [`FLUSH_INTERVAL`] is up.
pub const WRITE_BYTES: usize = 64 * 1024;
/// The longest a line waits in memory before the writer writes it out.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Lines waiting in memory past which [`Overflow`] decides.
pub const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;
/// Capacity above which a buffer is given back after a write (a burst's).
const KEEP_CAPACITY_BYTES: usize = 2 * WRITE_BYTES;
/// The writer thread's stack size (it formats nothing but the dropped note).
const WRITER_STACK_BYTES: usize = 64 * 1024;

/// What a push does when [`MAX_PENDING_BYTES`] (or the caller's lower cap) are
/// waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The pushing thread writes the lines out itself: nothing is lost, and the
    /// log goes at the destination's pace. For a file, whose writes end.
    WriteThrough,
    /// The line is dropped and counted. For a pipe, whose reader may never read.
    Drop,
}

/// Where written lines go.
#[derive(Debug)]
pub enum Dest {
    /// The process's stderr.
    Stderr,
    /// A file opened for appending.
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
    /// Lines dropped since the last write ([`Overflow::Drop`]).
    dropped: u64,
    /// A write of lines taken from `bytes` is in progress.
    writing: bool,
    /// Write now, without waiting for [`FLUSH_INTERVAL`] (a flush).
    urgent: bool,
    stop: bool,
}

/// The destination, held while writing so that lines go out in the order in
/// which they were taken, with the writer's spare buffer.
struct Out {
    dest: Dest,
    spare: Vec<u8>,
}

/// A destination with its buffer and writer thread.
pub struct Sink {
    pending: Mutex<Pending>,
    /// Wakes the writer: a first line, [`WRITE_BYTES`] reached, a flush, or stop.
    wake: Condvar,
    /// Wakes flushes: a write ended.
    idle: Condvar,
    /// Lock order: `out` before `pending`.
    out: Mutex<Out>,
    overflow: Overflow,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("overflow", &self.overflow)
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// A sink writing to `dest`, with its writer thread named `name`.
    pub fn start(dest: Dest, overflow: Overflow, name: &str) -> io::Result<Arc<Sink>> {
        let sink = Arc::new(Sink {
            pending: Mutex::new(Pending {
                bytes: Vec::with_capacity(KEEP_CAPACITY_BYTES),
                dropped: 0,
                writing: false,
                urgent: false,
                stop: false,
            }),
            wake: Condvar::new(),
            idle: Condvar::new(),
            out: Mutex::new(Out {
                dest,
                spare: Vec::with_capacity(KEEP_CAPACITY_BYTES),
            }),
            overflow,
            writer: Mutex::new(None),
        });
        let for_writer = sink.clone();
        let handle = thread::Builder::new()
            .name(name.into())
            .stack_size(WRITER_STACK_BYTES)
            .spawn(move || for_writer.run_writer())?;
        *sink.writer.lock() = Some(handle);
        Ok(sink)
    }

    /// Appends formatted lines (each ending in `\n`), with `cap` bytes waiting
    /// as the point where [`Overflow`] decides (at most [`MAX_PENDING_BYTES`]),
    /// to be written within [`FLUSH_INTERVAL`]. An error is one of a write this
    /// call had to make ([`Overflow::WriteThrough`]).
    pub fn push(&self, lines: &[u8], cap: usize) -> io::Result<()> {
        self.push_with(lines, cap, false)
    }

    /// [`Sink::push`] for lines a reader watches for (errors, events, an app's
    /// output): the writer writes them, and what waits with them, at once.
    pub fn push_now(&self, lines: &[u8], cap: usize) -> io::Result<()> {
        self.push_with(lines, cap, true)
    }

    fn push_with(&self, lines: &[u8], cap: usize, urgent: bool) -> io::Result<()> {
        let cap = cap.min(MAX_PENDING_BYTES);
        let (wake, full) = {
            let mut p = self.pending.lock();
            let before = p.bytes.len();
            let (first, full) = if self.overflow == Overflow::Drop && before + lines.len() > cap {
                p.dropped += 1;
                // The writer may be asleep waiting for the first line of a
                // batch; the count alone is worth a write.
                (before == 0 && p.dropped == 1, false)
            } else {
                p.bytes.extend_from_slice(lines);
                let after = p.bytes.len();
                (
                    before == 0 || (before < WRITE_BYTES && after >= WRITE_BYTES),
                    after >= cap,
                )
            };
            let hurry = urgent && !p.urgent;
            p.urgent |= urgent;
            (first || hurry, full)
        };
        if full && self.overflow == Overflow::WriteThrough {
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

    /// [`Sink::write_out`] with `out` already held.
    fn write_out_to(&self, out: &mut Out) -> io::Result<()> {
        let Out { dest, spare } = out;
        let dropped = {
            let mut p = self.pending.lock();
            if p.bytes.is_empty() && p.dropped == 0 {
                return Ok(());
            }
            std::mem::swap(&mut p.bytes, spare);
            p.writing = true;
            std::mem::take(&mut p.dropped)
        };
        if dropped > 0 {
            // After the lines before the gap: where the lines were lost.
            push_dropped_note(spare, dropped);
        }
        let res = dest.write_all(spare);
        spare.clear();
        if spare.capacity() > KEEP_CAPACITY_BYTES {
            *spare = Vec::with_capacity(KEEP_CAPACITY_BYTES);
        }
        self.pending.lock().writing = false;
        self.idle.notify_all();
        res
    }

    /// The writer thread: sleeps until there is a line, gives the lines up to
    /// [`FLUSH_INTERVAL`] to make [`WRITE_BYTES`], writes them, and again.
    fn run_writer(&self) {
        loop {
            {
                let mut p = self.pending.lock();
                while p.bytes.is_empty() && p.dropped == 0 && !p.stop {
                    self.wake.wait(&mut p);
                }
                let deadline = Instant::now() + FLUSH_INTERVAL;
                while p.bytes.len() < WRITE_BYTES && !p.stop && !p.urgent {
                    if self.wake.wait_until(&mut p, deadline).timed_out() {
                        break;
                    }
                }
                p.urgent = false;
                if p.stop && p.bytes.is_empty() && p.dropped == 0 {
                    return;
                }
            }
            let res = self.write_out();
            if let Err(e) = res {
                // Stderr has nowhere else to say it; a file says so on stderr.
                if matches!(self.out.lock().dest, Dest::File(_)) {
                    crate::warn_limited!("access log write failed: {e}");
                }
            }
        }
    }

    /// Has the writer write every line pushed so far, and waits at most `within`
    /// for it (a destination that does not take them must not hold up a
    /// shutdown). True when they were written.
    pub fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        // Bounded even here: a panic hook flushes, and the panic may have come
        // from a thread holding the lock.
        let Some(mut p) = self.pending.try_lock_until(deadline) else {
            return false;
        };
        p.urgent = true;
        self.wake.notify_one();
        while !p.bytes.is_empty() || p.dropped > 0 || p.writing {
            if self.idle.wait_until(&mut p, deadline).timed_out() {
                return false;
            }
        }
        true
    }

    /// Writes what is waiting to the current destination, then switches to
    /// `dest` (a reopened file).
    pub fn replace_dest(&self, dest: Dest) -> io::Result<()> {
        let mut out = self.out.lock();
        let res = self.write_out_to(&mut out);
        out.dest = dest;
        res
    }

    /// Stops the writer thread once it has written every line.
    pub fn stop(&self) {
        self.pending.lock().stop = true;
        self.wake.notify_one();
        let handle = self.writer.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// Appends the line that says `n` lines were dropped (written by the sink's
/// writer where the gap is).
pub fn push_dropped_note(out: &mut Vec<u8>, n: u64) {
    let (mut second, mut stamp) = (None, String::new());
    crate::time::push_stamp(out, &mut second, &mut stamp, std::time::SystemTime::now());
    let _ = writeln!(
        out,
        " [WARN] {n} log lines dropped: the log's reader did not keep up"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_note_is_one_warn_line() {
        let mut out = b"before\n".to_vec();
        push_dropped_note(&mut out, 42);
        let text = String::from_utf8(out).expect("utf-8");
        let note = text.strip_prefix("before\n").expect("appended");
        assert!(note.ends_with(" [WARN] 42 log lines dropped: the log's reader did not keep up\n"));
        assert_eq!(note.matches('\n').count(), 1);
    }

    use std::fs;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    /// A sink writing into one end of a socket pair, the other end returned:
    /// a pipe the test reads, or does not.
    fn socket_sink(overflow: Overflow) -> (Arc<Sink>, UnixStream) {
        let (ours, theirs) = UnixStream::pair().expect("pair");
        let file = File::from(std::os::fd::OwnedFd::from(ours));
        let sink = Sink::start(Dest::File(file), overflow, "test-sink").expect("sink");
        (sink, theirs)
    }

    #[test]
    fn a_stuck_reader_never_blocks_a_push_and_the_gap_is_counted() {
        let (sink, mut reader) = socket_sink(Overflow::Drop);
        let line = [b'x'; 1023];
        let mut line = line.to_vec();
        line.push(b'\n');
        // Far more than the socket's buffer and the cap: pushes must all return.
        let started = Instant::now();
        for _ in 0..(3 * MAX_PENDING_BYTES / line.len()) {
            sink.push(&line, MAX_PENDING_BYTES).expect("push");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // Now read everything: kept lines plus the notes' counts add up.
        reader
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let total = 3 * MAX_PENDING_BYTES / line.len();
        let (mut kept, mut dropped, mut partial) = (0, 0, Vec::new());
        let mut buf = vec![0; 1 << 16];
        let deadline = Instant::now() + Duration::from_secs(20);
        while kept + dropped < total {
            assert!(
                Instant::now() < deadline,
                "{kept} kept + {dropped} dropped after 20 s"
            );
            let n = reader.read(&mut buf).expect("read");
            assert!(n > 0, "closed");
            partial.extend_from_slice(&buf[..n]);
            while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = partial.drain(..=nl).collect();
                let l = String::from_utf8_lossy(&l);
                if l.starts_with('x') {
                    kept += 1;
                    continue;
                }
                let n: usize = l
                    .split("[WARN] ")
                    .nth(1)
                    .filter(|r| r.contains("log lines dropped"))
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected line {l:?}"));
                dropped += n;
            }
        }
        assert_eq!(kept + dropped, total);
        assert!(dropped > 0);
        sink.stop();
    }

    #[test]
    fn a_lower_cap_drops_first() {
        let (sink, _reader) = socket_sink(Overflow::Drop);
        let mut line = vec![b'y'; 1023];
        line.push(b'\n');
        // Fill past the lower cap; the socket holds far less than that.
        for _ in 0..(2 * MAX_PENDING_BYTES / line.len()) {
            sink.push(&line, MAX_PENDING_BYTES / 2).expect("push");
        }
        // By now the writer is stuck on the full socket, so nothing is taken
        // out of the pending bytes (and their drop count) any more: one more
        // line under the lower cap is dropped ...
        let before = sink.pending.lock().dropped;
        sink.push(&line, MAX_PENDING_BYTES / 2).expect("push");
        let after_low = sink.pending.lock().dropped;
        assert_eq!(after_low, before + 1, "past the lower cap");
        // ... while a line with the full cap still gets in.
        sink.push(b"own line\n", MAX_PENDING_BYTES).expect("push");
        assert_eq!(sink.pending.lock().dropped, after_low);
        // The stuck writer is left behind (its thread ends with the test binary).
    }

    #[test]
    fn flush_gives_up_at_its_deadline_when_nobody_reads() {
        let (sink, _reader) = socket_sink(Overflow::Drop);
        let mut line = vec![b'z'; 1023];
        line.push(b'\n');
        for _ in 0..(MAX_PENDING_BYTES / line.len()) {
            sink.push(&line, MAX_PENDING_BYTES).expect("push");
        }
        let started = Instant::now();
        assert!(!sink.flush(Duration::from_millis(300)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn flush_writes_everything_to_a_file() {
        let path = std::env::temp_dir().join(format!("nexushub-sink-{}.log", std::process::id()));
        let file = fs::File::create(&path).expect("create");
        let sink =
            Sink::start(Dest::File(file), Overflow::WriteThrough, "test-sink").expect("sink");
        for i in 0..100 {
            sink.push(format!("line {i}\n").as_bytes(), MAX_PENDING_BYTES)
                .expect("push");
        }
        assert!(sink.flush(Duration::from_secs(10)));
        let text = fs::read_to_string(&path).unwrap_or_default();
        let _ = fs::remove_file(&path);
        assert_eq!(text.lines().count(), 100);
        sink.stop();
    }
}
