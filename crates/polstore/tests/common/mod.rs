//! Shared fixtures for the library's layer tests: a store in a temporary directory made by
//! `ops::init::init`, configured for unsigned candidates with no parse check, no user
//! checks and no agent run; tiny policy trees; ingesting them; and a snapshot of what a
//! refused operation must leave unchanged.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use polstore::candidate::source::Source;
use polstore::error::Result;
use polstore::format::manifest::{Entry, Hash, Manifest};
use polstore::format::records::{
    Action, AttemptRecord, GenerationRecord, GenerationState, ManifestRecord, Origin, Outcome,
    StateRecord,
};
use polstore::format::timestamp::Timestamp;
use polstore::fs::durable;
use polstore::ops::ingest::{self, IngestReport, IngestRequest};
use polstore::ops::init::{self, InitRequest};
use polstore::store::transition::{self, Attempt};
use polstore::store::{LockWait, Store};

/// A store in a temporary directory, with its view beside it.
pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub view: PathBuf,
    /// The user checks directory the configuration names; empty until a test adds a check.
    pub checks_dir: PathBuf,
    sources: PathBuf,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        unmount_under(self.dir.path());
    }
}

impl TestStore {
    /// A new store made by `init`, its `polstore.toml` edited: unsigned candidates are
    /// accepted (no keys, so `require_signature = false`), the parse check and the agent
    /// run are off, and user checks come from `checks_dir`.
    pub fn new() -> TestStore {
        let dir = tempfile::tempdir().expect("cannot make a temporary directory");
        let root = dir.path().join("store");
        let view = dir.path().join("inputs");
        let checks_dir = dir.path().join("checks.d");
        fs::create_dir(&checks_dir).unwrap();
        // Whatever the umask: a checks directory others can write is refused.
        fs::set_permissions(&checks_dir, fs::Permissions::from_mode(0o755)).unwrap();
        let sources = dir.path().join("sources");
        fs::create_dir(&sources).unwrap();
        init::init(InitRequest {
            root: &root,
            views: &[polstore::config::View {
                name: None,
                path: view.clone(),
            }],
            keys: &[],
            adopt: false,
            config_text: None,
            progress: &mut |_| {},
        })
        .expect("init fails");
        let config_file = root.join(polstore::config::CONFIG_FILE_NAME);
        let mut text = fs::read_to_string(&config_file).unwrap();
        assert!(text.contains("\nrequire_signature = false\n"), "{text}");
        for (from, to) in [
            (
                r#"cf_promises = ["cf-promises", "-c", "-f", "{tree}/{entry}"]"#.to_string(),
                "cf_promises = []".to_string(),
            ),
            (
                r#"command = ["cf-agent", "-K", "-f", "{tree}/promises.cf"]"#.to_string(),
                "command = []".to_string(),
            ),
            (
                r#"# dir = "/etc/polstore/checks.d""#.to_string(),
                format!("dir = \"{}\"", checks_dir.display()),
            ),
        ] {
            assert_eq!(text.matches(&from).count(), 1, "{from} not in {text}");
            text = text.replace(&from, &to);
        }
        fs::write(&config_file, text).unwrap();
        TestStore {
            dir,
            root,
            view,
            checks_dir,
            sources,
        }
    }

    /// Opens the store under the writer lock, as a command does.
    pub fn open(&self) -> Store {
        let (store, _recovery) = Store::open(
            &self.root,
            LockWait {
                command: "test",
                timeout: Duration::ZERO,
                on_wait: &mut |_| {},
            },
        )
        .expect("cannot open the store");
        store
    }

    /// A fresh source directory `sources/<name>` holding `files` (mode 0644).
    pub fn source(&self, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let directory = self.sources.join(name);
        fs::create_dir(&directory).expect("source names are unique within a test");
        write_tree(&directory, files);
        directory
    }

    /// Ingests `files` from a new source directory `name`; panics unless accepted.
    pub fn ingest_files(&self, store: &Store, name: &str, files: &[(&str, &[u8])]) -> IngestReport {
        let directory = self.source(name, files);
        ingest_dir(store, &directory).expect("ingest is refused")
    }
}

/// Ingests the directory `directory` (no manifest override, stamps not trusted).
pub fn ingest_dir(store: &Store, directory: &Path) -> Result<IngestReport> {
    ingest::ingest(
        store,
        IngestRequest {
            source: Source::Directory(directory.to_path_buf()),
            manifest_file: None,
            signature_file: None,
            trust_stamps: false,
            progress: &mut |_| {},
        },
    )
}

/// Writes `files` (path, content) under `dir` with mode 0644, creating directories.
pub fn write_tree(dir: &Path, files: &[(&str, &[u8])]) {
    for (path, content) in files {
        write_file(&dir.join(path), content, 0o644);
    }
}

/// Writes one file with exactly `mode`, creating its parent directories.
pub fn write_file(path: &Path, content: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    set_mode(path, mode);
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Replaces the file at `path` by a new one (a new inode, mode 0644) holding `content`.
/// Generations share unchanged files by hard link; writing in place would change every
/// generation that links the file, replacing changes only this one.
pub fn replace_file(path: &Path, content: &[u8]) {
    fs::remove_file(path).unwrap();
    write_file(path, content, 0o644);
}

/// Which generation the (one) view shows: `None` unless the view is polstore's fixed
/// symlink and `STORE/active` names a generation.
pub fn view_target(store: &Store) -> Option<u64> {
    let view = store.config.views().pop()?;
    if fs::read_link(&view.path).ok()? != store.layout.view_target(&view) {
        return None;
    }
    store.layout.active_generation()
}

/// The names in `generations/`.
pub fn generation_dirs(store: &Store) -> BTreeSet<String> {
    fs::read_dir(store.layout.generations())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect()
}

pub fn generation_record(store: &Store, generation: u64) -> GenerationRecord {
    store
        .db
        .read()
        .unwrap()
        .generation(generation)
        .unwrap()
        .unwrap_or_else(|| panic!("generation {generation} has no record"))
}

/// Every attempt in the history, oldest first.
pub fn attempts(store: &Store) -> Vec<AttemptRecord> {
    store
        .db
        .read()
        .unwrap()
        .attempts(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, attempt)| attempt)
        .collect()
}

pub fn last_attempt(store: &Store) -> AttemptRecord {
    attempts(store).pop().expect("no attempt recorded")
}

/// What a refused or failed operation must leave as it was.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub state: StateRecord,
    pub view: Option<u64>,
    pub generation_dirs: BTreeSet<String>,
    pub records: Vec<(u64, GenerationRecord)>,
    pub attempts: usize,
}

impl Snapshot {
    pub fn take(store: &Store) -> Snapshot {
        let read = store.db.read().unwrap();
        Snapshot {
            state: read.state().unwrap(),
            view: view_target(store),
            generation_dirs: generation_dirs(store),
            records: read.generations().unwrap(),
            attempts: read.attempts(usize::MAX).unwrap().len(),
        }
    }
}

/// Makes a new generation holding `files` in state `state` without ingest: its tree is
/// written in `generations/N/tree` and committed with `transition::commit_new`, then the
/// view is switched to it. For states ingest never leaves behind (Confirming).
pub fn commit_by_hand(store: &Store, files: &[(&str, &[u8])], state: GenerationState) -> u64 {
    let current = store.state().unwrap();
    let generation = current.next_generation;
    let tree = store.layout.generation_tree(generation);
    durable::create_tree_directory(&tree).unwrap();
    let mut entries = Vec::new();
    for (path, content) in files {
        let full = tree.join(path);
        durable::create_tree_directory(full.parent().unwrap()).unwrap();
        durable::create_file_synced(&full, content, 0o644).unwrap();
        entries.push(Entry {
            path: path.to_string(),
            mode: 0o644,
            size: content.len() as u64,
            hash: Hash::of(content),
        });
    }
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let manifest = Manifest {
        serial: current.serial_max + 1,
        created: Timestamp::now(),
        expires: None,
        node: None,
        source: None,
        entries,
        directories: Vec::new(),
    };
    let record = GenerationRecord {
        serial: manifest.serial,
        created: Timestamp::now().unix_secs(),
        manifest_created: manifest.created.unix_secs(),
        expires: None,
        origin: Origin::Ingested,
        state,
        reason: None,
        files: manifest.entries.len() as u64,
        bytes: manifest.total_bytes(),
        source: "by hand".to_string(),
        signed_by: None,
        attempt: current.next_attempt,
    };
    transition::commit_new(
        store,
        generation,
        &ManifestRecord {
            manifest: manifest.render().into_bytes(),
            signature: None,
        },
        &record,
        Attempt::new(Action::Ingest, Outcome::Accepted, "committed by hand")
            .generation(Some(generation)),
        None,
    )
    .unwrap();
    store.switch_view(generation).unwrap();
    generation
}

/// Bytes that do not compress: a tar.gz cut short then ends inside an entry's data.
pub fn noise(length: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..length)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

mod unmount;
pub use unmount::unmount_under;

/// Whether the tests run as root (device nodes need it); prints why a test skips if not.
pub fn root_or_skip(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("{test}: skipped: making device nodes needs root");
    }
    root
}
