//! The views: the symlinks the agent reads through, fixed, each resolving through
//! `STORE/active`, the one symlink an activation switches (store-format.md § Views).
//! Only this module, [`crate::store::recovery`] and `verify --repair`
//! (`health::repair::restore_view`) write at the view path and its siblings.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::View;
use crate::error::{Error, Result};
use crate::fs::durable;
use crate::store::{Layout, Store};

impl Store {
    /// Brings `STORE/active` and the views in line with the database: `active` pointed at
    /// the active generation if it points elsewhere or is missing, then each view put in
    /// place if it is missing, an empty directory, an older polstore's symlink or a
    /// symlink pointing elsewhere. Returns one note for each thing it did.
    pub fn sync_view(&self) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        let Some(active) = self.db.read()?.state()?.active else {
            // Nothing to point at yet. What the first activation will replace must be the
            // views' to replace: missing, polstore's symlink or an empty directory (a
            // fresh CFEngine install's inputs, which cf-agent and cf-key make again when
            // it is missing). Anything else is refused before anything is committed.
            for view in self.config.views() {
                match fs::symlink_metadata(&view.path) {
                    Ok(metadata)
                        if metadata.file_type().is_symlink()
                            || durable::is_empty_directory(&view.path) => {}
                    Ok(_) => return Err(Error::ViewDisplaced { view: view.path }),
                    Err(_) => {}
                }
            }
            return Ok(notes);
        };
        // An adoption stopped between its commit and its last exchange: a view is still
        // its adopted directory. Every view is put in place, then the adoption finished.
        let views = self.config.views();
        if views
            .iter()
            .any(|view| fs::symlink_metadata(&view.path).is_ok_and(|metadata| metadata.is_dir()))
            && self.adoption_unfinished(active)?
        {
            self.replace_adopted_views(active)?;
            notes.push(format!(
                "finished adopting {} as generation {active}",
                crate::store::adoption_source(&views)
            ));
            return Ok(notes);
        }
        if self.layout.active_generation() != Some(active) {
            self.switch_active(active)?;
            notes.push(format!(
                "pointed {} at generation {active}",
                self.layout.active_link().display()
            ));
        }
        notes.extend(self.place_views()?);
        Ok(notes)
    }

    /// Activates `generation` on disk: switches `STORE/active` (one atomic rename, so
    /// every view changes at once), then puts in place a view that is missing or an
    /// empty directory (the first activation). The views themselves never change.
    pub fn switch_view(&self, generation: u64) -> Result<()> {
        self.switch_active(generation)?;
        self.place_views()?;
        Ok(())
    }

    /// Points `STORE/active` at `generation`'s tree: a symlink made beside it and
    /// renamed over it, then `STORE/` fsynced (inside `switch_symlink`): durable when this
    /// returns. `readonly/` and its fallbacks are made durable first, so no view ever
    /// resolves through a path that is not on disk.
    pub fn switch_active(&self, generation: u64) -> Result<()> {
        crate::store::protect::ensure_directory(&self.layout)?;
        let link = self.layout.active_link();
        // Something other than a symlink there (only root can put it in the store): a
        // rename cannot replace a directory, and nothing planted is deleted. Moved into
        // `untrusted/`, then the switch makes `active` anew.
        if fs::symlink_metadata(&link).is_ok_and(|metadata| !metadata.file_type().is_symlink()) {
            self.layout.move_into_untrusted(&link, "active")?;
        }
        durable::switch_symlink(&link, &Layout::active_target(generation))
            .map_err(Error::io("cannot switch", &link))?;
        // The views may still be missing (first activation) or an older polstore's
        // (upgrade): recovery puts them in place next time.
        crate::crashpoint::point("active-switched");
        Ok(())
    }

    /// Puts each view that is not polstore's fixed symlink in place: a missing one is
    /// created, an empty directory replaced (no moment where the path is missing), a
    /// symlink pointing elsewhere (an older polstore's target included) switched. Each
    /// change is durable (the view's directory fsynced) when this returns. Anything else
    /// at a view is left: [`Error::ViewDisplaced`] once every other view is in place.
    pub fn place_views(&self) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        let mut displaced = None;
        for view in self.config.views() {
            let target = self.layout.view_target(&view);
            let path = &view.path;
            match fs::symlink_metadata(path) {
                Ok(metadata) if metadata.file_type().is_symlink() => {
                    if fs::read_link(path).map_err(Error::io("cannot read view", path))? == target {
                        continue;
                    }
                    durable::switch_symlink(path, &target)
                        .map_err(Error::io("cannot switch the view", path))?;
                }
                // A fresh node's inputs, or one cf-agent made again where the view was
                // missing: nothing to lose.
                Ok(_) if durable::is_empty_directory(path) => {
                    durable::replace_empty_directory_with_symlink(path, &target)
                        .map_err(Error::io("cannot put the view in place of", path))?;
                }
                Ok(_) => {
                    displaced.get_or_insert(path.clone());
                    continue;
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    durable::switch_symlink(path, &target)
                        .map_err(Error::io("cannot create the view", path))?;
                }
                Err(error) => return Err(Error::io("cannot read view", path)(error)),
            }
            notes.push(format!(
                "pointed the view {} at {}",
                path.display(),
                target.display()
            ));
        }
        match displaced {
            Some(view) => Err(Error::ViewDisplaced { view }),
            None => Ok(notes),
        }
    }
}

/// What is wrong with `STORE/active`, if anything: it names another generation than the
/// database's active one, or is missing or not polstore's symlink.
pub fn active_problem(layout: &Layout, active: u64) -> Option<String> {
    let link = layout.active_link();
    if layout.active_generation() == Some(active) {
        return None;
    }
    Some(match fs::read_link(&link) {
        Ok(found) => format!(
            "{} points at {}, not at the active generation {active}",
            link.display(),
            found.display()
        ),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            format!("{} is missing", link.display())
        }
        Err(_) => format!("{} is not polstore's symlink", link.display()),
    })
}

/// What is wrong with `view`, if anything: it is not the fixed symlink
/// [`Layout::view_target`].
pub fn view_problem(layout: &Layout, view: &View, active: u64) -> Option<String> {
    let target = layout.view_target(view);
    let path = &view.path;
    let problem = match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => match fs::read_link(path) {
            Ok(found) if found == target => return None,
            Ok(found)
                if layout.view_generation(&found) == Some(active)
                    && found.starts_with(layout.generations()) =>
            {
                format!(
                    "the view {} points at generation {active}'s writable tree {} (as an older polstore made it), not through {}",
                    path.display(),
                    found.display(),
                    layout.readonly().display()
                )
            }
            Ok(found) if layout.view_generation(&found) == Some(active) => format!(
                "the view {} points at generation {active}'s tree {} (as an older polstore made it), not at {}",
                path.display(),
                found.display(),
                target.display()
            ),
            Ok(found) => format!(
                "the view {} points at {}, not at {}",
                path.display(),
                found.display(),
                target.display()
            ),
            Err(error) => format!("the view {} cannot be read: {error}", path.display()),
        },
        Ok(metadata) if metadata.is_dir() => format!(
            "the view {} is a directory, not polstore's symlink to {} (something copied policy into it{})",
            path.display(),
            target.display(),
            if moved_aside(path).is_some() {
                ""
            } else {
                ", or replaced the symlink"
            }
        ),
        Ok(metadata) => format!(
            "the view {} is a {}, not polstore's symlink to {}",
            path.display(),
            crate::fs::type_name(metadata.file_type()),
            target.display()
        ),
        Err(_) => format!("the view {} is missing", path.display()),
    };
    Some(match moved_aside(path) {
        Some(moved) => format!(
            "{problem}; {} is there: CFEngine's move_obstructions moved the view aside",
            moved.display()
        ),
        None => problem,
    })
}

/// True when the view is an older polstore's symlink to `active`'s tree
/// (`readonly/generations/N/tree` or `generations/N/tree`): the agent reads the right
/// policy, and the next writer points it at its fixed target.
pub fn is_older_view(layout: &Layout, view: &View, active: u64) -> bool {
    fs::read_link(&view.path)
        .ok()
        .and_then(|target| layout.view_generation(&target))
        == Some(active)
}

/// True when the view is an older polstore's symlink to `active`'s tree through the
/// read-only mount (`readonly/generations/N/tree`): not damage, unlike the writable
/// `generations/N/tree`, through which writes reach the store.
pub fn is_older_protected_view(layout: &Layout, view: &View, active: u64) -> bool {
    is_older_view(layout, view, active)
        && fs::read_link(&view.path)
            .is_ok_and(|target| target.starts_with(layout.readonly_fallback()))
}

/// `VIEW.cf-moved`, where CFEngine's `move_obstructions` puts what is in the way of a
/// file or directory it makes, if it is there.
fn moved_aside(view: &Path) -> Option<PathBuf> {
    let mut name = view.file_name()?.to_os_string();
    name.push(".cf-moved");
    let moved = view.with_file_name(name);
    fs::symlink_metadata(&moved).is_ok().then_some(moved)
}
