//! The manifest: a canonical, line-oriented description of one policy tree.
//!
//! ```text
//! polstore-manifest 1
//! serial 42
//! created 2026-11-24T12:00:00Z
//! expires 2026-12-24T12:00:00Z        (optional)
//! source rudder.example.org            (optional)
//!
//! <blake3 hex> <mode octal> <size> <path>
//! ```
//!
//! Exactly one byte sequence encodes a given manifest: [`Manifest::parse`] refuses anything
//! that [`Manifest::render`] would not produce. The signature covers these exact bytes.
//! The grammar is specified in `store-format.md`.

use std::collections::HashSet;
use std::fmt;

use crate::format::policy_path::{self, PathLimits};
use crate::format::timestamp::Timestamp;

/// Version 1 lists files; version 2 also lists the tree's empty directories. A manifest is
/// written as version 1 when the tree has none, so that what servers made before stays
/// byte for byte what polstore writes, and both versions are read.
pub const FORMAT_VERSION: u32 = 1;
/// The version of a manifest that lists empty directories.
pub const FORMAT_VERSION_DIRECTORIES: u32 = 2;
/// The line of an empty directory, in version 2: `directory PATH`.
const DIRECTORY_PREFIX: &str = "directory ";
const MAGIC: &str = "polstore-manifest";
/// A manifest larger than this is refused before it is parsed.
pub const MANIFEST_BYTES_MAX: usize = 32 << 20;
/// The highest serial a manifest may carry (2^63 - 1). Serials only go up, and one at
/// `u64::MAX` would block every later update; time-derived serials stay far below.
pub const SERIAL_MAX: u64 = (1 << 63) - 1;
/// Longest `source` header value.
pub const SOURCE_BYTES_MAX: usize = 256;
/// Permission bits a policy file may carry: no setuid, setgid or sticky bit, no group or
/// world write (cf-agent refuses such inputs).
pub const MODE_ALLOWED: u32 = 0o755;

/// A blake3 digest of a file's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(content: &[u8]) -> Hash {
        Hash(*blake3::hash(content).as_bytes())
    }

    pub fn to_hex(self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parses exactly 64 lower-case hex digits.
    pub fn from_hex(text: &str) -> Option<Hash> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 || !bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        blake3::Hash::from_hex(text)
            .ok()
            .map(|hash| Hash(*hash.as_bytes()))
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

/// One regular file of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub size: u64,
    pub hash: Hash,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub serial: u64,
    pub created: Timestamp,
    pub expires: Option<Timestamp>,
    /// The node or group it was published for (`publish --repo --node`): a pull takes it
    /// only for that node. A node name (`format::head::check_node`).
    pub node: Option<String>,
    pub source: Option<String>,
    /// Sorted by the bytes of `path`, no duplicates, no path that is also a directory.
    pub entries: Vec<Entry>,
    /// The tree's empty directories (mode 0755, like every directory of a tree): sorted,
    /// none a file, none holding a file or another listed directory. Version 2 only.
    pub directories: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is larger than {MANIFEST_BYTES_MAX} bytes")]
    TooLarge,
    #[error("manifest is not valid UTF-8")]
    NotUtf8,
    #[error("manifest line {line}: carriage return (CRLF line ends are not allowed)")]
    CarriageReturn { line: usize },
    #[error("manifest does not end with a newline")]
    NoFinalNewline,
    #[error("manifest line 1: not a polstore manifest (expected '{MAGIC} {FORMAT_VERSION}')")]
    BadMagic,
    #[error(
        "manifest line 1: unsupported manifest version {version:?} (this polstore reads versions {FORMAT_VERSION} and {FORMAT_VERSION_DIRECTORIES})"
    )]
    UnsupportedVersion { version: String },
    #[error("manifest line {line}: expected '{expected}'")]
    Expected { line: usize, expected: &'static str },
    #[error("manifest line {line}: {field}: {reason}")]
    BadField {
        line: usize,
        field: &'static str,
        reason: String,
    },
    #[error("manifest line {line}: {path}: {reason}")]
    BadPath {
        line: usize,
        path: String,
        reason: String,
    },
    #[error("manifest line {line}: {path}: not sorted after the previous path")]
    Unsorted { line: usize, path: String },
    #[error("manifest line {line}: {path}: listed twice")]
    Duplicate { line: usize, path: String },
    #[error("manifest: {path}: is both a file and a directory")]
    FileAndDirectory { path: String },
    #[error("manifest: {path}: is listed as an empty directory but holds {inside}")]
    DirectoryNotEmpty { path: String, inside: String },
    #[error(
        "manifest line {line}: a directory line needs manifest version {FORMAT_VERSION_DIRECTORIES}"
    )]
    DirectoryInVersion1 { line: usize },
    #[error("manifest lists more than {max} files")]
    TooManyEntries { max: usize },
    #[error("manifest: the total size of all files exceeds {max} bytes")]
    TooManyBytes { max: u64 },
    #[error("manifest is not in canonical form")]
    NotCanonical,
}

/// Bounds checked while parsing; they come from the store's configuration.
#[derive(Clone, Copy, Debug)]
pub struct ManifestLimits {
    pub entries_max: usize,
    pub file_bytes_max: u64,
    pub tree_bytes_max: u64,
    pub paths: PathLimits,
}

impl Manifest {
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(128 + self.entries.len() * 100);
        let _ = self.write_to(&mut text);
        text
    }

    /// Whether [`Manifest::render`] gives exactly `bytes`, without making the text.
    fn renders_to(&self, bytes: &[u8]) -> bool {
        /// Compares what is written with the rest of the bytes, piece by piece.
        struct Compare<'a>(&'a [u8]);
        impl fmt::Write for Compare<'_> {
            fn write_str(&mut self, piece: &str) -> fmt::Result {
                match self.0.strip_prefix(piece.as_bytes()) {
                    Some(rest) => {
                        self.0 = rest;
                        Ok(())
                    }
                    None => Err(fmt::Error),
                }
            }
        }
        let mut compare = Compare(bytes);
        self.write_to(&mut compare).is_ok() && compare.0.is_empty()
    }

    fn write_to(&self, text: &mut impl fmt::Write) -> fmt::Result {
        writeln!(text, "{MAGIC} {}", self.version())?;
        writeln!(text, "serial {}", self.serial)?;
        writeln!(text, "created {}", self.created)?;
        if let Some(expires) = self.expires {
            writeln!(text, "expires {expires}")?;
        }
        if let Some(node) = &self.node {
            writeln!(text, "node {node}")?;
        }
        if let Some(source) = &self.source {
            writeln!(text, "source {source}")?;
        }
        text.write_char('\n')?;
        // Files and directories in one order, by the bytes of their paths.
        let mut directories = self.directories.iter().peekable();
        for entry in &self.entries {
            while let Some(directory) =
                directories.next_if(|directory| directory.as_bytes() < entry.path.as_bytes())
            {
                writeln!(text, "{DIRECTORY_PREFIX}{directory}")?;
            }
            writeln!(
                text,
                "{} {:04o} {} {}",
                // blake3's own hex, on the stack: no allocation per line.
                blake3::Hash::from_bytes(entry.hash.0).to_hex().as_str(),
                entry.mode,
                entry.size,
                entry.path
            )?;
        }
        for directory in directories {
            writeln!(text, "{DIRECTORY_PREFIX}{directory}")?;
        }
        Ok(())
    }

    /// The format version this manifest is written in.
    pub fn version(&self) -> u32 {
        if self.directories.is_empty() {
            FORMAT_VERSION
        } else {
            FORMAT_VERSION_DIRECTORIES
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|entry| entry.size).sum()
    }

    pub fn parse(bytes: &[u8], limits: ManifestLimits) -> Result<Manifest, ManifestError> {
        if bytes.len() > MANIFEST_BYTES_MAX {
            return Err(ManifestError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8)?;
        if let Some(position) = text.find('\r') {
            let line = text[..position].matches('\n').count() + 1;
            return Err(ManifestError::CarriageReturn { line });
        }
        let Some(body) = text.strip_suffix('\n') else {
            return Err(ManifestError::NoFinalNewline);
        };
        let mut lines = body
            .split('\n')
            .enumerate()
            .map(|(index, line)| (index + 1, line));

        let (_, first) = lines.next().unwrap_or((1, ""));
        let Some(version) = first
            .strip_prefix(MAGIC)
            .and_then(|rest| rest.strip_prefix(' '))
        else {
            return Err(ManifestError::BadMagic);
        };
        let lists_directories = if version == FORMAT_VERSION.to_string() {
            false
        } else if version == FORMAT_VERSION_DIRECTORIES.to_string() {
            true
        } else {
            return Err(ManifestError::UnsupportedVersion {
                version: version.chars().take(20).collect(),
            });
        };

        let (line, serial_line) = lines.next().unwrap_or((2, ""));
        let serial = serial_line
            .strip_prefix("serial ")
            .ok_or(ManifestError::Expected {
                line,
                expected: "serial N",
            })?;
        let serial = parse_decimal(serial)
            .and_then(|serial| {
                if serial > SERIAL_MAX {
                    Err(format!(
                        "{serial} is above {SERIAL_MAX}: a serial that high would leave no room for the next update"
                    ))
                } else {
                    Ok(serial)
                }
            })
            .map_err(|reason| ManifestError::BadField {
                line,
                field: "serial",
                reason,
            })?;

        let (line, created_line) = lines.next().unwrap_or((3, ""));
        let created = created_line
            .strip_prefix("created ")
            .ok_or(ManifestError::Expected {
                line,
                expected: "created YYYY-MM-DDTHH:MM:SSZ",
            })?;
        let created = Timestamp::parse(created).map_err(|error| ManifestError::BadField {
            line,
            field: "created",
            reason: error.to_string(),
        })?;

        let mut manifest = Manifest {
            serial,
            created,
            expires: None,
            node: None,
            source: None,
            entries: Vec::new(),
            directories: Vec::new(),
        };
        let mut header_done = false;
        for (line, text) in lines.by_ref() {
            if text.is_empty() {
                header_done = true;
                break;
            }
            if let Some(expires) = text.strip_prefix("expires ") {
                if manifest.expires.is_some()
                    || manifest.node.is_some()
                    || manifest.source.is_some()
                {
                    return Err(ManifestError::NotCanonical);
                }
                let expires =
                    Timestamp::parse(expires).map_err(|error| ManifestError::BadField {
                        line,
                        field: "expires",
                        reason: error.to_string(),
                    })?;
                manifest.expires = Some(expires);
            } else if let Some(node) = text.strip_prefix("node ") {
                if manifest.node.is_some() || manifest.source.is_some() {
                    return Err(ManifestError::NotCanonical);
                }
                crate::format::head::check_node(node).map_err(|reason| {
                    ManifestError::BadField {
                        line,
                        field: "node",
                        reason,
                    }
                })?;
                manifest.node = Some(node.to_string());
            } else if let Some(source) = text.strip_prefix("source ") {
                if manifest.source.is_some() {
                    return Err(ManifestError::NotCanonical);
                }
                check_source(source).map_err(|reason| ManifestError::BadField {
                    line,
                    field: "source",
                    reason,
                })?;
                manifest.source = Some(source.to_string());
            } else {
                return Err(ManifestError::Expected {
                    line,
                    expected: "'expires T', 'node N', 'source S' or an empty line ending the header",
                });
            }
        }
        if !header_done {
            let line = body.split('\n').count() + 1;
            return Err(ManifestError::Expected {
                line,
                expected: "an empty line ending the header",
            });
        }

        let mut total_bytes: u64 = 0;
        let mut previous_path: Option<String> = None;
        for (line, text) in lines {
            if manifest.entries.len() + manifest.directories.len() >= limits.entries_max {
                return Err(ManifestError::TooManyEntries {
                    max: limits.entries_max,
                });
            }
            let in_order = |path: &str, previous: &Option<String>| -> Result<(), ManifestError> {
                match previous
                    .as_deref()
                    .map(|previous| previous.as_bytes().cmp(path.as_bytes()))
                {
                    None | Some(std::cmp::Ordering::Less) => Ok(()),
                    Some(std::cmp::Ordering::Equal) => Err(ManifestError::Duplicate {
                        line,
                        path: path.to_string(),
                    }),
                    Some(std::cmp::Ordering::Greater) => Err(ManifestError::Unsorted {
                        line,
                        path: path.to_string(),
                    }),
                }
            };
            if let Some(path) = text.strip_prefix(DIRECTORY_PREFIX) {
                if !lists_directories {
                    return Err(ManifestError::DirectoryInVersion1 { line });
                }
                policy_path::validate(path, limits.paths).map_err(|error| {
                    ManifestError::BadPath {
                        line,
                        path: policy_path::display(path.as_bytes()),
                        reason: error.to_string(),
                    }
                })?;
                in_order(path, &previous_path)?;
                previous_path = Some(path.to_string());
                manifest.directories.push(path.to_string());
                continue;
            }
            let entry = parse_entry(line, text, limits)?;
            in_order(&entry.path, &previous_path)?;
            previous_path = Some(entry.path.clone());
            total_bytes = total_bytes.saturating_add(entry.size);
            if total_bytes > limits.tree_bytes_max {
                return Err(ManifestError::TooManyBytes {
                    max: limits.tree_bytes_max,
                });
            }
            manifest.entries.push(entry);
        }
        check_no_file_is_a_directory(&manifest.entries)?;
        check_directories_are_empty(&manifest)?;
        // Belt and braces: whatever the checks above missed, a manifest that does not
        // render back to its own bytes has a second encoding, and is refused.
        if !manifest.renders_to(bytes) {
            return Err(ManifestError::NotCanonical);
        }
        Ok(manifest)
    }
}

fn parse_entry(line: usize, text: &str, limits: ManifestLimits) -> Result<Entry, ManifestError> {
    let expected = "<blake3 hex> <mode> <size> <path>";
    let mut fields = text.splitn(4, ' ');
    let (Some(hash), Some(mode), Some(size), Some(path)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(ManifestError::Expected { line, expected });
    };
    let hash = Hash::from_hex(hash).ok_or_else(|| ManifestError::BadField {
        line,
        field: "hash",
        reason: "expected 64 lower-case hex digits".to_string(),
    })?;
    let mode = parse_mode(mode).map_err(|reason| ManifestError::BadField {
        line,
        field: "mode",
        reason,
    })?;
    let size = parse_decimal(size).map_err(|reason| ManifestError::BadField {
        line,
        field: "size",
        reason,
    })?;
    if size > limits.file_bytes_max {
        return Err(ManifestError::BadField {
            line,
            field: "size",
            reason: format!(
                "{size} bytes is over the limit of {} bytes per file",
                limits.file_bytes_max
            ),
        });
    }
    policy_path::validate(path, limits.paths).map_err(|error| ManifestError::BadPath {
        line,
        path: policy_path::display(path.as_bytes()),
        reason: error.to_string(),
    })?;
    if path == policy_path::MANIFEST_NAME || path == policy_path::SIGNATURE_NAME {
        return Err(ManifestError::BadPath {
            line,
            path: path.to_string(),
            reason: "reserved name".to_string(),
        });
    }
    Ok(Entry {
        path: path.to_string(),
        mode,
        size,
        hash,
    })
}

/// Parses four octal digits and checks them against [`MODE_ALLOWED`].
pub fn parse_mode(text: &str) -> Result<u32, String> {
    if text.len() != 4 || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err("expected four octal digits such as 0644".to_string());
    }
    let mode = u32::from_str_radix(text, 8).map_err(|error| error.to_string())?;
    check_mode(mode)?;
    Ok(mode)
}

/// Refuses setuid, setgid and sticky bits and group or world write.
pub fn check_mode(mode: u32) -> Result<(), String> {
    if mode & 0o7000 != 0 {
        return Err(format!(
            "mode {mode:04o} has a setuid, setgid or sticky bit"
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!("mode {mode:04o} is group or world writable"));
    }
    if mode & !MODE_ALLOWED != 0 {
        return Err(format!("mode {mode:04o} is not allowed"));
    }
    Ok(())
}

/// A decimal `u64` with no sign, no leading zero and at most 20 digits.
fn parse_decimal(text: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{:?} is not a decimal number",
            text.chars().take(24).collect::<String>()
        ));
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err("leading zero".to_string());
    }
    text.parse::<u64>()
        .map_err(|_| "number out of range".to_string())
}

fn check_source(source: &str) -> Result<(), String> {
    if source.is_empty() || source.len() > SOURCE_BYTES_MAX {
        return Err(format!("must be 1 to {SOURCE_BYTES_MAX} bytes"));
    }
    if source.chars().any(char::is_control) {
        return Err("control character".to_string());
    }
    Ok(())
}

/// A tree cannot hold both a file `a` and a file `a/b`.
fn check_no_file_is_a_directory(entries: &[Entry]) -> Result<(), ManifestError> {
    let files: HashSet<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
    for entry in entries {
        if let Some(directory) = policy_path::ancestors(&entry.path).find(|dir| files.contains(dir))
        {
            return Err(ManifestError::FileAndDirectory {
                path: directory.to_string(),
            });
        }
    }
    Ok(())
}

/// Every listed directory is empty: no file and no other listed directory below it, and
/// no file of its name.
fn check_directories_are_empty(manifest: &Manifest) -> Result<(), ManifestError> {
    if manifest.directories.is_empty() {
        return Ok(());
    }
    let listed: HashSet<&str> = manifest.directories.iter().map(String::as_str).collect();
    let paths = manifest
        .entries
        .iter()
        .map(|entry| entry.path.as_str())
        .chain(manifest.directories.iter().map(String::as_str));
    for path in paths {
        if let Some(directory) = policy_path::ancestors(path).find(|dir| listed.contains(dir)) {
            return Err(ManifestError::DirectoryNotEmpty {
                path: directory.to_string(),
                inside: path.to_string(),
            });
        }
    }
    let files: HashSet<&str> = manifest
        .entries
        .iter()
        .map(|entry| entry.path.as_str())
        .collect();
    for directory in &manifest.directories {
        if let Some(file) = policy_path::ancestors(directory).find(|dir| files.contains(dir)) {
            return Err(ManifestError::FileAndDirectory {
                path: file.to_string(),
            });
        }
    }
    for entry in &manifest.entries {
        if listed.contains(entry.path.as_str()) {
            return Err(ManifestError::FileAndDirectory {
                path: entry.path.clone(),
            });
        }
    }
    Ok(())
}

/// Checks a source value given on the command line before it goes into a manifest.
pub fn validate_source(source: &str) -> Result<(), String> {
    check_source(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ManifestLimits = ManifestLimits {
        entries_max: 10,
        file_bytes_max: 1 << 20,
        tree_bytes_max: 4 << 20,
        paths: PathLimits {
            path_bytes_max: 1024,
            depth_max: 8,
        },
    };

    #[test]
    fn the_node_header_is_optional_and_in_its_place() {
        let mut manifest = sample();
        manifest.node = Some("web-01".into());
        let text = manifest.render();
        assert!(
            text.contains("\nexpires 2026-12-24T12:00:00Z\nnode web-01\nsource "),
            "{text}"
        );
        assert_eq!(Manifest::parse(text.as_bytes(), LIMITS).unwrap(), manifest);
        let swapped = text.replace(
            "node web-01\nsource policy server 1\n",
            "source policy server 1\nnode web-01\n",
        );
        assert!(Manifest::parse(swapped.as_bytes(), LIMITS).is_err());
        let bad = text.replace("node web-01", "node ../x");
        assert!(Manifest::parse(bad.as_bytes(), LIMITS).is_err());
    }

    fn sample() -> Manifest {
        Manifest {
            serial: 7,
            created: Timestamp::parse("2026-11-24T12:00:00Z").unwrap(),
            expires: Some(Timestamp::parse("2026-12-24T12:00:00Z").unwrap()),
            node: None,
            source: Some("policy server 1".to_string()),
            entries: vec![
                Entry {
                    path: "a b.cf".into(),
                    mode: 0o644,
                    size: 3,
                    hash: Hash::of(b"abc"),
                },
                Entry {
                    path: "lib/x.cf".into(),
                    mode: 0o600,
                    size: 0,
                    hash: Hash::of(b""),
                },
                Entry {
                    path: "promises.cf".into(),
                    mode: 0o755,
                    size: 1,
                    hash: Hash::of(b"p"),
                },
            ],
            directories: Vec::new(),
        }
    }

    #[test]
    fn render_then_parse_is_identity() {
        let manifest = sample();
        let text = manifest.render();
        assert_eq!(Manifest::parse(text.as_bytes(), LIMITS).unwrap(), manifest);
        let minimal = Manifest {
            expires: None,
            source: None,
            entries: vec![],
            ..sample()
        };
        assert_eq!(
            Manifest::parse(minimal.render().as_bytes(), LIMITS).unwrap(),
            minimal
        );
    }

    fn refused(text: &str) -> String {
        Manifest::parse(text.as_bytes(), LIMITS)
            .unwrap_err()
            .to_string()
    }

    fn with_line(line: &str) -> String {
        let mut text = sample().render();
        text.push_str(line);
        text.push('\n');
        text
    }

    #[test]
    fn refuses_every_malformed_variant() {
        let good = sample().render();
        let h = Hash::of(b"x").to_hex();
        let cases: Vec<(String, &str)> = vec![
            (good.replace('\n', "\r\n"), "line 1: carriage return"),
            (good.trim_end().to_string(), "does not end with a newline"),
            (
                good.replace("polstore-manifest 1", "polstore-manifest 3"),
                "unsupported manifest version \"3\"",
            ),
            (
                // Version 2 lists empty directories; one without any has a shorter form.
                good.replace("polstore-manifest 1", "polstore-manifest 2"),
                "not in canonical form",
            ),
            (
                good.replace("polstore-manifest 1", "hello"),
                "not a polstore manifest",
            ),
            (
                good.replace("serial 7", "serial 007"),
                "line 2: serial: leading zero",
            ),
            (
                good.replace("serial 7", "serial 99999999999999999999999"),
                "number out of range",
            ),
            (
                good.replace("serial 7", "serial 18446744073709551615"),
                "line 2: serial: 18446744073709551615 is above 9223372036854775807",
            ),
            (
                good.replace("serial 7", "serial 9223372036854775808"),
                "is above 9223372036854775807",
            ),
            (
                good.replace("serial 7", "serial -1"),
                "is not a decimal number",
            ),
            (
                good.replace("created 2026-11-24T12:00:00Z", "created yesterday"),
                "line 3: created: invalid time",
            ),
            (
                good.replace("source policy server 1\n", "source a\nsource b\n"),
                "not in canonical form",
            ),
            (good.replace("expires", "colour"), "line 4: expected"),
            (
                with_line(&format!("{h} 0644 1 zz")) + "trailing",
                "does not end with a newline",
            ),
            (
                with_line(&format!("{h} 0644 1 a b.cf")),
                "a b.cf: not sorted",
            ),
            (
                with_line(&format!("{h} 0644 1 promises.cf")),
                "promises.cf: listed twice",
            ),
            (
                with_line(&format!("{h} 0644 1 promises.cf/x")),
                "promises.cf: is both a file and a directory",
            ),
            (
                with_line(&format!("{h} 0666 1 zz")),
                "group or world writable",
            ),
            (
                with_line(&format!("{h} 4755 1 zz")),
                "setuid, setgid or sticky",
            ),
            (with_line(&format!("{h} 644 1 zz")), "four octal digits"),
            (with_line(&format!("{h} 0644 2000000 zz")), "over the limit"),
            (
                with_line(&format!("{h} 0644 18446744073709551616 zz")),
                "number out of range",
            ),
            (
                with_line(&format!("{} 0644 1 zz", h.to_uppercase())),
                "hash: expected 64 lower-case hex",
            ),
            (
                with_line(&format!("{h} 0644 1 ../etc/passwd")),
                "'..' or '.' component",
            ),
            (
                with_line(&format!("{h} 0644 1 /etc/passwd")),
                "absolute path",
            ),
            (
                with_line(&format!("{h} 0644 1 z\u{1b}z")),
                "control character",
            ),
            (
                with_line(&format!("{h} 0644 1 polstore.manifest")),
                "reserved name",
            ),
            (with_line(&format!("{h} 0644 1")), "expected '<blake3 hex>"),
            (good.replace("\n\n", "\n"), "expected"),
        ];
        for (text, expected) in cases {
            let message = refused(&text);
            assert!(
                message.contains(expected),
                "{text:?}\n gave {message:?}\n wanted {expected:?}"
            );
        }
        assert_eq!(
            Manifest::parse(&[0xff, 0xfe], LIMITS).unwrap_err(),
            ManifestError::NotUtf8
        );
    }

    #[test]
    fn limits_bound_entries_and_bytes() {
        let mut manifest = sample();
        manifest.entries = (0..11)
            .map(|index| Entry {
                path: format!("f{index:02}"),
                mode: 0o644,
                size: 1,
                hash: Hash::of(b"x"),
            })
            .collect();
        assert_eq!(
            refused(&manifest.render()),
            "manifest lists more than 10 files"
        );
        manifest.entries.truncate(5);
        for entry in &mut manifest.entries {
            entry.size = 1 << 20;
        }
        assert!(refused(&manifest.render()).contains("total size of all files exceeds"));
    }
}
