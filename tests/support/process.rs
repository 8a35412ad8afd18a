//! A child process whose stdout and stderr are captured line by line, so that tests
//! can wait for a log line (with a deadline) instead of sleeping, and a failing test
//! can print everything the binary said.
//!
//! The child is killed when the handle drops, so a panicking test leaves nothing
//! running behind it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::lock;

/// Which output stream a captured line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The child's stdout.
    Stdout,
    /// The child's stderr.
    Stderr,
}

#[derive(Debug, Default)]
struct Captured {
    lines: Vec<(Stream, String)>,
    open_streams: usize,
    /// The readers stop reading (the child's writes then block once its pipes
    /// are full): a log reader that has stalled.
    stalled: bool,
}

#[derive(Debug, Default)]
struct Log {
    state: Mutex<Captured>,
    changed: Condvar,
}

/// A running child with captured output.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    log: Arc<Log>,
    what: String,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr piped into the capture.
    pub fn spawn(mut cmd: Command) -> Proc {
        let what = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
        let log = Arc::new(Log::default());
        lock(&log.state).open_streams = 2;
        let out = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for (stream, pipe) in [(Stream::Stdout, out), (Stream::Stderr, err)] {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                if let Some(pipe) = pipe {
                    for line in BufReader::new(pipe).split(b'\n') {
                        let Ok(line) = line else { break };
                        let text = String::from_utf8_lossy(&line).trim_end().to_string();
                        let mut state = lock(&log.state);
                        state.lines.push((stream, text));
                        log.changed.notify_all();
                        while state.stalled {
                            state = log.changed.wait(state).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                }
                lock(&log.state).open_streams -= 1;
                log.changed.notify_all();
            });
        }
        Proc { child, log, what }
    }

    /// Stops reading the child's output (after the line being handled): its
    /// writes to stdout and stderr block once the pipes are full.
    pub fn stall_output(&self) {
        lock(&self.log.state).stalled = true;
    }

    /// Reads the child's output again after [`Proc::stall_output`].
    pub fn resume_output(&self) {
        lock(&self.log.state).stalled = false;
        self.log.changed.notify_all();
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line captured so far, both streams interleaved in arrival order.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.log.state)
            .lines
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// The captured lines of one stream, joined with newlines.
    pub fn text(&self, stream: Stream) -> String {
        let state = lock(&self.log.state);
        let mut out = String::new();
        for (_, l) in state.lines.iter().filter(|(s, _)| *s == stream) {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// What the child said, for failure messages.
    pub fn dump(&self) -> String {
        format!("{}\n--- output ---\n{}", self.what, self.lines().join("\n"))
    }

    /// How many lines were captured so far.
    pub fn line_count(&self) -> usize {
        lock(&self.log.state).lines.len()
    }

    /// Waits until a captured line contains `needle` (case-sensitive) and returns
    /// it; panics with the whole output when `within` runs out or the child closes
    /// its output without ever saying it.
    pub fn wait_log(&self, needle: &str, within: Duration) -> String {
        self.wait_log_from(0, needle, within).1
    }

    /// As [`Proc::wait_log`], looking only at lines from index `from` on (to wait
    /// for a line that repeats, such as one per restart); returns the line's index
    /// too.
    pub fn wait_log_from(&self, from: usize, needle: &str, within: Duration) -> (usize, String) {
        let deadline = Instant::now() + within;
        let mut state = lock(&self.log.state);
        loop {
            let found = state
                .lines
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, (_, l))| l.contains(needle));
            if let Some((i, (_, line))) = found {
                return (i, line.clone());
            }
            let now = Instant::now();
            if state.open_streams == 0 || now >= deadline {
                let why = if state.open_streams == 0 {
                    "the process closed its output"
                } else {
                    "timed out"
                };
                drop(state);
                panic!(
                    "waiting for log line {needle:?} (from line {from} on): {why}\n{}",
                    self.dump()
                );
            }
            state = self
                .log
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Sends a signal by name (`TERM`, `HUP`, `KILL`) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits for the child to exit; panics with its output if it is still running
    /// when `within` runs out.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        // First wait for the output pipes to close (the child is exiting), then reap.
        {
            let mut state = lock(&self.log.state);
            while state.open_streams > 0 {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                state = self
                    .log
                    .changed
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.wait_streams_closed(Duration::from_secs(2));
                    return status;
                }
                Ok(None) => {}
                Err(e) => panic!("waiting for {}: {e}", self.what),
            }
            let now = Instant::now();
            if now >= deadline {
                panic!("process still running after {within:?}\n{}", self.dump());
            }
            // Exit is not signalled through the pipes once they are closed, so poll,
            // briefly, until the deadline.
            let state = lock(&self.log.state);
            let _ = self
                .log
                .changed
                .wait_timeout(state, Duration::from_millis(10).min(deadline - now));
        }
    }

    /// Gives the reader threads a moment to deliver the last lines after exit.
    fn wait_streams_closed(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut state = lock(&self.log.state);
        while state.open_streams > 0 {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            state = self
                .log
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Stalled readers would never see the pipes close.
        self.resume_output();
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct CmdOutput {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl CmdOutput {
    /// The exit code (panics if the process died by a signal).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }
}

/// Runs `nexushub ARGS...` in `dir` to completion (at most `within`).
pub fn run_nexushub(dir: &Path, args: &[&str], within: Duration) -> CmdOutput {
    let mut cmd = Command::new(super::nexushub_bin());
    cmd.args(args).current_dir(dir);
    let mut proc = Proc::spawn(cmd);
    let status = proc.wait_exit(within);
    CmdOutput {
        status,
        stdout: proc.text(Stream::Stdout),
        stderr: proc.text(Stream::Stderr),
    }
}
