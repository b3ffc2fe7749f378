//! The paths inside a store directory, and its format file.

use std::fs;
use std::path::{Path, PathBuf};

use crate::config;
use crate::error::{Error, Result};

/// The first line of `STORE/format`. A polstore that does not know the version refuses
/// to touch the store.
pub const STORE_FORMAT: &str = "polstore-store 1";

/// Modes of what polstore creates in a store, set explicitly whatever the umask.
///
/// The store and each generation directory are 0755 and `generations/` 0700: the agent
/// and everything that reads the view run as root. `staging/` is 0700: nothing half-built is for
/// anyone else. The database holds every file's content, so it is 0600 like the lock;
/// the configuration and the format file are 0644 (they hold no secret).
pub const STORE_DIRECTORY_MODE: u32 = 0o755;
pub const STAGING_MODE: u32 = 0o700;
/// `generations/`: root's alone, so that no other user reads a policy file whose own
/// mode or directory would not let them (tree directories are 0755), nor a manifest that
/// names the hash and size of every file.
pub const GENERATIONS_MODE: u32 = 0o700;
pub const DATABASE_MODE: u32 = 0o600;
pub const PUBLIC_FILE_MODE: u32 = 0o644;
/// `readonly/`: the read-only mount point (store-protect.rs); readable like the store.
pub const READONLY_MODE: u32 = 0o755;
/// The target of `readonly/generations`, the symlink the view resolves through when the
/// read-only mount is not in place.
pub const READONLY_FALLBACK_TARGET: &str = "../generations";
/// The target of `readonly/active`, the symlink the views resolve through when the
/// read-only mount is not in place.
pub const READONLY_ACTIVE_TARGET: &str = "../active";
/// The flags of the read-only bind mount at `readonly/`: nothing written, no device
/// nodes, no set-user-ID programs through it.
pub const READONLY_MOUNT_OPTIONS: rustix::mount::MountFlags = rustix::mount::MountFlags::RDONLY
    .union(rustix::mount::MountFlags::NOSUID)
    .union(rustix::mount::MountFlags::NODEV);

#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }
    pub fn format_file(&self) -> PathBuf {
        self.root.join("format")
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join(config::CONFIG_FILE_NAME)
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("polstore.redb")
    }
    /// Present only while `init --adopt` is between its commit and putting the view
    /// symlink in place of the adopted directory.
    pub fn adoption_marker(&self) -> PathBuf {
        self.root.join("adopting")
    }
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }
    /// The one candidate being built. Only the lock holder builds one at a time.
    pub fn candidate(&self) -> PathBuf {
        self.staging().join("candidate")
    }
    pub fn generations(&self) -> PathBuf {
        self.root.join("generations")
    }
    pub fn generation_dir(&self, generation: u64) -> PathBuf {
        self.generations().join(generation.to_string())
    }
    /// `{tree}`: the directory the view points at and the agent reads.
    pub fn generation_tree(&self, generation: u64) -> PathBuf {
        self.generation_dir(generation).join("tree")
    }
    /// The read-only mount point: a read-only bind mount of the store, or (not mounted) a
    /// directory holding only [`Layout::readonly_fallback`].
    pub fn readonly(&self) -> PathBuf {
        self.root.join("readonly")
    }
    /// `readonly/generations`: the store's `generations/` through the read-only mount, or,
    /// not mounted, a symlink to it.
    pub fn readonly_fallback(&self) -> PathBuf {
        self.readonly().join("generations")
    }
    /// `STORE/active`: the symlink to the active generation's tree, relative
    /// ([`Layout::active_target`]). Switching it is THE activation: every view resolves
    /// through it (store-format.md § Views).
    pub fn active_link(&self) -> PathBuf {
        self.root.join("active")
    }
    /// What `STORE/active` holds for `generation`: `generations/N/tree`, relative, so that
    /// through the read-only mount it resolves inside the mount.
    pub fn active_target(generation: u64) -> PathBuf {
        Path::new("generations")
            .join(generation.to_string())
            .join("tree")
    }
    /// The generation `STORE/active` names, if it is polstore's symlink in the one form
    /// polstore writes.
    pub fn active_generation(&self) -> Option<u64> {
        let target = fs::read_link(self.active_link()).ok()?;
        let mut parts = target.strip_prefix("generations").ok()?.components();
        let number = generation_number(parts.next()?.as_os_str())?;
        (parts.next()?.as_os_str() == "tree" && parts.next().is_none()).then_some(number)
    }
    /// `readonly/active`: `STORE/active` through the read-only mount, or, not mounted, a
    /// symlink to it ([`READONLY_ACTIVE_TARGET`]).
    pub fn readonly_active(&self) -> PathBuf {
        self.readonly().join("active")
    }
    /// Where `view` points, for ever: `readonly/active` (one view) or
    /// `readonly/active/NAME` (a view of `[views]`). Only `STORE/active` changes.
    pub fn view_target(&self, view: &config::View) -> PathBuf {
        match &view.name {
            None => self.readonly_active(),
            Some(name) => self.readonly_active().join(name),
        }
    }
    /// The generation an older polstore's view target names: `readonly/generations/N/tree`
    /// (before `STORE/active`) or the writable `generations/N/tree` (before the read-only
    /// view). The next writer points such a view at [`Layout::view_target`].
    pub fn view_generation(&self, target: &Path) -> Option<u64> {
        for base in [self.readonly_fallback(), self.generations()] {
            let Ok(rest) = target.strip_prefix(&base) else {
                continue;
            };
            let mut parts = rest.components();
            let number = generation_number(parts.next()?.as_os_str())?;
            if parts.next()?.as_os_str() != "tree" || parts.next().is_some() {
                return None;
            }
            return Some(number);
        }
        None
    }
    /// Present while the generation is pinned: gc never removes it.
    pub fn pin_marker(&self, generation: u64) -> PathBuf {
        self.generation_dir(generation).join("pinned")
    }
    /// Written, with the reason, when the generation fails: a database rebuilt from the
    /// directories must not take a failed generation for a good one.
    pub fn failed_marker(&self, generation: u64) -> PathBuf {
        self.generation_dir(generation).join("failed")
    }
    /// Where `verify --repair` builds a generation's tree anew, and a database.
    pub fn repair_dir(&self) -> PathBuf {
        self.staging().join("repair")
    }
    /// Present only while gc or repair removes generation directories: their numbers,
    /// one a line, written before the commit that drops their records. Recovery removes
    /// an unknown directory of `generations/` only if it is listed here or is the one a
    /// crashed ingest left (`state.next_generation`); anything else is not polstore's.
    pub fn removal_intent(&self) -> PathBuf {
        self.root.join("removing")
    }
    /// Generation directories a database rebuild could not trust, moved aside.
    pub fn untrusted(&self) -> PathBuf {
        self.root.join("untrusted")
    }
    /// The last database that `verify --repair` found damaged and replaced.
    pub fn damaged_database(&self) -> PathBuf {
        self.root.join("polstore.redb.damaged")
    }
}

/// Refuses a directory that is not a store of a format this polstore reads.
pub(crate) fn check_format(layout: &Layout) -> Result<()> {
    let path = layout.format_file();
    // Never followed, never waited on: a FIFO here must not hang every command.
    let text = match crate::fs::read::read_regular(&path, 4096) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(crate::fs::read::ReadError::NotFound) => {
            return Err(Error::NotAStore {
                root: layout.root.clone(),
            });
        }
        Err(crate::fs::read::ReadError::Io(error)) => {
            return Err(Error::io("cannot read", &path)(error));
        }
        Err(refusal) => {
            return Err(Error::Corrupt(format!("{}: {refusal}", path.display())));
        }
    };
    if text.lines().next() != Some(STORE_FORMAT) {
        return Err(Error::Refused(format!(
            "{} has store format {:?}, which this polstore does not understand (it reads {STORE_FORMAT:?})",
            layout.root.display(),
            text.lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(40)
                .collect::<String>()
        )));
    }
    Ok(())
}

pub use crate::fs::{PathProblem, PathProblemKind};

/// The names polstore itself puts in a store's directory (temporary names of its own
/// records included); anything else there is not polstore's.
const OWN_NAMES: &[&str] = &[
    "format",
    "polstore.toml",
    "polstore.redb",
    "polstore.redb.rebuild",
    "polstore.redb.damaged",
    "lock",
    "adopting",
    "removing",
    "serial-floor",
    ".serial-floor.polstore-new",
    "adopted",
    ".adopted.polstore-new",
    "trusted-root",
    ".trusted-root.polstore-new",
    "fetched",
    "staging",
    "generations",
    "untrusted",
    "readonly",
    "active",
    ".active.polstore-new",
];

/// The generation number a name of `generations/` stands for: decimal, written the one
/// way polstore writes it (no sign, no leading zero). `01` or `+1` is not polstore's.
pub fn generation_number(name: &std::ffi::OsStr) -> Option<u64> {
    let name = name.to_str()?;
    let number: u64 = name.parse().ok()?;
    (number.to_string() == name).then_some(number)
}

impl Layout {
    /// Entries of the store's directory that polstore did not put there.
    pub fn foreign_entries(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut foreign = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name();
            if !OWN_NAMES.iter().any(|own| name == *own) {
                foreign.push(entry.path());
            }
        }
        foreign.sort();
        Ok(foreign)
    }

    /// The lock file.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// The store's own paths, each looked at without following a symlink: the right type,
    /// owned by polstore's user, writable by no one else (and the database readable by no
    /// one else). A path that does not exist is not a problem here (recovery or `init`
    /// makes it; the database's absence is verify's finding).
    pub fn own_path_problems(&self) -> Vec<PathProblem> {
        use std::os::unix::fs::MetadataExt;
        let owner = rustix::process::geteuid().as_raw();
        let mut problems = Vec::new();
        // (path, a directory, mode bits others must not have, repairable)
        let paths = [
            (self.root.clone(), true, 0o022, false),
            (self.staging(), true, 0o077, true),
            (self.generations(), true, 0o077, true),
            (self.readonly(), true, 0o022, false),
            (self.database(), false, 0o077, false),
            (self.config_file(), false, 0o022, false),
            (self.format_file(), false, 0o022, false),
            (self.lock_file(), false, 0o077, true),
            (self.removal_intent(), false, 0o077, true),
            (self.serial_floor_file(), false, 0o077, true),
            (self.adoption_record(), false, 0o077, true),
            (self.trusted_root_file(), false, 0o077, true),
            (self.fetched(), true, 0o077, true),
        ];
        for (path, directory, forbidden, repairable) in paths {
            // The store's own path is the operator's to choose, a symlink included.
            let metadata = if path == self.root {
                fs::metadata(&path)
            } else {
                fs::symlink_metadata(&path)
            };
            let Ok(metadata) = metadata else {
                continue;
            };
            let file_type = metadata.file_type();
            let right_type = if directory {
                file_type.is_dir()
            } else {
                file_type.is_file()
            };
            let kind = if !right_type {
                PathProblemKind::Foreign(crate::fs::type_name(file_type))
            } else if metadata.uid() != owner {
                PathProblemKind::Owner(metadata.uid())
            } else if metadata.mode() & forbidden != 0 {
                PathProblemKind::Mode(metadata.mode() & 0o7777)
            } else {
                continue;
            };
            problems.push(PathProblem {
                path,
                kind,
                repairable,
            });
        }
        problems
    }
}

impl Layout {
    /// Moves `path` into `untrusted/` (made 0700 if missing) as `NAME-TIME[-K]`, never
    /// replacing anything there, then syncs `untrusted/` and `path`'s parent; returns where.
    pub fn move_into_untrusted(&self, path: &Path, name: &str) -> Result<PathBuf> {
        use crate::fs::durable;
        let untrusted = self.untrusted();
        match durable::create_directory(&untrusted, STAGING_MODE) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(Error::io("cannot create", &untrusted)(error)),
        }
        let stamp = crate::format::timestamp::Timestamp::now().unix_secs();
        let mut target = untrusted.join(format!("{name}-{stamp}"));
        let mut attempt = 1;
        while fs::symlink_metadata(&target).is_ok() {
            target = untrusted.join(format!("{name}-{stamp}-{attempt}"));
            attempt += 1;
        }
        fs::rename(path, &target).map_err(Error::io("cannot move aside", path))?;
        durable::sync_directory(&untrusted).map_err(Error::io("cannot sync", &untrusted))?;
        let parent = durable::parent_of(path).map_err(Error::io("cannot sync", path))?;
        durable::sync_directory(parent).map_err(Error::io("cannot sync", parent))?;
        Ok(target)
    }
}
