//! Reads a candidate policy tree from wherever a transport dropped it: a directory, a tar
//! archive (plain, gzip or bzip2), or a tar stream on standard input.
//!
//! Everything read here is hostile. Each file passes one gate, [`Admission`], that checks
//! its name, type, mode and the limits before a byte of it is kept; a refusal names the
//! entry and the rule. Nothing here writes anywhere: files go to the caller's sink.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::config::{LimitsConfig, Part};
use crate::error::{Check, Error, Rejection, Result};
use crate::format::manifest::{self, MANIFEST_BYTES_MAX};
use crate::format::policy_path::{self, MANIFEST_NAME, SIGNATURE_NAME};
use crate::format::records::Stamp;
use crate::format::signatures::SIGNATURE_LIST_BYTES_MAX;
use crate::format::text;
use crate::fs::read;

/// Where a candidate comes from.
#[derive(Clone, Debug)]
pub enum Source {
    Directory(PathBuf),
    /// A `.tar`, `.tar.gz` or `.tar.bz2` file; the compression is told by its first bytes,
    /// not its name.
    Archive(PathBuf),
    /// A tar stream (plain, gzip or bzip2) on standard input.
    Stdin,
    /// A directory holding one archive per part (`[[fetch.parts]]`), and the manifest and
    /// signature beside them: the candidate is the parts' content, each under its `to`.
    Parts {
        directory: PathBuf,
        parts: Vec<Part>,
    },
    /// What a pull from a repository left in `STORE/fetched/`: a manifest, its signature
    /// list and the objects the store lacked (`transport::repo::Pool`). Staged from the
    /// manifest only (`ops::ingest`); it has no tree to read. `url`: where it came from.
    Fetched {
        pool: PathBuf,
        url: String,
    },
}

impl Source {
    /// `-` is standard input; a directory is a tree, or, when `parts` are configured,
    /// the directory holding them; anything else must be an archive.
    pub fn from_argument(argument: &Path, parts: &[Part]) -> Source {
        if argument == Path::new("-") {
            Source::Stdin
        } else if argument.is_dir() && !parts.is_empty() {
            Source::Parts {
                directory: argument.to_path_buf(),
                parts: parts.to_vec(),
            }
        } else if argument.is_dir() {
            Source::Directory(argument.to_path_buf())
        } else {
            Source::Archive(argument.to_path_buf())
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Directory(path) | Source::Archive(path) => path.display().to_string(),
            Source::Stdin => "standard input".to_string(),
            Source::Fetched { url, .. } => url.clone(),
            Source::Parts { directory, parts } => format!(
                "{} ({})",
                directory.display(),
                parts
                    .iter()
                    .map(|part| part.file.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// What a source yields, in the order it is read.
pub enum Item {
    File {
        path: String,
        mode: u32,
        content: Vec<u8>,
        /// For a directory source: the file's identity and times when it was read.
        stamp: Option<Stamp>,
    },
    /// A file of a directory source that the caller's oracle recognized by its [`Stamp`]
    /// as unchanged since it last read it: admitted, but not read.
    Known {
        path: String,
        mode: u32,
        stamp: Stamp,
    },
    /// A directory with nothing in it, given after every file (sorted): the tree has it.
    EmptyDirectory(String),
    Manifest(Vec<u8>),
    Signature(Vec<u8>),
}

fn reject(path: Option<&str>, reason: impl Into<String>) -> Error {
    Rejection::new(Check::Source, path, reason).into()
}

/// The gate every file passes: name rules, modes, no duplicates, and the count and byte
/// limits of the configuration.
struct Admission<'a> {
    limits: &'a LimitsConfig,
    files: HashSet<String>,
    directories: HashSet<String>,
    bytes_total: u64,
}

impl<'a> Admission<'a> {
    fn new(limits: &'a LimitsConfig) -> Admission<'a> {
        Admission {
            limits,
            files: HashSet::new(),
            directories: HashSet::new(),
            bytes_total: 0,
        }
    }

    /// Checks a name as raw bytes and returns it as a policy path.
    fn path(&self, raw: &[u8]) -> Result<String> {
        // Made only for a refusal: most names pass.
        let shown = || policy_path::display(raw);
        let path = std::str::from_utf8(raw)
            .map_err(|_| reject(Some(&shown()), "name is not valid UTF-8"))?;
        policy_path::validate(path, self.limits.path_limits())
            .map_err(|error| reject(Some(&shown()), error.to_string()))?;
        // The envelope's names are files at the top, whatever the kind of source: nothing
        // may live below them.
        let top = path.split('/').next().unwrap_or(path);
        if top != path && (top == MANIFEST_NAME || top == SIGNATURE_NAME) {
            return Err(reject(Some(top), "must be a regular file"));
        }
        Ok(path.to_string())
    }

    /// The admitted directories with nothing below them, sorted; they count against
    /// `files_max` like files.
    fn empty_directories(&self) -> Result<Vec<String>> {
        let mut holding: HashSet<&str> = HashSet::new();
        for path in self.files.iter().chain(self.directories.iter()) {
            holding.extend(policy_path::ancestors(path));
        }
        let mut empty: Vec<String> = self
            .directories
            .iter()
            .filter(|directory| !holding.contains(directory.as_str()))
            .cloned()
            .collect();
        empty.sort_by(|first, second| first.as_bytes().cmp(second.as_bytes()));
        if self.files.len() + empty.len() > self.limits.files_max {
            return Err(reject(
                None,
                format!(
                    "more than {} files and empty directories",
                    self.limits.files_max
                ),
            ));
        }
        Ok(empty)
    }

    fn directory(&mut self, path: String) -> Result<()> {
        if self.files.contains(&path)
            || policy_path::ancestors(&path).any(|directory| self.files.contains(directory))
        {
            return Err(reject(Some(&path), "is both a file and a directory"));
        }
        // Directories are bounded like files: a source of nothing but directories must
        // not grow memory (or the tree) past the limits before anything is trusted.
        if !self.directories.contains(&path) && self.directories.len() >= self.limits.files_max {
            return Err(reject(
                Some(&path),
                format!("more than {} directories", self.limits.files_max),
            ));
        }
        self.directories.insert(path);
        Ok(())
    }

    fn file(&mut self, path: &str, mode: u32, size: u64) -> Result<()> {
        let limits = self.limits;
        if self.files.contains(path) {
            return Err(reject(Some(path), "appears twice in the source"));
        }
        if self.directories.contains(path)
            || policy_path::ancestors(path).any(|dir| self.files.contains(dir))
        {
            return Err(reject(Some(path), "is both a file and a directory"));
        }
        manifest::check_mode(mode).map_err(|reason| reject(Some(path), reason))?;
        if self.files.len() >= limits.files_max {
            return Err(reject(
                None,
                format!("more than {} files (limits.files_max)", limits.files_max),
            ));
        }
        if size > limits.file_bytes_max {
            return Err(reject(
                Some(path),
                format!(
                    "{size} bytes is over the limit of {} bytes per file (limits.file_bytes_max)",
                    limits.file_bytes_max
                ),
            ));
        }
        self.bytes_total = self.bytes_total.saturating_add(size);
        if self.bytes_total > limits.tree_bytes_max {
            return Err(reject(
                None,
                format!(
                    "more than {} bytes in all (limits.tree_bytes_max)",
                    limits.tree_bytes_max
                ),
            ));
        }
        self.files.insert(path.to_string());
        for directory in policy_path::ancestors(path) {
            self.directories.insert(directory.to_string());
        }
        Ok(())
    }
}

/// The stamp of what fstat or lstat returned.
pub fn stamp_of(metadata: &fs::Metadata) -> Stamp {
    {
        Stamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// Decides, from a directory source's file path, mode and stamp, whether its content is
/// known without reading it.
pub type KnownFn<'a> = &'a mut dyn FnMut(&str, u32, &Stamp) -> bool;

/// Reads `source` and hands each admitted item to `sink`.
pub fn read(
    source: &Source,
    limits: &LimitsConfig,
    sink: &mut dyn FnMut(Item) -> Result<()>,
) -> Result<()> {
    read_with(source, limits, None, sink)
}

/// Reads a tar stream (plain, gzip or bzip2) from memory under `limits`: what `ingest -`
/// does with standard input. For the fuzz targets and their corpus tests.
pub fn read_archive_bytes(
    bytes: &[u8],
    limits: &LimitsConfig,
    sink: &mut dyn FnMut(Item) -> Result<()>,
) -> Result<()> {
    let mut admission = Admission::new(limits);
    read_archive(bytes, &mut admission, None, sink)?;
    if admission.files.is_empty() {
        return Err(reject(None, "the source holds no policy files"));
    }
    Ok(())
}

/// The end of every read: a source without a file is refused, and the tree's empty
/// directories are given after its files.
fn finish(admission: &Admission, sink: &mut dyn FnMut(Item) -> Result<()>) -> Result<()> {
    if admission.files.is_empty() {
        return Err(reject(None, "the source holds no policy files"));
    }
    for directory in admission.empty_directories()? {
        sink(Item::EmptyDirectory(directory))?;
    }
    Ok(())
}

/// [`read`], asking `known` before reading each file of a directory source.
pub fn read_with(
    source: &Source,
    limits: &LimitsConfig,
    known: Option<KnownFn>,
    sink: &mut dyn FnMut(Item) -> Result<()>,
) -> Result<()> {
    let mut admission = Admission::new(limits);
    match source {
        Source::Directory(root) => read_directory(root, "", &mut admission, known, sink),
        Source::Archive(path) => {
            let file = open_archive(path)?;
            read_archive(BufReader::new(file), &mut admission, None, sink)
        }
        Source::Stdin => read_archive(
            BufReader::new(io::stdin().lock()),
            &mut admission,
            None,
            sink,
        ),
        Source::Parts { directory, parts } => read_parts(directory, parts, &mut admission, sink),
        Source::Fetched { pool, .. } => Err(Error::Refused(format!(
            "{}: what a pull fetched is staged from its manifest, never read as a tree",
            pool.display()
        ))),
    }?;
    finish(&admission, sink)
}

/// Opens an archive once, without following a symlink or blocking on a FIFO, and checked
/// to be a regular file on the open descriptor: a FIFO planted at the drop must not hold
/// the store lock forever.
fn open_archive(path: &Path) -> Result<File> {
    read::open_regular(path, usize::MAX).map_err(|error| match error {
        read::ReadError::Io(error) => Error::io("cannot open source", path)(error),
        read::ReadError::NotFound => {
            Error::io("cannot open source", path)(io::ErrorKind::NotFound.into())
        }
        refusal => reject(None, format!("{}: {refusal}", path.display())),
    })
}

/// Where the entries of one part's archive go: its `from` directory's content under `to`.
struct PartMap<'a> {
    part: &'a Part,
}

impl PartMap<'_> {
    /// The candidate path of the archive entry `name` (without `./` or a trailing `/`):
    /// `None` for `from` itself and the directories above it, which place nothing.
    fn map(&self, name: &[u8]) -> Result<Option<Vec<u8>>> {
        let Part { file, from, to } = self.part;
        let rest = if from.is_empty() {
            Some(name)
        } else if from.as_bytes() == name
            || from.as_bytes().starts_with(name) && from.as_bytes().get(name.len()) == Some(&b'/')
        {
            return Ok(None);
        } else {
            name.strip_prefix(from.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"/"))
        };
        match rest {
            Some(rest) if !rest.is_empty() => {
                let mut mapped = to.as_bytes().to_vec();
                mapped.push(b'/');
                mapped.extend_from_slice(rest);
                Ok(Some(mapped))
            }
            _ => Err(reject(
                Some(&policy_path::display(name)),
                format!("lies outside {from}/, the one directory taken from {file}"),
            )),
        }
    }
}

/// Reads a directory made of parts: the manifest and signature beside the archives, then
/// each archive.
fn read_parts(
    directory: &Path,
    parts: &[Part],
    admission: &mut Admission,
    sink: &mut dyn FnMut(Item) -> Result<()>,
) -> Result<()> {
    for (name, limit) in [
        (MANIFEST_NAME, MANIFEST_BYTES_MAX),
        (SIGNATURE_NAME, SIGNATURE_LIST_BYTES_MAX),
    ] {
        let path = directory.join(name);
        let content = match read::read_regular(&path, limit) {
            Ok(content) => content,
            Err(read::ReadError::NotFound) => continue,
            Err(read::ReadError::Io(error)) => {
                return Err(Error::io("cannot read source file", &path)(error));
            }
            Err(refusal) => return Err(reject(Some(name), refusal.to_string())),
        };
        sink(if name == MANIFEST_NAME {
            Item::Manifest(content)
        } else {
            Item::Signature(content)
        })?;
    }
    let located: Vec<(&Part, PathBuf)> = parts
        .iter()
        .map(|part| (part, directory.join(&part.file)))
        .collect();
    read_part_archives(&located, admission, sink)
}

/// Reads archives as the parts of one candidate (what the server's `polstore manifest
/// --part` signs), wherever each archive is.
pub fn read_parts_at(
    parts: &[(Part, PathBuf)],
    limits: &LimitsConfig,
    sink: &mut dyn FnMut(Item) -> Result<()>,
) -> Result<()> {
    let mut admission = Admission::new(limits);
    let located: Vec<(&Part, PathBuf)> = parts
        .iter()
        .map(|(part, path)| (part, path.clone()))
        .collect();
    read_part_archives(&located, &mut admission, sink)?;
    finish(&admission, sink)
}

/// Each part's archive under one admission: the limits count for the whole candidate.
fn read_part_archives(
    parts: &[(&Part, PathBuf)],
    admission: &mut Admission,
    sink: &mut dyn FnMut(Item) -> Result<()>,
) -> Result<()> {
    for (part, path) in parts {
        let file = open_archive(path)?;
        // The part's place is in the candidate even when its archive holds nothing there.
        let to = admission.path(part.to.as_bytes())?;
        admission.directory(to)?;
        read_archive(
            BufReader::new(file),
            admission,
            Some(&PartMap { part }),
            sink,
        )
        .map_err(|error| match error {
            Error::Rejected(mut rejection) if rejection.path.is_none() => {
                rejection.reason = format!("{}: {}", part.file, rejection.reason);
                Error::Rejected(rejection)
            }
            other => other,
        })?;
    }
    Ok(())
}

/// Reads several directories as one tree, each under a top-level directory of its own:
/// `NAME/` holds what the directory holds, and nothing when it is `None` (a view with no
/// directory yet). What adoption into several views reads. One admission for the whole
/// tree, so the count and byte limits bound all of it together, and every path is checked
/// as the tree will hold it, `NAME/` included. The envelope's names at the top of each
/// directory are handed over as [`Item::Manifest`] and [`Item::Signature`], as [`read`]
/// hands them over at the top of its one directory.
pub fn read_directories(
    roots: &[(&str, Option<&Path>)],
    limits: &LimitsConfig,
    sink: &mut dyn FnMut(Item) -> Result<()>,
) -> Result<()> {
    let mut admission = Admission::new(limits);
    for (name, root) in roots {
        let top = admission.path(name.as_bytes())?;
        admission.directory(top.clone())?;
        if let Some(root) = root {
            read_directory(root, &format!("{top}/"), &mut admission, None, sink)?;
        }
    }
    finish(&admission, sink)
}

/// Reads the directory `root` into the tree under `root_prefix` (empty, or `NAME/`).
fn read_directory(
    root: &Path,
    root_prefix: &str,
    admission: &mut Admission,
    mut known: Option<KnownFn>,
    sink: &mut dyn FnMut(Item) -> Result<()>,
) -> Result<()> {
    let metadata = fs::metadata(root).map_err(Error::io("cannot read source", root))?;
    if !metadata.is_dir() {
        return Err(reject(
            None,
            format!("{} is not a directory", root.display()),
        ));
    }
    // Depth-first with an explicit stack, names sorted so that the order is stable.
    let mut stack = vec![(root.to_path_buf(), root_prefix.to_string())];
    while let Some((directory, prefix)) = stack.pop() {
        // Files are opened relative to their directory, so no path is walked twice.
        let handle = File::options()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW).bits() as i32,
            )
            .open(&directory)
            .map_err(Error::io("cannot read source directory", &directory))?;
        let mut names = Vec::new();
        // Listed through the descriptor just opened, not the path again.
        let listing = rustix::fs::Dir::read_from(&handle)
            .map_err(|error| Error::io("cannot read source directory", &directory)(error.into()))?;
        for entry in listing {
            let entry = entry.map_err(|error| {
                Error::io("cannot read source directory", &directory)(error.into())
            })?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            // The type from the directory entry needs no stat; it only picks the way
            // in, and what is opened is checked again with fstat.
            // Some file systems do not fill it in: then one lstat of the entry.
            let file_type = match entry.file_type() {
                rustix::fs::FileType::Unknown => rustix::fs::statat(
                    &handle,
                    entry.file_name(),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode))
                .unwrap_or(rustix::fs::FileType::Unknown),
                known => known,
            };
            let is_file = file_type == rustix::fs::FileType::RegularFile;
            names.push((
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name).to_os_string(),
                is_file,
            ));
        }
        names.sort();
        let mut subdirectories = Vec::new();
        for (name, is_file) in names {
            let raw = name.as_encoded_bytes();
            let mut relative = prefix.as_bytes().to_vec();
            relative.extend_from_slice(raw);
            let full = directory.join(&name);
            let is_envelope = prefix == root_prefix
                && (raw == MANIFEST_NAME.as_bytes() || raw == SIGNATURE_NAME.as_bytes());
            if is_file && !is_envelope {
                let path = admission.path(&relative)?;
                if let Some(known) = known.as_mut()
                    && let Some(stamp) = known_file_at(&handle, &name, &path, admission, known)?
                {
                    let mode = stamp.1;
                    sink(Item::Known {
                        path,
                        mode,
                        stamp: stamp.0,
                    })?;
                    continue;
                }
                let (mode, content, stamp) = read_file_at(&handle, &name, &full, &path, admission)?;
                sink(Item::File {
                    path,
                    mode,
                    content,
                    stamp: Some(stamp),
                })?;
                continue;
            }
            let metadata =
                fs::symlink_metadata(&full).map_err(Error::io("cannot read source", &full))?;
            if prefix == root_prefix
                && (raw == MANIFEST_NAME.as_bytes() || raw == SIGNATURE_NAME.as_bytes())
            {
                let limit = if raw == MANIFEST_NAME.as_bytes() {
                    MANIFEST_BYTES_MAX
                } else {
                    SIGNATURE_LIST_BYTES_MAX
                };
                let content = read_regular(
                    &full,
                    &metadata,
                    limit as u64,
                    &String::from_utf8_lossy(raw),
                )?;
                sink(if raw == MANIFEST_NAME.as_bytes() {
                    Item::Manifest(content)
                } else {
                    Item::Signature(content)
                })?;
                continue;
            }
            let path = admission.path(&relative)?;
            let kind = metadata.file_type();
            if kind.is_dir() {
                admission.directory(path.clone())?;
                subdirectories.push((full, format!("{path}/")));
            } else if kind.is_file() {
                if metadata.nlink() > 1 {
                    return Err(reject(
                        Some(&path),
                        format!(
                            "is a hard link ({} links); only files with one link are accepted",
                            metadata.nlink()
                        ),
                    ));
                }
                let mode = metadata.mode() & 0o7777;
                admission.file(&path, mode, metadata.len())?;
                let content =
                    read_regular(&full, &metadata, admission.limits.file_bytes_max, &path)?;
                sink(Item::File {
                    path,
                    mode,
                    content,
                    stamp: Some(stamp_of(&metadata)),
                })?;
            } else {
                return Err(reject(
                    Some(&path),
                    format!(
                        "is a {}; only regular files and directories are accepted",
                        crate::fs::type_name(metadata.file_type())
                    ),
                ));
            }
        }
        // Reversed so that the stack pops them in name order.
        stack.extend(subdirectories.into_iter().rev());
    }
    Ok(())
}

/// What [`ListedFiles::check_listing`] compares the source's listing with, and what it saw.
struct Listing<'m, 's> {
    files: &'s HashSet<&'m str>,
    directories: &'s HashSet<&'m str>,
    /// Whether the manifest lists empty directories (version 2).
    empty_listed: bool,
    seen: HashSet<&'m str>,
    seen_empty: HashSet<String>,
}

/// The files a manifest lists, read one by one from a directory source: only those whose
/// content the store does not hold. Each goes through the same admission as in a walk of
/// the directory (regular, one link, its mode and size within the limits), opened
/// relative to its directory, and no directory on the way is followed through a symlink.
pub struct ListedFiles<'a> {
    root: File,
    root_path: PathBuf,
    admission: Admission<'a>,
}

impl<'a> ListedFiles<'a> {
    pub fn open(root: &Path, limits: &'a LimitsConfig) -> Result<ListedFiles<'a>> {
        let root_file = File::options()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::CLOEXEC)
                    .bits() as i32,
            )
            .open(root)
            .map_err(Error::io("cannot read source directory", root))?;
        Ok(ListedFiles {
            root: root_file,
            root_path: root.to_path_buf(),
            admission: Admission::new(limits),
        })
    }

    /// Looks at every name in the directory, without reading or stat-ing the files the
    /// manifest lists (one listing of each directory): a name the path rules refuse, a
    /// symlink or anything else that is not a regular file or a directory, a hard link or
    /// a file the manifest does not list, and an empty directory it does not list, are
    /// refused as a walk of the whole source refuses them. What the source says of a
    /// listed file (its mode, its content) matters only if it is read.
    pub fn check_listing(&mut self, manifest: &manifest::Manifest) -> Result<()> {
        let files: HashSet<&str> = manifest
            .entries
            .iter()
            .map(|entry| entry.path.as_str())
            .collect();
        let mut directories: HashSet<&str> = HashSet::new();
        for path in files
            .iter()
            .copied()
            .chain(manifest.directories.iter().map(String::as_str))
        {
            directories.extend(policy_path::ancestors(path));
        }
        directories.extend(manifest.directories.iter().map(String::as_str));
        let mut listing = Listing {
            files: &files,
            directories: &directories,
            // A version 1 manifest does not describe empty directories: the source's are
            // left out, not refused.
            empty_listed: manifest.version() >= manifest::FORMAT_VERSION_DIRECTORIES,
            seen: HashSet::new(),
            seen_empty: HashSet::new(),
        };
        let root = self
            .root
            .try_clone()
            .map_err(Error::io("cannot read source directory", &self.root_path))?;
        self.list_directory(root, String::new(), false, &mut listing)?;
        // Everything the manifest lists must be there too, as a walk of the source requires.
        if let Some(missing) = manifest
            .entries
            .iter()
            .find(|entry| !listing.seen.contains(entry.path.as_str()))
        {
            return Err(Rejection::new(
                Check::Integrity,
                Some(&missing.path),
                "listed in the manifest but missing from the source",
            )
            .into());
        }
        if let Some(missing) = manifest
            .directories
            .iter()
            .find(|directory| !listing.seen_empty.contains(directory.as_str()))
        {
            return Err(Rejection::new(
                Check::Integrity,
                Some(missing),
                "the manifest lists this empty directory, the source does not have it",
            )
            .into());
        }
        Ok(())
    }

    /// Lists one directory of the source (`prefix`: its path and `/`, empty at the top),
    /// then each of its subdirectories in turn: one open directory per level, so the
    /// descriptors held are bounded by the depth the path rules allow.
    fn list_directory<'m>(
        &mut self,
        handle: File,
        prefix: String,
        unlisted: bool,
        listing: &mut Listing<'m, '_>,
    ) -> Result<()> {
        use rustix::fs::{AtFlags, FileType, OFlags};
        let shown = self.root_path.join(&prefix);
        let entries = rustix::fs::Dir::read_from(&handle)
            .map_err(|error| Error::io("cannot read source directory", &shown)(error.into()))?;
        let mut empty = true;
        let mut subdirectories = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|error| Error::io("cannot read source directory", &shown)(error.into()))?;
            let name = entry.file_name();
            let raw = name.to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            empty = false;
            if prefix.is_empty()
                && (raw == MANIFEST_NAME.as_bytes() || raw == SIGNATURE_NAME.as_bytes())
            {
                continue;
            }
            let mut relative = prefix.as_bytes().to_vec();
            relative.extend_from_slice(raw);
            let path = self.admission.path(&relative)?;
            let mut file_type = entry.file_type();
            let mut stat = None;
            if file_type == FileType::Unknown
                || (file_type == FileType::RegularFile && !listing.files.contains(path.as_str()))
            {
                let found = rustix::fs::statat(&handle, name, AtFlags::SYMLINK_NOFOLLOW).map_err(
                    |error| {
                        Error::io("cannot read source", &self.root_path.join(&path))(error.into())
                    },
                )?;
                file_type = FileType::from_raw_mode(found.st_mode);
                stat = Some(found);
            }
            match file_type {
                FileType::RegularFile => match listing.files.get(path.as_str()) {
                    Some(listed) => {
                        listing.seen.insert(listed);
                    }
                    None => {
                        if let Some(stat) = stat
                            && stat.st_nlink > 1
                        {
                            return Err(reject(
                                Some(&path),
                                format!(
                                    "is a hard link ({} links); only files with one link are accepted",
                                    stat.st_nlink
                                ),
                            ));
                        }
                        return Err(Rejection::new(
                            Check::Integrity,
                            Some(&path),
                            "not listed in the manifest",
                        )
                        .into());
                    }
                },
                FileType::Directory => {
                    self.admission.directory(path.clone())?;
                    let listed = listing.directories.contains(path.as_str());
                    subdirectories.push((name.to_owned(), path, !listed));
                }
                other => {
                    let kind = match other {
                        FileType::Symlink => "symbolic link",
                        FileType::Fifo => "fifo",
                        FileType::Socket => "socket",
                        FileType::CharacterDevice | FileType::BlockDevice => "device node",
                        _ => "special file",
                    };
                    return Err(reject(
                        Some(&path),
                        format!("is a {kind}; only regular files and directories are accepted"),
                    ));
                }
            }
        }
        let directory = prefix.trim_end_matches('/');
        if empty {
            listing.seen_empty.insert(directory.to_string());
            if unlisted && listing.empty_listed {
                return Err(Rejection::new(
                    Check::Integrity,
                    Some(directory),
                    "an empty directory the manifest does not list",
                )
                .into());
            }
        }
        // Each subdirectory opened only when its turn comes, from this one (held open, one
        // per level), not followed through a symlink.
        for (name, path, unlisted) in subdirectories {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let opened = rustix::fs::openat(&handle, &name, flags, rustix::fs::Mode::empty())
                .map_err(|_| reject(Some(&path), "changed while it was being read"))?;
            self.list_directory(File::from(opened), format!("{path}/"), unlisted, listing)?;
        }
        Ok(())
    }

    /// The mode and content of `path` (a policy path that passed validation), or `None`
    /// when nothing is there.
    pub fn read(&mut self, path: &str) -> Result<Option<(u32, Vec<u8>)>> {
        use rustix::fs::{AtFlags, FileType, Mode, OFlags};
        let full = self.root_path.join(path);
        let (directories, name) = match path.rsplit_once('/') {
            Some((directories, name)) => (Some(directories), name),
            None => (None, path),
        };
        let mut directory: Option<File> = None;
        for component in directories.into_iter().flat_map(|path| path.split('/')) {
            let parent = directory.as_ref().unwrap_or(&self.root);
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(parent, component, flags, Mode::empty()) {
                Ok(fd) => directory = Some(File::from(fd)),
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                    return Err(reject(
                        Some(path),
                        format!("{component}, above it, is not a directory"),
                    ));
                }
                Err(error) => {
                    return Err(Error::io("cannot read source directory", &full)(
                        error.into(),
                    ));
                }
            }
        }
        let parent = directory.as_ref().unwrap_or(&self.root);
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(error) => return Err(Error::io("cannot read source", &full)(error.into())),
            Ok(stat) => {
                let file_type = FileType::from_raw_mode(stat.st_mode);
                if file_type != FileType::RegularFile {
                    let shown = fs::symlink_metadata(&full)
                        .map(|metadata| crate::fs::type_name(metadata.file_type()))
                        .unwrap_or("special file");
                    return Err(reject(
                        Some(path),
                        format!("is a {shown}; only regular files and directories are accepted"),
                    ));
                }
            }
        }
        let (mode, content, _) = read_file_at(
            parent,
            std::ffi::OsStr::new(name),
            &full,
            path,
            &mut self.admission,
        )?;
        Ok(Some((mode, content)))
    }
}

/// Reads the regular file at `full` (not following a symlink) if it still has `stamp`:
/// for a file recognized as known whose stored copy turned out unusable.
pub fn read_stamped(full: &Path, path: &str, stamp: &Stamp) -> Result<Vec<u8>> {
    let file = File::options()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(full)
        .map_err(|_| reject(Some(path), "changed while it was being read"))?;
    let metadata = file
        .metadata()
        .map_err(Error::io("cannot read source file", full))?;
    if !metadata.is_file() || stamp_of(&metadata) != *stamp {
        return Err(reject(Some(path), "changed while it was being read"));
    }
    read_exactly(&file, stamp.size, full, path)
}

/// Reads exactly `size` bytes from `file`: one read for most files. Bytes appended
/// meanwhile are not read; what is read is what is hashed and checked against the
/// manifest. A file that got shorter is refused.
fn read_exactly(mut file: &File, size: u64, full: &Path, path: &str) -> Result<Vec<u8>> {
    let mut content = vec![0; size as usize];
    let mut filled = 0;
    while filled < content.len() {
        let read = file
            .read(&mut content[filled..])
            .map_err(Error::io("cannot read source file", full))?;
        if read == 0 {
            return Err(reject(Some(path), "changed size while it was being read"));
        }
        filled += read;
    }
    Ok(content)
}

/// Stats `name` in `directory` without following a symlink and asks `known` about it.
/// If it is known, it is admitted (a regular file with one link, its mode and size) and
/// returned with its stamp and mode; otherwise `None`, and the caller reads it.
fn known_file_at(
    directory: &File,
    name: &std::ffi::OsStr,
    path: &str,
    admission: &mut Admission,
    known: &mut dyn FnMut(&str, u32, &Stamp) -> bool,
) -> Result<Option<(Stamp, u32)>> {
    let Ok(stat) = rustix::fs::statat(directory, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
    else {
        return Ok(None);
    };
    let file_type = rustix::fs::FileType::from_raw_mode(stat.st_mode);
    if file_type != rustix::fs::FileType::RegularFile || stat.st_nlink != 1 {
        return Ok(None);
    }
    let mode = stat.st_mode & 0o7777;
    let stamp = Stamp {
        dev: stat.st_dev,
        ino: stat.st_ino,
        size: stat.st_size as u64,
        mtime: (stat.st_mtime, stat.st_mtime_nsec as i64),
        ctime: (stat.st_ctime, stat.st_ctime_nsec as i64),
    };
    if !known(path, mode, &stamp) {
        return Ok(None);
    }
    admission.file(path, mode, stamp.size)?;
    Ok(Some((stamp, mode)))
}

/// Opens `name` in the directory `directory` without following a symlink, and reads it
/// under the admission rules, all checks made on the opened file (fstat): a regular file
/// with one link, its mode and size admitted.
fn read_file_at(
    directory: &File,
    name: &std::ffi::OsStr,
    full: &Path,
    path: &str,
    admission: &mut Admission,
) -> Result<(u32, Vec<u8>, Stamp)> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = match rustix::fs::openat(directory, name, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        // A symlink (or anything else) put in its place since the directory was listed.
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NXIO) => {
            return Err(reject(Some(path), "changed while it was being read"));
        }
        Err(error) => {
            return Err(Error::io("cannot open source file", full)(error.into()));
        }
    };
    let metadata = file
        .metadata()
        .map_err(Error::io("cannot read source file", full))?;
    if !metadata.is_file() {
        return Err(reject(Some(path), "changed while it was being read"));
    }
    if metadata.nlink() > 1 {
        return Err(reject(
            Some(path),
            format!(
                "is a hard link ({} links); only files with one link are accepted",
                metadata.nlink()
            ),
        ));
    }
    let mode = metadata.mode() & 0o7777;
    admission.file(path, mode, metadata.len())?;
    // Exactly the size fstat gave, admitted above, so within the limits.
    let content = read_exactly(&file, metadata.len(), full, path)?;
    Ok((mode, content, stamp_of(&metadata)))
}

/// Reads a regular file that `lstat` showed as `expected`, refusing it if it was swapped
/// for something else in between (opened with O_NOFOLLOW, checked again with fstat).
fn read_regular(path: &Path, expected: &fs::Metadata, limit: u64, shown: &str) -> Result<Vec<u8>> {
    if !expected.file_type().is_file() {
        return Err(reject(
            Some(shown),
            format!(
                "is a {}; expected a regular file",
                crate::fs::type_name(expected.file_type())
            ),
        ));
    }
    if expected.len() > limit {
        return Err(reject(Some(shown), format!("is larger than {limit} bytes")));
    }
    let file = File::options()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(Error::io("cannot open source file", path))?;
    let opened = file
        .metadata()
        .map_err(Error::io("cannot read source file", path))?;
    if opened.ino() != expected.ino() || opened.dev() != expected.dev() || !opened.is_file() {
        return Err(reject(Some(shown), "changed while it was being read"));
    }
    let mut content = Vec::with_capacity(opened.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut content)
        .map_err(Error::io("cannot read source file", path))?;
    if content.len() as u64 != expected.len() {
        return Err(reject(Some(shown), "changed size while it was being read"));
    }
    Ok(content)
}

/// The compression of an archive, told by its first bytes (its magic), never by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Bzip2,
}

impl Compression {
    fn of(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
        }
    }
}

/// What happened to the byte stream under the tar reader, so that its errors are told
/// apart by what happened rather than by the words of the tar, gzip or bzip2 crate.
#[derive(Debug, Default)]
struct StreamState {
    /// The stream ended (the input, or the decompressed data).
    ended: bool,
    /// More bytes than the limits can ever need.
    too_large: bool,
    /// The decompressor refused its input: what was wrong with it, on one bounded line.
    damage: Option<String>,
}

/// Stops a decompressor or a lying archive from feeding more bytes than the limits can
/// ever need, and records in `state` how the stream ended.
struct CappedReader<R> {
    inner: R,
    remaining: u64,
    state: Rc<RefCell<StreamState>>,
    /// What `inner` decompresses, if anything: its errors are then about the compressed
    /// data.
    compression: Compression,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            self.state.borrow_mut().too_large = true;
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                ARCHIVE_TOO_LARGE,
            ));
        }
        let allowed = buffer
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        match self.inner.read(&mut buffer[..allowed]) {
            Ok(0) if !buffer.is_empty() => {
                self.state.borrow_mut().ended = true;
                Ok(0)
            }
            Ok(count) => {
                self.remaining -= count as u64;
                Ok(count)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Err(error),
            Err(error) => {
                // A compressed stream cut short is a truncated archive (both decoders say
                // UnexpectedEof); any other error of a decompressor is about its input. The
                // plain input's own I/O errors are neither.
                let mut state = self.state.borrow_mut();
                if error.kind() == io::ErrorKind::UnexpectedEof {
                    state.ended = true;
                } else if self.compression != Compression::None {
                    state.damage = Some(damage(&error));
                }
                Err(error)
            }
        }
    }
}

/// What a decompressor's error says was wrong with its input: bzip2's typed errors in our
/// words, gzip's (flate2's are not typed) in flate2's, on one bounded line.
fn damage(error: &io::Error) -> String {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<bzip2::Error>())
    {
        Some(bzip2::Error::Data) => "the compressed data is corrupt".to_string(),
        Some(bzip2::Error::DataMagic) => "no bzip2 magic where a stream should start".to_string(),
        _ => text::one_line(&error.to_string(), text::QUOTED_CHARS_MAX),
    }
}

const ARCHIVE_TOO_LARGE: &str = "archive is larger than the configured limits allow";
const ARCHIVE_TRUNCATED: &str = "the archive is truncated";
/// Tar spends at most a header block, a long-name block pair and padding per entry.
const ARCHIVE_BYTES_PER_ENTRY_MAX: u64 = 4 * 512 + 2 * 4096;
/// What a compressed archive may hold after the tar's first end-of-archive block: a tar
/// writer pads its end to a whole record (10 KiB by default), and nothing else belongs
/// there.
const ARCHIVE_END_PADDING_BYTES_MAX: u64 = 1 << 20;

/// Reads a tar stream. With `map` (a part of a drop made of parts), every entry is placed
/// where the map says, and the archive carries no manifest or signature of its own.
fn read_archive(
    mut input: impl io::BufRead,
    admission: &mut Admission,
    map: Option<&PartMap>,
    sink: &mut dyn FnMut(Item) -> Result<()>,
) -> Result<()> {
    let limits = admission.limits;
    // Decompressed bytes count here, against the same cap, whatever the compression.
    let cap = limits
        .tree_bytes_max
        .saturating_add((limits.files_max as u64 + 64).saturating_mul(ARCHIVE_BYTES_PER_ENTRY_MAX))
        .saturating_add(MANIFEST_BYTES_MAX as u64 + SIGNATURE_LIST_BYTES_MAX as u64);
    let magic = input
        .fill_buf()
        .map_err(|error| reject(None, format!("cannot read the archive: {error}")))?;
    if magic.is_empty() {
        return Err(reject(None, "the source is empty"));
    }
    let compression = Compression::of(magic);
    let state = Rc::new(RefCell::new(StreamState::default()));
    // Both decoders read every stream of a concatenation (as `pbzip2` and `cat a.gz b.gz`
    // write), and each stream must be whole: a cut one is truncated, anything else after
    // a stream's end is damage.
    let inner: Box<dyn Read + '_> = match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Compression::None => Box::new(input),
    };
    let reader = CappedReader {
        inner,
        remaining: cap,
        state: Rc::clone(&state),
        compression,
    };
    let mut archive = tar::Archive::new(reader);
    let archive_error = |error: io::Error| -> Error {
        let stream = state.borrow();
        if stream.too_large {
            reject(None, ARCHIVE_TOO_LARGE)
        } else if let Some(damage) = &stream.damage {
            reject(
                None,
                format!("not a valid {} stream: {damage}", compression.name()),
            )
        } else if stream.ended || error.kind() == io::ErrorKind::UnexpectedEof {
            reject(None, ARCHIVE_TRUNCATED)
        } else {
            // The tar reader's messages quote the hostile header's bytes.
            reject(
                None,
                format!(
                    "not a valid tar archive: {}",
                    policy_path::display(error.to_string().as_bytes())
                ),
            )
        }
    };
    let mut seen_top_level = HashSet::new();
    // Raw entries: the extension headers (GNU long names, PAX records) come to us as
    // entries of their own, read here with a bound, instead of being read whole by the
    // tar reader before any limit applies.
    let mut extension = Extension::default();
    for entry in archive.entries().map_err(archive_error)?.raw(true) {
        let mut entry = entry.map_err(archive_error)?;
        let header_type = entry.header().entry_type();
        if extension.absorb(&mut entry, header_type, limits, &archive_error)? {
            continue;
        }
        let long_name = std::mem::take(&mut extension).name;
        let raw_path = match long_name {
            Some(name) => name,
            None => entry.path_bytes().into_owned(),
        };
        let mut name: &[u8] = &raw_path;
        while let Some(rest) = name.strip_prefix(b"./") {
            name = rest;
        }
        let mapped;
        if let Some(map) = map {
            let bare = name.strip_suffix(b"/").unwrap_or(name);
            if bare.is_empty() || bare == b"." {
                continue;
            }
            match map.map(bare)? {
                Some(path) => mapped = path,
                None if header_type.is_dir() => continue,
                None => {
                    let shown = policy_path::display(bare);
                    return Err(reject(Some(&shown), "must be a directory"));
                }
            }
            name = &mapped;
        }
        if header_type.is_dir() {
            let name = name.strip_suffix(b"/").unwrap_or(name);
            if name.is_empty() || name == b"." {
                continue;
            }
            if map.is_none()
                && (name == MANIFEST_NAME.as_bytes() || name == SIGNATURE_NAME.as_bytes())
            {
                let shown = String::from_utf8_lossy(name);
                return Err(reject(Some(&shown), "must be a regular file"));
            }
            let path = admission.path(name)?;
            admission.directory(path)?;
            continue;
        }
        if map.is_none() && (name == MANIFEST_NAME.as_bytes() || name == SIGNATURE_NAME.as_bytes())
        {
            let shown = String::from_utf8_lossy(name).into_owned();
            if !header_type.is_file() {
                return Err(reject(Some(&shown), "must be a regular file"));
            }
            if !seen_top_level.insert(shown.clone()) {
                return Err(reject(Some(&shown), "appears twice in the source"));
            }
            let limit = if shown == MANIFEST_NAME {
                MANIFEST_BYTES_MAX
            } else {
                SIGNATURE_LIST_BYTES_MAX
            } as u64;
            let content = read_entry(&mut entry, limit, &shown, &archive_error)?;
            sink(if shown == MANIFEST_NAME {
                Item::Manifest(content)
            } else {
                Item::Signature(content)
            })?;
            continue;
        }
        let path = admission.path(name)?;
        if !header_type.is_file() {
            let kind = match header_type {
                tar::EntryType::Symlink => "symbolic link",
                tar::EntryType::Link => "hard link",
                tar::EntryType::Char | tar::EntryType::Block => "device node",
                tar::EntryType::Fifo => "fifo",
                _ => "special entry",
            };
            return Err(reject(
                Some(&path),
                format!("is a {kind}; only regular files and directories are accepted"),
            ));
        }
        let mode = entry.header().mode().map_err(archive_error)? & 0o7777;
        let size = entry.header().size().map_err(archive_error)?;
        admission.file(&path, mode, size)?;
        let content = read_entry(
            &mut entry,
            admission.limits.file_bytes_max,
            &path,
            &archive_error,
        )?;
        // The tar reader ends an entry's data early, without an error, at the end of the
        // input.
        if content.len() as u64 != size {
            return Err(reject(None, ARCHIVE_TRUNCATED));
        }
        sink(Item::File {
            path,
            mode,
            content,
            stamp: None,
        })?;
    }
    if extension.name.is_some() {
        return Err(reject(
            None,
            "the archive ends with an extension header that describes no entry",
        ));
    }
    // The tar reader stops at the first end-of-archive block. Behind it, a compressed
    // stream still holds the tar's padding and its own end: gzip's CRC-32 and length,
    // bzip2's last block and checksums. It is read to its end, bounded, so that a stream
    // cut or damaged there is refused like one cut or damaged earlier.
    if compression != Compression::None {
        let mut rest = archive.into_inner().take(ARCHIVE_END_PADDING_BYTES_MAX + 1);
        let count = io::copy(&mut rest, &mut io::sink()).map_err(archive_error)?;
        if count > ARCHIVE_END_PADDING_BYTES_MAX {
            return Err(reject(
                None,
                format!(
                    "more than {ARCHIVE_END_PADDING_BYTES_MAX} bytes follow the end of the tar archive"
                ),
            ));
        }
    }
    Ok(())
}

/// What the extension headers before an entry said about it.
#[derive(Default)]
struct Extension {
    /// The entry's name, from a GNU long-name header or a PAX `path` record.
    name: Option<Vec<u8>>,
}

/// A PAX extension header is read up to this size: a path, times and ids take far less.
const PAX_HEADER_BYTES_MAX: u64 = 64 << 10;

impl Extension {
    /// Takes in `entry` if it is an extension header; returns whether it was one. Refuses
    /// what polstore does not read correctly rather than turn it into other paths: sparse
    /// files (GNU `S` entries and PAX `GNU.sparse.*` records), PAX sizes, and an
    /// extension header that is not followed by the entry it describes.
    fn absorb(
        &mut self,
        entry: &mut tar::Entry<impl Read>,
        header_type: tar::EntryType,
        limits: &LimitsConfig,
        archive_error: &dyn Fn(io::Error) -> Error,
    ) -> Result<bool> {
        let name_limit = limits.path_bytes_max as u64 + 1;
        match header_type {
            tar::EntryType::GNULongName => {
                let bytes = read_entry(entry, name_limit, "a GNU long name", archive_error)?;
                let name = bytes.strip_suffix(b"\0").unwrap_or(&bytes).to_vec();
                self.name = Some(name);
                Ok(true)
            }
            tar::EntryType::GNULongLink => {
                // Only links have a link name, and links are refused; read it bounded.
                read_entry(entry, name_limit, "a GNU long link name", archive_error)?;
                Ok(true)
            }
            tar::EntryType::XGlobalHeader => {
                // `git archive` writes one with the commit id; it names no file.
                read_entry(
                    entry,
                    PAX_HEADER_BYTES_MAX,
                    "a PAX global header",
                    archive_error,
                )?;
                Ok(true)
            }
            tar::EntryType::XHeader => {
                let bytes = read_entry(entry, PAX_HEADER_BYTES_MAX, "a PAX header", archive_error)?;
                for record in tar::PaxExtensions::new(&bytes) {
                    let record = record.map_err(|_| reject(None, "a PAX header is malformed"))?;
                    let key = record.key_bytes();
                    if key == b"path" {
                        self.name = Some(record.value_bytes().to_vec());
                    } else if key.starts_with(b"GNU.sparse.") {
                        return Err(reject(
                            None,
                            "sparse files are not accepted (a PAX GNU.sparse record)",
                        ));
                    } else if key == b"size" {
                        return Err(reject(
                            None,
                            "a PAX size record is not accepted (no policy file needs one)",
                        ));
                    }
                }
                Ok(true)
            }
            tar::EntryType::GNUSparse => Err(reject(None, "sparse files are not accepted")),
            _ => Ok(false),
        }
    }
}

fn read_entry(
    entry: &mut impl Read,
    limit: u64,
    shown: &str,
    archive_error: &dyn Fn(io::Error) -> Error,
) -> Result<Vec<u8>> {
    let mut content = Vec::new();
    entry
        .take(limit + 1)
        .read_to_end(&mut content)
        .map_err(archive_error)?;
    if content.len() as u64 > limit {
        return Err(reject(Some(shown), format!("is larger than {limit} bytes")));
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compression_is_told_by_the_first_bytes() {
        assert_eq!(Compression::of(b"\x1f\x8b\x08\0"), Compression::Gzip);
        assert_eq!(Compression::of(b"BZh91AY&SY"), Compression::Bzip2);
        assert_eq!(Compression::of(b"promises.cf\0\0\0"), Compression::None);
        assert_eq!(Compression::of(b"BZ"), Compression::None);
    }

    /// What a [`CappedReader`] over a reader failing with `error` records of the stream.
    fn state_after(error: io::Error, compression: Compression) -> StreamState {
        struct Failing(Option<io::Error>);
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(self.0.take().expect("read once"))
            }
        }
        let state = Rc::new(RefCell::new(StreamState::default()));
        let mut reader = CappedReader {
            inner: Failing(Some(error)),
            remaining: 1 << 20,
            state: Rc::clone(&state),
            compression,
        };
        reader.read(&mut [0; 512]).unwrap_err();
        state.take()
    }

    #[test]
    fn a_decoder_s_errors_are_told_by_their_kind_and_type_never_their_words() {
        let cut = || io::Error::new(io::ErrorKind::UnexpectedEof, "whatever the words");
        for compression in [Compression::Gzip, Compression::Bzip2, Compression::None] {
            let state = state_after(cut(), compression);
            assert!(state.ended && state.damage.is_none(), "{compression:?}");
        }
        let cases = [
            (bzip2::Error::Data, "the compressed data is corrupt"),
            (
                bzip2::Error::DataMagic,
                "no bzip2 magic where a stream should start",
            ),
        ];
        for (error, words) in cases {
            let error = io::Error::new(io::ErrorKind::InvalidInput, error);
            let state = state_after(error, Compression::Bzip2);
            assert_eq!(state.damage.as_deref(), Some(words));
            assert!(!state.ended);
        }
        // flate2's errors carry only words: quoted on one bounded line.
        let error = io::Error::new(io::ErrorKind::InvalidInput, "corrupt\n\x1b[2J stream");
        let state = state_after(error, Compression::Gzip);
        assert_eq!(state.damage.as_deref(), Some("corrupt\\n\\e[2J stream"));
        // The plain input's own I/O errors are no damage to a compressed stream.
        let state = state_after(io::Error::other("disk error"), Compression::None);
        assert!(!state.ended && state.damage.is_none());
    }
}
