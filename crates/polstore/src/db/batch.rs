//! New objects, committed in batches.

use crate::db::{Db, DbError};
use crate::format::manifest::Hash;

/// New objects are committed in batches of about this size: a large tree is never held
/// in memory whole, and no commit grows with the tree.
pub const OBJECT_BATCH_BYTES: usize = 4 << 20;

/// Objects waiting for their commit. Each commit is durable when it returns (redb fsyncs),
/// and an object no generation references yet is harmless: gc collects it.
pub struct ObjectBatch<'a> {
    db: &'a Db,
    pending: Vec<(Hash, Vec<u8>)>,
    pending_bytes: usize,
    stored: Vec<Hash>,
    /// A crash point after each commit, for the crash-point tests.
    crash_point: Option<&'static str>,
}

impl<'a> ObjectBatch<'a> {
    pub fn new(db: &'a Db) -> ObjectBatch<'a> {
        ObjectBatch {
            db,
            pending: Vec::new(),
            pending_bytes: 0,
            stored: Vec::new(),
            crash_point: None,
        }
    }

    pub fn with_crash_point(mut self, name: &'static str) -> ObjectBatch<'a> {
        self.crash_point = Some(name);
        self
    }

    /// Adds `content`, whose hash the caller checked; commits when the batch is full.
    pub fn add(&mut self, hash: Hash, content: Vec<u8>) -> Result<(), DbError> {
        self.pending_bytes += content.len();
        self.pending.push((hash, content));
        if self.pending_bytes >= OBJECT_BATCH_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DbError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.db.write(|txn| {
            for (hash, content) in &pending {
                txn.put_object(*hash, content)?;
            }
            Ok(())
        })?;
        self.stored
            .extend(pending.into_iter().map(|(hash, _)| hash));
        if let Some(name) = self.crash_point {
            crate::crashpoint::point(name);
        }
        Ok(())
    }

    /// Commits what is left. Returns every object stored.
    pub fn finish(mut self) -> Result<Vec<Hash>, DbError> {
        self.commit()?;
        Ok(std::mem::take(&mut self.stored))
    }
}
