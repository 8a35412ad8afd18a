//! The config parser's tests, one per input: what each key accepts, what it
//! refuses, and the line and message of the error.

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
good!(default_tunnel_timeouts, proxy!(), |c| assert_eq!(
    (c.proxy.tunnel_idle_timeout, c.proxy.tunnel_drain_timeout),
    (Some(secs(600.0)), secs(300.0))
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
    tunnel_idle_timeout,
    concat!(proxy!(), "tunnel_idle_timeout = 90.5\n"),
    |c| assert_eq!(c.proxy.tunnel_idle_timeout, Some(secs(90.5)))
);
good!(
    tunnel_idle_timeout_zero_is_none,
    concat!(proxy!(), "tunnel_idle_timeout = 0\n"),
    |c| assert_eq!(c.proxy.tunnel_idle_timeout, None)
);
good!(
    tunnel_idle_timeout_zero_with_decimals_is_none,
    concat!(proxy!(), "tunnel_idle_timeout = 00.000\n"),
    |c| assert_eq!(c.proxy.tunnel_idle_timeout, None)
);
good!(
    tunnel_idle_timeout_max,
    concat!(proxy!(), "tunnel_idle_timeout = 31536000\n"),
    |c| assert_eq!(
        c.proxy.tunnel_idle_timeout,
        Some(Duration::from_secs(MAX_DURATION_SECS))
    )
);
good!(
    tunnel_drain_timeout,
    concat!(proxy!(), "tunnel_drain_timeout = 3600\n"),
    |c| assert_eq!(c.proxy.tunnel_drain_timeout, secs(3600.0))
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
    concat!(
        proxy!(),
        "[app a]\nhosts = a.test\ncommand = x\nenv = RUST_LOG=info\nenv = _X=a=b\nenv = EMPTY=\n"
    ),
    |c| {
        let want = [("RUST_LOG", "info"), ("_X", "a=b"), ("EMPTY", "")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
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
    bad_tunnel_idle_timeout_below_nanosecond,
    concat!(proxy!(), "tunnel_idle_timeout = 0.0000000001\n"),
    Some(4),
    "bad value for tunnel_idle_timeout: \"0.0000000001\" (expected seconds, at most 31536000, or 0 for none)"
);
bad!(
    bad_tunnel_idle_timeout_bare_dot,
    concat!(proxy!(), "tunnel_idle_timeout = 0.\n"),
    Some(4),
    "bad value for tunnel_idle_timeout: \"0.\" (expected seconds, at most 31536000, or 0 for none)"
);
bad!(
    bad_tunnel_idle_timeout_none_word,
    concat!(proxy!(), "tunnel_idle_timeout = none\n"),
    Some(4),
    "bad value for tunnel_idle_timeout: \"none\" (expected seconds, at most 31536000, or 0 for none)"
);
bad!(
    bad_tunnel_idle_timeout_too_long,
    concat!(proxy!(), "tunnel_idle_timeout = 31536001\n"),
    Some(4),
    "bad value for tunnel_idle_timeout: \"31536001\" (expected seconds, at most 31536000, or 0 for none)"
);
bad!(
    bad_tunnel_drain_timeout_zero,
    concat!(proxy!(), "tunnel_drain_timeout = 0\n"),
    Some(4),
    "bad value for tunnel_drain_timeout: \"0\" (expected seconds, more than 0 and at most 31536000)"
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
    concat!(
        proxy!(),
        "[app a]\nhosts = a.test\ncommand = x\n\n[app b]\ncommand = y\nhosts = b.test, A.test.\n"
    ),
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
    let path = std::env::temp_dir().join(format!("nexushub-config-{}-{name}", std::process::id()));
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
