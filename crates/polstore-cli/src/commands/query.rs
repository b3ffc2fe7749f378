//! `rollback`, `show`, `diff`.

use super::*;
use polstore::ops::query::{self, Change};
use polstore::ops::rollback;

pub(super) fn rollback_command(
    store_root: &Path,
    lock_timeout: Duration,
    generation: Option<u64>,
) -> Result<()> {
    let store = open_writer(store_root, "rollback", lock_timeout)?;
    let report = rollback::rollback(&store, generation)?;
    outln!(
        "generation {} active (serial {}), was {}",
        report.to,
        report.serial,
        report.from
    );
    Ok(())
}

pub(super) fn show(store_root: &Path, generation: u64, path: &str) -> Result<()> {
    let reader = open_reader(store_root)?;
    let content = reader.query(|read| query::show(read, generation, path))?;
    std::io::stdout().lock().write_all(&content)?;
    Ok(())
}

pub(super) fn diff(store_root: &Path, old: u64, new: u64) -> Result<()> {
    let reader = open_reader(store_root)?;
    let changes = reader.query(|read| query::diff(read, old, new))?;
    let mut out = std::io::stdout().lock();
    for change in &changes {
        match change {
            Change::Added(entry) => writeln!(out, "A {}", entry.path)?,
            Change::Removed(entry) => writeln!(out, "D {}", entry.path)?,
            Change::Modified { old, new } if old.hash == new.hash => {
                writeln!(
                    out,
                    "M {} (mode {:04o} -> {:04o})",
                    new.path, old.mode, new.mode
                )?;
            }
            Change::Modified { new, .. } => writeln!(out, "M {}", new.path)?,
        }
    }
    Ok(())
}
