//! `polstore verify`: find every kind of damage polstore is responsible for.
//!
//! It looks, in order, at: the database (redb's page checksums, then every record
//! decoded); what interrupted commands left behind; every stored object, re-hashed; every
//! generation directory against its manifest (content, mode, nothing missing, nothing
//! extra, no group/world write) and its manifest and signature files against the
//! database's copies; the view symlink; the state's own invariants; and, last, the parse
//! check on the active generation. Nothing here changes the store; [`crate::health::repair`] does.
//!
//! A file shared by hard links between generations is hashed once per inode.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checks::{self, CommandContext};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::format::manifest::{Hash, Manifest};
use crate::format::policy_path::{MANIFEST_NAME, SIGNATURE_NAME};
use crate::format::records::{GenerationRecord, GenerationState, ManifestRecord};
use crate::store::{self, Layout, Store};

/// What kind of damage a [`Finding`] is. The names are part of `verify --json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The database cannot be opened, fails its checksums or holds an undecodable record.
    Database,
    /// A stored object is missing or does not match its hash.
    Object,
    /// A file's content or size differs from the manifest.
    Content,
    Missing,
    Extra,
    /// A file's mode differs from the manifest, or a directory is group/world-writable.
    Mode,
    /// Something other than a regular file where the manifest has a file.
    Type,
    /// `polstore.manifest` or its signature beside the tree differs from the database.
    Envelope,
    /// The view is not a symlink to the active generation.
    View,
    /// The database's bookkeeping contradicts itself.
    State,
    /// The parse check no longer accepts the active generation.
    Parse,
    /// Left in the store by an interrupted command.
    Leftover,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Database => "database",
            Kind::Object => "object",
            Kind::Content => "content",
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::Mode => "mode",
            Kind::Type => "type",
            Kind::Envelope => "manifest-file",
            Kind::View => "view",
            Kind::State => "state",
            Kind::Parse => "parse",
            Kind::Leftover => "leftover",
        }
    }
}

/// One thing found wrong, naming the generation and the file where there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub generation: Option<u64>,
    pub path: Option<String>,
    pub kind: Kind,
    pub detail: String,
}

impl Finding {
    fn new(generation: Option<u64>, path: Option<&str>, kind: Kind, detail: String) -> Finding {
        Finding {
            generation,
            path: path.map(str::to_string),
            kind,
            detail,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(generation) = self.generation {
            write!(f, "generation {generation}: ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.detail)
    }
}

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
}

impl Inspection {
    pub fn sound(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Opens the database and checks it: redb's checksums over every page, then every record
/// decoded. Returns the reason it cannot be trusted instead of a database.
pub fn open_checked_db(layout: &Layout) -> std::result::Result<Db, String> {
    let reason = |error: crate::db::DbError| error.reason();
    let path = layout.database();
    if !path.exists() {
        return Err(format!("{} is missing", path.display()));
    }
    let checked = quietly(|| -> std::result::Result<Db, String> {
        let mut db = Db::open_for_scan(&path).map_err(reason)?;
        match db.check_integrity() {
            Ok(true) => {}
            Ok(false) => {
                return Err(
                    "its last commit failed redb's checksums and was rolled back".to_string(),
                );
            }
            Err(error) => return Err(error.to_string()),
        }
        let read = db.read().map_err(reason)?;
        read.state().map_err(reason)?;
        for (generation, _) in read.generations().map_err(reason)? {
            read.manifest(generation).map_err(reason)?;
        }
        read.attempts(usize::MAX).map_err(reason)?;
        drop(read);
        Ok(db)
    });
    match checked {
        Some(result) => result,
        None => Err("reading it failed inside redb (damaged pages)".to_string()),
    }
}

fn quietly<T>(body: impl FnOnce() -> T) -> Option<T> {
    crate::db::without_panics(body).ok()
}

/// Looks at the whole store. `parse`: also run the parse check on the active generation.
pub fn inspect(store: &Store, parse: bool, progress: ProgressFn) -> Result<Inspection> {
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
    // The objects are re-hashed on a second thread while this one walks the generation
    // directories: the two read different files, and a node has more than one core.
    let (objects, directories) = std::thread::scope(|scope| {
        let objects = scope.spawn(|| -> Result<(HashSet<Hash>, Vec<Hash>)> {
            let read = store.db.read()?;
            let mut stored = HashSet::new();
            let mut damaged = Vec::new();
            read.check_objects(&mut |hash, _, matches| {
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

    // Generation directories: their findings come after the objects'.
    inspection.findings.extend(directories?);
    // The view.
    if let Some(active) = state.active
        && let Some(problem) = view_problem(store, active)
    {
        inspection
            .findings
            .push(Finding::new(None, None, Kind::View, problem));
    }

    // The parse check, on an active generation whose bytes are right. Only a conclusive
    // refusal (cf-promises ran and said no) lets repair replace the generation; a check
    // that timed out or could not start is reported and left for the next run.
    if parse
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
        check_envelope(&store.layout, generation, &stored_envelope, &mut findings);
        let tree = store.layout.generation_tree(generation);
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
    let tree = store.layout.generation_tree(generation);
    let output_file = store.layout.staging().join("verify-output");
    let context = CommandContext {
        tree: &tree,
        serial: inspection
            .records
            .get(&generation)
            .map_or(0, |record| record.serial),
        generation,
        output_file: &output_file,
        timeout: Duration::from_secs(store.config.checks.timeout_secs),
    };
    let (verdict, conclusive) = checks::parse_conclusively(&store.config, &context)?;
    let _ = fs::remove_file(&output_file);
    verdict
        .rejection
        .map(|rejection| (rejection.reason, conclusive))
}

fn inspect_leftovers(store: &Store, inspection: &mut Inspection) -> Result<()> {
    let staging = store.layout.staging();
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
            "not a generation the database knows (left by an interrupted command)".into(),
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

/// The content of a regular file of at most `limit` bytes; `None` for anything else (a
/// symlink, a fifo, a device, a file too large), so that nothing planted in the store
/// can make a read hang or exhaust memory.
pub fn read_bounded(path: &Path, limit: usize) -> Option<Vec<u8>> {
    let metadata = fs::symlink_metadata(path).ok()?;
    if !metadata.is_file() || metadata.len() > limit as u64 {
        return None;
    }
    fs::read(path).ok()
}

/// Hashes by inode, so that files hard-linked between generations are read once.
#[derive(Default)]
pub struct HashCache {
    hashes: HashMap<(u64, u64), (i64, i64, u64, Hash)>,
}

impl HashCache {
    fn hash(&mut self, path: &Path, metadata: &fs::Metadata) -> Option<Hash> {
        let key = (metadata.dev(), metadata.ino());
        let stamp = (metadata.ctime(), metadata.ctime_nsec(), metadata.size());
        if let Some(&(ctime, nsec, size, hash)) = self.hashes.get(&key)
            && (ctime, nsec, size) == stamp
        {
            return Some(hash);
        }
        let hash = Hash::of(&fs::read(path).ok()?);
        self.hashes.insert(key, (stamp.0, stamp.1, stamp.2, hash));
        Some(hash)
    }
}

/// Compares the tree at `tree` with `manifest`; returns the paths whose file matches.
/// Walks at most `entries_max` entries, so a directory someone filled cannot stall it.
pub fn check_tree(
    tree: &Path,
    generation: u64,
    manifest: &Manifest,
    cache: &mut HashCache,
    entries_max: usize,
    findings: &mut Vec<Finding>,
) -> HashSet<String> {
    let mut intact = HashSet::new();
    // Files are written by polstore, so they are its own; another owner could change them
    // behind its back (and cf-agent refuses inputs others may write).
    let owner = rustix::process::geteuid().as_raw();
    let mut problem = |path: Option<&str>, kind: Kind, detail: String| {
        findings.push(Finding::new(Some(generation), path, kind, detail));
    };
    match fs::symlink_metadata(tree) {
        Ok(metadata) if metadata.is_dir() => {
            if metadata.mode() & 0o022 != 0 {
                problem(
                    None,
                    Kind::Mode,
                    format!(
                        "its tree directory is group- or world-writable (mode {:04o})",
                        metadata.mode() & 0o7777
                    ),
                );
            }
        }
        Ok(_) => {
            problem(
                None,
                Kind::Type,
                format!("{} is not a directory", tree.display()),
            );
            return intact;
        }
        Err(_) => {
            problem(
                None,
                Kind::Missing,
                format!("its tree {} is missing", tree.display()),
            );
            return intact;
        }
    }
    // Walk the tree without following symlinks.
    let mut found: BTreeMap<String, fs::Metadata> = BTreeMap::new();
    let mut pending = vec![(String::new(), tree.to_path_buf())];
    let mut truncated = false;
    while let Some((relative, directory)) = pending.pop() {
        let Ok(entries) = fs::read_dir(&directory) else {
            problem(
                Some(&relative),
                Kind::Type,
                "cannot be read as a directory".into(),
            );
            continue;
        };
        for entry in entries.flatten() {
            if found.len() >= entries_max {
                truncated = true;
                break;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = if relative.is_empty() {
                name.into_owned()
            } else {
                format!("{relative}/{name}")
            };
            let Ok(metadata) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if metadata.is_dir() {
                pending.push((path.clone(), entry.path()));
            }
            found.insert(path, metadata);
        }
    }
    if truncated {
        problem(
            None,
            Kind::Extra,
            format!("holds more than {entries_max} entries; stopped looking"),
        );
    }
    let mut expected_directories = HashSet::new();
    for entry in &manifest.entries {
        for ancestor in crate::format::policy_path::ancestors(&entry.path) {
            expected_directories.insert(ancestor);
        }
        let Some(metadata) = found.get(&entry.path) else {
            problem(Some(&entry.path), Kind::Missing, "is missing".into());
            continue;
        };
        if !metadata.is_file() {
            problem(
                Some(&entry.path),
                Kind::Type,
                format!("is a {}, the manifest has a file", type_name(metadata)),
            );
            continue;
        }
        let mode = metadata.mode() & 0o7777;
        let mut sound = true;
        if metadata.uid() != owner {
            problem(
                Some(&entry.path),
                Kind::Mode,
                format!(
                    "is owned by uid {}, not by uid {owner} that polstore runs as",
                    metadata.uid()
                ),
            );
            sound = false;
        }
        if mode != entry.mode {
            problem(
                Some(&entry.path),
                Kind::Mode,
                format!("has mode {mode:04o}, the manifest says {:04o}", entry.mode),
            );
            sound = false;
        }
        let path = tree.join(&entry.path);
        if metadata.size() != entry.size {
            problem(
                Some(&entry.path),
                Kind::Content,
                format!(
                    "has {} bytes, the manifest says {}",
                    metadata.size(),
                    entry.size
                ),
            );
            continue;
        }
        match cache.hash(&path, metadata) {
            Some(hash) if hash == entry.hash => {}
            Some(_) => {
                problem(
                    Some(&entry.path),
                    Kind::Content,
                    "content does not match the manifest's hash".into(),
                );
                continue;
            }
            None => {
                problem(Some(&entry.path), Kind::Content, "cannot be read".into());
                continue;
            }
        }
        if sound {
            intact.insert(entry.path.clone());
        }
    }
    let files: HashSet<&str> = manifest
        .entries
        .iter()
        .map(|entry| entry.path.as_str())
        .collect();
    for (path, metadata) in &found {
        if metadata.is_dir() && expected_directories.contains(path.as_str()) {
            if metadata.mode() & 0o022 != 0 {
                problem(
                    Some(path),
                    Kind::Mode,
                    format!(
                        "directory is group- or world-writable (mode {:04o})",
                        metadata.mode() & 0o7777
                    ),
                );
            }
        } else if !files.contains(path.as_str()) {
            problem(
                Some(path),
                Kind::Extra,
                format!("{} not in the manifest", type_name(metadata)),
            );
        }
    }
    intact
}

fn type_name(metadata: &fs::Metadata) -> &'static str {
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_symlink() {
        "symlink"
    } else if file_type.is_file() {
        "file"
    } else {
        "special file"
    }
}

/// What is wrong with the view, if anything.
pub fn view_problem(store: &Store, active: u64) -> Option<String> {
    let view = &store.config.view;
    let target = store.layout.generation_tree(active);
    match fs::symlink_metadata(view) {
        Ok(metadata) if metadata.file_type().is_symlink() => match fs::read_link(view) {
            Ok(found) if found == target => None,
            Ok(found) => Some(format!(
                "the view {} points at {}, not at the active generation {active}",
                view.display(),
                found.display()
            )),
            Err(error) => Some(format!(
                "the view {} cannot be read: {error}",
                view.display()
            )),
        },
        Ok(metadata) => Some(format!(
            "the view {} is a {}, not polstore's symlink to generation {active}",
            view.display(),
            type_name(&metadata)
        )),
        Err(_) => Some(format!("the view {} is missing", view.display())),
    }
}

/// The first 12 hex digits of a hash, enough to tell objects apart in a message.
pub fn short(hash: Hash) -> String {
    hash.to_hex()[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::Entry;
    use crate::format::timestamp::Timestamp;
    use std::os::unix::fs::PermissionsExt;

    fn manifest(files: &[(&str, &[u8])]) -> Manifest {
        Manifest {
            serial: 1,
            created: Timestamp::from_unix_secs(0),
            expires: None,
            source: None,
            entries: files
                .iter()
                .map(|(path, content)| Entry {
                    path: path.to_string(),
                    mode: 0o644,
                    size: content.len() as u64,
                    hash: Hash::of(content),
                })
                .collect(),
        }
    }

    fn write(tree: &Path, path: &str, content: &[u8], mode: u32) {
        let full = tree.join(path);
        crate::fs::durable::create_tree_directory(full.parent().unwrap()).unwrap();
        fs::write(&full, content).unwrap();
        fs::set_permissions(&full, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn look(tree: &Path, manifest: &Manifest) -> (Vec<String>, HashSet<String>) {
        let mut findings = Vec::new();
        let intact = check_tree(
            tree,
            7,
            manifest,
            &mut HashCache::default(),
            100,
            &mut findings,
        );
        (findings.iter().map(ToString::to_string).collect(), intact)
    }

    #[test]
    fn a_tree_that_matches_has_no_findings() {
        let directory = tempfile::tempdir().unwrap();
        let tree = directory.path().join("tree");
        write(&tree, "promises.cf", b"body", 0o644);
        write(&tree, "lib/a.cf", b"a", 0o644);
        let manifest = manifest(&[("lib/a.cf", b"a"), ("promises.cf", b"body")]);
        let (findings, intact) = look(&tree, &manifest);
        assert_eq!(findings, Vec::<String>::new());
        assert_eq!(intact.len(), 2);
    }

    #[test]
    fn each_difference_is_named_with_generation_and_path() {
        let directory = tempfile::tempdir().unwrap();
        let tree = directory.path().join("tree");
        crate::fs::durable::create_tree_directory(&tree).unwrap();
        write(&tree, "mode.cf", b"m", 0o664);
        write(&tree, "content.cf", b"X", 0o644);
        write(&tree, "sub/extra.cf", b"e", 0o644);
        std::os::unix::fs::symlink("/etc/passwd", tree.join("link.cf")).unwrap();
        fs::create_dir(tree.join("open")).unwrap();
        fs::set_permissions(tree.join("open"), fs::Permissions::from_mode(0o777)).unwrap();
        let manifest = manifest(&[
            ("content.cf", b"Y"),
            ("link.cf", b"l"),
            ("missing.cf", b"gone"),
            ("mode.cf", b"m"),
            ("open/x.cf", b"x"),
        ]);
        let (findings, intact) = look(&tree, &manifest);
        for expected in [
            "generation 7: content.cf: content does not match the manifest's hash",
            "generation 7: link.cf: is a symlink, the manifest has a file",
            "generation 7: missing.cf: is missing",
            "generation 7: mode.cf: has mode 0664, the manifest says 0644",
            "generation 7: open/x.cf: is missing",
            "generation 7: open: directory is group- or world-writable (mode 0777)",
            "generation 7: sub: directory not in the manifest",
            "generation 7: sub/extra.cf: file not in the manifest",
        ] {
            assert!(
                findings.iter().any(|finding| finding == expected),
                "{expected} not in {findings:#?}"
            );
        }
        assert_eq!(findings.len(), 8, "{findings:#?}");
        assert!(intact.is_empty());
    }

    #[test]
    fn a_missing_tree_and_a_flooded_one_are_reported_not_walked_forever() {
        let directory = tempfile::tempdir().unwrap();
        let manifest = manifest(&[("a.cf", b"a")]);
        let (findings, _) = look(&directory.path().join("absent"), &manifest);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].contains("is missing"), "{findings:?}");
        let tree = directory.path().join("tree");
        write(&tree, "a.cf", b"a", 0o644);
        for index in 0..150 {
            write(&tree, &format!("junk/{index}"), b"", 0o644);
        }
        let (findings, _) = look(&tree, &manifest);
        assert!(
            findings
                .iter()
                .any(|finding| finding.contains("holds more than 100 entries; stopped looking")),
            "{findings:?}"
        );
    }
}
