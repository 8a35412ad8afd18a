//! Fuzz target `parse_request`: request heads (`http1::parse_request`, pipelined), their
//! cap and prefix behaviour, and their trip through `write_backend_request`.
//! The properties are in `../properties.rs`, shared with the seed replay in
//! `tests/fuzz_seeds.rs`.
#![no_main]

// Each target uses one of the shared property functions.
#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::parse_request(data));
