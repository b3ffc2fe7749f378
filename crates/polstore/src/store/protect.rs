//! The read-only mount the view points through, so that nothing writes into a generation
//! through the view: not the agent, not root (writes fail with EROFS at the kernel).
//!
//! The view points at `STORE/readonly/generations/N/tree`. `STORE/readonly` is a directory
//! holding one symlink, `generations -> ../generations`, and is the mount point of a
//! read-only bind mount of the store's own directory. Mounted, the path reaches the
//! generation through the read-only mount; not mounted (after a reboot before
//! `polstore mount` ran, in a container that may not mount, or with `protect_view = false`),
//! the same path reaches it through the symlink, writable as before. The view's target is
//! therefore the same string either way: the view stays one atomic symlink switch, and
//! mounting or unmounting never touches it. See store-format.md, "The read-only view".

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{StatVfsMountFlags, statvfs};
use rustix::mount::{MountFlags, UnmountFlags, mount_bind, mount_remount, unmount};

use crate::error::{Error, Result};
use crate::fs::durable;
use crate::store::layout::{
    Layout, READONLY_FALLBACK_TARGET, READONLY_MODE, READONLY_MOUNT_OPTIONS,
};

/// Whether writes through the view reach the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protection {
    /// `STORE/readonly` is a read-only bind mount of the store: writes through the view
    /// fail with EROFS.
    ReadOnly,
    /// `protect_view = false` in polstore.toml: polstore does not mount.
    Off,
    /// Not in place, and why: the view reaches the writable generations.
    Missing(String),
}

impl Protection {
    /// One line for `status` and `verify`.
    pub fn describe(&self) -> String {
        match self {
            Protection::ReadOnly => "read-only: writes through the view fail".into(),
            Protection::Off => "off (protect_view = false in polstore.toml): writes through the view reach the store".into(),
            Protection::Missing(reason) => format!(
                "MISSING: {reason}; writes through the view reach the store (`polstore mount` as root puts the read-only mount in place)"
            ),
        }
    }
}

/// What protects the view now, looked at without changing anything.
pub fn protection(layout: &Layout, enabled: bool) -> Protection {
    match mount_state(layout) {
        MountState::ReadOnly => Protection::ReadOnly,
        _ if !enabled => Protection::Off,
        MountState::NotMounted => {
            Protection::Missing(format!("{} is not mounted", layout.readonly().display()))
        }
        MountState::Writable => Protection::Missing(format!(
            "{} is mounted writable",
            layout.readonly().display()
        )),
        MountState::Other(what) => Protection::Missing(what),
    }
}

enum MountState {
    ReadOnly,
    NotMounted,
    Writable,
    Other(String),
}

/// Looks at `STORE/readonly`: the read-only mount shows the store's own `generations/`
/// (same device and inode) on a mount whose flags say read-only; without the mount the
/// fallback symlink shows.
fn mount_state(layout: &Layout) -> MountState {
    let readonly = layout.readonly();
    if fs::symlink_metadata(&readonly).is_err() {
        return MountState::Other(format!(
            "{} does not exist yet (an older polstore made the store; the next command that writes makes it)",
            readonly.display()
        ));
    }
    let shown = layout.readonly_fallback();
    let shown = match fs::symlink_metadata(&shown) {
        Ok(metadata) => metadata,
        Err(error) => {
            return MountState::Other(format!("{} cannot be read: {error}", shown.display()));
        }
    };
    if shown.file_type().is_symlink() {
        return MountState::NotMounted;
    }
    let generations = match fs::symlink_metadata(layout.generations()) {
        Ok(metadata) => metadata,
        Err(error) => {
            return MountState::Other(format!(
                "{} cannot be read: {error}",
                layout.generations().display()
            ));
        }
    };
    if (shown.dev(), shown.ino()) != (generations.dev(), generations.ino()) {
        return MountState::Other(format!(
            "{} shows something other than the store",
            readonly.display()
        ));
    }
    match statvfs(&readonly) {
        Ok(stat) if stat.f_flag.contains(StatVfsMountFlags::RDONLY) => MountState::ReadOnly,
        Ok(_) => MountState::Writable,
        Err(error) => MountState::Other(format!("{} cannot be read: {error}", readonly.display())),
    }
}

/// The path commands polstore runs on a committed generation read it at: the view's
/// target, through `readonly/` (read-only when mounted), or the tree itself in a store an
/// older polstore made, which has no `readonly/` yet.
pub fn readable_tree(layout: &Layout, generation: u64) -> std::path::PathBuf {
    let through = layout.view_target(generation);
    if through.is_dir() {
        through
    } else {
        layout.generation_tree(generation)
    }
}

/// Makes `STORE/readonly` with its fallback symlink if they are missing, synced: the view
/// resolves through them, so they are durable before any view points there. Run by every
/// writer before it points the view. Returns a note when it made or mended something.
pub fn ensure_directory(layout: &Layout) -> Result<Option<String>> {
    let readonly = layout.readonly();
    let fallback = layout.readonly_fallback();
    let mut made = false;
    match fs::symlink_metadata(&readonly) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => {
            // A writer refused the store already if this were so (own_path_problems).
            return Err(Error::Refused(format!(
                "{} is not a directory",
                readonly.display()
            )));
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            durable::create_directory(&readonly, READONLY_MODE)
                .map_err(Error::io("cannot create", &readonly))?;
            made = true;
        }
        Err(error) => return Err(Error::io("cannot read", &readonly)(error)),
    }
    match fs::symlink_metadata(&fallback) {
        // Mounted: the store's own generations/ shows here; the fallback is underneath.
        Ok(metadata) if metadata.is_dir() => {}
        Ok(metadata)
            if metadata.file_type().is_symlink()
                && fs::read_link(&fallback).ok().as_deref()
                    == Some(Path::new(READONLY_FALLBACK_TARGET)) => {}
        Ok(_) => {
            // Something else under polstore's own root-only directory: put the symlink
            // back by an atomic switch.
            durable::switch_symlink(&fallback, Path::new(READONLY_FALLBACK_TARGET))
                .map_err(Error::io("cannot mend", &fallback))?;
            return Ok(Some(format!("mended {}", fallback.display())));
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            std::os::unix::fs::symlink(READONLY_FALLBACK_TARGET, &fallback)
                .map_err(Error::io("cannot create", &fallback))?;
            // The symlink's name is durable before the view resolves through it.
            durable::sync_directory(&readonly).map_err(Error::io("cannot sync", &readonly))?;
            made = true;
        }
        Err(error) => return Err(Error::io("cannot read", &fallback)(error)),
    }
    if made {
        durable::sync_directory(&layout.root).map_err(Error::io("cannot sync", &layout.root))?;
    }
    Ok(None)
}

/// Puts the read-only mount in place if it is not. A mount that is there but wrong
/// (writable, left by a crash between the bind and the remount) is taken away first.
/// Never fails the command: without the privilege to mount, the view stays as it was and
/// the returned [`Protection::Missing`] says why.
pub fn ensure_mounted(layout: &Layout, enabled: bool) -> Result<(Protection, bool)> {
    ensure_directory(layout)?;
    if !enabled {
        return Ok((protection(layout, false), false));
    }
    match mount_state(layout) {
        MountState::ReadOnly => return Ok((Protection::ReadOnly, false)),
        MountState::NotMounted => {}
        MountState::Writable | MountState::Other(_) => {
            if let Err(error) = unmount_all(layout) {
                return Ok((
                    Protection::Missing(format!(
                        "cannot take away what is mounted at {}: {error}",
                        layout.readonly().display()
                    )),
                    false,
                ));
            }
        }
    }
    if let Err(error) = mount_read_only(layout) {
        return Ok((
            Protection::Missing(format!(
                "cannot mount {} read-only: {error}",
                layout.readonly().display()
            )),
            false,
        ));
    }
    Ok((protection(layout, true), true))
}

/// Bind-mounts the store on `STORE/readonly`, then makes that mount read-only. A bind
/// cannot be made read-only in the same call; between the two the path is a writable
/// view of a root-only store, and if the second step fails the first is undone.
fn mount_read_only(layout: &Layout) -> io::Result<()> {
    let readonly = layout.readonly();
    mount_bind(&layout.root, &readonly)?;
    crate::crashpoint::point("readonly-bound");
    if let Err(error) = mount_remount(&readonly, READONLY_MOUNT_OPTIONS | MountFlags::BIND, "") {
        let _ = unmount(&readonly, UnmountFlags::DETACH);
        return Err(error.into());
    }
    Ok(())
}

/// How many mounts stacked at `STORE/readonly` [`unmount_all`] takes away at most.
const STACKED_MOUNTS_MAX: usize = 16;

/// Takes away every mount at `STORE/readonly` (detached: an agent reading through one
/// keeps reading what it opened). Returns how many it took away.
pub fn unmount_all(layout: &Layout) -> io::Result<usize> {
    let readonly = layout.readonly();
    for removed in 0..STACKED_MOUNTS_MAX {
        match unmount(&readonly, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
            Ok(()) => {}
            // EINVAL: not a mount point (any more).
            Err(rustix::io::Errno::INVAL) => return Ok(removed),
            Err(rustix::io::Errno::NOENT) => return Ok(removed),
            Err(error) => return Err(error.into()),
        }
    }
    Err(io::Error::other(format!(
        "more than {STACKED_MOUNTS_MAX} mounts are stacked there"
    )))
}
