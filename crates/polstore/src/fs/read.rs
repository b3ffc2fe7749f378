//! Bounded reads of files that someone else may have planted or changed.

use std::fs;
use std::path::Path;

/// The content of a regular file of at most `limit` bytes; `None` for anything else (a
/// symlink, a fifo, a device, a file too large), so that nothing planted in the store
/// can make a read hang or exhaust memory.
pub fn read_bounded(path: &Path, limit: usize) -> Option<Vec<u8>> {
    let metadata = fs::symlink_metadata(path).ok()?;
    if !metadata.is_file() || metadata.len() > limit as u64 {
        return None;
    }
    fs::read(path).ok()
}
