//! The store: its directory layout, opening it under the writer lock, and reconciling the
//! file system with the database after a crash.
//!
//! **Invariant:** the database's `state.active` is the truth. The view symlink and the
//! `generations/` directory are brought in line with it by [`Store::open`] before any
//! command does its work, so every crash leaves the old or the new generation active.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{self, Config};
use crate::db::{Db, DbReader, ReadTxn};
use crate::error::{Error, Result};
use crate::format::manifest::{Manifest, ManifestLimits};
use crate::format::records::{
    Action, AttemptRecord, GenerationState, Origin, Outcome, StateRecord,
};
use crate::format::timestamp::Timestamp;
use crate::fs::durable;
use crate::fs::lock::StoreLock;

/// The first line of `STORE/format`. A polstore that does not know the version refuses
/// to touch the store.
pub const STORE_FORMAT: &str = "polstore-store 1";

/// Paths inside a store.
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
    /// Generation directories a database rebuild could not trust, moved aside.
    pub fn untrusted(&self) -> PathBuf {
        self.root.join("untrusted")
    }
    /// The last database that `verify --repair` found damaged and replaced.
    pub fn damaged_database(&self) -> PathBuf {
        self.root.join("polstore.redb.damaged")
    }
}

/// What `open` found and did while reconciling, for the operator.
#[derive(Debug, Default)]
pub struct Recovery {
    pub notes: Vec<String>,
    /// The view is something polstore did not put there. Writers refuse to work until it
    /// is repaired; readers report it.
    pub view_problem: Option<String>,
}

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

fn check_format(layout: &Layout) -> Result<()> {
    let path = layout.format_file();
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(Error::Refused(format!(
                "{} is not a polstore store (no format file); create one with 'polstore init'",
                layout.root.display()
            )));
        }
        Err(error) => return Err(Error::io("cannot read", &path)(error)),
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
        let (store, recovery) = Store::open_locked(layout, lock)?;
        if let Some(problem) = recovery.view_problem {
            return Err(Error::Corrupt(problem));
        }
        Ok((store, recovery))
    }

    fn open_locked(layout: Layout, lock: StoreLock) -> Result<(Store, Recovery)> {
        let config = Config::load(&layout.config_file())?;
        let db = Db::open(&layout.database())?;
        let store = Store {
            layout,
            config,
            db,
            _lock: lock,
        };
        let recovery = store.reconcile()?;
        Ok((store, recovery))
    }

    /// Creates a new, empty store at `root`. The caller then adopts or ingests.
    pub fn create(root: &Path, view: &Path, keys: &[PathBuf]) -> Result<Store> {
        let layout = Layout::new(root);
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
                durable::sync_directory(
                    durable::parent_of(root).map_err(Error::io("cannot sync", root))?,
                )
                .map_err(Error::io("cannot sync parent of", root))?;
            }
            Err(error) => return Err(Error::io("cannot read", root)(error)),
        }
        let text = config::default_config_text(view, keys);
        // Fails here rather than at the first ingest if the view or keys are unusable.
        Config::parse(&text).map_err(Error::Refused)?;
        let lock = StoreLock::acquire(root, "init", Duration::ZERO, &mut |_| {})?;
        for directory in [layout.staging(), layout.generations()] {
            fs::create_dir(&directory).map_err(Error::io("cannot create", &directory))?;
        }
        durable::create_file_synced(&layout.config_file(), text.as_bytes(), 0o644)
            .map_err(Error::io("cannot write", layout.config_file()))?;
        Db::create(&layout.database())?;
        // The format file is written last and synced with the directory: a store without
        // it is an interrupted init, which `init` may be run again on after removing it.
        let format = format!("{STORE_FORMAT}\n");
        durable::create_file_synced(&layout.format_file(), format.as_bytes(), 0o644)
            .map_err(Error::io("cannot write", layout.format_file()))?;
        durable::sync_directory(root).map_err(Error::io("cannot sync", root))?;
        let (store, _) = Store::open_locked(layout, lock)?;
        Ok(store)
    }

    /// Brings the file system in line with the database. Idempotent; runs at every open.
    pub fn reconcile(&self) -> Result<Recovery> {
        let mut recovery = Recovery::default();
        // 1. A candidate left by a crash is discarded: nothing references it. So is any
        //    other leftover in staging (a check's or the agent's output file): only the
        //    lock holder uses staging, and we hold the lock.
        let staging = self.layout.staging();
        let leftovers = fs::read_dir(&staging).map_err(Error::io("cannot read", &staging))?;
        for entry in leftovers {
            let entry = entry.map_err(Error::io("cannot read", &staging))?;
            let path = entry.path();
            durable::remove_tree_if_exists(&path).map_err(Error::io("cannot remove", &path))?;
            if path == self.layout.candidate() {
                recovery
                    .notes
                    .push("removed a candidate left in staging by an interrupted command".into());
            }
        }
        let state = self.db.read()?.state()?;
        // 2. A generation directory the database does not know was renamed into place by
        //    an ingest that crashed before its commit.
        let unknown = self.unknown_generation_dirs()?;
        for path in &unknown {
            durable::remove_tree_if_exists(path).map_err(Error::io("cannot remove", path))?;
            recovery.notes.push(format!(
                "removed {} left by an interrupted ingest",
                path.display()
            ));
        }
        let generations = self.layout.generations();
        if !unknown.is_empty() {
            durable::sync_directory(&generations)
                .map_err(Error::io("cannot sync", &generations))?;
        }
        // 3. An agent run that never reported back did not confirm its generation.
        if let Some(active) = state.active {
            let record = self.db.read()?.generation(active)?;
            if record.is_some_and(|record| record.state == GenerationState::Confirming) {
                let note = self.fail_generation(
                    active,
                    "the confirming agent run was interrupted",
                    Action::Recover,
                )?;
                recovery.notes.push(note);
            }
        }
        // 4. The view follows the database.
        match self.sync_view() {
            Ok(Some(note)) => recovery.notes.push(note),
            Ok(None) => {}
            Err(Error::Corrupt(problem)) => recovery.view_problem = Some(problem),
            Err(error) => return Err(error),
        }
        // 5. An adoption that exchanged the view but stopped before removing the old
        //    directory (now at the temporary name) and its marker is finished.
        if recovery.view_problem.is_none()
            && self.layout.adoption_marker().exists()
            && let Some(active) = state.active
            && fs::read_link(&self.config.view).ok() == Some(self.layout.generation_tree(active))
        {
            self.finish_adoption()?;
            recovery
                .notes
                .push("finished an adoption interrupted after its exchange".into());
        }
        Ok(recovery)
    }

    /// The last steps of adoption: remove the adopted directory, now at the view's
    /// temporary name (the adopted generation holds a verified copy), fsync the parent;
    /// remove the marker, fsync the store.
    fn finish_adoption(&self) -> Result<()> {
        let view = &self.config.view;
        let temporary =
            durable::temporary_sibling(view, "new").map_err(Error::io("cannot name", view))?;
        durable::remove_tree_if_exists(&temporary)
            .map_err(Error::io("cannot remove", &temporary))?;
        let parent = durable::parent_of(view).map_err(Error::io("cannot sync", view))?;
        durable::sync_directory(parent).map_err(Error::io("cannot sync", parent))?;
        let marker = self.layout.adoption_marker();
        durable::remove_tree_if_exists(&marker).map_err(Error::io("cannot remove", &marker))?;
        let root = &self.layout.root;
        durable::sync_directory(root).map_err(Error::io("cannot sync", root))
    }

    /// Entries of `generations/` that are not a generation the database knows.
    pub fn unknown_generation_dirs(&self) -> Result<Vec<PathBuf>> {
        let read = self.db.read()?;
        let generations = self.layout.generations();
        let mut unknown = Vec::new();
        for entry in fs::read_dir(&generations).map_err(Error::io("cannot read", &generations))? {
            let entry = entry.map_err(Error::io("cannot read", &generations))?;
            let number = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u64>().ok());
            let known = match number {
                Some(number) => read.generation(number)?.is_some(),
                None => false,
            };
            if !known {
                unknown.push(entry.path());
            }
        }
        Ok(unknown)
    }

    /// Points the view at the active generation if it points elsewhere. Returns what it did.
    pub fn sync_view(&self) -> Result<Option<String>> {
        let Some(active) = self.db.read()?.state()?.active else {
            return Ok(None);
        };
        let target = self.layout.generation_tree(active);
        let view = &self.config.view;
        match fs::symlink_metadata(view) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                if fs::read_link(view).map_err(Error::io("cannot read view", view))? == target {
                    return Ok(None);
                }
            }
            Ok(metadata) if metadata.is_dir() && self.adoption_unfinished(active)? => {
                self.replace_adopted_view(active)?;
                return Ok(Some(format!(
                    "finished adopting {} as generation {active}",
                    view.display()
                )));
            }
            Ok(_) => {
                return Err(Error::Corrupt(format!(
                    "the view {} is not polstore's symlink; polstore will not replace what someone put there: run 'polstore verify --repair', which moves it aside and restores the view",
                    view.display()
                )));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(Error::io("cannot read view", view)(error)),
        }
        self.switch_view(active)?;
        Ok(Some(format!(
            "pointed the view {} at generation {active}",
            view.display()
        )))
    }

    /// True when `active` is the only generation and was adopted from the view itself: an
    /// `init --adopt` stopped between its commit and putting the symlink in place.
    fn adoption_unfinished(&self, active: u64) -> Result<bool> {
        if !self.layout.adoption_marker().exists() {
            return Ok(false);
        }
        let generations = self.db.read()?.generations()?;
        Ok(matches!(generations.as_slice(), [(number, record)]
            if *number == active && record.origin == Origin::Adopted && Path::new(&record.source) == self.config.view))
    }

    /// Puts the view symlink where the adopted directory was, with renameat2(EXCHANGE) so
    /// the agent never finds the path missing, then removes the old directory, of which the
    /// adopted generation holds a verified copy.
    ///
    /// Order: create the symlink under a temporary name; exchange it with the directory;
    /// fsync the parent (the symlink is now durable at the view path); remove the old
    /// directory, now at the temporary name; fsync the parent again.
    pub fn replace_adopted_view(&self, generation: u64) -> Result<()> {
        let view = &self.config.view;
        let temporary =
            durable::temporary_sibling(view, "new").map_err(Error::io("cannot name", view))?;
        durable::remove_tree_if_exists(&temporary)
            .map_err(Error::io("cannot remove", &temporary))?;
        std::os::unix::fs::symlink(self.layout.generation_tree(generation), &temporary)
            .map_err(Error::io("cannot create", &temporary))?;
        durable::exchange(&temporary, view)
            .map_err(Error::io("cannot put the view symlink in place of", view))?;
        let parent = durable::parent_of(view).map_err(Error::io("cannot sync", view))?;
        durable::sync_directory(parent).map_err(Error::io("cannot sync", parent))?;
        crate::crashpoint::point("adopt-exchanged");
        // Last: without the marker, recovery never again touches a directory at the view.
        self.finish_adoption()
    }

    /// Points the view at `generation`'s tree, atomically and durably.
    pub fn switch_view(&self, generation: u64) -> Result<()> {
        let view = &self.config.view;
        durable::switch_symlink(view, &self.layout.generation_tree(generation))
            .map_err(Error::io("cannot switch the view", view))
    }

    /// Marks `generation` failed and, if it is active, makes the newest good generation
    /// before it active again. Returns a line for the operator.
    pub fn fail_generation(&self, generation: u64, reason: &str, action: Action) -> Result<String> {
        let now = Timestamp::now().unix_secs();
        let fallback = self.previous_good(generation)?;
        let message = match fallback {
            Some(previous) => format!(
                "generation {generation} failed: {reason}; rolled back to generation {previous}"
            ),
            None => format!(
                "generation {generation} failed: {reason}; no earlier good generation to roll back to, it stays active"
            ),
        };
        // The marker first: a crash before the commit leaves it beside a generation that
        // recovery then fails anyway (Confirming) or that a rebuild takes as failed, which
        // is the safe side.
        self.write_failed_marker(generation, reason)?;
        crate::crashpoint::point("fail-marker-written");
        self.db.write(|txn| {
            let mut record = txn.generation(generation)?.ok_or_else(|| {
                crate::db::DbError::Corrupt(format!("generation {generation} is missing"))
            })?;
            record.state = GenerationState::Failed;
            record.reason = Some(reason.to_string());
            let serial = record.serial;
            txn.put_generation(generation, &record)?;
            let mut state = txn.state()?;
            if state.active == Some(generation) && fallback.is_some() {
                state.active = fallback;
                txn.put_state(&state)?;
            }
            txn.add_attempt(&AttemptRecord {
                started: now,
                finished: now,
                action,
                source: String::new(),
                serial: Some(serial),
                outcome: if fallback.is_some() {
                    Outcome::RolledBack
                } else {
                    Outcome::Failed
                },
                generation: Some(generation),
                message: message.clone(),
                checks: Vec::new(),
            })?;
            Ok(())
        })?;
        crate::crashpoint::point("fail-committed");
        if let Some(previous) = fallback {
            self.switch_view(previous)?;
        }
        Ok(message)
    }

    /// Writes `generations/N/failed` with `reason`, durably (file, then directory).
    pub fn write_failed_marker(&self, generation: u64, reason: &str) -> Result<()> {
        let marker = self.layout.failed_marker(generation);
        durable::remove_tree_if_exists(&marker).map_err(Error::io("cannot remove", &marker))?;
        durable::create_file_synced(&marker, reason.as_bytes(), 0o644)
            .map_err(Error::io("cannot write", &marker))?;
        let directory = self.layout.generation_dir(generation);
        durable::sync_directory(&directory).map_err(Error::io("cannot sync", &directory))
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

    pub fn state(&self) -> Result<StateRecord> {
        Ok(self.db.read()?.state()?)
    }
}

/// Read access for `status`, `list`, `log`, `show` and `diff`. When no writer holds the
/// lock it opens the store as a writer would (reconciling it); otherwise it reads the
/// database alongside the writer.
pub enum StoreReader {
    Owner(Store, Recovery),
    Shared {
        layout: Layout,
        config: Config,
        db: DbReader,
    },
}

impl StoreReader {
    pub fn open(root: &Path, command: &str) -> Result<StoreReader> {
        let layout = Layout::new(root);
        check_format(&layout)?;
        match StoreLock::try_acquire(root, command)? {
            Some(lock) => {
                let (store, recovery) = Store::open_locked(layout, lock)?;
                Ok(StoreReader::Owner(store, recovery))
            }
            None => {
                let config = Config::load(&layout.config_file())?;
                let db = DbReader::open(&layout.database())?;
                Ok(StoreReader::Shared { layout, config, db })
            }
        }
    }

    pub fn read(&self) -> Result<ReadTxn> {
        Ok(match self {
            StoreReader::Owner(store, _) => store.db.read()?,
            StoreReader::Shared { db, .. } => db.read()?,
        })
    }

    pub fn layout(&self) -> &Layout {
        match self {
            StoreReader::Owner(store, _) => &store.layout,
            StoreReader::Shared { layout, .. } => layout,
        }
    }

    pub fn config(&self) -> &Config {
        match self {
            StoreReader::Owner(store, _) => &store.config,
            StoreReader::Shared { config, .. } => config,
        }
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
