//! `polstore verify --repair`: put right what [`crate::health::inspect`] found, from verified data only.
//!
//! Content comes back by hash, so every source is verified the same way: an intact file in
//! any generation directory, the drop place, or a fresh copy from the fetch command. Order:
//! 1. leftovers of interrupted commands are cleaned (the recovery every open does);
//! 2. damaged or missing objects are restored into the database from those sources;
//! 3. each damaged generation directory is built anew in staging from its intact files and
//!    the database's objects, then exchanged with the damaged tree in one rename, so the
//!    agent sees the old tree or the repaired one, never a mix;
//! 4. when the active generation cannot be repaired or no longer parses, the newest intact
//!    good generation that parses is activated; when there is none, a fresh copy is fetched
//!    and ingested through every check;
//! 5. generations that cannot be repaired are removed, so nothing unverified can be
//!    activated later;
//! 6. the view is pointed at the active generation; a directory someone put in its place
//!    is moved aside (never deleted) with one atomic exchange.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::Path;

use crate::db::LAST_VERIFY_KEY;
use crate::db::batch::ObjectBatch;
use crate::error::{Error, Result};
use crate::format::manifest::{Hash, Manifest};
use crate::format::policy_path::{MANIFEST_NAME, SIGNATURE_NAME};
use crate::format::records::{
    Action, GenerationState, HealthOutcome, HealthRecord, ManifestRecord, Outcome,
};
use crate::format::timestamp::Timestamp;
use crate::fs::durable;
use crate::fs::read;
use crate::health::inspect::{self, DbOpenFailure, Finding, Inspection, Kind, ProgressFn};
use crate::health::rebuild;
use crate::ops::ingest::{self, IngestRequest};
use crate::store::materialize::TreeBuilder;
use crate::store::protect::{self, Protection};
use crate::store::transition::{self, Attempt};
use crate::store::{Layout, LockWait, LockedStore, Store};
use crate::transport::ObjectSource;
use crate::transport::drop::DropPlace;

/// What `verify` found and, with `--repair`, what it did.
#[derive(Default)]
pub struct VerifyReport {
    pub findings: Vec<Finding>,
    /// With `--repair`: each change made, one line each.
    pub changes: Vec<String>,
    /// With `--repair`: what the operator must know (another generation activated, a
    /// generation removed, nothing intact left).
    pub alarms: Vec<String>,
    /// With `--repair`: what a second look still found.
    pub remaining: Vec<Finding>,
    pub repaired: bool,
    pub active: Option<u64>,
    /// Each kept generation as the last look found it.
    pub generations: Vec<GenerationHealth>,
    /// Whether writes through the view reach the store, as the command leaves it.
    pub protection: Option<Protection>,
}

/// One generation in a [`VerifyReport`].
pub struct GenerationHealth {
    pub generation: u64,
    pub state: GenerationState,
    pub files: u64,
    /// No finding names it.
    pub sound: bool,
}

fn generation_health(inspection: &Inspection) -> Vec<GenerationHealth> {
    inspection
        .records
        .iter()
        .map(|(generation, record)| GenerationHealth {
            generation: *generation,
            state: record.state,
            files: record.files,
            sound: !inspection
                .findings
                .iter()
                .any(|finding| finding.generation == Some(*generation)),
        })
        .collect()
}

impl VerifyReport {
    /// Sound now: nothing found, or everything found was put right.
    pub fn sound(&self) -> bool {
        if self.repaired {
            self.remaining.is_empty()
        } else {
            self.findings.is_empty()
        }
    }
}

/// `polstore verify [--repair]` on the store at `root`.
pub fn verify_store(
    root: &Path,
    wait: LockWait,
    repair: bool,
    progress: ProgressFn,
) -> Result<VerifyReport> {
    let locked = LockedStore::acquire(root, wait)?;
    let mut report = VerifyReport {
        repaired: repair,
        ..VerifyReport::default()
    };
    // The store's own paths are put right before anything is read through them: what was
    // planted is moved aside, rights others should not have are taken away.
    if repair {
        repair_own_paths(&locked.layout, &mut report)?;
        // Then the read-only mount the view points through, and what is planted in
        // `readonly/`: before anything (the parse check) reads a tree through it. Without
        // the privilege to mount, the view stays writable; `report.protection` says so.
        let ensured = protect::ensure_mounted(&locked.layout, locked.config.protect_view)?;
        report.changes.extend(ensured.notes);
    }
    progress("opening the database", false);
    let opened = inspect::open_checked_db(&locked.layout);
    let db = match opened {
        Ok(db) => db,
        // Not the bytes: nothing to rebuild, and nothing is.
        Err(DbOpenFailure::Unusable(error)) => return Err(error.into()),
        Err(DbOpenFailure::Damaged(reason)) => {
            report.findings.push(Finding {
                generation: None,
                path: Some(locked.layout.database().display().to_string()),
                kind: Kind::Database,
                detail: format!("the database is damaged: {reason}"),
            });
            if !repair {
                // Still say what the directories hold, against their own signed manifests.
                report
                    .findings
                    .extend(rebuild::inspect_directories(&locked, progress));
                return Ok(report);
            }
            let (db, changes, alarms) = rebuild::rebuild(&locked, progress)?;
            report.changes.extend(changes);
            report.alarms.extend(alarms);
            db
        }
    };
    let store = locked.with_db(db);
    // A database checked page by page just now (not a rebuilt one, which was written
    // since) needs no second read of its objects.
    let objects = if report
        .findings
        .iter()
        .any(|finding| finding.kind == Kind::Database)
    {
        inspect::Objects::Rehash
    } else {
        inspect::Objects::CoveredByChecksums
    };
    check_and_repair(&store, repair, objects, &mut report, progress)?;
    report.protection = Some(protect::protection(
        &store.layout,
        store.config.protect_view,
    ));
    Ok(report)
}

/// Inspects `store` and, with `repair`, repairs it and inspects it again. Records the
/// outcome for `status`.
pub fn check_and_repair(
    store: &Store,
    repair: bool,
    objects: inspect::Objects,
    report: &mut VerifyReport,
    progress: ProgressFn,
) -> Result<()> {
    let parse = store.config.verify.parse;
    let inspection = inspect::inspect(store, parse, objects, progress)?;
    report.findings.extend(inspection.findings.iter().cloned());
    report.active = inspection.active;
    report.generations = generation_health(&inspection);
    if repair && !report.findings.is_empty() {
        let started = Timestamp::now();
        repair_store(store, inspection, report, progress)?;
        progress("verifying again", false);
        // Repair wrote since: every object is re-hashed.
        let again = inspect::inspect(store, parse, inspect::Objects::Rehash, progress)?;
        report.generations = generation_health(&again);
        report.remaining = again.findings;
        report.active = again.active;
        let message = if report.remaining.is_empty() {
            format!("repaired {}", problems(report.findings.len()))
        } else {
            format!(
                "repaired some of {}; {} remain",
                problems(report.findings.len()),
                report.remaining.len()
            )
        };
        let attempt = Attempt::new(
            Action::Repair,
            Outcome::Repaired,
            format!("{message}: {}", report.changes.join("; ")),
        )
        .started(started)
        .generation(report.active);
        transition::record(&store.db, attempt)?;
    }
    let outcome = if !report.sound() {
        HealthOutcome::Damaged
    } else if report.findings.is_empty() {
        HealthOutcome::Sound
    } else {
        HealthOutcome::Repaired
    };
    let message = match outcome {
        HealthOutcome::Sound => match report.active {
            Some(active) => format!("no damage found; generation {active} is active"),
            None => "no damage found".to_string(),
        },
        HealthOutcome::Repaired => format!("repaired {}", problems(report.findings.len())),
        _ => {
            let left = if report.repaired {
                &report.remaining
            } else {
                &report.findings
            };
            format!(
                "{}{}: {}",
                problems(left.len()),
                if report.repaired {
                    " left after repair"
                } else {
                    ""
                },
                left.first().map(ToString::to_string).unwrap_or_default()
            )
        }
    };
    let record = HealthRecord {
        at: Timestamp::now().unix_secs(),
        outcome,
        message,
    };
    store
        .db
        .write(|txn| txn.put_health(LAST_VERIFY_KEY, &record))?;
    Ok(())
}

fn repair_store(
    store: &Store,
    mut inspection: Inspection,
    report: &mut VerifyReport,
    progress: ProgressFn,
) -> Result<()> {
    // 1. Leftovers, an interrupted confirmation, a view symlink pointing elsewhere.
    progress("cleaning up after interrupted commands", false);
    let recovery = store.reconcile()?;
    report.changes.extend(
        recovery
            .notes
            .into_iter()
            .filter(|note| !note.contains("is not a generation polstore knows")),
    );
    // What is in the store's directory and not polstore's: moved aside, never deleted.
    let root = &store.layout.root;
    for path in store
        .layout
        .foreign_entries()
        .map_err(Error::io("cannot read", root))?
    {
        let aside = move_aside(&store.layout, &path)?;
        report.changes.push(format!(
            "moved {}, not something polstore keeps in a store, to {}",
            path.display(),
            aside.display()
        ));
    }
    // What recovery left in generations/ is not polstore's: moved aside, never deleted.
    for path in store.unknown_generation_dirs()? {
        let aside = move_aside(&store.layout, &path)?;
        report.changes.push(format!(
            "moved {}, not a generation polstore knows, to {}",
            path.display(),
            aside.display()
        ));
    }
    inspection.active = store.state()?.active;

    // 2. Objects.
    let mut needed: HashSet<Hash> = inspection.bad_objects.clone();
    let mut fetched = false;
    // Whether every source that could hold a missing object was read: only then is a
    // generation truly beyond repair, rather than waiting for a transport that failed.
    let mut sources_complete = true;
    if !needed.is_empty() {
        restore_from_intact_files(store, &inspection, &mut needed, report)?;
    }
    if !needed.is_empty() {
        sources_complete &= restore_from_drop(store, &mut needed, report, progress)?;
    }
    if !needed.is_empty()
        && let Some(url) = &store.config.fetch.url
    {
        sources_complete &= restore_from_repository(store, url, &mut needed, report, progress)?;
    }
    if !needed.is_empty() && !store.config.fetch.command.is_empty() {
        fetched = fetch_for_repair(store, report, progress);
        sources_complete &= fetched;
        if fetched {
            sources_complete &= restore_from_drop(store, &mut needed, report, progress)?;
        }
    }
    if !inspection.stray_bad_objects.is_empty() {
        let stray = inspection.stray_bad_objects.clone();
        let removed = store.db.write(|txn| {
            let mut removed = 0;
            for hash in &stray {
                if txn.remove_object(*hash)? {
                    removed += 1;
                }
            }
            Ok(removed)
        })?;
        report.changes.push(format!(
            "removed {removed} damaged objects no generation uses"
        ));
    }

    // 3. Generation directories.
    let mut irreparable = BTreeSet::new();
    for &generation in &inspection.damaged {
        let manifest = &inspection.manifests[&generation];
        let lost: Vec<&str> = manifest
            .entries
            .iter()
            .filter(|entry| {
                !inspection.intact[&generation].contains(&entry.path)
                    && needed.contains(&entry.hash)
            })
            .map(|entry| entry.path.as_str())
            .collect();
        if !lost.is_empty() {
            report.alarms.push(format!(
                "generation {generation} cannot be repaired: no verified copy of {} file(s), first {}",
                lost.len(),
                lost[0]
            ));
            irreparable.insert(generation);
            continue;
        }
        progress(&format!("repairing generation {generation}"), false);
        rematerialize(store, generation, manifest, &inspection.intact[&generation])?;
        report.changes.push(format!(
            "re-materialized the directory of generation {generation} from verified data"
        ));
    }

    // 4. The active generation.
    if let Some(active) = inspection.active {
        let reason = if irreparable.contains(&active) {
            Some("its files cannot be repaired".to_string())
        } else {
            inspection
                .parse_failure
                .as_ref()
                .map(|failure| format!("it no longer parses: {failure}"))
        };
        if let Some(reason) = reason {
            replace_active(
                store,
                active,
                &reason,
                &inspection,
                &irreparable,
                fetched,
                report,
                progress,
            )?;
        }
    }

    // 5. Generations beyond repair, unless one is still the active one. They are removed
    //    only when every source was read and they are not pinned; otherwise they are
    //    marked failed (rollback refuses a directory that does not verify) and kept for a
    //    later repair.
    let active = store.state()?.active;
    let mut doomed = Vec::new();
    for &generation in &irreparable {
        if Some(generation) == active {
            continue;
        }
        let why_kept = if store.is_pinned(generation) {
            Some("it is pinned")
        } else if !sources_complete {
            Some("a source of fresh copies failed, so a later repair may still succeed")
        } else {
            None
        };
        match why_kept {
            Some(why) => {
                let reason = "damaged beyond repair: files have no verified copy";
                transition::mark_failed(store, generation, reason)?;
                report.alarms.push(format!(
                    "kept generation {generation}, damaged beyond repair, because {why}; marked failed"
                ));
            }
            None => doomed.push(generation),
        }
    }
    if !doomed.is_empty() {
        crate::ops::gc::remove_generations(store, &doomed, crate::ops::gc::Sweep::Removed)?;
        for generation in doomed {
            report.alarms.push(format!(
                "removed generation {generation}: damaged beyond repair, it must never be activated"
            ));
        }
    }

    // 6. `STORE/active`, then the views that resolve through it.
    if let Some(active) = active {
        if inspect::active_problem(&store.layout, active).is_some() {
            store.switch_active(active)?;
            report.changes.push(format!(
                "pointed {} at generation {active}",
                store.layout.active_link().display()
            ));
        }
        for view in store.config.views() {
            if inspect::view_problem(&store.layout, &view, active).is_some() {
                let change = restore_view(store, &view)?;
                report.changes.push(change);
            }
        }
    }

    Ok(())
}

/// Puts the store's own paths right, before anything is read through them: something
/// planted in place of `staging/` or `generations/` is moved into `untrusted/` (never
/// followed, never deleted) and the directory made anew; a record others could have
/// changed (`removing`, `serial-floor`, `adopted`) is moved aside too (recovery writes the
/// last two anew from the database); a path owned by another user is given back to
/// polstore's user; rights of others are taken away. What polstore cannot vouch for (the
/// configuration, the format file, the database, the store itself) is not touched here:
/// the lock holder refuses to read those, and the operator fixes them.
fn repair_own_paths(layout: &Layout, report: &mut VerifyReport) -> Result<()> {
    use crate::store::{GENERATIONS_MODE, PathProblemKind, STAGING_MODE};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for problem in layout.own_path_problems() {
        if !problem.repairable {
            continue;
        }
        let path = &problem.path;
        let directory_mode = if *path == layout.staging() {
            Some(STAGING_MODE)
        } else if *path == layout.generations() {
            Some(GENERATIONS_MODE)
        } else {
            None
        };
        let record = *path != layout.lock_file() && directory_mode.is_none();
        match problem.kind {
            PathProblemKind::Foreign(found) if directory_mode.is_some() => {
                let aside = move_aside(layout, path)?;
                let mode = directory_mode.unwrap_or(STAGING_MODE);
                durable::create_directory(path, mode).map_err(Error::io("cannot create", path))?;
                durable::sync_directory(&layout.root)
                    .map_err(Error::io("cannot sync", &layout.root))?;
                report.changes.push(format!(
                    "moved the {found} found at {} to {} and made the directory anew",
                    path.display(),
                    aside.display()
                ));
            }
            _ if record => {
                let aside = move_aside(layout, path)?;
                report.changes.push(format!(
                    "moved {}, which others could have changed, to {}",
                    path.display(),
                    aside.display()
                ));
            }
            // The lock is held, so it is a regular file (the lock refuses anything else).
            PathProblemKind::Foreign(_) => {}
            PathProblemKind::Owner(uid) => {
                let owner = rustix::process::geteuid();
                std::os::unix::fs::lchown(path, Some(owner.as_raw()), None)
                    .map_err(Error::io("cannot change the owner of", path))?;
                report.changes.push(format!(
                    "gave {} back to polstore's user (it belonged to user {uid})",
                    path.display()
                ));
            }
            PathProblemKind::Mode(mode) => {
                let current = fs::symlink_metadata(path)
                    .map_err(Error::io("cannot read", path))?
                    .mode();
                if current & 0o7777 != mode {
                    continue;
                }
                let fixed = mode & 0o700;
                fs::set_permissions(path, fs::Permissions::from_mode(fixed))
                    .map_err(Error::io("cannot set the mode of", path))?;
                report.changes.push(format!(
                    "set the mode of {} to {fixed:04o} (it was {mode:04o})",
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

/// Moves `path` into `untrusted/` under its name and the time, durably; returns where.
pub fn move_aside(layout: &Layout, path: &Path) -> Result<std::path::PathBuf> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    layout.move_into_untrusted(path, &name)
}

/// Copies each needed object from a generation file that still hashes right.
fn restore_from_intact_files(
    store: &Store,
    inspection: &Inspection,
    needed: &mut HashSet<Hash>,
    report: &mut VerifyReport,
) -> Result<()> {
    let mut batch = ObjectBatch::new(&store.db).with_crash_point("repair-objects-restored");
    let mut restored = 0;
    for (hash, path) in &inspection.intact_files {
        if !needed.contains(hash) {
            continue;
        }
        // Bounded and not following links: the file may have changed since it was checked.
        let limit = store.config.limits.file_bytes_max as usize;
        let Some(content) = read::read_bounded(path, limit) else {
            continue;
        };
        if Hash::of(&content) == *hash {
            needed.remove(hash);
            restored += 1;
            batch.add(*hash, content)?;
        }
    }
    batch.finish()?;
    if restored > 0 {
        report.changes.push(format!(
            "restored {restored} objects from generation files that still match their hash"
        ));
    }
    Ok(())
}

/// Asks the drop place for every needed object and stores what it gives, each verified by
/// its hash. A drop that a source check refuses still gives what was verified before the
/// refusal. Returns false when the drop could not be read to the end.
fn restore_from_drop(
    store: &Store,
    needed: &mut HashSet<Hash>,
    report: &mut VerifyReport,
    progress: ProgressFn,
) -> Result<bool> {
    let place = DropPlace::new(&store.config, store.layout.staging());
    if place.source().is_none() {
        return Ok(true);
    }
    progress("looking for verified copies in the drop place", false);
    let name = format!("the drop place {}", place.describe());
    restore_from(store, &place, &name, needed, report)
}

/// Asks the repository (`fetch.url`) for every needed object by its hash, and stores what
/// hashes right. Returns false when it could not be asked for all of them.
fn restore_from_repository(
    store: &Store,
    url: &str,
    needed: &mut HashSet<Hash>,
    report: &mut VerifyReport,
    progress: ProgressFn,
) -> Result<bool> {
    progress("asking the repository for verified copies", false);
    let source = match crate::transport::repo::RepositoryObjects::new(
        &store.config.fetch,
        url,
        store.config.limits.file_bytes_max,
    ) {
        Ok(source) => source,
        Err(error) => {
            report
                .alarms
                .push(format!("the repository {url} cannot be asked: {error}"));
            return Ok(false);
        }
    };
    let name = source.describe();
    restore_from(store, &source, &name, needed, report)
}

/// Stores every needed object `source` gives (each checked against its hash by the
/// source), in batches, and says so; an error after some were given keeps those. Returns
/// false when `source` could not give every object it was asked for.
fn restore_from(
    store: &Store,
    source: &dyn ObjectSource,
    name: &str,
    needed: &mut HashSet<Hash>,
    report: &mut VerifyReport,
) -> Result<bool> {
    let mut batch = ObjectBatch::new(&store.db).with_crash_point("repair-objects-restored");
    let outcome = source.objects(needed, &mut |hash, content| Ok(batch.add(hash, content)?));
    let restored = batch.finish()?;
    for hash in &restored {
        needed.remove(hash);
    }
    if !restored.is_empty() {
        report
            .changes
            .push(format!("restored {} objects from {name}", restored.len()));
    }
    if let Err(error) = outcome {
        report
            .alarms
            .push(format!("{name} could not be read to the end: {error}"));
        return Ok(false);
    }
    Ok(true)
}

fn fetch_for_repair(store: &Store, report: &mut VerifyReport, progress: ProgressFn) -> bool {
    progress("fetching a fresh copy", false);
    let place = DropPlace::new(&store.config, store.layout.staging());
    match place.fetch(true) {
        Ok(()) => {
            report
                .changes
                .push("fetched a fresh copy with the fetch command".to_string());
            true
        }
        Err(error) => {
            report
                .alarms
                .push(format!("fetching a fresh copy failed: {error}"));
            false
        }
    }
}

/// Builds generation `generation`'s directory anew and puts it in place.
///
/// Order: the new tree is written in `staging/repair/tree` (intact files hard-linked,
/// others written from verified objects and synced) and its directories synced; the
/// manifest and signature files are replaced by rename and the generation directory
/// synced; then the new tree is exchanged with the old in one renameat2(EXCHANGE) (a
/// plain rename when the old one is gone) and the generation directory synced again;
/// last, the old tree, now in staging, is removed. A crash at any point leaves the old
/// tree or the new one in place, and staging is emptied by the next open.
pub fn rematerialize(
    store: &Store,
    generation: u64,
    manifest: &Manifest,
    intact: &HashSet<String>,
) -> Result<()> {
    let layout = &store.layout;
    let work = layout.repair_dir();
    durable::remove_tree_if_exists(&work).map_err(Error::io("cannot remove", &work))?;
    let new_tree = work.join("tree");
    let mut builder = TreeBuilder::new(new_tree.clone())?;
    let old_tree = layout.generation_tree(generation);
    let read = store.db.read()?;
    for entry in &manifest.entries {
        builder.make_parents(&entry.path)?;
        // A file found intact is linked only if it still is: time has passed since.
        let source = old_tree.join(&entry.path);
        let linked = intact.contains(&entry.path)
            && read::read_bounded(&source, entry.size as usize)
                .is_some_and(|content| Hash::of(&content) == entry.hash)
            && builder.link(&entry.path, &source)?;
        if !linked {
            let content = read.object(entry.hash)?;
            builder.write(&entry.path, &content, entry.mode)?;
        }
    }
    drop(read);
    for directory in &manifest.directories {
        builder.make_directory(directory)?;
    }
    builder.sync()?;
    durable::sync_directory(&work).map_err(Error::io("cannot sync", &work))?;
    crate::crashpoint::point("repair-tree-built");

    let directory = layout.generation_dir(generation);
    // Something planted in place of the generation's directory is moved aside, not used.
    if fs::symlink_metadata(&directory).is_ok_and(|metadata| !metadata.is_dir()) {
        move_aside(layout, &directory)?;
    }
    if fs::symlink_metadata(&directory).is_err() {
        durable::create_directory(&directory, crate::store::STORE_DIRECTORY_MODE)
            .map_err(Error::io("cannot create", &directory))?;
        let generations = layout.generations();
        durable::sync_directory(&generations).map_err(Error::io("cannot sync", &generations))?;
        // The markers went with the directory; the database still knows a failure.
        if let Some(record) = store.db.read()?.generation(generation)?
            && record.state == GenerationState::Failed
        {
            transition::write_failed_marker(
                store,
                generation,
                record.reason.as_deref().unwrap_or("failed"),
            )?;
        }
    }
    let stored = store.db.read()?.manifest(generation)?;
    replace_envelope(&directory, &stored)?;
    durable::sync_directory(&directory).map_err(Error::io("cannot sync", &directory))?;
    crate::crashpoint::point("repair-envelope-replaced");
    if fs::symlink_metadata(&old_tree).is_ok() {
        durable::exchange(&new_tree, &old_tree).map_err(Error::io(
            "cannot put the repaired tree in place of",
            &old_tree,
        ))?;
    } else {
        fs::rename(&new_tree, &old_tree).map_err(Error::io("cannot move", &new_tree))?;
    }
    durable::sync_directory(&directory).map_err(Error::io("cannot sync", &directory))?;
    crate::crashpoint::point("repair-exchanged");
    durable::remove_tree_if_exists(&work).map_err(Error::io("cannot remove", &work))?;
    let staging = layout.staging();
    durable::sync_directory(&staging).map_err(Error::io("cannot sync", &staging))
}

/// Makes the manifest and signature files beside a generation's tree equal to the
/// database's copies, each by writing a temporary file and renaming it over the old.
/// The caller syncs `directory`.
fn replace_envelope(directory: &Path, stored: &ManifestRecord) -> Result<()> {
    let files = [
        (MANIFEST_NAME, Some(&stored.manifest)),
        (SIGNATURE_NAME, stored.signature.as_ref()),
    ];
    for (name, content) in files {
        let path = directory.join(name);
        let current = read::read_bounded(&path, crate::format::manifest::MANIFEST_BYTES_MAX);
        if current.as_ref() == content {
            continue;
        }
        match content {
            Some(content) => {
                let temporary = durable::temporary_sibling(&path, "new")
                    .map_err(Error::io("cannot name", &path))?;
                durable::remove_tree_if_exists(&temporary)
                    .map_err(Error::io("cannot remove", &temporary))?;
                durable::create_file_synced(&temporary, content, 0o644)
                    .map_err(Error::io("cannot write", &temporary))?;
                fs::rename(&temporary, &path).map_err(Error::io("cannot replace", &path))?;
            }
            None => {
                durable::remove_tree_if_exists(&path).map_err(Error::io("cannot remove", &path))?;
            }
        }
    }
    Ok(())
}

/// The active generation cannot stay: activates the newest intact good generation that
/// parses, or failing that ingests a fresh copy through every check.
#[allow(clippy::too_many_arguments)]
fn replace_active(
    store: &Store,
    active: u64,
    reason: &str,
    inspection: &Inspection,
    irreparable: &BTreeSet<u64>,
    fetched: bool,
    report: &mut VerifyReport,
    progress: ProgressFn,
) -> Result<()> {
    // Older generations only, newest first: a newer one is one the operator rolled back
    // from. Expired ones are not trusted any more.
    let now = Timestamp::now().unix_secs();
    let candidates: Vec<u64> = inspection
        .records
        .iter()
        .rev()
        .filter(|(generation, record)| {
            **generation < active
                && record.state == GenerationState::Good
                && !irreparable.contains(generation)
                && record.expires.is_none_or(|expires| expires > now)
        })
        .map(|(generation, _)| *generation)
        .collect();
    for candidate in candidates {
        // A kept generation without its tree gets it back from the store first.
        if let Err(error) = crate::store::slot::materialize(store, candidate) {
            report.alarms.push(format!(
                "generation {candidate} is not a fallback: its tree could not be materialized: {error}"
            ));
            continue;
        }
        if let Some((failure, _)) = inspect::parse_failure(store, candidate, inspection, progress) {
            report.alarms.push(format!(
                "generation {candidate} is not a fallback: it does not parse either: {failure}"
            ));
            continue;
        }
        switch_active(store, active, candidate, reason)?;
        report.alarms.push(format!(
            "ACTIVATED generation {candidate} in place of generation {active}, because {reason}"
        ));
        return Ok(());
    }
    // Nothing intact left: a fresh copy, through every check.
    if !fetched && !store.config.fetch.command.is_empty() {
        fetch_for_repair(store, report, progress);
    }
    let Some(source) = DropPlace::new(&store.config, store.layout.staging()).source() else {
        report.alarms.push(format!(
            "generation {active} must be replaced ({reason}), but no other generation is intact and no drop place is configured to fetch a fresh copy into"
        ));
        return Ok(());
    };
    progress("ingesting a fresh copy", false);
    let mut ingest_progress = |_: ingest::Progress| {};
    let outcome = ingest::ingest(
        store,
        IngestRequest {
            source: source.clone(),
            manifest_file: None,
            signature_file: None,
            trust_stamps: false,
            progress: &mut ingest_progress,
        },
    );
    match outcome {
        Ok(ingested) => {
            if !irreparable.contains(&active) {
                transition::mark_failed(store, active, reason)?;
            }
            report.alarms.push(format!(
                "INGESTED a fresh copy as generation {} (serial {}) in place of generation {active}, because {reason}",
                ingested.generation, ingested.serial
            ));
        }
        Err(error) => report.alarms.push(format!(
            "generation {active} must be replaced ({reason}), no other generation is intact, and the fresh copy from {} was refused: {error}",
            source.describe()
        )),
    }
    Ok(())
}

/// Makes `to` active in place of `from`, which is marked failed in the same commit; the
/// view follows in step 6 of [`repair_store`] when it is not polstore's symlink.
fn switch_active(store: &Store, from: u64, to: u64, reason: &str) -> Result<()> {
    let message =
        format!("generation {from} failed verification ({reason}); activated generation {to}");
    let serial = store.db.read()?.generation(to)?.map(|record| record.serial);
    let attempt = Attempt::new(Action::Repair, Outcome::Switched, message).serial(serial);
    transition::activate(
        store,
        to,
        Some((from, reason)),
        attempt,
        "repair-fallback-committed",
    )
}

/// Points the view at `active`. Something other than a symlink there is moved aside, not
/// deleted, with no moment where the view is missing: a symlink to the active tree is
/// created under a new name `.NAME.polstore-displaced-UNIXTIME[-K]` beside the view, then
/// exchanged with the view by renameat2(EXCHANGE), and the parent fsynced. The exchange
/// leaves what was at the view under that name, so a crash leaves either the old state
/// (plus a stray symlink of that name) or the repaired one, never the directory at a name
/// polstore would remove.
fn restore_view(store: &Store, view: &crate::config::View) -> Result<String> {
    let target = store.layout.view_target(view);
    let view = &view.path;
    crate::store::protect::ensure_directory(&store.layout)?;
    let is_symlink_or_missing = match fs::symlink_metadata(view) {
        Ok(metadata) => metadata.file_type().is_symlink(),
        Err(_) => true,
    };
    if is_symlink_or_missing {
        durable::switch_symlink(view, &target)
            .map_err(Error::io("cannot switch the view", view))?;
        return Ok(format!(
            "pointed the view {} at {}",
            view.display(),
            target.display()
        ));
    }
    let stamp = Timestamp::now().unix_secs();
    let mut displaced = None;
    for attempt in 0..100 {
        let tag = if attempt == 0 {
            format!("displaced-{stamp}")
        } else {
            format!("displaced-{stamp}-{attempt}")
        };
        let name =
            durable::temporary_sibling(view, &tag).map_err(Error::io("cannot name", view))?;
        match std::os::unix::fs::symlink(&target, &name) {
            Ok(()) => {
                displaced = Some(name);
                break;
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(Error::io("cannot create", &name)(error)),
        }
    }
    let Some(displaced) = displaced else {
        return Err(Error::Refused(format!(
            "cannot find a free name beside {} to move it aside",
            view.display()
        )));
    };
    durable::exchange(&displaced, view)
        .map_err(Error::io("cannot put the view symlink in place of", view))?;
    crate::crashpoint::point("repair-view-exchanged");
    let parent = durable::parent_of(view).map_err(Error::io("cannot sync", view))?;
    durable::sync_directory(parent).map_err(Error::io("cannot sync", parent))?;
    Ok(format!(
        "put the view symlink back in place of what was at {} (moved aside to {}), pointing at {}",
        view.display(),
        displaced.display(),
        target.display()
    ))
}

/// "1 problem", "3 problems".
pub fn problems(count: usize) -> String {
    if count == 1 {
        "1 problem".to_string()
    } else {
        format!("{count} problems")
    }
}
