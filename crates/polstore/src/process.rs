//! Runs an external command (a check, the agent) with a time limit and bounded output,
//! and, when asked, in a private mount namespace of read-only binds ([`MountNamespace`]).

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The tail of a command's output that is kept for the history.
pub const OUTPUT_BYTES_KEPT_MAX: u64 = 16 << 10;
/// How much of a command's output, from its start, is searched for watched lines.
pub const OUTPUT_BYTES_SCANNED_MAX: u64 = 64 << 20;
/// How much of each line, from its start, is searched and kept.
pub const LINE_BYTES_SCANNED_MAX: usize = 4096;
const POLL_INTERVAL_MAX: Duration = Duration::from_millis(50);
/// How many binds a [`MountNamespace`] holds at most (a store has at most 16 views).
pub const BINDS_MAX: usize = 64;

/// A private mount namespace for one command: in it, and only in it, each bind's source
/// is shown at its target, read-only. Made in the child between fork and exec:
/// unshare(CLONE_NEWNS), then every mount made private (recursively from `/`), so that
/// nothing propagates back to the host's mount table; then, bind by bind, in order, a bind
/// mount of the source onto the target (mount(2) follows a symlink at the target) and a
/// remount of it read-only, keeping the source's nosuid, nodev, noexec and atime flags.
/// Needs CAP_SYS_ADMIN. The binds go with the namespace when the command's last process
/// ends: nothing is left to unmount.
#[derive(Clone, Debug, Default)]
pub struct MountNamespace {
    binds: Vec<Bind>,
}

/// One read-only bind of a [`MountNamespace`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
}

impl MountNamespace {
    /// At most [`BINDS_MAX`] binds, made in this order.
    pub fn new(binds: Vec<Bind>) -> MountNamespace {
        assert!(binds.len() <= BINDS_MAX, "too many binds: {}", binds.len());
        MountNamespace { binds }
    }

    pub fn binds(&self) -> &[Bind] {
        &self.binds
    }

    /// Everything the child needs, made before the fork: it may not allocate.
    fn prepare(&self) -> Result<Vec<PreparedBind>, NamespaceError> {
        let c_path = |path: &Path, step: String| {
            CString::new(path.as_os_str().as_bytes()).map_err(|_| NamespaceError {
                step,
                error: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a path holds a NUL byte",
                ),
            })
        };
        self.binds
            .iter()
            .enumerate()
            .map(|(index, bind)| {
                let flags = rustix::fs::statvfs(&bind.source)
                    .map_err(|error| NamespaceError {
                        step: format!("cannot read the mount of {}", bind.source.display()),
                        error: error.into(),
                    })?
                    .f_flag;
                Ok(PreparedBind {
                    source: c_path(&bind.source, self.describe_step(bind_step(index)))?,
                    target: c_path(&bind.target, self.describe_step(bind_step(index)))?,
                    flags: kept_flags(flags),
                })
            })
            .collect()
    }

    /// What the child was doing at `step` (see [`bind_step`]), for a message.
    fn describe_step(&self, step: u8) -> String {
        match step {
            STEP_UNSHARE => "unshare".to_string(),
            STEP_PRIVATE => "making the mounts of the command's namespace private".to_string(),
            step => {
                let index = usize::from(step - STEP_FIRST_BIND) / 2;
                let Some(bind) = self.binds.get(index) else {
                    return format!("step {step}");
                };
                if (step - STEP_FIRST_BIND).is_multiple_of(2) {
                    format!(
                        "bind mount of {} on {}",
                        bind.source.display(),
                        bind.target.display()
                    )
                } else {
                    format!("remounting {} read-only", bind.target.display())
                }
            }
        }
    }
}

/// The namespace of a command could not be made: which step failed and why.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {error}")]
pub struct NamespaceError {
    pub step: String,
    #[source]
    pub error: std::io::Error,
}

impl NamespaceError {
    /// The kernel refused for want of privilege (CAP_SYS_ADMIN).
    pub fn is_permission(&self) -> bool {
        self.error.kind() == std::io::ErrorKind::PermissionDenied
    }
}

struct PreparedBind {
    source: CString,
    target: CString,
    flags: rustix::mount::MountFlags,
}

const STEP_UNSHARE: u8 = 0;
const STEP_PRIVATE: u8 = 1;
const STEP_FIRST_BIND: u8 = 2;

/// The step of the bind of index `index`; its remount is the next one.
fn bind_step(index: usize) -> u8 {
    // BINDS_MAX keeps this within a byte.
    STEP_FIRST_BIND + 2 * index as u8
}

/// The flags of the source's mount that a read-only remount of its bind keeps: a bind
/// remount sets every per-mount flag to exactly what it is given.
fn kept_flags(flags: rustix::fs::StatVfsMountFlags) -> rustix::mount::MountFlags {
    use rustix::fs::StatVfsMountFlags as Found;
    use rustix::mount::MountFlags as Kept;
    [
        (Found::NOSUID, Kept::NOSUID),
        (Found::NODEV, Kept::NODEV),
        (Found::NOEXEC, Kept::NOEXEC),
        (Found::NOATIME, Kept::NOATIME),
        (Found::NODIRATIME, Kept::NODIRATIME),
        (Found::RELATIME, Kept::RELATIME),
    ]
    .into_iter()
    .filter(|(found, _)| flags.contains(*found))
    .fold(Kept::empty(), |kept, (_, flag)| kept | flag)
}

/// Makes the namespace in the child, between fork and exec. On failure the step that
/// failed is written, one byte, to `report` (the parent reads it), and the error is
/// returned: the spawn fails with it.
///
/// Runs in the child of a fork, where only async-signal-safe work is allowed: every
/// call here is one raw system call through rustix (its linux_raw backend; paths passed
/// as `&CStr`, which it hands to the kernel as they are), and nothing allocates (a
/// rustix `Errno` becomes an `io::Error` holding the number only).
fn enter_namespace(binds: &[PreparedBind], report: &OwnedFd) -> std::io::Result<()> {
    use rustix::mount::{
        MountFlags, MountPropagationFlags, mount_bind, mount_change, mount_remount,
    };
    let fail = |step: u8, error: rustix::io::Errno| -> std::io::Error {
        let _ = rustix::io::write(report, &[step]);
        error.into()
    };
    // SAFETY: CLONE_NEWNS only: no file descriptor table is unshared, so no thread can
    // observe a descriptor from another table (the child of a fork has one thread anyway).
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .map_err(|error| fail(STEP_UNSHARE, error))?;
    mount_change(
        c"/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|error| fail(STEP_PRIVATE, error))?;
    for (index, bind) in binds.iter().enumerate() {
        let step = bind_step(index);
        mount_bind(bind.source.as_c_str(), bind.target.as_c_str())
            .map_err(|error| fail(step, error))?;
        mount_remount(
            bind.target.as_c_str(),
            MountFlags::BIND | MountFlags::RDONLY | bind.flags,
            c"",
        )
        .map_err(|error| fail(step + 1, error))?;
    }
    Ok(())
}

#[derive(Debug)]
pub enum Exit {
    Status(ExitStatus),
    TimedOut,
    /// The command could not be started.
    NotStarted(std::io::Error),
}

#[derive(Debug)]
pub struct RunOutcome {
    pub exit: Exit,
    /// The last [`OUTPUT_BYTES_KEPT_MAX`] bytes of standard output and error, interleaved.
    pub output: String,
    pub duration: Duration,
    /// For each fragment [`run_bounded_watching`] was given, the first line of the
    /// output that contains it, trimmed.
    pub watched: Vec<Option<String>>,
}

impl RunOutcome {
    /// The command's mount namespace could not be made: it never started.
    pub fn namespace_error(&self) -> Option<&NamespaceError> {
        match &self.exit {
            Exit::NotStarted(error) => error.get_ref()?.downcast_ref::<NamespaceError>(),
            _ => None,
        }
    }

    pub fn succeeded(&self) -> bool {
        matches!(&self.exit, Exit::Status(status) if status.success())
    }

    /// One line: how the command ended.
    pub fn describe(&self, timeout: Duration) -> String {
        match &self.exit {
            Exit::Status(status) => match (status.code(), status.signal_number()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                (None, None) => "ended abnormally".to_string(),
            },
            Exit::TimedOut => format!("timed out after {} s and was killed", timeout.as_secs()),
            Exit::NotStarted(error) => format!("could not be started: {error}"),
        }
    }

    /// The last non-empty line of output, for a one-line error message.
    pub fn last_line(&self) -> Option<&str> {
        self.output
            .lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty())
    }
}

trait SignalNumber {
    fn signal_number(&self) -> Option<i32>;
}

impl SignalNumber for ExitStatus {
    fn signal_number(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(self)
    }
}

/// Runs `argv` in its own process group with standard input closed and output captured in
/// `output_file` (a path inside the store), killing the whole group after `timeout`.
pub fn run_bounded(
    argv: &[String],
    environment: &[(&str, String)],
    output_file: &Path,
    timeout: Duration,
) -> RunOutcome {
    run_bounded_watching(argv, environment, output_file, timeout, &[], None)
}

/// [`run_bounded`], and the first line of the whole output (not only the tail kept)
/// containing each of `watched`, in [`RunOutcome::watched`]: a line a command prints
/// early, before much else, is found however long the output grows after it. Reads at
/// most [`OUTPUT_BYTES_SCANNED_MAX`] from the start, [`LINE_BYTES_SCANNED_MAX`] of each line.
/// With `namespace`, the command runs in it; one that cannot be made is
/// [`Exit::NotStarted`] with a [`NamespaceError`] naming the step that failed
/// ([`RunOutcome::namespace_error`]).
pub fn run_bounded_watching(
    argv: &[String],
    environment: &[(&str, String)],
    output_file: &Path,
    timeout: Duration,
    watched: &[&str],
    namespace: Option<&MountNamespace>,
) -> RunOutcome {
    let started = Instant::now();
    let not_started = |error| RunOutcome {
        exit: Exit::NotStarted(error),
        output: String::new(),
        duration: started.elapsed(),
        watched: vec![None; watched.len()],
    };
    let Some((program, arguments)) = argv.split_first() else {
        return not_started(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        ));
    };
    // Made anew, never through a symlink: a leftover of polstore's own (a regular file or
    // a symlink, never followed) is removed first; anything else there refuses to start.
    if std::fs::symlink_metadata(output_file)
        .is_ok_and(|metadata| metadata.is_file() || metadata.file_type().is_symlink())
    {
        let _ = std::fs::remove_file(output_file);
    }
    let output = match File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(output_file)
    {
        Ok(file) => file,
        Err(error) => return not_started(error),
    };
    let (stdout, stderr) = match (output.try_clone(), output.try_clone()) {
        (Ok(stdout), Ok(stderr)) => (stdout, stderr),
        (Err(error), _) | (_, Err(error)) => return not_started(error),
    };
    let mut command = Command::new(program);
    command
        .args(arguments)
        .envs(environment.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    // The read end of the pipe the child names a failed step of its namespace on.
    let mut report = None;
    if let Some(namespace) = namespace {
        let binds = match namespace.prepare() {
            Ok(binds) => binds,
            Err(error) => return not_started(std::io::Error::other(error)),
        };
        let (read_end, write_end) = match rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        ) {
            Ok(ends) => ends,
            Err(error) => return not_started(error.into()),
        };
        report = Some(read_end);
        // SAFETY: the closure runs in the forked child before exec, where only
        // async-signal-safe work is allowed. It owns everything it uses, all made before
        // the fork (the paths as CStrings, the flags, the pipe's write end), allocates
        // nothing, and makes only raw system calls (unshare, mount, write):
        // `enter_namespace` says why each is safe there. The write end is CLOEXEC, so
        // the command does not inherit it.
        unsafe {
            command.pre_exec(move || enter_namespace(&binds, &write_end));
        }
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            let mut step = [0u8];
            let failed_step = report
                .as_ref()
                .and_then(|read_end| rustix::io::read(read_end, &mut step).ok())
                .is_some_and(|read| read == 1);
            return match namespace {
                Some(namespace) if failed_step => not_started(std::io::Error::new(
                    error.kind(),
                    NamespaceError {
                        step: namespace.describe_step(step[0]),
                        error,
                    },
                )),
                _ => not_started(error),
            };
        }
    };
    let mut interval = Duration::from_millis(1);
    let exit = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Exit::Status(status),
            Ok(None) => {}
            Err(error) => break Exit::NotStarted(error),
        }
        if started.elapsed() >= timeout {
            kill_group(child.id());
            let _ = child.wait();
            break Exit::TimedOut;
        }
        std::thread::sleep(interval);
        interval = (interval * 2).min(POLL_INTERVAL_MAX);
    };
    // The command's children may outlive it; they must not keep running with the store's
    // files after we have moved on.
    if !matches!(exit, Exit::TimedOut) {
        kill_group(child.id());
    }
    let mut output = output;
    let watched = if watched.is_empty() {
        Vec::new()
    } else {
        find_lines(&mut output, watched)
    };
    RunOutcome {
        exit,
        output: read_tail(output),
        duration: started.elapsed(),
        watched,
    }
}

/// For each of `fragments`, the first line of `file` (from its start, bounded as
/// [`run_bounded_watching`] says) that contains it.
fn find_lines(file: &mut File, fragments: &[&str]) -> Vec<Option<String>> {
    let mut found: Vec<Option<String>> = vec![None; fragments.len()];
    if file.seek(SeekFrom::Start(0)).is_err() {
        return found;
    }
    let consider = |line: &[u8], found: &mut Vec<Option<String>>| {
        let line = String::from_utf8_lossy(line);
        for (fragment, slot) in fragments.iter().zip(found.iter_mut()) {
            if slot.is_none() && line.contains(fragment) {
                *slot = Some(line.trim().to_string());
            }
        }
    };
    let mut reader = file.take(OUTPUT_BYTES_SCANNED_MAX);
    let mut chunk = vec![0; 64 << 10];
    let mut line = Vec::with_capacity(LINE_BYTES_SCANNED_MAX);
    loop {
        let read = match reader.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        for piece in chunk[..read].split_inclusive(|byte| *byte == b'\n') {
            let (content, ends) = match piece.strip_suffix(b"\n") {
                Some(content) => (content, true),
                None => (piece, false),
            };
            let room = LINE_BYTES_SCANNED_MAX - line.len();
            line.extend_from_slice(&content[..content.len().min(room)]);
            if ends {
                consider(&line, &mut found);
                line.clear();
            }
        }
        if found.iter().all(Option::is_some) {
            return found;
        }
    }
    if !line.is_empty() {
        consider(&line, &mut found);
    }
    found
}

fn kill_group(process_id: u32) {
    if let Some(group) = i32::try_from(process_id)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        // ESRCH (the group is already gone) is the expected outcome after a clean exit.
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
}

fn read_tail(mut file: File) -> String {
    let length = file.seek(SeekFrom::End(0)).unwrap_or(0);
    let start = length.saturating_sub(OUTPUT_BYTES_KEPT_MAX);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_ok() {
        let _ = file.take(OUTPUT_BYTES_KEPT_MAX).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(content: &[u8], fragments: &[&str]) -> Vec<Option<String>> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(content).unwrap();
        find_lines(&mut file, fragments)
    }

    #[test]
    fn a_watched_line_is_found_anywhere_in_the_scanned_output() {
        // Far beyond the tail kept, across the boundary of a read, and as the last line
        // without a newline.
        let mut content = b"  error: first\n".to_vec();
        content.resize(content.len() + (64 << 10) - 20, b'.');
        content.extend_from_slice(b"\n  so going to failsafe\n");
        content.resize(content.len() + (1 << 20), b'x');
        content.extend_from_slice(b"\nlast one");
        assert_eq!(
            lines_of(&content, &["going to failsafe", "error:", "last", "absent"]),
            [
                Some("so going to failsafe".to_string()),
                Some("error: first".to_string()),
                Some("last one".to_string()),
                None
            ]
        );
    }

    #[test]
    fn only_the_start_of_each_line_is_searched() {
        let mut content = vec![b'x'; LINE_BYTES_SCANNED_MAX];
        content.extend_from_slice(b"marker\nmarker two\n");
        assert_eq!(
            lines_of(&content, &["marker"]),
            [Some("marker two".to_string())]
        );
    }

    #[test]
    fn a_namespace_shows_each_source_at_its_target_read_only_to_the_command_alone() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: a mount namespace needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (source, target) = (tmp.path().join("source"), tmp.path().join("target"));
        std::fs::create_dir(&source).unwrap();
        std::fs::create_dir(&target).unwrap();
        std::fs::write(source.join("f"), "shown\n").unwrap();
        let namespace = MountNamespace::new(vec![Bind {
            source: source.clone(),
            target: target.clone(),
        }]);
        let script = format!(
            "cat {target}/f; touch {target}/g 2>/dev/null && echo written; exit 0",
            target = target.display()
        );
        let argv = ["/bin/sh".to_string(), "-c".to_string(), script];
        let output = tmp.path().join("output");
        let outcome = run_bounded_watching(
            &argv,
            &[],
            &output,
            Duration::from_secs(60),
            &[],
            Some(&namespace),
        );
        assert!(outcome.succeeded(), "{outcome:?}");
        assert_eq!(outcome.output, "shown\n");
        // Nothing was mounted here, and nothing was written there.
        assert!(!target.join("f").exists());
        assert!(!source.join("g").exists());

        // A step that fails is named.
        let missing = tmp.path().join("missing");
        let namespace = MountNamespace::new(vec![Bind {
            source,
            target: missing.clone(),
        }]);
        let outcome = run_bounded_watching(
            &argv,
            &[],
            &output,
            Duration::from_secs(60),
            &[],
            Some(&namespace),
        );
        let error = outcome.namespace_error().expect("the namespace failed");
        assert_eq!(
            error.to_string(),
            format!(
                "bind mount of {} on {}: No such file or directory (os error 2)",
                tmp.path().join("source").display(),
                missing.display()
            )
        );
    }

    #[test]
    fn the_watched_lines_of_a_real_command() {
        let tmp = tempfile::tempdir().unwrap();
        let argv = ["/bin/sh", "-c", "echo one; echo two >&2; exit 3"].map(String::from);
        let outcome = run_bounded_watching(
            &argv,
            &[],
            &tmp.path().join("output"),
            Duration::from_secs(60),
            &["two", "three"],
            None,
        );
        assert_eq!(outcome.watched, [Some("two".to_string()), None]);
        assert!(!outcome.succeeded());
        assert_eq!(outcome.output, "one\ntwo\n");
    }
}
