//! The view: the symlink the agent reads through, pointed at the active generation's tree.
//! Only this module, [`crate::store::recovery`] and `verify --repair`
//! (`health::repair::restore_view`) write at the view path and its siblings.

use std::fs;
use std::io;

use crate::error::{Error, Result};
use crate::fs::durable;
use crate::store::Store;

impl Store {
    /// Points the view at the active generation if it points elsewhere. Returns what it did.
    pub fn sync_view(&self) -> Result<Option<String>> {
        let Some(active) = self.db.read()?.state()?.active else {
            return Ok(None);
        };
        let target = self.layout.generation_tree(active);
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

    /// Points the view at `generation`'s tree, atomically and durably.
    pub fn switch_view(&self, generation: u64) -> Result<()> {
        let view = &self.config.view;
        durable::switch_symlink(view, &self.layout.generation_tree(generation))
            .map_err(Error::io("cannot switch the view", view))
    }
}

/// What is wrong with the view, if anything.
pub fn view_problem(store: &Store, active: u64) -> Option<String> {
    let view = &store.config.view;
    let target = store.layout.generation_tree(active);
    match fs::symlink_metadata(view) {
        Ok(metadata) if metadata.file_type().is_symlink() => match fs::read_link(view) {
            Ok(found) if found == target => None,
            Ok(found) => Some(format!(
                "the view {} points at {}, not at the active generation {active}",
                view.display(),
                found.display()
            )),
            Err(error) => Some(format!(
                "the view {} cannot be read: {error}",
                view.display()
            )),
        },
        Ok(metadata) => Some(format!(
            "the view {} is a {}, not polstore's symlink to generation {active}",
            view.display(),
            crate::fs::type_name(metadata.file_type())
        )),
        Err(_) => Some(format!("the view {} is missing", view.display())),
    }
}
