//! The command line and start-up checks: `nexushub check` on good and bad
//! certificates, keys and config lines (exit 1 with one line naming the file, and
//! `FILE:LINE:` for config errors), `run` refusing to start on the same, flags that
//! override the file, and bad usage (exit 2).

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{contains_ci, fixture, run_nexushub, CmdOutput, Conf, Nexus, TestDir};

/// How long a command that should exit at once may take.
const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// The `[proxy]` section with a cert and key: four lines, so the next line is 5.
fn proxy_section(cert: &Path, key: &Path) -> String {
    format!(
        "[proxy]\nlisten = 127.0.0.1:0\ncert = {}\nkey = {}\n",
        cert.display(),
        key.display()
    )
}

/// The good fixture pair's `[proxy]` section.
fn good_proxy_section() -> String {
    proxy_section(&fixture("localhost.pem"), &fixture("localhost.key"))
}

/// Writes `text` as `nexushub.conf` in a new temp dir and runs `nexushub check` on it.
fn check(text: &str) -> (TestDir, PathBuf, CmdOutput) {
    let dir = TestDir::new("check");
    let path = dir.write("nexushub.conf", text);
    let out = run_nexushub(
        dir.path(),
        &["check", "--config", &path.display().to_string()],
        CMD_TIMEOUT,
    );
    (dir, path, out)
}

/// Asserts exit 1 and a stderr line that names one of `files` and says `says`.
fn assert_fails_naming(out: &CmdOutput, files: &[&str], says: &str) {
    assert_eq!(out.code(), 1, "{out:?}");
    let hit = out
        .stderr
        .lines()
        .any(|l| files.iter().any(|f| l.contains(f)) && contains_ci(l, says));
    assert!(
        hit,
        "no stderr line naming {files:?} and saying {says:?}:\n{}",
        out.stderr
    );
}

/// Runs `check` with this cert and key and asserts the failure.
fn assert_pair_rejected(cert: &Path, key: &Path, files: &[&str], says: &str) {
    let (_dir, _path, out) = check(&proxy_section(cert, key));
    assert_fails_naming(&out, files, says);
}

/// Runs `check` on the good `[proxy]` section followed by `rest`, and asserts exit
/// 1 with `nexushub.conf:LINE:` and `says` on one stderr line.
fn assert_config_error(rest: &str, line: usize, says: &str) {
    let (_dir, _path, out) = check(&format!("{}{rest}", good_proxy_section()));
    assert_fails_naming(&out, &[&format!("nexushub.conf:{line}:")], says);
}

#[test]
fn check_accepts_the_fixture_pair_and_prints_a_summary() {
    let text = format!(
        "{}\n[app hello]\nhosts = hello.localhost, a.test.localhost\nupstream = 127.0.0.1:9\n\n[app other]\nhosts = b.test.localhost\nupstream = 127.0.0.1:10\n",
        good_proxy_section()
    );
    let (_dir, _path, out) = check(&text);
    assert_eq!(out.code(), 0, "{out:?}");
    for want in [
        "hello",
        "hello.localhost",
        "a.test.localhost",
        "other",
        "b.test.localhost",
        "127.0.0.1:0",
        "*.test.localhost",
        "2055",
    ] {
        assert!(
            out.stdout.contains(want),
            "the summary lacks {want:?}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn check_accepts_a_sec1_key() {
    let (_dir, _path, out) = check(&proxy_section(
        &fixture("localhost.pem"),
        &fixture("localhost-sec1.key"),
    ));
    assert_eq!(out.code(), 0, "{out:?}");
}

#[test]
fn check_accepts_an_rsa_certificate_with_a_pkcs1_key() {
    let (_dir, _path, out) = check(&proxy_section(&fixture("rsa.pem"), &fixture("rsa.key")));
    assert_eq!(out.code(), 0, "{out:?}");
}

#[test]
fn check_resolves_relative_paths_against_the_config_files_directory() {
    let conf_dir = TestDir::new("relative");
    std::fs::create_dir_all(conf_dir.path().join("certs")).unwrap_or_else(|e| panic!("{e}"));
    conf_dir.copy_fixture("localhost.pem");
    std::fs::rename(
        conf_dir.path().join("localhost.pem"),
        conf_dir.path().join("certs/site.pem"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    conf_dir.copy_fixture("localhost.key");
    let path = conf_dir.write(
        "nexushub.conf",
        "[proxy]\nlisten = 127.0.0.1:0\ncert = certs/site.pem\nkey = localhost.key\n",
    );
    // Run from another directory, so only the config file's directory can explain success.
    let elsewhere = TestDir::new("elsewhere");
    let out = run_nexushub(
        elsewhere.path(),
        &["check", "--config", &path.display().to_string()],
        CMD_TIMEOUT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
}

#[test]
fn check_ignores_comments_and_blank_lines() {
    let text = format!(
        "# a comment line\n\n{}workers = 3   # a comment after a value\nidle_timeout = 2.5\n   # an indented comment\n\n[app hello]   # after a header\nhosts = hello.localhost\nupstream = 127.0.0.1:9\n",
        good_proxy_section()
    );
    let (_dir, _path, out) = check(&text);
    assert_eq!(out.code(), 0, "{out:?}");
}

#[test]
fn check_reports_a_missing_certificate_file() {
    let dir = TestDir::new("missing-cert");
    let cert = dir.path().join("missing.pem");
    assert_pair_rejected(
        &cert,
        &fixture("localhost.key"),
        &["missing.pem"],
        "cannot read",
    );
}

#[test]
fn check_reports_a_missing_key_file() {
    let dir = TestDir::new("missing-key");
    let key = dir.path().join("missing.key");
    assert_pair_rejected(
        &fixture("localhost.pem"),
        &key,
        &["missing.key"],
        "cannot read",
    );
}

#[test]
fn check_reports_an_expired_certificate() {
    assert_pair_rejected(
        &fixture("expired.pem"),
        &fixture("expired.key"),
        &["expired.pem"],
        "expired",
    );
}

#[test]
fn check_reports_a_key_that_does_not_match_the_certificate() {
    assert_pair_rejected(
        &fixture("localhost.pem"),
        &fixture("other.key"),
        &["other.key", "localhost.pem"],
        "does not match",
    );
}

#[test]
fn check_reports_a_garbage_certificate() {
    assert_pair_rejected(
        &fixture("garbage.pem"),
        &fixture("localhost.key"),
        &["garbage.pem"],
        "no certificate",
    );
}

#[test]
fn check_reports_an_empty_certificate() {
    assert_pair_rejected(
        &fixture("empty.pem"),
        &fixture("localhost.key"),
        &["empty.pem"],
        "no certificate",
    );
}

#[test]
fn check_reports_a_truncated_certificate() {
    assert_pair_rejected(
        &fixture("truncated.pem"),
        &fixture("localhost.key"),
        &["truncated.pem"],
        "",
    );
}

#[test]
fn check_reports_a_der_file_given_as_pem() {
    assert_pair_rejected(
        &fixture("localhost.der"),
        &fixture("localhost.key"),
        &["localhost.der"],
        "",
    );
}

#[test]
fn check_reports_a_certificate_that_is_not_x509() {
    assert_pair_rejected(
        &fixture("bad-der.pem"),
        &fixture("localhost.key"),
        &["bad-der.pem"],
        "",
    );
}

#[test]
fn check_reports_a_certificate_given_as_the_key() {
    assert_pair_rejected(
        &fixture("localhost.pem"),
        &fixture("cert-only-key.pem"),
        &["cert-only-key.pem"],
        "no private key",
    );
}

#[test]
fn check_reports_a_garbage_key() {
    assert_pair_rejected(
        &fixture("localhost.pem"),
        &fixture("garbage.pem"),
        &["garbage.pem"],
        "no private key",
    );
}

#[test]
fn check_reports_an_empty_key() {
    assert_pair_rejected(
        &fixture("localhost.pem"),
        &fixture("empty.pem"),
        &["empty.pem"],
        "no private key",
    );
}

#[test]
fn check_reports_a_key_that_is_not_a_key() {
    assert_pair_rejected(
        &fixture("localhost.pem"),
        &fixture("bad-key.key"),
        &["bad-key.key"],
        "",
    );
}

#[test]
fn run_with_an_expired_certificate_exits_1_before_listening() {
    let dir = TestDir::new("run-expired");
    let path = dir.write(
        "nexushub.conf",
        &proxy_section(&fixture("expired.pem"), &fixture("expired.key")),
    );
    let out = run_nexushub(
        dir.path(),
        &["run", "--config", &path.display().to_string()],
        CMD_TIMEOUT,
    );
    assert_fails_naming(&out, &["expired.pem"], "expired");
    assert!(!out.stderr.contains("listening on"), "{out:?}");
}

#[test]
fn run_with_a_bad_config_line_exits_1_before_listening() {
    let dir = TestDir::new("run-bad-config");
    let path = dir.write(
        "nexushub.conf",
        &format!("{}workers = lots\n", good_proxy_section()),
    );
    let out = run_nexushub(
        dir.path(),
        &["run", "--config", &path.display().to_string()],
        CMD_TIMEOUT,
    );
    assert_fails_naming(&out, &["nexushub.conf:5:"], "");
    assert!(!out.stderr.contains("listening on"), "{out:?}");
}

#[test]
fn unknown_proxy_key_is_reported_with_file_and_line() {
    assert_config_error("frobnicate = 3\n", 5, "frobnicate");
}

#[test]
fn bad_number_is_reported_with_file_and_line() {
    assert_config_error("workers = lots\n", 5, "");
}

#[test]
fn bad_duration_is_reported_with_file_and_line() {
    assert_config_error("\nidle_timeout = soon\n", 6, "");
}

#[test]
fn bad_listen_address_is_reported_with_file_and_line() {
    assert_config_error("# comment\nlisten = not-an-address\n", 6, "");
}

#[test]
fn unknown_section_is_reported_with_file_and_line() {
    assert_config_error("\n[frobs]\nx = 1\n", 6, "frobs");
}

#[test]
fn line_without_equals_is_reported_with_file_and_line() {
    assert_config_error("workers 4\n", 5, "");
}

#[test]
fn bad_upstream_address_is_reported_with_file_and_line() {
    assert_config_error(
        "\n[app a]\nhosts = a.test.localhost\nupstream = nowhere\n",
        8,
        "",
    );
}

#[test]
fn unknown_app_key_is_reported_with_file_and_line() {
    assert_config_error(
        "\n[app a]\nhosts = a.test.localhost\nupstream = 127.0.0.1:9\nflavour = mint\n",
        9,
        "flavour",
    );
}

#[test]
fn host_claimed_by_two_apps_is_reported_with_file_and_line() {
    assert_config_error(
        "\n[app a]\nhosts = a.test.localhost\nupstream = 127.0.0.1:9\n\n[app b]\nhosts = x.test.localhost, A.test.localhost\nupstream = 127.0.0.1:10\n",
        11,
        "a.test.localhost",
    );
}

#[test]
fn missing_required_key_is_reported() {
    let (_dir, _path, out) = check("[proxy]\nlisten = 127.0.0.1:0\n");
    assert_fails_naming(&out, &["nexushub.conf"], "cert");
}

#[test]
fn missing_config_file_is_reported() {
    let dir = TestDir::new("no-config");
    let path = dir.path().join("absent.conf");
    let out = run_nexushub(
        dir.path(),
        &["check", "--config", &path.display().to_string()],
        CMD_TIMEOUT,
    );
    assert_fails_naming(&out, &["absent.conf"], "");
}

#[test]
fn unknown_command_exits_2() {
    let dir = TestDir::new("usage");
    let out = run_nexushub(dir.path(), &["frobnicate"], CMD_TIMEOUT);
    assert_eq!(out.code(), 2, "{out:?}");
}

#[test]
fn no_command_exits_2() {
    let dir = TestDir::new("usage");
    let out = run_nexushub(dir.path(), &[], CMD_TIMEOUT);
    assert_eq!(out.code(), 2, "{out:?}");
}

#[test]
fn unknown_flag_exits_2() {
    let dir = TestDir::new("usage");
    let out = run_nexushub(dir.path(), &["run", "--frobnicate"], CMD_TIMEOUT);
    assert_eq!(out.code(), 2, "{out:?}");
}

#[test]
fn flag_without_its_value_exits_2() {
    let dir = TestDir::new("usage");
    let out = run_nexushub(dir.path(), &["check", "--config"], CMD_TIMEOUT);
    assert_eq!(out.code(), 2, "{out:?}");
}

#[test]
fn help_exits_0_and_names_the_commands() {
    let dir = TestDir::new("usage");
    let out = run_nexushub(dir.path(), &["--help"], CMD_TIMEOUT);
    assert_eq!(out.code(), 0, "{out:?}");
    for cmd in ["run", "check", "whoami"] {
        assert!(
            out.stdout.contains(cmd),
            "--help does not mention {cmd}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn the_watchdog_subcommand_is_hidden_and_refuses_to_run_by_hand() {
    let dir = TestDir::new("usage");
    let help = run_nexushub(dir.path(), &["--help"], CMD_TIMEOUT);
    assert!(!help.stdout.contains("watchdog"), "{}", help.stdout);
    let bare = run_nexushub(dir.path(), &["__watchdog"], CMD_TIMEOUT);
    assert_eq!(bare.code(), 2, "{bare:?}");
    assert!(
        bare.stderr.contains("started by nexushub itself"),
        "{bare:?}"
    );
    // A pid that is not its process group, and stdin not the watchdog pipe: it
    // must refuse rather than watch (and later SIGKILL) a group that is no app's.
    let me = std::process::id().to_string();
    let by_hand = run_nexushub(dir.path(), &["__watchdog", &me], CMD_TIMEOUT);
    assert_eq!(by_hand.code(), 1, "{by_hand:?}");
    assert!(
        by_hand.stderr.contains("not an app's watchdog"),
        "{by_hand:?}"
    );
}

#[test]
fn listen_flag_overrides_the_config_file() {
    // The file names a port that is taken; only the flag can make this start.
    let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("{e}"));
    let busy_port = busy.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let conf = Conf::new().set("listen", &format!("127.0.0.1:{busy_port}"));
    let nexus = Nexus::start_with_args(&conf, &["--listen", "127.0.0.1:0"]);
    assert_ne!(nexus.port(), busy_port);
    assert_eq!(
        nexus
            .client("hello.localhost")
            .get("hello.localhost", "/")
            .status(),
        404
    );
}

#[test]
fn cert_and_key_flags_override_the_config_file() {
    let conf = Conf::new()
        .set("cert", &fixture("garbage.pem").display().to_string())
        .set("key", &fixture("garbage.pem").display().to_string());
    let cert = fixture("localhost.pem").display().to_string();
    let key = fixture("localhost.key").display().to_string();
    let nexus = Nexus::start_with_args(&conf, &["--cert", &cert, "--key", &key]);
    // The handshake verifies against the test CA, so the flags' pair is in use.
    assert_eq!(
        nexus
            .client("hello.localhost")
            .get("hello.localhost", "/")
            .status(),
        404
    );
}
