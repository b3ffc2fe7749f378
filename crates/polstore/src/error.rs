//! The library's error type. A caller tells a check's verdict ([`Error::Rejected`]) from
//! damage ([`Error::Corrupt`]) from the system failing ([`Error::Io`]) without parsing text.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::db::DbError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The check that refused a candidate, in the order they run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The source's shape: file types, names, modes, limits.
    Source,
    Integrity,
    Freshness,
    Parse,
    /// A user check, by file name.
    User(String),
    /// The confirming agent run.
    Agent,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Source => f.write_str("source"),
            Check::Integrity => f.write_str("integrity"),
            Check::Freshness => f.write_str("freshness"),
            Check::Parse => f.write_str("parse"),
            Check::User(name) => write!(f, "user check {name}"),
            Check::Agent => f.write_str("agent run"),
        }
    }
}

/// A candidate refused by a check. Displays as one line: check, file, reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Rejection {
    pub check: Check,
    pub path: Option<String>,
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.check {
            // "user check NAME" already says what it is.
            Check::User(_) => write!(f, "rejected by the {}: ", self.check)?,
            check => write!(f, "rejected by the {check} check: ")?,
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl Rejection {
    pub fn new(check: Check, path: Option<&str>, reason: impl Into<String>) -> Rejection {
        Rejection {
            check,
            path: path.map(str::to_string),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error("{action} {}: {}", path.display(), describe_io(source))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("store is damaged: {}", with_verify_hint(.0))]
    Corrupt(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The operator asked for something the store's state does not allow.
    #[error("{0}")]
    Refused(String),
    #[error("store {} is locked by {holder}; gave up after {waited_secs} s", store.display())]
    Locked {
        store: PathBuf,
        holder: String,
        waited_secs: u64,
    },
}

/// Damage is for `polstore verify` to diagnose; say so unless the message already does.
fn with_verify_hint(message: &str) -> String {
    if message.contains("polstore verify") {
        message.to_string()
    } else {
        format!("{message}; run 'polstore verify'")
    }
}

fn describe_io(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() => {
            "no space left on device".to_string()
        }
        _ => error.to_string(),
    }
}

impl Error {
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    pub fn is_rejection(&self) -> bool {
        matches!(self, Error::Rejected(_))
    }
}
