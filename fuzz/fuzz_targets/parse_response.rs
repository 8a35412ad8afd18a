//! Fuzz target `parse_response`: backend response heads (`http1::parse_response`,
//! pipelined), and their trip through `client_framing` and
//! `write_client_response_head` for HTTP/1.0 and HTTP/1.1 clients.
//! The properties are in `../properties.rs`, shared with the seed replay in
//! `tests/fuzz_seeds.rs`.
#![no_main]

// Each target uses one of the shared property functions.
#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::parse_response(data));
