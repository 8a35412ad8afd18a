//! The config file: `nexushub.conf` turned into a [`Config`], or into a
//! [`ConfigError`] that names the file and the line.
//!
//! [`parse`] is sans-IO: text and the file's path in (the path is used for
//! messages and to resolve relative paths against the file's own directory),
//! a value out; only [`load`] touches the disk, reading under a size cap. The
//! grammar is the SPEC's ("Config file"): `key = value` lines under one
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
/// ready connection to wake (measured with benches/compare: 2, 3 and 4 workers
/// within noise of each other on 2 cores, 2 the best at 16 connections).
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
    /// writes of a response (a docs/config.md addition to the SPEC's deadlines).
    pub client_timeout: Duration,
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

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/nexushub/test.conf";

    /// A minimal valid `[proxy]`, lines 1-3, so the line under test is 4 or later.
    macro_rules! proxy {
        () => {
            "[proxy]\ncert = c.pem\nkey = k.pem\n"
        };
    }

    fn ok(text: &str) -> Config {
        match parse(text, Path::new(FILE)) {
            Ok(config) => config,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Parses and runs the checks on the result.
    macro_rules! good {
        ($name:ident, $text:expr, |$c:ident| $check:expr) => {
            #[test]
            fn $name() {
                let $c = ok($text);
                $check;
            }
        };
    }

    /// Parses and expects this line (`Some(n)` or `None`) and this exact message.
    macro_rules! bad {
        ($name:ident, $text:expr, $line:expr, $msg:expr) => {
            #[test]
            fn $name() {
                match parse($text, Path::new(FILE)) {
                    Ok(c) => panic!("parsed: {c:?}"),
                    Err(e) => assert_eq!((e.line, e.message.as_str()), ($line, $msg), "{e}"),
                }
            }
        };
    }

    // Defaults, one per key.
    good!(default_listen, proxy!(), |c| assert_eq!(
        c.proxy.listen,
        addr("0.0.0.0:443")
    ));
    good!(default_workers_one_per_core, proxy!(), |c| assert_eq!(
        c.proxy.workers,
        default_workers()
    ));
    good!(default_handshake_timeout, proxy!(), |c| assert_eq!(
        c.proxy.handshake_timeout,
        secs(10.0)
    ));
    good!(default_head_timeout, proxy!(), |c| assert_eq!(
        c.proxy.head_timeout,
        secs(10.0)
    ));
    good!(default_idle_timeout, proxy!(), |c| assert_eq!(
        c.proxy.idle_timeout,
        secs(60.0)
    ));
    good!(default_backend_connect_timeout, proxy!(), |c| assert_eq!(
        c.proxy.backend_connect_timeout,
        secs(5.0)
    ));
    good!(default_backend_timeout, proxy!(), |c| assert_eq!(
        c.proxy.backend_timeout,
        secs(60.0)
    ));
    good!(default_backend_idle_timeout, proxy!(), |c| assert_eq!(
        c.proxy.backend_idle_timeout,
        secs(20.0)
    ));
    good!(default_client_timeout, proxy!(), |c| assert_eq!(
        c.proxy.client_timeout,
        secs(60.0)
    ));
    good!(default_shutdown_grace, proxy!(), |c| assert_eq!(
        c.proxy.shutdown_grace,
        secs(10.0)
    ));
    good!(default_max_head_bytes, proxy!(), |c| assert_eq!(
        c.proxy.max_head_bytes,
        32768
    ));
    good!(default_min_data_rate, proxy!(), |c| assert_eq!(
        (c.proxy.min_data_rate, c.proxy.min_data_rate_grace),
        (1024, secs(10.0))
    ));
    good!(
        min_data_rate_off,
        concat!(proxy!(), "min_data_rate = 0\n"),
        |c| assert_eq!(c.proxy.min_data_rate, 0)
    );
    good!(default_max_connections_per_ip, proxy!(), |c| assert_eq!(
        c.proxy.max_connections_per_ip,
        1000
    ));
    good!(default_max_connections, proxy!(), |c| assert_eq!(
        c.proxy.max_connections,
        10_000
    ));
    good!(default_access_log, proxy!(), |c| assert_eq!(
        c.proxy.access_log,
        AccessLog::Stderr
    ));
    good!(default_log_level, proxy!(), |c| assert_eq!(
        c.proxy.log_level,
        log::LevelFilter::Info
    ));
    good!(default_no_apps, proxy!(), |c| assert!(c.apps.is_empty()));
    good!(default_path_kept, proxy!(), |c| assert_eq!(
        c.path,
        Path::new(FILE)
    ));
    good!(
        default_app_start_timeout,
        concat!(proxy!(), "[app a]\nhosts = a.test\ncommand = x\n"),
        |c| { assert_eq!(c.apps[0].start_timeout, secs(60.0)) }
    );
    good!(
        default_app_health,
        concat!(proxy!(), "[app a]\nhosts = a.test\ncommand = x\n"),
        |c| { assert_eq!(c.apps[0].health, None) }
    );
    good!(
        default_app_command_options,
        concat!(proxy!(), "[app a]\nhosts = a.test\ncommand = x\n"),
        |c| {
            assert_eq!(
                c.apps[0].run,
                AppRun::Command {
                    command: "x".into(),
                    dir: None,
                    env: vec![],
                    port: None
                }
            )
        }
    );

    // Every [proxy] key.
    good!(
        listen_v4,
        concat!(proxy!(), "listen = 127.0.0.1:8443\n"),
        |c| assert_eq!(c.proxy.listen, addr("127.0.0.1:8443"))
    );
    good!(
        listen_v6,
        concat!(proxy!(), "listen = [::]:443\n"),
        |c| assert_eq!(c.proxy.listen, addr("[::]:443"))
    );
    good!(
        listen_port_zero,
        concat!(proxy!(), "listen = 127.0.0.1:0\n"),
        |c| assert_eq!(c.proxy.listen, addr("127.0.0.1:0"))
    );
    good!(cert_relative, proxy!(), |c| assert_eq!(
        c.proxy.cert,
        Path::new("/etc/nexushub/c.pem")
    ));
    good!(key_relative, proxy!(), |c| assert_eq!(
        c.proxy.key,
        Path::new("/etc/nexushub/k.pem")
    ));
    good!(
        cert_absolute,
        "[proxy]\ncert = /tls/c.pem\nkey = ../k.pem\n",
        |c| { assert_eq!(c.proxy.cert, Path::new("/tls/c.pem")) }
    );
    good!(
        key_parent_relative,
        "[proxy]\ncert = /tls/c.pem\nkey = ../k.pem\n",
        |c| { assert_eq!(c.proxy.key, Path::new("/etc/nexushub/../k.pem")) }
    );
    good!(
        workers,
        concat!(proxy!(), "workers = 4096\n"),
        |c| assert_eq!(c.proxy.workers, 4096)
    );
    good!(
        handshake_timeout_decimal,
        concat!(proxy!(), "handshake_timeout = 2.5\n"),
        |c| { assert_eq!(c.proxy.handshake_timeout, Duration::from_millis(2500)) }
    );
    good!(
        head_timeout,
        concat!(proxy!(), "head_timeout = 3\n"),
        |c| assert_eq!(c.proxy.head_timeout, secs(3.0))
    );
    good!(
        idle_timeout,
        concat!(proxy!(), "idle_timeout = 0.001\n"),
        |c| assert_eq!(c.proxy.idle_timeout, Duration::from_millis(1))
    );
    good!(
        backend_connect_timeout,
        concat!(proxy!(), "backend_connect_timeout = 1\n"),
        |c| { assert_eq!(c.proxy.backend_connect_timeout, secs(1.0)) }
    );
    good!(
        backend_timeout,
        concat!(proxy!(), "backend_timeout = 120\n"),
        |c| { assert_eq!(c.proxy.backend_timeout, secs(120.0)) }
    );
    good!(
        backend_idle_timeout,
        concat!(proxy!(), "backend_idle_timeout = 7\n"),
        |c| { assert_eq!(c.proxy.backend_idle_timeout, secs(7.0)) }
    );
    good!(
        shutdown_grace_max,
        concat!(proxy!(), "shutdown_grace = 31536000\n"),
        |c| {
            assert_eq!(
                c.proxy.shutdown_grace,
                Duration::from_secs(MAX_DURATION_SECS)
            )
        }
    );
    good!(
        duration_nanosecond_digits,
        concat!(proxy!(), "head_timeout = 0.0000000019\n"),
        |c| { assert_eq!(c.proxy.head_timeout, Duration::from_nanos(1)) }
    );
    good!(
        max_head_bytes,
        concat!(proxy!(), "max_head_bytes = 1024\n"),
        |c| assert_eq!(c.proxy.max_head_bytes, 1024)
    );
    good!(
        max_connections,
        concat!(proxy!(), "max_connections = 1000000\n"),
        |c| { assert_eq!(c.proxy.max_connections, 1_000_000) }
    );
    good!(
        access_log_off,
        concat!(proxy!(), "access_log = off\n"),
        |c| assert_eq!(c.proxy.access_log, AccessLog::Off)
    );
    good!(
        access_log_stderr,
        concat!(proxy!(), "access_log = stderr\n"),
        |c| assert_eq!(c.proxy.access_log, AccessLog::Stderr)
    );
    good!(
        access_log_file_relative,
        concat!(proxy!(), "access_log = logs/access.log\n"),
        |c| {
            assert_eq!(
                c.proxy.access_log,
                AccessLog::File("/etc/nexushub/logs/access.log".into())
            )
        }
    );
    good!(
        access_log_file_absolute,
        concat!(proxy!(), "access_log = /var/log/a.log\n"),
        |c| { assert_eq!(c.proxy.access_log, AccessLog::File("/var/log/a.log".into())) }
    );
    good!(
        log_level_off,
        concat!(proxy!(), "log_level = off\n"),
        |c| assert_eq!(c.proxy.log_level, log::LevelFilter::Off)
    );
    good!(
        log_level_trace,
        concat!(proxy!(), "log_level = trace\n"),
        |c| assert_eq!(c.proxy.log_level, log::LevelFilter::Trace)
    );
    good!(
        log_level_warn,
        concat!(proxy!(), "log_level = warn\n"),
        |c| assert_eq!(c.proxy.log_level, log::LevelFilter::Warn)
    );

    // Every [app NAME] key.
    good!(
        app_name_and_line,
        concat!(
            proxy!(),
            "\n[app my-app_1.x]\nhosts = a.test\ncommand = x\n"
        ),
        |c| { assert_eq!((c.apps[0].name.as_str(), c.apps[0].line), ("my-app_1.x", 5)) }
    );
    good!(
        app_hosts_normalised,
        concat!(
            proxy!(),
            "[app a]\nhosts = A.Test, www.a.test. ,[::1]\ncommand = x\n"
        ),
        |c| { assert_eq!(c.apps[0].hosts, ["a.test", "www.a.test", "[::1]"]) }
    );
    good!(
        app_command,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\ncommand = ./srv --port $PORT a#b\n"
        ),
        |c| {
            assert!(
                matches!(&c.apps[0].run, AppRun::Command { command, .. } if command == "./srv --port $PORT a#b")
            )
        }
    );
    good!(
        app_dir_relative,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\ncommand = x\ndir = srv/a\n"
        ),
        |c| {
            assert!(
                matches!(&c.apps[0].run, AppRun::Command { dir: Some(d), .. } if d == Path::new("/etc/nexushub/srv/a"))
            )
        }
    );
    good!(
        app_dir_absolute,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\ncommand = x\ndir = /srv/a\n"
        ),
        |c| {
            assert!(
                matches!(&c.apps[0].run, AppRun::Command { dir: Some(d), .. } if d == Path::new("/srv/a"))
            )
        }
    );
    good!(
        app_env_repeated,
        concat!(proxy!(), "[app a]\nhosts = a.test\ncommand = x\nenv = RUST_LOG=info\nenv = _X=a=b\nenv = EMPTY=\n"),
        |c| {
            let want = [("RUST_LOG", "info"), ("_X", "a=b"), ("EMPTY", "")].map(|(k, v)| (k.to_string(), v.to_string()));
            assert!(matches!(&c.apps[0].run, AppRun::Command { env, .. } if env[..] == want[..]))
        }
    );
    good!(
        app_port,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\ncommand = x\nport = 65535\n"
        ),
        |c| {
            assert!(matches!(
                c.apps[0].run,
                AppRun::Command {
                    port: Some(65535),
                    ..
                }
            ))
        }
    );
    good!(
        app_health,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\ncommand = x\nhealth = /healthz?full=1\n"
        ),
        |c| { assert_eq!(c.apps[0].health.as_deref(), Some("/healthz?full=1")) }
    );
    good!(
        app_start_timeout,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\ncommand = x\nstart_timeout = 0.5\n"
        ),
        |c| { assert_eq!(c.apps[0].start_timeout, Duration::from_millis(500)) }
    );
    good!(
        app_upstream_v4,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\nupstream = 127.0.0.1:8080\n"
        ),
        |c| {
            assert_eq!(
                c.apps[0].run,
                AppRun::Upstream {
                    addr: addr("127.0.0.1:8080")
                }
            )
        }
    );
    good!(
        app_upstream_v6,
        concat!(proxy!(), "[app a]\nhosts = a.test\nupstream = [::1]:8080\n"),
        |c| {
            assert_eq!(
                c.apps[0].run,
                AppRun::Upstream {
                    addr: addr("[::1]:8080")
                }
            )
        }
    );
    good!(
        app_upstream_localhost,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\nupstream = localhost:9000\n"
        ),
        |c| {
            assert_eq!(
                c.apps[0].run,
                AppRun::Upstream {
                    addr: addr("127.0.0.1:9000")
                }
            )
        }
    );
    good!(
        apps_in_file_order,
        concat!(
            proxy!(),
            "[app b]\nhosts = b.test\ncommand = x\n[app a]\nhosts = a.test\ncommand = y\n"
        ),
        |c| assert_eq!(
            c.apps.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        )
    );
    good!(
        proxy_after_apps,
        "[app a]\nhosts = a.test\ncommand = x\n[proxy]\ncert = c.pem\nkey = k.pem\n",
        |c| assert_eq!(
            (c.apps.len(), c.proxy.cert.as_path()),
            (1, Path::new("/etc/nexushub/c.pem"))
        )
    );
    good!(
        app_for_host_matches,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\ncommand = x\n[app b]\nhosts = b.test\ncommand = y\n"
        ),
        |c| assert_eq!(
            c.app_for_host("B.Test.:443").map(|a| a.name.as_str()),
            Some("b")
        )
    );
    good!(
        app_for_host_unknown,
        concat!(proxy!(), "[app a]\nhosts = a.test\ncommand = x\n"),
        |c| { assert!(c.app_for_host("c.test").is_none() && c.app_for_host("bad host").is_none()) }
    );

    good!(
        app_command_with_equals,
        concat!(proxy!(), "[app a]\nhosts = a.test\ncommand = A=1 ./srv\n"),
        |c| assert!(
            matches!(&c.apps[0].run, AppRun::Command { command, .. } if command == "A=1 ./srv")
        )
    );

    // Comments, whitespace, line ends, relative paths.
    good!(
        trailing_comment_on_value,
        "[proxy]\ncert = c.pem   # the chain\nkey = k.pem\t# tab before\n",
        |c| {
            assert_eq!(
                (c.proxy.cert.as_path(), c.proxy.key.as_path()),
                (
                    Path::new("/etc/nexushub/c.pem"),
                    Path::new("/etc/nexushub/k.pem")
                )
            )
        }
    );
    good!(
        trailing_comment_on_header,
        "[proxy]  # the proxy\ncert = c.pem\nkey = k.pem\n",
        |c| { assert_eq!(c.proxy.workers, default_workers()) }
    );
    good!(
        hash_inside_value_kept,
        "[proxy]\ncert = c#1.pem\nkey = k.pem\n",
        |c| assert_eq!(c.proxy.cert, Path::new("/etc/nexushub/c#1.pem"))
    );
    good!(
        comment_lines_and_blanks,
        "# top\n\n  # indented\n[proxy]\n\t\ncert = c.pem\n#key = no\nkey = k.pem\n",
        |c| { assert_eq!(c.proxy.key, Path::new("/etc/nexushub/k.pem")) }
    );
    good!(
        no_space_around_equals,
        "[proxy]\ncert=c.pem\n  key   =   k.pem  \n",
        |c| assert_eq!(c.proxy.key, Path::new("/etc/nexushub/k.pem"))
    );
    good!(
        crlf_line_ends,
        "[proxy]\r\ncert = c.pem\r\nkey = k.pem\r\n",
        |c| assert_eq!(c.proxy.key, Path::new("/etc/nexushub/k.pem"))
    );
    good!(
        bom_tolerated,
        "\u{feff}[proxy]\ncert = c.pem\nkey = k.pem",
        |c| assert_eq!(c.proxy.cert, Path::new("/etc/nexushub/c.pem"))
    );
    good!(
        spaced_section_header,
        "[ proxy ]\ncert = c.pem\nkey = k.pem\n[app\ta]\nhosts = a.test\ncommand = x\n",
        |c| { assert_eq!(c.apps[0].name, "a") }
    );
    #[test]
    fn relative_to_bare_file_name() {
        let c = parse(proxy!(), Path::new("nexushub.conf")).unwrap();
        assert_eq!(c.proxy.cert, Path::new("c.pem"));
    }
    #[test]
    fn relative_to_relative_dir() {
        let c = parse(proxy!(), Path::new("conf/nexushub.conf")).unwrap();
        assert_eq!(c.proxy.cert, Path::new("conf/c.pem"));
    }
    #[test]
    fn spec_example() {
        let text = "[proxy]
listen = 0.0.0.0:443          # default 0.0.0.0:443; [::]:443 works too
cert = certs/fullchain.pem    # required: PEM, leaf first, then the chain
key = certs/privkey.pem       # required: PEM private key (PKCS#8, PKCS#1 or SEC1)
workers = 64                  # worker threads
# Limits and deadlines (seconds; decimals allowed), shown with their defaults:
handshake_timeout = 10        # the whole TLS handshake, from accept
head_timeout = 10             # the whole request head, from its first byte
idle_timeout = 60             # a keep-alive connection waiting for its next request
backend_connect_timeout = 5
backend_timeout = 60          # waiting for the backend's response head, and between its body reads
backend_idle_timeout = 20     # an unused pooled backend connection is closed after this
shutdown_grace = 10           # on SIGTERM: for requests in flight, then for children to exit
max_head_bytes = 32768        # larger request heads get 431
access_log = stderr           # stderr (default), off, or a file path (buffered, reopened on SIGHUP)

[app blog]
hosts = blog.example.com, www.blog.example.com   # required, one or more, exact names
command = ./blog-server --port $PORT             # run with /bin/sh -c; PORT is set in its environment
dir = /srv/blog                                  # optional working directory
env = RUST_LOG=info                              # optional, repeatable KEY=VALUE
port = 9001                                      # optional; otherwise a free port is chosen
health = /healthz                                # optional: GET this path, 2xx/3xx is healthy; otherwise a TCP connect
start_timeout = 60                               # optional: seconds to become healthy before it counts as failed

[app legacy]
hosts = legacy.example.com
upstream = 127.0.0.1:8080                        # instead of command: a service run elsewhere, health-checked the same way
";
        let c = parse(text, Path::new("/etc/nexushub/nexushub.conf")).unwrap();
        let mut want_proxy = ProxyConfig::with_defaults();
        want_proxy.cert = "/etc/nexushub/certs/fullchain.pem".into();
        want_proxy.key = "/etc/nexushub/certs/privkey.pem".into();
        // The example sets `workers = 64` explicitly.
        want_proxy.workers = 64;
        assert_eq!(c.proxy, want_proxy);
        let blog = AppConfig {
            name: "blog".into(),
            line: 17,
            hosts: vec!["blog.example.com".into(), "www.blog.example.com".into()],
            run: AppRun::Command {
                command: "./blog-server --port $PORT".into(),
                dir: Some("/srv/blog".into()),
                env: vec![("RUST_LOG".into(), "info".into())],
                port: Some(9001),
            },
            health: Some("/healthz".into()),
            start_timeout: secs(60.0),
        };
        let legacy = AppConfig {
            name: "legacy".into(),
            line: 26,
            hosts: vec!["legacy.example.com".into()],
            run: AppRun::Upstream {
                addr: addr("127.0.0.1:8080"),
            },
            health: None,
            start_timeout: secs(60.0),
        };
        assert_eq!(c.apps, [blog, legacy]);
    }

    // Error display.
    #[test]
    fn display_with_line() {
        let e = parse("[proxy]\nlistn = x\n", Path::new("nexushub.conf")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "nexushub.conf:2: unknown key \"listn\" in [proxy]"
        );
    }
    #[test]
    fn display_without_line() {
        let e = parse("", Path::new("x.conf")).unwrap_err();
        assert_eq!(e.to_string(), "x.conf: missing [proxy] section");
    }

    // Structure errors.
    bad!(empty_file, "", None, "missing [proxy] section");
    bad!(
        only_apps,
        "[app a]\nhosts = a.test\ncommand = x\n",
        None,
        "missing [proxy] section"
    );
    bad!(
        unknown_key_proxy,
        concat!(proxy!(), "listn = 1\n"),
        Some(4),
        "unknown key \"listn\" in [proxy]"
    );
    bad!(
        unknown_key_app,
        concat!(proxy!(), "[app a]\nhosts = a.test\ncmd = x\n"),
        Some(6),
        "unknown key \"cmd\" in [app a]"
    );
    bad!(
        key_is_case_sensitive,
        concat!(proxy!(), "Workers = 4\n"),
        Some(4),
        "unknown key \"Workers\" in [proxy]"
    );
    bad!(
        app_key_in_proxy,
        concat!(proxy!(), "hosts = a.test\n"),
        Some(4),
        "unknown key \"hosts\" in [proxy]"
    );
    bad!(
        unknown_section,
        concat!(proxy!(), "\n[server]\n"),
        Some(5),
        "unknown section [server]"
    );
    bad!(
        section_is_case_sensitive,
        "[Proxy]\n",
        Some(1),
        "unknown section [Proxy]"
    );
    bad!(
        proxy_with_name,
        "[proxy main]\n",
        Some(1),
        "unknown section [proxy main]"
    );
    bad!(
        unterminated_header,
        concat!(proxy!(), "[app a\n"),
        Some(4),
        "bad section header \"[app a\" (expected [proxy] or [app NAME])"
    );
    bad!(
        header_with_glued_comment,
        "[proxy]#x\n",
        Some(1),
        "bad section header \"[proxy]#x\" (expected [proxy] or [app NAME])"
    );
    bad!(
        key_outside_section,
        "# hi\nlisten = 1.2.3.4:1\n",
        Some(2),
        "key \"listen\" outside any section"
    );
    bad!(
        neither_line,
        concat!(proxy!(), "workers 4\n"),
        Some(4),
        "expected \"key = value\" or \"[section]\""
    );
    bad!(
        missing_key_name,
        concat!(proxy!(), "= 4\n"),
        Some(4),
        "missing key before \"=\""
    );
    bad!(
        control_character,
        concat!(proxy!(), "workers = 4\u{0}\n"),
        Some(4),
        "control character in line"
    );
    bad!(
        stray_carriage_return,
        concat!(proxy!(), "workers = 4\r5\n"),
        Some(4),
        "control character in line"
    );
    bad!(
        duplicate_proxy,
        concat!(proxy!(), "[proxy]\n"),
        Some(4),
        "duplicate [proxy] section (first on line 1)"
    );
    bad!(
        duplicate_key,
        concat!(proxy!(), "workers = 4\n\nworkers = 5\n"),
        Some(6),
        "duplicate key \"workers\" in [proxy] (first on line 4)"
    );
    bad!(
        duplicate_app_key,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\ncommand = x\ncommand = y\n"
        ),
        Some(7),
        "duplicate key \"command\" in [app a] (first on line 6)"
    );
    bad!(
        duplicate_hosts_key,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\nhosts = b.test\ncommand = x\n"
        ),
        Some(6),
        "duplicate key \"hosts\" in [app a] (first on line 5)"
    );
    bad!(
        empty_value,
        concat!(proxy!(), "listen =\n"),
        Some(4),
        "missing value for listen"
    );
    bad!(
        empty_value_after_comment,
        concat!(proxy!(), "listen = # none\n"),
        Some(4),
        "missing value for listen"
    );
    bad!(
        empty_env,
        concat!(proxy!(), "[app a]\nenv =\n"),
        Some(5),
        "missing value for env"
    );
    bad!(
        missing_cert,
        "\n[proxy]\nkey = k.pem\n",
        Some(2),
        "missing required key \"cert\" in [proxy]"
    );
    bad!(
        missing_key,
        "[proxy]\ncert = c.pem\n[app a]\n",
        Some(1),
        "missing required key \"key\" in [proxy]"
    );
    bad!(
        missing_hosts,
        concat!(proxy!(), "[app a]\ncommand = x\n"),
        Some(4),
        "missing required key \"hosts\" in [app a]"
    );
    bad!(
        missing_run,
        concat!(proxy!(), "[app a]\nhosts = a.test\n[app b]\n"),
        Some(4),
        "missing \"command\" or \"upstream\" in [app a]"
    );
    bad!(
        both_command_and_upstream,
        concat!(
            proxy!(),
            "[app a]\nupstream = 127.0.0.1:1\nhosts = a.test\ncommand = x\n"
        ),
        Some(7),
        "both \"command\" and \"upstream\" in [app a] (choose one)"
    );
    bad!(
        missing_app_name,
        concat!(proxy!(), "[app]\n"),
        Some(4),
        "missing app name in [app NAME]"
    );
    bad!(
        bad_app_name,
        concat!(proxy!(), "[app a/b]\n"),
        Some(4),
        "bad app name \"a/b\" (expected 1-64 of A-Z a-z 0-9 _ . -)"
    );
    bad!(
        app_name_with_space,
        concat!(proxy!(), "[app a b]\n"),
        Some(4),
        "bad app name \"a b\" (expected 1-64 of A-Z a-z 0-9 _ . -)"
    );
    bad!(
        app_name_too_long,
        concat!(proxy!(), "[app aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n"),
        Some(4),
        "bad app name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" (expected 1-64 of A-Z a-z 0-9 _ . -)"
    );
    good!(
        app_name_64_bytes,
        concat!(proxy!(), "[app aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\nhosts = a.test\ncommand = x\n"),
        |c| assert_eq!(c.apps[0].name.len(), 64)
    );
    bad!(
        duplicate_app_name,
        concat!(proxy!(), "[app a]\nhosts = a.test\ncommand = x\n[app a]\n"),
        Some(7),
        "duplicate [app a] (first on line 4)"
    );
    #[test]
    fn too_large() {
        let text = format!("{}{}", proxy!(), "#".repeat(MAX_CONFIG_BYTES));
        let e = parse(&text, Path::new(FILE)).unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (None, "config file larger than 1048576 bytes")
        );
    }

    bad!(
        key_with_space,
        concat!(proxy!(), "max head = 4\n"),
        Some(4),
        "unknown key \"max head\" in [proxy]"
    );

    // Bad values.
    bad!(
        bad_workers_text,
        concat!(proxy!(), "workers = abc\n"),
        Some(4),
        "bad value for workers: \"abc\" (expected a whole number 1..=4096)"
    );
    bad!(
        bad_workers_zero,
        concat!(proxy!(), "workers = 0\n"),
        Some(4),
        "bad value for workers: \"0\" (expected a whole number 1..=4096)"
    );
    bad!(
        bad_workers_too_many,
        concat!(proxy!(), "workers = 4097\n"),
        Some(4),
        "bad value for workers: \"4097\" (expected a whole number 1..=4096)"
    );
    bad!(
        bad_workers_sign,
        concat!(proxy!(), "workers = +4\n"),
        Some(4),
        "bad value for workers: \"+4\" (expected a whole number 1..=4096)"
    );
    bad!(
        bad_workers_overflow,
        concat!(proxy!(), "workers = 99999999999999999999999\n"),
        Some(4),
        "bad value for workers: \"99999999999999999999999\" (expected a whole number 1..=4096)"
    );
    bad!(
        bad_max_head_bytes,
        concat!(proxy!(), "max_head_bytes = 1023\n"),
        Some(4),
        "bad value for max_head_bytes: \"1023\" (expected a whole number 1024..=1048576)"
    );
    bad!(
        bad_max_connections,
        concat!(proxy!(), "max_connections = 1000001\n"),
        Some(4),
        "bad value for max_connections: \"1000001\" (expected a whole number 1..=1000000)"
    );
    bad!(
        bad_duration_zero,
        concat!(proxy!(), "head_timeout = 0.0\n"),
        Some(4),
        "bad value for head_timeout: \"0.0\" (expected seconds, more than 0 and at most 31536000)"
    );
    bad!(
        bad_duration_negative,
        concat!(proxy!(), "idle_timeout = -1\n"),
        Some(4),
        "bad value for idle_timeout: \"-1\" (expected seconds, more than 0 and at most 31536000)"
    );
    bad!(
        bad_duration_exponent,
        concat!(proxy!(), "backend_timeout = 1e3\n"),
        Some(4),
        "bad value for backend_timeout: \"1e3\" (expected seconds, more than 0 and at most 31536000)"
    );
    bad!(
        bad_duration_too_long,
        concat!(proxy!(), "shutdown_grace = 31536000.5\n"),
        Some(4),
        "bad value for shutdown_grace: \"31536000.5\" (expected seconds, more than 0 and at most 31536000)"
    );
    bad!(
        bad_duration_bare_dot,
        concat!(proxy!(), "handshake_timeout = 5.\n"),
        Some(4),
        "bad value for handshake_timeout: \"5.\" (expected seconds, more than 0 and at most 31536000)"
    );
    bad!(
        bad_duration_leading_dot,
        concat!(proxy!(), "backend_connect_timeout = .5\n"),
        Some(4),
        "bad value for backend_connect_timeout: \".5\" (expected seconds, more than 0 and at most 31536000)"
    );
    bad!(
        bad_duration_unit,
        concat!(proxy!(), "backend_idle_timeout = 5s\n"),
        Some(4),
        "bad value for backend_idle_timeout: \"5s\" (expected seconds, more than 0 and at most 31536000)"
    );
    bad!(
        bad_duration_below_nanosecond,
        concat!(proxy!(), "head_timeout = 0.0000000001\n"),
        Some(4),
        "bad value for head_timeout: \"0.0000000001\" (expected seconds, more than 0 and at most 31536000)"
    );
    bad!(
        bad_listen,
        concat!(proxy!(), "listen = localhost:443\n"),
        Some(4),
        "bad value for listen: \"localhost:443\" (expected an address like 0.0.0.0:443 or [::]:443)"
    );
    bad!(
        bad_listen_no_port,
        concat!(proxy!(), "listen = 0.0.0.0\n"),
        Some(4),
        "bad value for listen: \"0.0.0.0\" (expected an address like 0.0.0.0:443 or [::]:443)"
    );
    bad!(
        bad_log_level,
        concat!(proxy!(), "log_level = INFO\n"),
        Some(4),
        "bad value for log_level: \"INFO\" (expected off, error, warn, info, debug or trace)"
    );
    bad!(
        bad_start_timeout,
        concat!(proxy!(), "[app a]\nhosts = a.test\nstart_timeout = soon\n"),
        Some(6),
        "bad value for start_timeout: \"soon\" (expected seconds, more than 0 and at most 31536000)"
    );

    // Hosts.
    bad!(
        host_with_port,
        concat!(proxy!(), "[app a]\nhosts = a.test, b.test:8443\n"),
        Some(5),
        "bad value for hosts: \"b.test:8443\" (a port is not allowed in a host name)"
    );
    bad!(
        host_with_empty_port,
        concat!(proxy!(), "[app a]\nhosts = a.test:\n"),
        Some(5),
        "bad value for hosts: \"a.test:\" (a port is not allowed in a host name)"
    );
    bad!(
        host_ipv6_with_port,
        concat!(proxy!(), "[app a]\nhosts = [::1]:443\n"),
        Some(5),
        "bad value for hosts: \"[::1]:443\" (a port is not allowed in a host name)"
    );
    bad!(
        host_wildcard,
        concat!(proxy!(), "[app a]\nhosts = *.a.test\n"),
        Some(5),
        "bad value for hosts: \"*.a.test\" (wildcards are not supported)"
    );
    bad!(
        host_bad_character,
        concat!(proxy!(), "[app a]\nhosts = a/b\n"),
        Some(5),
        "bad value for hosts: \"a/b\" (invalid character in host)"
    );
    bad!(
        host_inner_space,
        concat!(proxy!(), "[app a]\nhosts = a.test b.test\n"),
        Some(5),
        "bad value for hosts: \"a.test b.test\" (invalid character in host)"
    );
    bad!(
        host_double_dot,
        concat!(proxy!(), "[app a]\nhosts = a..test\n"),
        Some(5),
        "bad value for hosts: \"a..test\" (invalid character in host)"
    );
    bad!(
        host_empty_entry,
        concat!(proxy!(), "[app a]\nhosts = a.test,,b.test\n"),
        Some(5),
        "bad value for hosts: \"a.test,,b.test\" (empty host name in the list)"
    );
    bad!(
        host_trailing_comma,
        concat!(proxy!(), "[app a]\nhosts = a.test,\n"),
        Some(5),
        "bad value for hosts: \"a.test,\" (empty host name in the list)"
    );
    bad!(
        host_listed_twice,
        concat!(proxy!(), "[app a]\nhosts = a.test, A.TEST.\n"),
        Some(5),
        "bad value for hosts: \"A.TEST.\" (listed twice)"
    );
    bad!(
        host_claimed_by_other_app,
        concat!(proxy!(), "[app a]\nhosts = a.test\ncommand = x\n\n[app b]\ncommand = y\nhosts = b.test, A.test.\n"),
        Some(10),
        "host \"a.test\" is already claimed by [app a] on line 4"
    );

    // Command and upstream options.
    bad!(
        env_no_equals,
        concat!(proxy!(), "[app a]\nenv = FOO\n"),
        Some(5),
        "bad value for env: \"FOO\" (expected KEY=VALUE, KEY of A-Z a-z 0-9 _ not starting with a digit)"
    );
    bad!(
        env_bad_key,
        concat!(proxy!(), "[app a]\nenv = 1X=2\n"),
        Some(5),
        "bad value for env: \"1X=2\" (expected KEY=VALUE, KEY of A-Z a-z 0-9 _ not starting with a digit)"
    );
    bad!(
        env_spaced_key,
        concat!(proxy!(), "[app a]\nenv = X = 2\n"),
        Some(5),
        "bad value for env: \"X = 2\" (expected KEY=VALUE, KEY of A-Z a-z 0-9 _ not starting with a digit)"
    );
    bad!(
        env_port,
        concat!(proxy!(), "[app a]\nenv = PORT=80\n"),
        Some(5),
        "bad value for env: \"PORT=80\" (PORT is set by nexushub)"
    );
    bad!(
        env_set_twice,
        concat!(proxy!(), "[app a]\nenv = A=1\nenv = B=2\nenv = A=3\n"),
        Some(7),
        "env \"A\" set twice in [app a]"
    );
    bad!(
        port_zero,
        concat!(proxy!(), "[app a]\nport = 0\n"),
        Some(5),
        "bad value for port: \"0\" (expected a whole number 1..=65535)"
    );
    bad!(
        port_too_big,
        concat!(proxy!(), "[app a]\nport = 65536\n"),
        Some(5),
        "bad value for port: \"65536\" (expected a whole number 1..=65535)"
    );
    bad!(
        port_with_upstream,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\nupstream = 127.0.0.1:1\nport = 2\n"
        ),
        Some(7),
        "\"port\" needs \"command\", not \"upstream\", in [app a]"
    );
    bad!(
        dir_with_upstream,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\ndir = /x\nupstream = 127.0.0.1:1\n"
        ),
        Some(6),
        "\"dir\" needs \"command\", not \"upstream\", in [app a]"
    );
    bad!(
        env_with_upstream,
        concat!(
            proxy!(),
            "[app a]\nhosts = a.test\nupstream = 127.0.0.1:1\nport = 1\nenv = A=1\n"
        ),
        Some(7),
        "\"port\" needs \"command\", not \"upstream\", in [app a]"
    );
    bad!(
        health_no_slash,
        concat!(proxy!(), "[app a]\nhealth = healthz\n"),
        Some(5),
        "bad value for health: \"healthz\" (expected a path starting with \"/\", printable ascii, no spaces)"
    );
    bad!(
        health_space,
        concat!(proxy!(), "[app a]\nhealth = /a b\n"),
        Some(5),
        "bad value for health: \"/a b\" (expected a path starting with \"/\", printable ascii, no spaces)"
    );
    bad!(
        health_non_ascii,
        concat!(proxy!(), "[app a]\nhealth = /é\n"),
        Some(5),
        "bad value for health: \"/é\" (expected a path starting with \"/\", printable ascii, no spaces)"
    );
    bad!(
        upstream_name,
        concat!(proxy!(), "[app a]\nupstream = example.com:80\n"),
        Some(5),
        "bad value for upstream: \"example.com:80\" (expected 127.0.0.1:PORT, [::1]:PORT or localhost:PORT)"
    );
    bad!(
        upstream_port_zero,
        concat!(proxy!(), "[app a]\nupstream = 127.0.0.1:0\n"),
        Some(5),
        "bad value for upstream: \"127.0.0.1:0\" (expected 127.0.0.1:PORT, [::1]:PORT or localhost:PORT)"
    );
    bad!(
        upstream_localhost_bad_port,
        concat!(proxy!(), "[app a]\nupstream = localhost:http\n"),
        Some(5),
        "bad value for upstream: \"localhost:http\" (expected 127.0.0.1:PORT, [::1]:PORT or localhost:PORT)"
    );

    // `load`, the one function that touches the disk.
    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("nexushub-config-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }
    #[test]
    fn load_reads_and_parses() {
        let path = temp_file("ok.conf", proxy!().as_bytes());
        let c = load(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(c.unwrap().proxy.cert, path.parent().unwrap().join("c.pem"));
    }
    #[test]
    fn load_missing_file() {
        let e = load(Path::new("/nonexistent/nexushub.conf")).unwrap_err();
        assert!(
            e.line.is_none() && e.message.starts_with("cannot read: "),
            "{e}"
        );
    }
    #[test]
    fn load_not_utf8() {
        let path = temp_file("latin1.conf", b"[proxy]\ncert = c.pem\nkey = k\xe9.pem\n");
        let e = load(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!((e.line, e.message.as_str()), (Some(3), "not valid utf-8"));
    }
    #[test]
    fn load_too_large() {
        let path = temp_file("big.conf", &vec![b'#'; MAX_CONFIG_BYTES + 1]);
        let e = load(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            (e.line, e.message.as_str()),
            (None, "config file larger than 1048576 bytes")
        );
    }

    #[test]
    fn connections_fitting_an_open_file_limit() {
        for (nofile, apps, fits) in [
            (128, 1, 28),
            (1024, 0, 480),
            (1024, 3, 468),
            (64, 0, 0),
            (10, 2, 0),
            (1 << 20, 10, 524_216),
        ] {
            assert_eq!(connections_fitting(nofile, apps), fits, "{nofile} {apps}");
        }
    }
}
