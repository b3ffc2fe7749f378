//! The bodies of the fuzz targets in `fuzz/`, kept here so that `tests/fuzz_corpus.rs`
//! replays the checked-in corpora through exactly the same code on every test run.
//!
//! Each takes arbitrary bytes and must neither panic nor hang nor allocate without bound;
//! where a parser accepts input, what it accepted must round-trip.

use crate::candidate::source::{self, Item};
use crate::config::LimitsConfig;
use crate::format::manifest::{Manifest, ManifestLimits};
use crate::format::policy_path::PathLimits;
use crate::format::records::{
    self, AttemptRecord, GenerationRecord, HealthRecord, ManifestRecord, StampsRecord, StateRecord,
};
use crate::format::signify::{self, PublicKey, SecretKey, Signature};

/// The manifest parser: what it accepts renders back to the same bytes.
pub fn manifest(data: &[u8]) {
    let limits = ManifestLimits {
        entries_max: 10_000,
        file_bytes_max: 1 << 30,
        tree_bytes_max: 1 << 40,
        paths: PathLimits {
            path_bytes_max: 1024,
            depth_max: 32,
        },
    };
    if let Ok(manifest) = Manifest::parse(data, limits) {
        assert_eq!(
            manifest.render().as_bytes(),
            data,
            "accepted a non-canonical manifest"
        );
    }
}

/// The signify key and signature parsers, and verification with whatever parsed.
pub fn signify(data: &[u8]) {
    let public = PublicKey::parse(data);
    let _ = SecretKey::parse(data);
    let signature = Signature::parse(data);
    if let (Ok(public), Ok(signature)) = (public, signature) {
        let _ = signify::verify(&[public], data, &signature);
    }
}

/// Tar, gzip and bzip2 ingest from memory, under small limits, into a sink that keeps
/// nothing.
pub fn tar(data: &[u8]) {
    let limits = LimitsConfig {
        files_max: 64,
        file_bytes_max: 1 << 16,
        tree_bytes_max: 1 << 20,
        depth_max: 8,
        path_bytes_max: 256,
    };
    let mut total = 0usize;
    let _ = source::read_archive_bytes(data, &limits, &mut |item| {
        if let Item::File { content, .. } = item {
            total += content.len();
            assert!(total <= 1 << 20, "the limits let more bytes through");
        }
        Ok(())
    });
}

/// Every database record type: what decodes, encodes back to the same bytes.
pub fn records(data: &[u8]) {
    fn round_trip<T: records::Record>(data: &[u8]) {
        if let Ok(record) = records::decode::<T>(data) {
            let again = records::encode(&record);
            let reparsed: T = records::decode(&again).expect("an encoded record decodes");
            assert_eq!(records::encode(&reparsed), again);
        }
    }
    round_trip::<StateRecord>(data);
    round_trip::<GenerationRecord>(data);
    round_trip::<ManifestRecord>(data);
    round_trip::<AttemptRecord>(data);
    round_trip::<HealthRecord>(data);
    round_trip::<StampsRecord>(data);
}
