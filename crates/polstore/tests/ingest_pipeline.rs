//! `ops::ingest::ingest`: what an accepted candidate writes and links, and what a
//! rejected one leaves unchanged.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{Snapshot, TestStore};
use polstore::candidate::source::Source;
use polstore::error::{Check, Error, Rejection};
use polstore::format::manifest::{Entry, Hash, Manifest};
use polstore::format::records::{Action, GenerationState, Outcome};
use polstore::format::timestamp::Timestamp;
use polstore::ops::ingest::{self, AgentRun, IngestRequest};
use polstore::store::Store;
use polstore::store::transition;

const PROMISES: &[u8] = b"body common control {}\n";
const A: &[u8] = b"# library a\n";
const B: &[u8] = b"# library b\n";

fn inode(path: &Path) -> (u64, u64) {
    let metadata = fs::symlink_metadata(path).unwrap();
    (metadata.dev(), metadata.ino())
}

fn has_object(store: &Store, content: &[u8]) -> bool {
    store
        .db
        .read()
        .unwrap()
        .has_object(Hash::of(content))
        .unwrap()
}

fn staging_is_empty(store: &Store) -> bool {
    fs::read_dir(store.layout.staging())
        .unwrap()
        .next()
        .is_none()
}

#[test]
fn a_first_ingest_writes_every_file_and_activates_generation_one() {
    let test = TestStore::new();
    let store = test.open();
    let source = test.source(
        "first",
        &[("promises.cf", PROMISES), ("lib/a.cf", A), ("lib/b.cf", B)],
    );

    let report = common::ingest_dir(&store, &source).unwrap();

    assert_eq!(report.generation, 1);
    assert_eq!(report.serial, 1);
    assert_eq!(report.files, 3);
    assert_eq!(report.bytes, (PROMISES.len() + A.len() + B.len()) as u64);
    assert_eq!(report.files_written, 3);
    assert_eq!(report.agent, AgentRun::NotConfigured);
    let checks: Vec<(&str, bool, &str)> = report
        .checks
        .iter()
        .map(|check| (check.name.as_str(), check.passed, check.detail.as_str()))
        .collect();
    assert_eq!(
        checks,
        vec![
            ("integrity", true, "unsigned; 3 files match the manifest"),
            ("freshness", true, "serial 1 > 0"),
        ]
    );

    let state = store.state().unwrap();
    assert_eq!(state.active, Some(1));
    assert_eq!(state.serial_max, 1);
    assert_eq!(state.next_generation, 2);
    assert_eq!(common::view_target(&store), Some(1));
    let tree = store.layout.generation_tree(1);
    assert_eq!(fs::read(tree.join("promises.cf")).unwrap(), PROMISES);
    assert_eq!(fs::read(tree.join("lib/a.cf")).unwrap(), A);
    assert_eq!(transition::verified(&store, 1).unwrap(), Ok(()));
    // The manifest is kept beside the tree, for a rebuild from the directories.
    let manifest = fs::read(store.layout.generation_dir(1).join("polstore.manifest")).unwrap();
    assert_eq!(
        manifest,
        store.db.read().unwrap().manifest(1).unwrap().manifest
    );
    for content in [PROMISES, A, B] {
        assert!(has_object(&store, content));
    }
    let record = common::generation_record(&store, 1);
    assert_eq!(record.state, GenerationState::Good);
    assert_eq!(record.serial, 1);
    assert_eq!(record.files, 3);
    assert_eq!(record.source, source.display().to_string());
    let attempt = common::last_attempt(&store);
    assert_eq!(attempt.action, Action::Ingest);
    assert_eq!(attempt.outcome, Outcome::Accepted);
    assert_eq!(attempt.generation, Some(1));
    assert_eq!(attempt.serial, Some(1));
    assert_eq!(attempt.message, "generation 1 (serial 1) activated");
    assert_eq!(attempt.source, source.display().to_string());
    assert!(staging_is_empty(&store));
}

#[test]
fn a_one_file_change_writes_one_file_and_links_the_rest() {
    let test = TestStore::new();
    let store = test.open();
    test.ingest_files(
        &store,
        "first",
        &[("promises.cf", PROMISES), ("lib/a.cf", A), ("lib/b.cf", B)],
    );

    let report = test.ingest_files(
        &store,
        "second",
        &[
            ("promises.cf", PROMISES),
            ("lib/a.cf", A),
            ("lib/b.cf", b"# library b, changed\n"),
        ],
    );

    assert_eq!(report.generation, 2);
    assert_eq!(report.serial, 2);
    assert_eq!(report.files, 3);
    assert_eq!(report.files_written, 1);
    let old = store.layout.generation_tree(1);
    let new = store.layout.generation_tree(2);
    // Unchanged files are the same inode in both generations; the changed one is not.
    for path in ["promises.cf", "lib/a.cf"] {
        assert_eq!(inode(&old.join(path)), inode(&new.join(path)), "{path}");
        assert_eq!(fs::metadata(new.join(path)).unwrap().nlink(), 2, "{path}");
    }
    assert_ne!(inode(&old.join("lib/b.cf")), inode(&new.join("lib/b.cf")));
    assert_eq!(fs::read(old.join("lib/b.cf")).unwrap(), B);
    assert_eq!(
        fs::read(new.join("lib/b.cf")).unwrap(),
        b"# library b, changed\n"
    );
    // Both generations still match their manifests.
    assert_eq!(transition::verified(&store, 1).unwrap(), Ok(()));
    assert_eq!(transition::verified(&store, 2).unwrap(), Ok(()));
    assert_eq!(store.state().unwrap().active, Some(2));
    assert_eq!(common::view_target(&store), Some(2));
}

#[test]
fn a_mode_change_alone_writes_the_file_anew() {
    let test = TestStore::new();
    let store = test.open();
    test.ingest_files(&store, "first", &[("promises.cf", PROMISES), ("run.sh", A)]);
    let source = test.source("second", &[("promises.cf", PROMISES), ("run.sh", A)]);
    common::set_mode(&source.join("run.sh"), 0o755);

    let report = common::ingest_dir(&store, &source).unwrap();

    assert_eq!(report.files_written, 1);
    let new = store.layout.generation_tree(2).join("run.sh");
    assert_eq!(fs::metadata(&new).unwrap().mode() & 0o7777, 0o755);
    let old = store.layout.generation_tree(1).join("run.sh");
    assert_eq!(fs::metadata(&old).unwrap().mode() & 0o7777, 0o644);
    assert_eq!(transition::verified(&store, 1).unwrap(), Ok(()));
    assert_eq!(transition::verified(&store, 2).unwrap(), Ok(()));
}

#[test]
fn identical_files_within_one_candidate_are_written_once() {
    let test = TestStore::new();
    let store = test.open();
    let report = test.ingest_files(
        &store,
        "first",
        &[("promises.cf", PROMISES), ("a.cf", A), ("copy/a.cf", A)],
    );
    assert_eq!(report.files_written, 2);
    let tree = store.layout.generation_tree(1);
    assert_eq!(inode(&tree.join("a.cf")), inode(&tree.join("copy/a.cf")));
}

#[test]
fn the_same_tree_again_from_an_archive_links_every_file() {
    let test = TestStore::new();
    let store = test.open();
    test.ingest_files(
        &store,
        "first",
        &[("promises.cf", PROMISES), ("lib/a.cf", A)],
    );
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in [("promises.cf", PROMISES), ("lib/a.cf", A)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, content).unwrap();
    }
    let archive = test.dir.path().join("again.tar");
    fs::write(&archive, builder.into_inner().unwrap()).unwrap();

    let report = ingest::ingest(
        &store,
        IngestRequest {
            source: Source::Archive(archive.clone()),
            manifest_file: None,
            signature_file: None,
            trust_stamps: false,
            progress: &mut |_| {},
        },
    )
    .unwrap();

    assert_eq!(report.generation, 2);
    assert_eq!(report.serial, 2);
    assert_eq!(report.files_written, 0);
    for path in ["promises.cf", "lib/a.cf"] {
        assert_eq!(
            inode(&store.layout.generation_tree(1).join(path)),
            inode(&store.layout.generation_tree(2).join(path))
        );
    }
    assert_eq!(
        common::generation_record(&store, 2).source,
        archive.display().to_string()
    );
}

#[test]
fn a_file_of_the_active_generation_changed_behind_polstores_back_is_not_linked() {
    let test = TestStore::new();
    let store = test.open();
    test.ingest_files(
        &store,
        "first",
        &[("promises.cf", PROMISES), ("lib/a.cf", A)],
    );
    // Same size, other bytes, written in place, modified after the generation was
    // committed: the fast path must not trust it.
    let damaged = store.layout.generation_tree(1).join("lib/a.cf");
    fs::write(&damaged, b"# library A\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&damaged)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(60))
        .unwrap();

    let report = test.ingest_files(
        &store,
        "second",
        &[("promises.cf", PROMISES), ("lib/a.cf", A), ("new.cf", B)],
    );

    // lib/a.cf is written anew from the candidate, not linked to the damaged copy.
    assert_eq!(report.files_written, 2);
    let new = store.layout.generation_tree(2);
    assert_eq!(fs::read(new.join("lib/a.cf")).unwrap(), A);
    assert_ne!(inode(&damaged), inode(&new.join("lib/a.cf")));
    assert_eq!(
        inode(&store.layout.generation_tree(1).join("promises.cf")),
        inode(&new.join("promises.cf"))
    );
    assert_eq!(transition::verified(&store, 2).unwrap(), Ok(()));
}

/// Ingests `source`, expects a rejection by `check`, and asserts that the active
/// generation, the view, the generation directories and records, the serial floor and the
/// objects are as they were, staging is empty, and exactly one Rejected attempt was
/// recorded with the rejection's message.
fn assert_rejected_without_change(store: &Store, source: &Path, check: Check) -> Rejection {
    let before = Snapshot::take(store);
    let error = common::ingest_dir(store, source).unwrap_err();
    let Error::Rejected(rejection) = &error else {
        panic!("expected a rejection, got {error:?}");
    };
    assert_eq!(rejection.check, check, "{rejection}");

    let after = Snapshot::take(store);
    assert_eq!(after.state.active, before.state.active);
    assert_eq!(after.state.serial_max, before.state.serial_max);
    assert_eq!(after.state.next_generation, before.state.next_generation);
    assert_eq!(after.state.next_attempt, before.state.next_attempt + 1);
    assert_eq!(after.view, before.view);
    assert_eq!(after.generation_dirs, before.generation_dirs);
    assert_eq!(after.records, before.records);
    assert_eq!(after.attempts, before.attempts + 1);
    assert!(staging_is_empty(store), "staging is cleaned up");
    let attempt = common::last_attempt(store);
    assert_eq!(attempt.action, Action::Ingest);
    assert_eq!(attempt.outcome, Outcome::Rejected);
    assert_eq!(attempt.message, error.to_string());
    assert_eq!(attempt.source, source.display().to_string());
    assert_eq!(attempt.generation, None);
    // The active generation is still whole.
    if let Some(active) = after.state.active {
        assert_eq!(transition::verified(store, active).unwrap(), Ok(()));
    }
    rejection.clone()
}

#[test]
fn a_candidate_refused_by_the_source_check_changes_nothing() {
    let test = TestStore::new();
    let store = test.open();
    test.ingest_files(&store, "first", &[("promises.cf", PROMISES)]);
    let source = test.source(
        "setuid",
        &[("promises.cf", b"# new\n"), ("lib/tool", b"#!/bin/sh\n")],
    );
    common::set_mode(&source.join("lib/tool"), 0o4755);

    let rejection = assert_rejected_without_change(&store, &source, Check::Source);

    assert_eq!(rejection.path.as_deref(), Some("lib/tool"));
    assert_eq!(
        rejection.reason,
        "mode 4755 has a setuid, setgid or sticky bit"
    );
    assert!(!has_object(&store, b"# new\n"));
    let attempt = common::last_attempt(&store);
    assert_eq!(
        attempt.message,
        "rejected by the source check: lib/tool: mode 4755 has a setuid, setgid or sticky bit"
    );
}

#[test]
fn a_candidate_refused_by_a_user_check_changes_nothing() {
    let test = TestStore::new();
    let store = test.open();
    test.ingest_files(&store, "first", &[("promises.cf", PROMISES)]);
    common::write_file(
        &test.checks_dir.join("10-deny"),
        b"#!/bin/sh\necho \"policy $POLSTORE_SERIAL says no\"\nexit 3\n",
        0o755,
    );
    let source = test.source("denied", &[("promises.cf", b"# refused\n"), ("a.cf", A)]);

    let rejection =
        assert_rejected_without_change(&store, &source, Check::User("10-deny".to_string()));

    assert_eq!(rejection.path, None);
    assert_eq!(rejection.reason, "exited with status 3: policy 2 says no");
    // Objects go into the database only at the commit, after every check.
    assert!(!has_object(&store, b"# refused\n"));
    assert!(!has_object(&store, A));
    let attempt = common::last_attempt(&store);
    let checks: Vec<(&str, bool)> = attempt
        .checks
        .iter()
        .map(|check| (check.name.as_str(), check.passed))
        .collect();
    assert_eq!(
        checks,
        vec![
            ("integrity", true),
            ("freshness", true),
            ("user check 10-deny", false),
        ]
    );
    assert!(!store.layout.staging().join("check-output").exists());
}

/// A `polstore.manifest` for `files` (mode 0644) with `serial`.
fn manifest_for(serial: u64, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut entries: Vec<Entry> = files
        .iter()
        .map(|(path, content)| Entry {
            path: path.to_string(),
            mode: 0o644,
            size: content.len() as u64,
            hash: Hash::of(content),
        })
        .collect();
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Manifest {
        serial,
        created: Timestamp::now(),
        expires: None,
        node: None,
        source: None,
        entries,
        directories: Vec::new(),
    }
    .render()
    .into_bytes()
}

#[test]
fn a_candidate_refused_by_the_integrity_or_freshness_check_changes_nothing() {
    let test = TestStore::new();
    let store = test.open();
    test.ingest_files(&store, "first", &[("promises.cf", PROMISES)]);
    test.ingest_files(&store, "second", &[("promises.cf", b"# two\n")]);
    assert_eq!(store.state().unwrap().serial_max, 2);

    // A manifest that lists other content than the source holds.
    let files: &[(&str, &[u8])] = &[("promises.cf", b"# three\n")];
    let source = test.source("mismatch", files);
    fs::write(
        source.join("polstore.manifest"),
        manifest_for(3, &[("promises.cf", b"# other\n")]),
    )
    .unwrap();
    let rejection = assert_rejected_without_change(&store, &source, Check::Integrity);
    assert_eq!(rejection.path.as_deref(), Some("promises.cf"));
    assert!(
        rejection
            .reason
            .starts_with("content does not match the manifest"),
        "{rejection}"
    );

    // A replay of an accepted serial.
    let source = test.source("replay", files);
    fs::write(source.join("polstore.manifest"), manifest_for(2, files)).unwrap();
    let rejection = assert_rejected_without_change(&store, &source, Check::Freshness);
    assert_eq!(
        rejection.reason,
        "serial 2 is equal to the highest accepted serial 2 (replay or downgrade)"
    );

    // After a rollback the floor stays: the older serial is still refused.
    polstore::ops::rollback::rollback(&store, Some(1)).unwrap();
    let source = test.source("downgrade", files);
    fs::write(source.join("polstore.manifest"), manifest_for(1, files)).unwrap();
    let rejection = assert_rejected_without_change(&store, &source, Check::Freshness);
    assert_eq!(
        rejection.reason,
        "serial 1 is older than the highest accepted serial 2 (replay or downgrade)"
    );
    assert_eq!(store.state().unwrap().active, Some(1));
}
