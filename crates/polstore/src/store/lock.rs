//! The store's writer lock: an flock(2) on `STORE/lock`, held for a command's whole run.
//!
//! The kernel drops an flock when its holder dies, so a killed polstore never leaves a lock
//! that blocks forever. The file's content (pid, command, start time) is only a hint for
//! the message a waiting command prints.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, OFlags};

use crate::error::{Error, Result};
use crate::format::timestamp::Timestamp;

const HOLDER_BYTES_MAX: u64 = 512;
/// The lock file is root's alone: it names the holder's pid and command.
pub const LOCK_FILE_MODE: u32 = 0o600;
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock, waiting up to `wait` for another holder. `on_wait` is called once
    /// with a description of the holder when waiting starts.
    pub fn acquire(
        store: &Path,
        command: &str,
        wait: Duration,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<StoreLock> {
        let path = store.join("lock");
        // Never followed: a symlink planted here must not make root truncate another file.
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(LOCK_FILE_MODE)
            .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
            .open(&path)
            .map_err(Error::io("cannot open the store lock", &path))?;
        let metadata = file
            .metadata()
            .map_err(Error::io("cannot open the store lock", &path))?;
        if !metadata.is_file() {
            return Err(Error::Corrupt(format!(
                "the store lock {} is a {}, not a regular file; remove it (polstore never follows it)",
                path.display(),
                crate::fs::type_name(metadata.file_type())
            )));
        }
        // Stores made before left it to the umask: root's alone from now on.
        if metadata.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(LOCK_FILE_MODE))
                .map_err(Error::io("cannot set the mode of", &path))?;
        }
        let started = Instant::now();
        let mut announced = false;
        loop {
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    let holder = read_holder(&mut file);
                    if started.elapsed() >= wait {
                        return Err(Error::Locked {
                            store: store.to_path_buf(),
                            holder,
                            waited_secs: started.elapsed().as_secs(),
                        });
                    }
                    if !announced {
                        on_wait(&holder);
                        announced = true;
                    }
                    std::thread::sleep(RETRY_INTERVAL);
                }
                Err(error) => return Err(Error::io("cannot lock", &path)(error.into())),
            }
        }
        // A hint only: not synced, and a reader may see it half-written.
        let holder = format!(
            "pid {} (polstore {command}, since {})\n",
            std::process::id(),
            Timestamp::now()
        );
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = file.write_all(holder.as_bytes());
        Ok(StoreLock { _file: file })
    }

    /// Takes the lock only if it is free right now.
    pub fn try_acquire(store: &Path, command: &str) -> Result<Option<StoreLock>> {
        match StoreLock::acquire(store, command, Duration::ZERO, &mut |_| {}) {
            Ok(lock) => Ok(Some(lock)),
            Err(Error::Locked { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.take(HOLDER_BYTES_MAX).read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        "another polstore process".to_string()
    } else {
        text.to_string()
    }
}
