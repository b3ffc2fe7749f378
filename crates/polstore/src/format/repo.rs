//! Where things are in a repository (`polstore publish --repo`), and how its content is
//! compressed. `repo-format.md` specifies it; the publisher (`ops/repo.rs`) and the
//! puller (`transport/repo.rs`) both name paths only through here.

use std::io::{Read as _, Write as _};

use crate::format::manifest::Hash;

/// `objects/ab/HEX`: a file's content, gzip-compressed. Immutable.
pub fn object_path(hash: Hash) -> String {
    let hex = hash.to_hex();
    format!("objects/{}/{hex}", &hex[..2])
}

/// `manifests/HEX`: a signed manifest (its signature list, then its bytes), gzip-compressed;
/// HEX is the blake3 hash of the manifest's bytes. Immutable.
pub fn manifest_path(manifest: Hash) -> String {
    format!("manifests/{}", manifest.to_hex())
}

/// `deltas/TO/FROM`: the signature list of manifest TO, then the delta that makes TO from
/// manifest FROM (`format::delta`), gzip-compressed. Immutable.
pub fn delta_path(to: Hash, from: Hash) -> String {
    format!("deltas/{}/{}", to.to_hex(), from.to_hex())
}

/// `roots/N.root`: root version N, a signed root file. Immutable.
pub fn root_path(version: u64) -> String {
    format!("roots/{version}.root")
}

/// `heads/NODE`: the node's signed head. Replaced atomically by each publish.
pub fn head_path(node: &str) -> String {
    format!("heads/{node}")
}

/// The largest a gzip stream of `size` bytes may be: deflate's stored blocks add 5 bytes
/// per 16 KiB block, and the gzip header and trailer a few more; a stream larger than this
/// did not come from a publisher's compression.
pub fn compressed_bytes_max(size: u64) -> u64 {
    size.saturating_add(size / 16_384 * 5 + 5)
        .saturating_add(1024)
}

pub fn compress(content: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(content)
        .and_then(|()| encoder.finish())
        .expect("writing to memory does not fail")
}

/// Decompresses one gzip stream of at most `limit` bytes; nothing may follow it.
pub fn decompress(compressed: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    let mut decoder = flate2::bufread::GzDecoder::new(compressed);
    let mut content = Vec::new();
    (&mut decoder)
        .take(limit.saturating_add(1))
        .read_to_end(&mut content)
        .map_err(|error| format!("not a gzip stream: {error}"))?;
    if content.len() as u64 > limit {
        return Err(format!("decompresses to more than {limit} bytes"));
    }
    let rest = decoder.into_inner();
    if !rest.is_empty() {
        return Err("data after the gzip stream".into());
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_round_trips_and_is_bounded() {
        let content = b"bundle agent main { }\n".repeat(100);
        let packed = compress(&content);
        assert!((packed.len() as u64) < compressed_bytes_max(content.len() as u64));
        assert_eq!(decompress(&packed, content.len() as u64).unwrap(), content);
        assert_eq!(
            decompress(&packed, 10).unwrap_err(),
            "decompresses to more than 10 bytes"
        );
        let mut trailing = packed.clone();
        trailing.push(0);
        assert_eq!(
            decompress(&trailing, 1 << 20).unwrap_err(),
            "data after the gzip stream"
        );
        assert!(decompress(b"plain", 100).is_err());
        let random: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert!((compress(&random).len() as u64) <= compressed_bytes_max(random.len() as u64));
    }
}
