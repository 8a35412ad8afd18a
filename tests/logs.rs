//! nexushub's own log end to end: a reader of stderr that stops reading, or an
//! app that floods its stdout, never stalls request handling; what reaches the
//! log from outside (an app's output, a request target) has its control
//! characters escaped.
//!
//! The stalled reader is the test itself: it stops reading nexushub's stderr
//! pipe, and `/proc` shows when nexushub is blocked writing to it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::procfs::wait_writing_a_full_pipe;
use crate::support::tls_client::TlsClient;
use crate::support::{Conf, Nexus, TestDir, START_TIMEOUT};

/// An app's output goes to the log; `exec` so that whoami is the app.
const WHOAMI: &str = r#"exec "$NEXUSHUB" whoami"#;

/// The longest one request may take while the log is stuck: far above a normal
/// answer (milliseconds), far below the client's read timeout.
const LATENCY_BOUND: Duration = Duration::from_secs(3);

/// The client's read timeout here: a request that hangs fails the test as such.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(6);

/// Lines the flooding app prints (about 11 MB: far more than a pipe holds and
/// than nexushub keeps in memory for the log).
const FLOOD_LINES: u32 = 1_000_000;

fn host(name: &str) -> String {
    format!("{name}.test.localhost")
}

/// Makes a FIFO at `path` with mkfifo(1).
fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("cannot run mkfifo: {e}"));
    assert!(status.success(), "mkfifo {path:?} failed");
}

/// Writes a line into the FIFO once its reader (the app) has it open; bounded.
fn trigger(fifo: &Path, nexus: &Nexus) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        // Non-blocking: fails with ENXIO while nobody has it open for reading.
        let opened = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo);
        match opened {
            Ok(mut f) => {
                f.write_all(b"go\n").expect("write to the FIFO");
                return;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "the app never opened {fifo:?}: {e}\n{}",
                nexus.dump()
            ),
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `request` on a fresh connection and returns the status and how long
/// the answer took; a hang or a broken connection as text.
fn timed_status(nexus: &Nexus, sni: &str, request: &[u8]) -> Result<(u16, Duration), String> {
    let started = Instant::now();
    let mut c = TlsClient::try_connect(nexus.port(), sni, CLIENT_TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    c.try_send(request).map_err(|e| format!("send: {e}"))?;
    let head = c
        .try_head()
        .map_err(|e| format!("no answer after {:?}: {e}", started.elapsed()))?;
    Ok((head.status, started.elapsed()))
}

#[test]
fn an_app_flooding_its_stdout_into_a_stalled_stderr_never_stalls_requests() {
    let fifo_dir = TestDir::new("flood");
    let fifo = fifo_dir.path().join("go");
    mkfifo(&fifo);
    let h = host("flood");
    // The flood starts when the test says so, once nexushub's stderr is no
    // longer read.
    let app = format!(
        "(read go < '{}' && yes 'flood line' | head -n {FLOOD_LINES}) & {WHOAMI}",
        fifo.display()
    );
    let nexus = Nexus::start(&Conf::new().command_app("flood", &h, &app));
    nexus.stall_output();
    trigger(&fifo, &nexus);
    assert!(
        wait_writing_a_full_pipe(nexus.pid(), Duration::from_secs(20)),
        "nexushub never blocked on its stderr\n{}",
        nexus.dump()
    );
    let mark = nexus.log_mark();
    let get = format!("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n");
    // A 400 is logged (one line, by the worker) before it is answered.
    let bad = format!("GET / HTTP/1.1\r\nHost: {h}\r\nContent-Length: x\r\n\r\n");
    let mut slowest = Duration::ZERO;
    const ROUNDS: usize = 10;
    for round in 0..ROUNDS {
        for (request, want) in [(&get, 200), (&bad, 400)] {
            let (status, took) = timed_status(&nexus, &h, request.as_bytes())
                .unwrap_or_else(|e| panic!("round {round}, expecting {want}: {e}"));
            assert_eq!(status, want, "round {round}");
            assert!(took < LATENCY_BOUND, "round {round}: {want} took {took:?}");
            slowest = slowest.max(took);
        }
    }
    println!("slowest answer while stderr was stuck: {slowest:?}");
    // Still stuck (the flood is far larger than what was read): the answers
    // above came while nothing could be written.
    assert!(wait_writing_a_full_pipe(nexus.pid(), Duration::ZERO));
    nexus.resume_output();
    // What was dropped is said, and nexushub's own lines were kept over the
    // app's: every bad request's line is there.
    nexus.wait_log_after(mark, "log lines dropped", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let bad_lines = nexus.lines()[mark..]
            .iter()
            .filter(|l| l.contains("[INFO] 127.0.0.1:") && l.contains(": bad request: "))
            .count();
        if bad_lines >= ROUNDS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{bad_lines} of {ROUNDS} bad-request lines logged"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// No captured line of nexushub's holds a raw control character (TAB aside).
fn assert_no_raw_controls(nexus: &Nexus) {
    for line in nexus.lines() {
        let raw = line.chars().find(|&c| {
            (c.is_control() && c != '\t')
                || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        });
        assert!(raw.is_none(), "raw {raw:?} in {line:?}");
    }
}

#[test]
fn app_output_with_escape_sequences_cr_bidi_and_bad_utf8_is_logged_escaped() {
    let h = host("noisy");
    // printf's octal escapes: ESC, CR, U+202E, U+009B (C1 CSI), a lone 0xFF.
    let app = format!(
        r"printf 'say \033[31mred\033[0m a\rb \342\200\256evil \302\2332J \377 end\n'; {WHOAMI}"
    );
    let nexus = Nexus::start(&Conf::new().command_app("noisy", &h, &app));
    let line = nexus.wait_log("[INFO] [noisy] say ", START_TIMEOUT);
    assert!(
        line.ends_with(r"[noisy] say \x1b[31mred\x1b[0m a\x0db \u{202e}evil \u{9b}2J \xff end"),
        "{line:?}"
    );
    assert_no_raw_controls(&nexus);
}

#[test]
fn request_targets_reach_the_log_escaped_or_not_at_all() {
    let h = host("paths");
    let nexus = Nexus::start(&Conf::new().command_app("paths", &h, WHOAMI));
    // Percent-encoded escapes are plain text: logged as sent, never decoded.
    let encoded = "/p%1B%5B31m%E2%80%AE?q=%0D%0A";
    let mut c = TlsClient::try_connect(nexus.port(), &h, CLIENT_TIMEOUT).expect("connect");
    assert_eq!(c.get(&h, encoded).status(), 200);
    nexus.wait_log(&format!("\"GET {encoded}\" 200 "), START_TIMEOUT);
    // Raw bidi and C1 characters in the target: refused, or logged escaped.
    for (raw, escaped) in [
        ("/x\u{202e}gpj.exe", r"/x\u{202e}gpj.exe"),
        ("/y\u{85}z", r"/y\u{85}z"),
    ] {
        let req = format!("GET {raw} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n");
        let (status, _) = timed_status(&nexus, &h, req.as_bytes())
            .unwrap_or_else(|e| panic!("{raw:?}: {e}\n{}", nexus.dump()));
        match status {
            400 => {}
            200 => {
                nexus.wait_log(&format!("\"GET {escaped}\" 200 "), START_TIMEOUT);
            }
            other => panic!("{raw:?}: status {other}"),
        }
    }
    // Lines reach the log in order: once this one is in, all above are.
    assert_eq!(c.get(&h, "/done").status(), 200);
    nexus.wait_log("\"GET /done\" 200 ", START_TIMEOUT);
    assert_no_raw_controls(&nexus);
}
