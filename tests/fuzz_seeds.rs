//! Replays the committed fuzz seeds through the fuzz targets' property checks, so
//! every plain `cargo test` (and so CI) exercises them without cargo-fuzz.
//!
//! The checks are `fuzz/properties.rs`, compiled in here as they are in each fuzz
//! target; the seeds are the files of `fuzz/corpus/<target>/`, regression inputs
//! from past crashes included (named `regression-*`). One test per target; a
//! failure names the seed file.

use std::path::{Path, PathBuf};

#[path = "../fuzz/properties.rs"]
mod properties;

/// Runs `check` on every file of `fuzz/corpus/<target>/`, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    for seed in &seeds {
        let bytes = match std::fs::read(seed) {
            Ok(bytes) => bytes,
            Err(e) => panic!("{}: {e}", seed.display()),
        };
        if std::panic::catch_unwind(|| check(&bytes)).is_err() {
            panic!("property violated by seed {}", seed.display());
        }
    }
}

#[test]
fn parse_request_seeds() {
    replay("parse_request", properties::parse_request);
}

#[test]
fn parse_response_seeds() {
    replay("parse_response", properties::parse_response);
}

#[test]
fn decode_chunked_seeds() {
    replay("decode_chunked", properties::decode_chunked);
}

#[test]
fn normalize_host_seeds() {
    replay("normalize_host", properties::normalize_host);
}

#[test]
fn parse_config_seeds() {
    replay("parse_config", properties::parse_config);
}

#[test]
fn parse_certificate_seeds() {
    replay("parse_certificate", properties::parse_certificate);
}

#[test]
fn parse_time_seeds() {
    replay("parse_time", properties::parse_time);
}
