//! TLS setup: turns the configured certificate and key files into the rustls
//! `ServerConfig` every connection shares, after checking everything an operator
//! can get wrong, so that a bad pair stops the start with one clear line
//! (docs/wire.md) instead of failing handshakes later.
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
mod tests;
