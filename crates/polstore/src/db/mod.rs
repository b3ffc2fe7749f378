//! The store's redb database: objects, manifests, generations, attempts and state.
//!
//! Only this module names redb. Every object read back is checked against its hash; every
//! record is decoded through [`crate::format::records`], which checks its version byte.

pub mod batch;

use std::collections::HashSet;
use std::path::Path;

use redb::{
    ConcurrencyMode, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use crate::format::manifest::Hash;
use crate::format::records::{
    self, AttemptRecord, GenerationRecord, HealthRecord, ManifestRecord, StampsRecord, StateRecord,
};

const OBJECTS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("objects");
const MANIFESTS: TableDefinition<u64, &[u8]> = TableDefinition::new("manifests");
const GENERATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("generations");
const ATTEMPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("attempts");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
/// Directory source (absolute path) -> `StampsRecord`. Created by the first ingest that
/// records one; a store made before has none.
const STAMPS: TableDefinition<&str, &[u8]> = TableDefinition::new("stamps");
/// Directory sources whose stamps are kept; recording one more drops the others.
const STAMPED_SOURCES_MAX: u64 = 8;
const STATE_KEY: &str = "state";
/// Keys of the `state` table holding a [`HealthRecord`].
pub const LAST_VERIFY_KEY: &str = "last-verify";
pub const LAST_UPDATE_KEY: &str = "last-update";

/// The database holds every file's content: root's alone, whatever the umask.
pub const DATABASE_FILE_MODE: u32 = 0o600;

/// The page cache redb may use. Small on purpose: objects are read once per use, and
/// polstore must stay light on the nodes it runs on.
const CACHE_BYTES: usize = 8 << 20;
/// The page cache of a database opened to read it through once.
const SCAN_CACHE_BYTES: usize = 1 << 20;
/// Attempts kept in the history; older ones are dropped as new ones are recorded.
pub const ATTEMPTS_KEPT_MAX: u64 = 1000;

/// What went wrong with the database. A caller tells a full disk from damage from any
/// other failure by the variant; the messages name no command (the binary adds advice).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file system is full (ENOSPC from redb's file I/O).
    #[error("database: no space left on device")]
    NoSpace,
    /// redb failed: the file may be damaged, or the system failed; `verify` judges.
    #[error("database: {0}")]
    Redb(redb::Error),
    /// A record or object contradicts the database's own rules.
    #[error("database is corrupt: {0}")]
    Corrupt(String),
    /// Another process has the database file open (it holds redb's lock on it).
    #[error("database: in use by another process, which holds its lock")]
    InUse,
    /// The file system refuses access (permissions, a read-only mount, an immutable file):
    /// the bytes may be fine.
    #[error("database: {0}")]
    Inaccessible(std::io::Error),
}

impl From<redb::Error> for DbError {
    fn from(error: redb::Error) -> DbError {
        let no_space = rustix::io::Errno::NOSPC.raw_os_error();
        let refused = [
            rustix::io::Errno::ACCESS,
            rustix::io::Errno::PERM,
            rustix::io::Errno::ROFS,
        ]
        .map(|errno| errno.raw_os_error());
        match error {
            redb::Error::Io(io) if io.raw_os_error() == Some(no_space) => DbError::NoSpace,
            redb::Error::Io(io)
                if io
                    .raw_os_error()
                    .is_some_and(|code| refused.contains(&code)) =>
            {
                DbError::Inaccessible(io)
            }
            redb::Error::DatabaseAlreadyOpen => DbError::InUse,
            error => DbError::Redb(error),
        }
    }
}

impl DbError {
    /// The file was left by a writer that did not close it (a crash): redb recovers it at
    /// the next writable open, and a read-only open refuses until then.
    pub fn needs_recovery(&self) -> bool {
        matches!(self, DbError::Redb(redb::Error::RepairAborted))
    }

    /// The database cannot be used now for a reason that is not its bytes: a full disk,
    /// another process holding it, the file system refusing access. Nothing to rebuild.
    pub fn is_damage(&self) -> bool {
        matches!(self, DbError::Redb(_) | DbError::Corrupt(_))
    }

    /// What is wrong, without the "database" prefix (for verify's own report).
    pub fn reason(self) -> String {
        match self {
            DbError::NoSpace => "no space left on device".to_string(),
            DbError::Redb(error) => error.to_string(),
            DbError::Corrupt(reason) => reason,
            DbError::InUse => "in use by another process, which holds its lock".to_string(),
            DbError::Inaccessible(error) => error.to_string(),
        }
    }
}

macro_rules! redb_from {
    ($($error:ty),*) => {$(
        impl From<$error> for DbError {
            fn from(error: $error) -> DbError {
                DbError::from(redb::Error::from(error))
            }
        }
    )*};
}
redb_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError
);

impl From<records::RecordError> for DbError {
    fn from(error: records::RecordError) -> DbError {
        DbError::Corrupt(error.to_string())
    }
}

fn builder() -> redb::Builder {
    builder_with_cache(CACHE_BYTES)
}

fn builder_with_cache(cache_bytes: usize) -> redb::Builder {
    let mut builder = redb::Database::builder();
    builder.set_cache_size(cache_bytes);
    // One process writes (it holds the store lock); status, list and log may read at the
    // same time from other processes.
    builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    builder
}

/// Runs `body`, turning a panic inside redb (which it raises on some damaged pages) into
/// [`DbError::Corrupt`] without printing it: damage must be reported as damage.
pub fn without_panics<T>(body: impl FnOnce() -> T) -> Result<T, DbError> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    std::panic::set_hook(hook);
    result.map_err(|_| DbError::Corrupt("redb failed on damaged pages".to_string()))
}

/// A database opened by the holder of the store lock.
pub struct Db {
    database: redb::Database,
}

/// A database opened for reading alongside a writer in another process.
pub struct DbReader {
    database: redb::ReadOnlyDatabase,
}

impl Db {
    /// Creates the database with all tables and the initial state, durably.
    pub fn create(path: &Path) -> Result<Db, DbError> {
        // The file is made first, 0600 whatever the umask (it holds every file's content),
        // and never through a symlink; redb then initializes the empty file.
        create_private_file(path).map_err(|error| DbError::from(redb::Error::Io(error)))?;
        let database = builder().create(path)?;
        let db = Db { database };
        db.write(|txn| {
            txn.txn.open_table(OBJECTS)?;
            txn.txn.open_table(MANIFESTS)?;
            txn.txn.open_table(GENERATIONS)?;
            txn.txn.open_table(ATTEMPTS)?;
            txn.put_state(&StateRecord {
                active: None,
                serial_max: 0,
                next_generation: 1,
                next_attempt: 1,
            })
        })?;
        Ok(db)
    }

    pub fn open(path: &Path) -> Result<Db, DbError> {
        Ok(Db {
            database: without_panics(|| builder().open(path))??,
        })
    }

    /// [`Db::open`] with a small page cache, for a command that reads every page once
    /// (`verify`): a cache would only hold what is never read again.
    pub fn open_for_scan(path: &Path) -> Result<Db, DbError> {
        Ok(Db {
            database: without_panics(|| builder_with_cache(SCAN_CACHE_BYTES).open(path))??,
        })
    }

    /// Runs `body` in one write transaction and commits it durably (redb fsyncs before
    /// `commit` returns), or aborts it if `body` fails.
    pub fn write<T>(
        &self,
        body: impl FnOnce(&mut WriteTxn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut txn = WriteTxn {
            txn: self.database.begin_write()?,
        };
        let value = body(&mut txn)?;
        txn.txn.commit()?;
        Ok(value)
    }

    pub fn read(&self) -> Result<ReadTxn, DbError> {
        Ok(ReadTxn {
            txn: self.database.begin_read()?,
        })
    }

    /// Checks redb's own checksums over every page. `Ok(false)`: the last commit was
    /// damaged and redb rolled the database back to the one before.
    pub fn check_integrity(&mut self) -> Result<bool, DbError> {
        Ok(self.database.check_integrity()?)
    }

    /// Bytes the file holds that no table uses (freed pages, partly filled pages).
    pub fn fragmented_bytes(&self) -> Result<u64, DbError> {
        let txn = self.database.begin_write()?;
        let bytes = txn.stats()?.fragmented_bytes();
        txn.abort()?;
        Ok(bytes)
    }

    /// Gives freed pages back to the file system. Returns false when a reader in another
    /// process holds a transaction open, which compaction must wait for; gc then leaves it
    /// for next time.
    pub fn compact(&mut self) -> Result<bool, DbError> {
        let mut compacted = false;
        loop {
            match self.database.compact() {
                Ok(true) => compacted = true,
                Ok(false) => return Ok(compacted),
                Err(redb::CompactionError::TransactionInProgress) => return Ok(false),
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Creates `path` empty with mode [`DATABASE_FILE_MODE`], refusing anything already there.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(DATABASE_FILE_MODE)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(DATABASE_FILE_MODE))?;
    file.sync_all()
}

impl DbReader {
    pub fn open(path: &Path) -> Result<DbReader, DbError> {
        Ok(DbReader {
            database: without_panics(|| builder().open_read_only(path))??,
        })
    }

    pub fn read(&self) -> Result<ReadTxn, DbError> {
        Ok(ReadTxn {
            txn: self.database.begin_read()?,
        })
    }
}

pub struct WriteTxn {
    txn: redb::WriteTransaction,
}

impl WriteTxn {
    pub fn state(&self) -> Result<StateRecord, DbError> {
        let table = self.txn.open_table(STATE)?;
        let value = table
            .get(STATE_KEY)?
            .ok_or_else(|| DbError::Corrupt("state record missing".into()))?;
        Ok(records::decode(value.value())?)
    }

    pub fn put_state(&mut self, state: &StateRecord) -> Result<(), DbError> {
        self.txn
            .open_table(STATE)?
            .insert(STATE_KEY, records::encode(state).as_slice())?;
        Ok(())
    }

    pub fn has_object(&self, hash: Hash) -> Result<bool, DbError> {
        Ok(self.txn.open_table(OBJECTS)?.get(hash.0)?.is_some())
    }

    /// Stores `content` under its hash. The caller has hashed it; this asserts it.
    pub fn put_object(&mut self, hash: Hash, content: &[u8]) -> Result<(), DbError> {
        assert_eq!(
            Hash::of(content),
            hash,
            "object content does not match its hash"
        );
        self.txn.open_table(OBJECTS)?.insert(hash.0, content)?;
        Ok(())
    }

    /// Removes one object. Returns whether it was there.
    pub fn remove_object(&mut self, hash: Hash) -> Result<bool, DbError> {
        Ok(self.remove_object_sized(hash)?.is_some())
    }

    /// Removes one object. Returns its size if it was there.
    pub fn remove_object_sized(&mut self, hash: Hash) -> Result<Option<u64>, DbError> {
        let mut table = self.txn.open_table(OBJECTS)?;
        let removed = table.remove(hash.0)?;
        Ok(removed.map(|content| content.value().len() as u64))
    }

    /// Removes every object not in `keep`. Returns how many and their bytes.
    pub fn retain_objects(&mut self, keep: &HashSet<Hash>) -> Result<(u64, u64), DbError> {
        let mut table = self.txn.open_table(OBJECTS)?;
        let mut removed = (0u64, 0u64);
        table.retain(|hash, content| {
            let kept = keep.contains(&Hash(hash));
            if !kept {
                removed.0 += 1;
                removed.1 += content.len() as u64;
            }
            kept
        })?;
        Ok(removed)
    }

    /// Removes a generation's record and manifest.
    pub fn remove_generation(&mut self, generation: u64) -> Result<(), DbError> {
        self.txn.open_table(GENERATIONS)?.remove(generation)?;
        self.txn.open_table(MANIFESTS)?.remove(generation)?;
        Ok(())
    }

    /// Records the stamps of directory source `root`, keeping at most
    /// [`STAMPED_SOURCES_MAX`] sources.
    pub fn put_stamps(&mut self, root: &str, record: &StampsRecord) -> Result<(), DbError> {
        let mut table = self.txn.open_table(STAMPS)?;
        if table.len()? >= STAMPED_SOURCES_MAX && table.get(root)?.is_none() {
            table.retain(|_, _| false)?;
        }
        table.insert(root, records::encode(record).as_slice())?;
        Ok(())
    }

    pub fn put_health(&mut self, key: &str, record: &HealthRecord) -> Result<(), DbError> {
        self.txn
            .open_table(STATE)?
            .insert(key, records::encode(record).as_slice())?;
        Ok(())
    }

    pub fn put_manifest(
        &mut self,
        generation: u64,
        record: &ManifestRecord,
    ) -> Result<(), DbError> {
        self.txn
            .open_table(MANIFESTS)?
            .insert(generation, records::encode(record).as_slice())?;
        Ok(())
    }

    pub fn generation(&self, generation: u64) -> Result<Option<GenerationRecord>, DbError> {
        let table = self.txn.open_table(GENERATIONS)?;
        let value = table.get(generation)?;
        Ok(value
            .map(|value| records::decode(value.value()))
            .transpose()?)
    }

    pub fn put_generation(
        &mut self,
        generation: u64,
        record: &GenerationRecord,
    ) -> Result<(), DbError> {
        self.txn
            .open_table(GENERATIONS)?
            .insert(generation, records::encode(record).as_slice())?;
        Ok(())
    }

    /// Appends an attempt under the next attempt number, dropping the oldest beyond
    /// [`ATTEMPTS_KEPT_MAX`]. Returns its number.
    pub fn add_attempt(&mut self, record: &AttemptRecord) -> Result<u64, DbError> {
        let mut state = self.state()?;
        let number = state.next_attempt;
        state.next_attempt += 1;
        self.put_state(&state)?;
        let mut table = self.txn.open_table(ATTEMPTS)?;
        table.insert(number, records::encode(record).as_slice())?;
        if let Some(oldest_kept) = number.checked_sub(ATTEMPTS_KEPT_MAX) {
            table.retain_in(..=oldest_kept, |_, _| false)?;
        }
        Ok(number)
    }
}

pub struct ReadTxn {
    txn: redb::ReadTransaction,
}

impl ReadTxn {
    pub fn state(&self) -> Result<StateRecord, DbError> {
        let table = self.txn.open_table(STATE)?;
        let value = table
            .get(STATE_KEY)?
            .ok_or_else(|| DbError::Corrupt("state record missing".into()))?;
        Ok(records::decode(value.value())?)
    }

    /// The object's content, checked against its hash.
    pub fn object(&self, hash: Hash) -> Result<Vec<u8>, DbError> {
        let table = self.txn.open_table(OBJECTS)?;
        let value = table
            .get(hash.0)?
            .ok_or_else(|| DbError::Corrupt(format!("object {} is missing", hash.to_hex())))?;
        let content = value.value().to_vec();
        if Hash::of(&content) != hash {
            return Err(DbError::Corrupt(format!(
                "object {} does not match its hash",
                hash.to_hex()
            )));
        }
        Ok(content)
    }

    pub fn has_object(&self, hash: Hash) -> Result<bool, DbError> {
        Ok(self.txn.open_table(OBJECTS)?.get(hash.0)?.is_some())
    }

    /// Calls `visit` with every stored object's hash, size and whether its content still
    /// matches the hash: re-hashed with `rehash`, else taken as matching (when redb's
    /// checksums over every page were just verified, which covers the same bytes).
    pub fn check_objects(
        &self,
        rehash: bool,
        visit: &mut dyn FnMut(Hash, u64, bool),
    ) -> Result<(), DbError> {
        let table = self.txn.open_table(OBJECTS)?;
        for row in table.iter()? {
            let (key, value) = row?;
            let hash = Hash(key.value());
            let content = value.value();
            visit(
                hash,
                content.len() as u64,
                !rehash || Hash::of(content) == hash,
            );
        }
        Ok(())
    }

    /// The stamps recorded for directory source `root`, if any.
    pub fn stamps(&self, root: &str) -> Result<Option<StampsRecord>, DbError> {
        let table = match self.txn.open_table(STAMPS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let value = table.get(root)?;
        Ok(value
            .map(|value| records::decode(value.value()))
            .transpose()?)
    }

    pub fn health(&self, key: &str) -> Result<Option<HealthRecord>, DbError> {
        let table = self.txn.open_table(STATE)?;
        let value = table.get(key)?;
        Ok(value
            .map(|value| records::decode(value.value()))
            .transpose()?)
    }

    pub fn manifest(&self, generation: u64) -> Result<ManifestRecord, DbError> {
        let table = self.txn.open_table(MANIFESTS)?;
        let value = table.get(generation)?.ok_or_else(|| {
            DbError::Corrupt(format!("manifest of generation {generation} is missing"))
        })?;
        Ok(records::decode(value.value())?)
    }

    pub fn generation(&self, generation: u64) -> Result<Option<GenerationRecord>, DbError> {
        let table = self.txn.open_table(GENERATIONS)?;
        let value = table.get(generation)?;
        Ok(value
            .map(|value| records::decode(value.value()))
            .transpose()?)
    }

    /// Every generation, oldest first.
    pub fn generations(&self) -> Result<Vec<(u64, GenerationRecord)>, DbError> {
        let table = self.txn.open_table(GENERATIONS)?;
        let mut generations = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            generations.push((key.value(), records::decode(value.value())?));
        }
        Ok(generations)
    }

    /// The newest `limit` attempts, oldest first.
    pub fn attempts(&self, limit: usize) -> Result<Vec<(u64, AttemptRecord)>, DbError> {
        let table = self.txn.open_table(ATTEMPTS)?;
        let mut attempts = Vec::new();
        for row in table.iter()?.rev().take(limit) {
            let (key, value) = row?;
            attempts.push((key.value(), records::decode(value.value())?));
        }
        attempts.reverse();
        Ok(attempts)
    }
}
