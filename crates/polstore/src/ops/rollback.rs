//! `polstore rollback`: make an earlier kept generation active again.
//!
//! An operator's rollback is always allowed, to any kept generation whose directory still
//! matches its manifest: it does not lower the highest accepted serial, so it never
//! re-opens the door to a replayed old copy.

use crate::error::{Error, Result};
use crate::format::records::{Action, GenerationState, Outcome};
use crate::store::Store;
use crate::store::transition::{self, Attempt};

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
    let record = store
        .db
        .read()?
        .generation(target)?
        .ok_or(Error::NoSuchGeneration(target))?;
    let mut message = format!(
        "rolled back from generation {active} to generation {target} (serial {})",
        record.serial
    );
    if record.state == GenerationState::Failed {
        message.push_str(", which had failed before");
    }
    let attempt =
        Attempt::new(Action::Rollback, Outcome::Switched, message).serial(Some(record.serial));
    transition::activate(store, target, None, attempt, "rollback-committed")?;
    Ok(RollbackReport {
        from: active,
        to: target,
        serial: record.serial,
    })
}
