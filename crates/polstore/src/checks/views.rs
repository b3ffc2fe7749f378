//! What the command checks of a several-view store see at the view paths.
//!
//! With several views, the policy in one view names the other by its absolute path
//! (Rudder's `promises.cf` in inputs loads the ncf library from `/var/rudder/ncf`). A check
//! that ran on the staged tree alone would judge new rules against the library that is
//! active, not the one they come with. So the parse check and the user checks run in a
//! private mount namespace ([`MountNamespace`]) where each view path shows the checked
//! tree's directory of that view, and the tree itself, read-only. A one-view store's
//! checks run as they always did, without a namespace.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fs::durable;
use crate::process::{Bind, MountNamespace, NamespaceError};
use crate::store::Layout;

/// The mode of a view directory made as a mount target on a fresh node.
pub const MADE_VIEW_DIRECTORY_MODE: u32 = 0o700;

/// How the checks of a several-view store show the tree they check at the view paths.
///
/// A view path where nothing is yet (a fresh node, the first ingest) gets an empty
/// directory (0700) to mount on, which the first activation replaces by the view as it
/// replaces any empty directory there. When this is dropped, such a directory that is
/// still an empty directory (the candidate was refused, or never got that far) is removed
/// again; one the activation replaced is a symlink by then and is left alone.
#[derive(Debug)]
pub struct ViewMounts {
    /// What the checks look at, for a message: "the candidate", "generation 3".
    subject: String,
    namespace: MountNamespace,
    made: Vec<PathBuf>,
}

impl ViewMounts {
    /// The mounts that show `tree` (the root of a candidate or of a generation, holding one
    /// directory per view) at the view paths of `config`: `None` for a one-view store.
    ///
    /// In order: `tree` onto itself (the checks cannot change what they check); when a
    /// view is polstore's symlink that resolves to nothing (a view added after the active
    /// generation was made, which lacks its directory), `tree` onto what `STORE/readonly/active`
    /// resolves to; then each view's directory of `tree` onto the view path (mount(2)
    /// follows polstore's symlink there to the active generation's directory, which is
    /// hidden in the namespace only). With `make_missing`, a view path where nothing is
    /// gets an empty directory (its parent must exist); without, it refuses. Anything but
    /// a directory or a symlink to one there (a file, a symlink to nothing that is not
    /// polstore's) refuses: the checks cannot show the tree there.
    pub fn new(
        config: &Config,
        layout: &Layout,
        tree: &Path,
        subject: &str,
        make_missing: bool,
    ) -> Result<Option<ViewMounts>> {
        if config.view_names().is_none() {
            return Ok(None);
        }
        let mut mounts = ViewMounts {
            subject: subject.to_string(),
            namespace: MountNamespace::default(),
            made: Vec::new(),
        };
        let refuse = |what: String| {
            Error::Refused(format!(
                "the checks cannot show {subject} at the view paths: {what}"
            ))
        };
        let mut binds = vec![Bind {
            source: tree.to_path_buf(),
            target: tree.to_path_buf(),
        }];
        let mut through_active = None;
        let mut at_views = Vec::new();
        for view in config.views() {
            let Some(name) = &view.name else { continue };
            let path = &view.path;
            let source = tree.join(name);
            match fs::symlink_metadata(path) {
                Ok(metadata) if metadata.is_dir() => {}
                Ok(metadata) if metadata.file_type().is_symlink() => {
                    let resolves = fs::metadata(path).is_ok_and(|metadata| metadata.is_dir());
                    let ours =
                        fs::read_link(path).is_ok_and(|target| target == layout.view_target(&view));
                    if !resolves && ours {
                        let active = layout.readonly_active();
                        if !fs::metadata(&active).is_ok_and(|metadata| metadata.is_dir()) {
                            return Err(refuse(format!(
                                "the view {} resolves through {}, which shows no generation",
                                path.display(),
                                active.display()
                            )));
                        }
                        through_active = Some(Bind {
                            source: tree.to_path_buf(),
                            target: active,
                        });
                    } else if !resolves {
                        return Err(refuse(format!(
                            "the view {} is a symlink to {}, which is not a directory",
                            path.display(),
                            fs::read_link(path).unwrap_or_default().display()
                        )));
                    }
                }
                Ok(metadata) => {
                    return Err(refuse(format!(
                        "the view {} is a {}, not a directory or polstore's symlink",
                        path.display(),
                        crate::fs::type_name(metadata.file_type())
                    )));
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound && make_missing => {
                    // mkdir(2) makes the last component only and never follows a symlink
                    // there; the parent must exist.
                    durable::create_directory(path, MADE_VIEW_DIRECTORY_MODE).map_err(|error| {
                        refuse(format!("cannot make {}: {error}", path.display()))
                    })?;
                    mounts.made.push(path.clone());
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    return Err(refuse(format!("the view {} is missing", path.display())));
                }
                Err(error) => return Err(Error::io("cannot read view", path)(error)),
            }
            at_views.push(Bind {
                source,
                target: path.clone(),
            });
        }
        binds.extend(through_active);
        binds.extend(at_views);
        mounts.namespace = MountNamespace::new(binds);
        Ok(Some(mounts))
    }

    pub fn namespace(&self) -> &MountNamespace {
        &self.namespace
    }

    /// The one line refusing a check (`check`: "the parse check", "the user check NAME")
    /// whose namespace could not be made.
    pub fn refusal(&self, check: &str, error: &NamespaceError) -> Error {
        let hint = if error.is_permission() {
            "; several views need CAP_SYS_ADMIN"
        } else {
            ""
        };
        Error::Refused(format!(
            "{check} cannot show {} at the view paths: {error}{hint}",
            self.subject
        ))
    }
}

impl Drop for ViewMounts {
    fn drop(&mut self) {
        for path in &self.made {
            // rmdir(2) removes an empty directory only, and never follows a symlink (the
            // view the activation put there).
            if fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_dir()) {
                let _ = fs::remove_dir(path);
            }
        }
    }
}
