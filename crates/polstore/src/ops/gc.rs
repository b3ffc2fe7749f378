//! Garbage collection, and pinning generations so that it keeps them.
//!
//! Kept: the active generation, the newest good one before it (the automatic rollback
//! target), the newest `keep` generations, pinned ones, and any whose directory a running
//! process is using (its working directory, root or an open file is inside it, as
//! `/proc` shows). Everything else goes, with every object no kept manifest references;
//! then the database file is compacted so the space goes back to the file system.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::manifest::Hash;
use crate::format::records::{Action, Outcome};
use crate::fs::durable;
use crate::store::transition::{self, Attempt};
use crate::store::{self, Store};

/// Free space in the database file below which gc does not compact it.
const COMPACT_FREE_BYTES_MIN: u64 = 1 << 20;
/// gc compacts the database file when at least this share of it is free
/// (`COMPACT_FREE_PARTS` / `COMPACT_FREE_PARTS_OF`): two thirds.
const COMPACT_FREE_PARTS: u64 = 2;
const COMPACT_FREE_PARTS_OF: u64 = 3;

/// `keep` for `polstore gc` when the configuration sets none.
pub const DEFAULT_KEEP: u32 = 10;

#[derive(Debug, Default)]
pub struct GcReport {
    pub removed: Vec<u64>,
    /// Generations gc would have removed but a running process is using.
    pub in_use: Vec<u64>,
    /// Kept generations whose tree gc took away (materialized again when needed).
    pub trees_released: Vec<u64>,
    pub objects_removed: u64,
    pub bytes_removed: u64,
    pub database_bytes_before: u64,
    pub database_bytes_after: u64,
    /// False when a reader in another process kept compaction from running.
    pub compacted: bool,
}

/// Which objects a collection looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Only those of the generations it removes: work in proportion to what goes. Repair's
    /// removal of generations does this.
    Removed,
    /// Every stored object, including those a crashed ingest left unreferenced: reads the
    /// whole objects table. `polstore gc` does this.
    All,
}

/// Collects generations and objects beyond what `keep` and the rules above keep.
pub fn gc(store: &mut Store, keep: u32, sweep: Sweep) -> Result<GcReport> {
    let mut report = GcReport {
        database_bytes_before: file_size(&store.layout.database()),
        ..GcReport::default()
    };
    let state = store.state()?;
    let generations: Vec<u64> = store
        .db
        .read()?
        .generations()?
        .into_iter()
        .map(|(generation, _)| generation)
        .collect();
    let mut previous = None;
    let mut kept: BTreeSet<u64> = generations
        .iter()
        .rev()
        .take(keep as usize)
        .copied()
        .collect();
    if let Some(active) = state.active {
        kept.insert(active);
        previous = store.previous_good(active)?;
        kept.extend(previous);
    }
    let candidates = generations
        .iter()
        .any(|generation| !kept.contains(generation) && !store.is_pinned(*generation));
    let spare_trees = trees_to_release(store, &generations, state.active, previous);
    // Scanning /proc costs in proportion to the processes; only when something may go.
    let in_use = if candidates || !spare_trees.is_empty() {
        generations_in_use(&store.layout)
    } else {
        BTreeSet::new()
    };
    let mut doomed = Vec::new();
    for &generation in &generations {
        if kept.contains(&generation) || store.is_pinned(generation) {
            continue;
        }
        if in_use.contains(&generation) {
            report.in_use.push(generation);
            continue;
        }
        doomed.push(generation);
    }
    let (objects, bytes) = if doomed.is_empty() && sweep == Sweep::Removed {
        (0, 0)
    } else {
        remove_generations(store, &doomed, sweep)?
    };
    for generation in spare_trees {
        if in_use.contains(&generation) || doomed.contains(&generation) {
            continue;
        }
        crate::store::slot::release(store, generation)?;
        report.trees_released.push(generation);
    }
    report.removed = doomed;
    report.objects_removed = objects;
    report.bytes_removed = bytes;
    // Compaction rewrites every page, so only when it pays: when most of the file is
    // free, at least a megabyte. redb grows its file by doubling, so up to half of it
    // free is its steady state, which the next commits use again: compacting that away
    // would only make the next commit grow the file again.
    if objects > 0 || !report.removed.is_empty() {
        let free = store.db.fragmented_bytes()?;
        if free >= COMPACT_FREE_BYTES_MIN
            && free.saturating_mul(COMPACT_FREE_PARTS_OF)
                >= report
                    .database_bytes_before
                    .saturating_mul(COMPACT_FREE_PARTS)
        {
            report.compacted = store.db.compact()?;
        }
    }
    report.database_bytes_after = file_size(&store.layout.database());
    if !report.removed.is_empty() {
        let message = format!(
            "removed generation(s) {}; freed {objects} objects ({bytes} bytes)",
            list(&report.removed)
        );
        transition::record(
            &store.db,
            Attempt::new(Action::Gc, Outcome::Collected, message),
        )?;
    }
    Ok(report)
}

/// The kept generations whose tree is not needed on disk: all but the active one's and one
/// other, the automatic rollback target's if it has its tree, else the newest other (the
/// spare the next update recycles). Their content stays in the database.
fn trees_to_release(
    store: &Store,
    generations: &[u64],
    active: Option<u64>,
    previous: Option<u64>,
) -> Vec<u64> {
    let materialized: Vec<u64> = generations
        .iter()
        .copied()
        .filter(|generation| Some(*generation) != active)
        .filter(|generation| crate::store::slot::materialized(&store.layout, *generation))
        .collect();
    let spare = previous
        .filter(|previous| materialized.contains(previous))
        .or_else(|| materialized.last().copied());
    materialized
        .into_iter()
        .filter(|generation| Some(*generation) != spare)
        .collect()
}

/// Removes `doomed` generations and the objects no remaining manifest references: of
/// the removed generations only, or of the whole table with [`Sweep::All`]. Returns the
/// objects removed and their bytes.
///
/// Order: `STORE/removing` lists the doomed numbers (synced); one database commit drops
/// the records, manifests and objects (the commit point); the directories are removed and
/// `generations/` synced; `removing` is removed. A crash in between leaves directories the
/// database does not know, listed in `removing`, which the next open removes.
pub fn remove_generations(store: &Store, doomed: &[u64], sweep: Sweep) -> Result<(u64, u64)> {
    let doomed_set: HashSet<u64> = doomed.iter().copied().collect();
    let read = store.db.read()?;
    let mut referenced: HashSet<Hash> = HashSet::new();
    let mut candidates: HashSet<Hash> = HashSet::new();
    for (generation, _) in read.generations()? {
        let manifest = store::stored_manifest(&read, generation)?;
        let hashes = manifest.entries.iter().map(|entry| entry.hash);
        if doomed_set.contains(&generation) {
            candidates.extend(hashes);
        } else {
            referenced.extend(hashes);
        }
    }
    drop(read);
    if !doomed.is_empty() {
        write_removal_intent(store, doomed)?;
        crate::crashpoint::point("gc-intent-written");
    }
    let removed = store.db.write(|txn| {
        for &generation in doomed {
            txn.remove_generation(generation)?;
        }
        match sweep {
            Sweep::All => txn.retain_objects(&referenced),
            Sweep::Removed => {
                let mut removed = (0, 0);
                for hash in candidates.difference(&referenced) {
                    if let Some(bytes) = txn.remove_object_sized(*hash)? {
                        removed.0 += 1;
                        removed.1 += bytes;
                    }
                }
                Ok(removed)
            }
        }
    })?;
    if !doomed.is_empty() {
        crate::crashpoint::point("gc-committed");
    }
    for &generation in doomed {
        let directory = store.layout.generation_dir(generation);
        durable::remove_tree_if_exists(&directory)
            .map_err(Error::io("cannot remove", &directory))?;
    }
    if !doomed.is_empty() {
        let generations = store.layout.generations();
        durable::sync_directory(&generations).map_err(Error::io("cannot sync", &generations))?;
        crate::crashpoint::point("gc-removed");
        store.clear_removal_intent()?;
    }
    Ok(removed)
}

/// Writes `STORE/removing` with the numbers of `doomed`, durably (file, then the store
/// directory), before the commit that drops their records: recovery then knows that
/// directories of those numbers are polstore's to remove.
fn write_removal_intent(store: &Store, doomed: &[u64]) -> Result<()> {
    let path = store.layout.removal_intent();
    let text: String = doomed.iter().map(|number| format!("{number}\n")).collect();
    durable::remove_tree_if_exists(&path).map_err(Error::io("cannot remove", &path))?;
    durable::create_file_synced(&path, text.as_bytes(), 0o600)
        .map_err(Error::io("cannot write", &path))?;
    let root = &store.layout.root;
    durable::sync_directory(root).map_err(Error::io("cannot sync", root))
}

/// Pins or unpins `generation`: a pinned one is never collected.
pub fn set_pinned(store: &Store, generation: u64, pinned: bool) -> Result<bool> {
    if store.db.read()?.generation(generation)?.is_none() {
        return Err(Error::NoSuchGeneration(generation));
    }
    let marker = store.layout.pin_marker(generation);
    let was = marker.exists();
    if was == pinned {
        return Ok(false);
    }
    if pinned {
        durable::create_file_synced(&marker, b"", 0o644)
            .map_err(Error::io("cannot write", &marker))?;
    } else {
        fs::remove_file(&marker).map_err(Error::io("cannot remove", &marker))?;
    }
    let directory = store.layout.generation_dir(generation);
    durable::sync_directory(&directory).map_err(Error::io("cannot sync", &directory))?;
    Ok(true)
}

pub use crate::store::slot::generations_in_use;

fn file_size(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |metadata| metadata.len())
}

/// "3, 5, 8": generation numbers for a message.
pub fn list(generations: &[u64]) -> String {
    generations
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
