//! Fuzz target `normalize_host`: `host::normalize` and `host::split`: the routing key
//! is idempotent, lowercase, portless, without a trailing dot.
//! The properties are in `../properties.rs`, shared with the seed replay in
//! `tests/fuzz_seeds.rs`.
#![no_main]

// Each target uses one of the shared property functions.
#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::normalize_host(data));
