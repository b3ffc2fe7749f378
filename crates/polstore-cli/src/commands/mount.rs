//! `mount`, `unmount`: the read-only mount the view reads the generations through.

use super::*;
use polstore::store::lock::StoreLock;
use polstore::store::protect::{self, Protection};
use polstore::store::{Layout, LockedStore};

fn lock(store_root: &Path, lock_timeout: Duration, command: &str) -> Result<LockedStore> {
    Ok(LockedStore::acquire(
        store_root,
        LockWait {
            command,
            timeout: lock_timeout,
            on_wait: &mut print_wait,
        },
    )?)
}

pub(super) fn mount(store_root: &Path, lock_timeout: Duration) -> Result<()> {
    let locked = lock(store_root, lock_timeout, "mount")?;
    let readonly = locked.layout.readonly();
    let ensured = protect::ensure_mounted(&locked.layout, locked.config.protect_view)?;
    for note in &ensured.notes {
        outln!("{note}");
    }
    match ensured.protection {
        Protection::ReadOnly if ensured.notes.is_empty() => {
            outln!("{} is mounted read-only already", readonly.display())
        }
        Protection::ReadOnly => {}
        // What the operator asked for: not an error, so that the boot unit does not fail.
        Protection::Off => outln!(
            "not mounting {}: polstore.toml says protect_view = false",
            readonly.display()
        ),
        Protection::Missing(reason) => bail!("cannot make the view read-only: {reason}"),
    }
    Ok(())
}

/// Needs neither the configuration nor the database: a store whose configuration is
/// damaged can still be unmounted, to be moved or removed.
pub(super) fn unmount(store_root: &Path, lock_timeout: Duration) -> Result<()> {
    let layout = Layout::new(store_root);
    if fs::symlink_metadata(layout.format_file()).is_err() {
        return Err(polstore::error::Error::NotAStore {
            root: store_root.to_path_buf(),
        }
        .into());
    }
    let _lock = StoreLock::acquire(store_root, "unmount", lock_timeout, &mut print_wait)?;
    let readonly = layout.readonly();
    let removed = protect::unmount_all(&layout)
        .with_context(|| format!("cannot unmount {}", readonly.display()))?;
    if removed == 0 {
        outln!("nothing is mounted at {}", readonly.display());
    } else {
        outln!(
            "unmounted {}: writes through the view reach the store (the next polstore command that writes mounts it again, unless protect_view = false)",
            readonly.display()
        );
    }
    Ok(())
}
