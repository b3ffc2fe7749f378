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

/// What is wrong with one of the store's own paths (the store, `staging/`, `generations/`,
/// the database, the configuration, the format file, the lock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathProblem {
    pub path: std::path::PathBuf,
    pub kind: PathProblemKind,
    /// `verify --repair` puts it right: polstore can make it anew or move it aside. The
    /// store itself, its configuration, its format file and a database others could write
    /// hold what polstore cannot vouch for: the operator checks them and fixes them.
    pub repairable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathProblemKind {
    /// Something other than what polstore made is there (a symbolic link, a file where a
    /// directory belongs, ...): its type in words. Never followed, never deleted.
    Foreign(&'static str),
    /// Owned by another user.
    Owner(u32),
    /// Writable by group or others, or (the database) readable by them: the mode found.
    Mode(u32),
}

impl std::fmt::Display for PathProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match self.kind {
            PathProblemKind::Foreign(found) => write!(
                f,
                "{path} is a {found}, not what polstore made there; polstore follows and deletes nothing it did not make"
            ),
            PathProblemKind::Owner(uid) => {
                write!(f, "{path} belongs to user {uid}, not to polstore's user")
            }
            PathProblemKind::Mode(mode) => write!(
                f,
                "{path} has mode {mode:04o}: others than polstore's user could change{} it",
                if mode & 0o044 != 0 && mode & 0o022 == 0 {
                    " or read"
                } else {
                    ""
                }
            ),
        }
    }
}
