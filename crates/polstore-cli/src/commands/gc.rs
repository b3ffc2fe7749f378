//! `gc`, `pin`, `unpin`.

use super::*;
use polstore::ops::gc;

pub(super) fn gc_command(
    store_root: &Path,
    lock_timeout: Duration,
    args: crate::args::GcArgs,
) -> Result<()> {
    let mut store = open_writer(store_root, "gc", lock_timeout)?;
    let keep = args.keep.or(store.config.keep).unwrap_or(gc::DEFAULT_KEEP);
    let report = gc::gc(&mut store, keep, gc::Sweep::All)?;
    if args.json {
        let json = serde_json::json!({
            "removed": report.removed,
            "in_use": report.in_use,
            "objects_removed": report.objects_removed,
            "bytes_removed": report.bytes_removed,
            "database_bytes_before": report.database_bytes_before,
            "database_bytes_after": report.database_bytes_after,
            "compacted": report.compacted,
        });
        outln!("{json}");
        return Ok(());
    }
    if report.removed.is_empty() {
        outln!(
            "nothing to remove (keeping the newest {keep}, the active one, the last good one before it and pinned ones)"
        );
    } else {
        outln!(
            "removed generation(s) {}, {} objects ({} bytes); database {} -> {} bytes",
            gc::list(&report.removed),
            report.objects_removed,
            report.bytes_removed,
            report.database_bytes_before,
            report.database_bytes_after
        );
    }
    if !report.in_use.is_empty() {
        outln!(
            "kept generation(s) {}: a running process is using them",
            gc::list(&report.in_use)
        );
    }
    Ok(())
}

pub(super) fn pin_command(
    store_root: &Path,
    lock_timeout: Duration,
    generation: u64,
    pin: bool,
) -> Result<()> {
    let command = if pin { "pin" } else { "unpin" };
    let store = open_writer(store_root, command, lock_timeout)?;
    let changed = gc::set_pinned(&store, generation, pin)?;
    let what = if pin { "pinned" } else { "not pinned" };
    if changed {
        outln!("generation {generation} is now {what}");
    } else {
        outln!("generation {generation} was already {what}");
    }
    Ok(())
}
