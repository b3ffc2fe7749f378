//! File system operations whose crash behaviour polstore relies on.
//!
//! The rule throughout: a name becomes visible in a directory only after the thing it names
//! is on disk, and a directory is synced after every change to its entries that must
//! survive a crash. Each function says what it syncs and what is left to the caller.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Makes the entries of directory `path` (creations, renames, removals) durable.
pub fn sync_directory(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Creates `path` (which must not exist) with `content` and permission bits `mode`, and
/// syncs its data. The caller syncs the parent directory to make the name durable.
pub fn create_file_synced(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    create_file(path, content, mode)?.sync_all()
}

/// Creates the regular file `path` (which must not exist; a symlink there is not
/// followed) with `content` and exactly `mode`, and returns it, not synced: for a caller
/// that makes many files durable at once ([`sync_file_system`]).
pub fn create_file(path: &Path, content: &[u8], mode: u32) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    file.write_all(content)?;
    // The umask applied to open's mode; set the exact bits the manifest names.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Makes everything written on the file system that holds the directory `path` durable,
/// with one syncfs(2): every file's content and every directory entry, however many. It
/// returns once they are on disk, and reports a write-back error of that file system
/// since it was opened (Linux 5.8 and later). What other programs wrote there is
/// flushed too, which costs what they left dirty.
pub fn sync_file_system(path: &Path) -> io::Result<()> {
    let directory = OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW).bits() as i32)
        .open(path)?;
    rustix::fs::syncfs(&directory).map_err(io::Error::from)
}

/// Replaces (or creates) the regular file `path` with `content` and mode `mode`, durably:
/// `content` is written to the temporary sibling `.NAME.polstore-new` (a leftover there is
/// removed first), synced, renamed over `path`, and the directory synced. A reader sees the
/// old file or the new one, never a part; a crash leaves the old content or the new.
pub fn replace_file_synced(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let directory = parent_of(path)?;
    let temporary = temporary_sibling(path, "new")?;
    remove_tree_if_exists(&temporary)?;
    create_file_synced(&temporary, content, mode)?;
    fs::rename(&temporary, path)?;
    sync_directory(directory)
}

/// Renames `from` to `to` only if nothing is at `to` (renameat2(RENAME_NOREPLACE)): a
/// directory already there is never replaced, as rename(2) would replace an empty one.
/// Syncs nothing; the caller syncs both directories.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(io::Error::from)
}

/// Creates directory `path` (its parent must exist) with exactly `mode`, whatever the
/// umask; a symlink or anything else already at `path` is an error, never followed.
/// Creating does not sync; the caller syncs the parent.
pub fn create_directory(path: &Path, mode: u32) -> io::Result<()> {
    rustix::fs::mkdir(path, rustix::fs::Mode::from_raw_mode(mode))?;
    let directory = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    )?;
    rustix::fs::fchmod(&directory, rustix::fs::Mode::from_raw_mode(mode))?;
    Ok(())
}

/// Creates directory `path` (and missing parents) with mode 0755 whatever the umask, the
/// mode `verify` expects of every directory in a tree: readable by the agent, writable by
/// root only. Creating does not sync; the caller syncs the parent.
pub fn create_tree_directory(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// Points the symlink `link` at `target`, atomically: a reader of `link` sees the old
/// target or the new one, never a missing path.
///
/// Order: create a symlink under a temporary name beside `link`, rename(2) it over `link`,
/// fsync the directory. A crash before the rename leaves the old link and a temporary
/// symlink that [`switch_symlink`] itself removes on its next call. Something else at
/// the temporary name (a directory someone made there) is never removed or followed: the
/// next free name `.NAME.polstore-new-K` is used instead.
pub fn switch_symlink(link: &Path, target: &Path) -> io::Result<()> {
    let directory = parent_of(link)?;
    let temporary = create_temporary_symlink(link, target)?;
    crate::crashpoint::point("view-temporary-created");
    fs::rename(&temporary, link)?;
    sync_directory(directory)
}

/// Puts a symlink to `target` in place of the empty directory at `link`, with no moment
/// where `link` is missing: a symlink made under a temporary name is exchanged with the
/// directory by renameat2(EXCHANGE), the parent fsynced, then the directory, now at the
/// temporary name, removed and the parent fsynced again. Returns false when the directory
/// was no longer empty when it came to removing it (something wrote into it meanwhile): it
/// is then left at its temporary name. A crash after the exchange leaves the same.
pub fn replace_empty_directory_with_symlink(link: &Path, target: &Path) -> io::Result<bool> {
    let directory = parent_of(link)?;
    let temporary = create_temporary_symlink(link, target)?;
    exchange(&temporary, link)?;
    sync_directory(directory)?;
    let removed = fs::remove_dir(&temporary).is_ok();
    sync_directory(directory)?;
    Ok(removed)
}

/// True when `path` is a directory (not a symlink to one) with no entries, and not a
/// mount point (an empty volume or tmpfs cannot be renamed away).
pub fn is_empty_directory(path: &Path) -> bool {
    use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
    let Ok(stat) = statx(
        CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    ) else {
        return false;
    };
    u32::from(stat.stx_mode) & 0o170000 == 0o040000
        && !is_mount_point(path)
        && fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

/// True when `path` (not followed) is the root of a mount, or on another device than its
/// parent directory: rename(2) and renameat2(2) cannot move it (EBUSY, EXDEV), so nothing
/// can be put in its place.
pub fn is_mount_point(path: &Path) -> bool {
    use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags, statx};
    let Ok(stat) = statx(
        CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    ) else {
        return false;
    };
    let mount_root = stat
        .stx_attributes_mask
        .contains(StatxAttributes::MOUNT_ROOT)
        && stat.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
    let other_device = path
        .parent()
        .and_then(|parent| fs::metadata(parent).ok())
        .is_some_and(|parent| {
            use std::os::unix::fs::MetadataExt;
            (u64::from(stat.stx_dev_major), u64::from(stat.stx_dev_minor))
                != (
                    u64::from(rustix::fs::major(parent.dev())),
                    u64::from(rustix::fs::minor(parent.dev())),
                )
        });
    mount_root || other_device
}

/// How many temporary names beside a path are tried before giving up.
const TEMPORARY_NAMES_MAX: usize = 100;

/// Creates a symlink to `target` under a free temporary name beside `link` and returns
/// it. A symlink already at a name is a leftover of polstore's own and is replaced;
/// anything else there is left alone and the next name is tried.
fn create_temporary_symlink(link: &Path, target: &Path) -> io::Result<std::path::PathBuf> {
    for attempt in 0..TEMPORARY_NAMES_MAX {
        let tag = if attempt == 0 {
            "new".to_string()
        } else {
            format!("new-{attempt}")
        };
        let temporary = temporary_sibling(link, &tag)?;
        match std::os::unix::fs::symlink(target, &temporary) {
            Ok(()) => return Ok(temporary),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                if fs::symlink_metadata(&temporary)?.file_type().is_symlink() {
                    fs::remove_file(&temporary)?;
                    std::os::unix::fs::symlink(target, &temporary)?;
                    return Ok(temporary);
                }
            }
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "no free temporary name beside {} ({TEMPORARY_NAMES_MAX} are taken)",
            link.display()
        ),
    ))
}

/// The name `.<name>.polstore-<tag>` beside `path`, used for switching it atomically.
pub fn temporary_sibling(path: &Path, tag: &str) -> io::Result<std::path::PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(format!(".polstore-{tag}"));
    Ok(path.with_file_name(temporary))
}

/// Swaps two paths atomically with renameat2(RENAME_EXCHANGE): used to put a symlink in
/// place of a real directory with no moment where the path is missing.
pub fn exchange(first: &Path, second: &Path) -> io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        first,
        rustix::fs::CWD,
        second,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .map_err(io::Error::from)
}

pub fn parent_of(path: &Path) -> io::Result<&Path> {
    match path.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Ok(Path::new(".")),
        Some(parent) => Ok(parent),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path has no parent",
        )),
    }
}

/// Removes a directory tree if it exists. Used only on trees inside the store that no
/// record references any more (staging leftovers, orphaned generation directories).
pub fn remove_tree_if_exists(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}
