//! Children's output, line by line: a sans-IO splitter with a line cap, and the
//! blocking pump that drains one pipe through it.
//!
//! A child must never block on a full pipe, so each of its stdout and stderr has
//! a thread that reads as fast as the child writes and hands complete lines to
//! the log. A line longer than [`MAX_LINE_BYTES`] is logged in pieces of at most
//! that size rather than buffered without bound. The lines go to
//! [`logger::app_line`](crate::logger::app_line), which never blocks (it drops
//! and counts when stderr falls behind) and escapes control characters and
//! bytes that are not UTF-8.

use std::io::{self, Read};

/// Longest line (or piece of a longer line) logged at once, in bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Bytes read from the pipe per call.
const READ_CHUNK_BYTES: usize = 8192;

/// Splits a byte stream into lines (without `\n`, and without a `\r` before it),
/// cutting lines longer than the cap into pieces.
#[derive(Debug)]
pub struct LineSplitter {
    pending: Vec<u8>,
    cap: usize,
    /// The line in `pending` already had a piece emitted: its end may be empty.
    split: bool,
}

impl LineSplitter {
    /// A splitter emitting lines (or pieces) of at most `cap` bytes (at least 1).
    pub fn new(cap: usize) -> LineSplitter {
        let cap = cap.max(1);
        LineSplitter {
            pending: Vec::with_capacity(cap.min(1024)),
            cap,
            split: false,
        }
    }

    /// Feeds `data`, calling `emit` for each complete line or full piece.
    pub fn push(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8])) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            self.append(&data[..nl], emit);
            self.end_line(emit);
            data = &data[nl + 1..];
        }
        self.append(data, emit);
    }

    /// Emits what is left (a last line without `\n`), at end of stream.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            self.end_line(emit);
        }
    }

    fn append(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&[u8])) {
        while self.pending.len() + bytes.len() > self.cap {
            let take = self.cap - self.pending.len();
            self.pending.extend_from_slice(&bytes[..take]);
            emit(&self.pending);
            self.pending.clear();
            self.split = true;
            bytes = &bytes[take..];
        }
        self.pending.extend_from_slice(bytes);
    }

    fn end_line(&mut self, emit: &mut impl FnMut(&[u8])) {
        let line = self.pending.strip_suffix(b"\r").unwrap_or(&self.pending);
        // A line cut exactly at the cap (or before its `\r`) has no tail to log.
        if !(line.is_empty() && self.split) {
            emit(line);
        }
        self.pending.clear();
        self.split = false;
    }
}

/// Reads `input` to its end, calling `emit` for each line of at most `cap`
/// bytes. Returns the read error that ended it early, if one did (the lines
/// before it are emitted).
pub fn pump(mut input: impl Read, cap: usize, mut emit: impl FnMut(&[u8])) -> io::Result<()> {
    let mut splitter = LineSplitter::new(cap);
    let mut buf = [0u8; READ_CHUNK_BYTES];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => splitter.push(&buf[..n], &mut emit),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                splitter.finish(&mut emit);
                return Err(e);
            }
        }
    }
    splitter.finish(&mut emit);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` through a splitter with `cap`, returning the emitted lines.
    fn split(cap: usize, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = LineSplitter::new(cap);
        let mut emit = |l: &[u8]| out.push(l.to_vec());
        for c in chunks {
            s.push(c, &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    fn lines(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn one_line() {
        assert_eq!(split(16, &[b"hi\n"]), lines(&["hi"]));
    }

    #[test]
    fn two_lines_in_one_chunk() {
        assert_eq!(split(16, &[b"a\nb\n"]), lines(&["a", "b"]));
    }

    #[test]
    fn line_across_chunks() {
        assert_eq!(
            split(16, &[b"he", b"llo\nwo", b"rld\n"]),
            lines(&["hello", "world"])
        );
    }

    #[test]
    fn crlf_is_stripped() {
        assert_eq!(split(16, &[b"a\r\nb\r", b"\n"]), lines(&["a", "b"]));
    }

    #[test]
    fn lone_cr_inside_a_line_is_kept() {
        assert_eq!(split(16, &[b"a\rb\n"]), lines(&["a\rb"]));
    }

    #[test]
    fn empty_line_is_kept() {
        assert_eq!(split(16, &[b"\n\nx\n"]), lines(&["", "", "x"]));
    }

    #[test]
    fn last_line_without_newline() {
        assert_eq!(split(16, &[b"a\nlast"]), lines(&["a", "last"]));
    }

    #[test]
    fn nothing_at_all() {
        assert_eq!(split(16, &[]), lines(&[]));
    }

    #[test]
    fn long_line_is_cut_at_the_cap() {
        assert_eq!(split(4, &[b"abcdefghij\n"]), lines(&["abcd", "efgh", "ij"]));
    }

    #[test]
    fn line_of_exactly_the_cap() {
        assert_eq!(split(4, &[b"abcd\nef\n"]), lines(&["abcd", "ef"]));
    }

    #[test]
    fn line_of_twice_the_cap_leaves_no_empty_tail() {
        assert_eq!(split(4, &[b"abcdefgh\n"]), lines(&["abcd", "efgh"]));
    }

    #[test]
    fn cut_just_before_the_cr() {
        assert_eq!(split(4, &[b"abcd\r\nx\n"]), lines(&["abcd", "x"]));
    }

    #[test]
    fn long_line_across_chunks_without_newline() {
        assert_eq!(
            split(3, &[b"ab", b"cd", b"ef", b"g"]),
            lines(&["abc", "def", "g"])
        );
    }

    #[test]
    fn non_utf8_passes_through_as_bytes() {
        assert_eq!(split(16, &[b"\xff\xfe\n"]), vec![vec![0xff, 0xfe]]);
    }

    #[test]
    fn pump_reads_to_the_end() {
        let input: &[u8] = b"one\ntwo\nthree";
        let mut out = Vec::new();
        pump(input, 16, |l| out.push(l.to_vec())).expect("pump");
        assert_eq!(out, lines(&["one", "two", "three"]));
    }

    #[test]
    fn pump_caps_a_huge_line() {
        let input = vec![b'x'; MAX_LINE_BYTES * 2 + 5];
        let mut sizes = Vec::new();
        pump(&input[..], MAX_LINE_BYTES, |l| sizes.push(l.len())).expect("pump");
        assert_eq!(sizes, vec![MAX_LINE_BYTES, MAX_LINE_BYTES, 5]);
    }
}
