//! Bounded reads of files that someone else may have planted or changed.
//!
//! **Invariant:** every read here opens the path once with `O_NOFOLLOW | O_NONBLOCK`,
//! checks the open descriptor with fstat (a regular file, at most `limit` bytes), and reads
//! at most `limit + 1` bytes: a symlink is not followed, a FIFO or device never blocks, and
//! a file that grows while it is read cannot exhaust memory.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a bounded read gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("does not exist")]
    NotFound,
    /// Something other than a regular file: its type in words.
    #[error("is a {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Io(io::Error),
}

/// Opens `path` for reading without following a symlink and without blocking on a FIFO,
/// and checks that the open descriptor is a regular file of at most `limit` bytes.
pub fn open_regular(path: &Path, limit: usize) -> Result<File, ReadError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => ReadError::NotFound,
            // ELOOP: the last component is a symlink.
            _ if error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                ReadError::NotRegular("symbolic link")
            }
            _ => ReadError::Io(error),
        })?;
    let metadata = file.metadata().map_err(ReadError::Io)?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        return Err(ReadError::NotRegular(super::type_name(file_type)));
    }
    if metadata.len() > limit as u64 {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(file)
}

/// The content of the regular file at `path`, of at most `limit` bytes.
pub fn read_regular(path: &Path, limit: usize) -> Result<Vec<u8>, ReadError> {
    read_regular_with_metadata(path, limit).map(|(content, _)| content)
}

/// [`read_regular`], with what fstat said of the very file that was read (its owner and
/// mode, for a file whose rights matter, such as a secret key).
pub fn read_regular_with_metadata(
    path: &Path,
    limit: usize,
) -> Result<(Vec<u8>, Metadata), ReadError> {
    let file = open_regular(path, limit)?;
    let metadata = file.metadata().map_err(ReadError::Io)?;
    let mut content = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut content)
        .map_err(ReadError::Io)?;
    if content.len() > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok((content, metadata))
}

/// [`read_regular`], when the reason for nothing does not matter: a file found intact
/// before, read again.
pub fn read_bounded(path: &Path, limit: usize) -> Option<Vec<u8>> {
    read_regular(path, limit).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("file");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_regular(&file, 5).unwrap(), b"12345");
        assert!(matches!(
            read_regular(&file, 4),
            Err(ReadError::TooLarge { limit: 4 })
        ));
        let link = directory.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(
            read_regular(&link, 5),
            Err(ReadError::NotRegular("symbolic link"))
        ));
        assert!(matches!(
            read_regular(directory.path(), 5),
            Err(ReadError::NotRegular("directory"))
        ));
        assert!(matches!(
            read_regular(&directory.path().join("absent"), 5),
            Err(ReadError::NotFound)
        ));
        // A FIFO nobody writes to: opening it must not block.
        let fifo = directory.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(matches!(
            read_regular(&fifo, 5),
            Err(ReadError::NotRegular("fifo"))
        ));
    }
}
