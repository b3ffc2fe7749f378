//! `polstore rollback`: make an earlier kept generation active again.
//!
//! An operator's rollback is always allowed, to any kept generation: it does not lower the
//! highest accepted serial, so it never re-opens the door to a replayed old copy.

use crate::error::{Error, Result};
use crate::format::records::{Action, AttemptRecord, GenerationState, Outcome};
use crate::format::timestamp::Timestamp;
use crate::store::Store;

#[derive(Debug)]
pub struct RollbackReport {
    pub from: u64,
    pub to: u64,
    pub serial: u64,
}

/// Makes `target` (default: the newest good generation before the active one) active.
pub fn rollback(store: &Store, target: Option<u64>) -> Result<RollbackReport> {
    let state = store.state()?;
    let Some(active) = state.active else {
        return Err(Error::Refused(
            "nothing to roll back: the store has no active generation".into(),
        ));
    };
    let target = match target {
        Some(target) => target,
        None => store.previous_good(active)?.ok_or_else(|| {
            Error::Refused(format!(
                "no good generation before the active generation {active} to roll back to"
            ))
        })?,
    };
    if target == active {
        return Err(Error::Refused(format!(
            "generation {target} is already active"
        )));
    }
    let record = store.db.read()?.generation(target)?.ok_or_else(|| {
        Error::Refused(format!(
            "generation {target} does not exist (see 'polstore list')"
        ))
    })?;
    let tree = store.layout.generation_tree(target);
    if !tree.is_dir() {
        return Err(Error::Corrupt(format!(
            "the directory of generation {target} is missing: {}",
            tree.display()
        )));
    }
    // Never activate what does not verify: the directory is compared with the manifest,
    // byte for byte, before the commit.
    let manifest = crate::store::stored_manifest(&store.db.read()?, target)?;
    let mut findings = Vec::new();
    crate::health::inspect::check_tree(
        &tree,
        target,
        &manifest,
        &mut crate::health::inspect::HashCache::default(),
        store.config.limits.files_max.saturating_mul(2),
        &mut findings,
    );
    if let Some(first) = findings.first() {
        return Err(Error::Corrupt(format!(
            "refusing to activate generation {target}, whose directory does not match its manifest: {first}; 'polstore verify --repair' repairs it"
        )));
    }
    let now = Timestamp::now().unix_secs();
    let mut message = format!(
        "rolled back from generation {active} to generation {target} (serial {})",
        record.serial
    );
    if record.state == GenerationState::Failed {
        message.push_str(", which had failed before");
    }
    // Commit point: the database says `target` is active; the view follows, and recovery
    // re-points it if we crash in between.
    store.db.write(|txn| {
        let mut state = txn.state()?;
        state.active = Some(target);
        txn.put_state(&state)?;
        txn.add_attempt(&AttemptRecord {
            started: now,
            finished: now,
            action: Action::Rollback,
            source: String::new(),
            serial: Some(record.serial),
            outcome: Outcome::Switched,
            generation: Some(target),
            message: message.clone(),
            checks: Vec::new(),
        })?;
        Ok(())
    })?;
    crate::crashpoint::point("rollback-committed");
    store.switch_view(target)?;
    Ok(RollbackReport {
        from: active,
        to: target,
        serial: record.serial,
    })
}
