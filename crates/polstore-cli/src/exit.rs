//! The one place where errors become exit codes and advice.
//!
//! Exit codes, as documented in the README: 0 success (and a closed output pipe, which is
//! not worth a message), 1 error, 2 usage (clap), 3 a check refused the candidate, 4
//! `verify` found damage or could not put all of it right.

use std::io::{self, Write};
use std::process::ExitCode;

use polstore::db::DbError;
use polstore::error::Error;
use polstore::ops::init::InitError;

pub const EXIT_ERROR: u8 = 1;
pub const EXIT_REJECTED: u8 = 3;
pub const EXIT_DAMAGED: u8 = 4;

/// An error already put in its final words, with its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{line}")]
pub struct Failure {
    pub line: String,
    pub code: u8,
}

impl Failure {
    /// A library error, with its advice, then `suffix` (e.g. "; generation 3 stays active").
    pub fn from_library(error: &Error, suffix: &str) -> Failure {
        Failure {
            line: format!("{}{suffix}", line_of(error)),
            code: code_of(error),
        }
    }

    /// `verify` found damage.
    pub fn damaged(line: String) -> Failure {
        Failure {
            line,
            code: EXIT_DAMAGED,
        }
    }
}

fn code_of(error: &Error) -> u8 {
    if error.is_rejection() {
        EXIT_REJECTED
    } else {
        EXIT_ERROR
    }
}

/// A library error in one line, with what the operator can do about it.
pub fn line_of(error: &Error) -> String {
    let advice = match error {
        Error::Corrupt(_) => "; run 'polstore verify'",
        Error::ViewDisplaced { .. } => {
            ": run 'polstore verify --repair', which moves it aside and restores the view"
        }
        Error::Db(DbError::Corrupt(_)) => "; 'polstore verify --repair' repairs it",
        Error::Db(DbError::Redb(_)) => " (run 'polstore verify')",
        Error::NoSuchGeneration(_) => " (see 'polstore list')",
        Error::NotAStore { .. } => "; create one with 'polstore init'",
        Error::NotEnoughSpace { .. } => "; 'polstore gc' may free some",
        Error::UnsafePath(problem) if problem.repairable => {
            "; 'polstore verify --repair' moves it aside or takes the others' rights away"
        }
        Error::UnsafePath(_) => {
            "; check what it holds, then give it back to root and take the others' write rights away"
        }
        _ => "",
    };
    format!("{error}{advice}")
}

/// Reports `error` on standard error in one line and returns the exit code.
pub fn report(error: &anyhow::Error) -> ExitCode {
    // A closed pipe (`polstore log | head`) is not worth a message.
    if error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .any(|io_error| io_error.kind() == io::ErrorKind::BrokenPipe)
    {
        return ExitCode::SUCCESS;
    }
    let (line, code) = if let Some(failure) = error.downcast_ref::<Failure>() {
        (failure.line.clone(), failure.code)
    } else if let Some(library) = error.downcast_ref::<Error>() {
        (line_of(library), code_of(library))
    } else if let Some(init) = error.downcast_ref::<InitError>() {
        match init {
            InitError::Store(library) => (line_of(library), code_of(library)),
            InitError::ViewHoldsPolicy { .. } => (
                format!("{init}; use --adopt to take it in as the first generation"),
                EXIT_ERROR,
            ),
            InitError::AdoptionFailed(failed) => (
                format!(
                    "{}; nothing was adopted and the store was not created",
                    line_of(&failed.error)
                ),
                code_of(&failed.error),
            ),
        }
    } else {
        (one_line(error), EXIT_ERROR)
    };
    let _ = writeln!(io::stderr(), "polstore: {}", bounded(&line));
    ExitCode::from(code)
}

/// The error and its causes on one line, without repeating a cause the message already
/// contains.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The longest error line, in characters: enough for any message of polstore's own.
const LINE_CHARS_MAX: usize = 2000;

/// One line, whatever the message holds: newlines become spaces, every other control
/// character is escaped, and the line is cut at [`LINE_CHARS_MAX`].
fn bounded(line: &str) -> String {
    polstore::format::text::one_line(&line.replace('\n', " "), LINE_CHARS_MAX)
}
