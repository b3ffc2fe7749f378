//! `ops::gc::gc`: which generations garbage collection keeps, what it removes (records,
//! directories, objects) and what it records.

mod common;

use std::collections::BTreeSet;

use common::{Snapshot, TestStore};
use polstore::error::Error;
use polstore::format::manifest::Hash;
use polstore::format::records::{Action, Outcome};
use polstore::ops::gc::{self, Sweep};
use polstore::ops::rollback;
use polstore::store::Store;
use polstore::store::transition;

/// The file that only generation `generation` has.
fn own_content(generation: u64) -> Vec<u8> {
    format!("# generation {generation}\n").into_bytes()
}

const SHARED: &[u8] = b"# shared by every generation\n";

/// `count` generations, each with a file of its own and one shared by all; the newest is
/// active.
fn generations(test: &TestStore, count: u64) -> Store {
    let store = test.open();
    for generation in 1..=count {
        let own = own_content(generation);
        let report = test.ingest_files(
            &store,
            &format!("g{generation}"),
            &[("promises.cf", &own), ("lib/common.cf", SHARED)],
        );
        assert_eq!(report.generation, generation);
    }
    store
}

fn recorded(store: &Store) -> BTreeSet<u64> {
    store
        .db
        .read()
        .unwrap()
        .generations()
        .unwrap()
        .into_iter()
        .map(|(generation, _)| generation)
        .collect()
}

fn on_disk(store: &Store) -> BTreeSet<u64> {
    common::generation_dirs(store)
        .into_iter()
        .map(|name| name.parse().unwrap())
        .collect()
}

fn has_object(store: &Store, content: &[u8]) -> bool {
    store
        .db
        .read()
        .unwrap()
        .has_object(Hash::of(content))
        .unwrap()
}

/// Asserts that exactly `kept` remain, in the database and on disk, and that the others
/// are gone from both.
fn assert_kept(store: &Store, kept: &[u64]) {
    let kept: BTreeSet<u64> = kept.iter().copied().collect();
    assert_eq!(recorded(store), kept, "generation records");
    assert_eq!(on_disk(store), kept, "generation directories");
    let read = store.db.read().unwrap();
    for generation in &kept {
        read.manifest(*generation)
            .unwrap_or_else(|error| panic!("manifest of kept generation {generation}: {error}"));
    }
}

#[test]
fn keeps_the_newest_keep_generations_and_removes_the_others() {
    let test = TestStore::new();
    let mut store = generations(&test, 5);

    let report = gc::gc(&mut store, 2, Sweep::Removed).unwrap();

    assert_eq!(report.removed, vec![1, 2, 3]);
    assert!(report.in_use.is_empty());
    assert_kept(&store, &[4, 5]);
    for generation in 1..=3 {
        assert!(!store.layout.generation_dir(generation).exists());
    }
    assert_eq!(store.state().unwrap().active, Some(5));
    assert_eq!(common::view_target(&store), Some(5));
}

#[test]
fn keeps_the_active_generation_and_the_last_good_one_before_it() {
    let test = TestStore::new();
    let mut store = generations(&test, 6);
    rollback::rollback(&store, Some(3)).unwrap();

    let report = gc::gc(&mut store, 1, Sweep::Removed).unwrap();

    // Newest 1: 6; active: 3; last good before it: 2.
    assert_eq!(report.removed, vec![1, 4, 5]);
    assert_kept(&store, &[2, 3, 6]);
    assert_eq!(store.state().unwrap().active, Some(3));
}

#[test]
fn the_last_good_one_before_the_active_one_skips_failed_generations() {
    let test = TestStore::new();
    let mut store = generations(&test, 6);
    rollback::rollback(&store, Some(3)).unwrap();
    transition::mark_failed(&store, 2, "failed for a test").unwrap();

    let report = gc::gc(&mut store, 1, Sweep::Removed).unwrap();

    assert_eq!(report.removed, vec![2, 4, 5]);
    assert_kept(&store, &[1, 3, 6]);
}

#[test]
fn keeps_pinned_generations() {
    let test = TestStore::new();
    let mut store = generations(&test, 5);
    assert!(gc::set_pinned(&store, 1, true).unwrap());
    assert!(gc::set_pinned(&store, 3, true).unwrap());
    // Pinning twice changes nothing; unpinning 3 makes it collectable again.
    assert!(!gc::set_pinned(&store, 1, true).unwrap());
    assert!(gc::set_pinned(&store, 3, false).unwrap());
    assert!(store.is_pinned(1));
    assert!(!store.is_pinned(3));

    let report = gc::gc(&mut store, 1, Sweep::Removed).unwrap();

    // Newest 1: 5; last good before the active 5: 4; pinned: 1.
    assert_eq!(report.removed, vec![2, 3]);
    assert_kept(&store, &[1, 4, 5]);
    assert!(store.layout.pin_marker(1).exists());
}

#[test]
fn pinning_a_generation_that_does_not_exist_is_refused() {
    let test = TestStore::new();
    let store = generations(&test, 1);
    let error = gc::set_pinned(&store, 7, true).unwrap_err();
    assert!(matches!(error, Error::NoSuchGeneration(7)), "{error:?}");
    assert!(!store.layout.generation_dir(7).exists());
}

#[test]
fn every_rule_at_once_removes_records_directories_and_only_unreferenced_objects() {
    let test = TestStore::new();
    let mut store = generations(&test, 8);
    gc::set_pinned(&store, 1, true).unwrap();
    rollback::rollback(&store, Some(4)).unwrap();
    transition::mark_failed(&store, 3, "failed for a test").unwrap();
    let before = Snapshot::take(&store);

    let report = gc::gc(&mut store, 2, Sweep::Removed).unwrap();

    // Pinned: 1; last good before the active 4: 2 (3 failed); active: 4; newest 2: 7, 8.
    assert_eq!(report.removed, vec![3, 5, 6]);
    assert_kept(&store, &[1, 2, 4, 7, 8]);
    // The objects only removed generations referenced are gone; the rest stay, the one
    // every generation shares included.
    assert_eq!(report.objects_removed, 3);
    assert_eq!(report.bytes_removed, 3 * own_content(3).len() as u64);
    for generation in [3, 5, 6] {
        assert!(
            !has_object(&store, &own_content(generation)),
            "{generation}"
        );
    }
    for generation in [1, 2, 4, 7, 8] {
        assert!(has_object(&store, &own_content(generation)), "{generation}");
    }
    assert!(has_object(&store, SHARED));
    // The kept generations' trees still verify (removing a directory did not reach into
    // files the kept ones link), once those without a tree on disk are materialized again
    // from the objects kept.
    for generation in [1, 2, 4, 7, 8] {
        polstore::store::slot::materialize(&store, generation).unwrap();
        assert_eq!(
            transition::verified(&store, generation).unwrap(),
            Ok(()),
            "{generation}"
        );
    }
    // The active pointer, serial floor and view stay; one attempt says what went.
    let state = store.state().unwrap();
    assert_eq!(state.active, Some(4));
    assert_eq!(state.serial_max, before.state.serial_max);
    assert_eq!(state.next_generation, before.state.next_generation);
    assert_eq!(common::view_target(&store), before.view);
    let attempts = common::attempts(&store);
    assert_eq!(attempts.len(), before.attempts + 1);
    let attempt = attempts.last().unwrap();
    assert_eq!(attempt.action, Action::Gc);
    assert_eq!(attempt.outcome, Outcome::Collected);
    assert_eq!(
        attempt.message,
        format!(
            "removed generation(s) 3, 5, 6; freed 3 objects ({} bytes)",
            report.bytes_removed
        )
    );

    // A second run finds nothing to remove and records nothing.
    let again = gc::gc(&mut store, 2, Sweep::Removed).unwrap();
    assert!(again.removed.is_empty());
    assert_eq!(again.objects_removed, 0);
    assert_eq!(common::attempts(&store).len(), before.attempts + 1);
}

#[test]
fn sweep_all_removes_objects_no_generation_references() {
    let test = TestStore::new();
    let mut store = generations(&test, 2);
    // What an ingest that crashed after storing its objects leaves behind.
    let orphan = b"# stored by an ingest that never committed\n";
    store
        .db
        .write(|txn| txn.put_object(Hash::of(orphan), orphan))
        .unwrap();
    let before = Snapshot::take(&store);

    // Sweep::Removed looks only at the objects of generations it removes: none here.
    let report = gc::gc(&mut store, 10, Sweep::Removed).unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(report.objects_removed, 0);
    assert!(has_object(&store, orphan));

    let report = gc::gc(&mut store, 10, Sweep::All).unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(report.objects_removed, 1);
    assert_eq!(report.bytes_removed, orphan.len() as u64);
    assert!(!has_object(&store, orphan));
    for content in [own_content(1), own_content(2), SHARED.to_vec()] {
        assert!(has_object(&store, &content));
    }
    assert_kept(&store, &[1, 2]);
    // gc records an attempt only when it removes generations.
    assert_eq!(Snapshot::take(&store), before);
}
