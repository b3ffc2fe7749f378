//! The `polstore` binary: argument parsing, one function per command, and the one place
//! where errors become exit codes.

mod args;
mod commands;
mod output;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// Exit codes, as documented in the README.
const EXIT_ERROR: u8 = 1;
const EXIT_REJECTED: u8 = 3;
/// `verify` found damage, or `verify --repair` could not put all of it right.
pub const EXIT_DAMAGED: u8 = 4;

fn main() -> ExitCode {
    // A panic is a bug or a damaged database that redb trips over: one line, not a
    // backtrace, and the way out.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "polstore: internal failure: {}; if the store's database is damaged, 'polstore verify --repair' rebuilds it",
            message.replace('\n', " ")
        );
    }));
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(failure) = error.downcast_ref::<Failure>() {
                let _ = writeln!(std::io::stderr(), "polstore: {}", failure.line);
                return ExitCode::from(failure.code);
            }
            let code = match error.downcast_ref::<polstore::error::Error>() {
                Some(error) if error.is_rejection() => EXIT_REJECTED,
                _ => EXIT_ERROR,
            };
            // A closed pipe (`polstore log | head`) is not worth a message.
            if let Some(io_error) = error.downcast_ref::<std::io::Error>()
                && io_error.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(std::io::stderr(), "polstore: {}", one_line(&error));
            ExitCode::from(code)
        }
    }
}

/// An error already put in its final words, with its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{line}")]
pub struct Failure {
    pub line: String,
    pub code: u8,
}

impl Failure {
    /// A library error with `suffix` appended (e.g. "; generation 3 stays active").
    pub fn from_library(error: &polstore::error::Error, suffix: &str) -> Failure {
        let code = if error.is_rejection() {
            EXIT_REJECTED
        } else {
            EXIT_ERROR
        };
        Failure {
            line: format!("{error}{suffix}").replace('\n', " "),
            code,
        }
    }
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
    line.replace('\n', " ")
}
