//! Fuzz target `parse_time`: `x509::parse_time`, `time::format_rfc3339` and
//! `time::parse_rfc3339`: DER times spell their calendar fields, text round-trips.
//! The properties are in `../properties.rs`, shared with the seed replay in
//! `tests/fuzz_seeds.rs`.
#![no_main]

// Each target uses one of the shared property functions.
#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::parse_time(data));
