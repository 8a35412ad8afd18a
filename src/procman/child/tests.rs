//! Spawning tests with real processes: exit statuses, environment and working
//! directory, process groups, signal masks, output lines, and the watchdog.

use super::*;
use crate::procman::lines;
use std::process::ChildStdout;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn describe_exit_code() {
    assert_eq!(describe_exit(ExitStatus::from_raw(3 << 8)), "exit status 3");
}

#[test]
fn describe_exit_zero() {
    assert_eq!(describe_exit(ExitStatus::from_raw(0)), "exit status 0");
}

#[test]
fn describe_exit_signal() {
    assert_eq!(describe_exit(ExitStatus::from_raw(9)), "killed by signal 9");
}

#[test]
fn describe_exit_core_dump() {
    assert_eq!(
        describe_exit(ExitStatus::from_raw(0x80 | 11)),
        "killed by signal 11 (core dumped)"
    );
}

#[test]
fn port_hold_gives_a_port_that_is_free_after_release() {
    let hold = PortHold::new().expect("hold");
    let port = hold.port();
    assert_ne!(port, 0);
    hold.release();
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("rebind after release");
}

/// A watchdog running the nexushub binary that `cargo test` builds beside
/// this test binary (`target/PROFILE/deps/..`). `cargo test --lib` alone
/// does not build it: a binary without the watchdog subcommand (an old one)
/// is refused here rather than left to fail the watchdog tests obscurely.
fn dog() -> Watchdog {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let bin = BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("nexushub"))
            .filter(|bin| bin.is_file())
            .unwrap_or_else(|| panic!("no nexushub binary beside {exe:?}: run `cargo build`"));
        // Run by hand, the subcommand refuses with exit status 2.
        let out = Command::new(&bin)
            .arg(sys::WATCHDOG_SUBCOMMAND.to_str().expect("ascii"))
            .output()
            .expect("run nexushub");
        assert!(
            out.status.code() == Some(2)
                && String::from_utf8_lossy(&out.stderr).contains("watchdog"),
            "{bin:?} has no watchdog subcommand (stale? run `cargo build`): {out:?}"
        );
        bin
    });
    Watchdog::open(bin).expect("watchdog")
}

fn launch<'a>(command: &'a str, env: &'a [(String, String)]) -> Launch<'a> {
    Launch {
        command,
        dir: None,
        env,
        port: 4242,
    }
}

fn read_lines(out: impl io::Read) -> Vec<String> {
    let mut v = Vec::new();
    lines::pump(out, lines::MAX_LINE_BYTES, |l| {
        v.push(String::from_utf8_lossy(l).into_owned())
    })
    .expect("pump");
    v
}

/// Runs `command` to its end: (exit description, stdout lines, stderr lines).
fn run(l: &Launch<'_>) -> (String, Vec<String>, Vec<String>) {
    let dog = dog();
    let mut child = spawn(l, &dog, None).expect("spawn");
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let errs = thread::spawn(move || read_lines(err));
    let outs = read_lines(out);
    let errs = errs.join().expect("stderr reader");
    let status = child.wait().expect("wait");
    (describe_exit(status), outs, errs)
}

#[test]
fn exit_status_and_output_are_captured() {
    let (status, out, err) = run(&launch("echo hi; echo oops >&2; exit 3", &[]));
    assert_eq!(status, "exit status 3");
    assert_eq!(out, ["hi"]);
    assert_eq!(err, ["oops"]);
}

#[test]
fn death_by_signal_is_captured() {
    let (status, _, _) = run(&launch("kill -9 $$", &[]));
    assert_eq!(status, "killed by signal 9");
}

#[test]
fn port_and_env_are_set_and_port_wins() {
    let env = [
        ("GREETING".to_string(), "hello there".to_string()),
        ("PORT".to_string(), "1".to_string()),
    ];
    let (_, out, _) = run(&launch("echo \"$GREETING\"; echo \"$PORT\"", &env));
    assert_eq!(out, ["hello there", "4242"]);
}

#[test]
fn dir_is_the_working_directory() {
    let dir = std::env::temp_dir();
    let l = Launch {
        dir: Some(&dir),
        ..launch("pwd -P", &[])
    };
    let (_, out, _) = run(&l);
    let want = dir.canonicalize().expect("canonical temp dir");
    assert_eq!(out, [want.to_string_lossy().into_owned()]);
}

#[test]
fn stdin_is_null() {
    let (_, out, _) = run(&launch("cat; echo end", &[]));
    assert_eq!(out, ["end"]);
}

#[test]
fn child_is_its_own_process_group_leader() {
    // Field 5 of /proc/PID/stat is the process group (the name "(sh)" has no space).
    let (_, out, _) = run(&launch("cut -d' ' -f5 /proc/$$/stat; echo $$", &[]));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], out[1]);
}

#[test]
fn signals_blocked_in_the_parent_are_unblocked_in_the_child() {
    // Blocks SIGTERM/SIGINT/SIGHUP in this test thread only, as nexushub does
    // in all of its threads; the child must start with an empty mask.
    sys::block_signals().expect("block");
    let (_, out, _) = run(&launch("grep -E '^SigBlk' /proc/self/status", &[]));
    assert_eq!(out, ["SigBlk:\t0000000000000000"]);
}

#[test]
fn a_long_line_is_split() {
    let (_, out, _) = run(&launch("head -c 40000 /dev/zero | tr '\\0' x; echo", &[]));
    let sizes: Vec<usize> = out.iter().map(String::len).collect();
    assert_eq!(sizes, [16384, 16384, 40000 - 2 * 16384]);
}

/// The third field of /proc/PID/stat: R, S, Z ...; None once it is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
}

/// The live (not zombie) processes of process group `pgid`, from /proc.
fn live_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let f: Vec<&str> = rest.split(' ').collect();
            f.len() > 2 && f[2] == pgid.to_string() && !matches!(f[0], "Z" | "X")
        })
        .collect()
}

/// Waits up to `limit` for every process of group `pgid` to be dead
/// (gone, or a zombie); returns those still alive.
fn wait_group_dead(pgid: u32, limit: Duration) -> Vec<u32> {
    let end = Instant::now() + limit;
    loop {
        let left = live_members(pgid);
        if left.is_empty() || Instant::now() >= end {
            return left;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to `limit` for `pid` to be dead (gone, or a zombie).
fn wait_dead(pid: u32, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        if matches!(proc_state(pid), None | Some('Z') | Some('X')) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn first_line(out: ChildStdout) -> u32 {
    let mut first = None;
    let reader = io::BufRead::lines(io::BufReader::new(out));
    if let Some(Ok(line)) = reader.into_iter().next() {
        first = line.trim().parse().ok();
    }
    first.expect("a pid on the first line")
}

#[test]
fn watchdog_kills_leftovers_when_the_main_process_exits() {
    let dog = dog();
    let l = launch("sleep 30 & echo $!", &[]);
    let mut child = spawn(&l, &dog, None).expect("spawn");
    let pid = child.id();
    let grandchild = first_line(child.stdout.take().expect("stdout"));
    let status = child.wait().expect("wait");
    assert_eq!(describe_exit(status), "exit status 0");
    assert!(
        wait_dead(grandchild, Duration::from_secs(5)),
        "background sleep {grandchild} outlived its main process"
    );
    let left = wait_group_dead(pid, Duration::from_secs(5));
    assert!(left.is_empty(), "group {pid} still has {left:?}");
}

#[test]
fn watchdog_kills_the_group_when_nexushub_is_gone() {
    let dog = dog();
    let l = launch("sleep 30 & echo $!; sleep 30", &[]);
    let mut child = spawn(&l, &dog, None).expect("spawn");
    let pid = child.id();
    let grandchild = first_line(child.stdout.take().expect("stdout"));
    // Closing our ends of the pipe is what nexushub's death looks like to
    // the watchdog.
    drop(dog);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait().map(describe_exit));
    });
    let status = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the main process was not killed")
        .expect("wait");
    assert_eq!(status, "killed by signal 9");
    assert!(
        wait_dead(grandchild, Duration::from_secs(5)),
        "background sleep {grandchild} survived"
    );
    let left = wait_group_dead(pid, Duration::from_secs(5));
    assert!(left.is_empty(), "group {pid} still has {left:?}");
}

#[test]
fn watchdog_survives_sigterm_and_dies_with_the_group() {
    let dog = dog();
    // The shell ignores TERM, so only our SIGKILL ends the group.
    let l = launch("trap '' TERM; echo ready; sleep 30", &[]);
    let mut child = spawn(&l, &dog, None).expect("spawn");
    let pid = child.id();
    let mut out = io::BufRead::lines(io::BufReader::new(child.stdout.take().expect("stdout")));
    assert!(matches!(out.next(), Some(Ok(l)) if l == "ready"));
    sys::signal_group(pid, sys::GroupSignal::Term).expect("term");
    sys::signal_group(pid, sys::GroupSignal::Kill).expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(describe_exit(status), "killed by signal 9");
    // Nothing of the group is left alive: its watchdog is gone too.
    let left = wait_group_dead(pid, Duration::from_secs(5));
    assert!(left.is_empty(), "group {pid} still has {left:?}");
}

/// Whether this process may read any process's `/proc/PID/fd` and `exe`
/// (`CAP_SYS_PTRACE` in effect), a non-dumpable one's included.
fn can_ptrace() -> bool {
    const CAP_SYS_PTRACE: u32 = 19;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_PTRACE) != 0)
}

/// Where each fd of process `pid` leads (`/proc/PID/fd`), sorted by fd.
fn fd_targets(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut fds: Vec<(u32, String)> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    fds.into_iter().map(|(_, t)| t).collect()
}

#[test]
fn watchdog_is_an_exec_of_nexushub_holding_only_its_pipe_and_signalfd() {
    let dog = dog();
    let mut child = spawn(&launch("echo ready; exec sleep 30", &[]), &dog, None).expect("spawn");
    let pid = child.id();
    let mut out = io::BufRead::lines(io::BufReader::new(child.stdout.take().expect("stdout")));
    assert!(matches!(out.next(), Some(Ok(l)) if l == "ready"));
    let dogs: Vec<u32> = live_members(pid)
        .into_iter()
        .filter(|&p| p != pid)
        .collect();
    assert_eq!(dogs.len(), 1, "watchdogs in group {pid}: {dogs:?}");
    let watch = dogs[0];
    // Not a fork of this process: the nexushub binary, exec'd with the
    // hidden subcommand and the app's pid, named once it runs.
    let cmdline = std::fs::read(format!("/proc/{watch}/cmdline")).expect("cmdline");
    assert_eq!(cmdline, format!("nexushub\0__watchdog\0{pid}\0").as_bytes());
    let comm = || std::fs::read_to_string(format!("/proc/{watch}/comm")).unwrap_or_default();
    let end = Instant::now() + Duration::from_secs(2);
    while comm().trim() != "nexushub-watch" && Instant::now() < end {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(comm().trim(), "nexushub-watch");
    let exe = std::fs::read_link(format!("/proc/{watch}/exe"));
    if !can_ptrace() {
        // Non-dumpable: hidden from another process of the same user.
        let err = exe.expect_err("the watchdog's exe is readable: it is dumpable");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    } else {
        let bin = std::fs::read_link(format!("/proc/self/fd/{}", dog.program.as_raw_fd()))
            .expect("program");
        assert_eq!(exe.expect("exe"), bin);
        let environ = std::fs::read(format!("/proc/{watch}/environ")).expect("environ");
        assert!(
            environ.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&environ)
        );
        // The pipe as fd 0, the /dev/null that std's start-up puts on a
        // closed stdout and stderr, and its signalfd (which comes a moment
        // after the exec).
        let pipe = std::fs::read_link(format!("/proc/self/fd/{}", dog.read.as_raw_fd()))
            .expect("pipe")
            .to_string_lossy()
            .into_owned();
        let want = [
            pipe.as_str(),
            "/dev/null",
            "/dev/null",
            "anon_inode:[signalfd]",
        ];
        let end = Instant::now() + Duration::from_secs(2);
        while fd_targets(watch) != want && Instant::now() < end {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(fd_targets(watch), want);
    }
    sys::signal_group(pid, sys::GroupSignal::Kill).expect("kill");
    child.wait().expect("wait");
    let left = wait_group_dead(pid, Duration::from_secs(5));
    assert!(left.is_empty(), "group {pid} still has {left:?}");
}

#[test]
fn a_watchdog_that_cannot_exec_fails_the_spawn() {
    // A program that is no executable: the exec fails in the watchdog, and the
    // app must not run unwatched.
    let dog = Watchdog::open(Path::new("/dev/null")).expect("watchdog");
    let err = spawn(&launch("echo ran", &[]), &dog, None).expect_err("spawn");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
}

#[test]
fn a_missing_directory_fails_the_spawn() {
    let dog = dog();
    let dir = Path::new("/nonexistent/nexushub-test");
    let l = Launch {
        dir: Some(dir),
        ..launch("true", &[])
    };
    assert!(spawn(&l, &dog, None).is_err());
}
