//! The view: the symlink the agent reads through, pointed at the active generation's tree.
//! Only this module, [`crate::store::recovery`] and `verify --repair`
//! (`health::repair::restore_view`) write at the view path and its siblings.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fs::durable;
use crate::store::{Layout, Store};

impl Store {
    /// Points the view at the active generation if it points elsewhere. Returns what it did.
    pub fn sync_view(&self) -> Result<Option<String>> {
        let Some(active) = self.db.read()?.state()?.active else {
            // Nothing to point at yet. What the first activation will replace must be the
            // view's to replace: missing, polstore's symlink or an empty directory (a
            // fresh CFEngine install's inputs, which cf-agent and cf-key make again when
            // it is missing). Anything else is refused before anything is committed.
            return match fs::symlink_metadata(&self.config.view) {
                Ok(metadata)
                    if metadata.file_type().is_symlink()
                        || durable::is_empty_directory(&self.config.view) =>
                {
                    Ok(None)
                }
                Ok(_) => Err(Error::ViewDisplaced {
                    view: self.config.view.clone(),
                }),
                Err(_) => Ok(None),
            };
        };
        let target = self.layout.view_target(active);
        let view = &self.config.view;
        match fs::symlink_metadata(view) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                if fs::read_link(view).map_err(Error::io("cannot read view", view))? == target {
                    return Ok(None);
                }
            }
            Ok(metadata) if metadata.is_dir() && self.adoption_unfinished(active)? => {
                self.replace_adopted_view(active)?;
                return Ok(Some(format!(
                    "finished adopting {} as generation {active}",
                    view.display()
                )));
            }
            // An empty directory holds nothing to lose: switch_view replaces it.
            Ok(_) if durable::is_empty_directory(view) => {}
            Ok(_) => {
                return Err(Error::ViewDisplaced { view: view.clone() });
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(Error::io("cannot read view", view)(error)),
        }
        self.switch_view(active)?;
        Ok(Some(format!(
            "pointed the view {} at generation {active}",
            view.display()
        )))
    }

    /// Points the view at `generation`'s tree through `readonly/`, atomically and durably.
    /// The fallback symlink the target resolves through is made durable first.
    pub fn switch_view(&self, generation: u64) -> Result<()> {
        crate::store::protect::ensure_directory(&self.layout)?;
        let view = &self.config.view;
        let target = self.layout.view_target(generation);
        if durable::is_empty_directory(view) {
            // A fresh node's inputs, or one cf-agent made again where the view was missing.
            durable::replace_empty_directory_with_symlink(view, &target)
                .map_err(Error::io("cannot put the view in place of", view))?;
            return Ok(());
        }
        durable::switch_symlink(view, &target).map_err(Error::io("cannot switch the view", view))
    }
}

/// What is wrong with the view, if anything.
pub fn view_problem(layout: &Layout, view: &Path, active: u64) -> Option<String> {
    let target = layout.view_target(active);
    let problem = match fs::symlink_metadata(view) {
        Ok(metadata) if metadata.file_type().is_symlink() => match fs::read_link(view) {
            Ok(found) if found == target => return None,
            Ok(found) if layout.view_generation(&found) == Some((active, true)) => format!(
                "the view {} points at generation {active}'s writable tree {} (as an older polstore made it), not through {}",
                view.display(),
                found.display(),
                layout.readonly().display()
            ),
            Ok(found) => format!(
                "the view {} points at {}, not at the active generation {active}",
                view.display(),
                found.display()
            ),
            Err(error) => format!("the view {} cannot be read: {error}", view.display()),
        },
        Ok(metadata) if metadata.is_dir() => format!(
            "the view {} is a directory, not polstore's symlink to generation {active} (something copied policy into it{})",
            view.display(),
            if moved_aside(view).is_some() {
                ""
            } else {
                ", or replaced the symlink"
            }
        ),
        Ok(metadata) => format!(
            "the view {} is a {}, not polstore's symlink to generation {active}",
            view.display(),
            crate::fs::type_name(metadata.file_type())
        ),
        Err(_) => format!("the view {} is missing", view.display()),
    };
    Some(match moved_aside(view) {
        Some(moved) => format!(
            "{problem}; {} is there: CFEngine's move_obstructions moved the view aside",
            moved.display()
        ),
        None => problem,
    })
}

/// True when the view points at `active`'s writable tree, as polstore before the read-only
/// view made it.
pub fn is_older_view(layout: &Layout, view: &Path, active: u64) -> bool {
    fs::read_link(view)
        .ok()
        .and_then(|target| layout.view_generation(&target))
        == Some((active, true))
}

/// `VIEW.cf-moved`, where CFEngine's `move_obstructions` puts what is in the way of a
/// file or directory it makes, if it is there.
fn moved_aside(view: &Path) -> Option<PathBuf> {
    let mut name = view.file_name()?.to_os_string();
    name.push(".cf-moved");
    let moved = view.with_file_name(name);
    fs::symlink_metadata(&moved).is_ok().then_some(moved)
}
