//! The checks a candidate must pass, in order: integrity, freshness, parse, user checks.
//! Each returns a [`CheckRecord`] for the history or the [`Rejection`] that stops the
//! candidate.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{self, Config};
use crate::error::{Check, Error, Rejection, Result};
use crate::format::manifest::{Entry, Hash, Manifest};
use crate::format::records::CheckRecord;
use crate::format::root::{ROOT_FILE_BYTES_MAX, Role, Root, SignedRoot};
use crate::format::signatures;
use crate::format::signify::{self, PublicKey};
use crate::format::text::{QUOTED_CHARS_MAX, one_line};
use crate::format::timestamp::Timestamp;
use crate::fs::read;
use crate::process::{self, RunOutcome};
use crate::store::Layout;
use crate::store::trust;

mod views;
pub use views::{MADE_VIEW_DIRECTORY_MODE, ViewMounts};

/// A check's verdict: the record for the history, and the rejection if it refused.
pub struct Verdict {
    pub record: CheckRecord,
    pub rejection: Option<Rejection>,
}

fn passed(name: &str, detail: impl Into<String>, started: Instant) -> Verdict {
    let record = CheckRecord {
        name: name.to_string(),
        passed: true,
        detail: detail.into(),
        output: String::new(),
        duration_ms: started.elapsed().as_millis() as u64,
    };
    Verdict {
        record,
        rejection: None,
    }
}

fn refused(rejection: Rejection, output: String, started: Instant) -> Verdict {
    let record = CheckRecord {
        name: rejection.check.to_string(),
        passed: false,
        detail: rejection.to_string(),
        output,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    Verdict {
        record,
        rejection: Some(rejection),
    }
}

/// The root of trust: the configured `trust.root`, or the newer one a pull followed and
/// the store recorded; without `trust.root`, the flat `trust.keys` as a one-key root.
pub fn trust_root(config: &Config, layout: &Layout) -> Result<Root> {
    Ok(trust(config, layout)?.root)
}

/// The root a node trusts, and the chain of roots (the blake3 of each one's text) that
/// led to it from the configured one: what the next root followed extends.
pub struct Trust {
    pub root: Root,
    /// Empty for flat `trust.keys`.
    pub chain: Vec<Hash>,
}

/// [`trust_root`] with its chain. The recorded root counts only when the configured root
/// is in the chain it was followed along (the operator's newer or older root of the same
/// chain: the newest of the two wins); a configured root of another chain (a new anchor,
/// after root keys were stolen or lost) is trusted instead, and followed anew.
pub fn trust(config: &Config, layout: &Layout) -> Result<Trust> {
    let Some(path) = &config.trust.root else {
        return Ok(Trust {
            root: Root::from_keys(trusted_keys(config)?),
            chain: Vec::new(),
        });
    };
    check_trusted_file(path, "trust.root")?;
    let text = read_small(path, ROOT_FILE_BYTES_MAX)?;
    let refuse = |error: String| Error::Refused(format!("trust.root {}: {error}", path.display()));
    let configured = SignedRoot::parse(&text).map_err(|error| refuse(error.to_string()))?;
    configured
        .check_self()
        .map_err(|error| refuse(error.to_string()))?;
    let origin = Hash::of(&configured.text);
    match trust::accepted_root(layout)? {
        Some((accepted, chain))
            if chain.contains(&origin) && accepted.root.version > configured.root.version =>
        {
            Ok(Trust {
                root: accepted.root,
                chain,
            })
        }
        _ => Ok(Trust {
            root: configured.root,
            chain: vec![origin],
        }),
    }
}

/// Whoever could write a trusted key or root, or its directory, could sign what root's
/// agent runs: both must be root's (or polstore's user's) and writable by no one else.
fn check_trusted_file(path: &Path, what: &'static str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let action = if what == "trust.root" {
        "cannot read trust.root"
    } else {
        "cannot read trusted key"
    };
    for checked in [Some(path), path.parent()].into_iter().flatten() {
        let metadata = std::fs::symlink_metadata(checked).map_err(Error::io(action, checked))?;
        let owner = rustix::process::geteuid().as_raw();
        if (metadata.uid() != 0 && metadata.uid() != owner) || metadata.mode() & 0o022 != 0 {
            return Err(Error::Refused(format!(
                "{what} {}: {} must belong to root and be writable by no one else (owner {}, mode {:04o})",
                path.display(),
                checked.display(),
                metadata.uid(),
                metadata.mode() & 0o7777
            )));
        }
    }
    Ok(())
}

/// Loads the trusted keys named in the configuration.
fn trusted_keys(config: &Config) -> Result<Vec<PublicKey>> {
    config
        .trust
        .keys
        .iter()
        .map(|path| {
            check_trusted_file(path, "trusted key")?;
            let text = read_small(path, signify::KEY_FILE_BYTES_MAX)?;
            PublicKey::parse(&text)
                .map_err(|error| Error::Refused(format!("trusted key {}: {error}", path.display())))
        })
        .collect()
}

fn read_small(path: &Path, limit: usize) -> Result<Vec<u8>> {
    read::read_regular(path, limit).map_err(|error| match error {
        read::ReadError::Io(error) => Error::io("cannot read", path)(error),
        refusal => Error::Refused(format!("{} {refusal}", path.display())),
    })
}

/// The signature (when there is one, or when one is required) and every file against the
/// manifest: hash, size, mode, nothing missing, nothing extra.
pub fn integrity(
    manifest: &Manifest,
    manifest_bytes: Option<&[u8]>,
    signature_bytes: Option<&[u8]>,
    trusted: &Root,
    require_signature: bool,
    staged: &BTreeMap<String, Entry>,
) -> (Verdict, Option<String>) {
    let started = Instant::now();
    let outcome = integrity_inner(
        manifest,
        manifest_bytes,
        signature_bytes,
        trusted,
        require_signature,
        staged,
    );
    match outcome {
        Ok(signed_by) => {
            let files = manifest.entries.len();
            let detail = match &signed_by {
                Some(keys) if keys.contains(',') => {
                    format!("signed by keys {keys}; {files} files match the manifest")
                }
                Some(keynum) => format!("signed by key {keynum}; {files} files match the manifest"),
                None => format!("unsigned; {files} files match the manifest"),
            };
            (passed("integrity", detail, started), signed_by)
        }
        Err(rejection) => (refused(rejection, String::new(), started), None),
    }
}

/// A several-view store's candidate: its top level holds exactly one directory for each
/// view name (`names`, sorted) and nothing else. Refused, naming the first entry that is
/// not a view's directory, or the first view directory that is missing.
pub fn view_directories(
    names: &[String],
    manifest: &Manifest,
) -> std::result::Result<(), Rejection> {
    let fail = |path: &str, reason: String| Rejection::new(Check::Integrity, Some(path), reason);
    let mut found = std::collections::BTreeSet::new();
    let paths = manifest
        .entries
        .iter()
        .map(|entry| entry.path.as_str())
        .chain(manifest.directories.iter().map(String::as_str));
    for path in paths {
        let (top, below) = match path.split_once('/') {
            Some((top, _)) => (top, true),
            None => (path, false),
        };
        if !names.iter().any(|name| name == top) {
            return Err(fail(
                top,
                format!(
                    "not a view's directory: the top of the tree holds only {}",
                    names.join(", ")
                ),
            ));
        }
        if !below && manifest.entries.iter().any(|entry| entry.path == path) {
            return Err(fail(top, "a file where a view's directory belongs".into()));
        }
        found.insert(top);
    }
    if let Some(missing) = names.iter().find(|name| !found.contains(name.as_str())) {
        return Err(fail(
            missing,
            "the view's directory is missing (every view needs one; an empty one will do)".into(),
        ));
    }
    Ok(())
}

fn integrity_inner(
    manifest: &Manifest,
    manifest_bytes: Option<&[u8]>,
    signature_bytes: Option<&[u8]>,
    trusted: &Root,
    require_signature: bool,
    staged: &BTreeMap<String, Entry>,
) -> std::result::Result<Option<String>, Rejection> {
    let fail = |path: Option<&str>, reason: String| Rejection::new(Check::Integrity, path, reason);
    let signed_by = match (manifest_bytes, signature_bytes) {
        (Some(bytes), Some(signature)) => {
            let signatures = signatures::parse_list(signature).map_err(|error| {
                fail(
                    Some(crate::format::policy_path::SIGNATURE_NAME),
                    error.to_string(),
                )
            })?;
            if let Some(expires) = trusted.expired(Timestamp::now()) {
                return Err(fail(
                    Some(crate::format::policy_path::SIGNATURE_NAME),
                    format!(
                        "the trusted root (version {}) expired at {expires}: nothing it vouches for is accepted until a newer root is installed",
                        trusted.version
                    ),
                ));
            }
            let signed_by = trusted
                .check(Role::Manifest, bytes, &signatures)
                .map_err(|error| {
                    fail(
                        Some(crate::format::policy_path::SIGNATURE_NAME),
                        error.to_string(),
                    )
                })?;
            Some(
                signed_by
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        }
        (Some(_), None) if require_signature => {
            return Err(fail(
                Some(crate::format::policy_path::SIGNATURE_NAME),
                "missing: a signature by a trusted key is required (trust.require_signature)"
                    .to_string(),
            ));
        }
        (None, _) if require_signature => {
            return Err(fail(
                Some(crate::format::policy_path::MANIFEST_NAME),
                "missing: a signed manifest is required (trust.require_signature)".to_string(),
            ));
        }
        _ => None,
    };
    let mut listed = manifest.entries.iter().peekable();
    let mut found = staged.values().peekable();
    loop {
        match (listed.peek(), found.peek()) {
            (None, None) => break,
            (Some(expected), Some(actual)) if expected.path == actual.path => {
                let path = Some(expected.path.as_str());
                if actual.size != expected.size {
                    return Err(fail(
                        path,
                        format!(
                            "size {} differs from the manifest's {}",
                            actual.size, expected.size
                        ),
                    ));
                }
                if actual.hash != expected.hash {
                    return Err(fail(
                        path,
                        format!(
                            "content does not match the manifest (blake3 {}, manifest {})",
                            actual.hash.to_hex(),
                            expected.hash.to_hex()
                        ),
                    ));
                }
                if actual.mode != expected.mode {
                    return Err(fail(
                        path,
                        format!(
                            "mode {:04o} differs from the manifest's {:04o}",
                            actual.mode, expected.mode
                        ),
                    ));
                }
                listed.next();
                found.next();
            }
            (Some(expected), actual)
                if actual
                    .is_none_or(|actual| expected.path.as_bytes() < actual.path.as_bytes()) =>
            {
                return Err(fail(
                    Some(&expected.path),
                    "listed in the manifest but missing from the source".to_string(),
                ));
            }
            (_, Some(actual)) => {
                return Err(fail(
                    Some(&actual.path),
                    "not listed in the manifest".to_string(),
                ));
            }
            (Some(_), None) => unreachable!("handled above"),
        }
    }
    Ok(signed_by)
}

/// Newer than anything accepted before, not created in the future, not expired.
pub fn freshness(
    manifest: &Manifest,
    serial_max: u64,
    now: Timestamp,
    clock_skew_secs: u64,
) -> Verdict {
    let started = Instant::now();
    let fail = |reason: String| {
        refused(
            Rejection::new(Check::Freshness, None, reason),
            String::new(),
            started,
        )
    };
    if manifest.serial <= serial_max {
        let why = if manifest.serial == serial_max {
            "equal to"
        } else {
            "older than"
        };
        return fail(format!(
            "serial {} is {why} the highest accepted serial {serial_max} (replay or downgrade)",
            manifest.serial
        ));
    }
    if manifest.created > now.plus_secs(clock_skew_secs) {
        return fail(format!(
            "manifest created {} is in the future (now {now}, allowed skew {clock_skew_secs} s)",
            manifest.created
        ));
    }
    if let Some(expires) = manifest.expires
        && expires <= now
    {
        return fail(format!("manifest expired at {expires} (now {now})"));
    }
    passed(
        "freshness",
        format!("serial {} > {serial_max}", manifest.serial),
        started,
    )
}

/// Everything a command check needs to run against one candidate.
pub struct CommandContext<'a> {
    pub tree: &'a Path,
    pub serial: u64,
    pub generation: u64,
    /// Where the command's output goes while it runs; inside the store.
    pub output_file: &'a Path,
    pub timeout: Duration,
    /// A several-view store: the commands run where the view paths show `tree`.
    pub views: Option<&'a ViewMounts>,
}

impl CommandContext<'_> {
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("POLSTORE_TREE", self.tree.display().to_string()),
            ("POLSTORE_SERIAL", self.serial.to_string()),
            ("POLSTORE_GENERATION", self.generation.to_string()),
        ]
    }

    pub fn run(&self, argv: &[String]) -> RunOutcome {
        self.watch(argv, &[])
    }

    /// [`CommandContext::run`], finding the first line containing each of `watched` in
    /// the whole output ([`process::run_bounded_watching`]).
    pub fn watch(&self, argv: &[String], watched: &[&str]) -> RunOutcome {
        process::run_bounded_watching(
            argv,
            &self.environment(),
            self.output_file,
            self.timeout,
            watched,
            self.views.map(ViewMounts::namespace),
        )
    }
}

/// The parse check: the configured cf-promises command, once for each entry point when
/// it names `{entry}`, else once. `None` when it is turned off. A CFEngine program named
/// bare that is found nowhere, or not fit to run, refuses every ingest (`Refused`) rather
/// than judge the candidate.
pub fn parse(config: &Config, context: &CommandContext) -> Result<Option<Verdict>> {
    Ok(parse_conclusively(config, context)?.map(|(verdict, _)| verdict))
}

/// [`parse`], and whether a refusal is conclusive: the command ran and exited non-zero,
/// rather than timing out, being killed or failing to start (which say nothing about the
/// policy). An entry point missing from the tree refuses it, but not conclusively: the
/// policy was not judged, and a generation kept from before entry points were checked
/// may lack one.
pub fn parse_conclusively(
    config: &Config,
    context: &CommandContext,
) -> Result<Option<(Verdict, bool)>> {
    if config.checks.cf_promises.is_empty() {
        return Ok(None);
    }
    let started = Instant::now();
    let fail = |entry: Option<&str>, reason: String, output: String, conclusive: bool| {
        let rejection = Rejection::new(Check::Parse, entry, reason);
        Ok(Some((refused(rejection, output, started), conclusive)))
    };
    let argv = config
        .resolve(&config.checks.cf_promises)
        .map_err(|error| Error::Refused(format!("the parse check cannot run: {error}")))?;
    let entries: Vec<Option<&str>> = if config.checks.per_entry_point() {
        config
            .checks
            .entry_points
            .iter()
            .map(|entry| Some(entry.as_str()))
            .collect()
    } else {
        vec![None]
    };
    let tree = context.tree.to_string_lossy();
    let serial = context.serial.to_string();
    let generation = context.generation.to_string();
    for entry in &entries {
        if let Some(entry) = entry {
            // The tree is polstore's own (staging or a generation): regular files and
            // directories only.
            let present = std::fs::symlink_metadata(context.tree.join(entry))
                .is_ok_and(|metadata| metadata.is_file());
            if !present {
                return fail(
                    Some(entry),
                    "missing; the agent starts from each of checks.entry_points".to_string(),
                    String::new(),
                    false,
                );
            }
        }
        let expanded = config::expand(
            &argv,
            &[
                ("{tree}", &tree),
                ("{serial}", &serial),
                ("{generation}", &generation),
                (config::ENTRY, entry.unwrap_or_default()),
            ],
        );
        let outcome = context.run(&expanded);
        if outcome.succeeded() {
            continue;
        }
        // Not a verdict on the policy: the check could not run where it must.
        if let (Some(views), Some(error)) = (context.views, outcome.namespace_error()) {
            return Err(views.refusal("the parse check", error));
        }
        let conclusive =
            matches!(&outcome.exit, process::Exit::Status(status) if status.code().is_some());
        // cf-promises names the file and line of a syntax error as `PATH:LINE:COL: error:
        // ...`, and says `error: ...` of a policy that does not validate.
        let tree_prefix = format!("{tree}/");
        let first_error = outcome
            .output
            .lines()
            .find(|line| line.contains("error:"))
            .or_else(|| outcome.last_line())
            .map(|line| one_line(&line.trim().replace(&tree_prefix, ""), QUOTED_CHARS_MAX));
        let how = format!(
            "{} {}",
            program_name(&expanded),
            outcome.describe(context.timeout)
        );
        let reason = match first_error {
            Some(line) => format!("{how}: {line}"),
            None => how,
        };
        return fail(*entry, reason, outcome.output, conclusive);
    }
    let what = if config.checks.per_entry_point() {
        config.checks.entry_points.join(", ")
    } else {
        "the policy".to_string()
    };
    let detail = format!("{} accepted {what}", argv[0]);
    Ok(Some((passed("parse", detail, started), true)))
}

fn program_name(argv: &[String]) -> String {
    argv.first()
        .map(|program| {
            Path::new(program)
                .file_name()
                .map_or(program.clone(), |name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}

/// The user checks: the executable regular files of the checks directory, in name order.
///
/// They run as polstore's user (root), so who could have written them matters (OpenSSH's
/// `safe_path`): the directory is opened without following a symlink, and it and every
/// check must belong to root or polstore's user and be writable by no one else; anything
/// else refuses every ingest rather than run or silently skip a check. A directory left
/// out of the configuration may be missing (no user checks); one named there must exist.
pub fn user_checks(config: &config::ChecksConfig) -> Result<Vec<PathBuf>> {
    use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
    let (directory, named) = config.directory();
    let refuse = |what: String| Error::Refused(format!("user checks: {what}"));
    let opened = rustix::fs::open(
        &directory,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    );
    let fd = match opened {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) if !named => return Ok(Vec::new()),
        Err(rustix::io::Errno::NOENT) => {
            return Err(refuse(format!(
                "the checks directory {} named in the configuration does not exist",
                directory.display()
            )));
        }
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
            return Err(refuse(format!(
                "{} is not a directory (a symbolic link is not followed)",
                directory.display()
            )));
        }
        Err(error) => {
            return Err(Error::io("cannot open checks directory", &directory)(
                error.into(),
            ));
        }
    };
    let owner = rustix::process::geteuid().as_raw();
    let trusted = |uid: u32, mode: u32| (uid == 0 || uid == owner) && mode & 0o022 == 0;
    let stat = rustix::fs::fstat(&fd)
        .map_err(|error| Error::io("cannot read checks directory", &directory)(error.into()))?;
    if !trusted(stat.st_uid, stat.st_mode) {
        return Err(refuse(format!(
            "the checks directory {} must belong to root and be writable by no one else (owner {}, mode {:04o})",
            directory.display(),
            stat.st_uid,
            stat.st_mode & 0o7777
        )));
    }
    let mut checks = Vec::new();
    let entries = Dir::read_from(&fd)
        .map_err(|error| Error::io("cannot read checks directory", &directory)(error.into()))?;
    for entry in entries {
        let entry = entry
            .map_err(|error| Error::io("cannot read checks directory", &directory)(error.into()))?;
        let name = entry.file_name().to_bytes();
        if name.starts_with(b".") {
            continue;
        }
        let name = std::ffi::OsStr::from_bytes(name);
        let path = directory.join(name);
        let stat = rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|error| Error::io("cannot read", &path)(error.into()))?;
        let file_type = FileType::from_raw_mode(stat.st_mode);
        if file_type == FileType::Directory {
            continue;
        }
        if file_type != FileType::RegularFile {
            return Err(refuse(format!(
                "{} is not a regular file; a check must be one",
                path.display()
            )));
        }
        if stat.st_mode & 0o111 == 0 {
            continue;
        }
        if !trusted(stat.st_uid, stat.st_mode) {
            return Err(refuse(format!(
                "{} must belong to root and be writable by no one else (owner {}, mode {:04o})",
                path.display(),
                stat.st_uid,
                stat.st_mode & 0o7777
            )));
        }
        checks.push(path);
    }
    checks.sort();
    Ok(checks)
}

/// One user check on the candidate. A check that could not be run where it must (a
/// several-view store whose namespace cannot be made) refuses the ingest (`Refused`)
/// rather than judge the candidate.
pub fn user_check(check: &Path, context: &CommandContext) -> Result<Verdict> {
    let started = Instant::now();
    let name = check
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let outcome = context.run(&[check.display().to_string()]);
    if outcome.succeeded() {
        return Ok(passed(&format!("user check {name}"), "passed", started));
    }
    if let (Some(views), Some(error)) = (context.views, outcome.namespace_error()) {
        return Err(views.refusal(&format!("the user check {name}"), error));
    }
    let reason = match outcome.last_line() {
        Some(line) => format!(
            "{}: {}",
            outcome.describe(context.timeout),
            one_line(line, QUOTED_CHARS_MAX)
        ),
        None => outcome.describe(context.timeout),
    };
    Ok(refused(
        Rejection::new(Check::User(name), None, reason),
        outcome.output,
        started,
    ))
}
