//! Fuzz target `parse_config`: `config::parse`: errors name a line of the text; an
//! accepted config has unique normalised hosts and round-trips through text.
//! The properties are in `../properties.rs`, shared with the seed replay in
//! `tests/fuzz_seeds.rs`.
#![no_main]

// Each target uses one of the shared property functions.
#[allow(dead_code)]
#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::parse_config(data));
