//! Fuzz target `parse_certificate`: `x509::parse_certificate` over arbitrary DER: total,
//! strict about where the certificate ends, validity times round-trip.
//! The properties are in `../properties.rs`, shared with the seed replay in
//! `tests/fuzz_seeds.rs`.
#![no_main]

// Each target uses one of the shared property functions.
#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::parse_certificate(data));
