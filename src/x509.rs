//! A minimal, strict, bounded reader for one X.509 certificate in DER: just enough
//! to say whom a certificate is for (subject common name, SAN DNS names and IP
//! addresses) and when it is valid (notBefore, notAfter).
//!
//! Why our own: rustls checks signatures and chains but exposes neither names nor
//! dates, and `nexushub check` and the start-up checks need both. Why so small: the
//! bytes come from a file an operator points us at, so this reader is fuzzed like
//! every other parser of outside input. It reads the fixed shape of RFC 5280's
//! `Certificate` and nothing more: no signature checks (rustls and the client do
//! that), no chain building, no extension but subjectAltName.
//!
//! Strict means DER, not BER: definite minimal lengths, single-byte tags, no
//! trailing bytes, times in exactly the two forms RFC 5280 allows. Bounded means
//! the input is capped at [`MAX_CERT_BYTES`] and the SAN list at [`MAX_SAN_ENTRIES`].
//! The parsers are pure functions over `&[u8]` that return a `Result`; none panics.
//!
//! Validity times become instants through [`crate::time`], the calendar
//! arithmetic this reader shares with the access log.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

use crate::time::utc_time;

/// Largest certificate we read, in bytes. Real ones are 1 to 3 KiB; webpki and
/// browsers give up well before this.
pub const MAX_CERT_BYTES: usize = 64 * 1024;

/// Most subjectAltName entries we read from one certificate. Public CAs cap a
/// certificate at 100 names; the cap keeps a hostile file from costing more.
pub const MAX_SAN_ENTRIES: usize = 1024;

// Universal tags (class universal, with the constructed bit where it applies).
const TAG_BOOLEAN: u8 = 0x01;
const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_NUMERIC_STRING: u8 = 0x12;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_TELETEX_STRING: u8 = 0x14;
const TAG_IA5_STRING: u8 = 0x16;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_VISIBLE_STRING: u8 = 0x1a;
const TAG_UNIVERSAL_STRING: u8 = 0x1c;
const TAG_BMP_STRING: u8 = 0x1e;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;

// Context-specific tags of TBSCertificate: [0] version, [1] issuerUniqueID,
// [2] subjectUniqueID, [3] extensions.
const TAG_VERSION: u8 = 0xa0;
const TAG_ISSUER_UID: u8 = 0x81;
const TAG_SUBJECT_UID: u8 = 0x82;
const TAG_EXTENSIONS: u8 = 0xa3;

// GeneralName choices we read: [2] dNSName, [7] iPAddress (both IMPLICIT primitive).
const TAG_SAN_DNS: u8 = 0x82;
const TAG_SAN_IP: u8 = 0x87;

/// id-at-commonName, 2.5.4.3, as DER OID content bytes.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17, as DER OID content bytes.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// Why a certificate could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum X509Error {
    /// The input is longer than [`MAX_CERT_BYTES`].
    TooLarge,
    /// A value runs past the end of its container.
    Truncated,
    /// An indefinite, non-minimal or oversized length.
    BadLength,
    /// A tag other than the one the structure calls for.
    UnexpectedTag,
    /// Bytes left over after a complete value.
    TrailingData,
    /// A version other than v1, v2 or v3.
    BadVersion,
    /// A BOOLEAN that is not one byte of 0x00 or 0xff.
    BadBoolean,
    /// A validity time that is not `YYMMDDHHMMSSZ` / `YYYYMMDDHHMMSSZ` or not a real date.
    BadTime,
    /// A name whose characters do not fit its string type, or control characters.
    BadString,
    /// A SAN iPAddress that is neither 4 nor 16 bytes.
    BadIpAddress,
    /// Two subjectAltName extensions.
    DuplicateExtension,
    /// More than [`MAX_SAN_ENTRIES`] subjectAltName entries.
    TooManyNames,
}

impl X509Error {
    /// A short lowercase description, for `Display` and for fuzz reports.
    pub fn description(self) -> &'static str {
        match self {
            X509Error::TooLarge => "certificate too large",
            X509Error::Truncated => "truncated DER",
            X509Error::BadLength => "invalid DER length",
            X509Error::UnexpectedTag => "unexpected DER tag",
            X509Error::TrailingData => "trailing data after DER value",
            X509Error::BadVersion => "unsupported certificate version",
            X509Error::BadBoolean => "invalid DER boolean",
            X509Error::BadTime => "invalid validity time",
            X509Error::BadString => "invalid characters in a name",
            X509Error::BadIpAddress => "invalid IP address in subjectAltName",
            X509Error::DuplicateExtension => "duplicate subjectAltName extension",
            X509Error::TooManyNames => "too many subjectAltName entries",
        }
    }
}

impl fmt::Display for X509Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for X509Error {}

/// What we read from one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The first commonName of the subject, if it has one.
    pub subject_cn: Option<String>,
    /// The SAN dNSName entries, in certificate order (wildcards as written).
    pub dns_names: Vec<String>,
    /// The SAN iPAddress entries, in certificate order.
    pub ip_addresses: Vec<IpAddr>,
    /// Start of the validity period.
    pub not_before: SystemTime,
    /// End of the validity period (inclusive, as RFC 5280 says).
    pub not_after: SystemTime,
}

/// Reads one DER certificate. The whole input must be the certificate.
pub fn parse_certificate(der: &[u8]) -> Result<Certificate, X509Error> {
    if der.len() > MAX_CERT_BYTES {
        return Err(X509Error::TooLarge);
    }
    let mut outer = Reader::new(der);
    let certificate = outer.read(TAG_SEQUENCE)?;
    outer.finish()?;

    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let mut certificate = Reader::new(certificate);
    let tbs = certificate.read(TAG_SEQUENCE)?;
    certificate.read(TAG_SEQUENCE)?;
    certificate.read(TAG_BIT_STRING)?;
    certificate.finish()?;

    let mut tbs = Reader::new(tbs);
    if let Some(version) = tbs.read_optional(TAG_VERSION)? {
        let mut version = Reader::new(version);
        let number = version.read(TAG_INTEGER)?;
        version.finish()?;
        if !matches!(number, [0] | [1] | [2]) {
            return Err(X509Error::BadVersion);
        }
    }
    tbs.read(TAG_INTEGER)?; // serialNumber
    tbs.read(TAG_SEQUENCE)?; // signature AlgorithmIdentifier
    tbs.read(TAG_SEQUENCE)?; // issuer
    let validity = tbs.read(TAG_SEQUENCE)?;
    let subject = tbs.read(TAG_SEQUENCE)?;
    tbs.read(TAG_SEQUENCE)?; // subjectPublicKeyInfo
    tbs.read_optional(TAG_ISSUER_UID)?;
    tbs.read_optional(TAG_SUBJECT_UID)?;
    let extensions = tbs.read_optional(TAG_EXTENSIONS)?;
    tbs.finish()?;

    let (not_before, not_after) = parse_validity(validity)?;
    let subject_cn = parse_common_name(subject)?;
    let (dns_names, ip_addresses) = match extensions {
        Some(extensions) => parse_extensions(extensions)?,
        None => (Vec::new(), Vec::new()),
    };
    Ok(Certificate {
        subject_cn,
        dns_names,
        ip_addresses,
        not_before,
        not_after,
    })
}

/// True if `bytes` is exactly one DER SEQUENCE: what a DER certificate or key
/// looks like, so that a binary file given where PEM is expected gets a helpful
/// error instead of "nothing found".
pub fn looks_like_der(bytes: &[u8]) -> bool {
    let mut reader = Reader::new(bytes);
    reader.read(TAG_SEQUENCE).is_ok() && reader.finish().is_ok()
}

/// Reads a DER `Time` (UTCTime or GeneralizedTime, by `tag`) in the one form
/// RFC 5280 allows for each: `YYMMDDHHMMSSZ` or `YYYYMMDDHHMMSSZ`.
pub fn parse_time(tag: u8, value: &[u8]) -> Result<SystemTime, X509Error> {
    let (year, rest) = match tag {
        TAG_UTC_TIME if value.len() == 13 => {
            // RFC 5280, 4.1.2.5.1: YY >= 50 is 19YY, else 20YY.
            let yy = i64::from(two_digits(value, 0)?);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        TAG_GENERALIZED_TIME if value.len() == 15 => {
            let high = i64::from(two_digits(value, 0)?);
            let low = i64::from(two_digits(value, 2)?);
            (high * 100 + low, 4)
        }
        TAG_UTC_TIME | TAG_GENERALIZED_TIME => return Err(X509Error::BadTime),
        _ => return Err(X509Error::UnexpectedTag),
    };
    if value.get(rest + 10) != Some(&b'Z') {
        return Err(X509Error::BadTime);
    }
    let month = two_digits(value, rest)?;
    let day = two_digits(value, rest + 2)?;
    let hour = two_digits(value, rest + 4)?;
    let minute = two_digits(value, rest + 6)?;
    let second = two_digits(value, rest + 8)?;
    utc_time(year, month, day, hour, minute, second).ok_or(X509Error::BadTime)
}

/// A cursor over DER values. It only ever shortens its slice, with checked
/// splits, so no input can make it index out of bounds.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Reader { rest: input }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next tag and value.
    fn read_any(&mut self) -> Result<(u8, &'a [u8]), X509Error> {
        let (&tag, rest) = self.rest.split_first().ok_or(X509Error::Truncated)?;
        // Tag numbers >= 31 take more bytes; no field we read uses one.
        if tag & 0x1f == 0x1f {
            return Err(X509Error::UnexpectedTag);
        }
        let (&first, rest) = rest.split_first().ok_or(X509Error::Truncated)?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            // 0x80 is BER's indefinite length; more than 4 length bytes is more
            // than any certificate under MAX_CERT_BYTES needs.
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return Err(X509Error::BadLength);
            }
            let (bytes, rest) = rest.split_at_checked(count).ok_or(X509Error::Truncated)?;
            if bytes.first() == Some(&0) {
                return Err(X509Error::BadLength);
            }
            let len = bytes
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b));
            if len < 0x80 {
                return Err(X509Error::BadLength);
            }
            (len, rest)
        };
        let (value, rest) = rest.split_at_checked(len).ok_or(X509Error::Truncated)?;
        self.rest = rest;
        Ok((tag, value))
    }

    /// The next value, which must have tag `tag`. The tag is checked before the
    /// length, so text or a wrong structure reads as "unexpected tag".
    fn read(&mut self, tag: u8) -> Result<&'a [u8], X509Error> {
        match self.rest.first() {
            None => Err(X509Error::Truncated),
            Some(&found) if found != tag => Err(X509Error::UnexpectedTag),
            Some(_) => self.read_any().map(|(_, value)| value),
        }
    }

    /// The next value if it has tag `tag`, else nothing (and nothing consumed).
    fn read_optional(&mut self, tag: u8) -> Result<Option<&'a [u8]>, X509Error> {
        if self.rest.first() == Some(&tag) {
            self.read(tag).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Succeeds only if every byte was consumed.
    fn finish(&self) -> Result<(), X509Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(X509Error::TrailingData)
        }
    }
}

/// Validity ::= SEQUENCE { notBefore Time, notAfter Time }
fn parse_validity(validity: &[u8]) -> Result<(SystemTime, SystemTime), X509Error> {
    let mut validity = Reader::new(validity);
    let (tag, value) = validity.read_any()?;
    let not_before = parse_time(tag, value)?;
    let (tag, value) = validity.read_any()?;
    let not_after = parse_time(tag, value)?;
    validity.finish()?;
    Ok((not_before, not_after))
}

/// Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }; we keep the
/// first commonName and check the shape of the rest.
fn parse_common_name(name: &[u8]) -> Result<Option<String>, X509Error> {
    let mut common_name = None;
    let mut rdns = Reader::new(name);
    while !rdns.is_empty() {
        let mut attributes = Reader::new(rdns.read(TAG_SET)?);
        while !attributes.is_empty() {
            let mut attribute = Reader::new(attributes.read(TAG_SEQUENCE)?);
            let kind = attribute.read(TAG_OID)?;
            let (tag, value) = attribute.read_any()?;
            attribute.finish()?;
            if kind == OID_COMMON_NAME && common_name.is_none() {
                common_name = Some(decode_string(tag, value)?);
            }
        }
    }
    Ok(common_name)
}

/// Extensions ::= SEQUENCE OF SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE,
/// extnValue OCTET STRING }; only subjectAltName is decoded.
fn parse_extensions(extensions: &[u8]) -> Result<(Vec<String>, Vec<IpAddr>), X509Error> {
    let mut outer = Reader::new(extensions);
    let mut list = Reader::new(outer.read(TAG_SEQUENCE)?);
    outer.finish()?;

    let mut names = None;
    while !list.is_empty() {
        let mut extension = Reader::new(list.read(TAG_SEQUENCE)?);
        let id = extension.read(TAG_OID)?;
        if let Some(critical) = extension.read_optional(TAG_BOOLEAN)? {
            // DER wants FALSE left out, but some CAs write it: accept both values.
            if !matches!(critical, [0x00] | [0xff]) {
                return Err(X509Error::BadBoolean);
            }
        }
        let value = extension.read(TAG_OCTET_STRING)?;
        extension.finish()?;
        if id == OID_SUBJECT_ALT_NAME {
            if names.is_some() {
                return Err(X509Error::DuplicateExtension);
            }
            names = Some(parse_general_names(value)?);
        }
    }
    Ok(names.unwrap_or_default())
}

/// GeneralNames ::= SEQUENCE OF GeneralName; keeps dNSName and iPAddress entries,
/// skips the other choices (email, URI, directoryName...) after checking their TLV.
fn parse_general_names(value: &[u8]) -> Result<(Vec<String>, Vec<IpAddr>), X509Error> {
    let mut outer = Reader::new(value);
    let mut list = Reader::new(outer.read(TAG_SEQUENCE)?);
    outer.finish()?;

    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    let mut count = 0usize;
    while !list.is_empty() {
        count += 1;
        if count > MAX_SAN_ENTRIES {
            return Err(X509Error::TooManyNames);
        }
        let (tag, value) = list.read_any()?;
        match tag {
            TAG_SAN_DNS => {
                // IA5String; a DNS name never has spaces or control characters.
                if value.is_empty() || !value.iter().all(|b| (0x21..=0x7e).contains(b)) {
                    return Err(X509Error::BadString);
                }
                dns_names.push(String::from_utf8_lossy(value).into_owned());
            }
            TAG_SAN_IP => ip_addresses.push(ip_address(value)?),
            // Every GeneralName choice is context-specific.
            0x80..=0xbf => {}
            _ => return Err(X509Error::UnexpectedTag),
        }
    }
    Ok((dns_names, ip_addresses))
}

fn ip_address(value: &[u8]) -> Result<IpAddr, X509Error> {
    if let Ok(v4) = <[u8; 4]>::try_from(value) {
        Ok(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(value) {
        Ok(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        Err(X509Error::BadIpAddress)
    }
}

/// Decodes a DirectoryString-like value to text. The ASCII string types are read
/// as printable ASCII rather than their exact alphabets, because real CAs put
/// `*` and `@` in PrintableStrings and webpki does not care; control characters
/// are refused everywhere, since names end up in log lines.
fn decode_string(tag: u8, value: &[u8]) -> Result<String, X509Error> {
    let text = match tag {
        TAG_UTF8_STRING => std::str::from_utf8(value)
            .map_err(|_| X509Error::BadString)?
            .to_owned(),
        TAG_NUMERIC_STRING | TAG_PRINTABLE_STRING | TAG_TELETEX_STRING | TAG_IA5_STRING
        | TAG_VISIBLE_STRING => {
            if !value.iter().all(|b| (0x20..=0x7e).contains(b)) {
                return Err(X509Error::BadString);
            }
            String::from_utf8_lossy(value).into_owned()
        }
        TAG_BMP_STRING => {
            // UTF-16BE (strictly UCS-2, but UTF-16 is a superset).
            if value.len() % 2 != 0 {
                return Err(X509Error::BadString);
            }
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            String::from_utf16(&units).map_err(|_| X509Error::BadString)?
        }
        TAG_UNIVERSAL_STRING => {
            // UTF-32BE.
            if value.len() % 4 != 0 {
                return Err(X509Error::BadString);
            }
            value
                .chunks_exact(4)
                .map(|quad| {
                    char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]]))
                        .ok_or(X509Error::BadString)
                })
                .collect::<Result<String, X509Error>>()?
        }
        _ => return Err(X509Error::UnexpectedTag),
    };
    if text.chars().any(char::is_control) {
        return Err(X509Error::BadString);
    }
    Ok(text)
}

/// Two ASCII digits at `at` as a number.
fn two_digits(bytes: &[u8], at: usize) -> Result<u32, X509Error> {
    let digit = |i: usize| match bytes.get(i) {
        Some(b @ b'0'..=b'9') => Ok(u32::from(b - b'0')),
        _ => Err(X509Error::BadTime),
    };
    Ok(digit(at)? * 10 + digit(at + 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{format_rfc3339, parse_rfc3339};

    /// The leaf of tests/fixtures/localhost.pem in DER (see tests/fixtures/regen.sh).
    const LOCALHOST_DER: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/localhost.der"
    ));

    fn at(text: &str) -> SystemTime {
        parse_rfc3339(text).unwrap_or_else(|| panic!("bad test time {text}"))
    }

    // --- a tiny DER writer, to build certificates with one thing wrong ---

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|&b| b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// A Name with one attribute per RDN.
    fn name(attributes: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
        let rdns: Vec<Vec<u8>> = attributes
            .iter()
            .map(|(oid, tag, value)| {
                let attribute = cat(&[&tlv(TAG_OID, oid), &tlv(*tag, value)]);
                tlv(TAG_SET, &tlv(TAG_SEQUENCE, &attribute))
            })
            .collect();
        tlv(TAG_SEQUENCE, &rdns.concat())
    }

    fn cn(tag: u8, value: &[u8]) -> Vec<u8> {
        name(&[(OID_COMMON_NAME, tag, value)])
    }

    fn validity(not_before: &[u8], not_after: &[u8]) -> Vec<u8> {
        let time = |t: &[u8]| {
            let tag = if t.len() == 15 {
                TAG_GENERALIZED_TIME
            } else {
                TAG_UTC_TIME
            };
            tlv(tag, t)
        };
        tlv(TAG_SEQUENCE, &cat(&[&time(not_before), &time(not_after)]))
    }

    fn good_validity() -> Vec<u8> {
        validity(b"250101000000Z", b"20551231000000Z")
    }

    /// One Extension.
    fn extension(oid: &[u8], critical: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
        let critical = critical.map(|c| tlv(TAG_BOOLEAN, c)).unwrap_or_default();
        tlv(
            TAG_SEQUENCE,
            &cat(&[&tlv(TAG_OID, oid), &critical, &tlv(TAG_OCTET_STRING, value)]),
        )
    }

    /// A subjectAltName extension value from raw GeneralName TLVs.
    fn san(entries: &[(u8, &[u8])]) -> Vec<u8> {
        let entries: Vec<Vec<u8>> = entries.iter().map(|(t, v)| tlv(*t, v)).collect();
        tlv(TAG_SEQUENCE, &entries.concat())
    }

    fn extensions(list: &[Vec<u8>]) -> Vec<u8> {
        tlv(TAG_EXTENSIONS, &tlv(TAG_SEQUENCE, &list.concat()))
    }

    /// A certificate around the given parts; the signature is nonsense, which is
    /// fine: this reader does not look at it.
    fn cert(version: Option<u8>, validity: &[u8], subject: &[u8], exts: &[u8]) -> Vec<u8> {
        let version = version
            .map(|v| tlv(TAG_VERSION, &tlv(TAG_INTEGER, &[v])))
            .unwrap_or_default();
        let algorithm = tlv(TAG_SEQUENCE, &tlv(TAG_OID, &[0x2a, 0x86, 0x48]));
        let issuer = cn(TAG_UTF8_STRING, b"issuer");
        let spki = tlv(TAG_SEQUENCE, &algorithm);
        let tbs = tlv(
            TAG_SEQUENCE,
            &cat(&[
                &version,
                &tlv(TAG_INTEGER, &[1]),
                &algorithm,
                &issuer,
                validity,
                subject,
                &spki,
                exts,
            ]),
        );
        let signature = tlv(TAG_BIT_STRING, &[0, 1, 2, 3]);
        tlv(TAG_SEQUENCE, &cat(&[&tbs, &algorithm, &signature]))
    }

    fn with_subject(subject: &[u8]) -> Result<Certificate, X509Error> {
        parse_certificate(&cert(Some(2), &good_validity(), subject, &[]))
    }

    fn with_san(entries: &[(u8, &[u8])]) -> Result<Certificate, X509Error> {
        let exts = extensions(&[extension(OID_SUBJECT_ALT_NAME, None, &san(entries))]);
        parse_certificate(&cert(
            Some(2),
            &good_validity(),
            &cn(TAG_UTF8_STRING, b"x"),
            &exts,
        ))
    }

    // --- real certificates ---

    #[test]
    fn fixture_localhost_leaf() {
        let c = parse_certificate(LOCALHOST_DER).expect("fixture parses");
        assert_eq!(c.subject_cn.as_deref(), Some("localhost"));
        assert_eq!(
            c.dns_names,
            [
                "localhost",
                "*.localhost",
                "hello.localhost",
                "*.test.localhost"
            ]
        );
        assert_eq!(
            c.ip_addresses,
            [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ]
        );
        assert_eq!(c.not_before, at("2025-01-01T00:00:00Z"));
        assert_eq!(c.not_after, at("2055-12-31T00:00:00Z"));
    }

    #[test]
    fn fixture_every_prefix_is_refused() {
        for len in 0..LOCALHOST_DER.len() {
            assert!(
                parse_certificate(&LOCALHOST_DER[..len]).is_err(),
                "prefix {len}"
            );
        }
    }

    #[test]
    fn fixture_every_byte_mutation_is_survived() {
        // Not a check of the results: any byte value anywhere must not panic.
        let mut copy = LOCALHOST_DER.to_vec();
        for i in 0..copy.len() {
            let original = copy[i];
            for value in 0..=255u8 {
                copy[i] = value;
                let _ = parse_certificate(&copy);
            }
            copy[i] = original;
        }
    }

    #[test]
    fn fixture_with_trailing_byte() {
        let mut der = LOCALHOST_DER.to_vec();
        der.push(0);
        assert_eq!(parse_certificate(&der), Err(X509Error::TrailingData));
    }

    // --- built certificates, one thing at a time ---

    #[test]
    fn v1_without_extensions() {
        let c = parse_certificate(&cert(
            None,
            &good_validity(),
            &cn(TAG_UTF8_STRING, b"a"),
            &[],
        ))
        .expect("parses");
        assert_eq!(c.subject_cn.as_deref(), Some("a"));
        assert!(c.dns_names.is_empty() && c.ip_addresses.is_empty());
    }

    #[test]
    fn version_4_is_refused() {
        let der = cert(Some(3), &good_validity(), &cn(TAG_UTF8_STRING, b"a"), &[]);
        assert_eq!(parse_certificate(&der), Err(X509Error::BadVersion));
    }

    #[test]
    fn empty_subject_has_no_cn() {
        assert_eq!(
            with_subject(&tlv(TAG_SEQUENCE, &[])).map(|c| c.subject_cn),
            Ok(None)
        );
    }

    #[test]
    fn subject_without_cn() {
        let subject = name(&[(&[0x55, 0x04, 0x0a], TAG_UTF8_STRING, b"org")]);
        assert_eq!(with_subject(&subject).map(|c| c.subject_cn), Ok(None));
    }

    #[test]
    fn first_cn_is_kept() {
        let subject = name(&[
            (OID_COMMON_NAME, TAG_UTF8_STRING, b"first"),
            (OID_COMMON_NAME, TAG_UTF8_STRING, b"second"),
        ]);
        assert_eq!(
            with_subject(&subject).map(|c| c.subject_cn),
            Ok(Some("first".into()))
        );
    }

    #[test]
    fn cn_utf8_non_ascii() {
        let subject = cn(TAG_UTF8_STRING, "h\u{e9}llo".as_bytes());
        assert_eq!(
            with_subject(&subject).map(|c| c.subject_cn),
            Ok(Some("h\u{e9}llo".into()))
        );
    }

    #[test]
    fn cn_printable_with_star() {
        let subject = cn(TAG_PRINTABLE_STRING, b"*.example.com");
        assert_eq!(
            with_subject(&subject).map(|c| c.subject_cn),
            Ok(Some("*.example.com".into()))
        );
    }

    #[test]
    fn cn_bmp_string() {
        let subject = cn(TAG_BMP_STRING, &[0, b'h', 0, b'i', 0x00, 0xe9]);
        assert_eq!(
            with_subject(&subject).map(|c| c.subject_cn),
            Ok(Some("hi\u{e9}".into()))
        );
    }

    #[test]
    fn cn_bmp_string_odd_length() {
        let subject = cn(TAG_BMP_STRING, &[0, b'h', 0]);
        assert_eq!(with_subject(&subject), Err(X509Error::BadString));
    }

    #[test]
    fn cn_bmp_string_lone_surrogate() {
        let subject = cn(TAG_BMP_STRING, &[0xd8, 0x00]);
        assert_eq!(with_subject(&subject), Err(X509Error::BadString));
    }

    #[test]
    fn cn_universal_string() {
        let subject = cn(TAG_UNIVERSAL_STRING, &[0, 0, 0, b'o', 0, 1, 0xf6, 0x00]);
        assert_eq!(
            with_subject(&subject).map(|c| c.subject_cn),
            Ok(Some("o\u{1f600}".into()))
        );
    }

    #[test]
    fn cn_universal_string_not_a_char() {
        let subject = cn(TAG_UNIVERSAL_STRING, &[0, 0x11, 0, 0]);
        assert_eq!(with_subject(&subject), Err(X509Error::BadString));
    }

    #[test]
    fn cn_invalid_utf8() {
        let subject = cn(TAG_UTF8_STRING, &[b'a', 0xff]);
        assert_eq!(with_subject(&subject), Err(X509Error::BadString));
    }

    #[test]
    fn cn_with_newline() {
        let subject = cn(TAG_UTF8_STRING, b"a\nb");
        assert_eq!(with_subject(&subject), Err(X509Error::BadString));
    }

    #[test]
    fn cn_printable_with_nul() {
        let subject = cn(TAG_PRINTABLE_STRING, b"a\0b");
        assert_eq!(with_subject(&subject), Err(X509Error::BadString));
    }

    #[test]
    fn cn_of_integer_type() {
        let subject = cn(TAG_INTEGER, &[1]);
        assert_eq!(with_subject(&subject), Err(X509Error::UnexpectedTag));
    }

    #[test]
    fn rdn_not_a_set() {
        let subject = tlv(TAG_SEQUENCE, &tlv(TAG_SEQUENCE, &[]));
        assert_eq!(with_subject(&subject), Err(X509Error::UnexpectedTag));
    }

    #[test]
    fn attribute_with_extra_value() {
        let attribute = cat(&[
            &tlv(TAG_OID, OID_COMMON_NAME),
            &tlv(TAG_UTF8_STRING, b"a"),
            &tlv(TAG_UTF8_STRING, b"b"),
        ]);
        let subject = tlv(TAG_SEQUENCE, &tlv(TAG_SET, &tlv(TAG_SEQUENCE, &attribute)));
        assert_eq!(with_subject(&subject), Err(X509Error::TrailingData));
    }

    #[test]
    fn san_dns_ipv4_ipv6_and_skipped_choices() {
        let c = with_san(&[
            (0x81, b"me@example.com"),
            (TAG_SAN_DNS, b"example.com"),
            (TAG_SAN_IP, &[10, 0, 0, 1]),
            (0x86, b"https://example.com/"),
            (
                TAG_SAN_IP,
                &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
            (0xa4, &tlv(TAG_SEQUENCE, &[])),
            (TAG_SAN_DNS, b"*.example.com"),
        ])
        .expect("parses");
        assert_eq!(c.dns_names, ["example.com", "*.example.com"]);
        assert_eq!(
            c.ip_addresses,
            [
                "10.0.0.1".parse::<IpAddr>().expect("ip"),
                "2001:db8::1".parse::<IpAddr>().expect("ip")
            ]
        );
    }

    #[test]
    fn san_empty_list() {
        let c = with_san(&[]).expect("parses");
        assert!(c.dns_names.is_empty() && c.ip_addresses.is_empty());
    }

    #[test]
    fn san_dns_empty() {
        assert_eq!(with_san(&[(TAG_SAN_DNS, b"")]), Err(X509Error::BadString));
    }

    #[test]
    fn san_dns_with_space() {
        assert_eq!(
            with_san(&[(TAG_SAN_DNS, b"a b")]),
            Err(X509Error::BadString)
        );
    }

    #[test]
    fn san_dns_with_crlf() {
        assert_eq!(
            with_san(&[(TAG_SAN_DNS, b"a\r\nb")]),
            Err(X509Error::BadString)
        );
    }

    #[test]
    fn san_dns_non_ascii() {
        assert_eq!(
            with_san(&[(TAG_SAN_DNS, "\u{e9}.com".as_bytes())]),
            Err(X509Error::BadString)
        );
    }

    #[test]
    fn san_ip_of_five_bytes() {
        assert_eq!(
            with_san(&[(TAG_SAN_IP, &[1, 2, 3, 4, 5])]),
            Err(X509Error::BadIpAddress)
        );
    }

    #[test]
    fn san_ip_with_netmask() {
        // 8 bytes is the name-constraints form (address + mask), not a SAN.
        assert_eq!(
            with_san(&[(TAG_SAN_IP, &[10, 0, 0, 0, 255, 0, 0, 0])]),
            Err(X509Error::BadIpAddress)
        );
    }

    #[test]
    fn san_entry_of_universal_type() {
        assert_eq!(
            with_san(&[(TAG_IA5_STRING, b"example.com")]),
            Err(X509Error::UnexpectedTag)
        );
    }

    #[test]
    fn san_too_many_entries() {
        let entries = vec![(TAG_SAN_IP, &[127u8, 0, 0, 1][..]); MAX_SAN_ENTRIES + 1];
        assert_eq!(with_san(&entries), Err(X509Error::TooManyNames));
    }

    #[test]
    fn san_at_the_cap() {
        let entries = vec![(TAG_SAN_IP, &[127u8, 0, 0, 1][..]); MAX_SAN_ENTRIES];
        assert_eq!(
            with_san(&entries).map(|c| c.ip_addresses.len()),
            Ok(MAX_SAN_ENTRIES)
        );
    }

    #[test]
    fn san_twice() {
        let value = san(&[(TAG_SAN_DNS, b"a.example")]);
        let exts = extensions(&[
            extension(OID_SUBJECT_ALT_NAME, None, &value),
            extension(OID_SUBJECT_ALT_NAME, None, &value),
        ]);
        let der = cert(Some(2), &good_validity(), &cn(TAG_UTF8_STRING, b"x"), &exts);
        assert_eq!(parse_certificate(&der), Err(X509Error::DuplicateExtension));
    }

    #[test]
    fn san_value_with_trailing_data() {
        let mut value = san(&[(TAG_SAN_DNS, b"a.example")]);
        value.push(0);
        let exts = extensions(&[extension(OID_SUBJECT_ALT_NAME, None, &value)]);
        let der = cert(Some(2), &good_validity(), &cn(TAG_UTF8_STRING, b"x"), &exts);
        assert_eq!(parse_certificate(&der), Err(X509Error::TrailingData));
    }

    #[test]
    fn critical_true_and_false_accepted() {
        let value = san(&[(TAG_SAN_DNS, b"a.example")]);
        let exts = extensions(&[
            extension(&[0x55, 0x1d, 0x13], Some(&[0xff]), &tlv(TAG_SEQUENCE, &[])),
            extension(OID_SUBJECT_ALT_NAME, Some(&[0x00]), &value),
        ]);
        let der = cert(Some(2), &good_validity(), &cn(TAG_UTF8_STRING, b"x"), &exts);
        assert_eq!(
            parse_certificate(&der).map(|c| c.dns_names),
            Ok(vec!["a.example".to_string()])
        );
    }

    #[test]
    fn critical_of_bad_value() {
        let exts = extensions(&[extension(&[0x55, 0x1d, 0x13], Some(&[0x01]), &[])]);
        let der = cert(Some(2), &good_validity(), &cn(TAG_UTF8_STRING, b"x"), &exts);
        assert_eq!(parse_certificate(&der), Err(X509Error::BadBoolean));
    }

    #[test]
    fn unknown_extension_skipped() {
        let exts = extensions(&[extension(&[0x2b, 0x06, 0x01], None, b"\xff\xfe anything")]);
        let der = cert(Some(2), &good_validity(), &cn(TAG_UTF8_STRING, b"x"), &exts);
        assert!(parse_certificate(&der).is_ok());
    }

    #[test]
    fn validity_with_one_time() {
        let v = tlv(TAG_SEQUENCE, &tlv(TAG_UTC_TIME, b"250101000000Z"));
        let der = cert(Some(2), &v, &cn(TAG_UTF8_STRING, b"x"), &[]);
        assert_eq!(parse_certificate(&der), Err(X509Error::Truncated));
    }

    #[test]
    fn validity_with_bad_time() {
        let der = cert(
            Some(2),
            &validity(b"251301000000Z", b"260101000000Z"),
            &cn(TAG_UTF8_STRING, b"x"),
            &[],
        );
        assert_eq!(parse_certificate(&der), Err(X509Error::BadTime));
    }

    #[test]
    fn validity_both_generalized() {
        let c = parse_certificate(&cert(
            Some(2),
            &validity(b"19991231235959Z", b"20500101000000Z"),
            &cn(TAG_UTF8_STRING, b"x"),
            &[],
        ))
        .expect("parses");
        assert_eq!(c.not_before, at("1999-12-31T23:59:59Z"));
        assert_eq!(c.not_after, at("2050-01-01T00:00:00Z"));
    }

    // --- DER framing, on raw bytes ---

    macro_rules! der_error {
        ($name:ident, $input:expr, $error:expr) => {
            #[test]
            fn $name() {
                assert_eq!(parse_certificate($input), Err($error));
            }
        };
    }

    der_error!(der_empty, &[], X509Error::Truncated);
    der_error!(der_tag_only, &[0x30], X509Error::Truncated);
    der_error!(
        der_short_value,
        &[0x30, 0x03, 0x02, 0x01],
        X509Error::Truncated
    );
    der_error!(
        der_indefinite_length,
        &[0x30, 0x80, 0, 0],
        X509Error::BadLength
    );
    der_error!(
        der_long_form_for_short,
        &[0x30, 0x81, 0x05, 0, 0, 0, 0, 0],
        X509Error::BadLength
    );
    der_error!(
        der_length_leading_zero,
        &[0x30, 0x82, 0x00, 0x90],
        X509Error::BadLength
    );
    der_error!(
        der_five_length_bytes,
        &[0x30, 0x85, 1, 0, 0, 0, 0],
        X509Error::BadLength
    );
    der_error!(
        der_length_bytes_missing,
        &[0x30, 0x82, 0x01],
        X509Error::Truncated
    );
    der_error!(
        der_huge_length,
        &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        X509Error::Truncated
    );
    der_error!(
        der_high_tag_number,
        &[0x3f, 0x01, 0x00],
        X509Error::UnexpectedTag
    );
    der_error!(
        der_set_not_sequence,
        &[0x31, 0x00],
        X509Error::UnexpectedTag
    );
    der_error!(der_empty_sequence, &[0x30, 0x00], X509Error::Truncated);
    der_error!(
        der_trailing_after_outer,
        &[0x30, 0x00, 0x00],
        X509Error::TrailingData
    );
    der_error!(
        der_text,
        b"-----BEGIN CERTIFICATE-----",
        X509Error::UnexpectedTag
    );
    der_error!(
        der_too_large,
        &[0u8; MAX_CERT_BYTES + 1],
        X509Error::TooLarge
    );

    #[test]
    fn looks_like_der_fixture() {
        assert!(looks_like_der(LOCALHOST_DER));
    }

    #[test]
    fn looks_like_der_text() {
        assert!(!looks_like_der(b"not a certificate\n"));
    }

    #[test]
    fn looks_like_der_with_trailing_byte() {
        let mut der = LOCALHOST_DER.to_vec();
        der.push(b'\n');
        assert!(!looks_like_der(&der));
    }

    // --- times ---

    macro_rules! time {
        ($name:ident, $tag:expr, $input:expr, Ok($expected:expr)) => {
            #[test]
            fn $name() {
                assert_eq!(
                    parse_time($tag, $input).map(format_rfc3339),
                    Ok($expected.into())
                );
            }
        };
        ($name:ident, $tag:expr, $input:expr, Err($error:expr)) => {
            #[test]
            fn $name() {
                assert_eq!(parse_time($tag, $input), Err($error));
            }
        };
    }

    const UTC: u8 = TAG_UTC_TIME;
    const GEN: u8 = TAG_GENERALIZED_TIME;
    time!(utc_plain, UTC, b"250101000000Z", Ok("2025-01-01T00:00:00Z"));
    time!(utc_1950, UTC, b"500101000000Z", Ok("1950-01-01T00:00:00Z"));
    time!(utc_2049, UTC, b"491231235959Z", Ok("2049-12-31T23:59:59Z"));
    time!(
        utc_1969_before_epoch,
        UTC,
        b"691231235959Z",
        Ok("1969-12-31T23:59:59Z")
    );
    time!(
        utc_leap_day,
        UTC,
        b"240229120000Z",
        Ok("2024-02-29T12:00:00Z")
    );
    time!(
        utc_leap_day_2000,
        UTC,
        b"000229000000Z",
        Ok("2000-02-29T00:00:00Z")
    );
    time!(
        utc_not_leap_day,
        UTC,
        b"230229120000Z",
        Err(X509Error::BadTime)
    );
    time!(utc_month_13, UTC, b"251301000000Z", Err(X509Error::BadTime));
    time!(utc_month_0, UTC, b"250001000000Z", Err(X509Error::BadTime));
    time!(utc_day_0, UTC, b"250100000000Z", Err(X509Error::BadTime));
    time!(utc_april_31, UTC, b"250431000000Z", Err(X509Error::BadTime));
    time!(utc_hour_24, UTC, b"250101240000Z", Err(X509Error::BadTime));
    time!(
        utc_minute_60,
        UTC,
        b"250101006000Z",
        Err(X509Error::BadTime)
    );
    time!(
        utc_second_60,
        UTC,
        b"250101000060Z",
        Err(X509Error::BadTime)
    );
    time!(utc_no_seconds, UTC, b"2501010000Z", Err(X509Error::BadTime));
    time!(
        utc_offset,
        UTC,
        b"250101000000+0100",
        Err(X509Error::BadTime)
    );
    time!(utc_no_z, UTC, b"2501010000001", Err(X509Error::BadTime));
    time!(utc_space, UTC, b"25010100000 Z", Err(X509Error::BadTime));
    time!(utc_sign, UTC, b"-50101000000Z", Err(X509Error::BadTime));
    time!(utc_empty, UTC, b"", Err(X509Error::BadTime));
    time!(
        gen_plain,
        GEN,
        b"20551231000000Z",
        Ok("2055-12-31T00:00:00Z")
    );
    time!(gen_max, GEN, b"99991231235959Z", Ok("9999-12-31T23:59:59Z"));
    time!(
        gen_year_0,
        GEN,
        b"00000101000000Z",
        Ok("0000-01-01T00:00:00Z")
    );
    time!(
        gen_2100_not_leap,
        GEN,
        b"21000229000000Z",
        Err(X509Error::BadTime)
    );
    time!(
        gen_fraction,
        GEN,
        b"20250101000000.5Z",
        Err(X509Error::BadTime)
    );
    time!(gen_no_z, GEN, b"20250101000000", Err(X509Error::BadTime));
    time!(gen_utc_form, GEN, b"250101000000Z", Err(X509Error::BadTime));
    time!(
        utc_generalized_form,
        UTC,
        b"20250101000000Z",
        Err(X509Error::BadTime)
    );
    time!(
        time_of_octet_string,
        TAG_OCTET_STRING,
        b"250101000000Z",
        Err(X509Error::UnexpectedTag)
    );
}
