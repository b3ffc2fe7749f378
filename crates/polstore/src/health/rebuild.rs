//! Rebuilding the database from the generation directories, when it is damaged or lost.
//!
//! Each generation directory holds its manifest and signature exactly as they were
//! accepted (`generations/N/polstore.manifest`, `.sig`), and `failed` when it failed. A
//! generation is rebuilt only if its signature still verifies against the trusted keys
//! (or, in a store that accepts unsigned policy, if it is unsigned), and each object only
//! from a file that still matches the manifest's hash. Objects no file holds any more are
//! restored afterwards by the ordinary repair, from the drop place or a fresh copy.

use std::collections::BTreeMap;
use std::fs;

use crate::checks;
use crate::db::Db;
use crate::db::batch::ObjectBatch;
use crate::error::{Error, Result};
use crate::format::manifest::{Hash, MANIFEST_BYTES_MAX, Manifest};
use crate::format::policy_path::{MANIFEST_NAME, SIGNATURE_NAME};
use crate::format::records::{
    Action, AttemptRecord, GenerationRecord, GenerationState, ManifestRecord, Origin, Outcome,
    StateRecord,
};
use crate::format::signatures::SIGNATURE_LIST_BYTES_MAX;
use crate::format::timestamp::Timestamp;
use crate::fs::durable;
use crate::fs::read::read_bounded;
use crate::health::inspect::{self, Finding, HashCache, Kind, ProgressFn};
use crate::store::transition::{self, Attempt};
use crate::store::{self, LockedStore};

/// A generation directory whose manifest verified.
struct Found {
    generation: u64,
    manifest: Manifest,
    envelope: ManifestRecord,
    signed_by: Option<String>,
    origin: Origin,
    failed: Option<String>,
}

/// The generation directories whose manifest can be trusted, and findings for the rest.
fn catalog(locked: &LockedStore) -> Result<(Vec<Found>, Vec<Finding>)> {
    let mut trusted = checks::trust_root(&locked.config, &locked.layout)?;
    // A generation was accepted while its root was current: the root's expiry since
    // says nothing about it.
    trusted.expires = None;
    let require_signature = locked.config.trust.require_signature;
    let generations = locked.layout.generations();
    let mut numbers: Vec<u64> = fs::read_dir(&generations)
        .map_err(Error::io("cannot read", &generations))?
        .flatten()
        .filter_map(|entry| crate::store::layout::generation_number(&entry.file_name()))
        .collect();
    numbers.sort_unstable();
    let mut found = Vec::new();
    let mut findings = Vec::new();
    for generation in numbers {
        let directory = locked.layout.generation_dir(generation);
        let refuse = |findings: &mut Vec<Finding>, detail: String| {
            findings.push(Finding {
                generation: Some(generation),
                path: Some(format!("../{MANIFEST_NAME}")),
                kind: Kind::Envelope,
                detail,
            });
        };
        let Some(manifest_bytes) = read_bounded(&directory.join(MANIFEST_NAME), MANIFEST_BYTES_MAX)
        else {
            refuse(
                &mut findings,
                "is missing or unreadable: the generation cannot be verified".into(),
            );
            continue;
        };
        let signature = read_bounded(&directory.join(SIGNATURE_NAME), SIGNATURE_LIST_BYTES_MAX);
        let manifest = match Manifest::parse(&manifest_bytes, store::stored_manifest_limits()) {
            Ok(manifest) => manifest,
            Err(error) => {
                refuse(&mut findings, format!("does not parse: {error}"));
                continue;
            }
        };
        // Only the adoption the store itself recorded: a manifest that calls itself
        // "adopted" proves nothing.
        let adopted = signature.is_none()
            && crate::store::trust::adopted(&locked.layout, generation, &manifest_bytes)?;
        // Only the signature is checked here: the files are checked one by one below.
        let entries: BTreeMap<String, crate::format::manifest::Entry> = manifest
            .entries
            .iter()
            .map(|entry| (entry.path.clone(), entry.clone()))
            .collect();
        let (verdict, signed_by) = checks::integrity(
            &manifest,
            Some(&manifest_bytes),
            signature.as_deref(),
            &trusted,
            require_signature && !adopted,
            &entries,
        );
        if let Some(rejection) = verdict.rejection {
            refuse(&mut findings, format!("cannot be trusted: {rejection}"));
            continue;
        }
        let failed = read_bounded(&locked.layout.failed_marker(generation), 4096)
            .map(|reason| String::from_utf8_lossy(&reason).chars().take(500).collect());
        found.push(Found {
            generation,
            manifest,
            envelope: ManifestRecord {
                manifest: manifest_bytes,
                signature,
            },
            signed_by,
            origin: if adopted {
                Origin::Adopted
            } else {
                Origin::Ingested
            },
            failed,
        });
    }
    Ok((found, findings))
}

/// Without a database: each generation directory against its own verified manifest.
pub fn inspect_directories(locked: &LockedStore, progress: ProgressFn) -> Vec<Finding> {
    let (found, mut findings) = match catalog(locked) {
        Ok(catalog) => catalog,
        Err(error) => {
            return vec![Finding {
                generation: None,
                path: None,
                kind: Kind::Database,
                detail: format!("cannot look at the generation directories: {error}"),
            }];
        }
    };
    let mut cache = HashCache::default();
    let shown = locked.layout.active_generation();
    for generation in &found {
        progress(
            &format!("checking generation {}", generation.generation),
            false,
        );
        // Only the generation `STORE/active` shows must have its tree; the others' are
        // materialized when needed.
        if shown != Some(generation.generation)
            && !crate::store::slot::materialized(&locked.layout, generation.generation)
        {
            continue;
        }
        inspect::check_tree(
            &locked.layout.generation_tree(generation.generation),
            generation.generation,
            &generation.manifest,
            &mut cache,
            locked.config.limits.files_max.saturating_mul(2),
            &mut findings,
        );
    }
    findings
}

/// Writes a new database from the generation directories and puts it in place of the
/// damaged one, which is kept as `polstore.redb.damaged`. Returns the new database, the
/// changes made and the alarms for the operator.
///
/// Order: untrusted directories are moved to `untrusted/` (each rename synced); the new
/// database is written and committed (fsynced by redb) under a temporary name; the
/// damaged one gets a second name by hard link; the new one is renamed over it; the store
/// directory is synced. A crash at any point leaves `polstore.redb` old or new. Refuses
/// when directories exist but none can be trusted (say, after a key rotation), rather
/// than empty the store.
pub fn rebuild(
    locked: &LockedStore,
    progress: ProgressFn,
) -> Result<(Db, Vec<String>, Vec<String>)> {
    progress(
        "rebuilding the database from the generation directories",
        false,
    );
    let (found, findings) = catalog(locked)?;
    let layout = &locked.layout;
    if found.is_empty() && !findings.is_empty() {
        return Err(Error::Refused(format!(
            "the database is damaged, and no generation directory has a manifest that verifies against the trusted keys (first: {}); refusing to rebuild from them: check trust.keys",
            findings[0]
        )));
    }
    // Directories whose manifest cannot be trusted are moved aside, never deleted: after
    // a key rotation, the operator may still want them.
    let mut alarms = Vec::new();
    // A floor that cannot be read refuses the rebuild, before anything is moved: going on
    // could lower it.
    let serial_floor = crate::store::trust::serial_floor(layout)?;
    let untrusted = layout.untrusted();
    for finding in &findings {
        let Some(generation) = finding.generation else {
            continue;
        };
        let from = layout.generation_dir(generation);
        let to = untrusted.join(format!("{generation}-{}", Timestamp::now().unix_secs()));
        match durable::create_directory(&untrusted, crate::store::STAGING_MODE) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(Error::io("cannot create", &untrusted)(error)),
        }
        fs::rename(&from, &to).map_err(Error::io("cannot move aside", &from))?;
        durable::sync_directory(&untrusted).map_err(Error::io("cannot sync", &untrusted))?;
        alarms.push(format!(
            "not rebuilt, {finding}; moved its directory to {}",
            to.display()
        ));
    }
    if !findings.is_empty() {
        let generations = layout.generations();
        durable::sync_directory(&generations).map_err(Error::io("cannot sync", &generations))?;
    }
    // The replay floor and the history: the damaged database may still say them, if it
    // can be read at all (each part that decodes is kept; a panic inside redb on damaged
    // pages loses only that part).
    // Only a regular file is opened: never a database through a symlink.
    let salvageable =
        fs::symlink_metadata(layout.database()).is_ok_and(|metadata| metadata.is_file());
    let salvaged_serial_max = crate::db::without_panics(|| -> Option<u64> {
        if !salvageable {
            return None;
        }
        Some(
            Db::open(&layout.database())
                .ok()?
                .read()
                .ok()?
                .state()
                .ok()?
                .serial_max,
        )
    })
    .ok()
    .flatten();
    let salvaged_history: Vec<AttemptRecord> = crate::db::without_panics(|| {
        if !salvageable {
            return None;
        }
        let db = Db::open(&layout.database()).ok()?;
        let read = db.read().ok()?;
        read.attempts(crate::db::ATTEMPTS_KEPT_MAX as usize).ok()
    })
    .ok()
    .flatten()
    .unwrap_or_default()
    .into_iter()
    .map(|(_, record)| record)
    .collect();
    let temporary = layout.root.join("polstore.redb.rebuild");
    durable::remove_tree_if_exists(&temporary).map_err(Error::io("cannot remove", &temporary))?;
    let db = Db::create(&temporary)?;

    // Objects, from files that still match their hash.
    let mut cache = HashCache::default();
    let mut pending: Vec<(Hash, std::path::PathBuf)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for generation in &found {
        let tree = layout.generation_tree(generation.generation);
        let mut ignored = Vec::new();
        let intact = inspect::check_tree(
            &tree,
            generation.generation,
            &generation.manifest,
            &mut cache,
            locked.config.limits.files_max.saturating_mul(2),
            &mut ignored,
        );
        for entry in &generation.manifest.entries {
            if intact.contains(&entry.path) && seen.insert(entry.hash) {
                pending.push((entry.hash, tree.join(&entry.path)));
            }
        }
    }
    let mut batch = ObjectBatch::new(&db);
    let limit = locked.config.limits.file_bytes_max as usize;
    for (hash, path) in pending {
        if let Some(content) = read_bounded(&path, limit)
            && Hash::of(&content) == hash
        {
            batch.add(hash, content)?;
        }
    }
    batch.finish()?;

    // Records and state. The active generation is the one `STORE/active` names (or,
    // in a store an older polstore made, the one its view points at), if it was rebuilt
    // and did not fail; else the newest good one.
    let shown = layout.active_generation().or_else(|| {
        let views = locked.config.views();
        let [view] = views.as_slice() else {
            return None;
        };
        fs::read_link(&view.path)
            .ok()
            .and_then(|target| layout.view_generation(&target))
    });
    let good = |generation: &&Found| generation.failed.is_none();
    let active = found
        .iter()
        .filter(good)
        .find(|generation| shown == Some(generation.generation))
        .or_else(|| found.iter().rfind(good))
        .or_else(|| found.last())
        .map(|generation| generation.generation);
    let message = format!(
        "rebuilt the database from {} generation directories{}",
        found.len(),
        active
            .map(|active| format!("; generation {active} is active"))
            .unwrap_or_default()
    );
    let records: Vec<(u64, GenerationRecord, ManifestRecord)> = found
        .iter()
        .map(|generation| {
            let manifest = &generation.manifest;
            let record = GenerationRecord {
                serial: manifest.serial,
                created: manifest.created.unix_secs(),
                manifest_created: manifest.created.unix_secs(),
                expires: manifest.expires.map(Timestamp::unix_secs),
                origin: generation.origin,
                state: if generation.failed.is_some() {
                    GenerationState::Failed
                } else {
                    GenerationState::Good
                },
                reason: generation.failed.clone(),
                files: manifest.entries.len() as u64,
                bytes: manifest.total_bytes(),
                source: "rebuilt from its directory".to_string(),
                signed_by: generation.signed_by.clone(),
                attempt: 0,
            };
            (generation.generation, record, generation.envelope.clone())
        })
        .collect();
    let state = StateRecord {
        active,
        serial_max: found
            .iter()
            .map(|generation| generation.manifest.serial)
            .chain(salvaged_serial_max)
            .chain(serial_floor)
            .max()
            .unwrap_or(0),
        next_generation: found
            .last()
            .map_or(1, |generation| generation.generation + 1),
        next_attempt: 1,
    };
    let attempt =
        Attempt::new(Action::Repair, Outcome::Repaired, message.clone()).generation(active);
    transition::rebuilt(&db, &records, &state, &salvaged_history, attempt)?;
    drop(db);
    crate::crashpoint::point("rebuild-written");
    // The damaged file is kept under a second name (a hard link), then the rebuilt one is
    // renamed over it, so that `polstore.redb` exists at every moment.
    let database = layout.database();
    let damaged = layout.damaged_database();
    let kept = fs::symlink_metadata(&database).is_ok_and(|metadata| metadata.is_file());
    if kept {
        durable::remove_tree_if_exists(&damaged).map_err(Error::io("cannot remove", &damaged))?;
        fs::hard_link(&database, &damaged)
            .map_err(Error::io("cannot keep a copy of", &database))?;
    }
    crate::crashpoint::point("rebuild-linked");
    fs::rename(&temporary, &database).map_err(Error::io("cannot move into place", &temporary))?;
    durable::sync_directory(&layout.root).map_err(Error::io("cannot sync", &layout.root))?;
    let db = Db::open(&database)?;
    let changes = vec![if kept {
        format!(
            "{message} (the damaged database was kept as {})",
            damaged.display()
        )
    } else {
        format!("{message} (there was no database file to keep)")
    }];
    Ok((db, changes, alarms))
}
