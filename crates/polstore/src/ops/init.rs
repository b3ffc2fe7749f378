//! `init [--adopt]`: a new store, and optionally the agent's existing directory taken in
//! as its first generation.
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
    /// Take the directory at the (one) view in as generation 1.
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
    /// The adopted directory and its generation.
    pub adopted: Option<(PathBuf, u64)>,
    /// Where the view points after adoption.
    pub view_target: Option<PathBuf>,
    /// Whether writes through the view will reach the store.
    pub protection: Protection,
    /// Views that are an empty directory: nothing was adopted, and the first activation
    /// replaces each with the view.
    pub empty_directories: Vec<PathBuf>,
    /// Views that do not exist: the first activation makes them.
    pub missing: Vec<PathBuf>,
}

/// A failed adoption: the store was taken away again, nothing was adopted.
#[derive(Debug, thiserror::Error)]
#[error("{error}; nothing was adopted and the store was not created")]
pub struct AdoptionFailed {
    pub error: Error,
}

/// Creates the store; with `adopt`, adopts the directory at the view.
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
    if request.adopt && views.len() > 1 {
        return Err(Error::Refused(
            "--adopt takes one view's directory in; a store with several views starts empty (ingest a tree with one directory per view)".into(),
        )
        .into());
    }
    let mut adopt_directory = None;
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
        let empty = durable::is_empty_directory(view);
        if existing.is_none() {
            missing.push(view.to_path_buf());
        } else if empty {
            empty_directories.push(view.to_path_buf());
        }
        let adopted = match &existing {
            // Nothing to adopt, with or without `--adopt`: the first ingest makes the view.
            None => None,
            Some(_) if empty => None,
            Some(metadata)
                if metadata.is_dir() || (metadata.file_type().is_symlink() && view.is_dir()) =>
            {
                if !request.adopt {
                    return Err(InitError::ViewHoldsPolicy {
                        view: view.to_path_buf(),
                    });
                }
                Some(view.to_path_buf())
            }
            Some(_) => {
                return Err(Error::Refused(format!(
                    "{} exists and is not a directory; move it away first",
                    view.display()
                ))
                .into());
            }
        };
        adopt_directory = adopt_directory.or(adopted);
        if view.starts_with(root) {
            return Err(Error::Refused(format!(
                "the view {} must be outside the store {}",
                view.display(),
                root.display()
            ))
            .into());
        }
    }
    let existed = root.exists();
    let store = Store::create(
        root,
        views,
        request.keys,
        request.config_text.clone(),
        adopt_directory.is_some(),
    )?;
    // The read-only mount is in place before any view points through it.
    let protection = protect::ensure_mounted(&store.layout, store.config.protect_view)?.protection;
    let mut report = InitReport {
        restarted,
        adopted: None,
        view_target: None,
        protection,
        empty_directories,
        missing,
    };
    if let Some(directory) = adopt_directory {
        match ingest::adopt(&store, &directory, request.progress) {
            Ok(generation) => {
                report.view_target = views.first().map(|view| store.layout.view_target(view));
                report.adopted = Some((directory, generation));
            }
            Err(error) => {
                // Committed already (the exchange failed after): generation 1 holds the
                // adopted policy, and the next writer's recovery finishes the exchange.
                if store.state().is_ok_and(|state| state.active.is_some()) {
                    return Err(error.into());
                }
                // The store is new and holds nothing yet: take it away again.
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
