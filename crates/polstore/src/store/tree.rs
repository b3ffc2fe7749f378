//! A generation's tree against its manifest: what a tree check finds, and the check.
//! Used by every activation (a tree that does not verify is never made active) and by
//! `verify`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::format::manifest::{Hash, Manifest};

/// What kind of damage a [`Finding`] is. The names are part of `verify --json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The database cannot be opened, fails its checksums or holds an undecodable record.
    Database,
    /// A stored object is missing or does not match its hash.
    Object,
    /// A file's content or size differs from the manifest.
    Content,
    Missing,
    Extra,
    /// A file's mode differs from the manifest, or a directory is group/world-writable.
    Mode,
    /// Something other than a regular file where the manifest has a file.
    Type,
    /// `polstore.manifest` or its signature beside the tree differs from the database.
    Envelope,
    /// The view is not a symlink to the active generation.
    View,
    /// The database's bookkeeping contradicts itself.
    State,
    /// The parse check no longer accepts the active generation.
    Parse,
    /// Left in the store by an interrupted command, or found there and not polstore's.
    Leftover,
    /// One of the store's own paths: not what polstore made, or others could change it.
    Store,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Database => "database",
            Kind::Object => "object",
            Kind::Content => "content",
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::Mode => "mode",
            Kind::Type => "type",
            Kind::Envelope => "manifest-file",
            Kind::View => "view",
            Kind::State => "state",
            Kind::Parse => "parse",
            Kind::Leftover => "leftover",
            Kind::Store => "store",
        }
    }
}

/// One thing found wrong, naming the generation and the file where there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub generation: Option<u64>,
    pub path: Option<String>,
    pub kind: Kind,
    pub detail: String,
}

impl Finding {
    pub fn new(generation: Option<u64>, path: Option<&str>, kind: Kind, detail: String) -> Finding {
        Finding {
            generation,
            path: path.map(str::to_string),
            kind,
            detail,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(generation) = self.generation {
            write!(f, "generation {generation}: ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.detail)
    }
}
/// The CFEngine writer that leaves a finding like this one, when polstore recognises it:
/// cf-agent writing into inputs through a view that is not read-only.
pub fn cfengine_writer(path: &str, kind: Kind) -> Option<&'static str> {
    let name = path.rsplit('/').next()?;
    if !matches!(
        kind,
        Kind::Extra | Kind::Content | Kind::Mode | Kind::Missing
    ) {
        return None;
    }
    if name.ends_with(".cfsaved") {
        return Some(
            "cf-agent's backup of a file it replaced: a policy copy into inputs wrote through the view",
        );
    }
    if name.ends_with(".cfnew") || name.ends_with(".cf-before-edit") {
        return Some("left by a cf-agent copy or edit that wrote through the view");
    }
    match name {
        "cf_promises_validated" => Some(
            "cf-agent records a validated policy here: an update or agent run wrote through the view",
        ),
        "cf_promises_release_id" => Some(
            "cf-agent writes the policy release id here: the failsafe or a validating run wrote through the view",
        ),
        "failsafe.cf" => Some("written by cf-agent --bootstrap or the failsafe through the view"),
        _ => None,
    }
}

/// Hashes by inode, so that files hard-linked between generations are read once.
#[derive(Default)]
pub struct HashCache {
    hashes: HashMap<Inode, Hashed>,
}

/// A file's device and inode numbers.
type Inode = (u64, u64);
/// Its change time, size and hash when it was hashed.
type Hashed = (i64, i64, u64, Hash);

impl HashCache {
    fn hash(&mut self, path: &Path, metadata: &fs::Metadata) -> Option<Hash> {
        let key = (metadata.dev(), metadata.ino());
        let stamp = (metadata.ctime(), metadata.ctime_nsec(), metadata.size());
        if let Some(&(ctime, nsec, size, hash)) = self.hashes.get(&key)
            && (ctime, nsec, size) == stamp
        {
            return Some(hash);
        }
        let hash = hash_file(path, metadata)?;
        self.hashes.insert(key, (stamp.0, stamp.1, stamp.2, hash));
        Some(hash)
    }

    /// Hashes the files of `files` it does not hold yet, on every core (each thread reads
    /// one file at a time), so that the lookups after find them here.
    fn prefetch(&mut self, files: Vec<(PathBuf, &fs::Metadata)>) {
        let mut seen = HashSet::new();
        let files: Vec<(PathBuf, &fs::Metadata)> = files
            .into_iter()
            .filter(|(_, metadata)| {
                let key = (metadata.dev(), metadata.ino());
                !self.hashes.contains_key(&key) && seen.insert(key)
            })
            .collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(files.len().div_ceil(64).max(1));
        let hashed: Vec<Vec<(Inode, Hashed)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|index| {
                    let files = &files;
                    scope.spawn(move || {
                        files
                            .iter()
                            .skip(index)
                            .step_by(threads)
                            .filter_map(|(path, metadata)| {
                                let hash = hash_file(path, metadata)?;
                                Some((
                                    (metadata.dev(), metadata.ino()),
                                    (
                                        metadata.ctime(),
                                        metadata.ctime_nsec(),
                                        metadata.size(),
                                        hash,
                                    ),
                                ))
                            })
                            .collect()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().unwrap_or_default())
                .collect()
        });
        self.hashes.extend(hashed.into_iter().flatten());
    }
}

/// The hash of the regular file at `path` that lstat showed as `metadata`: opened without
/// following a symlink or blocking, and read only up to the size lstat gave (a file that
/// grew since is not hashed).
fn hash_file(path: &Path, metadata: &fs::Metadata) -> Option<Hash> {
    let content = crate::fs::read::read_bounded(path, usize::try_from(metadata.size()).ok()?)?;
    Some(Hash::of(&content))
}

/// Compares the tree at `tree` with `manifest`; returns the paths whose file matches.
/// Walks at most `entries_max` entries, so a directory someone filled cannot stall it.
pub fn check_tree(
    tree: &Path,
    generation: u64,
    manifest: &Manifest,
    cache: &mut HashCache,
    entries_max: usize,
    findings: &mut Vec<Finding>,
) -> HashSet<String> {
    let mut intact = HashSet::new();
    // Files are written by polstore, so they are its own; another owner could change them
    // behind its back (and cf-agent refuses inputs others may write).
    let owner = rustix::process::geteuid().as_raw();
    let mut problem = |path: Option<&str>, kind: Kind, mut detail: String| {
        if let Some(writer) = path.and_then(|path| cfengine_writer(path, kind)) {
            detail.push_str(" (");
            detail.push_str(writer);
            detail.push(')');
        }
        findings.push(Finding::new(Some(generation), path, kind, detail));
    };
    match fs::symlink_metadata(tree) {
        Ok(metadata) if metadata.is_dir() => {
            if metadata.mode() & 0o022 != 0 {
                problem(
                    None,
                    Kind::Mode,
                    format!(
                        "its tree directory is group- or world-writable (mode {:04o})",
                        metadata.mode() & 0o7777
                    ),
                );
            }
        }
        Ok(_) => {
            problem(
                None,
                Kind::Type,
                format!("{} is not a directory", tree.display()),
            );
            return intact;
        }
        Err(_) => {
            problem(
                None,
                Kind::Missing,
                format!("its tree {} is missing", tree.display()),
            );
            return intact;
        }
    }
    // Walk the tree without following symlinks.
    let mut found: BTreeMap<String, fs::Metadata> = BTreeMap::new();
    let mut pending = vec![(String::new(), tree.to_path_buf())];
    let mut truncated = false;
    while let Some((relative, directory)) = pending.pop() {
        let Ok(entries) = fs::read_dir(&directory) else {
            problem(
                Some(&relative),
                Kind::Type,
                "cannot be read as a directory".into(),
            );
            continue;
        };
        for entry in entries.flatten() {
            if found.len() >= entries_max {
                truncated = true;
                break;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = if relative.is_empty() {
                name.into_owned()
            } else {
                format!("{relative}/{name}")
            };
            let Ok(metadata) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if metadata.is_dir() {
                pending.push((path.clone(), entry.path()));
            }
            found.insert(path, metadata);
        }
    }
    if truncated {
        problem(
            None,
            Kind::Extra,
            format!("holds more than {entries_max} entries; stopped looking"),
        );
    }
    // Every file that may match is hashed first, on every core; the checks below then
    // find each hash in the cache.
    cache.prefetch(
        manifest
            .entries
            .iter()
            .filter_map(|entry| {
                let metadata = found.get(&entry.path)?;
                (metadata.is_file() && metadata.size() == entry.size)
                    .then(|| (tree.join(&entry.path), metadata))
            })
            .collect(),
    );
    let mut expected_directories = HashSet::new();
    for entry in &manifest.entries {
        for ancestor in crate::format::policy_path::ancestors(&entry.path) {
            expected_directories.insert(ancestor);
        }
        let Some(metadata) = found.get(&entry.path) else {
            problem(Some(&entry.path), Kind::Missing, "is missing".into());
            continue;
        };
        if !metadata.is_file() {
            problem(
                Some(&entry.path),
                Kind::Type,
                format!(
                    "is a {}, the manifest has a file",
                    crate::fs::type_name(metadata.file_type())
                ),
            );
            continue;
        }
        let mode = metadata.mode() & 0o7777;
        let mut sound = true;
        if metadata.uid() != owner {
            problem(
                Some(&entry.path),
                Kind::Mode,
                format!(
                    "is owned by uid {}, not by uid {owner} that polstore runs as",
                    metadata.uid()
                ),
            );
            sound = false;
        }
        if mode != entry.mode {
            problem(
                Some(&entry.path),
                Kind::Mode,
                format!("has mode {mode:04o}, the manifest says {:04o}", entry.mode),
            );
            sound = false;
        }
        let path = tree.join(&entry.path);
        if metadata.size() != entry.size {
            problem(
                Some(&entry.path),
                Kind::Content,
                format!(
                    "has {} bytes, the manifest says {}",
                    metadata.size(),
                    entry.size
                ),
            );
            continue;
        }
        match cache.hash(&path, metadata) {
            Some(hash) if hash == entry.hash => {}
            Some(_) => {
                problem(
                    Some(&entry.path),
                    Kind::Content,
                    "content does not match the manifest's hash".into(),
                );
                continue;
            }
            None => {
                problem(Some(&entry.path), Kind::Content, "cannot be read".into());
                continue;
            }
        }
        if sound {
            intact.insert(entry.path.clone());
        }
    }
    for directory in &manifest.directories {
        expected_directories.insert(directory.as_str());
        for ancestor in crate::format::policy_path::ancestors(directory) {
            expected_directories.insert(ancestor);
        }
        match found.get(directory) {
            None => problem(
                Some(directory),
                Kind::Missing,
                "empty directory is missing".into(),
            ),
            Some(metadata) if !metadata.is_dir() => problem(
                Some(directory),
                Kind::Type,
                format!(
                    "is a {}, the manifest has an empty directory",
                    crate::fs::type_name(metadata.file_type())
                ),
            ),
            Some(_) => {}
        }
    }
    let files: HashSet<&str> = manifest
        .entries
        .iter()
        .map(|entry| entry.path.as_str())
        .collect();
    for (path, metadata) in &found {
        if metadata.is_dir() && expected_directories.contains(path.as_str()) {
            if metadata.mode() & 0o022 != 0 {
                problem(
                    Some(path),
                    Kind::Mode,
                    format!(
                        "directory is group- or world-writable (mode {:04o})",
                        metadata.mode() & 0o7777
                    ),
                );
            }
        } else if !files.contains(path.as_str()) {
            problem(
                Some(path),
                Kind::Extra,
                format!(
                    "{} not in the manifest",
                    crate::fs::type_name(metadata.file_type())
                ),
            );
        }
    }
    intact
}

/// The first 12 hex digits of a hash, enough to tell objects apart in a message.
pub fn short(hash: Hash) -> String {
    hash.to_hex()[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::Entry;
    use crate::format::timestamp::Timestamp;
    use std::os::unix::fs::PermissionsExt;

    fn manifest(files: &[(&str, &[u8])]) -> Manifest {
        Manifest {
            serial: 1,
            created: Timestamp::from_unix_secs(0),
            expires: None,
            node: None,
            source: None,
            entries: files
                .iter()
                .map(|(path, content)| Entry {
                    path: path.to_string(),
                    mode: 0o644,
                    size: content.len() as u64,
                    hash: Hash::of(content),
                })
                .collect(),
            directories: Vec::new(),
        }
    }

    fn write(tree: &Path, path: &str, content: &[u8], mode: u32) {
        let full = tree.join(path);
        crate::fs::durable::create_tree_directory(full.parent().unwrap()).unwrap();
        fs::write(&full, content).unwrap();
        fs::set_permissions(&full, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn look(tree: &Path, manifest: &Manifest) -> (Vec<String>, HashSet<String>) {
        let mut findings = Vec::new();
        let intact = check_tree(
            tree,
            7,
            manifest,
            &mut HashCache::default(),
            100,
            &mut findings,
        );
        (findings.iter().map(ToString::to_string).collect(), intact)
    }

    #[test]
    fn a_tree_that_matches_has_no_findings() {
        let directory = tempfile::tempdir().unwrap();
        let tree = directory.path().join("tree");
        write(&tree, "promises.cf", b"body", 0o644);
        write(&tree, "lib/a.cf", b"a", 0o644);
        let manifest = manifest(&[("lib/a.cf", b"a"), ("promises.cf", b"body")]);
        let (findings, intact) = look(&tree, &manifest);
        assert_eq!(findings, Vec::<String>::new());
        assert_eq!(intact.len(), 2);
    }

    #[test]
    fn each_difference_is_named_with_generation_and_path() {
        let directory = tempfile::tempdir().unwrap();
        let tree = directory.path().join("tree");
        crate::fs::durable::create_tree_directory(&tree).unwrap();
        write(&tree, "mode.cf", b"m", 0o664);
        write(&tree, "content.cf", b"X", 0o644);
        write(&tree, "sub/extra.cf", b"e", 0o644);
        std::os::unix::fs::symlink("/etc/passwd", tree.join("link.cf")).unwrap();
        fs::create_dir(tree.join("open")).unwrap();
        fs::set_permissions(tree.join("open"), fs::Permissions::from_mode(0o777)).unwrap();
        let manifest = manifest(&[
            ("content.cf", b"Y"),
            ("link.cf", b"l"),
            ("missing.cf", b"gone"),
            ("mode.cf", b"m"),
            ("open/x.cf", b"x"),
        ]);
        let (findings, intact) = look(&tree, &manifest);
        for expected in [
            "generation 7: content.cf: content does not match the manifest's hash",
            "generation 7: link.cf: is a symbolic link, the manifest has a file",
            "generation 7: missing.cf: is missing",
            "generation 7: mode.cf: has mode 0664, the manifest says 0644",
            "generation 7: open/x.cf: is missing",
            "generation 7: open: directory is group- or world-writable (mode 0777)",
            "generation 7: sub: directory not in the manifest",
            "generation 7: sub/extra.cf: file not in the manifest",
        ] {
            assert!(
                findings.iter().any(|finding| finding == expected),
                "{expected} not in {findings:#?}"
            );
        }
        assert_eq!(findings.len(), 8, "{findings:#?}");
        assert!(intact.is_empty());
    }

    #[test]
    fn a_missing_tree_and_a_flooded_one_are_reported_not_walked_forever() {
        let directory = tempfile::tempdir().unwrap();
        let manifest = manifest(&[("a.cf", b"a")]);
        let (findings, _) = look(&directory.path().join("absent"), &manifest);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].contains("is missing"), "{findings:?}");
        let tree = directory.path().join("tree");
        write(&tree, "a.cf", b"a", 0o644);
        for index in 0..150 {
            write(&tree, &format!("junk/{index}"), b"", 0o644);
        }
        let (findings, _) = look(&tree, &manifest);
        assert!(
            findings
                .iter()
                .any(|finding| finding.contains("holds more than 100 entries; stopped looking")),
            "{findings:?}"
        );
    }
}
