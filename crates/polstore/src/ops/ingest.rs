//! Ingest: source → staging → checks → new generation → view → confirming agent run.
//!
//! The candidate is materialized once, in `staging/candidate/tree`, and checked there; if it
//! passes, that same directory is renamed into `generations/N`. It is built over the spare
//! tree of an earlier generation (`store::slot`), whose files that the candidate has with
//! the same content and mode stay where they are; with no spare, a file the active
//! generation holds is hard-linked from it. Content is written only for what changed. The
//! commit protocol, and what recovery does after a crash at each step, is in
//! `store-format.md` § Commit protocol.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::candidate::source::{self, Item, Source};
use crate::checks::{self, CommandContext};
use crate::config;
use crate::crashpoint;
use crate::db::DbError;
use crate::db::batch::ObjectBatch;
use crate::error::{Check, Error, Rejection, Result};
use crate::format::envelope::Envelope;
use crate::format::manifest::{Entry, Hash, Manifest};
use crate::format::policy_path::{MANIFEST_NAME, SIGNATURE_NAME};
use crate::format::records::{
    Action, CheckRecord, GenerationRecord, GenerationState, ManifestRecord, Origin, Outcome,
};
use crate::format::records::{Stamp, StampEntry, StampsRecord};
use crate::format::timestamp::Timestamp;
use crate::fs::durable;
use crate::fs::read;
use crate::store::materialize::{Linkable, TreeBuilder};
use crate::store::slot::{self, Spare};
use crate::store::transition::{self, Attempt};
use crate::store::{self, Store};

/// Where a check's output goes while it runs, in `staging/`.
const CHECK_OUTPUT_NAME: &str = "check-output";

/// What ingest reports while it works; the binary shows it on a terminal.
pub enum Progress<'a> {
    /// Objects pulled from a repository so far, of `total`; bytes received.
    Fetching {
        done: u64,
        total: u64,
        bytes: u64,
    },
    Reading {
        files: u64,
        bytes: u64,
    },
    Check(&'a str),
    Committing,
    AgentRun {
        generation: u64,
    },
}

pub struct IngestRequest<'a> {
    pub source: Source,
    /// Overrides a `polstore.manifest` found at the top of the source.
    pub manifest_file: Option<PathBuf>,
    pub signature_file: Option<PathBuf>,
    /// Skip reading a file of a directory source whose stamp (inode, size, times) is what
    /// the last accepted ingest of that directory recorded, when the candidate's manifest
    /// names the same content and the active generation has it: that content is linked
    /// from the store, verified, instead. Off for `update --force` and repairs.
    pub trust_stamps: bool,
    pub progress: &'a mut dyn FnMut(Progress),
}

#[derive(Debug)]
pub struct IngestReport {
    pub generation: u64,
    pub serial: u64,
    pub files: u64,
    pub bytes: u64,
    /// Files written anew; the rest were reused: kept from the spare tree or hard-linked.
    pub files_written: u64,
    pub agent: AgentRun,
    pub checks: Vec<CheckRecord>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AgentRun {
    NotConfigured,
    Succeeded,
    /// Failed, but `agent.confirm` is off: the generation stays.
    FailedUnconfirmed(String),
}

/// The candidate's tree under construction in staging.
struct Staging {
    builder: TreeBuilder,
    entries: BTreeMap<String, Entry>,
    /// The source's empty directories, made in the tree once the manifest is known.
    empty_directories: std::collections::BTreeSet<String>,
    /// Files of the active generation, by content and mode, that new files may link to.
    linkable: Linkable,
    /// The generation whose tree the candidate is built over, taken out of `generations/`
    /// (put back as it was if the candidate is refused).
    spare: Option<Spare>,
    /// When the tree was taken, before anything was placed in it: the modification time
    /// of `staging/candidate` then.
    started: (i64, i64),
    /// Files this candidate wrote, which later identical files link to.
    written: HashMap<(Hash, u32), PathBuf>,
    files_written: u64,
    bytes: u64,
    /// For a directory source: each file's stamp and hash, recorded at the commit.
    stamps: Option<(String, Vec<StampEntry>)>,
}

impl Staging {
    /// The candidate's tree at `tree`: built over a spare tree, when a generation other than
    /// the active one has one that no process uses, else from nothing.
    fn new(store: &Store, tree: PathBuf, active: Option<u64>) -> Result<Staging> {
        let linkable = slot::active_linkable(store, active)?;
        let (spare, builder) = slot::spare_or_new(store, &Vec::from_iter(active), tree)?;
        let mut staging = Staging::fresh(builder, linkable);
        staging.spare = spare;
        // Taken after the tree was renamed in: `staging/candidate` changed then.
        staging.started =
            store::materialize::modified(&store.layout.candidate()).unwrap_or((i64::MAX, 0));
        Ok(staging)
    }

    fn fresh(builder: TreeBuilder, linkable: Linkable) -> Staging {
        Staging {
            builder,
            entries: BTreeMap::new(),
            empty_directories: std::collections::BTreeSet::new(),
            linkable,
            spare: None,
            started: (i64::MAX, 0),
            written: HashMap::new(),
            files_written: 0,
            bytes: 0,
            stamps: None,
        }
    }

    /// Undoes the candidate when it was built over a spare tree: the tree is brought back
    /// to the spare generation's manifest (only what the candidate changed) and put back
    /// as its `tree/`. Without a spare, nothing to do.
    fn put_spare_back(self, store: &Store) -> Result<()> {
        let Some(spare) = self.spare else {
            return Ok(());
        };
        let placed = self
            .entries
            .into_values()
            .map(|entry| (entry.path, (entry.hash, entry.mode, entry.size)));
        let mut builder = self.builder.reverse(placed, self.started)?;
        store::materialize::build_from_store(
            &mut builder,
            &spare.manifest,
            &self.linkable,
            &store.db.read()?,
        )?;
        slot::place(store, &builder, spare.generation)
    }

    /// Places a file known by its hash, linking a verified copy from the store. Returns
    /// false, having placed nothing, when no trustworthy copy is there.
    fn add_known(&mut self, path: &str, mode: u32, size: u64, hash: Hash) -> Result<bool> {
        self.builder.make_parents(path)?;
        if !self.reuse(path, hash, mode, size)? {
            return Ok(false);
        }
        self.record(path.to_string(), mode, size, hash);
        Ok(true)
    }

    /// Hard-links `path` to a copy of content `hash` with `mode`: one this candidate wrote
    /// (nothing else writes in staging), or a trustworthy one of the active generation.
    fn link(&mut self, path: &str, hash: Hash, mode: u32, size: u64) -> Result<bool> {
        if self.link_written(path, hash, mode)? {
            return Ok(true);
        }
        match self.linkable.find(hash, mode, size) {
            Some(source) => self.builder.link(path, source),
            None => Ok(false),
        }
    }

    /// Places `path` with content `hash` and `mode` from what is already there: the spare
    /// tree's own file, else a copy this candidate wrote, else (with no spare tree) a
    /// trustworthy copy in the active tree. Over a spare tree, a content it lacks at this
    /// path is new or moved: looking for it in the active tree would cost parsing the
    /// active manifest for one changed file, and the database has what the store holds.
    fn reuse(&mut self, path: &str, hash: Hash, mode: u32, size: u64) -> Result<bool> {
        if self.builder.keep(path, hash, mode, size) {
            return Ok(true);
        }
        if self.spare.is_some() {
            self.link_written(path, hash, mode)
        } else {
            self.link(path, hash, mode, size)
        }
    }

    /// Hard-links `path` to a copy of content `hash` with `mode` this candidate wrote.
    fn link_written(&mut self, path: &str, hash: Hash, mode: u32) -> Result<bool> {
        match self.written.get(&(hash, mode)) {
            Some(source) => self.builder.link(path, source),
            None => Ok(false),
        }
    }

    fn record(&mut self, path: String, mode: u32, size: u64, hash: Hash) {
        self.bytes += size;
        self.entries.insert(
            path.clone(),
            Entry {
                path,
                mode,
                size,
                hash,
            },
        );
    }

    /// Places one admitted file in the tree. `path` has passed [`policy_path::validate`],
    /// so joining it under `tree` stays inside `tree`.
    fn add(&mut self, path: String, mode: u32, content: &[u8]) -> Result<Hash> {
        self.builder.make_parents(&path)?;
        let hash = Hash::of(content);
        let size = content.len() as u64;
        if !self.reuse(&path, hash, mode, size)? {
            let target = self.builder.write(&path, content, mode)?;
            self.written.insert((hash, mode), target);
            self.files_written += 1;
        }
        self.record(path, mode, size, hash);
        Ok(hash)
    }
}

fn stage_source(
    store: &Store,
    request: &mut IngestRequest,
    early: Option<Manifest>,
    staging: &mut Staging,
) -> Result<Envelope> {
    let mut envelope = Envelope::default();
    let mut files = 0u64;
    let root = match &request.source {
        Source::Directory(root) => Some(root.display().to_string()),
        _ => None,
    };
    let mut stamps: Vec<StampEntry> = Vec::new();
    let oracle = match (&request.source, early) {
        (Source::Directory(directory), Some(manifest)) if request.trust_stamps => {
            KnownOracle::new(store, directory, manifest, staging)?
        }
        _ => None,
    };
    let mut known = |path: &str, mode: u32, stamp: &Stamp| {
        oracle
            .as_ref()
            .is_some_and(|oracle| oracle.knows(path, mode, stamp))
    };
    let known_fn: Option<source::KnownFn> = if oracle.is_some() {
        Some(&mut known)
    } else {
        None
    };
    let limits = &store.config.limits;
    source::read_with(&request.source, limits, known_fn, &mut |item| {
        match item {
            Item::File {
                path,
                mode,
                content,
                stamp,
            } => {
                let hash = staging.add(path.clone(), mode, &content)?;
                if let Some(stamp) = stamp {
                    stamps.push(StampEntry {
                        path,
                        stamp,
                        hash: hash.0,
                    });
                }
            }
            Item::Known { path, mode, stamp } => {
                let hash = oracle
                    .as_ref()
                    .and_then(|oracle| oracle.expected.get(&path))
                    .map(|(hash, _)| *hash)
                    .expect("a known file is in the manifest");
                if !staging.add_known(&path, mode, stamp.size, hash)? {
                    // The copy in the store is not trustworthy after all: read the file.
                    let directory = match &request.source {
                        Source::Directory(directory) => directory,
                        _ => unreachable!("only directory sources have known files"),
                    };
                    let content = source::read_stamped(&directory.join(&path), &path, &stamp)?;
                    staging.add(path.clone(), mode, &content)?;
                }
                stamps.push(StampEntry {
                    path,
                    stamp,
                    hash: hash.0,
                });
            }
            Item::EmptyDirectory(path) => {
                staging.empty_directories.insert(path);
                return Ok(());
            }
            Item::Manifest(bytes) => envelope.manifest = Some(bytes),
            Item::Signature(bytes) => envelope.signature = Some(bytes),
        }
        files += 1;
        (request.progress)(Progress::Reading {
            files,
            bytes: staging.bytes,
        });
        Ok(())
    })?;
    let read_override = |path: &Path, limit: usize| -> Result<Vec<u8>> {
        read::read_regular(path, limit).map_err(|error| envelope_refusal(path, error))
    };
    if let Some(path) = &request.manifest_file {
        envelope.manifest = Some(read_override(
            path,
            crate::format::manifest::MANIFEST_BYTES_MAX,
        )?);
    }
    if let Some(path) = &request.signature_file {
        envelope.signature = Some(read_override(
            path,
            crate::format::signatures::SIGNATURE_LIST_BYTES_MAX,
        )?);
    }
    staging.stamps = root.map(|root| (root, stamps));
    Ok(envelope)
}

/// Stages a directory source whose manifest was read up front, from the manifest: each
/// file whose content and mode a spare tree already has at its path stays, one this
/// candidate wrote (or, with no spare tree, one the active generation holds) is linked,
/// one the database holds is written from it, and only the rest is read from the
/// directory and checked against the manifest's hash. The directory is listed first, and
/// refused for what a walk of it refuses ([`source::ListedFiles::check_listing`]); a
/// listed file that is not read is not looked at. The envelope is `bytes` (the manifest
/// parsed up front) and the signature beside it.
fn stage_from_manifest(
    store: &Store,
    request: &mut IngestRequest,
    directory: &Path,
    bytes: Vec<u8>,
    manifest: &Manifest,
    staging: &mut Staging,
) -> Result<Envelope> {
    let signature_path = request
        .signature_file
        .clone()
        .unwrap_or_else(|| directory.join(SIGNATURE_NAME));
    let signature = match read::read_regular(
        &signature_path,
        crate::format::signatures::SIGNATURE_LIST_BYTES_MAX,
    ) {
        Ok(signature) => Some(signature),
        Err(read::ReadError::NotFound) if request.signature_file.is_none() => None,
        Err(error) => return Err(envelope_refusal(&signature_path, error)),
    };
    let mut listed = source::ListedFiles::open(directory, &store.config.limits)?;
    listed.check_listing(manifest)?;
    stage_entries(store, request, manifest, staging, &mut |entry| {
        listed.read(&entry.path)?.ok_or_else(|| {
            Rejection::new(
                Check::Integrity,
                Some(&entry.path),
                "listed in the manifest but missing from the source",
            )
            .into()
        })
    })?;
    Ok(Envelope {
        manifest: Some(bytes),
        signature,
    })
}

/// Gives the mode and content of an entry the store does not hold.
type ReadMissing<'a> = dyn FnMut(&Entry) -> Result<(u32, Vec<u8>)> + 'a;

/// Places every entry of `manifest`: kept from the spare tree (or linked), else written
/// from the database's object, else from what `read_missing` gives (mode and content,
/// which `Staging::add` hashes; the integrity check compares them with the manifest).
fn stage_entries(
    store: &Store,
    request: &mut IngestRequest,
    manifest: &Manifest,
    staging: &mut Staging,
    read_missing: &mut ReadMissing,
) -> Result<()> {
    let read = store.db.read()?;
    for (index, entry) in manifest.entries.iter().enumerate() {
        staging.builder.make_parents(&entry.path)?;
        if staging.reuse(&entry.path, entry.hash, entry.mode, entry.size)? {
            staging.record(entry.path.clone(), entry.mode, entry.size, entry.hash);
        } else if read.has_object(entry.hash)? {
            let content = read.object(entry.hash)?;
            staging.add(entry.path.clone(), entry.mode, &content)?;
        } else {
            let (mode, content) = read_missing(entry)?;
            staging.add(entry.path.clone(), mode, &content)?;
        }
        (request.progress)(Progress::Reading {
            files: index as u64 + 1,
            bytes: staging.bytes,
        });
    }
    staging
        .empty_directories
        .extend(manifest.directories.iter().cloned());
    Ok(())
}

/// Stages what a pull fetched, from its manifest: as [`stage_from_manifest`], with the
/// pool's objects (each checked against its hash when read) in place of the drop's files.
fn stage_from_pool(
    store: &Store,
    request: &mut IngestRequest,
    pool: &Path,
    bytes: Vec<u8>,
    manifest: &Manifest,
    staging: &mut Staging,
) -> Result<Envelope> {
    let signature_path = pool.join(SIGNATURE_NAME);
    let signature = read::read_regular(
        &signature_path,
        crate::format::signatures::SIGNATURE_LIST_BYTES_MAX,
    )
    .map_err(|error| envelope_refusal(&signature_path, error))?;
    stage_entries(store, request, manifest, staging, &mut |entry| {
        let content = crate::transport::repo::read_pooled(pool, entry.hash, entry.size)
            .ok_or_else(|| {
                Rejection::new(
                    Check::Integrity,
                    Some(&entry.path),
                    "its content was not fetched, or was damaged since (it is fetched again next time)",
                )
            })?;
        Ok((entry.mode, content))
    })?;
    Ok(Envelope {
        manifest: Some(bytes),
        signature: Some(signature),
    })
}

/// A refusal of a manifest or signature file named on the command line, or beside a
/// directory source.
fn envelope_refusal(path: &Path, error: read::ReadError) -> Error {
    match error {
        read::ReadError::Io(error) => Error::io("cannot read", path)(error),
        read::ReadError::NotFound => {
            Error::io("cannot read", path)(std::io::ErrorKind::NotFound.into())
        }
        read::ReadError::TooLarge { limit } => Rejection::new(
            Check::Integrity,
            Some(&path.display().to_string()),
            format!("larger than {limit} bytes"),
        )
        .into(),
        refusal => Rejection::new(
            Check::Integrity,
            Some(&path.display().to_string()),
            refusal.to_string(),
        )
        .into(),
    }
}

/// Recognizes the files of a directory source that have not changed since the last
/// accepted ingest of that directory, so that they need not be read again.
///
/// A file is known when its stamp is the one recorded then, the hash recorded then is the
/// one the candidate's manifest now names for that path with the same mode, and the
/// active generation holds that content. Its bytes then come from the store, which are
/// verified, never from the source: whatever the source file holds, the candidate gets
/// exactly what the manifest says. The manifest is still checked like any other
/// (signature, every path), and a file that is not known is read and hashed as usual.
struct KnownOracle {
    previous: HashMap<String, (Stamp, Hash)>,
    expected: HashMap<String, (Hash, u32)>,
    linkable: HashSet<(Hash, u32)>,
}

impl KnownOracle {
    fn new(
        store: &Store,
        directory: &Path,
        manifest: Manifest,
        staging: &Staging,
    ) -> Result<Option<KnownOracle>> {
        let Some(previous) = store.db.read()?.stamps(&directory.display().to_string())? else {
            return Ok(None);
        };
        Ok(Some(KnownOracle {
            previous: previous
                .files
                .into_iter()
                .map(|entry| (entry.path, (entry.stamp, Hash(entry.hash))))
                .collect(),
            expected: manifest
                .entries
                .into_iter()
                .map(|entry| (entry.path, (entry.hash, entry.mode)))
                .collect(),
            linkable: staging.linkable.files().keys().copied().collect(),
        }))
    }

    fn knows(&self, path: &str, mode: u32, stamp: &Stamp) -> bool {
        let (Some((recorded, read_hash)), Some((hash, expected_mode))) =
            (self.previous.get(path), self.expected.get(path))
        else {
            return false;
        };
        recorded == stamp
            && read_hash == hash
            && *expected_mode == mode
            && self.linkable.contains(&(*hash, mode))
    }
}

/// Takes a candidate from `request.source` through every check and, if it passes, makes it
/// the active generation and runs the agent on it.
pub fn ingest(store: &Store, mut request: IngestRequest) -> Result<IngestReport> {
    let started = Timestamp::now();
    let source_label = request.source.describe();
    let mut checks_done: Vec<CheckRecord> = Vec::new();
    let result = ingest_inner(store, &mut request, &mut checks_done, started);
    // A rejected or failed candidate is recorded, and its staging removed. A full disk may
    // refuse even this record; the rejection itself is still reported.
    // A failed agent run was already recorded, as a rollback, by `transition::fail`.
    let agent_failed =
        matches!(&result, Err(Error::Rejected(rejection)) if rejection.check == Check::Agent);
    if let Err(error) = &result
        && !agent_failed
    {
        let _ = durable::remove_tree_if_exists(&store.layout.candidate());
        // A check that refused left its output behind.
        let _ = fs::remove_file(store.layout.staging().join(CHECK_OUTPUT_NAME));
        let outcome = if error.is_rejection() {
            Outcome::Rejected
        } else {
            Outcome::Failed
        };
        let attempt = Attempt::new(Action::Ingest, outcome, error.to_string())
            .started(started)
            .source(source_label)
            .checks(checks_done);
        let _ = transition::record(&store.db, attempt);
    }
    result
}

fn ingest_inner(
    store: &Store,
    request: &mut IngestRequest,
    checks_done: &mut Vec<CheckRecord>,
    started: Timestamp,
) -> Result<IngestReport> {
    let state = store.state()?;
    let candidate = store.layout.candidate();
    let early = early_manifest(store, request);
    // Made with its mode here: it becomes `generations/N`.
    durable::create_directory(&candidate, crate::store::STORE_DIRECTORY_MODE)
        .map_err(Error::io("cannot create", &candidate))?;
    let mut staging = Staging::new(store, candidate.join("tree"), state.active)?;
    let result = check_and_commit(
        store,
        request,
        checks_done,
        started,
        &state,
        early,
        &mut staging,
    );
    // A candidate refused before its commit, built over a spare tree: the spare goes back
    // as it was. If that fails, the tree goes with the candidate: the spare generation is
    // kept without one, materialized again when needed.
    if result.is_err() && staging.builder.tree().exists() {
        let _ = staging.put_spare_back(store);
    }
    result
}

/// Everything after the candidate's tree is started: staging, checks, commit, agent run.
fn check_and_commit(
    store: &Store,
    request: &mut IngestRequest,
    checks_done: &mut Vec<CheckRecord>,
    started: Timestamp,
    state: &crate::format::records::StateRecord,
    early: Option<(Vec<u8>, Manifest)>,
    staging: &mut Staging,
) -> Result<IngestReport> {
    let config = &store.config;
    if let Some((_, manifest)) = &early {
        check_space(store, manifest, staging)?;
    }
    let (envelope, parsed) = match (&request.source, early) {
        // A directory whose manifest is known up front, in a store that accepts only
        // signed manifests: built from the manifest, reading from the directory only the
        // contents the store does not hold. (An unsigned manifest is no authority: there
        // the source's files are what counts, and each is compared with it.)
        (Source::Directory(directory), Some((bytes, manifest)))
            if request.trust_stamps && config.trust.require_signature =>
        {
            let directory = directory.clone();
            let envelope =
                stage_from_manifest(store, request, &directory, bytes, &manifest, staging)?;
            (envelope, Some(manifest))
        }
        // What a pull fetched: its manifest's signatures were checked against the root
        // before any object was fetched, and are checked again below.
        (Source::Fetched { pool, .. }, Some((bytes, manifest))) => {
            let pool = pool.clone();
            let envelope = stage_from_pool(store, request, &pool, bytes, &manifest, staging)?;
            (envelope, Some(manifest))
        }
        (_, early) => (
            stage_source(store, request, early.map(|(_, manifest)| manifest), staging)?,
            None,
        ),
    };
    crashpoint::point("ingest-staged");

    // Integrity.
    (request.progress)(Progress::Check("integrity"));
    let now = Timestamp::now();
    let manifest = match (&envelope.manifest, parsed) {
        // Parsed once, up front, from exactly these bytes.
        (Some(_), Some(parsed)) => parsed,
        (Some(bytes), None) => {
            Manifest::parse(bytes, config.manifest_limits()).map_err(|error| {
                Rejection::new(Check::Integrity, Some(MANIFEST_NAME), error.to_string())
            })?
        }
        (None, _) if state.serial_max >= crate::format::manifest::SERIAL_MAX => {
            return Err(Error::Refused(format!(
                "no serial is left above the highest accepted serial {}",
                state.serial_max
            )));
        }
        (None, _) => Manifest {
            serial: state.serial_max + 1,
            created: now,
            expires: None,
            node: None,
            source: None,
            entries: staging.entries.values().cloned().collect(),
            directories: staging.empty_directories.iter().cloned().collect(),
        },
    };
    let trusted = checks::trust_root(config, &store.layout)?;
    let (verdict, signed_by) = checks::integrity(
        &manifest,
        envelope.manifest.as_deref(),
        envelope.signature.as_deref(),
        &trusted,
        config.trust.require_signature,
        &staging.entries,
    );
    record_verdict(checks_done, verdict)?;
    // Empty directories: a version 2 manifest lists them, and the source must have exactly
    // those; a version 1 manifest does not describe them, so the source's are left out.
    if manifest.version() >= crate::format::manifest::FORMAT_VERSION_DIRECTORIES {
        let listed: std::collections::BTreeSet<&String> = manifest.directories.iter().collect();
        let found: std::collections::BTreeSet<&String> = staging.empty_directories.iter().collect();
        if let Some(missing) = listed.difference(&found).next() {
            return Err(Rejection::new(
                Check::Integrity,
                Some(missing),
                "the manifest lists this empty directory, the source does not have it",
            )
            .into());
        }
        if let Some(extra) = found.difference(&listed).next() {
            return Err(Rejection::new(
                Check::Integrity,
                Some(extra),
                "an empty directory the manifest does not list",
            )
            .into());
        }
    }
    // A store with several views: the tree's top level is exactly one directory per
    // view, so that every view shows something and nothing is outside every view.
    if let Some(names) = config.view_names() {
        checks::view_directories(&names, &manifest)?;
    }
    for directory in &manifest.directories {
        staging.builder.make_directory(directory)?;
    }
    // Whatever of a spare tree the candidate does not have goes.
    staging.builder.finish()?;

    // Freshness.
    (request.progress)(Progress::Check("freshness"));
    let verdict = checks::freshness(
        &manifest,
        state.serial_max,
        now,
        config.trust.max_clock_skew_secs,
    );
    record_verdict(checks_done, verdict)?;

    // Parse and user checks run on the staged tree, as the agent will see it: with several
    // views, where each view path shows the candidate's directory of it (a view missing on
    // a fresh node gets an empty directory to show it on, removed again when `views` is
    // dropped if the candidate does not become active).
    let generation = state.next_generation;
    let output_file = store.layout.staging().join(CHECK_OUTPUT_NAME);
    let user_checks = checks::user_checks(&config.checks)?;
    let views = if config.checks.cf_promises.is_empty() && user_checks.is_empty() {
        None
    } else {
        checks::ViewMounts::new(
            config,
            &store.layout,
            staging.builder.tree(),
            "the candidate",
            true,
        )?
    };
    let context = CommandContext {
        tree: staging.builder.tree(),
        serial: manifest.serial,
        generation,
        output_file: &output_file,
        timeout: Duration::from_secs(config.checks.timeout_secs),
        views: views.as_ref(),
    };
    (request.progress)(Progress::Check("parse"));
    if let Some(verdict) = checks::parse(config, &context)? {
        record_verdict(checks_done, verdict)?;
    }
    for check in user_checks {
        let name = check
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        (request.progress)(Progress::Check(&name));
        record_verdict(checks_done, checks::user_check(&check, &context)?)?;
    }
    let _ = fs::remove_file(&output_file);
    // An agent that cannot run could never confirm the generation: refused now, before the
    // commit would use up the serial.
    if !config.agent.command.is_empty() {
        let command = config
            .resolve(&config.agent.command)
            .map_err(|error| Error::Refused(format!("the agent run cannot start: {error}")))?;
        let program = Path::new(&command[0]);
        let executable = fs::metadata(program).map(|metadata| {
            use std::os::unix::fs::PermissionsExt;
            metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
        });
        match executable {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::Refused(format!(
                    "the agent run cannot start: {} is not an executable file",
                    program.display()
                )));
            }
            Err(error) => {
                return Err(Error::Refused(format!(
                    "the agent run cannot start: {}: {error}",
                    program.display()
                )));
            }
        }
    }

    // Every check passed: commit.
    crashpoint::point("ingest-checked");
    (request.progress)(Progress::Committing);
    let will_confirm = config.agent.confirm && !config.agent.command.is_empty();
    let manifest_bytes = envelope
        .manifest
        .unwrap_or_else(|| manifest.render().into_bytes());
    let generation_record = GenerationRecord {
        serial: manifest.serial,
        created: started.unix_secs(),
        manifest_created: manifest.created.unix_secs(),
        expires: manifest.expires.map(Timestamp::unix_secs),
        origin: Origin::Ingested,
        state: if will_confirm {
            GenerationState::Confirming
        } else {
            GenerationState::Good
        },
        reason: None,
        files: manifest.entries.len() as u64,
        bytes: manifest.total_bytes(),
        source: request.source.describe(),
        signed_by,
        attempt: state.next_attempt,
    };
    let attempt = Attempt::new(
        Action::Ingest,
        Outcome::Accepted,
        format!(
            "generation {generation} (serial {}) activated",
            manifest.serial
        ),
    )
    .started(started)
    .source(request.source.describe())
    .serial(Some(manifest.serial))
    .generation(Some(generation))
    .checks(checks_done.clone());
    let manifest_record = ManifestRecord {
        manifest: manifest_bytes,
        signature: envelope.signature,
    };
    commit_generation(
        store,
        staging,
        generation,
        &manifest_record,
        &generation_record,
        attempt,
        ViewSwitch::Now,
    )?;

    let agent = confirm_with_agent(store, generation, manifest.serial, &mut *request.progress)?;
    Ok(IngestReport {
        generation,
        serial: manifest.serial,
        files: manifest.entries.len() as u64,
        bytes: manifest.total_bytes(),
        files_written: staging.files_written,
        agent,
        checks: checks_done.clone(),
    })
}

/// The candidate's manifest, when it can be read before the source: a directory source's
/// `polstore.manifest`, or `--manifest`. Used only to plan (the space check, files known by
/// their stamp); the integrity check parses and verifies the manifest it reads with the
/// source. `None` when it is absent or does not parse: the integrity check says why.
fn early_manifest(store: &Store, request: &IngestRequest) -> Option<(Vec<u8>, Manifest)> {
    let path = match (&request.manifest_file, &request.source) {
        (Some(path), _) => path.clone(),
        (
            None,
            Source::Directory(directory)
            | Source::Parts { directory, .. }
            | Source::Fetched {
                pool: directory, ..
            },
        ) => directory.join(MANIFEST_NAME),
        _ => return None,
    };
    let bytes = read::read_bounded(&path, crate::format::manifest::MANIFEST_BYTES_MAX)?;
    let manifest = Manifest::parse(&bytes, store.config.manifest_limits()).ok()?;
    Some((bytes, manifest))
}

/// Refuses, before anything is written, a candidate that obviously cannot fit: when its
/// manifest can be read up front (a directory source or `--manifest`), the content the
/// active generation lacks is written twice (tree and database), and that must be below
/// the space left. Anything less obvious is caught by the first write that fails.
fn check_space(store: &Store, manifest: &Manifest, staging: &Staging) -> Result<()> {
    // Over a spare tree, what it does not hold at the same path (an upper bound, without
    // parsing the active manifest); else what the active generation does not hold.
    let held = |entry: &Entry| match staging.spare {
        Some(_) => staging
            .builder
            .holds(&entry.path, entry.hash, entry.mode, entry.size),
        None => staging
            .linkable
            .files()
            .contains_key(&(entry.hash, entry.mode)),
    };
    let mut new_contents = HashSet::new();
    let new_bytes: u64 = manifest
        .entries
        .iter()
        .filter(|entry| !held(entry))
        .filter(|entry| new_contents.insert(entry.hash))
        .map(|entry| entry.size)
        .sum();
    let Ok(space) = rustix::fs::statvfs(&store.layout.root) else {
        return Ok(());
    };
    let free = space.f_bavail.saturating_mul(space.f_frsize);
    // Twice the new content, plus a block per file and directory entry.
    let needed = new_bytes
        .saturating_mul(2)
        .saturating_add((manifest.entries.len() as u64).saturating_mul(space.f_frsize.max(512)));
    if needed > free {
        return Err(Error::NotEnoughSpace {
            root: store.layout.root.clone(),
            needed_mib: needed.div_ceil(1 << 20),
            free_mib: free >> 20,
        });
    }
    Ok(())
}

fn record_verdict(checks_done: &mut Vec<CheckRecord>, verdict: checks::Verdict) -> Result<()> {
    checks_done.push(verdict.record);
    match verdict.rejection {
        None => Ok(()),
        Some(rejection) => Err(rejection.into()),
    }
}

/// Turns the staged candidate into generation `generation` and makes it active.
///
/// Steps 3 to 7 of `store-format.md` § Commit protocol (1 is staging, 2 the checks, 8 the
/// agent run), each durable before the next:
/// 3. tree directories synced (file contents were synced as written); manifest and
///    signature written beside the tree and synced; candidate dir synced;
/// 4. new objects committed to the database (unreferenced until step 6; harmless if we
///    crash before it, and collected by gc);
/// 5. `staging/candidate` renamed to `generations/N`, `generations/` synced;
///    a crash here leaves a directory the database does not know: recovery removes it;
/// 6. one database commit ([`transition::commit_new`]): generation record, manifest,
///    `active = N`, serial, attempt, stamps; this is the commit point;
/// 7. the view switched to N; a crash before it is repaired by recovery, which points
///    the view at whatever the database says is active.
fn commit_generation(
    store: &Store,
    staging: &Staging,
    generation: u64,
    manifest: &ManifestRecord,
    record: &GenerationRecord,
    attempt: Attempt,
    view_switch: ViewSwitch,
) -> Result<()> {
    let candidate = store.layout.candidate();
    // 3.
    staging.builder.sync()?;
    crashpoint::point("commit-tree-synced");
    write_envelope(&candidate, manifest)?;
    durable::sync_directory(&candidate).map_err(Error::io("cannot sync", &candidate))?;
    crashpoint::point("commit-envelope-written");
    // 4.
    store_new_objects(
        store,
        staging.builder.tree(),
        staging.written.keys().map(|(hash, _)| *hash),
        &staging.entries,
    )?;
    crashpoint::point("commit-objects-stored");
    // 5.
    let target = store.layout.generation_dir(generation);
    fs::rename(&candidate, &target).map_err(Error::io("cannot move candidate to", &target))?;
    let generations = store.layout.generations();
    durable::sync_directory(&generations).map_err(Error::io("cannot sync", &generations))?;
    crashpoint::point("commit-renamed");
    // 6.
    let stamps = staging.stamps.as_ref().map(|(root, files)| {
        (
            root.as_str(),
            StampsRecord {
                files: files.clone(),
            },
        )
    });
    transition::commit_new(
        store,
        generation,
        manifest,
        record,
        attempt,
        stamps.as_ref().map(|(root, record)| (*root, record)),
    )?;
    crashpoint::point("commit-committed");
    // 7.
    match view_switch {
        ViewSwitch::Now => {
            store.switch_view(generation)?;
            crashpoint::point("commit-view-switched");
            Ok(())
        }
        ViewSwitch::Later => Ok(()),
    }
}

/// Whether [`commit_generation`] switches the view itself.
enum ViewSwitch {
    Now,
    /// The caller does it (adoption, where the view is still a real directory).
    Later,
}

/// Writes the manifest and signature beside the tree, so that the store can be rebuilt
/// from directories alone. Synced; the caller syncs `directory`.
fn write_envelope(directory: &Path, manifest: &ManifestRecord) -> Result<()> {
    let path = directory.join(MANIFEST_NAME);
    durable::create_file_synced(&path, &manifest.manifest, 0o644)
        .map_err(Error::io("cannot write", &path))?;
    if let Some(signature) = &manifest.signature {
        let path = directory.join(SIGNATURE_NAME);
        durable::create_file_synced(&path, signature, 0o644)
            .map_err(Error::io("cannot write", &path))?;
    }
    Ok(())
}

/// Copies the content of every new hash from the staged tree into the database, in
/// batches, checking each against its hash as it is read back.
fn store_new_objects(
    store: &Store,
    tree: &Path,
    hashes: impl Iterator<Item = Hash>,
    entries: &BTreeMap<String, Entry>,
) -> Result<()> {
    let path_of: HashMap<Hash, &str> = entries
        .values()
        .map(|entry| (entry.hash, entry.path.as_str()))
        .collect();
    let pending: Vec<Hash> = {
        let read = store.db.read()?;
        let mut unique: Vec<Hash> = hashes.collect::<HashSet<_>>().into_iter().collect();
        unique.sort();
        let mut missing = Vec::new();
        for hash in unique {
            if !read.has_object(hash)? {
                missing.push(hash);
            }
        }
        missing
    };
    let mut batch = ObjectBatch::new(&store.db);
    for hash in pending {
        let path = tree.join(path_of[&hash]);
        let content = fs::read(&path).map_err(|error| {
            DbError::Corrupt(format!("cannot read back {}: {error}", path.display()))
        })?;
        if Hash::of(&content) != hash {
            return Err(DbError::Corrupt(format!("{} changed in staging", path.display())).into());
        }
        batch.add(hash, content)?;
    }
    batch.finish()?;
    Ok(())
}

/// What cf-agent prints when its own validation (`cf-promises -c`) refuses the policy it
/// was given and it runs failsafe.cf instead (`SelectAndLoadPolicy` in cfengine/core's
/// `libpromises/generic_agent.c`, the same words from 3.12 to 3.26). It may then exit 0.
pub const FAILSAFE_LINE: &str =
    "CFEngine was not able to get confirmation of promises from cf-promises, so going to failsafe";

/// Runs the agent once on the new generation. With `agent.confirm`, a failure rolls back.
/// A failure is a non-zero exit, a timeout, or a fall back to failsafe.cf
/// ([`FAILSAFE_LINE`] anywhere in its output). A program that cannot start was refused
/// before the commit; found unfit here (it changed since), the run failed too.
fn confirm_with_agent(
    store: &Store,
    generation: u64,
    serial: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<AgentRun> {
    let config = &store.config;
    if config.agent.command.is_empty() {
        return Ok(AgentRun::NotConfigured);
    }
    progress(Progress::AgentRun { generation });
    // The path the view points at: through the read-only mount, where the agent cannot
    // write into the generation it confirms.
    let tree = crate::store::protect::readable_tree(&store.layout, generation);
    let timeout = Duration::from_secs(config.agent.timeout_secs);
    let quoted = |line: &str| {
        crate::format::text::one_line(line.trim(), crate::format::text::QUOTED_CHARS_MAX)
    };
    let reason = match config.resolve(&config.agent.command) {
        // Not found, or not fit to run: the run failed before it started.
        Err(error) => error.to_string(),
        Ok(command) => {
            let argv = config::expand_command(&command, &tree, serial, generation);
            let output_file = store.layout.staging().join("agent-output");
            let context = CommandContext {
                tree: &tree,
                serial,
                generation,
                output_file: &output_file,
                timeout,
                // The agent reads the views themselves: the generation is active by now.
                views: None,
            };
            let outcome = context.watch(&argv, &[FAILSAFE_LINE, "error:"]);
            let _ = fs::remove_file(&output_file);
            let fell_to_failsafe = outcome.watched[0].is_some();
            if outcome.succeeded() && !fell_to_failsafe {
                crashpoint::point("confirm-agent-ran");
                if config.agent.confirm {
                    transition::confirm(store, generation)?;
                }
                return Ok(AgentRun::Succeeded);
            }
            let mut reason = format!("{} {}", argv[0], outcome.describe(timeout));
            if fell_to_failsafe {
                // cf-agent's own validation refused the policy: it ran failsafe.cf instead,
                // and may well have exited 0. Its first error says why.
                reason.push_str(
                    ", but its own validation refused the policy and it fell back to failsafe.cf",
                );
                if let Some(line) = &outcome.watched[1] {
                    reason.push_str(": ");
                    reason.push_str(&quoted(line));
                }
            } else {
                // cf-agent says why it stopped in a line with "aborted"; otherwise its last
                // line.
                let telling_line = outcome
                    .output
                    .lines()
                    .map(str::trim)
                    .find(|line| line.contains("aborted"));
                if let Some(line) = telling_line.or_else(|| outcome.last_line()) {
                    reason.push_str(": ");
                    reason.push_str(&quoted(line));
                }
            }
            reason
        }
    };
    if !config.agent.confirm {
        return Ok(AgentRun::FailedUnconfirmed(reason));
    }
    let message = transition::fail(store, generation, &reason, Action::Ingest)?;
    Err(Rejection::new(Check::Agent, None, message).into())
}

/// Takes the directory the agent used before polstore as generation 1, unchecked, and puts
/// the view symlink in its place with no moment where the path is missing. With several
/// views, generation 1's tree holds `NAME/` = what each view's directory holds (empty for
/// one that is empty or missing), and the views are put in place one after another
/// ([`Store::replace_adopted_views`]).
pub fn adopt(store: &Store, progress: &mut dyn FnMut(Progress)) -> Result<u64> {
    let started = Timestamp::now();
    let state = store.state()?;
    if state.active.is_some() {
        return Err(Error::Refused(
            "the store already has generations; adopt works only on a new store".into(),
        ));
    }
    let marker = store.layout.adoption_marker();
    if crate::fs::read::read_regular(&marker, 4096).is_err() {
        return Err(Error::Refused(
            "the store was not made for an adoption (no adoption marker); adopt works only on a store made for one".into(),
        ));
    }
    let views = store.config.views();
    let adopted_from = crate::store::adoption_source(&views);
    let candidate = store.layout.candidate();
    durable::create_directory(&candidate, crate::store::STORE_DIRECTORY_MODE)
        .map_err(Error::io("cannot create", &candidate))?;
    let mut staging = Staging::fresh(
        TreeBuilder::new(candidate.join("tree"))?,
        Linkable::default(),
    );
    let mut files = 0;
    let mut sink = |item: Item| -> Result<()> {
        match item {
            Item::File {
                path,
                mode,
                content,
                ..
            } => {
                staging.add(path, mode, &content)?;
                files += 1;
                progress(Progress::Reading {
                    files,
                    bytes: staging.bytes,
                });
            }
            Item::EmptyDirectory(path) => {
                staging.builder.make_directory(&path)?;
                staging.empty_directories.insert(path);
            }
            _ => {}
        }
        Ok(())
    };
    match views.as_slice() {
        [config::View { name: None, path }] => source::read(
            &Source::Directory(path.clone()),
            &store.config.limits,
            &mut sink,
        )?,
        // Every view is named (the configuration has one form or the other). Nothing is
        // read of a missing view: its directory in the tree is empty.
        _ => {
            let roots: Vec<(&str, Option<&Path>)> = views
                .iter()
                .map(|view| {
                    let present = fs::symlink_metadata(&view.path).is_ok();
                    (
                        view.name.as_deref().unwrap_or_default(),
                        present.then_some(view.path.as_path()),
                    )
                })
                .collect();
            source::read_directories(&roots, &store.config.limits, &mut sink)?
        }
    }
    let manifest = Manifest {
        serial: 0,
        created: started,
        expires: None,
        node: None,
        source: Some("adopted".to_string()),
        entries: staging.entries.values().cloned().collect(),
        directories: staging.empty_directories.iter().cloned().collect(),
    };
    let generation = state.next_generation;
    let record = GenerationRecord {
        serial: 0,
        created: started.unix_secs(),
        manifest_created: started.unix_secs(),
        expires: None,
        origin: Origin::Adopted,
        state: GenerationState::Good,
        reason: None,
        files: manifest.entries.len() as u64,
        bytes: manifest.total_bytes(),
        source: adopted_from.clone(),
        signed_by: None,
        attempt: state.next_attempt,
    };
    let attempt = Attempt::new(
        Action::Adopt,
        Outcome::Accepted,
        format!("adopted {adopted_from} as generation {generation} (unsigned, not checked)"),
    )
    .started(started)
    .source(adopted_from)
    .serial(Some(0))
    .generation(Some(generation));
    let manifest_record = ManifestRecord {
        manifest: manifest.render().into_bytes(),
        signature: None,
    };
    // Steps 1 and 3-6 of the commit protocol; step 7 cannot rename a symlink over a
    // directory, so `replace_adopted_views` exchanges them instead. Recovery finishes that
    // step too. The marker, written by `Store::create` before the store's format file,
    // tells recovery that a directory at the view is the one being adopted and may be
    // exchanged for the symlink, and tells `init` that an adoption that left no
    // generation may start over.
    crashpoint::point("adopt-staged");
    // Recorded outside the database before its commit: a rebuild takes back an unsigned
    // generation only if the store itself adopted it.
    crate::store::trust::record_adoption(&store.layout, generation, &manifest_record.manifest)?;
    commit_generation(
        store,
        &staging,
        generation,
        &manifest_record,
        &record,
        attempt,
        ViewSwitch::Later,
    )?;
    crashpoint::point("adopt-committed");
    store.replace_adopted_views(generation)?;
    Ok(generation)
}

/// The active generation after a failed ingest, for the operator. After a failed commit (a
/// full disk), redb answers only once the database is opened again.
pub fn active_after_failure(store: Store) -> Option<u64> {
    match store.state() {
        Ok(state) => state.active,
        Err(_) => store.reopened().ok()?.state().ok()?.active,
    }
}
