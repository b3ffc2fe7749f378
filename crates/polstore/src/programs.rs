//! CFEngine's programs, found where its packages put them.
//!
//! A command of the configuration may name one of CFEngine's programs bare (`cf-agent`,
//! `cf-promises`, ...): it runs the first of `[cfengine] bin_dirs` that holds it
//! (`/var/cfengine/bin` for cfengine.com's packages, `/opt/rudder/bin` for Rudder's,
//! `/usr/bin` for Debian's). Any other program must be named by its absolute path.
//!
//! polstore runs it as root, so who could have written it matters (as for user checks,
//! OpenSSH's `safe_path`): the program found, and the directory it is found in, must
//! belong to root (or polstore's user) and be writable by no one else. A program found
//! but not fit to run is refused, never passed over for the next directory: the operator
//! sees it instead of a check silently running something else.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The programs a command may name bare. The others are daemons, never run by polstore.
pub const CFENGINE_PROGRAMS: &[&str] = &[
    "cf-agent",
    "cf-promises",
    "cf-runagent",
    "cf-net",
    "cf-key",
    "cf-check",
    "cf-secret",
];

/// Whether `program` is one of [`CFENGINE_PROGRAMS`], named bare.
pub fn is_cfengine_program(program: &str) -> bool {
    CFENGINE_PROGRAMS.contains(&program)
}

/// Why a program named bare cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocateError {
    /// None of the directories holds it.
    NotFound { program: String, dirs: Vec<PathBuf> },
    /// Found, but not an executable regular file.
    NotExecutable { path: PathBuf },
    /// Found, but `checked` (the program or its directory) could be changed by others.
    Untrusted {
        path: PathBuf,
        checked: PathBuf,
        owner: u32,
        mode: u32,
    },
    /// Found, but its metadata cannot be read.
    Unreadable { path: PathBuf, error: String },
}

impl fmt::Display for LocateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocateError::NotFound { program, dirs } => {
                let dirs: Vec<String> = dirs.iter().map(|dir| dir.display().to_string()).collect();
                write!(
                    f,
                    "{program} is in none of the directories of cfengine.bin_dirs ({})",
                    dirs.join(", ")
                )
            }
            LocateError::NotExecutable { path } => write!(
                f,
                "{} is not an executable regular file; refusing to run it",
                path.display()
            ),
            LocateError::Untrusted {
                path,
                checked,
                owner,
                mode,
            } => write!(
                f,
                "{}: {} must belong to root and be writable by no one else (owner {owner}, mode {mode:04o}); refusing to run it",
                path.display(),
                checked.display()
            ),
            LocateError::Unreadable { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
        }
    }
}

/// `argv` with its program, if it is one of CFEngine's named bare, replaced by the path
/// of the first of `bin_dirs` that holds it. An absolute program is left as it is (the
/// configuration admits no other).
pub fn resolve(argv: &[String], bin_dirs: &[PathBuf]) -> Result<Vec<String>, LocateError> {
    let mut resolved = argv.to_vec();
    if let Some(program) = resolved.first_mut()
        && is_cfengine_program(program)
    {
        *program = locate(program, bin_dirs)?.display().to_string();
    }
    Ok(resolved)
}

/// The first `dir/program` of `bin_dirs` that exists (following symlinks: Debian's
/// `/var/lib/cfengine3/bin` is one to `/usr/bin`), checked fit to run as root.
pub fn locate(program: &str, bin_dirs: &[PathBuf]) -> Result<PathBuf, LocateError> {
    for dir in bin_dirs {
        let path = dir.join(program);
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                continue;
            }
            Err(error) => {
                return Err(LocateError::Unreadable {
                    path,
                    error: error.to_string(),
                });
            }
        };
        if !metadata.is_file() || metadata.mode() & 0o111 == 0 {
            return Err(LocateError::NotExecutable { path });
        }
        // The program as found, then what actually runs (a symlink's target) and the
        // directory holding that: whoever can change any of them chooses what root runs.
        let real = std::fs::canonicalize(&path).map_err(|error| LocateError::Unreadable {
            path: path.clone(),
            error: error.to_string(),
        })?;
        let mut checked = vec![dir.clone(), real.clone()];
        if let Some(parent) = real.parent() {
            checked.push(parent.to_path_buf());
        }
        for checked in checked {
            trusted(&path, &checked)?;
        }
        return Ok(path);
    }
    Err(LocateError::NotFound {
        program: program.to_string(),
        dirs: bin_dirs.to_vec(),
    })
}

/// Refuses `checked` (followed) unless it belongs to root or polstore's user and no one
/// else can write it.
fn trusted(path: &Path, checked: &Path) -> Result<(), LocateError> {
    let metadata = std::fs::metadata(checked).map_err(|error| LocateError::Unreadable {
        path: checked.to_path_buf(),
        error: error.to_string(),
    })?;
    let owner = rustix::process::geteuid().as_raw();
    if (metadata.uid() != 0 && metadata.uid() != owner) || metadata.mode() & 0o022 != 0 {
        return Err(LocateError::Untrusted {
            path: path.to_path_buf(),
            checked: checked.to_path_buf(),
            owner: metadata.uid(),
            mode: metadata.mode() & 0o7777,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn program_in(dir: &Path, name: &str, mode: u32) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn the_first_directory_holding_the_program_is_used_and_missing_ones_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        let first = tmp.path().join("first");
        let second = tmp.path().join("second");
        program_in(&first, "cf-promises", 0o755);
        program_in(&second, "cf-promises", 0o755);
        program_in(&second, "cf-agent", 0o755);
        let dirs = [missing, first.clone(), second.clone()];
        let argv = ["cf-promises", "-c"].map(String::from);
        assert_eq!(
            resolve(&argv, &dirs).unwrap(),
            [first.join("cf-promises").display().to_string(), "-c".into()]
        );
        assert_eq!(locate("cf-agent", &dirs).unwrap(), second.join("cf-agent"));
        // An absolute program is left alone, whatever the directories.
        let absolute = ["/bin/true".to_string()];
        assert_eq!(resolve(&absolute, &[]).unwrap(), absolute);
    }

    #[test]
    fn nothing_found_names_the_program_and_every_directory() {
        let error = locate(
            "cf-agent",
            &[PathBuf::from("/nonexistent/a"), "/nonexistent/b".into()],
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "cf-agent is in none of the directories of cfengine.bin_dirs (/nonexistent/a, /nonexistent/b)"
        );
    }

    #[test]
    fn a_program_found_but_unfit_is_refused_not_passed_over() {
        let tmp = tempfile::tempdir().unwrap();
        let first = tmp.path().join("first");
        let second = tmp.path().join("second");
        program_in(&second, "cf-agent", 0o755);
        let dirs = [first.clone(), second];
        let planted = program_in(&first, "cf-agent", 0o644);
        assert_eq!(
            locate("cf-agent", &dirs).unwrap_err(),
            LocateError::NotExecutable {
                path: planted.clone()
            }
        );
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o757)).unwrap();
        assert!(matches!(
            locate("cf-agent", &dirs).unwrap_err(),
            LocateError::Untrusted { mode: 0o757, .. }
        ));
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&first, fs::Permissions::from_mode(0o777)).unwrap();
        let error = locate("cf-agent", &dirs).unwrap_err();
        assert!(
            error.to_string().contains("(owner ") && error.to_string().contains("mode 0777"),
            "{error}"
        );
    }
}
