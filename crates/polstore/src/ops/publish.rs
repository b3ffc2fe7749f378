//! The hub side: a snapshot of a policy tree (the hub's masterfiles), signed, switched
//! atomically into a publication directory that cf-serverd or any other transport serves.
//!
//! `store-format.md` § Publication directory specifies the layout, the mode rule, what is
//! left out, how the serial is chosen and the durable order of the switch. In short:
//!
//! 1. Under `OUT/lock`, leftovers of an interrupted publish (`.staging-*`, `.removing-*`)
//!    are removed.
//! 2. SRC is copied into `OUT/.staging-SERIAL` without following a symlink, with
//!    normalised modes; every file is synced, then every directory, deepest first.
//! 3. The manifest is made from the copy (never from SRC, which the hub's agent may be
//!    rewriting meanwhile). Unless asked otherwise, a copy whose files are those of the
//!    current publication, signed by the same key, is dropped: nothing changes (a
//!    publication past half of its validity is made again).
//! 4. The manifest is written and signed beside the copy, and the copy's root synced.
//! 5. The copy is renamed to `versions/SERIAL`, then `current` is switched to it, then
//!    `head` is replaced, each synced before the next; then versions beyond `keep` go.
//!
//! **Invariant:** nothing under `versions/` changes once it is named there, except its
//! removal as a whole (renamed out of `versions/` first); `current` and `head` only ever
//! name a complete, synced publication, and `head` never names one `current` does not
//! name or did not name before.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::candidate::authoring;
use crate::config::LimitsConfig;
use crate::error::{Error, Result};
use crate::format::manifest::{MANIFEST_BYTES_MAX, Manifest, SERIAL_MAX};
use crate::format::policy_path::{self, MANIFEST_NAME, SIGNATURE_NAME};
use crate::format::signify::{KEY_FILE_BYTES_MAX, SecretKey, Signature};
use crate::format::timestamp::Timestamp;
use crate::fs::durable;
use crate::fs::read::{self, ReadError};
use crate::store::lock::StoreLock;

/// How many publications are kept by default: the new one and the two before it, so that
/// a node that read `head` just before a publish still finds its version.
pub const KEEP_DEFAULT: usize = 3;
/// Days until a publication expires, by default.
pub const EXPIRES_IN_DAYS_DEFAULT: u64 = 30;
/// `OUT` when publish makes it: root's alone, like the masterfiles it is copied from.
pub const OUT_MODE: u32 = 0o700;
/// `versions/`, every directory of a publication, and files with the owner's execute bit.
pub const DIRECTORY_MODE: u32 = 0o755;
/// Every other file of a publication, its manifest and signature, and `head`.
pub const FILE_MODE: u32 = 0o644;
/// Names left out at the top of SRC: the envelope (written anew) and what CFEngine's
/// `cf-promises -T` writes after each validation of masterfiles (a time stamp that changes
/// with every validation and means something only on the hub).
pub const EXCLUDED_AT_TOP: &[&str] = &[MANIFEST_NAME, SIGNATURE_NAME, "cf_promises_validated"];
/// Names left out at any depth: version control's own data, never policy.
pub const EXCLUDED_ANYWHERE: &[&str] = &[".git", ".hg", ".svn"];

const HEAD_BYTES_MAX: usize = 64;
const STAGING_PREFIX: &str = ".staging-";
const REMOVING_PREFIX: &str = ".removing-";

/// The mode a file gets in a publication: 0755 if its owner may execute it in SRC (module
/// scripts), else 0644. Nothing else of SRC's mode is kept.
pub fn published_file_mode(source_mode: u32) -> u32 {
    if source_mode & 0o100 != 0 {
        DIRECTORY_MODE
    } else {
        FILE_MODE
    }
}

/// Reads a signify secret key for publishing: a regular file (not followed if a symlink),
/// at most [`KEY_FILE_BYTES_MAX`] bytes, owned by the user publishing, and neither readable
/// nor writable by group or others.
pub fn read_secret_key(path: &Path) -> Result<SecretKey> {
    let refuse =
        |reason: String| Error::Refused(format!("secret key {}: {reason}", path.display()));
    let (text, metadata) = read::read_regular_with_metadata(path, KEY_FILE_BYTES_MAX).map_err(
        |error| match error {
            ReadError::Io(error) => Error::io("cannot read the secret key", path)(error),
            error => refuse(error.to_string()),
        },
    )?;
    let owner = rustix::process::geteuid().as_raw();
    if metadata.uid() != owner {
        return Err(refuse(format!(
            "belongs to user {}, not to the user publishing ({owner}); a signing key is its user's alone",
            metadata.uid()
        )));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "has mode {mode:04o}: group or others can read or change it; make it 0600"
        )));
    }
    SecretKey::parse(&text).map_err(|error| refuse(error.to_string()))
}

/// What a publish does, as the steps of the module documentation reach it.
pub enum PublishProgress {
    /// Files and bytes copied from SRC so far.
    Copying {
        files: u64,
        bytes: u64,
    },
    Signing,
    Switching,
}

pub struct PublishRequest<'a> {
    /// The policy tree (SRC). It may itself be a symlink; nothing below it is followed.
    pub source: &'a Path,
    /// The publication directory (OUT); made with [`OUT_MODE`] if missing.
    pub out: &'a Path,
    pub key: &'a SecretKey,
    /// The signature file's comment (`untrusted comment: ...`).
    pub key_comment: String,
    /// The serial to publish; when `None`, derived from the time (see [`choose_serial`]).
    pub serial: Option<u64>,
    /// The manifest's `expires`, this long after `created`; `None`: never.
    pub expires_in_secs: Option<u64>,
    /// The manifest's `source` header.
    pub origin: Option<String>,
    /// How many publications to keep, the new one included (at least 1).
    pub keep: usize,
    /// Publish even when the content is the current publication's.
    pub force: bool,
    /// How long to wait for another publish holding `OUT/lock`.
    pub lock_wait: Duration,
    pub on_wait: &'a mut dyn FnMut(&str),
    pub progress: &'a mut dyn FnMut(PublishProgress),
}

#[derive(Debug)]
pub enum PublishOutcome {
    Published(PublishReport),
    /// The content is the current publication's: nothing was published.
    Unchanged {
        serial: u64,
        path: PathBuf,
    },
}

#[derive(Debug)]
pub struct PublishReport {
    pub serial: u64,
    pub files: u64,
    pub bytes: u64,
    /// `OUT/versions/SERIAL`.
    pub path: PathBuf,
    /// Serials of the publications removed beyond `keep`, oldest first.
    pub removed: Vec<u64>,
}

/// Publishes a snapshot of `request.source` into `request.out` (module documentation).
pub fn publish(request: PublishRequest) -> Result<PublishOutcome> {
    let PublishRequest {
        source,
        out,
        key,
        key_comment,
        serial: requested,
        expires_in_secs,
        origin,
        keep,
        force,
        lock_wait,
        on_wait,
        progress,
    } = request;
    if keep == 0 {
        return Err(Error::Refused(
            "keep must be at least 1: the new publication is always kept".to_string(),
        ));
    }
    let source =
        fs::canonicalize(source).map_err(Error::io("cannot read the policy tree", source))?;
    if !source.is_dir() {
        return Err(Error::Refused(format!(
            "cannot publish {}: not a directory",
            source.display()
        )));
    }
    let out = prepare_out(out, &source, OUT_MODE)?;
    let _lock = lock(&out, lock_wait, on_wait)?;
    remove_leftovers(&out)?;
    let versions = out.join("versions");
    let kept = kept_versions(&versions)?;
    let current = current_serial(&out);
    let newest = [kept.last().copied(), current, head_serial(&out)]
        .into_iter()
        .flatten()
        .max();
    let now = Timestamp::now();
    let serial = choose_serial(requested, newest, now.unix_secs().max(0) as u64, &out)?;

    let staging = out.join(format!("{STAGING_PREFIX}{serial}"));
    durable::create_directory(&staging, DIRECTORY_MODE)
        .map_err(Error::io("cannot create", &staging))?;
    // Removed again on every way out until it is renamed into versions/.
    let mut guard = StagingGuard {
        staging: Some(staging.clone()),
        out: &out,
    };
    let (files, bytes) = copy_tree(&source, &staging, &LimitsConfig::default(), progress)?;
    progress(PublishProgress::Signing);
    let manifest = authoring::manifest_of_directory(
        &staging,
        serial,
        now,
        expires_in_secs.map(|secs| now.plus_secs(secs)),
        origin,
        &LimitsConfig::default(),
    )
    .map_err(|error| match error {
        Error::Rejected(rejection) => Error::Refused(format!(
            "cannot publish {}: {}{}",
            source.display(),
            rejection
                .path
                .map(|path| format!("{path}: "))
                .unwrap_or_default(),
            rejection.reason
        )),
        error => error,
    })?;
    if !force
        && requested.is_none()
        && let Some(current) = current
        && publishes_the_same(&versions.join(current.to_string()), &manifest, key, now)
    {
        guard.remove()?;
        // `head` names what `current` does (a publish stopped between the two left it
        // behind), and stays as it is otherwise.
        if head_serial(&out) != Some(current) {
            write_head(&out, current)?;
        }
        return Ok(PublishOutcome::Unchanged {
            serial: current,
            path: versions.join(current.to_string()),
        });
    }
    let text = manifest.render();
    let signature = key.sign(text.as_bytes());
    // Synced, then the root synced once below for both names, before it is renamed into
    // versions/: no name there ever shows a publication without its envelope.
    for (name, content) in [
        (MANIFEST_NAME, text.into_bytes()),
        (
            SIGNATURE_NAME,
            signature.to_file_text(&key_comment).into_bytes(),
        ),
    ] {
        let path = staging.join(name);
        durable::create_file_synced(&path, &content, FILE_MODE)
            .map_err(Error::io("cannot write", &path))?;
    }
    durable::sync_directory(&staging).map_err(Error::io("cannot sync", &staging))?;
    crate::crashpoint::point("publish-staged");

    progress(PublishProgress::Switching);
    if fs::symlink_metadata(&versions).is_err() {
        durable::create_directory(&versions, DIRECTORY_MODE)
            .map_err(Error::io("cannot create", &versions))?;
        durable::sync_directory(&out).map_err(Error::io("cannot sync", &out))?;
    }
    let published = versions.join(serial.to_string());
    durable::rename_no_replace(&staging, &published)
        .map_err(Error::io("cannot rename into place", &published))?;
    guard.staging = None;
    // The new name durable before `current` can name it; OUT synced for the old name.
    durable::sync_directory(&versions).map_err(Error::io("cannot sync", &versions))?;
    durable::sync_directory(&out).map_err(Error::io("cannot sync", &out))?;
    crate::crashpoint::point("publish-renamed");

    // Relative, so that it resolves wherever OUT is served from (a chroot, a bind mount).
    let target = Path::new("versions").join(serial.to_string());
    let current_link = out.join("current");
    durable::switch_symlink(&current_link, &target)
        .map_err(Error::io("cannot switch", &current_link))?;
    crate::crashpoint::point("publish-current-switched");
    // After `current`: a node that reads `head` and then copies versions/SERIAL gets a
    // publication that is complete and synced whatever it reads.
    write_head(&out, serial)?;
    crate::crashpoint::point("publish-head-written");

    let removed = remove_beyond(&out, &versions, keep)?;
    Ok(PublishOutcome::Published(PublishReport {
        serial,
        files,
        bytes,
        path: published,
        removed,
    }))
}

/// Takes `DIR/lock` (a publication directory's or a repository's), waiting up to `wait`.
pub(crate) fn lock(
    directory: &Path,
    wait: Duration,
    on_wait: &mut dyn FnMut(&str),
) -> Result<StoreLock> {
    StoreLock::acquire(directory, "publish", wait, on_wait).map_err(|error| match error {
        Error::Locked {
            holder,
            waited_secs,
            ..
        } => Error::Refused(format!(
            "{} is locked by {holder}, another publish; gave up after {waited_secs} s",
            directory.display()
        )),
        error => error,
    })
}

/// The serial of a new publication. `requested` must be above `newest`, the highest
/// serial OUT holds or names; without one, the current UNIX time in seconds or, if that
/// is not above `newest` (the clock went back, or serials were given by hand), `newest`
/// + 1. So serials never repeat or go back, even when `head` or a state file is lost.
pub fn choose_serial(
    requested: Option<u64>,
    newest: Option<u64>,
    now_unix_secs: u64,
    out: &Path,
) -> Result<u64> {
    let serial = match requested {
        Some(serial) => {
            if let Some(newest) = newest
                && serial <= newest
            {
                return Err(Error::Refused(format!(
                    "serial {serial} is not above {newest}, the newest publication in {}: nodes that have it would refuse it",
                    out.display()
                )));
            }
            serial
        }
        None => newest.map_or(now_unix_secs, |newest| {
            now_unix_secs.max(newest.saturating_add(1))
        }),
    };
    if serial > SERIAL_MAX {
        return Err(Error::Refused(format!(
            "serial {serial} is above {SERIAL_MAX}: a serial that high would leave no room for the next publication"
        )));
    }
    Ok(serial)
}

/// Checks OUT (made if missing) against SRC and returns it made absolute: neither inside
/// the other, a directory of the user publishing that others cannot write.
pub(crate) fn prepare_out(out: &Path, source: &Path, mode: u32) -> Result<PathBuf> {
    let absolute = std::path::absolute(out).map_err(Error::io("cannot resolve", out))?;
    let exists = fs::symlink_metadata(&absolute).is_ok();
    // Where it is or will be, symlinks resolved, to compare with SRC.
    let resolved = if exists {
        fs::canonicalize(&absolute).map_err(Error::io("cannot resolve", &absolute))?
    } else {
        let parent =
            durable::parent_of(&absolute).map_err(Error::io("cannot resolve", &absolute))?;
        let name = absolute.file_name().ok_or_else(|| {
            Error::Refused(format!("{} does not name a directory", absolute.display()))
        })?;
        fs::canonicalize(parent)
            .map_err(Error::io("cannot resolve", parent))?
            .join(name)
    };
    if resolved.starts_with(source) || source.starts_with(&resolved) {
        return Err(Error::Refused(format!(
            "cannot publish {} into {}: one is inside the other; the publication directory must be outside the policy tree",
            source.display(),
            resolved.display()
        )));
    }
    if !exists {
        durable::create_directory(&absolute, mode)
            .map_err(Error::io("cannot create", &absolute))?;
        let parent =
            durable::parent_of(&absolute).map_err(Error::io("cannot resolve", &absolute))?;
        durable::sync_directory(parent).map_err(Error::io("cannot sync", parent))?;
    }
    // OUT itself may be a symlink the operator chose; what is inside is never followed.
    let metadata = fs::metadata(&absolute).map_err(Error::io("cannot read", &absolute))?;
    check_own_directory(&absolute, &metadata)?;
    Ok(absolute)
}

/// A directory of the publication that only the user publishing can change: others could
/// otherwise plant a publication, or swap `current`.
pub(crate) fn check_own_directory(path: &Path, metadata: &fs::Metadata) -> Result<()> {
    let refuse = |reason: String| Error::Refused(format!("{}: {reason}", path.display()));
    if !metadata.is_dir() {
        return Err(refuse(format!(
            "is a {}, not a directory",
            crate::fs::type_name(metadata.file_type())
        )));
    }
    let owner = rustix::process::geteuid().as_raw();
    if metadata.uid() != owner {
        return Err(refuse(format!(
            "belongs to user {}, not to the user publishing ({owner}); publish writes only into a directory of its own",
            metadata.uid()
        )));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(format!(
            "has mode {mode:04o}: others could plant a publication there; take the group's and others' write rights away"
        )));
    }
    Ok(())
}

/// Removes what an interrupted publish left: a staging copy, a version being removed.
/// Nothing else in OUT is touched.
fn remove_leftovers(out: &Path) -> Result<()> {
    let mut removed = false;
    for entry in fs::read_dir(out).map_err(Error::io("cannot read", out))? {
        let entry = entry.map_err(Error::io("cannot read", out))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = [STAGING_PREFIX, REMOVING_PREFIX].iter().any(|prefix| {
            name.strip_prefix(prefix)
                .is_some_and(|serial| canonical_serial(serial).is_some())
        });
        if ours {
            let path = entry.path();
            durable::remove_tree_if_exists(&path).map_err(Error::io("cannot remove", &path))?;
            removed = true;
        }
    }
    if removed {
        durable::sync_directory(out).map_err(Error::io("cannot sync", out))?;
    }
    Ok(())
}

/// A serial in the one form publish writes it: decimal, no sign, no leading zero.
fn canonical_serial(text: &str) -> Option<u64> {
    let serial: u64 = text.parse().ok()?;
    (serial.to_string() == text).then_some(serial)
}

/// The serials in `versions/`, ascending. `versions/` must be a real directory of ours.
fn kept_versions(versions: &Path) -> Result<Vec<u64>> {
    let metadata = match fs::symlink_metadata(versions) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io("cannot read", versions)(error)),
    };
    check_own_directory(versions, &metadata)?;
    let mut serials = Vec::new();
    for entry in fs::read_dir(versions).map_err(Error::io("cannot read", versions))? {
        let entry = entry.map_err(Error::io("cannot read", versions))?;
        if let Some(serial) = entry.file_name().to_str().and_then(canonical_serial) {
            serials.push(serial);
        }
    }
    serials.sort_unstable();
    Ok(serials)
}

/// The serial `current` names, if it is the symlink publish makes.
fn current_serial(out: &Path) -> Option<u64> {
    let target = fs::read_link(out.join("current")).ok()?;
    let serial = target.strip_prefix("versions").ok()?.to_str()?;
    canonical_serial(serial)
}

/// The serial `head` holds, if it holds one.
fn head_serial(out: &Path) -> Option<u64> {
    let text = read::read_regular(&out.join("head"), HEAD_BYTES_MAX).ok()?;
    canonical_serial(std::str::from_utf8(&text).ok()?.strip_suffix('\n')?)
}

fn write_head(out: &Path, serial: u64) -> Result<()> {
    let head = out.join("head");
    durable::replace_file_synced(&head, format!("{serial}\n").as_bytes(), FILE_MODE)
        .map_err(Error::io("cannot replace", &head))
}

/// Whether the publication at `published` already has `manifest`'s files and directories,
/// signed by `key`, and is not within the second half of its validity (then it is made
/// again, so that a hook or timer that runs regularly keeps publications fresh).
fn publishes_the_same(
    published: &Path,
    manifest: &Manifest,
    key: &SecretKey,
    now: Timestamp,
) -> bool {
    let Ok(text) = read::read_regular(&published.join(MANIFEST_NAME), MANIFEST_BYTES_MAX) else {
        return false;
    };
    let Ok(old) = Manifest::parse(&text, LimitsConfig::default().manifest_limits()) else {
        return false;
    };
    let signed_by_key = read::read_regular(&published.join(SIGNATURE_NAME), KEY_FILE_BYTES_MAX)
        .ok()
        .and_then(|text| Signature::parse(&text).ok())
        .is_some_and(|signature| signature.keynum() == key.public_key().keynum());
    let fresh = match (old.expires, manifest.expires) {
        (None, None) => true,
        (Some(expires), Some(_)) => {
            let half = (expires.unix_secs() - old.created.unix_secs()) / 2;
            now.unix_secs() < expires.unix_secs() - half
        }
        _ => false,
    };
    signed_by_key
        && fresh
        && old.entries == manifest.entries
        && old.directories == manifest.directories
}

/// Removes the publications beyond the newest `keep`: each is renamed out of `versions/`
/// first (to `OUT/.removing-SERIAL`), so that a node copying it sees it whole or not at
/// all, then deleted. Returns their serials, oldest first.
fn remove_beyond(out: &Path, versions: &Path, keep: usize) -> Result<Vec<u64>> {
    let serials = kept_versions(versions)?;
    let old = &serials[..serials.len().saturating_sub(keep)];
    if old.is_empty() {
        return Ok(Vec::new());
    }
    let mut moved = Vec::new();
    for serial in old {
        let from = versions.join(serial.to_string());
        let to = out.join(format!("{REMOVING_PREFIX}{serial}"));
        durable::rename_no_replace(&from, &to).map_err(Error::io("cannot move", &from))?;
        moved.push(to);
    }
    durable::sync_directory(versions).map_err(Error::io("cannot sync", versions))?;
    for path in &moved {
        durable::remove_tree_if_exists(path).map_err(Error::io("cannot remove", path))?;
    }
    durable::sync_directory(out).map_err(Error::io("cannot sync", out))?;
    Ok(old.to_vec())
}

/// The staging copy, removed (and OUT synced) unless it was renamed into place.
struct StagingGuard<'a> {
    staging: Option<PathBuf>,
    out: &'a Path,
}

impl StagingGuard<'_> {
    fn remove(&mut self) -> Result<()> {
        if let Some(staging) = self.staging.take() {
            durable::remove_tree_if_exists(&staging)
                .map_err(Error::io("cannot remove", &staging))?;
            durable::sync_directory(self.out).map_err(Error::io("cannot sync", self.out))?;
        }
        Ok(())
    }
}

impl Drop for StagingGuard<'_> {
    fn drop(&mut self) {
        // On an error path: the error being returned says more than a failed clean-up,
        // and the next publish removes what is left.
        let _ = self.remove();
    }
}

/// Copies the tree at `source` into the empty directory `target` (module documentation,
/// step 2) under `limits`, the bounds nodes apply by default. Returns the files and bytes
/// copied.
fn copy_tree(
    source: &Path,
    target: &Path,
    limits: &LimitsConfig,
    progress: &mut dyn FnMut(PublishProgress),
) -> Result<(u64, u64)> {
    let mut ignore = |_: Found| Ok(());
    let copy = walk_tree(source, Some(target), limits, progress, &mut ignore)?;
    // Every file was synced as it was written; now every directory, deepest first, the
    // root last: all of it is durable before it is renamed into versions/.
    for directory in copy.made.iter().rev() {
        durable::sync_directory(directory).map_err(Error::io("cannot sync", directory))?;
    }
    Ok((copy.files, copy.bytes))
}

/// What [`walk_tree`] finds in SRC, in path order, after its checks.
pub enum Found<'a> {
    /// A regular file with its published mode and the exact bytes read.
    File {
        path: &'a str,
        mode: u32,
        content: &'a [u8],
    },
    /// A directory that holds nothing published.
    EmptyDirectory(&'a str),
}

/// Walks SRC as § The snapshot says (nothing followed, left-out names skipped, limits),
/// copying it under `target` when one is given, and gives each file and empty directory
/// to `found`.
pub fn walk_tree<'a>(
    source: &'a Path,
    target: Option<&Path>,
    limits: &'a LimitsConfig,
    progress: &'a mut dyn FnMut(PublishProgress),
    found: &'a mut dyn FnMut(Found) -> Result<()>,
) -> Result<TreeCopy<'a>> {
    let handle = rustix::fs::open(
        source,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|error| Error::io("cannot read", source)(error.into()))?;
    let mut copy = TreeCopy {
        source,
        limits,
        files: 0,
        directories: 0,
        bytes: 0,
        made: target.map(Path::to_path_buf).into_iter().collect(),
        progress,
        found,
    };
    copy.directory(&File::from(handle), source, target, "")?;
    if copy.files == 0 {
        return Err(copy.refuse(None, "holds no policy file".to_string()));
    }
    Ok(copy)
}

pub struct TreeCopy<'a> {
    /// SRC, for messages.
    source: &'a Path,
    limits: &'a LimitsConfig,
    pub files: u64,
    directories: u64,
    pub bytes: u64,
    /// Directories made, parents before children.
    made: Vec<PathBuf>,
    progress: &'a mut dyn FnMut(PublishProgress),
    found: &'a mut dyn FnMut(Found) -> Result<()>,
}

impl TreeCopy<'_> {
    fn refuse(&self, path: Option<&str>, reason: String) -> Error {
        Error::Refused(format!(
            "cannot publish {}: {}{reason}",
            self.source.display(),
            path.map(|path| format!("{path}: ")).unwrap_or_default()
        ))
    }

    /// Copies the entries of the directory open as `handle` (at `path`, for messages; the
    /// policy path `prefix`) into `target`. Every entry is opened relative to `handle`,
    /// never followed: a symlink swapped in meanwhile is refused, not walked.
    /// Returns whether the directory holds anything published.
    fn directory(
        &mut self,
        handle: &File,
        path: &Path,
        target: Option<&Path>,
        prefix: &str,
    ) -> Result<bool> {
        let listing = rustix::fs::Dir::read_from(handle)
            .map_err(|error| Error::io("cannot read", path)(error.into()))?;
        let mut names = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|error| Error::io("cannot read", path)(error.into()))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        names.sort();
        let mut holds = false;
        for raw in names {
            let shown = policy_path::display(&raw);
            let Ok(name) = String::from_utf8(raw) else {
                return Err(self.refuse(
                    Some(&format!("{prefix}{shown}")),
                    "name is not valid UTF-8".to_string(),
                ));
            };
            if EXCLUDED_ANYWHERE.contains(&name.as_str())
                || (prefix.is_empty() && EXCLUDED_AT_TOP.contains(&name.as_str()))
            {
                continue;
            }
            let relative = format!("{prefix}{name}");
            policy_path::validate(&relative, self.limits.path_limits())
                .map_err(|error| self.refuse(Some(&relative), error.to_string()))?;
            let stat = rustix::fs::statat(handle, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|error| Error::io("cannot read", path.join(&name))(error.into()))?;
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {
                    self.directories += 1;
                    if self.directories > self.limits.files_max as u64 {
                        return Err(self.refuse(
                            None,
                            format!("more than {} directories", self.limits.files_max),
                        ));
                    }
                    let child = rustix::fs::openat(
                        handle,
                        name.as_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|error| match error {
                        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => self.refuse(
                            Some(&relative),
                            "changed while it was being read".to_string(),
                        ),
                        error => Error::io("cannot read", path.join(&name))(error.into()),
                    })?;
                    let into = target.map(|target| target.join(&name));
                    if let Some(into) = &into {
                        durable::create_directory(into, DIRECTORY_MODE)
                            .map_err(Error::io("cannot create", into))?;
                        self.made.push(into.clone());
                    }
                    let child_holds = self.directory(
                        &File::from(child),
                        &path.join(&name),
                        into.as_deref(),
                        &format!("{relative}/"),
                    )?;
                    if !child_holds {
                        (self.found)(Found::EmptyDirectory(&relative))?;
                    }
                    holds = true;
                }
                FileType::RegularFile => {
                    self.file(
                        handle,
                        &name,
                        &path.join(&name),
                        &relative,
                        target.map(|target| target.join(&name)).as_deref(),
                    )?;
                    holds = true;
                }
                _ => {
                    let kind = fs::symlink_metadata(path.join(&name))
                        .map(|metadata| crate::fs::type_name(metadata.file_type()))
                        .unwrap_or("special file");
                    return Err(self.refuse(
                        Some(&relative),
                        format!("is a {kind}; only regular files and directories are published, and nothing in the tree is followed"),
                    ));
                }
            }
        }
        Ok(holds)
    }

    /// Copies one regular file, opened relative to its directory without following and
    /// checked on the open descriptor, with its published mode, synced.
    fn file(
        &mut self,
        directory: &File,
        name: &str,
        path: &Path,
        relative: &str,
        target: Option<&Path>,
    ) -> Result<()> {
        let limits = self.limits;
        let file = rustix::fs::openat(
            directory,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|error| match error {
            rustix::io::Errno::LOOP | rustix::io::Errno::NXIO => self.refuse(
                Some(relative),
                "changed while it was being read".to_string(),
            ),
            error => Error::io("cannot open", path)(error.into()),
        })?;
        let file = File::from(file);
        let metadata = file.metadata().map_err(Error::io("cannot read", path))?;
        if !metadata.is_file() {
            return Err(self.refuse(
                Some(relative),
                "changed while it was being read".to_string(),
            ));
        }
        self.files += 1;
        if self.files > limits.files_max as u64 {
            return Err(self.refuse(None, format!("more than {} files", limits.files_max)));
        }
        let over = |size: u64| {
            self.refuse(
                Some(relative),
                format!(
                    "{size} bytes is over the limit of {} bytes per file nodes accept",
                    limits.file_bytes_max
                ),
            )
        };
        if metadata.len() > limits.file_bytes_max {
            return Err(over(metadata.len()));
        }
        let mut content = Vec::with_capacity(metadata.len() as usize);
        (&file)
            .take(limits.file_bytes_max + 1)
            .read_to_end(&mut content)
            .map_err(Error::io("cannot read", path))?;
        if content.len() as u64 > limits.file_bytes_max {
            return Err(over(content.len() as u64));
        }
        self.bytes += content.len() as u64;
        if self.bytes > limits.tree_bytes_max {
            return Err(self.refuse(
                None,
                format!("more than {} bytes in all", limits.tree_bytes_max),
            ));
        }
        let mode = published_file_mode(metadata.permissions().mode());
        if let Some(target) = target {
            durable::create_file_synced(target, &content, mode)
                .map_err(Error::io("cannot write", target))?;
        }
        (self.found)(Found::File {
            path: relative,
            mode,
            content: &content,
        })?;
        (self.progress)(PublishProgress::Copying {
            files: self.files,
            bytes: self.bytes,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serial_follows_the_clock_and_never_goes_back() {
        let out = Path::new("/out");
        assert_eq!(
            choose_serial(None, None, 1_700_000_000, out).unwrap(),
            1_700_000_000
        );
        // Newer than the clock (it went back, or serials were given by hand): one above.
        assert_eq!(
            choose_serial(None, Some(1_800_000_000), 1_700_000_000, out).unwrap(),
            1_800_000_001
        );
        assert_eq!(
            choose_serial(None, Some(5), 1_700_000_000, out).unwrap(),
            1_700_000_000
        );
        assert_eq!(
            choose_serial(Some(7), Some(6), 1_700_000_000, out).unwrap(),
            7
        );
        let refused = choose_serial(Some(6), Some(6), 1_700_000_000, out).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "serial 6 is not above 6, the newest publication in /out: nodes that have it would refuse it"
        );
        assert!(matches!(
            choose_serial(None, Some(SERIAL_MAX), 0, out),
            Err(Error::Refused(_))
        ));
        assert!(matches!(
            choose_serial(Some(SERIAL_MAX + 1), None, 0, out),
            Err(Error::Refused(_))
        ));
    }

    #[test]
    fn modes_keep_only_the_owner_s_execute_bit() {
        for (source, published) in [
            (0o600, 0o644),
            (0o644, 0o644),
            (0o666, 0o644),
            (0o4644, 0o644),
            (0o700, 0o755),
            (0o6755, 0o755),
            (0o1777, 0o755),
            (0o611, 0o644),
        ] {
            assert_eq!(published_file_mode(source), published, "{source:o}");
        }
    }

    #[test]
    fn only_canonical_decimal_names_are_serials() {
        assert_eq!(canonical_serial("17"), Some(17));
        assert_eq!(canonical_serial("0"), Some(0));
        for name in ["017", "+17", "-1", "", "1a", "18446744073709551616"] {
            assert_eq!(canonical_serial(name), None, "{name}");
        }
    }
}
