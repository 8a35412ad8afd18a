//! TLS setup: turns the configured certificate and key files into the rustls
//! `ServerConfig` every connection shares, after checking everything an operator
//! can get wrong, so that a bad pair stops the start with one clear line (SPEC,
//! "Behaviour on the wire") instead of failing handshakes later.
//!
//! ```text
//!  cert PEM ─ read, capped ─> CERTIFICATE sections ─ x509 ─> names, validity ──┐
//!  key PEM ── read, capped ─> first private key ── ring ─> signing key ────────┤ keys_match
//!                 └─ mode & 0o077 ─> warning                                   ▼
//!                          ServerConfig: TLS 1.3 + 1.2, ALPN http/1.1, resumption on
//! ```
//!
//! What is checked, in order: both files can be read; the certificate file holds
//! at least one certificate and each one parses; the leaf (the first) is valid now;
//! the key file holds a private key (PKCS#8, PKCS#1 or SEC1) that the ring
//! provider accepts and that matches the leaf. What is only warned about, for the
//! caller to log: a key file that group or others can access, a leaf that expires
//! within [`EXPIRY_WARNING_DAYS`], a leaf with no subjectAltName, an expired
//! certificate further up the chain.
//!
//! The chain itself is not verified here: clients do that, against their roots.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerSessionMemoryCache;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::version::{TLS12, TLS13};
use rustls::{InconsistentKeys, ServerConfig};

use crate::time;
use crate::x509::{self, X509Error};

/// Largest certificate or key file we read, in bytes. A full chain is a few KiB;
/// the cap keeps a wrong path (a log file, /dev/zero) from eating memory.
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

/// A leaf expiring within this many days gets a warning at start and on reload.
pub const EXPIRY_WARNING_DAYS: u64 = 30;

/// Entries in the server-side session cache (TLS 1.2 session IDs, and TLS 1.3
/// tickets when no ticketer is set). rustls' default is 256.
pub const SESSION_CACHE_ENTRIES: usize = 1024;

/// The one application protocol we speak.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";
/// Also accepted, for HTTP/1.0 clients that say so in ALPN (`curl --http1.0`
/// offers only this); a client offering both gets `http/1.1`.
pub const ALPN_HTTP_1_0: &[u8] = b"http/1.0";

const SECS_PER_DAY: u64 = 86_400;

/// What the leaf certificate says, for `nexushub check` and the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's common name, if any (clients ignore it; shown for humans).
    pub subject_cn: Option<String>,
    /// The SAN DNS names, then the SAN IP addresses as text.
    pub names: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

/// A checked certificate and key, ready to serve.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    /// The config every `ServerConnection` is made from.
    pub config: Arc<ServerConfig>,
    /// What the leaf certificate says.
    pub leaf: CertInfo,
    /// Certificates in the file: the leaf plus its chain.
    pub chain_len: usize,
    /// Things worth a log line that do not stop the start.
    pub warnings: Vec<String>,
}

/// Why the certificate or key cannot be used. Each message names the file.
#[derive(Debug)]
pub enum TlsError {
    /// A file could not be opened or read.
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A file is larger than [`MAX_PEM_FILE_BYTES`].
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Broken PEM syntax: a section without its END line, bad base64.
    MalformedPem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        source: pem::Error,
    },
    /// The file is binary DER where PEM is expected.
    Der {
        /// The file.
        path: PathBuf,
    },
    /// The certificate file has no CERTIFICATE section.
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file has no private key section.
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds only an encrypted private key.
    EncryptedKey {
        /// The file.
        path: PathBuf,
    },
    /// The key section is there but is not a key the crypto provider can use.
    KeyNotUnderstood {
        /// The key file.
        path: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// A certificate that our X.509 reader refuses.
    CertNotUnderstood {
        /// The certificate file.
        path: PathBuf,
        /// Position in the file: 0 is the leaf.
        index: usize,
        /// What the reader said.
        source: X509Error,
    },
    /// The leaf that rustls refuses when matching it with the key.
    CertRejected {
        /// The certificate file.
        path: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The leaf's notAfter is in the past.
    Expired {
        /// The certificate file.
        path: PathBuf,
        /// When it expired.
        not_after: SystemTime,
    },
    /// The leaf's notBefore is in the future.
    NotYetValid {
        /// The certificate file.
        path: PathBuf,
        /// When it becomes valid.
        not_before: SystemTime,
    },
    /// The private key is not the key of the leaf certificate.
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// rustls refused to build the config (no usable protocol version, no
    /// randomness for the ticketer).
    Config {
        /// What rustls said.
        source: rustls::Error,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, source } => {
                write!(f, "{}: cannot read: {source}", path.display())
            }
            TlsError::TooLarge { path } => write!(
                f,
                "{}: file larger than {} KiB",
                path.display(),
                MAX_PEM_FILE_BYTES / 1024
            ),
            TlsError::MalformedPem { path, source } => {
                write!(
                    f,
                    "{}: malformed PEM: {}",
                    path.display(),
                    pem_problem(source)
                )
            }
            TlsError::Der { path } => {
                write!(f, "{}: binary DER data, PEM expected", path.display())
            }
            TlsError::NoCertificate { path } => {
                write!(f, "{}: no certificate found in PEM file", path.display())
            }
            TlsError::NoPrivateKey { path } => {
                write!(f, "{}: no private key found", path.display())
            }
            TlsError::EncryptedKey { path } => write!(
                f,
                "{}: private key is encrypted (decrypt it with `openssl pkey`)",
                path.display()
            ),
            TlsError::KeyNotUnderstood { path, source } => {
                write!(
                    f,
                    "{}: private key not understood: {}",
                    path.display(),
                    rustls_problem(source)
                )
            }
            TlsError::CertNotUnderstood {
                path,
                index: 0,
                source,
            } => write!(
                f,
                "{}: certificate not understood: {source}",
                path.display()
            ),
            TlsError::CertNotUnderstood {
                path,
                index,
                source,
            } => write!(
                f,
                "{}: certificate #{} not understood: {source}",
                path.display(),
                index + 1
            ),
            TlsError::CertRejected { path, source } => {
                write!(
                    f,
                    "{}: certificate rejected: {}",
                    path.display(),
                    rustls_problem(source)
                )
            }
            TlsError::Expired { path, not_after } => write!(
                f,
                "{}: certificate expired on {}",
                path.display(),
                time::format_rfc3339(*not_after)
            ),
            TlsError::NotYetValid { path, not_before } => write!(
                f,
                "{}: certificate not valid before {}",
                path.display(),
                time::format_rfc3339(*not_before)
            ),
            TlsError::KeyMismatch { key, cert } => write!(
                f,
                "{}: private key does not match the certificate in {}",
                key.display(),
                cert.display()
            ),
            TlsError::Config { source } => {
                write!(f, "tls setup failed: {}", rustls_problem(source))
            }
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { source, .. } => Some(source),
            TlsError::MalformedPem { source, .. } => Some(source),
            TlsError::KeyNotUnderstood { source, .. }
            | TlsError::CertRejected { source, .. }
            | TlsError::Config { source } => Some(source),
            TlsError::CertNotUnderstood { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The PEM reader's own messages print byte strings as `[67, 69, ...]`.
fn pem_problem(error: &pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "no END line for {}",
            String::from_utf8_lossy(end_marker).trim()
        ),
        pem::Error::IllegalSectionStart { .. } => "bad BEGIN line".to_string(),
        pem::Error::Base64Decode(why) => format!("bad base64 ({why})"),
        other => other.to_string(),
    }
}

/// `rustls::Error::General` prints as "unexpected error: ...", which reads oddly
/// after our own prefix.
fn rustls_problem(error: &rustls::Error) -> String {
    match error {
        rustls::Error::General(why) => why.clone(),
        other => other.to_string(),
    }
}

/// Reads and checks `cert` and `key` as of now; see [`load_at`].
pub fn load(cert: &Path, key: &Path) -> Result<TlsSetup, TlsError> {
    load_at(cert, key, SystemTime::now())
}

/// The warning for a leaf that expires within [`EXPIRY_WARNING_DAYS`] of `now`
/// (or has expired); `None` when it has longer. Run at start and daily.
pub fn expiry_warning(path: &Path, not_after: SystemTime, now: SystemTime) -> Option<String> {
    let Ok(remaining) = not_after.duration_since(now) else {
        return Some(format!(
            "{}: certificate expired on {}",
            path.display(),
            time::format_rfc3339(not_after)
        ));
    };
    if remaining >= Duration::from_secs(EXPIRY_WARNING_DAYS * SECS_PER_DAY) {
        return None;
    }
    let days = remaining.as_secs() / SECS_PER_DAY;
    Some(format!(
        "{}: certificate expires in {days} day{} on {}",
        path.display(),
        if days == 1 { "" } else { "s" },
        time::format_rfc3339(not_after)
    ))
}

/// Reads and checks `cert` (PEM, leaf first, then the chain) and `key` (PEM,
/// PKCS#8, PKCS#1 or SEC1) as of `now`, and builds the server config: TLS 1.3 and
/// 1.2 with the ring provider, no client auth, ALPN `http/1.1`, a session cache of
/// [`SESSION_CACHE_ENTRIES`] and stateless tickets.
pub fn load_at(cert: &Path, key: &Path, now: SystemTime) -> Result<TlsSetup, TlsError> {
    let mut warnings = Vec::new();

    let (cert_pem, _) = read_capped(cert)?;
    let chain = read_chain(cert, &cert_pem)?;
    let leaf = check_chain(cert, &chain, now, &mut warnings)?;

    let (key_pem, mode) = read_capped(key)?;
    if mode & 0o077 != 0 {
        warnings.push(format!(
            "{}: private key is accessible by group or others (mode {:04o}): run `chmod 600 {}`",
            key.display(),
            mode & 0o7777,
            key.display()
        ));
    }
    let key_der = read_key(key, &key_pem)?;

    let provider = Arc::new(provider::default_provider());
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|source| TlsError::KeyNotUnderstood {
            path: key.to_path_buf(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the provider cannot derive the public key, so there is nothing
        // to compare (rustls accepts this too); ring always can.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch {
                key: key.to_path_buf(),
                cert: cert.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(TlsError::CertRejected {
                path: cert.to_path_buf(),
                source,
            })
        }
    }
    let chain_len = certified.cert.len();

    let config_error = |source| TlsError::Config { source };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(config_error)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec(), ALPN_HTTP_1_0.to_vec()];
    // Resumption saves a full handshake for returning clients: session IDs (and
    // TLS 1.2 clients without ticket support) use the cache, everyone else gets
    // stateless tickets, so the cache size is not a ceiling on resumption.
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    config.ticketer = provider::Ticketer::new().map_err(config_error)?;

    Ok(TlsSetup {
        config: Arc::new(config),
        leaf,
        chain_len,
        warnings,
    })
}

/// The whole file, up to the cap, and its permission bits. One open serves both,
/// so the mode is that of the file actually read (a symlink's target).
fn read_capped(path: &Path) -> Result<(Vec<u8>, u32), TlsError> {
    let read_error = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mode = file.metadata().map_err(read_error)?.permissions().mode();
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok((bytes, mode))
}

/// Every CERTIFICATE section, in file order. Other sections (a bundled key, a
/// CSR) are skipped, as every PEM consumer does.
fn read_chain(path: &Path, pem_bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::MalformedPem {
            path: path.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        return Err(if x509::looks_like_der(pem_bytes) {
            TlsError::Der {
                path: path.to_path_buf(),
            }
        } else {
            TlsError::NoCertificate {
                path: path.to_path_buf(),
            }
        });
    }
    Ok(chain)
}

/// Reads every certificate; refuses a leaf outside its validity, warns about the
/// rest. Returns what the leaf says.
fn check_chain(
    path: &Path,
    chain: &[CertificateDer<'static>],
    now: SystemTime,
    warnings: &mut Vec<String>,
) -> Result<CertInfo, TlsError> {
    let mut parsed = Vec::with_capacity(chain.len());
    for (index, der) in chain.iter().enumerate() {
        let certificate =
            x509::parse_certificate(der).map_err(|source| TlsError::CertNotUnderstood {
                path: path.to_path_buf(),
                index,
                source,
            })?;
        parsed.push(certificate);
    }
    let Some((leaf, rest)) = parsed.split_first() else {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    };

    // Inclusive at both ends, as webpki compares.
    if now < leaf.not_before {
        return Err(TlsError::NotYetValid {
            path: path.to_path_buf(),
            not_before: leaf.not_before,
        });
    }
    let remaining = match leaf.not_after.duration_since(now) {
        Ok(remaining) => remaining,
        Err(_) => {
            return Err(TlsError::Expired {
                path: path.to_path_buf(),
                not_after: leaf.not_after,
            })
        }
    };
    let _ = remaining;
    warnings.extend(expiry_warning(path, leaf.not_after, now));
    if leaf.dns_names.is_empty() && leaf.ip_addresses.is_empty() {
        warnings.push(format!(
            "{}: certificate has no subjectAltName: clients will refuse it for every name",
            path.display()
        ));
    }
    for (offset, certificate) in rest.iter().enumerate() {
        if certificate.not_after < now {
            warnings.push(format!(
                "{}: certificate #{} ({}) in the chain expired on {}",
                path.display(),
                offset + 2,
                certificate
                    .subject_cn
                    .as_deref()
                    .unwrap_or("no common name"),
                time::format_rfc3339(certificate.not_after)
            ));
        }
    }

    let mut names = leaf.dns_names.clone();
    names.extend(leaf.ip_addresses.iter().map(|ip| ip.to_string()));
    Ok(CertInfo {
        subject_cn: leaf.subject_cn.clone(),
        names,
        not_before: leaf.not_before,
        not_after: leaf.not_after,
    })
}

/// The first private key in the file.
fn read_key(path: &Path, pem_bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(pem_bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(if is_encrypted_key(pem_bytes) {
            TlsError::EncryptedKey {
                path: path.to_path_buf(),
            }
        } else if x509::looks_like_der(pem_bytes) {
            TlsError::Der {
                path: path.to_path_buf(),
            }
        } else {
            TlsError::NoPrivateKey {
                path: path.to_path_buf(),
            }
        }),
        // OpenSSL's legacy encryption puts headers inside an "RSA/EC PRIVATE KEY"
        // section, which then fails as base64.
        Err(_) if is_encrypted_key(pem_bytes) => Err(TlsError::EncryptedKey {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(TlsError::MalformedPem {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// PKCS#8 `ENCRYPTED PRIVATE KEY` sections are skipped by the PEM reader, and
/// legacy `Proc-Type: 4,ENCRYPTED` ones fail as base64: both deserve a clearer
/// message than "no private key".
fn is_encrypted_key(pem_bytes: &[u8]) -> bool {
    const MARKERS: [&[u8]; 2] = [
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----",
        b"Proc-Type: 4,ENCRYPTED",
    ];
    MARKERS.iter().any(|marker| {
        pem_bytes
            .windows(marker.len())
            .any(|window| window == *marker)
    })
}

#[cfg(test)]
mod tests {
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
        let error = load_at(&cert, &fixture("localhost.key"), at("2055-12-31T00:00:01Z"))
            .expect_err("expired");
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
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
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
}
