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
mod tests;
