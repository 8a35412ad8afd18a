//! What the kernel says about processes and sockets, read from `/proc`: the
//! process-manager tests check "no child left" and "a request is in flight" there
//! rather than trusting nexushub's own log.
//!
//! A zombie counts as gone: it runs nothing and holds no socket, and on some
//! machines PID 1 reaps orphaned zombies slowly, so waiting for it to vanish would
//! test the init system, not nexushub.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

/// How often the waits below look at `/proc` again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// One live (non-zombie) process, as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Its process id.
    pub pid: u32,
    /// Its command name (`comm`, at most 15 bytes).
    pub comm: String,
    /// Its state letter (`R`, `S`, `D`, ...).
    pub state: char,
    /// Its parent's pid.
    pub ppid: u32,
    /// Its process group id.
    pub pgrp: u32,
}

/// Parses the text of `/proc/PID/stat`: `pid (comm) state ppid pgrp ...`, where
/// `comm` may itself hold spaces and parentheses (so split at the last `)`).
pub fn parse_stat(text: &str) -> Option<ProcInfo> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text.get(..open)?.trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        comm,
        state,
        ppid,
        pgrp,
    })
}

/// The process `pid`, if it exists and is not a zombie.
pub fn process(pid: u32) -> Option<ProcInfo> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text).filter(|p| p.state != 'Z')
}

/// How many threads of `pid` sleep in a write to a full pipe (their `wchan`,
/// `pipe_write`, `anon_pipe_write` or `pipe_wait_writable` depending on the
/// kernel).
pub fn threads_writing_a_full_pipe(pid: u32) -> usize {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            fs::read_to_string(t.path().join("wchan"))
                .is_ok_and(|w| w.ends_with("pipe_write") || w == "pipe_wait_writable")
        })
        .count()
}

/// Waits until a thread of `pid` is blocked writing a full pipe; false after
/// `within`.
pub fn wait_writing_a_full_pipe(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while threads_writing_a_full_pipe(pid) == 0 {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
    true
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    process(pid).is_some()
}

/// Every live process whose process group is `pgrp` (an app leads its own group,
/// so its pid names everything it started, the watchdog included).
pub fn group_members(pgrp: u32) -> Vec<ProcInfo> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        // A process can vanish between the listing and the read: skip it.
        .filter_map(process)
        .filter(|p| p.pgrp == pgrp)
        .collect()
}

/// Waits until no live process is left in any of `groups`; returns how long that
/// took, or what is still running when `within` runs out.
pub fn wait_groups_gone(groups: &[u32], within: Duration) -> Result<Duration, Vec<ProcInfo>> {
    let started = Instant::now();
    let deadline = started + within;
    loop {
        let left: Vec<ProcInfo> = groups.iter().flat_map(|&g| group_members(g)).collect();
        if left.is_empty() {
            return Ok(started.elapsed());
        }
        if Instant::now() >= deadline {
            return Err(left);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// How many TCP connections (IPv4) are established with local port `port`: for
/// an app's port, the connections it has accepted and not yet closed.
pub fn established_on(port: u16) -> usize {
    let Ok(text) = fs::read_to_string("/proc/net/tcp") else {
        return 0;
    };
    text.lines()
        .skip(1)
        .filter(|line| {
            let mut f = line.split_whitespace();
            // sl local_address rem_address st ...
            let local = f.nth(1);
            let state = f.nth(1);
            let local_port = local
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && state == Some("01")
        })
        .count()
}

/// The resident memory of `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_plain_name_parses() {
        let p = parse_stat("4242 (nexushub) S 1 4242 4242 0 -1 4194560 ...");
        assert_eq!(
            p,
            Some(ProcInfo {
                pid: 4242,
                comm: "nexushub".into(),
                state: 'S',
                ppid: 1,
                pgrp: 4242,
            })
        );
    }

    #[test]
    fn stat_with_spaces_and_parentheses_in_the_name_parses() {
        let p = parse_stat("77 (a (b) c) Z 5 70 70 0").map(|p| (p.comm, p.state, p.pgrp));
        assert_eq!(p, Some(("a (b) c".to_string(), 'Z', 70)));
    }

    #[test]
    fn this_process_has_resident_memory() {
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }

    #[test]
    fn garbage_stat_is_none() {
        assert_eq!(parse_stat("not a stat line"), None);
    }

    #[test]
    fn this_process_is_alive_and_in_its_group() {
        let me = std::process::id();
        let info = process(me).unwrap_or_else(|| panic!("no /proc/{me}/stat"));
        assert!(group_members(info.pgrp).iter().any(|p| p.pid == me));
    }
}
