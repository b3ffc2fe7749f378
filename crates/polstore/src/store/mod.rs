//! The store: its directory layout, opening it under the writer lock, and reconciling the
//! file system with the database after a crash.
//!
//! **Invariant:** the database's `state.active` is the truth. The view symlink and the
//! `generations/` directory are brought in line with it by [`Store::open`] before any
//! command does its work, so every crash leaves the old or the new generation active.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{self, Config};
use crate::db::{Db, DbReader, ReadTxn};
use crate::error::{Error, Result};
use crate::format::manifest::{Manifest, ManifestLimits};
use crate::format::records::{GenerationState, StateRecord};
use crate::fs::durable;
use crate::store::lock::StoreLock;

pub mod layout;
pub mod lock;
pub mod materialize;
pub mod protect;
pub mod recovery;
pub mod slot;
pub mod transition;
pub mod tree;
pub mod trust;
pub mod view;

pub use layout::{
    GENERATIONS_MODE, Layout, PUBLIC_FILE_MODE, PathProblem, PathProblemKind, STAGING_MODE,
    STORE_DIRECTORY_MODE, STORE_FORMAT,
};
pub use recovery::{Recovery, adoption_source};

use layout::check_format;

/// A store opened by the holder of the writer lock.
pub struct Store {
    pub layout: Layout,
    pub config: Config,
    pub db: Db,
    _lock: StoreLock,
}

/// How a command waits for the writer lock.
pub struct LockWait<'a> {
    pub command: &'a str,
    pub timeout: Duration,
    pub on_wait: &'a mut dyn FnMut(&str),
}

/// A store whose writer lock is held and configuration read, before its database is
/// opened: `verify` looks at the database itself before trusting it.
pub struct LockedStore {
    pub layout: Layout,
    pub config: Config,
    lock: StoreLock,
}

impl LockedStore {
    pub fn acquire(root: &Path, wait: LockWait) -> Result<LockedStore> {
        let layout = Layout::new(root);
        check_format(&layout)?;
        let lock = StoreLock::acquire(root, wait.command, wait.timeout, wait.on_wait)?;
        make_private(&layout)?;
        // Nothing is read from a store whose configuration, format file or database others
        // could have changed: polstore cannot vouch for them, the operator checks them.
        if let Some(problem) = layout
            .own_path_problems()
            .into_iter()
            .find(|problem| !problem.repairable)
        {
            return Err(Error::UnsafePath(problem));
        }
        let config = Config::load(&layout.config_file())?;
        Ok(LockedStore {
            layout,
            config,
            lock,
        })
    }

    /// The store with `db`, without reconciling: the caller decides what to change.
    pub fn with_db(self, db: Db) -> Store {
        Store {
            layout: self.layout,
            config: self.config,
            db,
            _lock: self.lock,
        }
    }
}

impl Store {
    /// Takes the writer lock, opens the database and reconciles the file system with it.
    pub fn open(root: &Path, wait: LockWait) -> Result<(Store, Recovery)> {
        let layout = Layout::new(root);
        check_format(&layout)?;
        let lock = StoreLock::acquire(root, wait.command, wait.timeout, wait.on_wait)?;
        let (store, mut recovery) = Store::open_locked(layout, lock)?;
        if let Some(view) = recovery.view_displaced.take() {
            return Err(Error::ViewDisplaced { view });
        }
        Ok((store, recovery))
    }

    fn open_locked(layout: Layout, lock: StoreLock) -> Result<(Store, Recovery)> {
        let notes = make_private(&layout)?;
        if let Some(problem) = layout.own_path_problems().into_iter().next() {
            return Err(Error::UnsafePath(problem));
        }
        let config = Config::load(&layout.config_file())?;
        let db = Db::open(&layout.database())?;
        let store = Store {
            layout,
            config,
            db,
            _lock: lock,
        };
        let mut recovery = store.reconcile()?;
        recovery.notes.splice(0..0, notes);
        Ok((store, recovery))
    }

    /// Creates a new, empty store at `root`. The caller then adopts or ingests. With
    /// `adopting`, the adoption marker is written (and synced) before the format file, so
    /// that an `init --adopt` interrupted at any point before its commit leaves a store
    /// `init` recognizes and starts over.
    pub fn create(
        root: &Path,
        views: &[config::View],
        keys: &[PathBuf],
        config_text: Option<String>,
        adopting: bool,
    ) -> Result<Store> {
        let layout = Layout::new(root);
        // A directory that is there already must be one no one else can change: checked
        // before anything is written into it.
        if let Ok(metadata) = fs::metadata(root) {
            use std::os::unix::fs::MetadataExt;
            let owner = rustix::process::geteuid().as_raw();
            if metadata.is_dir() && (metadata.uid() != owner || metadata.mode() & 0o022 != 0) {
                return Err(Error::Refused(format!(
                    "{} belongs to user {} with mode {:04o}: a store must be polstore's user's and writable by no one else; refusing to initialize it",
                    root.display(),
                    metadata.uid(),
                    metadata.mode() & 0o7777
                )));
            }
        }
        match fs::read_dir(root) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    let what = if layout.format_file().exists() {
                        "already holds a polstore store"
                    } else {
                        "is not empty"
                    };
                    return Err(Error::Refused(format!(
                        "{} {what}; refusing to initialize it",
                        root.display()
                    )));
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(root).map_err(Error::io("cannot create store", root))?;
                fs::set_permissions(root, fs::Permissions::from_mode(STORE_DIRECTORY_MODE))
                    .map_err(Error::io("cannot set the mode of", root))?;
                durable::sync_directory(
                    durable::parent_of(root).map_err(Error::io("cannot sync", root))?,
                )
                .map_err(Error::io("cannot sync parent of", root))?;
            }
            Err(error) => return Err(Error::io("cannot read", root)(error)),
        }
        let text = config_text.unwrap_or_else(|| config::default_config_text(views, keys));
        // Fails here rather than at the first ingest if the view or keys are unusable.
        Config::parse(&text).map_err(Error::Refused)?;
        let lock = StoreLock::acquire(root, "init", Duration::ZERO, &mut |_| {})?;
        for (directory, mode) in [
            (layout.staging(), STAGING_MODE),
            (layout.generations(), GENERATIONS_MODE),
        ] {
            durable::create_directory(&directory, mode)
                .map_err(Error::io("cannot create", &directory))?;
        }
        durable::create_file_synced(&layout.config_file(), text.as_bytes(), PUBLIC_FILE_MODE)
            .map_err(Error::io("cannot write", layout.config_file()))?;
        Db::create(&layout.database())?;
        if adopting {
            let marker = layout.adoption_marker();
            let first = views
                .first()
                .map(|view| view.path.as_os_str())
                .unwrap_or_default();
            durable::create_file_synced(&marker, first.as_encoded_bytes(), 0o600)
                .map_err(Error::io("cannot write", &marker))?;
        }
        // The format file is written last and synced with the directory: a store without
        // it is an interrupted init, which `init` may be run again on after removing it.
        let format = format!("{STORE_FORMAT}\n");
        durable::create_file_synced(&layout.format_file(), format.as_bytes(), PUBLIC_FILE_MODE)
            .map_err(Error::io("cannot write", layout.format_file()))?;
        durable::sync_directory(root).map_err(Error::io("cannot sync", root))?;
        let (store, _) = Store::open_locked(layout, lock)?;
        Ok(store)
    }

    pub fn is_pinned(&self, generation: u64) -> bool {
        self.layout.pin_marker(generation).exists()
    }

    /// The newest generation older than `generation` that is good.
    pub fn previous_good(&self, generation: u64) -> Result<Option<u64>> {
        let generations = self.db.read()?.generations()?;
        Ok(generations
            .iter()
            .rev()
            .find(|(number, record)| *number < generation && record.state == GenerationState::Good)
            .map(|(number, _)| *number))
    }

    /// The same store with its database opened again, under the same lock: after a failed
    /// commit (a full disk), redb answers only once the database is reopened.
    pub fn reopened(self) -> Result<Store> {
        let Store {
            layout,
            config,
            db,
            _lock,
        } = self;
        drop(db);
        let db = Db::open(&layout.database())?;
        Ok(Store {
            layout,
            config,
            db,
            _lock,
        })
    }

    pub fn state(&self) -> Result<StateRecord> {
        Ok(self.db.read()?.state()?)
    }
}

/// What stores made before left to the umask, readable but not writable by others: the
/// database, `generations/` and `staging/`; and what a restore or a copy may leave so: the
/// root a pull followed (`trusted-root`) and `fetched/`. The lock holder makes them root's
/// alone, and says so. Write rights for others are not taken away here: what others could
/// have changed is for `verify` to look at. (A followed root that only others could read
/// was never at risk, and moving it aside would trust the older configured root again:
/// the keys a rotation dropped would count again.)
fn make_private(layout: &Layout) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for (path, directory, mode) in [
        (layout.database(), false, crate::db::DATABASE_FILE_MODE),
        (layout.generations(), true, GENERATIONS_MODE),
        (layout.staging(), true, STAGING_MODE),
        (layout.trusted_root_file(), false, 0o600),
        (layout.fetched(), true, 0o700),
    ] {
        let Ok(metadata) = fs::symlink_metadata(&path) else {
            continue;
        };
        let found = metadata.permissions().mode() & 0o7777;
        let right_type = if directory {
            metadata.is_dir()
        } else {
            metadata.is_file()
        };
        if !right_type || found & 0o077 == 0 || found & 0o022 != 0 {
            continue;
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(Error::io("cannot set the mode of", &path))?;
        notes.push(format!(
            "made {} readable by root only (it was {found:04o})",
            path.display()
        ));
    }
    Ok(notes)
}

/// Read access for `status`, `list`, `log`, `show` and `diff`.
///
/// **Invariant:** a reader never changes the store: it opens the database read-only,
/// alongside a writer if there is one, and never runs recovery. What an interrupted
/// command left is for the next writer; a reader sees the state as it is. The one time it
/// takes the lock (without waiting) is when a crashed writer left redb's own file needing
/// redb's recovery, which only a writable open does; no record, tree or view changes.
pub struct StoreReader {
    pub layout: Layout,
    pub config: Config,
    db: DbReader,
}

impl StoreReader {
    pub fn open(root: &Path) -> Result<StoreReader> {
        let layout = Layout::new(root);
        check_format(&layout)?;
        let config = Config::load(&layout.config_file())?;
        let db = match DbReader::open(&layout.database()) {
            Ok(db) => db,
            Err(error) if error.needs_recovery() => {
                // A writer crashed with the file open: redb recovers its own file only in a
                // writable open. When no writer holds the lock, the reader opens it so once,
                // under the lock, for redb alone: nothing of polstore's is reconciled.
                let Some(lock) = StoreLock::try_acquire(root, "a reader")? else {
                    return Err(error.into());
                };
                drop(Db::open(&layout.database())?);
                drop(lock);
                DbReader::open(&layout.database())?
            }
            Err(error) => return Err(error.into()),
        };
        let reader = StoreReader { layout, config, db };
        // A damaged file can make redb panic at the first read: say so as damage, here.
        reader.query(|read| Ok(read.state()?))?;
        Ok(reader)
    }

    pub fn read(&self) -> Result<ReadTxn> {
        Ok(self.db.read()?)
    }

    /// Runs `body` on one read transaction; a panic inside redb, which it raises on some
    /// damaged pages, becomes [`DbError::Corrupt`] instead of ending the process.
    pub fn query<T>(&self, body: impl FnOnce(&ReadTxn) -> Result<T>) -> Result<T> {
        crate::db::without_panics(|| body(&self.read()?))?
    }
}

/// Parses a stored manifest. Stored manifests were checked on the way in; failing here
/// means the database is damaged.
pub fn stored_manifest(read: &ReadTxn, generation: u64) -> Result<Manifest> {
    let record = read.manifest(generation)?;
    Manifest::parse(&record.manifest, stored_manifest_limits())
        .map_err(|error| Error::Corrupt(format!("manifest of generation {generation}: {error}")))
}

/// Limits for manifests the store accepted before: they passed the configured limits when
/// they came in, and lowering the limits since must not make old generations unreadable.
pub fn stored_manifest_limits() -> ManifestLimits {
    ManifestLimits {
        entries_max: usize::MAX,
        file_bytes_max: u64::MAX,
        tree_bytes_max: u64::MAX,
        paths: crate::format::policy_path::PathLimits {
            path_bytes_max: 4096,
            depth_max: 1024,
        },
    }
}
