//! State transitions: the only code that writes the active pointer (`state.active`), a
//! generation's state, and attempt records.
//!
//! Each transition is one function: [`commit_new`] (a new generation becomes active),
//! [`activate`] (a kept generation becomes active again), [`fail`] (a generation fails;
//! if it was active, the newest earlier good generation that verifies takes its place),
//! [`confirm`] (the agent run confirmed it), [`record`] (an attempt that changed no
//! state), [`mark_failed`] (a generation that is not active fails), and [`rebuilt`] (the
//! records of a database rebuilt from the directories). `commit_new` and `rebuilt` write
//! their own transaction; the others commit through [`commit`], once each.
//!
//! **Invariant:** a generation is made active only after its tree was compared with its
//! manifest, byte for byte ([`verified`]); a new generation's tree was built and checked
//! by ingest in this same process. The database commit is the commit point; the view
//! follows, and recovery re-points it after a crash in between.

use crate::db::{Db, DbError, WriteTxn};
use crate::error::{Error, Result};
use crate::format::records::{
    Action, AttemptRecord, CheckRecord, GenerationRecord, GenerationState, ManifestRecord, Outcome,
    StampsRecord, StateRecord,
};
use crate::format::timestamp::Timestamp;
use crate::fs::durable;
use crate::store::Store;
use crate::store::tree::{self, HashCache};

/// An attempt record under construction: what was tried and how it ended.
#[derive(Clone, Debug)]
pub struct Attempt {
    record: AttemptRecord,
}

impl Attempt {
    /// An attempt that starts and ends now.
    pub fn new(action: Action, outcome: Outcome, message: impl Into<String>) -> Attempt {
        let now = Timestamp::now().unix_secs();
        Attempt {
            record: AttemptRecord {
                started: now,
                finished: now,
                action,
                source: String::new(),
                serial: None,
                outcome,
                generation: None,
                message: message.into(),
                checks: Vec::new(),
            },
        }
    }

    pub fn started(mut self, at: Timestamp) -> Attempt {
        self.record.started = at.unix_secs();
        self
    }

    pub fn source(mut self, source: impl Into<String>) -> Attempt {
        self.record.source = source.into();
        self
    }

    pub fn serial(mut self, serial: Option<u64>) -> Attempt {
        self.record.serial = serial;
        self
    }

    pub fn generation(mut self, generation: Option<u64>) -> Attempt {
        self.record.generation = generation;
        self
    }

    pub fn checks(mut self, checks: Vec<CheckRecord>) -> Attempt {
        self.record.checks = checks;
        self
    }
}

/// One transition, committed in one database transaction.
#[derive(Default)]
struct Change<'a> {
    /// The generation to make active.
    active: Option<u64>,
    /// A generation that failed, and why.
    failed: Option<(u64, &'a str)>,
    /// A generation the agent run confirmed.
    confirmed: Option<u64>,
    attempt: Option<Attempt>,
}

/// The one place that writes `state.active`, generation states and attempts.
fn commit(db: &Db, change: Change) -> Result<(), DbError> {
    db.write(|txn| {
        if let Some((generation, reason)) = change.failed {
            set_state(txn, generation, GenerationState::Failed, Some(reason))?;
        }
        if let Some(generation) = change.confirmed {
            set_state(txn, generation, GenerationState::Good, None)?;
        }
        if let Some(active) = change.active {
            let mut state = txn.state()?;
            state.active = Some(active);
            txn.put_state(&state)?;
        }
        if let Some(attempt) = &change.attempt {
            let mut record = attempt.record.clone();
            record.finished = Timestamp::now().unix_secs();
            txn.add_attempt(&record)?;
        }
        Ok(())
    })
}

fn set_state(
    txn: &mut WriteTxn,
    generation: u64,
    state: GenerationState,
    reason: Option<&str>,
) -> Result<(), DbError> {
    let mut record = txn
        .generation(generation)?
        .ok_or_else(|| DbError::Corrupt(format!("generation {generation} is missing")))?;
    record.state = state;
    if let Some(reason) = reason {
        record.reason = Some(reason.to_string());
    }
    txn.put_generation(generation, &record)
}

/// Whether `generation`'s tree matches its manifest. `Err` names the first difference.
pub fn verified(store: &Store, generation: u64) -> Result<std::result::Result<(), String>> {
    let tree = store.layout.generation_tree(generation);
    if !tree.is_dir() {
        return Ok(Err(format!(
            "the directory of generation {generation} is missing: {}",
            tree.display()
        )));
    }
    let manifest = crate::store::stored_manifest(&store.db.read()?, generation)?;
    let mut findings = Vec::new();
    tree::check_tree(
        &tree,
        generation,
        &manifest,
        &mut HashCache::default(),
        store.config.limits.files_max.saturating_mul(2),
        &mut findings,
    );
    Ok(match findings.first() {
        Some(first) => Err(first.to_string()),
        None => Ok(()),
    })
}

/// Step 6 of the commit protocol (`store-format.md` § Commit protocol): one commit makes
/// the new generation `generation` active, with its record, its manifest, the raised
/// replay floor, the attempt and the source's stamps. The caller built and checked the
/// tree and renamed it into `generations/N`; it switches the view after.
pub fn commit_new(
    store: &Store,
    generation: u64,
    manifest: &ManifestRecord,
    record: &GenerationRecord,
    attempt: Attempt,
    stamps: Option<(&str, &StampsRecord)>,
) -> Result<()> {
    // The replay floor is recorded outside the database first, so that a database
    // rebuilt after a crash anywhere from here on never goes below it.
    let floor = store.state()?.serial_max.max(record.serial);
    crate::store::trust::raise_serial_floor(&store.layout, floor)?;
    crate::crashpoint::point("commit-floor-raised");
    store.db.write(|txn| {
        let mut state = txn.state()?;
        assert_eq!(
            state.next_generation, generation,
            "generation numbers are allocated under the lock"
        );
        state.active = Some(generation);
        state.serial_max = state.serial_max.max(record.serial);
        state.next_generation = generation + 1;
        txn.put_state(&state)?;
        txn.put_manifest(generation, manifest)?;
        txn.put_generation(generation, record)?;
        let mut attempt = attempt.record;
        attempt.finished = Timestamp::now().unix_secs();
        txn.add_attempt(&attempt)?;
        if let Some((root, stamps)) = stamps {
            txn.put_stamps(root, stamps)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Makes the kept generation `target` active, after materializing its tree if it has none
/// (`store::slot::materialize`) and comparing its tree with its manifest;
/// refuses with [`Error::Corrupt`] when they differ. `replacing`: the active generation,
/// marked failed with its reason in the same commit (`verify --repair`). `crash_point`
/// names the step after the commit for the crash-point tests.
///
/// Order: the failed marker of `replacing` (durable), the database commit (the commit
/// point), then the view, when it is polstore's symlink (a directory someone put there is
/// for `verify --repair` to move aside).
pub fn activate(
    store: &Store,
    target: u64,
    replacing: Option<(u64, &str)>,
    attempt: Attempt,
    crash_point: &'static str,
) -> Result<()> {
    // A kept generation whose tree was taken away gets it back from the store first.
    crate::store::slot::materialize(store, target)?;
    if let Err(difference) = verified(store, target)? {
        return Err(Error::Corrupt(format!(
            "refusing to activate generation {target}, whose directory does not match its manifest: {difference}"
        )));
    }
    if let Some((generation, reason)) = replacing
        && store.layout.generation_dir(generation).is_dir()
    {
        write_failed_marker(store, generation, reason)?;
    }
    commit(
        &store.db,
        Change {
            active: Some(target),
            failed: replacing,
            attempt: Some(attempt.generation(Some(target))),
            ..Change::default()
        },
    )?;
    crate::crashpoint::point(crash_point);
    switch_view_if_ours(store, target)
}

/// Marks `generation` failed for `reason`. When it is the active one, the newest earlier
/// good generation whose tree verifies becomes active in the same commit (each one that
/// does not verify is passed over, and named in the message); when none is left, the
/// failed generation stays active and the message says so. Returns a line for the operator.
///
/// Order: the failed marker (durable), then the database commit, then the view. A crash
/// after the marker leaves it beside a generation that recovery fails anyway (it is still
/// Confirming) or that a rebuild takes as failed: the safe side.
pub fn fail(store: &Store, generation: u64, reason: &str, action: Action) -> Result<String> {
    let read = store.db.read()?;
    let active = read.state()?.active;
    let serial = read.generation(generation)?.map(|record| record.serial);
    // Expired generations are not trusted any more: never a fallback.
    let now = Timestamp::now().unix_secs();
    let earlier_good: Vec<u64> = read
        .generations()?
        .into_iter()
        .rev()
        .filter(|(number, record)| {
            *number < generation
                && record.state == GenerationState::Good
                && record.expires.is_none_or(|expires| expires > now)
        })
        .map(|(number, _)| number)
        .collect();
    drop(read);
    let mut passed_over = Vec::new();
    let mut fallback = None;
    if active == Some(generation) {
        for candidate in earlier_good {
            // A kept generation without its tree gets it back from the store first.
            if let Err(error) = crate::store::slot::materialize(store, candidate) {
                passed_over.push(format!(
                    "generation {candidate} was passed over: its tree could not be materialized: {error}"
                ));
                continue;
            }
            match verified(store, candidate)? {
                Ok(()) => {
                    fallback = Some(candidate);
                    break;
                }
                Err(difference) => passed_over.push(format!(
                    "generation {candidate} was passed over: {difference}"
                )),
            }
        }
    }
    let mut message = match (active == Some(generation), fallback) {
        (_, Some(previous)) => format!(
            "generation {generation} failed: {reason}; rolled back to generation {previous}"
        ),
        (true, None) => format!(
            "generation {generation} failed: {reason}; no earlier good generation to roll back to, it stays active"
        ),
        (false, None) => format!("generation {generation} failed: {reason}"),
    };
    for note in &passed_over {
        message.push_str("; ");
        message.push_str(note);
    }
    if store.layout.generation_dir(generation).is_dir() {
        write_failed_marker(store, generation, reason)?;
    }
    crate::crashpoint::point("fail-marker-written");
    let outcome = if fallback.is_some() {
        Outcome::RolledBack
    } else {
        Outcome::Failed
    };
    commit(
        &store.db,
        Change {
            active: fallback,
            failed: Some((generation, reason)),
            attempt: Some(
                Attempt::new(action, outcome, message.clone())
                    .serial(serial)
                    .generation(Some(generation)),
            ),
            ..Change::default()
        },
    )?;
    crate::crashpoint::point("fail-committed");
    if let Some(previous) = fallback {
        switch_view_if_ours(store, previous)?;
    }
    Ok(message)
}

/// Marks `generation` failed without recording an attempt and without changing what is
/// active: a kept generation that `verify --repair` found beyond repair. The caller
/// records one attempt for the whole repair.
pub fn mark_failed(store: &Store, generation: u64, reason: &str) -> Result<()> {
    if store.layout.generation_dir(generation).is_dir() {
        write_failed_marker(store, generation, reason)?;
    }
    commit(
        &store.db,
        Change {
            failed: Some((generation, reason)),
            ..Change::default()
        },
    )?;
    Ok(())
}

/// The confirming agent run succeeded: `generation` is good.
pub fn confirm(store: &Store, generation: u64) -> Result<()> {
    commit(
        &store.db,
        Change {
            confirmed: Some(generation),
            ..Change::default()
        },
    )?;
    Ok(())
}

/// Records an attempt that changed no generation's state (a refusal, a repair, a gc).
pub fn record(db: &Db, attempt: Attempt) -> Result<()> {
    commit(
        db,
        Change {
            attempt: Some(attempt),
            ..Change::default()
        },
    )?;
    Ok(())
}

/// The records of a database rebuilt from the generation directories, in one commit: each
/// generation's record and manifest, the state, the history salvaged from the lost database
/// and the attempt that says so.
pub fn rebuilt(
    db: &Db,
    generations: &[(u64, GenerationRecord, ManifestRecord)],
    state: &StateRecord,
    history: &[AttemptRecord],
    attempt: Attempt,
) -> Result<()> {
    db.write(|txn| {
        for (generation, record, manifest) in generations {
            txn.put_manifest(*generation, manifest)?;
            txn.put_generation(*generation, record)?;
        }
        txn.put_state(state)?;
        // What could be read of the lost database's history, renumbered from 1.
        for record in history {
            txn.add_attempt(record)?;
        }
        txn.add_attempt(&attempt.record)?;
        Ok(())
    })?;
    Ok(())
}

/// Writes `generations/N/failed` with `reason`, durably (file, then directory): a database
/// rebuilt from the directories must not take a failed generation for a good one.
pub fn write_failed_marker(store: &Store, generation: u64, reason: &str) -> Result<()> {
    let marker = store.layout.failed_marker(generation);
    durable::remove_tree_if_exists(&marker).map_err(Error::io("cannot remove", &marker))?;
    durable::create_file_synced(&marker, reason.as_bytes(), 0o644)
        .map_err(Error::io("cannot write", &marker))?;
    let directory = store.layout.generation_dir(generation);
    durable::sync_directory(&directory).map_err(Error::io("cannot sync", &directory))
}

/// Activates `generation` on disk: switches `STORE/active`, which every view resolves
/// through; the views themselves are not touched (one displaced is repair's to mend).
fn switch_view_if_ours(store: &Store, generation: u64) -> Result<()> {
    store.switch_active(generation)
}
