//! Building a generation's tree in staging: directories, files written or hard-linked
//! from verified copies, and the one file-system sync that makes all of it durable.
//! Ingest builds a candidate with it, repair a damaged generation's tree anew, and
//! rollback a kept generation's tree from the store.
//!
//! A tree is built either from nothing or over a *recycled* tree: another generation's
//! tree, taken out of `generations/` (`store::slot`), whose paths already hold that
//! generation's files. Then only what differs is touched: a file the new tree has with
//! the same content and mode stays where it is ([`TreeBuilder::keep`]), a file placed at a
//! path first removes what was there, and [`TreeBuilder::finish`] removes the recycled
//! files and directories the new tree does not have. Content is written only for what
//! changed.
//!
//! **Invariant:** every path given here passed [`crate::format::policy_path::validate`], so
//! joined under the tree it stays inside the tree; and a recycled tree is reconciled with
//! its description first ([`TreeBuilder::reconcile`]: nothing but real directories and
//! regular files it names stay), so no directory written through is a symlink: nothing is
//! written outside it.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::db::ReadTxn;
use crate::error::{Error, Result};
use crate::format::manifest::{Hash, Manifest};
use crate::format::policy_path;
use crate::fs::durable;
use crate::fs::read;

/// What a recycled tree's file at a path holds: content, mode, size.
type Held = (Hash, u32, u64);

pub struct TreeBuilder {
    tree: PathBuf,
    /// The tree's directories on disk (not its top).
    existing: HashSet<String>,
    recycled: Option<Recycled>,
}

/// What a recycled tree still holds that the new tree has not claimed.
struct Recycled {
    /// Its files not yet kept or replaced, by path.
    files: HashMap<String, Held>,
    /// The directories the new tree has: every one above a placed path, and its empty ones.
    needed: HashSet<String>,
    /// When its files were last known to be polstore's: the modification time of its
    /// generation's `polstore.manifest`, written after every file of that tree.
    settled: (i64, i64),
    /// Files a refused candidate placed (or kept) in it, when it is being undone: each is
    /// kept only if not modified since `placed_since`, the time the tree was taken.
    placed: HashSet<String>,
    placed_since: (i64, i64),
    owner: u32,
    /// The directory [`TreeBuilder::keep`] last looked in, open.
    directory: Option<(String, rustix::fd::OwnedFd)>,
}

impl TreeBuilder {
    /// Creates the tree's top directory.
    pub fn new(tree: PathBuf) -> Result<TreeBuilder> {
        durable::create_tree_directory(&tree).map_err(Error::io("cannot create", &tree))?;
        Ok(TreeBuilder {
            tree,
            existing: HashSet::new(),
            recycled: None,
        })
    }

    /// Builds over `tree`, which holds `base`'s files and directories: a generation's tree
    /// taken out of `generations/`. `settled`: the modification time of that generation's
    /// `polstore.manifest`; a file modified later is never kept.
    pub fn recycle(tree: PathBuf, base: &Manifest, settled: (i64, i64)) -> Result<TreeBuilder> {
        let mut existing = HashSet::new();
        for entry in &base.entries {
            for directory in policy_path::ancestors(&entry.path) {
                if !existing.contains(directory) {
                    existing.insert(directory.to_string());
                }
            }
        }
        for directory in &base.directories {
            existing.extend(policy_path::ancestors(directory).map(str::to_string));
            existing.insert(directory.clone());
        }
        let files = base
            .entries
            .iter()
            .map(|entry| (entry.path.clone(), (entry.hash, entry.mode, entry.size)))
            .collect();
        let mut builder = TreeBuilder {
            tree,
            existing,
            recycled: Some(Recycled {
                files,
                needed: HashSet::new(),
                settled,
                placed: HashSet::new(),
                placed_since: settled,
                owner: rustix::process::geteuid().as_raw(),
                directory: None,
            }),
        };
        builder.reconcile()?;
        Ok(builder)
    }

    /// Makes a recycled tree hold nothing but what its description says, before anything
    /// is built over it: its top and each directory changed since the tree was settled
    /// are listed (no stat of a file; see [`Reconcile::walk`]), and whatever is there that
    /// the description does not have (a file cf-agent left through a writable view, a
    /// half-written file, a symlink or anything else in place of a directory) is removed,
    /// a symlink without being followed. Only then are paths joined under the tree written
    /// through: every directory on the way is a real directory.
    fn reconcile(&mut self) -> Result<()> {
        let since = match &self.recycled {
            Some(recycled) => recycled.settled,
            None => return Ok(()),
        };
        self.reconcile_since(since)
    }

    /// [`TreeBuilder::reconcile`], every directory whose change time is not before `since`
    /// listed.
    fn reconcile_since(&mut self, since: (i64, i64)) -> Result<()> {
        let Some(recycled) = &mut self.recycled else {
            return Ok(());
        };
        let mut children: HashMap<String, Vec<String>> = HashMap::new();
        for directory in &self.existing {
            let parent = directory.rsplit_once('/').map_or("", |(parent, _)| parent);
            children
                .entry(parent.to_string())
                .or_default()
                .push(directory.clone());
        }
        let mut reconcile = Reconcile {
            since,
            children,
            existing: &mut self.existing,
            files: &mut recycled.files,
            seen: HashSet::new(),
        };
        reconcile.walk(&self.tree, "", true)?;
        // An expected directory found missing: made again when needed, with what was in it.
        let Reconcile { seen, .. } = reconcile;
        self.existing.retain(|directory| seen.contains(directory));
        recycled.files.retain(|file, _| {
            file.rsplit_once('/')
                .is_none_or(|(parent, _)| seen.contains(parent))
        });
        Ok(())
    }

    /// Turns what was built so far back into a recycled tree, to be built again (a
    /// candidate undone). `started`: when the tree was taken, before anything was placed
    /// in it (the candidate directory's time then). Its files are those `placed` here,
    /// each kept only if not modified since `started` (a file a check changed is placed
    /// again), and those of the tree it recycled that were neither kept nor replaced, each
    /// still held to that tree's own settled time. What the tree holds beyond that is
    /// removed first ([`TreeBuilder::reconcile`], every directory changed since `started`
    /// listed): a file half-written when the disk filled up.
    pub fn reverse(
        self,
        placed: impl Iterator<Item = (String, Held)>,
        started: (i64, i64),
    ) -> Result<TreeBuilder> {
        let Some(mut recycled) = self.recycled else {
            return Err(Error::Corrupt(
                "only a tree built over a recycled one can be undone".into(),
            ));
        };
        for (path, held) in placed {
            recycled.placed.insert(path.clone());
            recycled.files.insert(path, held);
        }
        recycled.needed = HashSet::new();
        recycled.directory = None;
        // Strictly before `started`: a file modified within the clock's granularity of it
        // is placed again, the safe side.
        recycled.placed_since = if started.1 > 0 {
            (started.0, started.1 - 1)
        } else {
            (started.0 - 1, 999_999_999)
        };
        let mut builder = TreeBuilder {
            tree: self.tree,
            existing: self.existing,
            recycled: Some(recycled),
        };
        builder.reconcile_since(started)?;
        Ok(builder)
    }

    pub fn tree(&self) -> &Path {
        &self.tree
    }

    /// Whether the tree is built over a recycled one.
    pub fn is_recycled(&self) -> bool {
        self.recycled.is_some()
    }

    /// Whether the recycled tree has `path` with this content and mode (not looked at on
    /// disk): what an update over it need not write.
    pub fn holds(&self, path: &str, hash: Hash, mode: u32, size: u64) -> bool {
        self.recycled
            .as_ref()
            .is_some_and(|recycled| recycled.files.get(path) == Some(&(hash, mode, size)))
    }

    /// Whether the recycled tree already holds `path` with this content and mode, as
    /// polstore left it: a regular file of that size and mode, owned by polstore's user,
    /// not modified since its generation was committed (one lstat). Then it stays. Bit
    /// rot that leaves the modification time alone is what `verify` finds.
    pub fn keep(&mut self, path: &str, hash: Hash, mode: u32, size: u64) -> bool {
        let Some(recycled) = &mut self.recycled else {
            return false;
        };
        if recycled.files.get(path) != Some(&(hash, mode, size)) {
            return false;
        }
        // Relative to its directory, kept open while the paths (sorted) stay in it: one
        // lookup instead of a walk of the whole path for each file.
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        if recycled
            .directory
            .as_ref()
            .is_none_or(|(open, _)| open != parent)
        {
            let flags = rustix::fs::OFlags::PATH
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC;
            recycled.directory =
                rustix::fs::open(self.tree.join(parent), flags, rustix::fs::Mode::empty())
                    .ok()
                    .map(|descriptor| (parent.to_string(), descriptor));
        }
        let Some((_, directory)) = &recycled.directory else {
            return false;
        };
        let unchanged = rustix::fs::statat(directory, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| {
                rustix::fs::FileType::from_raw_mode(stat.st_mode)
                    == rustix::fs::FileType::RegularFile
                    && stat.st_size as u64 == size
                    && stat.st_mode & 0o7777 == mode
                    && stat.st_uid == recycled.owner
                    && (stat.st_mtime, stat.st_mtime_nsec as i64)
                        <= if recycled.placed.contains(path) {
                            recycled.placed_since
                        } else {
                            recycled.settled
                        }
            });
        if unchanged {
            recycled.files.remove(path);
        }
        unchanged
    }

    /// Creates the directories above `path` that do not exist yet (a recycled file in the
    /// way is removed first).
    pub fn make_parents(&mut self, path: &str) -> Result<()> {
        for directory in policy_path::ancestors(path) {
            if let Some(recycled) = &mut self.recycled
                && !recycled.needed.contains(directory)
            {
                recycled.needed.insert(directory.to_string());
            }
            if self.existing.contains(directory) {
                continue;
            }
            self.clear(directory)?;
            let full = self.tree.join(directory);
            durable::create_tree_directory(&full)
                .map_err(Error::io("cannot create directory in staging", &full))?;
            self.existing.insert(directory.to_string());
        }
        Ok(())
    }

    /// Creates the (empty) directory `path` and the directories above it.
    pub fn make_directory(&mut self, path: &str) -> Result<()> {
        self.make_parents(path)?;
        if let Some(recycled) = &mut self.recycled {
            recycled.needed.insert(path.to_string());
        }
        if !self.existing.contains(path) {
            self.clear(path)?;
            let full = self.tree.join(path);
            durable::create_tree_directory(&full)
                .map_err(Error::io("cannot create directory in staging", &full))?;
            self.existing.insert(path.to_string());
        }
        Ok(())
    }

    /// Removes what a recycled tree has at `path`, a file or a directory, before
    /// something new goes there.
    fn clear(&mut self, path: &str) -> Result<()> {
        let Some(recycled) = &mut self.recycled else {
            return Ok(());
        };
        let full = self.tree.join(path);
        if recycled.files.remove(path).is_some() {
            remove_file(&full)?;
        } else if self.existing.contains(path) {
            // The directory `keep` has open may be among those removed.
            recycled.directory = None;
            durable::remove_tree_if_exists(&full).map_err(Error::io("cannot remove", &full))?;
            let below = format!("{path}/");
            self.existing
                .retain(|directory| directory != path && !directory.starts_with(&below));
            recycled.files.retain(|file, _| !file.starts_with(&below));
        }
        Ok(())
    }

    /// Hard-links `path` to `source`, a verified copy; false if the link failed.
    pub fn link(&mut self, path: &str, source: &Path) -> Result<bool> {
        self.clear(path)?;
        Ok(fs::hard_link(source, self.tree.join(path)).is_ok())
    }

    /// Writes `path` with `content` and `mode`; durable only after [`TreeBuilder::sync`].
    pub fn write(&mut self, path: &str, content: &[u8], mode: u32) -> Result<PathBuf> {
        self.clear(path)?;
        let target = self.tree.join(path);
        durable::create_file(&target, content, mode)
            .map_err(Error::io("cannot write to staging", &target))?;
        Ok(target)
    }

    /// After every path of the new tree was placed: removes the recycled files and
    /// directories it does not have (files first, then directories, deepest first).
    pub fn finish(&mut self) -> Result<()> {
        let Some(recycled) = &mut self.recycled else {
            return Ok(());
        };
        for path in std::mem::take(&mut recycled.files).into_keys() {
            remove_file(&self.tree.join(&path))?;
        }
        let mut unneeded: Vec<String> = self
            .existing
            .iter()
            .filter(|directory| !recycled.needed.contains(*directory))
            .cloned()
            .collect();
        unneeded.sort_by_key(|directory| std::cmp::Reverse(directory.matches('/').count()));
        for directory in unneeded {
            let full = self.tree.join(&directory);
            // Nothing the new tree has is below a directory it does not need.
            durable::remove_tree_if_exists(&full).map_err(Error::io("cannot remove", &full))?;
            self.existing.remove(&directory);
        }
        Ok(())
    }

    /// Makes the whole tree durable: the content of every file written, and every
    /// directory entry (its directories', its files', its links', its removals), with one
    /// syncfs(2) of the store's file system rather than an fsync for each file and
    /// directory (a new tree of 30,000 files in 1,500 directories cost that many). Linked
    /// files' contents were durable already. The caller uses the tree (renames it, commits
    /// it) only after this returns.
    pub fn sync(&self) -> Result<()> {
        durable::sync_file_system(&self.tree).map_err(Error::io("cannot sync", &self.tree))
    }
}

/// One look at a recycled tree ([`TreeBuilder::reconcile`]).
struct Reconcile<'a> {
    /// A directory whose change time is before this one holds what its description says.
    since: (i64, i64),
    /// The directories the description has, by parent ("" for the top).
    children: HashMap<String, Vec<String>>,
    existing: &'a mut HashSet<String>,
    files: &'a mut HashMap<String, Held>,
    /// The directories found, real directories where the description has them.
    seen: HashSet<String>,
}

impl Reconcile<'_> {
    /// Looks at `directory` (`prefix`: its path and `/`, empty at the top), then below it,
    /// depth first, one open directory per level. A directory whose inode has not changed
    /// since the tree was settled holds what it held then, which was its description: a
    /// name added, removed or replaced in it, a change of its mode or times, or its being
    /// renamed into place all set its change time (ctime) to the current time, which no
    /// one can set back (`touch` sets the modification time, and the change time with it
    /// to now). Such a directory gets one lstat of each subdirectory it should have. Any
    /// other is listed, and what it holds beyond its description is removed, without
    /// following a symlink.
    fn walk(&mut self, directory: &Path, prefix: &str, list: bool) -> Result<()> {
        let key = prefix.trim_end_matches('/');
        if !list {
            for child in self.children.get(key).cloned().unwrap_or_default() {
                let full = directory.join(&child[prefix.len()..]);
                match fs::symlink_metadata(&full) {
                    Ok(metadata) if metadata.is_dir() => {
                        self.seen.insert(child.clone());
                        let changed = self.changed(&metadata);
                        self.walk(&full, &format!("{child}/"), changed)?;
                    }
                    // Unchanged, its directory would say so; removed, it is not seen.
                    _ => {
                        durable::remove_tree_if_exists(&full)
                            .map_err(Error::io("cannot remove", &full))?;
                    }
                }
            }
            return Ok(());
        }
        let listing = fs::read_dir(directory).map_err(Error::io("cannot read", directory))?;
        let mut subdirectories = Vec::new();
        for entry in listing {
            let entry = entry.map_err(Error::io("cannot read", directory))?;
            let name = entry.file_name();
            let path = match name.to_str() {
                Some(name) => format!("{prefix}{name}"),
                None => String::new(),
            };
            let file_type = entry
                .file_type()
                .map_err(Error::io("cannot read", directory))?;
            let wanted = if file_type.is_dir() {
                self.existing.contains(&path)
            } else {
                file_type.is_file() && self.files.contains_key(&path)
            };
            if wanted {
                if file_type.is_dir() {
                    subdirectories.push(path);
                }
                continue;
            }
            let full = entry.path();
            durable::remove_tree_if_exists(&full).map_err(Error::io("cannot remove", &full))?;
        }
        for path in subdirectories {
            let full = directory.join(&path[prefix.len()..]);
            self.seen.insert(path.clone());
            let changed =
                fs::symlink_metadata(&full).map_or(true, |metadata| self.changed(&metadata));
            self.walk(&full, &format!("{path}/"), changed)?;
        }
        Ok(())
    }

    /// Whether a directory changed since `since`: its change time not strictly before it
    /// (a change in the same tick of the clock counts as one).
    fn changed(&self, metadata: &fs::Metadata) -> bool {
        (metadata.ctime(), metadata.ctime_nsec()) >= self.since
    }
}

fn remove_file(full: &Path) -> Result<()> {
    match fs::remove_file(full) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("cannot remove", full)(error))
        }
        _ => Ok(()),
    }
}

/// Files of a generation's tree, by content and mode, that a new tree may hard-link
/// instead of writing: the active generation's.
#[derive(Default)]
pub struct Linkable {
    tree: PathBuf,
    /// The manifest's bytes, parsed only when a file is first looked for: an update over a
    /// spare tree links little or nothing.
    manifest: Option<Vec<u8>>,
    files: OnceCell<HashMap<(Hash, u32), PathBuf>>,
    /// The modification time of that generation's `polstore.manifest`, written after
    /// every file of its tree: a file modified later was changed behind polstore's back.
    settled: Option<(i64, i64)>,
    owner: u32,
}

impl Linkable {
    /// The files of `generation`'s tree, described by the manifest `bytes` (a stored one),
    /// parsed when first needed.
    pub fn deferred(layout: &crate::store::Layout, generation: u64, bytes: Vec<u8>) -> Linkable {
        Linkable {
            tree: layout.generation_tree(generation),
            manifest: Some(bytes),
            files: OnceCell::new(),
            settled: modified(
                &layout
                    .generation_dir(generation)
                    .join(policy_path::MANIFEST_NAME),
            ),
            owner: rustix::process::geteuid().as_raw(),
        }
    }

    /// Its files by content and mode. A stored manifest that no longer parses offers none
    /// (everything is then written; `verify` reports the manifest).
    pub fn files(&self) -> &HashMap<(Hash, u32), PathBuf> {
        self.files.get_or_init(|| {
            self.manifest
                .as_deref()
                .and_then(|bytes| {
                    Manifest::parse(bytes, crate::store::stored_manifest_limits()).ok()
                })
                .map(|manifest| {
                    manifest
                        .entries
                        .iter()
                        .map(|entry| ((entry.hash, entry.mode), self.tree.join(&entry.path)))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// Whether `path` may be linked as content `hash` with `mode` and `size`.
    ///
    /// Fast path, one lstat: a regular file with that size and mode, owned by polstore's
    /// user, not modified since its generation was committed. Anything else is re-read and
    /// re-hashed. Silent corruption that leaves the modification time alone (bit rot) is
    /// what `verify` is for; the candidate's manifest names the right hash either way.
    pub fn trusted(&self, path: &Path, hash: Hash, mode: u32, size: u64) -> bool {
        let Ok(metadata) = fs::symlink_metadata(path) else {
            return false;
        };
        if !metadata.is_file()
            || metadata.size() != size
            || metadata.mode() & 0o7777 != mode
            || metadata.uid() != self.owner
        {
            return false;
        }
        let modified = (metadata.mtime(), metadata.mtime_nsec());
        if self.settled.is_some_and(|settled| modified <= settled) {
            return true;
        }
        read::read_bounded(path, size as usize).is_some_and(|content| Hash::of(&content) == hash)
    }

    /// A trusted copy of `hash` with `mode`, if this tree has one.
    pub fn find(&self, hash: Hash, mode: u32, size: u64) -> Option<&Path> {
        self.files()
            .get(&(hash, mode))
            .filter(|source| self.trusted(source, hash, mode, size))
            .map(PathBuf::as_path)
    }
}

/// The modification time of `path`, without following a symlink.
pub fn modified(path: &Path) -> Option<(i64, i64)> {
    fs::symlink_metadata(path)
        .ok()
        .map(|metadata| (metadata.mtime(), metadata.mtime_nsec()))
}

/// Builds `manifest`'s tree with `builder` from what the store holds: what a recycled tree
/// already has stays, a copy in `linkable` (or one this build wrote) is hard-linked, and
/// anything else is written from the database's object, which is checked against its hash
/// as it is read. Then [`TreeBuilder::finish`]; the caller syncs.
pub fn build_from_store(
    builder: &mut TreeBuilder,
    manifest: &Manifest,
    linkable: &Linkable,
    read: &ReadTxn,
) -> Result<()> {
    let mut written: HashMap<(Hash, u32), PathBuf> = HashMap::new();
    for directory in &manifest.directories {
        builder.make_directory(directory)?;
    }
    for entry in &manifest.entries {
        builder.make_parents(&entry.path)?;
        if builder.keep(&entry.path, entry.hash, entry.mode, entry.size) {
            continue;
        }
        let key = (entry.hash, entry.mode);
        let source = written
            .get(&key)
            .map(PathBuf::as_path)
            .or_else(|| linkable.find(entry.hash, entry.mode, entry.size));
        if let Some(source) = source
            && builder.link(&entry.path, source)?
        {
            continue;
        }
        let content = read.object(entry.hash)?;
        let target = builder.write(&entry.path, &content, entry.mode)?;
        written.insert(key, target);
    }
    builder.finish()
}
