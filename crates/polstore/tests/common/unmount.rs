//! Shared by the test crates of `polstore` and `polstore-cli` (the latter includes this
//! file by path): the clean-up after a test that made stores with a read-only mount.

use std::path::{Path, PathBuf};

/// Takes away every mount under `root` (the read-only mounts of stores a test made), so
/// that its temporary directory can be removed. Deepest first, detached.
pub fn unmount_under(root: &Path) {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(root))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.as_os_str().len()));
    for point in points {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&point)
            .status();
    }
}
