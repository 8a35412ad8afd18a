//! The `nexushub` command: `run`, `check` and `whoami` (the README's "Commands").
//!
//! Exit codes: 0 after a clean shutdown or a good check; 1 for a bad config,
//! certificate or key (one line naming the file and the problem, before anything
//! starts); 2 for bad command-line usage.
#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use argh::FromArgs;
use nexushub::config::{self, AppRun, Config};
use nexushub::{logger, procman, server, sys, time, tls};

mod whoami;

/// nexushub: one program for one small host. It starts your web apps, keeps them
/// alive, and puts them behind HTTPS by host name.
#[derive(FromArgs, Debug)]
struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Command {
    Run(RunArgs),
    Check(CheckArgs),
    Whoami(WhoamiArgs),
}

/// Start the apps and serve HTTPS until SIGTERM or SIGINT.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
struct RunArgs {
    /// config file (default: nexushub.conf)
    #[argh(option, default = "PathBuf::from(\"nexushub.conf\")")]
    config: PathBuf,
    /// address to listen on, overriding [proxy] listen (e.g. 0.0.0.0:443)
    #[argh(option)]
    listen: Option<SocketAddr>,
    /// certificate chain PEM file, overriding [proxy] cert
    #[argh(option)]
    cert: Option<PathBuf>,
    /// private key PEM file, overriding [proxy] key
    #[argh(option)]
    key: Option<PathBuf>,
    /// number of worker threads, overriding [proxy] workers
    #[argh(option)]
    workers: Option<usize>,
    /// log level: off, error, warn, info, debug or trace
    #[argh(option)]
    log_level: Option<String>,
}

/// Validate the config, the certificate and the key; print a short summary.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
struct CheckArgs {
    /// config file (default: nexushub.conf)
    #[argh(option, default = "PathBuf::from(\"nexushub.conf\")")]
    config: PathBuf,
}

/// A tiny plain-HTTP backend that answers every request with what it received.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "whoami")]
struct WhoamiArgs {
    /// address to listen on (default: 127.0.0.1:$PORT)
    #[argh(option)]
    listen: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let name = strs
        .first()
        .map_or("nexushub", |s| s.rsplit('/').next().unwrap_or("nexushub"));
    // An app's watchdog, started by nexushub (kept out of the parser and `--help`).
    if strs
        .get(1)
        .is_some_and(|s| procman::watchdog::is_subcommand(s))
    {
        return procman::watchdog::main(strs.get(2..).unwrap_or(&[]));
    }
    let cli = match Cli::from_args(&[name], strs.get(1..).unwrap_or(&[])) {
        Ok(cli) => cli,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    println!("{}", early.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    eprintln!("{}", early.output.trim_end());
                    eprintln!("Run {name} --help for usage.");
                    ExitCode::from(2)
                }
            };
        }
    };
    match cli.command {
        Command::Run(args) => run(args),
        Command::Check(args) => check(args),
        Command::Whoami(args) => run_whoami(args),
    }
}

fn parse_level(s: &str) -> Option<log::LevelFilter> {
    match s {
        "off" => Some(log::LevelFilter::Off),
        "error" => Some(log::LevelFilter::Error),
        "warn" => Some(log::LevelFilter::Warn),
        "info" => Some(log::LevelFilter::Info),
        "debug" => Some(log::LevelFilter::Debug),
        "trace" => Some(log::LevelFilter::Trace),
        _ => None,
    }
}

fn run(args: RunArgs) -> ExitCode {
    // Before any thread exists, so every thread inherits the mask.
    if let Err(e) = sys::block_signals() {
        eprintln!("nexushub: cannot set up signal handling: {e}");
        return ExitCode::from(1);
    }
    let level_override = match args.log_level.as_deref().map(|s| (s, parse_level(s))) {
        Some((s, None)) => {
            eprintln!(
                "nexushub: --log-level {s:?}: expected off, error, warn, info, debug or trace"
            );
            return ExitCode::from(2);
        }
        Some((_, level)) => level,
        None => None,
    };
    if args.workers == Some(0) || args.workers.is_some_and(|n| n > 4096) {
        eprintln!("nexushub: --workers must be 1..=4096");
        return ExitCode::from(2);
    }
    let mut config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nexushub: {e}");
            return ExitCode::from(1);
        }
    };
    let overrides = server::Overrides {
        listen: args.listen,
        cert: args.cert,
        key: args.key,
        workers: args.workers,
    };
    overrides.apply(&mut config);
    // Stderr through a writer thread: no thread that logs waits on its reader.
    if let Err(e) = logger::init(level_override.unwrap_or(config.proxy.log_level)) {
        eprintln!("nexushub: cannot start the log writer: {e}");
        return ExitCode::from(1);
    }
    let result = server::run(config, overrides);
    if let Err(e) = &result {
        log::error!("{e}");
    }
    logger::flush(logger::EXIT_FLUSH_WAIT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nexushub: {e}");
            ExitCode::from(1)
        }
    }
}

fn check(args: CheckArgs) -> ExitCode {
    // It reads the private key too (`run` does this in `server::run`).
    let _ = sys::set_not_dumpable();
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nexushub: {e}");
            return ExitCode::from(1);
        }
    };
    let tls = match tls::load(&config.proxy.cert, &config.proxy.key) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("nexushub: {e}");
            return ExitCode::from(1);
        }
    };
    let out = summary(&config, &tls);
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    for w in &tls.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(w) = nofile_limit().and_then(|n| config::nofile_warning(&config, n)) {
        eprintln!("warning: {w}");
    }
    ExitCode::SUCCESS
}

/// The open-file limit `run` will have: the hard limit, to which it raises
/// the soft one.
fn nofile_limit() -> Option<u64> {
    sys::nofile_limits().ok().map(|(_, hard)| hard)
}

fn summary(config: &Config, tls: &tls::TlsSetup) -> String {
    let p = &config.proxy;
    let mut s = String::new();
    s.push_str(&format!("config {}: ok\n", config.path.display()));
    s.push_str(&format!("listen {}\n", p.listen));
    let leaf = &tls.leaf;
    let days = leaf
        .not_after
        .duration_since(SystemTime::now())
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    s.push_str(&format!(
        "certificate {}: {} (chain of {}), valid until {} ({days} days)\n",
        p.cert.display(),
        if leaf.names.is_empty() {
            leaf.subject_cn
                .clone()
                .unwrap_or_else(|| "(no names)".into())
        } else {
            leaf.names.join(", ")
        },
        tls.chain_len,
        time::format_rfc3339(leaf.not_after),
    ));
    s.push_str(&format!("key {}\n", p.key.display()));
    if let Some(n) = nofile_limit() {
        s.push_str(&format!(
            "open file limit {n}: fits {} client connections (max_connections = {}; {} descriptors needed)\n",
            config::connections_fitting(n, config.apps.len()),
            p.max_connections,
            config::descriptors_needed(config)
        ));
    }
    if config.apps.is_empty() {
        s.push_str("no apps: every request will get 404\n");
    }
    for app in &config.apps {
        let what = match &app.run {
            AppRun::Command { command, port, .. } => match port {
                Some(port) => format!("command `{command}` on port {port}"),
                None => format!("command `{command}` on a free port"),
            },
            AppRun::Upstream { addr } => format!("upstream {addr}"),
        };
        s.push_str(&format!(
            "app {}: {} -> {what}\n",
            app.name,
            app.hosts.join(", ")
        ));
    }
    s
}

fn run_whoami(args: WhoamiArgs) -> ExitCode {
    let addr = match args.listen {
        Some(a) => a,
        None => match std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse::<u16>().ok())
        {
            Some(port) => SocketAddr::from(([127, 0, 0, 1], port)),
            None => {
                eprintln!(
                    "nexushub whoami: no --listen given and PORT is not set to a port number"
                );
                return ExitCode::from(2);
            }
        },
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("nexushub whoami: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    match listener.local_addr() {
        Ok(local) => eprintln!("whoami listening on {local}"),
        Err(e) => eprintln!("whoami listening ({e})"),
    }
    match whoami::serve(listener) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nexushub whoami: {e}");
            ExitCode::from(1)
        }
    }
}
