//! The config file: `nexushub.conf` turned into a [`Config`], or into a
//! [`ConfigError`] that names the file and the line.
//!
//! [`parse`] is sans-IO: text and the file's path in (the path is used for
//! messages and to resolve relative paths against the file's own directory),
//! a value out; only [`load`] touches the disk, reading under a size cap. The
//! grammar (docs/config.md): `key = value` lines under one
//! `[proxy]` and any number of `[app NAME]` headers, `#` comments, blank lines.
//! It is a small hand-written line loop rather than a TOML library because the
//! format is tiny and every error has to point at one line of it.
//!
//! A `#` starts a comment at the start of a line or after whitespace, so a value
//! cannot contain ` #` (there is no quoting); `a#b` is kept as written.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host;

/// Largest config file we read, in bytes.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
/// Longest app name, in bytes.
pub const MAX_APP_NAME_BYTES: usize = 64;
/// Longest duration a config key may ask for: a year, in seconds.
pub const MAX_DURATION_SECS: u64 = 86_400 * 365;

/// Default `listen` address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 443);
/// Bounds of the default `workers`, whatever the core count.
pub const DEFAULT_WORKERS_RANGE: (usize, usize) = (2, 64);

/// The default `workers`: one per core (as nginx's `worker_processes auto`),
/// within [`DEFAULT_WORKERS_RANGE`]. No worker waits on a client or on a
/// backend's answer, so more workers than cores only add idle ones for each
/// ready connection to wake (docs/performance.md has the measurements).
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    cores.clamp(DEFAULT_WORKERS_RANGE.0, DEFAULT_WORKERS_RANGE.1)
}
/// Default `max_head_bytes`.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 32 * 1024;
/// Default `max_connections_per_ip`: a tenth of the total, so that one address
/// flooding us cannot take every slot.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1000;
/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Descriptors a client connection holds at most: its socket, and one to its
/// app (in use, or idle in the pool once the exchange is over).
pub const FDS_PER_CONNECTION: u64 = 2;
/// Descriptors an app holds in nexushub: the read ends of its stdout and
/// stderr, its watchdog's pipe, a health check's socket, and a restart's
/// pipes while the old ones close, with room to spare.
pub const FDS_PER_APP: u64 = 8;
/// Descriptors never given to clients: the listener, the epoll set, the log
/// files, the standard streams, and what health checks and app starts need
/// while clients hold every connection slot.
pub const FD_RESERVE: u64 = 64;

/// How many client connections fit under an open-file limit of `nofile`
/// with `apps` apps: what remains after the reserve and the apps, two
/// descriptors per connection.
pub fn connections_fitting(nofile: u64, apps: usize) -> usize {
    let left = nofile.saturating_sub(FD_RESERVE + FDS_PER_APP * apps as u64);
    usize::try_from(left / FDS_PER_CONNECTION).unwrap_or(usize::MAX)
}

/// The open-file limit `config` needs: two per connection, eight per app and
/// the reserve.
pub fn descriptors_needed(config: &Config) -> u64 {
    FDS_PER_CONNECTION * config.proxy.max_connections as u64
        + FDS_PER_APP * config.apps.len() as u64
        + FD_RESERVE
}

/// The warning to give when `max_connections` does not fit under an
/// open-file limit of `nofile`, else `None`.
pub fn nofile_warning(config: &Config, nofile: u64) -> Option<String> {
    let max = config.proxy.max_connections;
    let fits = connections_fitting(nofile, config.apps.len());
    (fits < max).then(|| {
        format!(
            "the open file limit of {nofile} fits {fits} client connections, below max_connections = {max}: \
             new connections beyond {fits} are refused; raise the limit to {} (`ulimit -n`, systemd's LimitNOFILE=) \
             or lower max_connections",
            descriptors_needed(config)
        )
    })
}

/// Default `start_timeout` of an app, in seconds.
pub const DEFAULT_START_TIMEOUT_SECS: u64 = 60;
/// Default `tunnel_idle_timeout`, in seconds: ten minutes, as a WebSocket app
/// that pings (Action Cable every 3 s, Phoenix every 30 s) never comes near.
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT_SECS: u64 = 600;
/// Default `tunnel_drain_timeout`, in seconds.
pub const DEFAULT_TUNNEL_DRAIN_TIMEOUT_SECS: u64 = 300;

/// Keys of `[proxy]`; none repeats.
const PROXY_KEYS: &[&str] = &[
    "listen",
    "cert",
    "key",
    "workers",
    "handshake_timeout",
    "head_timeout",
    "idle_timeout",
    "backend_connect_timeout",
    "backend_timeout",
    "backend_idle_timeout",
    "client_timeout",
    "tunnel_idle_timeout",
    "tunnel_drain_timeout",
    "shutdown_grace",
    "max_head_bytes",
    "max_connections",
    "max_connections_per_ip",
    "min_data_rate",
    "min_data_rate_grace",
    "access_log",
    "log_level",
];
/// Keys of `[app NAME]`; only `env` repeats.
const APP_KEYS: &[&str] = &[
    "hosts",
    "command",
    "upstream",
    "dir",
    "env",
    "port",
    "health",
    "start_timeout",
];

/// A parsed, validated config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it came from, as given.
    pub path: PathBuf,
    /// The `[proxy]` section.
    pub proxy: ProxyConfig,
    /// The `[app NAME]` sections, in file order.
    pub apps: Vec<AppConfig>,
}

/// The `[proxy]` section: the listener, the certificate, limits and deadlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Address to listen on (`listen`).
    pub listen: SocketAddr,
    /// Certificate chain PEM, leaf first (`cert`).
    pub cert: PathBuf,
    /// Private key PEM (`key`).
    pub key: PathBuf,
    /// Worker threads (`workers`).
    pub workers: usize,
    /// The whole TLS handshake, from accept.
    pub handshake_timeout: Duration,
    /// The whole request head, from its first byte.
    pub head_timeout: Duration,
    /// A keep-alive client connection waiting for its next request.
    pub idle_timeout: Duration,
    /// Connecting to a backend.
    pub backend_connect_timeout: Duration,
    /// Waiting for a backend's response head, and between its body reads.
    pub backend_timeout: Duration,
    /// How long an unused pooled backend connection is kept.
    pub backend_idle_timeout: Duration,
    /// Waiting for the client between reads of a request body and between
    /// writes of a response (nexushub's own addition to the usual proxy deadlines).
    pub client_timeout: Duration,
    /// A WebSocket tunnel with no bytes moving either way is closed after this;
    /// `None` (`0` in the file) keeps it open for as long as both ends do.
    pub tunnel_idle_timeout: Option<Duration>,
    /// On reload: how long a tunnel to an app instance being replaced may keep
    /// the old instance running, after which the tunnel is closed and the old
    /// instance stopped.
    pub tunnel_drain_timeout: Duration,
    /// On shutdown: for requests in flight, then for children to exit.
    pub shutdown_grace: Duration,
    /// Largest request head; larger gets 431.
    pub max_head_bytes: usize,
    /// Client connections held at once, in every state.
    pub max_connections: usize,
    /// Client connections held at once from one IP address (a docs/config.md addition).
    pub max_connections_per_ip: usize,
    /// Bytes per second a client must move, on average, while nexushub waits on
    /// it for a request body or a response; 0 turns the check off (a docs/config.md addition).
    pub min_data_rate: u64,
    /// Waiting allowed on a client before `min_data_rate` applies.
    pub min_data_rate_grace: Duration,
    /// Where access-log lines go.
    pub access_log: AccessLog,
    /// Log verbosity (`log_level`).
    pub log_level: log::LevelFilter,
}

impl ProxyConfig {
    /// Every default, with empty `cert` and `key` (both required, so filled in by the file).
    fn with_defaults() -> ProxyConfig {
        ProxyConfig {
            listen: DEFAULT_LISTEN,
            cert: PathBuf::new(),
            key: PathBuf::new(),
            workers: default_workers(),
            handshake_timeout: Duration::from_secs(10),
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            backend_connect_timeout: Duration::from_secs(5),
            backend_timeout: Duration::from_secs(60),
            backend_idle_timeout: Duration::from_secs(20),
            client_timeout: Duration::from_secs(60),
            tunnel_idle_timeout: Some(Duration::from_secs(DEFAULT_TUNNEL_IDLE_TIMEOUT_SECS)),
            tunnel_drain_timeout: Duration::from_secs(DEFAULT_TUNNEL_DRAIN_TIMEOUT_SECS),
            shutdown_grace: Duration::from_secs(10),
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            min_data_rate: 1024,
            min_data_rate_grace: Duration::from_secs(10),
            access_log: AccessLog::Stderr,
            log_level: log::LevelFilter::Info,
        }
    }
}

/// Where access-log lines go (`access_log = stderr | off | PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    /// Into the main log on stderr.
    Stderr,
    /// Nowhere.
    Off,
    /// Appended to this file.
    File(PathBuf),
}

/// One `[app NAME]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// The NAME of its header.
    pub name: String,
    /// The 1-based line of its header, for later messages.
    pub line: usize,
    /// Normalised host names it serves (see [`host::normalize`]), at least one.
    pub hosts: Vec<String>,
    /// What serves it: a command we run, or an address we forward to.
    pub run: AppRun,
    /// Path to GET for health checks; `None` means a TCP connect.
    pub health: Option<String>,
    /// How long a new instance has to become healthy.
    pub start_timeout: Duration,
}

/// How an app is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppRun {
    /// Run `command` with `/bin/sh -c`, with `PORT` set.
    Command {
        /// The shell command line.
        command: String,
        /// Working directory; `None` inherits ours.
        dir: Option<PathBuf>,
        /// Extra environment, in file order.
        env: Vec<(String, String)>,
        /// Fixed port; `None` means a free one is chosen.
        port: Option<u16>,
    },
    /// A service run elsewhere, at this address.
    Upstream {
        /// Where to connect.
        addr: SocketAddr,
    },
}

/// Why a config file was refused: the file, the 1-based line when there is one, the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// The line at fault; `None` for the file as a whole.
    pub line: Option<usize>,
    /// Terse lowercase reason.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The app serving `host` (a `Host` value, SNI name or bare name), if any.
    pub fn app_for_host(&self, host: &str) -> Option<&AppConfig> {
        let key = host::normalize(host).ok()?;
        self.apps.iter().find(|app| app.hosts.contains(&key))
    }
}

/// Reads `path` (at most [`MAX_CONFIG_BYTES`]) and parses it.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    use std::io::Read;
    let whole = |message: String| ConfigError {
        file: path.to_path_buf(),
        line: None,
        message,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        // One byte over the cap is enough to know it is too large.
        .and_then(|f| f.take(MAX_CONFIG_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| whole(format!("cannot read: {e}")))?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(whole(too_large()));
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let before = &bytes[..e.valid_up_to()];
        ConfigError {
            file: path.to_path_buf(),
            line: Some(before.iter().filter(|&&b| b == b'\n').count() + 1),
            message: "not valid utf-8".to_string(),
        }
    })?;
    parse(text, path)
}

/// Parses config `text`; `path` names the file in errors and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    parse_lines(text, path).map_err(|fail| ConfigError {
        file: path.to_path_buf(),
        line: fail.line,
        message: fail.message,
    })
}

/// The message for a file over [`MAX_CONFIG_BYTES`], shared by `parse` and `load`.
fn too_large() -> String {
    format!("config file larger than {MAX_CONFIG_BYTES} bytes")
}

/// An error before the file name is attached.
struct Fail {
    line: Option<usize>,
    message: String,
}

/// An error on one line.
fn fail<T>(line: usize, message: String) -> Result<T, Fail> {
    Err(Fail {
        line: Some(line),
        message,
    })
}

/// The keys a section has seen, with their lines: catches repeats, answers "where".
#[derive(Default)]
struct Seen(Vec<(&'static str, usize)>);

impl Seen {
    fn line_of(&self, key: &str) -> Option<usize> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|&(_, line)| line)
    }
}

/// An `[app NAME]` section being read.
struct AppDraft {
    name: String,
    line: usize,
    seen: Seen,
    hosts: Vec<String>,
    command: Option<String>,
    upstream: Option<SocketAddr>,
    dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    port: Option<u16>,
    health: Option<String>,
    start_timeout: Duration,
}

/// The section the next `key = value` line belongs to.
enum Current {
    Nothing,
    Proxy,
    // Boxed: the draft is large and the other variants are empty.
    App(Box<AppDraft>),
}

/// The line loop: each line is checked and applied as it comes, so the first bad line is the one reported.
fn parse_lines(text: &str, path: &Path) -> Result<Config, Fail> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(Fail {
            line: None,
            message: too_large(),
        });
    }
    let base = path.parent().unwrap_or(Path::new(""));
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // (header line, keys seen, values) once `[proxy]` has been read.
    let mut proxy: Option<(usize, Seen, ProxyConfig)> = None;
    let mut apps: Vec<AppConfig> = Vec::new();
    let mut current = Current::Nothing;

    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.chars().any(|c| c.is_control() && c != '\t') {
            return fail(line, "control character in line".to_string());
        }
        let content = strip_comment(raw);
        if content.is_empty() {
            continue;
        }
        if content.starts_with('[') {
            close_section(&mut current, &proxy, &mut apps)?;
            current = open_section(content, line, &proxy, &apps)?;
            if matches!(current, Current::Proxy) {
                proxy = Some((line, Seen::default(), ProxyConfig::with_defaults()));
            }
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return fail(
                line,
                "expected \"key = value\" or \"[section]\"".to_string(),
            );
        };
        let (key, value) = (key.trim_end(), value.trim_start());
        if key.is_empty() {
            return fail(line, "missing key before \"=\"".to_string());
        }
        match (&mut current, &mut proxy) {
            (Current::Proxy, Some((_, seen, cfg))) => {
                let key = known_key(PROXY_KEYS, key, "[proxy]", line)?;
                note_key(seen, key, "[proxy]", line, value)?;
                proxy_value(cfg, key, value, base)
                    .map_err(|why| bad_value(line, key, value, &why))?;
            }
            (Current::App(app), _) => {
                let section = format!("[app {}]", app.name);
                let key = known_key(APP_KEYS, key, &section, line)?;
                if key != "env" {
                    note_key(&mut app.seen, key, &section, line, value)?;
                } else if value.is_empty() {
                    return fail(line, "missing value for env".to_string());
                }
                app_value(app, key, value, line, base, &apps)?;
            }
            _ => return fail(line, format!("key {key:?} outside any section")),
        }
    }
    close_section(&mut current, &proxy, &mut apps)?;
    let Some((_, _, proxy)) = proxy else {
        return Err(Fail {
            line: None,
            message: "missing [proxy] section".to_string(),
        });
    };
    Ok(Config {
        path: path.to_path_buf(),
        proxy,
        apps,
    })
}

/// The line without its comment, trimmed: a `#` opens a comment at the start or after whitespace.
fn strip_comment(raw: &str) -> &str {
    let bytes = raw.as_bytes();
    let end = (0..bytes.len())
        .find(|&i| bytes[i] == b'#' && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t')))
        .unwrap_or(bytes.len());
    // `#` is ASCII, so `end` is a char boundary.
    raw[..end].trim()
}

/// Reads a `[...]` header and says which section starts.
fn open_section(
    content: &str,
    line: usize,
    proxy: &Option<(usize, Seen, ProxyConfig)>,
    apps: &[AppConfig],
) -> Result<Current, Fail> {
    let Some(inner) = content.strip_prefix('[').and_then(|c| c.strip_suffix(']')) else {
        return fail(
            line,
            format!("bad section header {content:?} (expected [proxy] or [app NAME])"),
        );
    };
    let inner = inner.trim();
    let (word, rest) = inner
        .split_once([' ', '\t'])
        .map_or((inner, ""), |(w, r)| (w, r.trim()));
    match (word, rest) {
        ("proxy", "") => match proxy {
            Some((first, _, _)) => fail(
                line,
                format!("duplicate [proxy] section (first on line {first})"),
            ),
            None => Ok(Current::Proxy),
        },
        ("app", "") => fail(line, "missing app name in [app NAME]".to_string()),
        ("app", name) => {
            if !valid_app_name(name) {
                return fail(
                    line,
                    format!("bad app name {name:?} (expected 1-{MAX_APP_NAME_BYTES} of A-Z a-z 0-9 _ . -)"),
                );
            }
            if let Some(first) = apps.iter().find(|a| a.name == name) {
                return fail(
                    line,
                    format!("duplicate [app {name}] (first on line {})", first.line),
                );
            }
            Ok(Current::App(Box::new(AppDraft {
                name: name.to_string(),
                line,
                seen: Seen::default(),
                hosts: Vec::new(),
                command: None,
                upstream: None,
                dir: None,
                env: Vec::new(),
                port: None,
                health: None,
                start_timeout: Duration::from_secs(DEFAULT_START_TIMEOUT_SECS),
            })))
        }
        _ => fail(line, format!("unknown section [{inner}]")),
    }
}

/// 1-64 bytes of `[A-Za-z0-9_.-]`: safe in log prefixes and file names.
fn valid_app_name(name: &str) -> bool {
    (1..=MAX_APP_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Checks the section that ends here for what only its end can tell: required keys, conflicts.
fn close_section(
    current: &mut Current,
    proxy: &Option<(usize, Seen, ProxyConfig)>,
    apps: &mut Vec<AppConfig>,
) -> Result<(), Fail> {
    match std::mem::replace(current, Current::Nothing) {
        Current::Nothing => Ok(()),
        Current::Proxy => {
            if let Some((line, seen, _)) = proxy {
                for key in ["cert", "key"] {
                    if seen.line_of(key).is_none() {
                        return fail(*line, format!("missing required key {key:?} in [proxy]"));
                    }
                }
            }
            Ok(())
        }
        Current::App(app) => {
            apps.push(finish_app(*app)?);
            Ok(())
        }
    }
}

/// Turns a finished `[app NAME]` section into an [`AppConfig`], or says what it lacks.
fn finish_app(app: AppDraft) -> Result<AppConfig, Fail> {
    let section = format!("[app {}]", app.name);
    if app.hosts.is_empty() {
        return fail(
            app.line,
            format!("missing required key \"hosts\" in {section}"),
        );
    }
    let run = match (app.command, app.upstream) {
        (Some(command), None) => AppRun::Command {
            command,
            dir: app.dir,
            env: app.env,
            port: app.port,
        },
        (None, Some(addr)) => {
            // The first of the command-only keys, by line.
            let stray = ["dir", "env", "port"]
                .into_iter()
                .filter_map(|k| app.seen.line_of(k).map(|line| (line, k)))
                .min();
            if let Some((line, key)) = stray {
                return fail(
                    line,
                    format!("{key:?} needs \"command\", not \"upstream\", in {section}"),
                );
            }
            AppRun::Upstream { addr }
        }
        (None, None) => {
            return fail(
                app.line,
                format!("missing \"command\" or \"upstream\" in {section}"),
            );
        }
        (Some(_), Some(_)) => {
            let later = app
                .seen
                .line_of("command")
                .max(app.seen.line_of("upstream"));
            return fail(
                later.unwrap_or(app.line),
                format!("both \"command\" and \"upstream\" in {section} (choose one)"),
            );
        }
    };
    Ok(AppConfig {
        name: app.name,
        line: app.line,
        hosts: app.hosts,
        run,
        health: app.health,
        start_timeout: app.start_timeout,
    })
}

/// The key as its `'static` name, or an error if the section has no such key.
fn known_key(
    keys: &[&'static str],
    key: &str,
    section: &str,
    line: usize,
) -> Result<&'static str, Fail> {
    match keys.iter().find(|k| **k == key) {
        Some(k) => Ok(k),
        None => fail(line, format!("unknown key {key:?} in {section}")),
    }
}

/// Records a non-repeatable key, refusing a repeat or an empty value.
fn note_key(
    seen: &mut Seen,
    key: &'static str,
    section: &str,
    line: usize,
    value: &str,
) -> Result<(), Fail> {
    if let Some(first) = seen.line_of(key) {
        return fail(
            line,
            format!("duplicate key {key:?} in {section} (first on line {first})"),
        );
    }
    if value.is_empty() {
        return fail(line, format!("missing value for {key}"));
    }
    seen.0.push((key, line));
    Ok(())
}

/// The one shape of a value error: `bad value for KEY: "VALUE" (WHY)`.
fn bad_value(line: usize, key: &str, value: &str, why: &str) -> Fail {
    Fail {
        line: Some(line),
        message: format!("bad value for {key}: {value:?} ({why})"),
    }
}

/// Applies one `[proxy]` key; the error is the "expected ..." part of the message.
fn proxy_value(cfg: &mut ProxyConfig, key: &str, value: &str, base: &Path) -> Result<(), String> {
    let secs = || seconds(value);
    match key {
        "listen" => {
            cfg.listen = value
                .parse()
                .map_err(|_| "expected an address like 0.0.0.0:443 or [::]:443".to_string())?;
        }
        "cert" => cfg.cert = base.join(value),
        "key" => cfg.key = base.join(value),
        "workers" => cfg.workers = whole(value, 1, 4096)?,
        "handshake_timeout" => cfg.handshake_timeout = secs()?,
        "head_timeout" => cfg.head_timeout = secs()?,
        "idle_timeout" => cfg.idle_timeout = secs()?,
        "backend_connect_timeout" => cfg.backend_connect_timeout = secs()?,
        "backend_timeout" => cfg.backend_timeout = secs()?,
        "backend_idle_timeout" => cfg.backend_idle_timeout = secs()?,
        "client_timeout" => cfg.client_timeout = secs()?,
        "tunnel_idle_timeout" => cfg.tunnel_idle_timeout = seconds_or_none(value)?,
        "tunnel_drain_timeout" => cfg.tunnel_drain_timeout = secs()?,
        "shutdown_grace" => cfg.shutdown_grace = secs()?,
        "max_head_bytes" => cfg.max_head_bytes = whole(value, 1024, 1 << 20)?,
        "max_connections" => cfg.max_connections = whole(value, 1, 1_000_000)?,
        "max_connections_per_ip" => cfg.max_connections_per_ip = whole(value, 1, 1_000_000)?,
        "min_data_rate" => cfg.min_data_rate = whole(value, 0, 1 << 40)?,
        "min_data_rate_grace" => cfg.min_data_rate_grace = secs()?,
        "access_log" => {
            cfg.access_log = match value {
                "stderr" => AccessLog::Stderr,
                "off" => AccessLog::Off,
                file => AccessLog::File(base.join(file)),
            }
        }
        "log_level" => {
            use log::LevelFilter as L;
            cfg.log_level = match value {
                "off" => L::Off,
                "error" => L::Error,
                "warn" => L::Warn,
                "info" => L::Info,
                "debug" => L::Debug,
                "trace" => L::Trace,
                _ => return Err("expected off, error, warn, info, debug or trace".to_string()),
            }
        }
        // `known_key` let through only the keys above.
        _ => return Err("unhandled key".to_string()),
    }
    Ok(())
}

/// Applies one `[app NAME]` key; `apps` are the sections before, for host clashes.
fn app_value(
    app: &mut AppDraft,
    key: &str,
    value: &str,
    line: usize,
    base: &Path,
    apps: &[AppConfig],
) -> Result<(), Fail> {
    let bad = |why: &str| bad_value(line, key, value, why);
    match key {
        "hosts" => {
            for entry in value.split(',').map(str::trim) {
                let name = config_host(entry).map_err(|why| {
                    let shown = if entry.is_empty() { value } else { entry };
                    bad_value(line, key, shown, &why)
                })?;
                if app.hosts.contains(&name) {
                    return Err(bad_value(line, key, entry, "listed twice"));
                }
                if let Some(other) = apps.iter().find(|a| a.hosts.contains(&name)) {
                    return fail(
                        line,
                        format!(
                            "host {name:?} is already claimed by [app {}] on line {}",
                            other.name, other.line
                        ),
                    );
                }
                app.hosts.push(name);
            }
        }
        "command" => app.command = Some(value.to_string()),
        "upstream" => app.upstream = Some(upstream(value).map_err(|why| bad(&why))?),
        "dir" => app.dir = Some(base.join(value)),
        "env" => {
            let Some((name, val)) = value.split_once('=').filter(|(n, _)| valid_env_name(n)) else {
                return Err(bad(
                    "expected KEY=VALUE, KEY of A-Z a-z 0-9 _ not starting with a digit",
                ));
            };
            if name == "PORT" {
                return Err(bad("PORT is set by nexushub"));
            }
            if app.env.iter().any(|(n, _)| n == name) {
                return fail(
                    line,
                    format!("env {name:?} set twice in [app {}]", app.name),
                );
            }
            // Repeatable, so never refused as a repeat; recorded for the upstream check.
            app.seen.0.push(("env", line));
            app.env.push((name.to_string(), val.to_string()));
        }
        "port" => app.port = Some(whole(value, 1, 65535).map_err(|why| bad(&why))?),
        "health" => {
            if !value.starts_with('/') || !value.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(
                    "expected a path starting with \"/\", printable ascii, no spaces",
                ));
            }
            app.health = Some(value.to_string());
        }
        "start_timeout" => app.start_timeout = seconds(value).map_err(|why| bad(&why))?,
        // `known_key` let through only the keys above.
        _ => return Err(bad("unhandled key")),
    }
    Ok(())
}

/// One entry of `hosts =`: an exact name, no port, no wildcard, normalised.
fn config_host(entry: &str) -> Result<String, String> {
    if entry.is_empty() {
        return Err("empty host name in the list".to_string());
    }
    if entry.contains('*') {
        return Err("wildcards are not supported".to_string());
    }
    let auth = host::split(entry).map_err(|e| e.to_string())?;
    // Anything after the name, even a bare ":", is a port part.
    if auth.name.len() != entry.len() {
        return Err("a port is not allowed in a host name".to_string());
    }
    host::normalize(entry).map_err(|e| e.to_string())
}

/// A portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `IP:PORT` or `localhost:PORT` (taken as 127.0.0.1, so no name lookup), port not 0.
fn upstream(value: &str) -> Result<SocketAddr, String> {
    const EXPECTED: &str = "expected 127.0.0.1:PORT, [::1]:PORT or localhost:PORT";
    let addr = match value.strip_prefix("localhost:") {
        Some(port) => SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            whole(port, 1, 65535).map_err(|_| EXPECTED.to_string())?,
        ),
        None => value.parse().map_err(|_| EXPECTED.to_string())?,
    };
    if addr.port() == 0 {
        return Err(EXPECTED.to_string());
    }
    Ok(addr)
}

/// A whole number in `lo..=hi`, digits only (no sign, no `_`).
fn whole<T: TryFrom<u64>>(value: &str, lo: u64, hi: u64) -> Result<T, String> {
    let expected = || format!("expected a whole number {lo}..={hi}");
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    let n: u64 = value.parse().map_err(|_| expected())?;
    if !(lo..=hi).contains(&n) {
        return Err(expected());
    }
    T::try_from(n).map_err(|_| expected())
}

/// Seconds as `DIGITS[.DIGITS]`, exact to the nanosecond, more than 0 and at most a year.
fn seconds(value: &str) -> Result<Duration, String> {
    let expected = || format!("expected seconds, more than 0 and at most {MAX_DURATION_SECS}");
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (int, frac) = match value.split_once('.') {
        Some((int, frac)) if digits(frac) => (int, frac),
        Some(_) => return Err(expected()),
        None => (value, "0"),
    };
    if !digits(int) {
        return Err(expected());
    }
    let secs: u64 = int.parse().map_err(|_| expected())?;
    // Digits past the ninth are below a nanosecond: dropped.
    let nanos_text = format!("{:0<9}", &frac[..frac.len().min(9)]);
    let nanos: u32 = nanos_text.parse().map_err(|_| expected())?;
    let duration = Duration::new(secs, nanos);
    if duration.is_zero() || duration > Duration::from_secs(MAX_DURATION_SECS) {
        return Err(expected());
    }
    Ok(duration)
}

/// [`seconds`], or exactly zero (`0`, `0.0`, ...) for none. A value that only
/// rounds to zero (`0.0000000001`) is refused, as by [`seconds`]: it is a typo
/// for some duration, not a request for none.
fn seconds_or_none(value: &str) -> Result<Option<Duration>, String> {
    let zeros = |s: &str| !s.is_empty() && s.bytes().all(|b| b == b'0');
    let exactly_zero = match value.split_once('.') {
        Some((int, frac)) => zeros(int) && zeros(frac),
        None => zeros(value),
    };
    if exactly_zero {
        return Ok(None);
    }
    seconds(value)
        .map(Some)
        .map_err(|_| format!("expected seconds, at most {MAX_DURATION_SECS}, or 0 for none"))
}

#[cfg(test)]
mod tests;
