//! `init [--adopt]`: a new store, and optionally the agent's existing directory taken in
//! as its first generation; with several views, every view's directory, each as its
//! `NAME/` of that generation, then put in place view after view.
//!
//! Everything that would make an adoption impossible (a view that is a mount point or not
//! a directory, a temporary name taken, and, while reading, anything the source rules
//! refuse in any of the directories) is found before the commit, so that a refused init
//! leaves every view's directory as it was and no store.
//!
//! An `init --adopt` interrupted before its commit left a store with the adoption marker
//! and no generation: nothing was adopted, and running `init` again starts over. A failed
//! adoption takes the new store away again, so that `init` can simply be run again.
//!
//! A fresh node's inputs directory is empty (`cf-key` makes it) or missing. Either is
//! accepted, with or without `--adopt`, and nothing is adopted: init writes nothing
//! outside the store, and the first activation puts the view in place of the empty
//! directory (`Store::switch_view`, by an exchange: the path is never missing).

use crate::store::protect::{self, Protection};
use std::fs;
use std::path::{Path, PathBuf};

use crate::config::View;
use crate::error::{Error, Result};
use crate::format::signify::{KEY_FILE_BYTES_MAX, PublicKey};
use crate::fs::durable;
use crate::fs::read::read_bounded;
use crate::ops::ingest::{self, Progress};
use crate::store::{Layout, Store, StoreReader};

pub struct InitRequest<'a> {
    pub root: &'a Path,
    /// The views (absolute paths): one unnamed, or several named.
    pub views: &'a [View],
    /// Absolute paths of the trusted public keys.
    pub keys: &'a [PathBuf],
    /// Take what the views' directories hold in as generation 1 (with several views, one
    /// top-level directory per view).
    pub adopt: bool,
    /// The configuration to write, whole (`init --config`); it names `views` and `keys`.
    /// `None`: the default text for them.
    pub config_text: Option<String>,
    pub progress: &'a mut dyn FnMut(Progress),
}

#[derive(Debug)]
pub struct InitReport {
    /// An interrupted adoption was found and started over.
    pub restarted: bool,
    /// What was adopted, if anything.
    pub adopted: Option<Adoption>,
    /// Whether writes through the view will reach the store.
    pub protection: Protection,
    /// Views that are an empty directory: nothing was adopted, and the first activation
    /// replaces each with the view.
    pub empty_directories: Vec<PathBuf>,
    /// Views that do not exist: the first activation makes them.
    pub missing: Vec<PathBuf>,
}

/// An adoption done: every view is now its symlink.
#[derive(Debug)]
pub struct Adoption {
    pub generation: u64,
    /// Each view's path and the target of the symlink now in its place, in the
    /// configuration's order.
    pub views: Vec<(PathBuf, PathBuf)>,
}

/// A failed adoption: the store was taken away again, nothing was adopted.
#[derive(Debug, thiserror::Error)]
#[error("{error}; nothing was adopted and the store was not created")]
pub struct AdoptionFailed {
    pub error: Error,
}

/// Creates the store; with `adopt`, adopts the directories at the views.
pub fn init(request: InitRequest) -> Result<InitReport, InitError> {
    let root = request.root;
    let layout = Layout::new(root);
    let mut restarted = false;
    // Before looking at the view: an initialized store's view is its own symlink, which
    // the checks below would take for a directory to adopt.
    if layout.format_file().exists() {
        if !interrupted_adoption(&layout)? {
            return Err(Error::Refused(format!(
                "{} already holds a polstore store; refusing to initialize it",
                root.display()
            ))
            .into());
        }
        remove_new_store(root, true);
        restarted = true;
    }
    for key in request.keys {
        let text = read_bounded(key, KEY_FILE_BYTES_MAX).ok_or_else(|| {
            Error::Refused(format!(
                "cannot read trusted key {}: not a regular file of at most {KEY_FILE_BYTES_MAX} bytes",
                key.display()
            ))
        })?;
        PublicKey::parse(&text)
            .map_err(|error| Error::Refused(format!("trusted key {}: {error}", key.display())))?;
    }
    let views = request.views;
    let mut holding = Vec::new();
    let mut empty_directories = Vec::new();
    let mut missing = Vec::new();
    for view in views {
        let view = view.path.as_path();
        if !view.parent().is_some_and(Path::is_dir) {
            return Err(Error::Refused(format!(
                "the view's parent directory does not exist: {}",
                view.display()
            ))
            .into());
        }
        let existing = fs::symlink_metadata(view).ok();
        // Neither adoption nor the first activation can put the view symlink in place of
        // a mount point (rename(2) cannot move one): refused before anything is made.
        if existing.as_ref().is_some_and(|metadata| metadata.is_dir())
            && durable::is_mount_point(view)
        {
            return Err(Error::Refused(format!(
                "{} is a mount point, which polstore cannot put its view symlink in place of; unmount it (copy its content into a plain directory there to adopt it) first",
                view.display()
            ))
            .into());
        }
        let empty = durable::is_empty_directory(view);
        if existing.is_none() {
            missing.push(view.to_path_buf());
        } else if empty {
            empty_directories.push(view.to_path_buf());
        }
        match &existing {
            // Nothing to adopt, with or without `--adopt`: the first ingest makes the view.
            None => {}
            Some(_) if empty => {}
            Some(metadata)
                if metadata.is_dir() || (metadata.file_type().is_symlink() && view.is_dir()) =>
            {
                if !request.adopt {
                    return Err(InitError::ViewHoldsPolicy {
                        view: view.to_path_buf(),
                    });
                }
                holding.push(view.to_path_buf());
            }
            Some(_) => {
                return Err(Error::Refused(format!(
                    "{} exists and is not a directory; move it away first",
                    view.display()
                ))
                .into());
            }
        }
        if view.starts_with(root) {
            return Err(Error::Refused(format!(
                "the view {} must be outside the store {}",
                view.display(),
                root.display()
            ))
            .into());
        }
    }
    // Something to adopt in one view's directory: every view is adopted together (with
    // several views, an empty or missing one becomes an empty `NAME/`). Each directory
    // to be exchanged lands at its temporary name: one taken by something polstore did
    // not make refuses the init here, before anything is made or committed.
    let adopting = !holding.is_empty();
    if adopting {
        for view in views {
            let temporary = durable::temporary_sibling(&view.path, "new")
                .map_err(Error::io("cannot name", &view.path))?;
            if let Ok(metadata) = fs::symlink_metadata(&temporary)
                && !metadata.file_type().is_symlink()
                && fs::symlink_metadata(&view.path).is_ok()
            {
                return Err(Error::Refused(format!(
                    "{} is a {} polstore did not make, where the adopted directory {} would be moved; move it away first",
                    temporary.display(),
                    crate::fs::type_name(metadata.file_type()),
                    view.path.display()
                ))
                .into());
            }
        }
    }
    let existed = root.exists();
    let store = Store::create(
        root,
        views,
        request.keys,
        request.config_text.clone(),
        adopting,
    )?;
    // The read-only mount is in place before any view points through it.
    let protection = protect::ensure_mounted(&store.layout, store.config.protect_view)?.protection;
    let mut report = InitReport {
        restarted,
        adopted: None,
        protection,
        empty_directories,
        missing,
    };
    if adopting {
        match ingest::adopt(&store, request.progress) {
            Ok(generation) => {
                report.adopted = Some(Adoption {
                    generation,
                    views: views
                        .iter()
                        .map(|view| (view.path.clone(), store.layout.view_target(view)))
                        .collect(),
                });
            }
            Err(error) => {
                // Committed already (an exchange failed after): generation 1 holds the
                // adopted policy, and the next writer's recovery finishes the exchanges.
                if store.state().is_ok_and(|state| state.active.is_some()) {
                    return Err(error.into());
                }
                // The store is new and holds nothing yet: take it away again. No view
                // was touched: the exchanges come after the commit.
                drop(store);
                remove_new_store(root, existed);
                return Err(InitError::AdoptionFailed(AdoptionFailed { error }));
            }
        }
    }
    Ok(report)
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Store(#[from] Error),
    /// The view is a directory of policies and `adopt` was not asked for.
    #[error("{} is a directory with policies", view.display())]
    ViewHoldsPolicy { view: PathBuf },
    #[error(transparent)]
    AdoptionFailed(AdoptionFailed),
}

/// True when the store is one that `init --adopt` made and that has no generation yet:
/// adoption was interrupted before its commit.
fn interrupted_adoption(layout: &Layout) -> Result<bool> {
    if !layout.adoption_marker().exists() {
        return Ok(false);
    }
    let reader = StoreReader::open(&layout.root)?;
    let state = reader.read()?.state()?;
    Ok(state.active.is_none())
}

/// Removes a store `init` just made (the directory too, unless it existed before, empty).
fn remove_new_store(root: &Path, existed: bool) {
    // The read-only mount first: through it, nothing of the store could be removed.
    let _ = protect::unmount_all(&Layout::new(root));
    if existed {
        if let Ok(entries) = fs::read_dir(root) {
            for entry in entries.flatten() {
                let _ = durable::remove_tree_if_exists(&entry.path());
            }
        }
    } else {
        let _ = fs::remove_dir_all(root);
    }
}
