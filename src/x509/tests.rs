//! Certificate reader tests: the committed fixture, hand-built DER for each
//! field, and DER times.

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
