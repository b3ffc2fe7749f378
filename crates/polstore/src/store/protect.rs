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
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, StatVfsMountFlags, statvfs};
use rustix::mount::{MoveMountFlags, OpenTreeFlags, UnmountFlags, move_mount, open_tree, unmount};

use crate::error::{Error, Result};
use crate::fs::durable;
use crate::store::layout::{
    Layout, READONLY_ACTIVE_TARGET, READONLY_FALLBACK_TARGET, READONLY_MODE,
};

/// Whether writes through the view reach the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protection {
    /// `STORE/readonly` is a read-only bind mount of the store: writes through the view
    /// fail with EROFS.
    ReadOnly,
    /// `protect_view = false` in polstore.toml: polstore does not mount.
    Off,
    /// Not in place, and why: the view reaches the writable generations, or (something
    /// planted in `readonly/`) something that is not the store at all.
    Missing(String),
}

impl Protection {
    /// One line for `status` and `verify`.
    pub fn describe(&self) -> String {
        match self {
            Protection::ReadOnly => "read-only: writes through the view fail".into(),
            Protection::Off => "off (protect_view = false in polstore.toml): writes through the view reach the store".into(),
            Protection::Missing(reason) => format!(
                "MISSING: {reason}; writes through the view reach the store"
            ),
        }
    }
}

/// What protects the view now, looked at without changing anything.
pub fn protection(layout: &Layout, enabled: bool) -> Protection {
    match mount_state(layout) {
        MountState::ReadOnly => Protection::ReadOnly,
        MountState::NotMounted | MountState::Absent if !enabled => Protection::Off,
        MountState::NotMounted => {
            Protection::Missing(format!("{} is not mounted", layout.readonly().display()))
        }
        MountState::Absent => Protection::Missing(format!(
            "{} does not exist yet (an older polstore made the store; the next command that writes makes it)",
            layout.readonly().display()
        )),
        MountState::Writable => Protection::Missing(format!(
            "{} is mounted writable",
            layout.readonly().display()
        )),
        MountState::Foreign(what) => Protection::Missing(what),
    }
}

/// What is wrong with `readonly/` beyond a missing mount, if anything: something mounted
/// inside it, a fallback symlink pointing elsewhere, something planted. The view then does
/// not show the store at all: damage, which writers and `verify --repair` put right.
pub fn foreign(layout: &Layout) -> Option<String> {
    match mount_state(layout) {
        MountState::Foreign(what) => Some(what),
        _ => None,
    }
}

/// The tree of `generation` as commands polstore runs on it (the confirming agent run,
/// verify's parse check) read it: through the read-only mount when it is in place, where
/// they cannot write into it; else the tree itself, never through a `readonly/` whose
/// content polstore has not vouched for.
pub fn readable_tree(layout: &Layout, generation: u64) -> PathBuf {
    if mount_state(layout) == MountState::ReadOnly {
        layout
            .readonly_fallback()
            .join(generation.to_string())
            .join("tree")
    } else {
        layout.generation_tree(generation)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum MountState {
    ReadOnly,
    /// Nothing mounted; the fallback symlink is what polstore made.
    NotMounted,
    /// No `readonly/` at all (a store an older polstore made).
    Absent,
    /// The store's bind, but writable.
    Writable,
    /// Anything else: something mounted inside, a retargeted fallback, something planted.
    Foreign(String),
}

/// Looks at `STORE/readonly`: the read-only mount shows the store's own `generations/`
/// (same device and inode) on a mount whose flags say read-only, with nothing mounted
/// anywhere below it; without the mount, the fallback symlink polstore made shows.
fn mount_state(layout: &Layout) -> MountState {
    let readonly = layout.readonly();
    if fs::symlink_metadata(&readonly).is_err() {
        return MountState::Absent;
    }
    if let Some(inside) = mounts_at(&readonly)
        .into_iter()
        .find(|point| point.as_path() != readonly)
    {
        return MountState::Foreign(format!("something else is mounted at {}", inside.display()));
    }
    let fallback = layout.readonly_fallback();
    let shown = match fs::symlink_metadata(&fallback) {
        Ok(metadata) => metadata,
        Err(error) => {
            return MountState::Foreign(format!("{} cannot be read: {error}", fallback.display()));
        }
    };
    if shown.file_type().is_symlink() {
        return match fs::read_link(&fallback) {
            Ok(target) if target == Path::new(READONLY_FALLBACK_TARGET) => {
                active_fallback_state(layout)
            }
            Ok(target) => MountState::Foreign(format!(
                "{} points at {}, not at {READONLY_FALLBACK_TARGET}",
                fallback.display(),
                target.display()
            )),
            Err(error) => {
                MountState::Foreign(format!("{} cannot be read: {error}", fallback.display()))
            }
        };
    }
    let generations = match fs::symlink_metadata(layout.generations()) {
        Ok(metadata) => metadata,
        Err(error) => {
            return MountState::Foreign(format!(
                "{} cannot be read: {error}",
                layout.generations().display()
            ));
        }
    };
    if (shown.dev(), shown.ino()) != (generations.dev(), generations.ino()) {
        return MountState::Foreign(format!(
            "{} is not the store's generations directory",
            fallback.display()
        ));
    }
    match statvfs(&readonly) {
        Ok(stat) if stat.f_flag.contains(StatVfsMountFlags::RDONLY) => MountState::ReadOnly,
        Ok(_) => MountState::Writable,
        Err(error) => {
            MountState::Foreign(format!("{} cannot be read: {error}", readonly.display()))
        }
    }
}

/// Not mounted, with the `generations` fallback in place: `readonly/active` must be
/// polstore's symlink to `../active`, or missing (a store an older polstore made, whose
/// view does not resolve through it; the next writer makes it before any view does).
fn active_fallback_state(layout: &Layout) -> MountState {
    let fallback = layout.readonly_active();
    match fs::symlink_metadata(&fallback) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => MountState::NotMounted,
        Ok(metadata) if metadata.file_type().is_symlink() => match fs::read_link(&fallback) {
            Ok(target) if target == Path::new(READONLY_ACTIVE_TARGET) => MountState::NotMounted,
            Ok(target) => MountState::Foreign(format!(
                "{} points at {}, not at {READONLY_ACTIVE_TARGET}",
                fallback.display(),
                target.display()
            )),
            Err(error) => {
                MountState::Foreign(format!("{} cannot be read: {error}", fallback.display()))
            }
        },
        Ok(metadata) => MountState::Foreign(format!(
            "a {} is planted at {}",
            crate::fs::type_name(metadata.file_type()),
            fallback.display()
        )),
        Err(error) => {
            MountState::Foreign(format!("{} cannot be read: {error}", fallback.display()))
        }
    }
}

/// The mount points at `path` or below it, from this process's mount table.
fn mounts_at(path: &Path) -> Vec<PathBuf> {
    // The table names canonical paths; the store's own path may be a symlink.
    let Ok(canonical) = fs::canonicalize(path) else {
        return Vec::new();
    };
    let Ok(table) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape_mount_point(point)))
        .filter(|point| point.starts_with(&canonical))
        .map(|point| path.join(point.strip_prefix(&canonical).unwrap_or(Path::new(""))))
        .collect()
}

/// The kernel writes a space, tab, newline and backslash of a mount point as `\ooo`.
fn unescape_mount_point(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\'
            && index + 3 < bytes.len()
            && bytes[index + 1..=index + 3]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = (bytes[index + 1] - b'0') * 64
                + (bytes[index + 2] - b'0') * 8
                + (bytes[index + 3] - b'0');
            out.push(value);
            index += 4;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Makes `STORE/readonly` with its fallback symlink if they are missing, synced: the view
/// resolves through them, so they are durable before any view points there. Run by every
/// writer before it points the view, and with nothing mounted there. A fallback that is
/// not polstore's symlink (retargeted, a directory planted in its place) is put right: a
/// directory is moved into `untrusted/`, never deleted. Returns what it mended.
pub fn ensure_directory(layout: &Layout) -> Result<Vec<String>> {
    let readonly = layout.readonly();
    let fallback = layout.readonly_fallback();
    let mut notes = Vec::new();
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
    if mount_state(layout) == MountState::ReadOnly {
        return Ok(notes);
    }
    for (fallback, target, untrusted_name) in [
        (fallback, READONLY_FALLBACK_TARGET, "readonly-generations"),
        (
            layout.readonly_active(),
            READONLY_ACTIVE_TARGET,
            "readonly-active",
        ),
    ] {
        made |= ensure_fallback(layout, &fallback, target, untrusted_name, &mut notes)?;
    }
    if made {
        durable::sync_directory(&layout.root).map_err(Error::io("cannot sync", &layout.root))?;
    }
    Ok(notes)
}

/// Puts the fallback symlink `fallback -> target` of `readonly/` right: made if missing
/// (and `readonly/` synced, before any view resolves through it), pointed back if it
/// points elsewhere, or, when something else was planted there, that moved into
/// `untrusted/` as `untrusted_name-T` (never deleted). Returns true when it made it.
fn ensure_fallback(
    layout: &Layout,
    fallback: &Path,
    target: &str,
    untrusted_name: &str,
    notes: &mut Vec<String>,
) -> Result<bool> {
    let readonly = layout.readonly();
    match fs::symlink_metadata(fallback) {
        Ok(metadata)
            if metadata.file_type().is_symlink()
                && fs::read_link(fallback).ok().as_deref() == Some(Path::new(target)) => {}
        Ok(metadata) if metadata.file_type().is_symlink() => {
            durable::switch_symlink(fallback, Path::new(target))
                .map_err(Error::io("cannot mend", fallback))?;
            notes.push(format!(
                "pointed {} back at {target}: it pointed elsewhere",
                fallback.display()
            ));
        }
        Ok(metadata) => {
            if !mounts_at(&readonly).is_empty() {
                return Err(Error::Refused(format!(
                    "something is still mounted at {}",
                    readonly.display()
                )));
            }
            let aside = layout.move_into_untrusted(fallback, untrusted_name)?;
            std::os::unix::fs::symlink(target, fallback)
                .map_err(Error::io("cannot create", fallback))?;
            durable::sync_directory(&readonly).map_err(Error::io("cannot sync", &readonly))?;
            notes.push(format!(
                "moved the {} planted at {} to {}, and put polstore's symlink back",
                crate::fs::type_name(metadata.file_type()),
                fallback.display(),
                aside.display()
            ));
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            std::os::unix::fs::symlink(target, fallback)
                .map_err(Error::io("cannot create", fallback))?;
            // The symlink's name is durable before the view resolves through it.
            durable::sync_directory(&readonly).map_err(Error::io("cannot sync", &readonly))?;
            return Ok(true);
        }
        Err(error) => return Err(Error::io("cannot read", fallback)(error)),
    }
    Ok(false)
}

/// What [`ensure_mounted`] found and did.
pub struct Ensured {
    pub protection: Protection,
    /// One line for each change: mounted, something taken away or mended.
    pub notes: Vec<String>,
}

/// Puts the read-only mount in place if it is not. Whatever is mounted at or inside
/// `readonly/` and is not the store's read-only bind is taken away first, and the fallback
/// symlink put right. Never fails the command for want of the privilege to mount: the
/// view then stays writable and the returned [`Protection::Missing`] says why.
pub fn ensure_mounted(layout: &Layout, enabled: bool) -> Result<Ensured> {
    let mut notes = Vec::new();
    if fs::symlink_metadata(layout.readonly()).is_ok() {
        match mount_state(layout) {
            MountState::ReadOnly if enabled => {
                return Ok(Ensured {
                    protection: Protection::ReadOnly,
                    notes,
                });
            }
            MountState::NotMounted | MountState::Absent | MountState::ReadOnly => {}
            MountState::Writable | MountState::Foreign(_) => {
                if !mounts_at(&layout.readonly()).is_empty() {
                    match unmount_all(layout) {
                        Ok(count) => notes.push(format!(
                            "took away {count} mount(s) at {} that were not the store's read-only mount",
                            layout.readonly().display()
                        )),
                        Err(error) => {
                            return Ok(Ensured {
                                protection: Protection::Missing(format!(
                                    "cannot take away what is mounted at {}: {error}",
                                    layout.readonly().display()
                                )),
                                notes,
                            });
                        }
                    }
                }
            }
        }
    }
    if !enabled && !mounts_at(&layout.readonly()).is_empty() {
        // Turned off in the configuration: the mount goes too.
        let count = unmount_all(layout).map_err(Error::io(
            "cannot unmount (protect_view = false)",
            &layout.readonly(),
        ))?;
        notes.push(format!(
            "took away {count} mount(s) at {}: polstore.toml says protect_view = false",
            layout.readonly().display()
        ));
    }
    if mount_state(layout) != MountState::ReadOnly {
        notes.extend(ensure_directory(layout)?);
    }
    if !enabled {
        return Ok(Ensured {
            protection: protection(layout, false),
            notes,
        });
    }
    if mount_state(layout) != MountState::ReadOnly {
        if let Err(error) = mount_read_only(layout) {
            return Ok(Ensured {
                protection: Protection::Missing(format!(
                    "cannot mount {} read-only: {error}",
                    layout.readonly().display()
                )),
                notes,
            });
        }
        notes.push(format!(
            "mounted {} read-only: writes through the view fail",
            layout.readonly().display()
        ));
    }
    Ok(Ensured {
        protection: protection(layout, true),
        notes,
    })
}

/// A clone of the store's mount at `STORE` (not its submounts), made read-only (and
/// nosuid, nodev) while it is still detached, then attached at `STORE/readonly`. Attached
/// read-only from the first instant, it is read-only too wherever mount propagation
/// copies it (other mount namespaces: containers, sandboxed services), which a bind
/// followed by a remount would not be.
fn mount_read_only(layout: &Layout) -> io::Result<()> {
    let tree = open_tree(
        CWD,
        &layout.root,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    set_read_only(&tree)?;
    crate::crashpoint::point("readonly-prepared");
    move_mount(
        &tree,
        "",
        CWD,
        layout.readonly(),
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

/// `struct mount_attr` of linux/mount.h, the argument of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// mount_setattr(2) on the detached mount `tree`: read-only, nosuid, nodev. rustix has no
/// wrapper for it (Linux 5.12 or later).
fn set_read_only(tree: &impl AsFd) -> io::Result<()> {
    let attributes = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr(2) reads `size` bytes at the pointer, which is a live
    // `MountAttr` laid out as the kernel's `struct mount_attr` (four u64, repr(C)) and
    // exactly that size; the path is a NUL-terminated empty string that outlives the call;
    // the descriptor is open for the duration of the call (borrowed from `tree`). The
    // kernel writes nothing back.
    let result = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_fd().as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attributes as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How many mounts [`unmount_all`] takes away at most.
const MOUNTS_MAX: usize = 64;

/// Takes away every mount at `STORE/readonly` and below it, deepest first (detached: an
/// agent reading through one keeps reading what it opened). Returns how many it took
/// away; with nothing mounted there, it asks the kernel nothing.
pub fn unmount_all(layout: &Layout) -> io::Result<usize> {
    let readonly = layout.readonly();
    let mut removed = 0;
    while removed < MOUNTS_MAX {
        let mut points = mounts_at(&readonly);
        if points.is_empty() {
            return Ok(removed);
        }
        points.sort_by_key(|point| std::cmp::Reverse(point.as_os_str().len()));
        match unmount(&points[0], UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
            Ok(()) => removed += 1,
            Err(error) => return Err(error.into()),
        }
    }
    Err(io::Error::other(format!(
        "more than {MOUNTS_MAX} mounts are there"
    )))
}
