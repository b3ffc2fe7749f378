//! `polstore verify`: find every kind of damage polstore is responsible for.
//!
//! It looks, in order, at: the database (redb's page checksums, then every record
//! decoded); what interrupted commands left behind; every stored object (re-hashed, or
//! covered by those checksums, [`Objects`]); every
//! generation directory against its manifest (content, mode, nothing missing, nothing
//! extra, no group/world write) and its manifest and signature files against the
//! database's copies; the view symlink; the state's own invariants; and, last, the parse
//! check on the active generation. Nothing here changes the store; [`crate::health::repair`] does.
//!
//! A file shared by hard links between generations is hashed once per inode, and a tree's
//! files are hashed on every core.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::checks::{self, CommandContext};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::format::manifest::{Hash, Manifest};
use crate::format::policy_path::{MANIFEST_NAME, SIGNATURE_NAME};
use crate::format::records::{GenerationRecord, GenerationState, ManifestRecord};
use crate::fs::read::read_bounded;
pub use crate::store::tree::{Finding, HashCache, Kind, check_tree, short};
pub use crate::store::view::{active_problem, view_problem};
use crate::store::{self, Layout, Store};

/// Reports what verify is doing, for a progress line. `true`: a counter that may be
/// shown at a reduced rate.
pub type ProgressFn<'a> = &'a mut dyn FnMut(&str, bool);

/// Everything one look at a store found, with what repair needs to put it right.
#[derive(Default)]
pub struct Inspection {
    pub findings: Vec<Finding>,
    /// The manifests of the generations in `damaged`.
    pub manifests: BTreeMap<u64, Manifest>,
    /// Each hash some manifest references, with the first generation and path naming it.
    referenced: HashMap<Hash, (u64, String)>,
    pub records: BTreeMap<u64, GenerationRecord>,
    pub active: Option<u64>,
    /// Generations whose directory (tree, manifest or signature file) needs repair.
    pub damaged: BTreeSet<u64>,
    /// Objects referenced by a manifest that the database lacks or holds damaged.
    pub bad_objects: HashSet<Hash>,
    /// Damaged objects no manifest references: repair just removes them.
    pub stray_bad_objects: HashSet<Hash>,
    /// For the generations in `damaged`, the paths whose file matches the manifest.
    pub intact: BTreeMap<u64, HashSet<String>>,
    /// A verified copy of each content found intact somewhere in a generation directory.
    pub intact_files: HashMap<Hash, PathBuf>,
    /// The parse check's refusal of the active generation.
    pub parse_failure: Option<String>,
    /// Kept generations without their tree on disk.
    without_tree: Vec<u64>,
}

impl Inspection {
    pub fn sound(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Why [`open_checked_db`] gave no database.
pub enum DbOpenFailure {
    /// The bytes cannot be trusted: for `verify --repair` to rebuild.
    Damaged(String),
    /// It cannot be used now for another reason (another process holds it, the file
    /// system refuses access, the disk is full): nothing is rebuilt.
    Unusable(crate::db::DbError),
}

/// Opens the database and checks it: redb's checksums over every page, then the state,
/// every generation and manifest record and every attempt decoded. Tells damage from a
/// database that cannot be used for another reason.
pub fn open_checked_db(layout: &Layout) -> std::result::Result<Db, DbOpenFailure> {
    let judge = |error: crate::db::DbError| {
        if error.is_damage() {
            DbOpenFailure::Damaged(error.reason())
        } else {
            DbOpenFailure::Unusable(error)
        }
    };
    let path = layout.database();
    match std::fs::symlink_metadata(&path) {
        Err(_) => {
            return Err(DbOpenFailure::Damaged(format!(
                "{} is missing",
                path.display()
            )));
        }
        // Never opened through a symlink or as anything but a regular file.
        Ok(metadata) if !metadata.is_file() => {
            return Err(DbOpenFailure::Damaged(format!(
                "{} is a {}, not a regular file",
                path.display(),
                crate::fs::type_name(metadata.file_type())
            )));
        }
        Ok(_) => {}
    }
    let checked = quietly(|| -> std::result::Result<Db, DbOpenFailure> {
        let mut db = Db::open_for_scan(&path).map_err(judge)?;
        match db.check_integrity() {
            Ok(true) => {}
            Ok(false) => {
                return Err(DbOpenFailure::Damaged(
                    "its last commit failed redb's checksums and was rolled back".to_string(),
                ));
            }
            Err(error) => return Err(judge(error)),
        }
        let read = db.read().map_err(judge)?;
        read.state().map_err(judge)?;
        for (generation, _) in read.generations().map_err(judge)? {
            read.manifest(generation).map_err(judge)?;
        }
        read.attempts(usize::MAX).map_err(judge)?;
        drop(read);
        Ok(db)
    });
    match checked {
        Some(result) => result,
        None => Err(DbOpenFailure::Damaged(
            "reading it failed inside redb (damaged pages)".to_string(),
        )),
    }
}

fn quietly<T>(body: impl FnOnce() -> T) -> Option<T> {
    crate::db::without_panics(body).ok()
}

/// How [`inspect`] checks the stored objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objects {
    /// Each re-hashed with blake3.
    Rehash,
    /// Listed, not re-hashed: redb's checksums over every page of the database
    /// ([`open_checked_db`]) were verified since it was opened, and nothing was written
    /// since. They cover every byte of every object, so the objects are read once.
    CoveredByChecksums,
}

/// Looks at the whole store. `parse`: also run the parse check on the active generation.
pub fn inspect(
    store: &Store,
    parse: bool,
    objects: Objects,
    progress: ProgressFn,
) -> Result<Inspection> {
    let mut inspection = Inspection::default();
    progress("checking the database", false);
    inspect_leftovers(store, &mut inspection)?;
    let read = store.db.read()?;
    let state = read.state()?;
    inspection.active = state.active;
    for (generation, record) in read.generations()? {
        inspection.records.insert(generation, record);
    }
    inspect_state(&state, &mut inspection);
    drop(read);
    // The objects are checked on a second thread while this one walks the generation
    // directories: the two read different files, and a node has more than one core.
    let (objects, directories) = std::thread::scope(|scope| {
        let objects = scope.spawn(|| -> Result<(HashSet<Hash>, Vec<Hash>)> {
            let read = store.db.read()?;
            let mut stored = HashSet::new();
            let mut damaged = Vec::new();
            read.check_objects(objects == Objects::Rehash, &mut |hash, _, matches| {
                stored.insert(hash);
                if !matches {
                    damaged.push(hash);
                }
            })?;
            Ok((stored, damaged))
        });
        let directories = check_generation_directories(store, &mut inspection, progress);
        (
            // redb may panic on pages damaged since the checksum check: damage, not a bug.
            objects.join().unwrap_or_else(|_| {
                Err(Error::Corrupt(
                    "reading the objects failed inside redb (damaged pages)".into(),
                ))
            }),
            directories,
        )
    });
    let (stored, damaged_objects) = objects?;
    let referenced = std::mem::take(&mut inspection.referenced);
    for hash in damaged_objects {
        match referenced.get(&hash) {
            Some((generation, path)) => {
                inspection.findings.push(Finding::new(
                    Some(*generation),
                    Some(path),
                    Kind::Object,
                    format!("its stored object {} does not match its hash", short(hash)),
                ));
                inspection.bad_objects.insert(hash);
            }
            None => {
                inspection.findings.push(Finding::new(
                    None,
                    None,
                    Kind::Object,
                    format!(
                        "unreferenced object {} does not match its hash",
                        short(hash)
                    ),
                ));
                inspection.stray_bad_objects.insert(hash);
            }
        }
    }
    let mut missing: Vec<(&Hash, &(u64, String))> = referenced
        .iter()
        .filter(|(hash, _)| !stored.contains(*hash))
        .collect();
    missing.sort_by_key(|(_, (generation, path))| (*generation, path.clone()));
    for (hash, (generation, path)) in missing {
        inspection.findings.push(Finding::new(
            Some(*generation),
            Some(path),
            Kind::Object,
            format!("its object {} is missing from the database", short(*hash)),
        ));
        inspection.bad_objects.insert(*hash);
    }
    // A generation without its tree on disk has its content only in the objects: one of
    // them lost, and it is damaged, for repair to restore from a source or, failing that,
    // to find beyond repair (it could never be materialized again).
    if !inspection.bad_objects.is_empty() {
        let read = store.db.read()?;
        for generation in std::mem::take(&mut inspection.without_tree) {
            let manifest = store::stored_manifest(&read, generation)?;
            let lost = manifest
                .entries
                .iter()
                .find(|entry| inspection.bad_objects.contains(&entry.hash));
            if let Some(entry) = lost {
                inspection.findings.push(Finding::new(
                    Some(generation),
                    Some(&entry.path),
                    Kind::Object,
                    format!(
                        "its content is only in the database, and its object {} is lost",
                        short(entry.hash)
                    ),
                ));
                inspection.damaged.insert(generation);
                inspection.intact.insert(generation, HashSet::new());
                inspection.manifests.insert(generation, manifest);
            }
        }
    }

    // Generation directories: their findings come after the objects'.
    inspection.findings.extend(directories?);
    // `STORE/active` and the views. A view an older polstore pointed at the active
    // generation's tree through `readonly/generations` is not damage, nor is a missing
    // `STORE/active` behind it: the agent reads the right policy, read-only, and the next
    // writer makes `active` and points the view through it. One at the writable
    // `generations/N/tree` is: writes through it reach the store.
    if let Some(active) = state.active {
        let views = store.config.views();
        let older = !views.is_empty()
            && views
                .iter()
                .all(|view| crate::store::view::is_older_view(&store.layout, view, active));
        let active_missing = fs::symlink_metadata(store.layout.active_link()).is_err();
        if !(older && active_missing)
            && let Some(problem) = active_problem(&store.layout, active)
        {
            inspection
                .findings
                .push(Finding::new(None, None, Kind::View, problem));
        }
        for view in &views {
            if let Some(problem) = view_problem(&store.layout, view, active)
                && !crate::store::view::is_older_protected_view(&store.layout, view, active)
            {
                inspection
                    .findings
                    .push(Finding::new(None, None, Kind::View, problem));
            }
        }
    }

    // What the view resolves through: something planted or mounted in `readonly/` makes
    // the view show what is not the store.
    if let Some(what) = crate::store::protect::foreign(&store.layout) {
        inspection.findings.push(Finding::new(
            None,
            None,
            Kind::View,
            format!("{what}: the view does not show the store"),
        ));
    }

    // The parse check, on an active generation whose bytes are right. Only a conclusive
    // refusal (cf-promises ran and said no) lets repair replace the generation; a check
    // that timed out or could not start is reported and left for the next run.
    // Never through a staging/ that is not polstore's: the check writes its output there.
    let staging_is_ours = !store.layout.own_path_problems().iter().any(|problem| {
        problem.path == store.layout.staging()
            && matches!(problem.kind, store::PathProblemKind::Foreign(_))
    });
    if parse
        && staging_is_ours
        && let Some(active) = state.active
        && !inspection.damaged.contains(&active)
        && let Some((failure, conclusive)) = parse_failure(store, active, &inspection, progress)
    {
        let detail = if conclusive {
            format!("the active generation no longer parses: {failure}")
        } else {
            format!("the parse check could not give a verdict on the active generation: {failure}")
        };
        inspection
            .findings
            .push(Finding::new(Some(active), None, Kind::Parse, detail));
        if conclusive {
            inspection.parse_failure = Some(failure);
        }
    }
    Ok(inspection)
}

/// Each generation's directory against its manifest, and its manifest files against the
/// database. One generation at a time, so that memory does not grow with their number:
/// only damaged generations keep their manifest and the paths found intact (repair needs
/// them); every generation adds the hashes it references and where a verified copy of each
/// content is. Returns the findings, in generation order.
fn check_generation_directories(
    store: &Store,
    inspection: &mut Inspection,
    progress: ProgressFn,
) -> Result<Vec<Finding>> {
    let mut cache = HashCache::default();
    let read = store.db.read()?;
    let mut all_findings = Vec::new();
    let generations: Vec<u64> = inspection.records.keys().copied().collect();
    for generation in generations {
        progress(&format!("checking generation {generation}"), false);
        let manifest = store::stored_manifest(&read, generation)?;
        let stored_envelope = read.manifest(generation)?;
        let mut findings = Vec::new();
        // Never through something planted in place of a generation's directory.
        let directory = store.layout.generation_dir(generation);
        if let Ok(metadata) = fs::symlink_metadata(&directory)
            && !metadata.is_dir()
        {
            findings.push(Finding::new(
                Some(generation),
                None,
                Kind::Type,
                format!(
                    "its directory {} is a {}, not polstore's directory",
                    directory.display(),
                    crate::fs::type_name(metadata.file_type())
                ),
            ));
            inspection.damaged.insert(generation);
            inspection.intact.insert(generation, HashSet::new());
            inspection.manifests.insert(generation, manifest);
            all_findings.extend(findings);
            continue;
        }
        check_envelope(&store.layout, generation, &stored_envelope, &mut findings);
        let tree = store.layout.generation_tree(generation);
        // A kept generation other than the active one may have no tree: its content is in
        // the database, and its tree is materialized again when needed (`store::slot`).
        if inspection.active != Some(generation)
            && fs::symlink_metadata(&tree)
                .is_err_and(|error| error.kind() == std::io::ErrorKind::NotFound)
        {
            for entry in &manifest.entries {
                inspection
                    .referenced
                    .entry(entry.hash)
                    .or_insert_with(|| (generation, entry.path.clone()));
            }
            inspection.without_tree.push(generation);
            if !findings.is_empty() {
                inspection.damaged.insert(generation);
                inspection.intact.insert(generation, HashSet::new());
                inspection.manifests.insert(generation, manifest);
            }
            all_findings.extend(findings);
            continue;
        }
        let intact = check_tree(
            &tree,
            generation,
            &manifest,
            &mut cache,
            store.config.limits.files_max.saturating_mul(2),
            &mut findings,
        );
        for entry in &manifest.entries {
            inspection
                .referenced
                .entry(entry.hash)
                .or_insert_with(|| (generation, entry.path.clone()));
            if intact.contains(&entry.path) {
                inspection
                    .intact_files
                    .entry(entry.hash)
                    .or_insert_with(|| tree.join(&entry.path));
            }
        }
        if !findings.is_empty() {
            inspection.damaged.insert(generation);
            inspection.intact.insert(generation, intact);
            inspection.manifests.insert(generation, manifest);
        }
        all_findings.extend(findings);
    }
    Ok(all_findings)
}

/// Runs the configured parse check on `generation`'s tree. `None`: it passed, or there is
/// no parse check. Otherwise the reason, and whether the refusal is conclusive.
pub fn parse_failure(
    store: &Store,
    generation: u64,
    inspection: &Inspection,
    progress: ProgressFn,
) -> Option<(String, bool)> {
    if store.config.checks.cf_promises.is_empty() {
        return None;
    }
    progress(&format!("parse check on generation {generation}"), false);
    // Through the read-only mount, like the agent: cf-promises cannot write into it.
    let tree = crate::store::protect::readable_tree(&store.layout, generation);
    let output_file = store.layout.staging().join("verify-output");
    // With several views, the check sees the generation at the view paths too; a view
    // missing is not made here (verify changes no view): the check then gives no verdict.
    let views = match checks::ViewMounts::new(
        &store.config,
        &store.layout,
        &tree,
        &format!("generation {generation}"),
        false,
    ) {
        Ok(views) => views,
        Err(error) => return Some((error.to_string(), false)),
    };
    let context = CommandContext {
        tree: &tree,
        serial: inspection
            .records
            .get(&generation)
            .map_or(0, |record| record.serial),
        generation,
        output_file: &output_file,
        timeout: Duration::from_secs(store.config.checks.timeout_secs),
        views: views.as_ref(),
    };
    let result = checks::parse_conclusively(&store.config, &context);
    let _ = fs::remove_file(&output_file);
    match result {
        // The check cannot run at all (its program found nowhere): no verdict.
        Err(error) => Some((error.to_string(), false)),
        Ok(verdict) => {
            let (verdict, conclusive) = verdict?;
            verdict.rejection.map(|rejection| {
                let reason = match rejection.path {
                    Some(entry) => format!("{entry}: {}", rejection.reason),
                    None => rejection.reason,
                };
                (reason, conclusive)
            })
        }
    }
}

fn inspect_leftovers(store: &Store, inspection: &mut Inspection) -> Result<()> {
    let problems = store.layout.own_path_problems();
    for problem in &problems {
        inspection
            .findings
            .push(Finding::new(None, None, Kind::Store, problem.to_string()));
    }
    let root = &store.layout.root;
    for path in store
        .layout
        .foreign_entries()
        .map_err(Error::io("cannot read", root))?
    {
        inspection.findings.push(Finding::new(
            None,
            Some(&path.display().to_string()),
            Kind::Leftover,
            "not something polstore keeps in a store".into(),
        ));
    }
    let staging = store.layout.staging();
    // Never read through something planted in place of staging/ or generations/.
    let foreign = |path: &std::path::Path| {
        problems.iter().any(|problem| {
            problem.path == path && matches!(problem.kind, store::PathProblemKind::Foreign(_))
        })
    };
    if foreign(&staging) || foreign(&store.layout.generations()) {
        return Ok(());
    }
    for entry in fs::read_dir(&staging).map_err(Error::io("cannot read", &staging))? {
        let entry = entry.map_err(Error::io("cannot read", &staging))?;
        inspection.findings.push(Finding::new(
            None,
            Some(&entry.path().display().to_string()),
            Kind::Leftover,
            "left in staging by an interrupted command".into(),
        ));
    }
    for path in store.unknown_generation_dirs()? {
        inspection.findings.push(Finding::new(
            None,
            Some(&path.display().to_string()),
            Kind::Leftover,
            "not a generation the database knows".into(),
        ));
    }
    Ok(())
}

fn inspect_state(state: &crate::format::records::StateRecord, inspection: &mut Inspection) {
    let mut problem = |detail: String| {
        inspection
            .findings
            .push(Finding::new(None, None, Kind::State, detail));
    };
    match state.active {
        Some(active) => match inspection.records.get(&active) {
            None => problem(format!("the active generation {active} has no record")),
            Some(record) if record.state == GenerationState::Confirming => {
                problem(format!(
                    "the agent run confirming generation {active} was interrupted"
                ));
            }
            Some(_) => {}
        },
        None if !inspection.records.is_empty() => {
            problem("generations are kept but none is active".into());
        }
        None => {}
    }
    if let Some((&newest, _)) = inspection.records.last_key_value()
        && state.next_generation <= newest
    {
        problem(format!(
            "the next generation number {} is not above generation {newest}",
            state.next_generation
        ));
    }
    if let Some(serial) = inspection
        .records
        .values()
        .map(|record| record.serial)
        .max()
        && serial > state.serial_max
    {
        problem(format!(
            "the highest accepted serial {} is below a kept generation's serial {serial}",
            state.serial_max
        ));
    }
}

/// Compares `polstore.manifest` and its signature beside generation `generation`'s tree
/// with the database's copies.
fn check_envelope(
    layout: &Layout,
    generation: u64,
    stored: &ManifestRecord,
    findings: &mut Vec<Finding>,
) {
    let directory = layout.generation_dir(generation);
    if !directory.is_dir() {
        findings.push(Finding::new(
            Some(generation),
            None,
            Kind::Missing,
            format!("its directory {} is missing", directory.display()),
        ));
        return;
    }
    let expected = [
        (MANIFEST_NAME, Some(&stored.manifest)),
        (SIGNATURE_NAME, stored.signature.as_ref()),
    ];
    for (name, content) in expected {
        let path = directory.join(name);
        let found = read_bounded(&path, crate::format::manifest::MANIFEST_BYTES_MAX);
        let detail = match (content, &found) {
            (Some(expected), Some(found)) if expected == found => continue,
            (None, None) => continue,
            (Some(_), Some(_)) => "differs from the database's copy",
            (Some(_), None) => "is missing",
            (None, Some(_)) => "is there but the database has none",
        };
        findings.push(Finding::new(
            Some(generation),
            Some(&format!("../{name}")),
            Kind::Envelope,
            detail.to_string(),
        ));
    }
}
