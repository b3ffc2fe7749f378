//! The hub side of fleet distribution: `polstore publish SRC --repo DIR`, a policy version
//! added to a static, content-addressed repository that any HTTP server, relay or cache
//! serves, and `polstore root publish`, a root of trust added to it.
//!
//! `repo-format.md` specifies the repository. In durable order, under `DIR/lock`:
//!
//! 1. `.incoming/` (where every file is written before it is renamed into place) is
//!    emptied of what an interrupted publish left.
//! 2. SRC is walked as the publication directory's snapshot is (`ops::publish`: nothing
//!    followed, the same names left out, the same modes and limits). Each file's content
//!    that `objects/` lacks is compressed, written and synced, then renamed into place.
//! 3. The manifest is made from the bytes read. When it has the files of the node's
//!    current manifest, signed by the same keys and not past half of its validity, it is
//!    kept (only the head is signed anew). Else it is signed by every `--key` and written
//!    to `manifests/`, with a delta from each of the node's last manifests to `deltas/`.
//! 4. Every directory written into is synced, then the node's history (`nodes/NODE`).
//! 5. Last, the head (`heads/NODE`), signed by the head keys, replaces the old one with a
//!    rename, and `heads/` is synced. A node that reads the head finds everything it names.
//!
//! **Invariant:** a file under `objects/`, `manifests/`, `deltas/` or `roots/` never
//! changes once it has its name; a head only names what is durable in the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::LimitsConfig;
use crate::error::{Error, Result};
use crate::format::delta;
use crate::format::head::{self, HEAD_FILE_BYTES_MAX, Head};
use crate::format::manifest::{Entry, Hash, MANIFEST_BYTES_MAX, Manifest};
use crate::format::repo;
use crate::format::root::{ROOT_FILE_BYTES_MAX, Role, Root, SignedRoot};
use crate::format::signatures::{self, SIGNATURE_LIST_BYTES_MAX};
use crate::format::signify::{KeyNum, SecretKey, Signature};
use crate::format::timestamp::Timestamp;
use crate::fs::durable;
use crate::fs::read;
use crate::ops::publish::{self, Found, PublishProgress};

/// A repository is served to others: its directories are 0755, its files 0644.
pub const REPO_DIRECTORY_MODE: u32 = 0o755;
pub const REPO_FILE_MODE: u32 = 0o644;
/// How many of a node's earlier manifests a new one gets a delta from.
pub const DELTA_BASES: usize = 8;
/// A head's life by default: a node that cannot get a fresh one for a day stops
/// accepting what the old one names, as TUF's timestamp role does.
pub const HEAD_EXPIRES_IN_SECS_DEFAULT: u64 = 86_400;

const INCOMING: &str = ".incoming";

pub struct RepoPublishRequest<'a> {
    pub source: &'a Path,
    pub repo: &'a Path,
    /// Sign the manifest.
    pub keys: &'a [SecretKey],
    /// Sign the head; empty: the manifest keys.
    pub head_keys: &'a [SecretKey],
    pub node: &'a str,
    pub serial: Option<u64>,
    pub expires_in_secs: Option<u64>,
    pub head_expires_in_secs: u64,
    pub origin: Option<String>,
    pub force: bool,
    pub lock_wait: Duration,
    pub on_wait: &'a mut dyn FnMut(&str),
    pub progress: &'a mut dyn FnMut(PublishProgress),
}

#[derive(Debug)]
pub struct RepoReport {
    pub node: String,
    pub serial: u64,
    /// False when the node's current manifest was kept and only its head signed anew.
    pub new_manifest: bool,
    pub files: u64,
    pub bytes: u64,
    pub objects_written: u64,
    pub compressed_bytes_written: u64,
    pub deltas_written: u64,
    pub root_version: u64,
    pub head_expires: Timestamp,
}

/// Publishes SRC for one node (or group) into the repository (module documentation).
pub fn publish_to_repo(request: RepoPublishRequest) -> Result<RepoReport> {
    let RepoPublishRequest {
        source,
        repo,
        keys,
        head_keys,
        node,
        serial: requested,
        expires_in_secs,
        head_expires_in_secs,
        origin,
        force,
        lock_wait,
        on_wait,
        progress,
    } = request;
    head::check_node(node).map_err(Error::Refused)?;
    if keys.is_empty() {
        return Err(Error::Refused("no key to sign the manifest with".into()));
    }
    let head_keys = if head_keys.is_empty() {
        keys
    } else {
        head_keys
    };
    let source =
        fs::canonicalize(source).map_err(Error::io("cannot read the policy tree", source))?;
    if !source.is_dir() {
        return Err(Error::Refused(format!(
            "cannot publish {}: not a directory",
            source.display()
        )));
    }
    let repo = publish::prepare_out(repo, &source, REPO_DIRECTORY_MODE)?;
    let _lock = publish::lock(&repo, lock_wait, on_wait)?;
    let mut writer = Writer::new(&repo)?;
    check_subdirectories(&repo)?;
    let root = newest_root(&repo)?;
    if let Some(root) = &root {
        check_signers(root, Role::Manifest, keys)?;
        check_signers(root, Role::Head, head_keys)?;
    }
    let previous = current_head(&repo, node);
    // The node's last manifests, oldest first: the bases of the deltas, then the history
    // written back with the new one.
    let history = history(&repo, node);
    let now = Timestamp::now();
    let serial = publish::choose_serial(
        requested,
        previous.as_ref().map(|head| head.serial),
        now.unix_secs().max(0) as u64,
        &repo.join(repo::head_path(node)),
    )?;

    // 2. Objects, as SRC is walked.
    let limits = LimitsConfig::default();
    let mut entries: Vec<Entry> = Vec::new();
    let mut directories: Vec<String> = Vec::new();
    let (mut objects_written, mut compressed_bytes_written) = (0u64, 0u64);
    let mut found = |found: Found| -> Result<()> {
        match found {
            Found::File {
                path,
                mode,
                content,
            } => {
                let hash = Hash::of(content);
                let object = repo::object_path(hash);
                if !writer.exists(&object)? {
                    let compressed = repo::compress(content);
                    compressed_bytes_written += compressed.len() as u64;
                    objects_written += 1;
                    writer.put(&object, &compressed)?;
                }
                entries.push(Entry {
                    path: path.to_string(),
                    mode,
                    size: content.len() as u64,
                    hash,
                });
            }
            Found::EmptyDirectory(path) => directories.push(path.to_string()),
        }
        Ok(())
    };
    let walked = publish::walk_tree(&source, None, &limits, progress, &mut found)?;
    let (files, bytes) = (walked.files, walked.bytes);
    drop(walked);
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    directories.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));

    // 3. The manifest: the node's current one when nothing changed, else a new one.
    progress(PublishProgress::Signing);
    let signers: BTreeSet<KeyNum> = keys.iter().map(|key| *key.public_key().keynum()).collect();
    let kept = match (&previous, force || requested.is_some()) {
        (Some(previous), false) => {
            still_current(&repo, previous, &entries, &directories, &signers, now)
        }
        _ => None,
    };
    let (manifest_bytes, manifest_serial, new_manifest, mut deltas_written) = match kept {
        Some((bytes, serial)) => (bytes, serial, false, 0),
        None => {
            let manifest = Manifest {
                serial,
                created: now,
                expires: expires_in_secs.map(|secs| now.plus_secs(secs)),
                node: Some(node.to_string()),
                source: origin,
                entries,
                directories,
            };
            let bytes = manifest.render().into_bytes();
            let list = signature_list(keys, &bytes, "polstore manifest");
            let hash = Hash::of(&bytes);
            let mut signed = list.clone().into_bytes();
            signed.extend_from_slice(&bytes);
            writer.put(&repo::manifest_path(hash), &repo::compress(&signed))?;
            let mut deltas = 0;
            for base_hash in history.iter().copied() {
                if base_hash == hash {
                    continue;
                }
                let Some((_, base)) = read_manifest(&repo, base_hash) else {
                    continue;
                };
                let made = delta::make(&base, &bytes);
                // A node takes a delta of at most the manifest's size (and its
                // signatures): one that is not smaller is left out, and the node fetches
                // the manifest whole.
                if made.len() >= bytes.len() {
                    continue;
                }
                let mut body = list.clone().into_bytes();
                body.extend_from_slice(&made);
                writer.put(&repo::delta_path(hash, base_hash), &repo::compress(&body))?;
                deltas += 1;
            }
            (bytes, serial, true, deltas)
        }
    };
    if !new_manifest {
        deltas_written = 0;
    }
    let manifest_hash = Hash::of(&manifest_bytes);

    // 4. Everything the head will name is durable before it.
    progress(PublishProgress::Switching);
    writer.sync()?;
    crate::crashpoint::point("repo-objects-written");
    let mut bases = history;
    bases.retain(|hash| *hash != manifest_hash);
    bases.push(manifest_hash);
    let skip = bases.len().saturating_sub(DELTA_BASES);
    let history_text: String = bases[skip..]
        .iter()
        .map(|hash| format!("{}\n", hash.to_hex()))
        .collect();
    writer.replace(&format!("nodes/{node}"), history_text.as_bytes())?;

    // 5. The head, last.
    let root_version = root.as_ref().map_or(0, |root| root.version);
    let head = Head {
        node: node.to_string(),
        serial: manifest_serial,
        manifest: manifest_hash,
        manifest_size: manifest_bytes.len() as u64,
        root: root_version,
        created: now,
        expires: now.plus_secs(head_expires_in_secs),
    };
    let text = head.render();
    let mut file = signature_list(head_keys, text.as_bytes(), "polstore head").into_bytes();
    file.extend_from_slice(text.as_bytes());
    writer.replace(&repo::head_path(node), &file)?;
    crate::crashpoint::point("repo-head-written");
    Ok(RepoReport {
        node: node.to_string(),
        serial: manifest_serial,
        new_manifest,
        files,
        bytes,
        objects_written,
        compressed_bytes_written,
        deltas_written,
        root_version,
        head_expires: head.expires,
    })
}

/// Adds a root to the repository as `roots/N.root`: version 1 when the repository has
/// none, signed by its own root threshold; else the next version, signed by a threshold
/// of the newest root's root keys and of its own.
pub fn publish_root(
    repo: &Path,
    root_file: &[u8],
    lock_wait: Duration,
    on_wait: &mut dyn FnMut(&str),
) -> Result<u64> {
    let signed = SignedRoot::parse(root_file).map_err(|error| Error::Refused(error.to_string()))?;
    let repo = std::path::absolute(repo).map_err(Error::io("cannot resolve", repo))?;
    if fs::symlink_metadata(&repo).is_err() {
        durable::create_directory(&repo, REPO_DIRECTORY_MODE)
            .map_err(Error::io("cannot create", &repo))?;
    }
    let metadata = fs::metadata(&repo).map_err(Error::io("cannot read", &repo))?;
    publish::check_own_directory(&repo, &metadata)?;
    let _lock = publish::lock(&repo, lock_wait, on_wait)?;
    let mut writer = Writer::new(&repo)?;
    check_subdirectories(&repo)?;
    match newest_root(&repo)? {
        None => {
            if signed.root.version != 1 {
                return Err(Error::Refused(format!(
                    "{} holds no root yet: its first root must be version 1, not {}",
                    repo.display(),
                    signed.root.version
                )));
            }
            signed
                .check_self()
                .map_err(|error| Error::Refused(format!("root version 1: by itself: {error}")))?;
        }
        Some(trusted) => signed.check_follows(&trusted).map_err(Error::Refused)?,
    }
    writer.put(&repo::root_path(signed.root.version), &signed.render())?;
    writer.sync()?;
    Ok(signed.root.version)
}

/// The directories of the repository that the publisher reads from: each must be the
/// publishing user's and writable by no one else, as DIR is. Else another user could have
/// planted a root, a head's history or a file under an immutable name, which the
/// publisher keeps as it finds it.
fn check_subdirectories(repo: &Path) -> Result<()> {
    for name in ["objects", "manifests", "deltas", "roots", "heads", "nodes"] {
        let path = repo.join(name);
        match fs::symlink_metadata(&path) {
            Ok(metadata) => publish::check_own_directory(&path, &metadata)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(Error::io("cannot read", &path)(error)),
        }
    }
    Ok(())
}

/// The signature list of `message` by each key, one signify signature per key.
fn signature_list(keys: &[SecretKey], message: &[u8], what: &str) -> String {
    let signed: Vec<(Signature, String)> = keys
        .iter()
        .map(|key| {
            let keynum = *key.public_key().keynum();
            (key.sign(message), format!("{what} signed by {keynum}"))
        })
        .collect();
    signatures::render_list(&signed)
}

/// Refuses keys that cannot meet `role`'s threshold in the repository's newest root:
/// nodes would refuse what they sign.
fn check_signers(root: &Root, role: Role, keys: &[SecretKey]) -> Result<()> {
    let wanted = root.role(role);
    let mut signers: Vec<KeyNum> = keys.iter().map(|key| *key.public_key().keynum()).collect();
    signers.sort_by_key(|keynum| keynum.0);
    signers.dedup();
    let counted = signers
        .iter()
        .filter(|keynum| wanted.keys.contains(keynum))
        .count();
    if counted < wanted.threshold {
        return Err(Error::Refused(format!(
            "the repository's root version {} needs {} of its {role} keys to sign, and {counted} of the keys given are",
            root.version, wanted.threshold
        )));
    }
    Ok(())
}

/// The newest root in `roots/`, read as the repository's own (not verified again: each
/// was verified when `publish_root` added it).
pub fn newest_root(repo: &Path) -> Result<Option<Root>> {
    let roots = repo.join("roots");
    let Ok(listing) = fs::read_dir(&roots) else {
        return Ok(None);
    };
    let newest = listing
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name.to_str()?.strip_suffix(".root")?.parse::<u64>().ok()?;
            (repo::root_path(version) == format!("roots/{}", name.to_str()?)).then_some(version)
        })
        .max();
    let Some(version) = newest else {
        return Ok(None);
    };
    let path = repo.join(repo::root_path(version));
    let bytes = read::read_regular(&path, ROOT_FILE_BYTES_MAX)
        .map_err(|error| Error::Refused(format!("{}: {error}", path.display())))?;
    let signed = SignedRoot::parse(&bytes)
        .map_err(|error| Error::Refused(format!("{}: {error}", path.display())))?;
    Ok(Some(signed.root))
}

/// The node's current head, as the repository holds it.
fn current_head(repo: &Path, node: &str) -> Option<Head> {
    let bytes = read::read_regular(&repo.join(repo::head_path(node)), HEAD_FILE_BYTES_MAX).ok()?;
    let (_, text) = signatures::split_signed(&bytes).ok()?;
    Head::parse(text).ok()
}

/// The node's last manifests, oldest first (`nodes/NODE`).
fn history(repo: &Path, node: &str) -> Vec<Hash> {
    let Ok(bytes) = read::read_regular(&repo.join(format!("nodes/{node}")), 4096) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(Hash::from_hex)
        .collect()
}

/// A manifest of the repository: its signature list and its bytes.
fn read_manifest(repo: &Path, hash: Hash) -> Option<(Vec<Signature>, Vec<u8>)> {
    let path = repo.join(repo::manifest_path(hash));
    let bound = repo::compressed_bytes_max((MANIFEST_BYTES_MAX + SIGNATURE_LIST_BYTES_MAX) as u64);
    let compressed = read::read_regular(&path, bound as usize).ok()?;
    let signed = repo::decompress(
        &compressed,
        (MANIFEST_BYTES_MAX + SIGNATURE_LIST_BYTES_MAX) as u64,
    )
    .ok()?;
    let (list, bytes) = signatures::split_signed(&signed).ok()?;
    (Hash::of(bytes) == hash).then(|| (list, bytes.to_vec()))
}

/// The node's current manifest's bytes and serial when it describes exactly these files,
/// signed by exactly `signers`, and is not past half of its validity.
fn still_current(
    repo: &Path,
    previous: &Head,
    entries: &[Entry],
    directories: &[String],
    signers: &BTreeSet<KeyNum>,
    now: Timestamp,
) -> Option<(Vec<u8>, u64)> {
    let (list, bytes) = read_manifest(repo, previous.manifest)?;
    let manifest = Manifest::parse(&bytes, LimitsConfig::default().manifest_limits()).ok()?;
    let signed_by: BTreeSet<KeyNum> = list.iter().map(|signature| *signature.keynum()).collect();
    let fresh = manifest.expires.is_none_or(|expires| {
        let half = (expires.unix_secs() - manifest.created.unix_secs()) / 2;
        now.unix_secs() < manifest.created.unix_secs() + half
    });
    (manifest.entries == entries
        && manifest.directories == directories
        && signed_by == *signers
        && fresh)
        .then_some((bytes, manifest.serial))
}

/// Writes repository files: each into `.incoming/` first, synced, then renamed into place;
/// the directories it renamed into are synced by [`Writer::sync`].
struct Writer {
    repo: PathBuf,
    incoming: PathBuf,
    count: u64,
    /// Directories that got a new name, to sync.
    touched: BTreeMap<PathBuf, ()>,
    /// Directories found to be the publishing user's, writable by no one else.
    checked: BTreeSet<PathBuf>,
}

impl Writer {
    fn new(repo: &Path) -> Result<Writer> {
        let incoming = repo.join(INCOMING);
        durable::remove_tree_if_exists(&incoming).map_err(Error::io("cannot remove", &incoming))?;
        durable::create_directory(&incoming, 0o700)
            .map_err(Error::io("cannot create", &incoming))?;
        Ok(Writer {
            repo: repo.to_path_buf(),
            incoming,
            count: 0,
            touched: BTreeMap::new(),
            checked: BTreeSet::new(),
        })
    }

    /// Whether an immutable file is already at `relative`, which is then kept as it is:
    /// only a regular file of the publishing user's, in directories of theirs, that no one
    /// else can write. Anything else there was not written by a publish, and is refused.
    fn exists(&mut self, relative: &str) -> Result<bool> {
        let target = self.repo.join(relative);
        if !self.missing_directories(&target)?.is_empty() {
            return Ok(false);
        }
        let metadata = match fs::symlink_metadata(&target) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(Error::io("cannot read", &target)(error)),
        };
        use std::os::unix::fs::MetadataExt;
        let owner = rustix::process::geteuid().as_raw();
        if !metadata.is_file() || metadata.uid() != owner || metadata.mode() & 0o022 != 0 {
            return Err(Error::Refused(format!(
                "{}: a {} of user {} with mode {:04o}, which no publish wrote, holds a name whose file is never replaced; remove it",
                target.display(),
                crate::fs::type_name(metadata.file_type()),
                metadata.uid(),
                metadata.mode() & 0o7777
            )));
        }
        Ok(true)
    }

    /// The directories between the repository and `target` that are missing, deepest
    /// first; each one that exists must be the publishing user's and writable by no one
    /// else (others could plant files in it), and not a symlink.
    fn missing_directories(&mut self, target: &Path) -> Result<Vec<PathBuf>> {
        let mut missing = Vec::new();
        let mut directory = target.parent().expect("a repository path has a parent");
        while directory != self.repo && !self.checked.contains(directory) {
            match fs::symlink_metadata(directory) {
                Ok(metadata) => {
                    publish::check_own_directory(directory, &metadata)?;
                    self.checked.insert(directory.to_path_buf());
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    missing.push(directory.to_path_buf());
                }
                Err(error) => return Err(Error::io("cannot read", directory)(error)),
            }
            directory = directory.parent().expect("inside the repository");
        }
        Ok(missing)
    }

    /// Makes the directories of `relative` that are missing, each 0755, noting its parent
    /// for the sync.
    fn parents(&mut self, relative: &str) -> Result<PathBuf> {
        let target = self.repo.join(relative);
        let missing = self.missing_directories(&target)?;
        for directory in missing.into_iter().rev() {
            durable::create_directory(&directory, REPO_DIRECTORY_MODE)
                .map_err(Error::io("cannot create", &directory))?;
            let parent = directory
                .parent()
                .expect("inside the repository")
                .to_path_buf();
            self.touched.insert(parent, ());
            self.checked.insert(directory);
        }
        Ok(target)
    }

    /// Puts an immutable file in place; one already there is left as it is.
    fn put(&mut self, relative: &str, content: &[u8]) -> Result<()> {
        if self.exists(relative)? {
            return Ok(());
        }
        let target = self.parents(relative)?;
        let temporary = self.incoming.join(self.count.to_string());
        self.count += 1;
        durable::create_file_synced(&temporary, content, REPO_FILE_MODE)
            .map_err(Error::io("cannot write", &temporary))?;
        match durable::rename_no_replace(&temporary, &target) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(&temporary);
                return Ok(());
            }
            Err(error) => return Err(Error::io("cannot rename into place", &target)(error)),
        }
        self.touched
            .insert(target.parent().expect("has a parent").to_path_buf(), ());
        Ok(())
    }

    /// Replaces a mutable file (a head, a node's history) atomically and durably.
    fn replace(&mut self, relative: &str, content: &[u8]) -> Result<()> {
        let target = self.parents(relative)?;
        self.sync()?;
        let temporary = self.incoming.join(self.count.to_string());
        self.count += 1;
        durable::create_file_synced(&temporary, content, REPO_FILE_MODE)
            .map_err(Error::io("cannot write", &temporary))?;
        fs::rename(&temporary, &target).map_err(Error::io("cannot replace", &target))?;
        let parent = target.parent().expect("has a parent");
        durable::sync_directory(parent).map_err(Error::io("cannot sync", parent))
    }

    /// Syncs every directory that got a new name, deepest first.
    fn sync(&mut self) -> Result<()> {
        for directory in std::mem::take(&mut self.touched).into_keys().rev() {
            durable::sync_directory(&directory).map_err(Error::io("cannot sync", &directory))?;
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.incoming);
    }
}
