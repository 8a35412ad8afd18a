//! Certificate and key loading tests, against the committed test PKI and broken
//! variants of it.

use super::*;
use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, HandshakeKind, ProtocolVersion,
    RootCertStore, ServerConnection, SupportedProtocolVersion,
};

/// A file in tests/fixtures (see tests/fixtures/regen.sh for what each is).
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Any time inside the good leaves' validity (2025-01-01 .. 2055-12-31).
fn now() -> SystemTime {
    time::parse_rfc3339("2026-06-01T00:00:00Z").expect("time")
}

fn at(text: &str) -> SystemTime {
    time::parse_rfc3339(text).expect("time")
}

fn load_fixtures(cert: &str, key: &str) -> Result<TlsSetup, TlsError> {
    load_at(&fixture(cert), &fixture(key), now())
}

/// The error text for a pair of fixtures, with the fixture directory stripped.
fn error_text(cert: &str, key: &str) -> String {
    match load_fixtures(cert, key) {
        Ok(_) => panic!("{cert} + {key} loaded"),
        Err(e) => e
            .to_string()
            .replace(&fixture("").display().to_string(), ""),
    }
}

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nexushub-tls-{}-{}-{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// A copy of a fixture with the given mode.
    fn copy(&self, name: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        fs::copy(fixture(name), &path).expect("copy fixture");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn leaf_info() -> CertInfo {
    CertInfo {
        subject_cn: Some("localhost".into()),
        names: vec![
            "localhost".into(),
            "*.localhost".into(),
            "hello.localhost".into(),
            "*.test.localhost".into(),
            "127.0.0.1".into(),
            "::1".into(),
        ],
        not_before: at("2025-01-01T00:00:00Z"),
        not_after: at("2055-12-31T00:00:00Z"),
    }
}

// --- good pairs ---

#[test]
fn pkcs8_ec_key_loads() {
    let setup = load_fixtures("localhost.pem", "localhost.key").expect("loads");
    assert_eq!(setup.leaf, leaf_info());
    assert_eq!(setup.chain_len, 2);
}

#[test]
fn sec1_ec_key_loads() {
    let setup = load_fixtures("localhost.pem", "localhost-sec1.key").expect("loads");
    assert_eq!(setup.leaf, leaf_info());
}

#[test]
fn pkcs1_rsa_key_loads() {
    let setup = load_fixtures("rsa.pem", "rsa.key").expect("loads");
    assert_eq!(setup.leaf, leaf_info());
    assert_eq!(setup.chain_len, 2);
}

#[test]
fn load_uses_the_clock() {
    assert!(load(&fixture("localhost.pem"), &fixture("localhost.key")).is_ok());
}

#[test]
fn cert_and_key_in_one_file() {
    let dir = TempDir::new("combined");
    let both = dir.0.join("both.pem");
    let mut bytes = fs::read(fixture("localhost.pem")).expect("read");
    bytes.extend(fs::read(fixture("localhost.key")).expect("read"));
    fs::write(&both, bytes).expect("write");
    let setup = load_at(&both, &both, now()).expect("loads");
    assert_eq!(setup.chain_len, 2);
}

#[test]
fn config_speaks_http11_and_resumes() {
    let setup = load_fixtures("localhost.pem", "localhost.key").expect("loads");
    assert_eq!(
        setup.config.alpn_protocols,
        [b"http/1.1".to_vec(), b"http/1.0".to_vec()]
    );
    assert!(setup.config.session_storage.can_cache());
    assert!(setup.config.ticketer.enabled());
    assert_eq!(setup.config.max_early_data_size, 0);
}

// --- unreadable or wrong files ---

#[test]
fn missing_cert_file() {
    assert_eq!(
        error_text("nope.pem", "localhost.key"),
        "nope.pem: cannot read: No such file or directory (os error 2)"
    );
}

#[test]
fn missing_key_file() {
    assert_eq!(
        error_text("localhost.pem", "nope.key"),
        "nope.key: cannot read: No such file or directory (os error 2)"
    );
}

#[test]
fn read_error_has_source() {
    let error = load_fixtures("nope.pem", "localhost.key").expect_err("missing");
    assert!(std::error::Error::source(&error).is_some());
}

#[test]
fn cert_path_is_a_directory() {
    let dir = TempDir::new("dir");
    let error = load_at(&dir.0, &fixture("localhost.key"), now()).expect_err("a dir");
    assert!(matches!(error, TlsError::Read { .. }), "{error}");
}

#[test]
fn cert_file_too_large() {
    let dir = TempDir::new("large");
    let big = dir.0.join("big.pem");
    fs::write(&big, vec![b'\n'; MAX_PEM_FILE_BYTES as usize + 1]).expect("write");
    let error = load_at(&big, &fixture("localhost.key"), now()).expect_err("too large");
    assert_eq!(
        error.to_string(),
        format!("{}: file larger than 1024 KiB", big.display())
    );
}

#[test]
fn empty_cert_file() {
    assert_eq!(
        error_text("empty.pem", "localhost.key"),
        "empty.pem: no certificate found in PEM file"
    );
}

#[test]
fn garbage_cert_file() {
    assert_eq!(
        error_text("garbage.pem", "localhost.key"),
        "garbage.pem: no certificate found in PEM file"
    );
}

#[test]
fn key_given_as_cert() {
    assert_eq!(
        error_text("localhost.key", "localhost.key"),
        "localhost.key: no certificate found in PEM file"
    );
}

#[test]
fn der_cert_file() {
    assert_eq!(
        error_text("localhost.der", "localhost.key"),
        "localhost.der: binary DER data, PEM expected"
    );
}

#[test]
fn truncated_cert_file() {
    assert_eq!(
        error_text("truncated.pem", "localhost.key"),
        "truncated.pem: malformed PEM: no END line for CERTIFICATE"
    );
}

#[test]
fn cert_section_not_x509() {
    assert_eq!(
        error_text("bad-der.pem", "localhost.key"),
        "bad-der.pem: certificate not understood: unexpected DER tag"
    );
}

#[test]
fn empty_key_file() {
    assert_eq!(
        error_text("localhost.pem", "empty.pem"),
        "empty.pem: no private key found"
    );
}

#[test]
fn garbage_key_file() {
    assert_eq!(
        error_text("localhost.pem", "garbage.pem"),
        "garbage.pem: no private key found"
    );
}

#[test]
fn cert_where_key_expected() {
    assert_eq!(
        error_text("localhost.pem", "cert-only-key.pem"),
        "cert-only-key.pem: no private key found"
    );
}

#[test]
fn der_key_file() {
    assert_eq!(
        error_text("localhost.pem", "localhost.der"),
        "localhost.der: binary DER data, PEM expected"
    );
}

#[test]
fn key_section_not_a_key() {
    assert_eq!(
        error_text("localhost.pem", "bad-key.key"),
        "bad-key.key: private key not understood: \
             failed to parse private key as RSA, ECDSA, or EdDSA"
    );
}

#[test]
fn encrypted_key_file() {
    assert_eq!(
        error_text("localhost.pem", "encrypted.key"),
        "encrypted.key: private key is encrypted (decrypt it with `openssl pkey`)"
    );
}

// --- validity ---

#[test]
fn expired_cert_refused() {
    assert_eq!(
        error_text("expired.pem", "expired.key"),
        "expired.pem: certificate expired on 2020-01-02T00:00:00Z"
    );
}

#[test]
fn expired_cert_refused_by_the_clock() {
    let error = load(&fixture("expired.pem"), &fixture("expired.key")).expect_err("expired");
    assert!(matches!(error, TlsError::Expired { .. }), "{error}");
}

#[test]
fn not_yet_valid_cert_refused() {
    let error = load_at(
        &fixture("localhost.pem"),
        &fixture("localhost.key"),
        at("2024-12-31T23:59:59Z"),
    )
    .expect_err("too early");
    assert!(error
        .to_string()
        .ends_with("localhost.pem: certificate not valid before 2025-01-01T00:00:00Z"));
}

#[test]
fn valid_at_not_before() {
    let cert = fixture("localhost.pem");
    assert!(load_at(&cert, &fixture("localhost.key"), at("2025-01-01T00:00:00Z")).is_ok());
}

#[test]
fn valid_at_not_after() {
    let cert = fixture("localhost.pem");
    assert!(load_at(&cert, &fixture("localhost.key"), at("2055-12-31T00:00:00Z")).is_ok());
}

#[test]
fn expired_one_second_after_not_after() {
    let cert = fixture("localhost.pem");
    let error =
        load_at(&cert, &fixture("localhost.key"), at("2055-12-31T00:00:01Z")).expect_err("expired");
    assert!(matches!(error, TlsError::Expired { .. }), "{error}");
}

// --- key and certificate must be a pair ---

#[test]
fn mismatched_key_refused() {
    assert_eq!(
        error_text("localhost.pem", "other.key"),
        "other.key: private key does not match the certificate in localhost.pem"
    );
}

#[test]
fn rsa_key_for_ec_cert_refused() {
    assert_eq!(
        error_text("localhost.pem", "rsa.key"),
        "rsa.key: private key does not match the certificate in localhost.pem"
    );
}

#[test]
fn key_of_the_ca_refused() {
    assert_eq!(
        error_text("localhost.pem", "ca.key"),
        "ca.key: private key does not match the certificate in localhost.pem"
    );
}

// --- warnings ---

fn warnings_with_key_mode(mode: u32) -> Vec<String> {
    let dir = TempDir::new("mode");
    let key = dir.copy("localhost.key", mode);
    let setup = load_at(&fixture("localhost.pem"), &key, now()).expect("loads");
    setup
        .warnings
        .iter()
        .map(|w| w.replace(&format!("{}/", dir.0.display()), ""))
        .collect()
}

#[test]
fn key_mode_0644_warns() {
    assert_eq!(
        warnings_with_key_mode(0o644),
        [
            "localhost.key: private key is accessible by group or others (mode 0644): \
              run `chmod 600 localhost.key`"
        ]
    );
}

#[test]
fn key_mode_0640_warns() {
    assert_eq!(warnings_with_key_mode(0o640).len(), 1);
}

#[test]
fn key_mode_0600_is_quiet() {
    assert!(warnings_with_key_mode(0o600).is_empty());
}

#[test]
fn key_mode_0400_is_quiet() {
    assert!(warnings_with_key_mode(0o400).is_empty());
}

fn expiry_warnings(now: &str) -> Vec<String> {
    let setup = load_at(
        &fixture("localhost.pem"),
        &fixture("localhost.key"),
        at(now),
    )
    .expect("loads");
    setup
        .warnings
        .into_iter()
        .filter(|w| w.contains("expires"))
        .map(|w| w.replace(&fixture("").display().to_string(), ""))
        .collect()
}

#[test]
fn expiry_in_10_days_warns() {
    assert_eq!(
        expiry_warnings("2055-12-21T00:00:00Z"),
        ["localhost.pem: certificate expires in 10 days on 2055-12-31T00:00:00Z"]
    );
}

#[test]
fn expiry_in_1_day_warns() {
    assert_eq!(
        expiry_warnings("2055-12-29T12:00:00Z"),
        ["localhost.pem: certificate expires in 1 day on 2055-12-31T00:00:00Z"]
    );
}

#[test]
fn expiry_in_29_days_23_hours_warns() {
    assert_eq!(expiry_warnings("2055-12-01T01:00:00Z").len(), 1);
}

#[test]
fn expiry_in_30_days_is_quiet() {
    assert!(expiry_warnings("2055-12-01T00:00:00Z").is_empty());
}

#[test]
fn expired_chain_cert_warns() {
    // Only the leaf's validity stops the start; a stale certificate further
    // up (here: [leaf, CA, expired leaf, CA]) is worth a warning.
    let dir = TempDir::new("chain");
    let chain = dir.0.join("chain.pem");
    let mut bytes = fs::read(fixture("localhost.pem")).expect("read");
    bytes.extend(fs::read(fixture("expired.pem")).expect("read"));
    fs::write(&chain, bytes).expect("write");
    let setup = load_at(&chain, &fixture("localhost.key"), now()).expect("loads");
    assert_eq!(setup.chain_len, 4);
    assert!(
        setup.warnings.iter().any(|w| {
            w.ends_with(
                "chain.pem: certificate #3 (localhost) in the chain expired on 2020-01-02T00:00:00Z"
            )
        }),
        "{:?}",
        setup.warnings
    );
}

// --- real handshakes, in memory ---

const ALPN: &[&[u8]] = &[b"http/1.1"];

fn client_config(
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixture("ca.pem")).expect("ca.pem"))
        .expect("root");
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

fn server_config() -> Arc<ServerConfig> {
    load_fixtures("localhost.pem", "localhost.key")
        .expect("loads")
        .config
}

/// Moves everything `from` has to send into `to`; returns the byte count.
fn pump<A, B>(
    from: &mut ConnectionCommon<A>,
    to: &mut ConnectionCommon<B>,
) -> Result<usize, rustls::Error> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).expect("write to a Vec");
    }
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).expect("read from a slice");
        to.process_new_packets()?;
    }
    Ok(bytes.len())
}

/// Runs a handshake to completion, including the tickets sent after it.
fn handshake(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    name: &str,
) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
    let name = ServerName::try_from(name.to_string()).expect("server name");
    let mut client = ClientConnection::new(client.clone(), name)?;
    let mut server = ServerConnection::new(server.clone())?;
    // A TLS 1.2 or 1.3 handshake takes 2 to 3 flights each way.
    for _ in 0..10 {
        let moved = pump(&mut *client, &mut *server)? + pump(&mut *server, &mut *client)?;
        if moved == 0 && !client.is_handshaking() && !server.is_handshaking() {
            return Ok((client, server));
        }
    }
    panic!("handshake did not settle in 10 rounds");
}

#[test]
fn handshake_tls13_with_alpn() {
    let client = client_config(&[&TLS13, &TLS12], ALPN);
    let (client, server) =
        handshake(&server_config(), &client, "hello.localhost").expect("handshake");
    assert_eq!(client.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(client.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(server.server_name(), Some("hello.localhost"));
    assert_eq!(client.handshake_kind(), Some(HandshakeKind::Full));
}

#[test]
fn handshake_tls12_with_alpn() {
    let client = client_config(&[&TLS12], ALPN);
    let (client, server) =
        handshake(&server_config(), &client, "hello.localhost").expect("handshake");
    assert_eq!(client.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(server.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(client.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn handshake_tls12_with_rsa_key() {
    let server = load_fixtures("rsa.pem", "rsa.key").expect("loads").config;
    let client = client_config(&[&TLS12], ALPN);
    let (client, _) = handshake(&server, &client, "localhost").expect("handshake");
    assert_eq!(client.protocol_version(), Some(ProtocolVersion::TLSv1_2));
}

#[test]
fn handshake_tls13_resumes() {
    let server = server_config();
    let client = client_config(&[&TLS13], ALPN);
    handshake(&server, &client, "hello.localhost").expect("first");
    let (client, _) = handshake(&server, &client, "hello.localhost").expect("second");
    assert_eq!(client.handshake_kind(), Some(HandshakeKind::Resumed));
}

#[test]
fn handshake_tls12_resumes() {
    let server = server_config();
    let client = client_config(&[&TLS12], ALPN);
    handshake(&server, &client, "hello.localhost").expect("first");
    let (client, _) = handshake(&server, &client, "hello.localhost").expect("second");
    assert_eq!(client.handshake_kind(), Some(HandshakeKind::Resumed));
}

#[test]
fn handshake_without_alpn() {
    // curl --no-alpn, old clients: no ALPN offered is fine, none chosen.
    let client = client_config(&[&TLS13], &[]);
    let (_, server) = handshake(&server_config(), &client, "localhost").expect("handshake");
    assert_eq!(server.alpn_protocol(), None);
}

#[test]
fn handshake_h2_only_client_refused() {
    // RFC 7301: a client offering ALPN without http/1.1 gets an alert.
    let client = client_config(&[&TLS13], &[b"h2"]);
    let error = handshake(&server_config(), &client, "localhost").expect_err("refused");
    assert!(
        matches!(
            error,
            rustls::Error::NoApplicationProtocol | rustls::Error::AlertReceived(_)
        ),
        "{error}"
    );
}

#[test]
fn handshake_wildcard_under_test_localhost() {
    let client = client_config(&[&TLS13], ALPN);
    assert!(handshake(&server_config(), &client, "a.test.localhost").is_ok());
}

#[test]
fn handshake_single_label_wildcard_is_ignored_by_webpki() {
    // `*.localhost` is in the SAN list but webpki, like NSS and OpenSSL,
    // wants two labels after a wildcard: only listed names work.
    let client = client_config(&[&TLS13], ALPN);
    let error = handshake(&server_config(), &client, "other.localhost").expect_err("refused");
    assert!(
        matches!(error, rustls::Error::InvalidCertificate(_)),
        "{error}"
    );
}

#[test]
fn every_offered_suite_is_aead() {
    // The provider `load` builds with. rustls has no TLS 1.0/1.1, no
    // renegotiation and no compression at all; the suites are what to check.
    let provider = rustls::crypto::ring::default_provider();
    assert!(!provider.cipher_suites.is_empty());
    for suite in &provider.cipher_suites {
        let name = format!("{:?}", suite.suite());
        assert!(
            name.contains("_GCM_") || name.contains("CHACHA20_POLY1305"),
            "non-AEAD suite offered: {name}"
        );
    }
}
