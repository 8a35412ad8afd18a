//! Shared helpers for the integration tests: the running binary, a TLS client, a
//! scriptable backend, WebSocket peers, and the few pure functions (hash, test
//! pattern) they agree on.
//!
//! Everything here is synchronous and bounded: every socket has a timeout, every wait
//! has a deadline, and a helper that cannot make progress panics with what it saw
//! (the log lines of the binary, the bytes read so far) so that a failing test says why.

pub mod backend;
pub mod base64;
pub mod nexus;
pub mod process;
pub mod procfs;
pub mod sha1;
pub mod tls_client;
pub mod websocket;
pub mod wire;
pub mod ws_backend;
pub mod ws_frame;

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

pub use backend::{Backend, Reply, Seen};
pub use nexus::{Conf, Nexus, TestDir, Whoami, WhoamiReport, HELLO};
pub use process::{run_nexushub, CmdOutput};
pub use tls_client::{Response, TlsClient};
pub use wire::Framing;

/// One mebibyte, for body sizes.
pub const MIB: u64 = 1024 * 1024;

/// How long a test waits for the binary to log that it listens (a debug build is slow
/// to start on a loaded two-core machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The default read timeout of every client socket in the tests.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Path of the binary under test: `$NEXUSHUB_BIN` when set (to run the suite against
/// another build, such as a release one), else the one Cargo built for this test.
pub fn nexushub_bin() -> PathBuf {
    std::env::var_os("NEXUSHUB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nexushub")))
}

/// Path of a file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64, fed incrementally, as `nexushub whoami` reports it for a request body.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Fnv1a64(FNV_OFFSET)
    }
}

impl Fnv1a64 {
    /// Feeds bytes into the hash.
    pub fn update(&mut self, bytes: &[u8]) {
        // FNV is inherently one byte at a time; working on 8-byte groups keeps the
        // loop overhead of an unoptimised test build down (the 100 MiB tests hash
        // every byte twice).
        let mut h = self.0;
        let mut groups = bytes.chunks_exact(8);
        for g in &mut groups {
            h = (h ^ u64::from(g[0])).wrapping_mul(FNV_PRIME);
            h = (h ^ u64::from(g[1])).wrapping_mul(FNV_PRIME);
            h = (h ^ u64::from(g[2])).wrapping_mul(FNV_PRIME);
            h = (h ^ u64::from(g[3])).wrapping_mul(FNV_PRIME);
            h = (h ^ u64::from(g[4])).wrapping_mul(FNV_PRIME);
            h = (h ^ u64::from(g[5])).wrapping_mul(FNV_PRIME);
            h = (h ^ u64::from(g[6])).wrapping_mul(FNV_PRIME);
            h = (h ^ u64::from(g[7])).wrapping_mul(FNV_PRIME);
        }
        for &b in groups.remainder() {
            h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        self.0 = h;
    }

    /// The hash of everything fed so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// FNV-1a 64 of a whole slice.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a64::default();
    h.update(bytes);
    h.value()
}

/// The test pattern's period: byte `i` of a pattern body is `(i % 251) as u8`, as
/// `whoami`'s `/bytes/N` serves it. 251 is prime, so a shifted or dropped block shows.
pub const PATTERN_PERIOD: usize = 251;

/// One block of the pattern, a whole number of periods long, so consecutive blocks
/// continue the pattern without any per-byte work.
pub fn pattern_block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        (0..PATTERN_PERIOD * 256)
            .map(|i| (i % PATTERN_PERIOD) as u8)
            .collect()
    })
}

/// The first `len` bytes of the pattern, in memory (for small bodies only).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % PATTERN_PERIOD) as u8).collect()
}

/// Writes the first `len` bytes of the pattern to `w`, block by block.
pub fn write_pattern(w: &mut dyn Write, len: u64) -> io::Result<()> {
    let block = pattern_block();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        w.write_all(&block[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// FNV-1a 64 of the first `len` bytes of the pattern, computed once per length per
/// test run (the upload and download tests share the 100 MiB one).
pub fn pattern_fnv(len: u64) -> u64 {
    static CACHE: OnceLock<std::sync::Mutex<Vec<(u64, u64)>>> = OnceLock::new();
    // Held while computing, so parallel tests wait for one computation, not repeat it.
    let mut cache = lock(CACHE.get_or_init(Default::default));
    if let Some(&(_, h)) = cache.iter().find(|(l, _)| *l == len) {
        return h;
    }
    let block = pattern_block();
    let mut h = Fnv1a64::default();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        h.update(&block[..n]);
        left -= n as u64;
    }
    cache.push((len, h.value()));
    h.value()
}

/// Checks streamed bytes against the pattern as they arrive, and hashes them.
#[derive(Debug, Default)]
pub struct PatternCheck {
    /// Bytes seen so far.
    pub len: u64,
    /// FNV-1a 64 of the bytes seen so far.
    pub hash: Fnv1a64,
    /// Offset of the first byte that differs from the pattern, if any.
    pub first_mismatch: Option<u64>,
}

impl PatternCheck {
    /// Feeds the next received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
        if self.first_mismatch.is_none() {
            // Compare against the pattern slice by slice (a memcmp, not a byte loop).
            let block = pattern_block();
            let mut off = 0;
            while off < bytes.len() {
                let at = ((self.len + off as u64) % PATTERN_PERIOD as u64) as usize;
                let n = (bytes.len() - off).min(block.len() - at);
                if bytes[off..off + n] != block[at..at + n] {
                    let i = (0..n)
                        .find(|&i| bytes[off + i] != block[at + i])
                        .unwrap_or(0);
                    self.first_mismatch = Some(self.len + (off + i) as u64);
                    break;
                }
                off += n;
            }
        }
        self.len += bytes.len() as u64;
    }
}

/// Locks a std mutex, ignoring poisoning (a panicking helper thread must not hide
/// the test's own failure message behind a poison error).
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Finds `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Case-insensitive substring test, for log lines and error messages.
pub fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.to_ascii_lowercase()
        .contains(&needle.to_ascii_lowercase())
}
