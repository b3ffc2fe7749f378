//! `store::tree::check_tree` on a real generation's tree against its stored manifest:
//! each kind of damage is one finding naming the generation and the path.

mod common;

use std::collections::HashSet;
use std::fs;

use common::TestStore;
use polstore::store::Store;
use polstore::store::tree::{self, Finding, HashCache, Kind};

const PROMISES: &[u8] = b"body common control {}\n";
const A: &[u8] = b"# library a\n";
const RUN: &[u8] = b"#!/bin/sh\nexit 0\n";

/// A store whose generation 2 holds promises.cf, lib/a.cf and lib/run.sh (0755); its
/// generation 1 shares no file with it.
fn store() -> (TestStore, Store) {
    let test = TestStore::new();
    let store = test.open();
    test.ingest_files(&store, "g1", &[("old.cf", b"# generation 1\n")]);
    let source = test.source("g2", &[("promises.cf", PROMISES), ("lib/a.cf", A)]);
    common::write_file(&source.join("lib/run.sh"), RUN, 0o755);
    let report = common::ingest_dir(&store, &source).unwrap();
    assert_eq!(report.generation, 2);
    (test, store)
}

/// The findings of checking `generation`, and the paths found intact.
fn check(store: &Store, generation: u64) -> (Vec<Finding>, HashSet<String>) {
    let manifest = polstore::store::stored_manifest(&store.db.read().unwrap(), generation).unwrap();
    let mut findings = Vec::new();
    let intact = tree::check_tree(
        &store.layout.generation_tree(generation),
        generation,
        &manifest,
        &mut HashCache::default(),
        1000,
        &mut findings,
    );
    (findings, intact)
}

fn finding(path: Option<&str>, kind: Kind, detail: &str) -> Finding {
    Finding::new(Some(2), path, kind, detail.to_string())
}

fn intact(paths: &[&str]) -> HashSet<String> {
    paths.iter().map(|path| path.to_string()).collect()
}

/// Checks generation 2 and asserts exactly `expected` is found, with `intact_paths`
/// intact; and that generation 1 is still sound.
fn assert_findings(store: &Store, expected: &[Finding], intact_paths: &[&str]) {
    let (found, intact_found) = check(store, 2);
    assert_eq!(found, expected);
    assert_eq!(intact_found, intact(intact_paths));
    let (other, _) = check(store, 1);
    assert_eq!(other, Vec::new(), "generation 1 is not touched");
}

#[test]
fn a_sound_generation_has_no_findings_and_every_file_intact() {
    let (_test, store) = store();
    assert_findings(&store, &[], &["promises.cf", "lib/a.cf", "lib/run.sh"]);
}

#[test]
fn different_content_of_the_same_size_is_a_content_finding() {
    let (_test, store) = store();
    let path = store.layout.generation_tree(2).join("lib/a.cf");
    common::replace_file(&path, b"# library A\n");
    let expected = finding(
        Some("lib/a.cf"),
        Kind::Content,
        "content does not match the manifest's hash",
    );
    assert_eq!(
        expected.to_string(),
        "generation 2: lib/a.cf: content does not match the manifest's hash"
    );
    assert_findings(&store, &[expected], &["promises.cf", "lib/run.sh"]);
}

#[test]
fn a_different_size_is_a_content_finding() {
    let (_test, store) = store();
    let path = store.layout.generation_tree(2).join("promises.cf");
    common::replace_file(&path, b"longer than it was before\n");
    let expected = finding(
        Some("promises.cf"),
        Kind::Content,
        &format!("has 26 bytes, the manifest says {}", PROMISES.len()),
    );
    assert_findings(&store, &[expected], &["lib/a.cf", "lib/run.sh"]);
}

#[test]
fn a_different_mode_is_a_mode_finding() {
    let (_test, store) = store();
    common::set_mode(&store.layout.generation_tree(2).join("lib/run.sh"), 0o700);
    let expected = finding(
        Some("lib/run.sh"),
        Kind::Mode,
        "has mode 0700, the manifest says 0755",
    );
    assert_eq!(
        expected.to_string(),
        "generation 2: lib/run.sh: has mode 0700, the manifest says 0755"
    );
    assert_findings(&store, &[expected], &["promises.cf", "lib/a.cf"]);
}

#[test]
fn a_writable_directory_is_a_mode_finding() {
    let (_test, store) = store();
    let tree = store.layout.generation_tree(2);
    common::set_mode(&tree.join("lib"), 0o777);
    common::set_mode(&tree, 0o775);
    assert_findings(
        &store,
        &[
            finding(
                None,
                Kind::Mode,
                "its tree directory is group- or world-writable (mode 0775)",
            ),
            finding(
                Some("lib"),
                Kind::Mode,
                "directory is group- or world-writable (mode 0777)",
            ),
        ],
        // The files themselves are sound.
        &["promises.cf", "lib/a.cf", "lib/run.sh"],
    );
}

#[test]
fn a_file_owned_by_another_user_is_a_mode_finding() {
    if !common::root_or_skip("a_file_owned_by_another_user_is_a_mode_finding") {
        return;
    }
    let (_test, store) = store();
    let path = store.layout.generation_tree(2).join("lib/a.cf");
    std::os::unix::fs::lchown(&path, Some(4321), None).unwrap();
    assert_findings(
        &store,
        &[finding(
            Some("lib/a.cf"),
            Kind::Mode,
            "is owned by uid 4321, not by uid 0 that polstore runs as",
        )],
        &["promises.cf", "lib/run.sh"],
    );
}

#[test]
fn a_removed_file_is_a_missing_finding() {
    let (_test, store) = store();
    fs::remove_file(store.layout.generation_tree(2).join("lib/a.cf")).unwrap();
    let expected = finding(Some("lib/a.cf"), Kind::Missing, "is missing");
    assert_eq!(expected.to_string(), "generation 2: lib/a.cf: is missing");
    assert_findings(&store, &[expected], &["promises.cf", "lib/run.sh"]);
}

#[test]
fn a_removed_tree_is_one_missing_finding() {
    let (_test, store) = store();
    let tree = store.layout.generation_tree(2);
    fs::remove_dir_all(&tree).unwrap();
    assert_findings(
        &store,
        &[finding(
            None,
            Kind::Missing,
            &format!("its tree {} is missing", tree.display()),
        )],
        &[],
    );
}

#[test]
fn files_and_directories_not_in_the_manifest_are_extra_findings() {
    let (_test, store) = store();
    let tree = store.layout.generation_tree(2);
    common::write_file(&tree.join("lib/extra.cf"), b"x", 0o644);
    common::write_file(&tree.join("new/deeper/x.cf"), b"x", 0o644);
    std::os::unix::fs::symlink("/etc/passwd", tree.join("link")).unwrap();
    let (mut found, intact_found) = check(&store, 2);
    found.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(
        found,
        vec![
            finding(
                Some("lib/extra.cf"),
                Kind::Extra,
                "file not in the manifest"
            ),
            finding(
                Some("link"),
                Kind::Extra,
                "symbolic link not in the manifest"
            ),
            finding(Some("new"), Kind::Extra, "directory not in the manifest"),
            finding(
                Some("new/deeper"),
                Kind::Extra,
                "directory not in the manifest"
            ),
            finding(
                Some("new/deeper/x.cf"),
                Kind::Extra,
                "file not in the manifest"
            ),
        ]
    );
    assert_eq!(
        found[0].to_string(),
        "generation 2: lib/extra.cf: file not in the manifest"
    );
    // Extra files leave the listed ones intact.
    assert_eq!(
        intact_found,
        intact(&["promises.cf", "lib/a.cf", "lib/run.sh"])
    );
}

#[test]
fn something_other_than_a_file_where_the_manifest_has_one_is_a_type_finding() {
    let (_test, store) = store();
    let tree = store.layout.generation_tree(2);
    fs::remove_file(tree.join("promises.cf")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", tree.join("promises.cf")).unwrap();
    fs::remove_file(tree.join("lib/a.cf")).unwrap();
    polstore::fs::durable::create_tree_directory(&tree.join("lib/a.cf")).unwrap();
    let (mut found, intact_found) = check(&store, 2);
    found.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(
        found,
        vec![
            finding(
                Some("lib/a.cf"),
                Kind::Type,
                "is a directory, the manifest has a file"
            ),
            finding(
                Some("promises.cf"),
                Kind::Type,
                "is a symbolic link, the manifest has a file"
            ),
        ]
    );
    assert_eq!(
        found[1].to_string(),
        "generation 2: promises.cf: is a symbolic link, the manifest has a file"
    );
    assert_eq!(intact_found, intact(&["lib/run.sh"]));
}

#[test]
fn verified_names_the_first_finding() {
    let (_test, store) = store();
    assert_eq!(
        polstore::store::transition::verified(&store, 2).unwrap(),
        Ok(())
    );
    fs::remove_file(store.layout.generation_tree(2).join("lib/a.cf")).unwrap();
    assert_eq!(
        polstore::store::transition::verified(&store, 2).unwrap(),
        Err("generation 2: lib/a.cf: is missing".to_string())
    );
}
