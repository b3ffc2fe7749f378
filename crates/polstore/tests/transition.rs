//! `store::transition`: activation, failure with automatic rollback, confirmation and
//! attempt records, through the library's public API on a real store.

mod common;

use std::fs;

use common::{Snapshot, TestStore};
use polstore::error::Error;
use polstore::format::records::{Action, GenerationState, Outcome};
use polstore::store::Store;
use polstore::store::transition::{self, Attempt};

/// Three generations, each with a file of its own and one shared with the others; the
/// third is active.
fn three_generations(test: &TestStore) -> Store {
    let store = test.open();
    for generation in 1..=3u64 {
        let own = format!("# generation {generation}\n");
        let report = test.ingest_files(
            &store,
            &format!("g{generation}"),
            &[
                ("promises.cf", own.as_bytes()),
                ("lib/common.cf", b"# shared\n"),
            ],
        );
        assert_eq!(report.generation, generation);
    }
    assert_eq!(store.state().unwrap().active, Some(3));
    // Each update recycled the spare tree, so generation 1 has none; these tests look at
    // every generation's tree, so each gets its own back from the store.
    assert!(!polstore::store::slot::materialized(&store.layout, 1));
    for generation in 1..=2 {
        polstore::store::slot::materialize_anew(&store, generation).unwrap();
    }
    store
}

fn rollback_attempt(message: &str) -> Attempt {
    Attempt::new(Action::Rollback, Outcome::Switched, message)
}

#[test]
fn activate_refuses_a_target_whose_tree_differs_from_its_manifest() {
    let test = TestStore::new();
    let store = three_generations(&test);
    common::replace_file(
        &store.layout.generation_tree(1).join("promises.cf"),
        b"# generation X\n",
    );
    let before = Snapshot::take(&store);

    let error = transition::activate(
        &store,
        1,
        None,
        rollback_attempt("to 1"),
        "rollback-committed",
    )
    .unwrap_err();

    let Error::Corrupt(message) = &error else {
        panic!("expected Error::Corrupt, got {error:?}");
    };
    assert_eq!(
        message,
        "refusing to activate generation 1, whose directory does not match its manifest: \
         generation 1: promises.cf: content does not match the manifest's hash"
    );
    // Nothing changed: not the active pointer, not the view, no attempt recorded.
    assert_eq!(Snapshot::take(&store), before);
    assert_eq!(store.state().unwrap().active, Some(3));
    assert_eq!(common::view_target(&store), Some(3));
}

#[test]
fn activate_materializes_a_target_without_its_tree_from_the_store() {
    let test = TestStore::new();
    let store = three_generations(&test);
    fs::remove_dir_all(store.layout.generation_tree(2)).unwrap();

    transition::activate(&store, 2, None, rollback_attempt("to 2"), "x").unwrap();

    assert_eq!(store.state().unwrap().active, Some(2));
    assert_eq!(transition::verified(&store, 2).unwrap(), Ok(()));
    assert_eq!(common::view_target(&store), Some(2));
}

#[test]
fn activate_refuses_a_target_without_its_tree_whose_content_the_store_lacks() {
    let test = TestStore::new();
    let store = three_generations(&test);
    fs::remove_dir_all(store.layout.generation_tree(2)).unwrap();
    let own = polstore::format::manifest::Hash::of(b"# generation 2\n");
    store
        .db
        .write(|txn| txn.remove_object(own).map(|_| ()))
        .unwrap();
    let before = Snapshot::take(&store);

    let error = transition::activate(&store, 2, None, rollback_attempt("to 2"), "x").unwrap_err();

    assert!(
        error
            .to_string()
            .contains(&format!("object {} is missing", own.to_hex())),
        "{error}"
    );
    assert!(!store.layout.generation_tree(2).exists());
    assert!(!store.layout.candidate().exists());
    assert_eq!(Snapshot::take(&store), before);
    assert_eq!(common::view_target(&store), Some(3));
}

#[test]
fn activate_of_a_sound_target_moves_the_pointer_the_view_and_records_one_attempt() {
    let test = TestStore::new();
    let store = three_generations(&test);
    let before = Snapshot::take(&store);

    transition::activate(
        &store,
        1,
        None,
        rollback_attempt("back to one"),
        "rollback-committed",
    )
    .unwrap();

    let state = store.state().unwrap();
    assert_eq!(state.active, Some(1));
    assert_eq!(state.serial_max, before.state.serial_max);
    assert_eq!(state.next_generation, before.state.next_generation);
    assert_eq!(state.next_attempt, before.state.next_attempt + 1);
    assert_eq!(common::view_target(&store), Some(1));
    let attempts = common::attempts(&store);
    assert_eq!(attempts.len(), before.attempts + 1);
    let attempt = attempts.last().unwrap();
    assert_eq!(attempt.action, Action::Rollback);
    assert_eq!(attempt.outcome, Outcome::Switched);
    assert_eq!(attempt.generation, Some(1));
    assert_eq!(attempt.message, "back to one");
    // Activation changes no generation's state; the generation left stays good.
    for generation in 1..=3 {
        assert_eq!(
            common::generation_record(&store, generation).state,
            GenerationState::Good
        );
    }
}

#[test]
fn activate_replacing_marks_the_replaced_generation_failed_in_the_same_commit() {
    let test = TestStore::new();
    let store = three_generations(&test);
    let before = Snapshot::take(&store);

    transition::activate(
        &store,
        2,
        Some((3, "beyond repair")),
        Attempt::new(Action::Repair, Outcome::Repaired, "repaired"),
        "x",
    )
    .unwrap();

    assert_eq!(store.state().unwrap().active, Some(2));
    let replaced = common::generation_record(&store, 3);
    assert_eq!(replaced.state, GenerationState::Failed);
    assert_eq!(replaced.reason.as_deref(), Some("beyond repair"));
    assert_eq!(
        fs::read_to_string(store.layout.failed_marker(3)).unwrap(),
        "beyond repair"
    );
    assert_eq!(common::attempts(&store).len(), before.attempts + 1);
    assert_eq!(store.state().unwrap().serial_max, before.state.serial_max);
}

#[test]
fn fail_of_the_active_generation_rolls_back_past_a_tampered_one() {
    let test = TestStore::new();
    let store = three_generations(&test);
    common::replace_file(
        &store.layout.generation_tree(2).join("promises.cf"),
        b"# generation X\n",
    );
    let before = Snapshot::take(&store);

    let message = transition::fail(&store, 3, "cf-agent exited 1", Action::Ingest).unwrap();

    assert_eq!(
        message,
        "generation 3 failed: cf-agent exited 1; rolled back to generation 1; \
         generation 2 was passed over: generation 2: promises.cf: content does not match \
         the manifest's hash"
    );
    let state = store.state().unwrap();
    assert_eq!(state.active, Some(1));
    assert_eq!(state.serial_max, before.state.serial_max);
    assert_eq!(common::view_target(&store), Some(1));
    let failed = common::generation_record(&store, 3);
    assert_eq!(failed.state, GenerationState::Failed);
    assert_eq!(failed.reason.as_deref(), Some("cf-agent exited 1"));
    assert_eq!(
        fs::read_to_string(store.layout.failed_marker(3)).unwrap(),
        "cf-agent exited 1"
    );
    // The generation passed over keeps its record: verify is what judges it.
    assert_eq!(
        common::generation_record(&store, 2).state,
        GenerationState::Good
    );
    assert!(!store.layout.failed_marker(2).exists());
    let attempts = common::attempts(&store);
    assert_eq!(attempts.len(), before.attempts + 1);
    let attempt = attempts.last().unwrap();
    assert_eq!(attempt.action, Action::Ingest);
    assert_eq!(attempt.outcome, Outcome::RolledBack);
    assert_eq!(attempt.generation, Some(3));
    assert_eq!(attempt.serial, Some(failed.serial));
    assert_eq!(attempt.message, message);
}

#[test]
fn fail_with_no_good_earlier_generation_keeps_it_active_and_says_so() {
    let test = TestStore::new();
    let store = test.open();
    test.ingest_files(&store, "only", &[("promises.cf", b"# one\n")]);
    let before = Snapshot::take(&store);

    let message = transition::fail(&store, 1, "agent timed out", Action::Recover).unwrap();

    assert_eq!(
        message,
        "generation 1 failed: agent timed out; no earlier good generation to roll back to, \
         it stays active"
    );
    let state = store.state().unwrap();
    assert_eq!(state.active, Some(1));
    assert_eq!(state.serial_max, before.state.serial_max);
    assert_eq!(common::view_target(&store), before.view);
    assert_eq!(
        common::generation_record(&store, 1).state,
        GenerationState::Failed
    );
    let attempt = common::last_attempt(&store);
    assert_eq!(attempt.action, Action::Recover);
    assert_eq!(attempt.outcome, Outcome::Failed);
    assert_eq!(attempt.message, message);
}

#[test]
fn fail_when_every_earlier_good_generation_is_tampered_keeps_it_active_and_names_them() {
    let test = TestStore::new();
    let store = three_generations(&test);
    for generation in [1, 2] {
        common::replace_file(
            &store.layout.generation_tree(generation).join("promises.cf"),
            b"# generation X\n",
        );
    }
    let before = Snapshot::take(&store);

    let message = transition::fail(&store, 3, "bad", Action::Ingest).unwrap();

    assert_eq!(
        message,
        "generation 3 failed: bad; no earlier good generation to roll back to, it stays \
         active; generation 2 was passed over: generation 2: promises.cf: content does not \
         match the manifest's hash; generation 1 was passed over: generation 1: promises.cf: \
         content does not match the manifest's hash"
    );
    assert_eq!(store.state().unwrap().active, Some(3));
    assert_eq!(common::view_target(&store), before.view);
    assert_eq!(common::last_attempt(&store).outcome, Outcome::Failed);
}

#[test]
fn fail_passes_over_failed_generations_without_looking_at_them() {
    let test = TestStore::new();
    let store = three_generations(&test);
    transition::mark_failed(&store, 2, "failed before").unwrap();

    let message = transition::fail(&store, 3, "bad", Action::Ingest).unwrap();

    assert_eq!(
        message,
        "generation 3 failed: bad; rolled back to generation 1"
    );
    assert_eq!(store.state().unwrap().active, Some(1));
}

#[test]
fn fail_of_a_generation_that_is_not_active_changes_only_its_state() {
    let test = TestStore::new();
    let store = three_generations(&test);
    let before = Snapshot::take(&store);

    let message = transition::fail(&store, 2, "found wanting", Action::Repair).unwrap();

    assert_eq!(message, "generation 2 failed: found wanting");
    assert_eq!(store.state().unwrap().active, Some(3));
    assert_eq!(common::view_target(&store), before.view);
    assert_eq!(
        common::generation_record(&store, 2).state,
        GenerationState::Failed
    );
    assert_eq!(common::last_attempt(&store).outcome, Outcome::Failed);
}

#[test]
fn confirm_turns_confirming_into_good() {
    let test = TestStore::new();
    let store = test.open();
    test.ingest_files(&store, "first", &[("promises.cf", b"# one\n")]);
    let generation = common::commit_by_hand(
        &store,
        &[("promises.cf", b"# two\n")],
        GenerationState::Confirming,
    );
    assert_eq!(
        common::generation_record(&store, generation).state,
        GenerationState::Confirming
    );
    let before = Snapshot::take(&store);

    transition::confirm(&store, generation).unwrap();

    let record = common::generation_record(&store, generation);
    assert_eq!(record.state, GenerationState::Good);
    assert_eq!(record.reason, None);
    // Confirming records no attempt and moves nothing.
    let after = Snapshot::take(&store);
    assert_eq!(after.state, before.state);
    assert_eq!(after.view, before.view);
    assert_eq!(after.attempts, before.attempts);
    assert_eq!(
        common::generation_record(&store, 1).state,
        GenerationState::Good
    );
}

#[test]
fn record_adds_exactly_one_attempt_and_changes_nothing_else() {
    let test = TestStore::new();
    let store = three_generations(&test);
    let before = Snapshot::take(&store);

    transition::record(
        &store.db,
        Attempt::new(Action::Ingest, Outcome::Rejected, "refused for a test")
            .source("somewhere")
            .serial(Some(9)),
    )
    .unwrap();

    let after = Snapshot::take(&store);
    assert_eq!(after.attempts, before.attempts + 1);
    assert_eq!(after.state.next_attempt, before.state.next_attempt + 1);
    assert_eq!(after.state.active, before.state.active);
    assert_eq!(after.state.serial_max, before.state.serial_max);
    assert_eq!(after.records, before.records);
    assert_eq!(after.view, before.view);
    let attempt = common::last_attempt(&store);
    assert_eq!(attempt.action, Action::Ingest);
    assert_eq!(attempt.outcome, Outcome::Rejected);
    assert_eq!(attempt.message, "refused for a test");
    assert_eq!(attempt.source, "somewhere");
    assert_eq!(attempt.serial, Some(9));
    assert_eq!(attempt.generation, None);
}

#[test]
fn no_transition_changes_serial_max() {
    let test = TestStore::new();
    let store = three_generations(&test);
    let serial_max = store.state().unwrap().serial_max;
    assert_eq!(serial_max, 3);
    let unchanged = |what: &str| {
        assert_eq!(
            store.state().unwrap().serial_max,
            serial_max,
            "{what} changed serial_max"
        );
    };

    transition::activate(&store, 1, None, rollback_attempt("to 1"), "x").unwrap();
    unchanged("activate");
    transition::activate(
        &store,
        3,
        Some((1, "replaced")),
        rollback_attempt("to 3"),
        "x",
    )
    .unwrap();
    unchanged("activate replacing");
    transition::fail(&store, 3, "bad", Action::Ingest).unwrap();
    assert_eq!(store.state().unwrap().active, Some(2));
    unchanged("fail with rollback");
    transition::fail(&store, 2, "bad too", Action::Ingest).unwrap();
    assert_eq!(store.state().unwrap().active, Some(2));
    unchanged("fail without rollback");
    transition::confirm(&store, 2).unwrap();
    unchanged("confirm");
    transition::mark_failed(&store, 2, "again").unwrap();
    unchanged("mark_failed");
    transition::record(
        &store.db,
        Attempt::new(Action::Gc, Outcome::Collected, "gc"),
    )
    .unwrap();
    unchanged("record");
}
