//! Base64 encoding (RFC 4648 section 4: the standard alphabet, with `=` padding), for
//! the WebSocket handshake's `Sec-WebSocket-Key` and `Sec-WebSocket-Accept`. Encoding
//! only, plus the one shape check a WebSocket server needs of a key.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `bytes` in base64, padded.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        // A group of k bytes gives k + 1 significant characters, then padding.
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether `text` is the base64 of exactly 16 bytes, as RFC 6455 section 4.2.1
/// requires of `Sec-WebSocket-Key`.
pub fn is_base64_of_16_bytes(text: &str) -> bool {
    let t = text.as_bytes();
    // 16 bytes: five whole groups (20 characters), then one byte (2 characters, `==`);
    // the last character carries 2 bits, so its low 4 bits are zero.
    t.len() == 24
        && t[..22].iter().all(|c| ALPHABET.contains(c))
        && &t[22..] == b"=="
        && ALPHABET
            .iter()
            .position(|&c| c == t[21])
            .is_some_and(|v| v & 0x0f == 0)
}

#[cfg(test)]
mod tests {
    use super::{base64, is_base64_of_16_bytes};

    // RFC 4648 section 10.
    #[test]
    fn base64_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input:?}");
        }
    }

    #[test]
    fn base64_uses_the_whole_standard_alphabet() {
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
        assert_eq!(base64(&[0x00, 0x10, 0x83]), "ABCD");
    }

    #[test]
    fn base64_key_shape() {
        // The RFC 6455 section 1.3 example key is the base64 of 16 bytes.
        assert!(is_base64_of_16_bytes("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_base64_of_16_bytes(&base64(&[0xff; 16])));
        assert!(!is_base64_of_16_bytes(&base64(&[0xff; 15])));
        assert!(!is_base64_of_16_bytes(&base64(&[0xff; 17])));
        assert!(!is_base64_of_16_bytes("dGhlIHNhbXBsZSBub25jZR=="));
        assert!(!is_base64_of_16_bytes("dGhlIHNhbXBsZSBub25j*Q=="));
        assert!(!is_base64_of_16_bytes(""));
    }
}
