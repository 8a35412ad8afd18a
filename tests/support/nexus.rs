//! The binary under test as the tests run it: a private temp directory, a config
//! file written into it, `nexushub run` started on port 0, and `nexushub whoami`.
//!
//! Start-up is waited for on log lines (`listening on 127.0.0.1:PORT`, then
//! `app NAME: healthy at ADDR` for each app whose upstream is up), never on a sleep.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::process::Proc;
use super::tls_client::TlsClient;
use super::wire::Fields;
use super::{fixture, nexushub_bin, START_TIMEOUT};

/// The host name most tests route to: named in the fixture certificate's SANs.
/// (Note: `*.localhost` matches nothing in webpki, so other names come from
/// `*.test.localhost`.)
pub const HELLO: &str = "hello.localhost";

/// The config file's name in a [`Nexus`]'s directory.
const CONFIG_FILE: &str = "nexushub.conf";

/// A directory of its own under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates `$TMPDIR/nexushub-test-PID-N-TAG`.
    pub fn new(tag: &str) -> TestDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("nexushub-test-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {path:?}: {e}"));
        TestDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a file in the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path.join(name);
        fs::write(&p, contents).unwrap_or_else(|e| panic!("cannot write {p:?}: {e}"));
        p
    }

    /// Copies a fixture into the directory under the same name.
    pub fn copy_fixture(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        fs::copy(fixture(name), &p).unwrap_or_else(|e| panic!("cannot copy fixture {name}: {e}"));
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// How an app in a [`Conf`] is reached: a running service, or a command nexushub runs.
#[derive(Debug, Clone)]
enum AppRun {
    Upstream(SocketAddr),
    Command(String),
}

#[derive(Debug, Clone)]
struct AppConf {
    name: String,
    hosts: String,
    run: AppRun,
    /// Further `key = value` lines of the section (`env`, `health`, ...), in order.
    keys: Vec<(String, String)>,
    wait_healthy: bool,
}

/// A config file for `nexushub run`, built up key by key.
#[derive(Debug, Clone)]
pub struct Conf {
    proxy: Vec<(String, String)>,
    apps: Vec<AppConf>,
}

impl Default for Conf {
    fn default() -> Self {
        Conf::new()
    }
}

impl Conf {
    /// `[proxy]` on 127.0.0.1:0 with the fixture certificate, 4 workers and a short
    /// shutdown grace; no apps.
    pub fn new() -> Conf {
        let path = |p: PathBuf| p.display().to_string();
        Conf {
            proxy: vec![
                ("listen".into(), "127.0.0.1:0".into()),
                ("cert".into(), path(fixture("localhost.pem"))),
                ("key".into(), path(fixture("localhost.key"))),
                ("workers".into(), "4".into()),
                ("shutdown_grace".into(), "2".into()),
            ],
            apps: Vec::new(),
        }
    }

    /// Sets a `[proxy]` key (replacing an earlier value).
    pub fn set(mut self, key: &str, value: &str) -> Conf {
        match self.proxy.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value.to_string(),
            None => self.proxy.push((key.to_string(), value.to_string())),
        }
        self
    }

    /// Adds `[app NAME]` with `hosts` and `upstream`; start-up waits until it is healthy.
    pub fn app(mut self, name: &str, hosts: &str, upstream: SocketAddr) -> Conf {
        self.apps.push(AppConf {
            name: name.into(),
            hosts: hosts.into(),
            run: AppRun::Upstream(upstream),
            keys: Vec::new(),
            wait_healthy: true,
        });
        self
    }

    /// Adds an app whose upstream is expected never to become healthy.
    pub fn down_app(mut self, name: &str, hosts: &str, upstream: SocketAddr) -> Conf {
        self.apps.push(AppConf {
            name: name.into(),
            hosts: hosts.into(),
            run: AppRun::Upstream(upstream),
            keys: Vec::new(),
            wait_healthy: false,
        });
        self
    }

    /// Adds `[app NAME]` with `hosts` and `command` (run by nexushub as `/bin/sh -c
    /// COMMAND`, with `$PORT` and `$NEXUSHUB` set); start-up waits until it is healthy.
    pub fn command_app(mut self, name: &str, hosts: &str, command: &str) -> Conf {
        self.apps.push(AppConf {
            name: name.into(),
            hosts: hosts.into(),
            run: AppRun::Command(command.into()),
            keys: Vec::new(),
            wait_healthy: true,
        });
        self
    }

    /// Adds a `key = value` line (`env`, `health`, `start_timeout`, ...) to the app
    /// added last (panics if there is none).
    pub fn app_key(mut self, key: &str, value: &str) -> Conf {
        let app = self
            .apps
            .last_mut()
            .unwrap_or_else(|| panic!("app_key({key:?}) before any app"));
        app.keys.push((key.to_string(), value.to_string()));
        self
    }

    /// Start-up does not wait for the app added last to become healthy (one that is
    /// slow to start, crash-loops or never listens).
    pub fn unwaited(mut self) -> Conf {
        let app = self
            .apps
            .last_mut()
            .unwrap_or_else(|| panic!("unwaited() before any app"));
        app.wait_healthy = false;
        self
    }

    /// The config file's text.
    pub fn render(&self) -> String {
        let mut s = String::from("# written by nexushub's integration tests\n[proxy]\n");
        for (k, v) in &self.proxy {
            s.push_str(&format!("{k} = {v}\n"));
        }
        for app in &self.apps {
            s.push_str(&format!("\n[app {}]\nhosts = {}\n", app.name, app.hosts));
            match &app.run {
                AppRun::Upstream(addr) => s.push_str(&format!("upstream = {addr}\n")),
                AppRun::Command(command) => s.push_str(&format!("command = {command}\n")),
            }
            for (k, v) in &app.keys {
                s.push_str(&format!("{k} = {v}\n"));
            }
        }
        s
    }
}

/// A running `nexushub run`, killed on drop.
#[derive(Debug)]
pub struct Nexus {
    // Declared before `dir` so the process is gone before its directory is removed.
    proc: Proc,
    port: u16,
    dir: TestDir,
}

impl Nexus {
    /// Writes `conf`, starts `nexushub run --config FILE`, and waits until it listens
    /// and every app that should be healthy is.
    pub fn start(conf: &Conf) -> Nexus {
        Nexus::start_with_args(conf, &[])
    }

    /// As [`Nexus::start`], with extra command-line arguments after `--config FILE`.
    pub fn start_with_args(conf: &Conf, args: &[&str]) -> Nexus {
        Nexus::start_command(conf, None, |config| {
            let mut cmd = Command::new(nexushub_bin());
            cmd.arg("run").arg("--config").arg(config).args(args);
            cmd
        })
    }

    /// As [`Nexus::start`], running as user and group `uid` (the test must be
    /// root to pick another user): its directory, config, certificate and key are
    /// made readable to that user.
    pub fn start_as(conf: &Conf, uid: u32) -> Nexus {
        Nexus::start_command(conf, Some(uid), |config| {
            let mut cmd = Command::new(nexushub_bin());
            cmd.arg("run").arg("--config").arg(config);
            cmd
        })
    }

    /// As [`Nexus::start`], under an open-file limit of `nofile` (soft and
    /// hard), set by a shell that then execs nexushub (so the pid is its own).
    pub fn start_with_nofile(conf: &Conf, nofile: u64) -> Nexus {
        Nexus::start_command(conf, None, |config| {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(format!(
                    "ulimit -n {nofile} && exec \"$0\" run --config \"$1\""
                ))
                .arg(nexushub_bin())
                .arg(config);
            cmd
        })
    }

    /// Writes `conf`, starts what `command` makes of the config file's path (as
    /// user `uid` when given), and waits as [`Nexus::start`] does.
    fn start_command(
        conf: &Conf,
        uid: Option<u32>,
        command: impl FnOnce(&Path) -> Command,
    ) -> Nexus {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let dir = TestDir::new("run");
        let mut conf = conf.clone();
        if uid.is_some() {
            let readable = |p: &Path, mode: u32| {
                fs::set_permissions(p, fs::Permissions::from_mode(mode))
                    .unwrap_or_else(|e| panic!("chmod {p:?}: {e}"));
            };
            readable(dir.path(), 0o755);
            for (key, name) in [("cert", "localhost.pem"), ("key", "localhost.key")] {
                let copy = dir.copy_fixture(name);
                readable(&copy, 0o644);
                conf = conf.set(key, &copy.display().to_string());
            }
        }
        let config = dir.write(CONFIG_FILE, &conf.render());
        let mut cmd = command(&config);
        cmd.current_dir(dir.path());
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let proc = Proc::spawn(cmd);
        // Its own line, not an app's output: a `command` app running whoami logs
        // `[INFO] [app] whoami listening on 127.0.0.1:PORT`, sometimes first.
        let line = proc.wait_log("[INFO] listening on 127.0.0.1:", START_TIMEOUT);
        let port =
            parse_port(&line).unwrap_or_else(|| panic!("no port in {line:?}\n{}", proc.dump()));
        let nexus = Nexus { proc, port, dir };
        for app in conf.apps.iter().filter(|a| a.wait_healthy) {
            nexus.wait_log(&format!("app {}: healthy at", app.name), START_TIMEOUT);
        }
        nexus
    }

    /// Starts with one app, `hello`, for [`HELLO`], upstream at `upstream`.
    pub fn hello(upstream: SocketAddr) -> Nexus {
        Nexus::start(&Conf::new().app("hello", HELLO, upstream))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A TLS client connected to it with this SNI name.
    pub fn client(&self, sni: &str) -> TlsClient {
        TlsClient::connect(self.port, sni)
    }

    /// Stops reading its stdout and stderr, as a stuck log reader would (see
    /// [`Proc::stall_output`]).
    pub fn stall_output(&self) {
        self.proc.stall_output();
    }

    /// Reads its output again.
    pub fn resume_output(&self) {
        self.proc.resume_output();
    }

    /// Its temp directory (holding the config file).
    pub fn dir(&self) -> &TestDir {
        &self.dir
    }

    /// Waits for a log line containing `needle` (see [`Proc::wait_log`]).
    pub fn wait_log(&self, needle: &str, within: Duration) -> String {
        self.proc.wait_log(needle, within)
    }

    /// Everything it logged so far, for failure messages.
    pub fn dump(&self) -> String {
        self.proc.dump()
    }

    /// Every line it logged so far, in order.
    pub fn lines(&self) -> Vec<String> {
        self.proc.lines()
    }

    /// How many lines it logged so far: a mark for [`Nexus::wait_log_after`].
    pub fn log_mark(&self) -> usize {
        self.proc.line_count()
    }

    /// Waits for a log line containing `needle` among those logged after `mark`
    /// lines; returns its index and the line (see [`Proc::wait_log_from`]).
    pub fn wait_log_after(&self, mark: usize, needle: &str, within: Duration) -> (usize, String) {
        self.proc.wait_log_from(mark, needle, within)
    }

    /// Overwrites its config file with `conf` (for a SIGHUP to pick up).
    pub fn write_config(&self, conf: &Conf) {
        self.write_config_text(&conf.render());
    }

    /// Overwrites its config file with `text`, valid or not.
    pub fn write_config_text(&self, text: &str) {
        self.dir.write(CONFIG_FILE, text);
    }

    /// Sends a signal by name (`HUP`, `KILL`, ...).
    pub fn signal(&self, name: &str) {
        self.proc.signal(name);
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.proc.signal("TERM");
    }

    /// Sends SIGHUP (reload the config file).
    pub fn sighup(&self) {
        self.proc.signal("HUP");
    }

    /// Waits for it to exit (panics after `within`).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        self.proc.wait_exit(within)
    }
}

/// The port in a `... listening on 127.0.0.1:PORT ...` line.
fn parse_port(line: &str) -> Option<u16> {
    let at = line.find("listening on 127.0.0.1:")? + "listening on 127.0.0.1:".len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A running `nexushub whoami --listen 127.0.0.1:0`, killed on drop.
#[derive(Debug)]
pub struct Whoami {
    proc: Proc,
    addr: SocketAddr,
}

impl Whoami {
    /// Starts it and waits for `whoami listening on ADDR`.
    pub fn start() -> Whoami {
        let mut cmd = Command::new(nexushub_bin());
        cmd.args(["whoami", "--listen", "127.0.0.1:0"]);
        let proc = Proc::spawn(cmd);
        let needle = "whoami listening on ";
        let line = proc.wait_log(needle, START_TIMEOUT);
        let rest = &line[line.find(needle).map_or(0, |i| i + needle.len())..];
        let addr = rest
            .split_whitespace()
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Whoami { proc, addr }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything it logged so far, for failure messages.
    pub fn dump(&self) -> String {
        self.proc.dump()
    }
}

/// A `whoami` answer, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhoamiReport {
    /// The request line as whoami received it.
    pub request_line: String,
    /// The header fields as whoami received them, in order.
    pub headers: Fields,
    /// The `peer:` line's address.
    pub peer: String,
    /// The body length whoami counted.
    pub body_len: u64,
    /// The FNV-1a 64 whoami computed over the body.
    pub body_fnv: u64,
}

impl WhoamiReport {
    /// Parses whoami's text answer; panics if it does not look like one.
    pub fn parse(text: &str) -> WhoamiReport {
        let mut lines = text.lines();
        let request_line = lines.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        let mut peer = None;
        let mut body = None;
        for line in lines {
            if let Some(p) = line.strip_prefix("peer: ") {
                peer = Some(p.trim().to_string());
            } else if let Some(b) = line.strip_prefix("body: ") {
                // "N bytes fnv1a64=HEX16"
                let mut words = b.split_whitespace();
                let len = words.next().and_then(|n| n.parse::<u64>().ok());
                let hash = words
                    .find_map(|w| w.strip_prefix("fnv1a64="))
                    .and_then(|h| u64::from_str_radix(h, 16).ok());
                body = len.zip(hash);
            } else if let Some((name, value)) = line.split_once(": ") {
                headers.push((name.to_string(), value.to_string()));
            }
        }
        let (Some(peer), Some((body_len, body_fnv))) = (peer, body) else {
            panic!("not a whoami answer: {text:?}");
        };
        WhoamiReport {
            request_line,
            headers,
            peer,
            body_len,
            body_fnv,
        }
    }

    /// The first value of a header whoami saw.
    pub fn header(&self, name: &str) -> Option<&str> {
        super::wire::field(&self.headers, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_parsed_from_listening_line() {
        assert_eq!(
            parse_port("2025-01-01T00:00:00Z INFO listening on 127.0.0.1:4431 (4 workers)"),
            Some(4431)
        );
    }

    #[test]
    fn whoami_report_parsed() {
        let r = WhoamiReport::parse(
            "GET /x HTTP/1.1\nHost: a\nX-Forwarded-Proto: https\npeer: 127.0.0.1:5000\nbody: 3 bytes fnv1a64=00000000000000ff\n",
        );
        assert_eq!(r.request_line, "GET /x HTTP/1.1");
        assert_eq!(r.header("x-forwarded-proto"), Some("https"));
        assert_eq!(r.body_len, 3);
        assert_eq!(r.body_fnv, 0xff);
    }
}
