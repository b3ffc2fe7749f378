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
        f.write_str(&Rejection::prefix(&self.check))?;
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl Rejection {
    /// How a rejection by `check` starts: `rejected by the CHECK check: `.
    pub fn prefix(check: &Check) -> String {
        match check {
            // "user check NAME" already says what it is.
            Check::User(_) => format!("rejected by the {check}: "),
            check => format!("rejected by the {check} check: "),
        }
    }

    pub fn new(check: Check, path: Option<&str>, reason: impl Into<String>) -> Rejection {
        Rejection {
            check,
            path: path.map(str::to_string),
            reason: reason.into(),
        }
    }
}

/// Every failure of the library, by kind. Messages are one line and name no command of
/// the binary; the binary adds the advice (`polstore verify`, `polstore list`, ...).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A check refused the candidate.
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The file system is full (ENOSPC).
    #[error("{action} {}: no space left on device", path.display())]
    NoSpace { action: &'static str, path: PathBuf },
    #[error(transparent)]
    Db(#[from] DbError),
    /// The store is damaged: what was found.
    #[error("store is damaged: {0}")]
    Corrupt(String),
    /// Something other than polstore's symlink is at the view: never replaced by a writer.
    #[error(
        "store is damaged: the view {} is not polstore's symlink; polstore will not replace what someone put there",
        view.display()
    )]
    ViewDisplaced { view: PathBuf },
    /// One of the store's own paths is not what polstore made, or others could change it.
    #[error("store is not safe to use: {0}")]
    UnsafePath(crate::fs::PathProblem),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The operator asked for something the store's state does not allow.
    #[error("{0}")]
    Refused(String),
    #[error("generation {0} does not exist")]
    NoSuchGeneration(u64),
    #[error("{} is not a polstore store (no format file)", root.display())]
    NotAStore { root: PathBuf },
    /// A candidate that obviously cannot fit in the space left.
    #[error(
        "not enough space for this candidate in {}: it needs about {needed_mib} MiB, {free_mib} MiB are free",
        root.display()
    )]
    NotEnoughSpace {
        root: PathBuf,
        needed_mib: u64,
        free_mib: u64,
    },
    #[error("store {} is locked by {holder}; gave up after {waited_secs} s", store.display())]
    Locked {
        store: PathBuf,
        holder: String,
        waited_secs: u64,
    },
}

impl Error {
    /// `action` on `path` failed with an I/O error; a full disk becomes [`Error::NoSpace`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| {
            if source.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) {
                Error::NoSpace { action, path }
            } else {
                Error::Io {
                    action,
                    path,
                    source,
                }
            }
        }
    }

    pub fn is_rejection(&self) -> bool {
        matches!(self, Error::Rejected(_))
    }
}
