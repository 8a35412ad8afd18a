//! Fuzz target `decode_chunked`: the chunked body decoder fed in splits derived from
//! the input, and re-encoding what it decoded.
//! The properties are in `../properties.rs`, shared with the seed replay in
//! `tests/fuzz_seeds.rs`.
#![no_main]

// Each target uses one of the shared property functions.
#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::decode_chunked(data));
