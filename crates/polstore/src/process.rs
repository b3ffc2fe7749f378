//! Runs an external command (a check, the agent) with a time limit and bounded output.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The tail of a command's output that is kept for the history.
pub const OUTPUT_BYTES_KEPT_MAX: u64 = 16 << 10;
/// How much of a command's output, from its start, is searched for watched lines.
pub const OUTPUT_BYTES_SCANNED_MAX: u64 = 64 << 20;
/// How much of each line, from its start, is searched and kept.
pub const LINE_BYTES_SCANNED_MAX: usize = 4096;
const POLL_INTERVAL_MAX: Duration = Duration::from_millis(50);

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
    run_bounded_watching(argv, environment, output_file, timeout, &[])
}

/// [`run_bounded`], and the first line of the whole output (not only the tail kept)
/// containing each of `watched`, in [`RunOutcome::watched`]: a line a command prints
/// early, before much else, is found however long the output grows after it. Reads at
/// most [`OUTPUT_BYTES_SCANNED_MAX`] from the start, [`LINE_BYTES_SCANNED_MAX`] of each line.
pub fn run_bounded_watching(
    argv: &[String],
    environment: &[(&str, String)],
    output_file: &Path,
    timeout: Duration,
    watched: &[&str],
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
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return not_started(error),
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
    fn the_watched_lines_of_a_real_command() {
        let tmp = tempfile::tempdir().unwrap();
        let argv = ["/bin/sh", "-c", "echo one; echo two >&2; exit 3"].map(String::from);
        let outcome = run_bounded_watching(
            &argv,
            &[],
            &tmp.path().join("output"),
            Duration::from_secs(60),
            &["two", "three"],
        );
        assert_eq!(outcome.watched, [Some("two".to_string()), None]);
        assert!(!outcome.succeeded());
        assert_eq!(outcome.output, "one\ntwo\n");
    }
}
