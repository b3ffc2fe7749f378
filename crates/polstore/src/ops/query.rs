//! Read-only questions about a store: its generations, one file of one, the difference
//! between two. Nothing here writes.

use std::collections::BTreeMap;

use crate::db::ReadTxn;
use crate::error::{Error, Result};
use crate::format::manifest::Entry;
use crate::format::records::GenerationRecord;
use crate::store;

pub fn generation(read: &ReadTxn, generation: u64) -> Result<GenerationRecord> {
    read.generation(generation)?
        .ok_or(Error::NoSuchGeneration(generation))
}

/// The content of `path` in `generation`, read from the object store and checked against
/// its hash.
pub fn show(read: &ReadTxn, generation_number: u64, path: &str) -> Result<Vec<u8>> {
    generation(read, generation_number)?;
    let manifest = store::stored_manifest(read, generation_number)?;
    let entry = manifest
        .entries
        .iter()
        .find(|entry| entry.path == path)
        .ok_or_else(|| {
            Error::Refused(format!("generation {generation_number} has no file {path}"))
        })?;
    Ok(read.object(entry.hash)?)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Added(Entry),
    Removed(Entry),
    /// Content or mode changed.
    Modified {
        old: Entry,
        new: Entry,
    },
}

impl Change {
    pub fn path(&self) -> &str {
        match self {
            Change::Added(entry) | Change::Removed(entry) | Change::Modified { new: entry, .. } => {
                &entry.path
            }
        }
    }
}

/// What changed from generation `old` to generation `new`, by path.
pub fn diff(read: &ReadTxn, old: u64, new: u64) -> Result<Vec<Change>> {
    generation(read, old)?;
    generation(read, new)?;
    let before: BTreeMap<String, Entry> = store::stored_manifest(read, old)?
        .entries
        .into_iter()
        .map(|entry| (entry.path.clone(), entry))
        .collect();
    let mut after: BTreeMap<String, Entry> = store::stored_manifest(read, new)?
        .entries
        .into_iter()
        .map(|entry| (entry.path.clone(), entry))
        .collect();
    let mut changes = Vec::new();
    for (path, old_entry) in before {
        match after.remove(&path) {
            None => changes.push(Change::Removed(old_entry)),
            Some(new_entry)
                if new_entry.hash != old_entry.hash || new_entry.mode != old_entry.mode =>
            {
                changes.push(Change::Modified {
                    old: old_entry,
                    new: new_entry,
                });
            }
            Some(_) => {}
        }
    }
    changes.extend(after.into_values().map(Change::Added));
    changes.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(changes)
}
