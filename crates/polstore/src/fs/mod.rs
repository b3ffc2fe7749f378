//! File system primitives: durable writes, the writer lock, bounded reads.

pub mod durable;
pub mod read;

use std::fs::FileType;
use std::os::unix::fs::FileTypeExt;

/// A file type in the words every message uses.
pub fn type_name(file_type: FileType) -> &'static str {
    if file_type.is_file() {
        "file"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_symlink() {
        "symbolic link"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "device node"
    } else if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else {
        "special file"
    }
}
