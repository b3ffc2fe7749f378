//! Recovery: bringing the file system in line with the database after a crash. Runs at
//! every writer's open ([`Store::open`]); idempotent.

use std::fs;
use std::path::PathBuf;

use crate::config::View;
use crate::error::{Error, Result};
use crate::format::manifest::{Entry, Manifest};
use crate::format::records::{Action, GenerationState, Origin};
use crate::fs::durable;
use crate::store::Store;
use crate::store::protect::{self, Protection};

/// What `open` found and did while reconciling, for the operator.
#[derive(Debug, Default)]
pub struct Recovery {
    pub notes: Vec<String>,
    /// What the operator should know that is not a recovery: the view is not read-only.
    pub warnings: Vec<String>,
    /// The view is something polstore did not put there. Writers refuse to work until it
    /// is repaired; readers report it.
    pub view_displaced: Option<PathBuf>,
}

impl Store {
    /// Brings the file system in line with the database. Idempotent; runs at every open.
    pub fn reconcile(&self) -> Result<Recovery> {
        let mut recovery = Recovery::default();
        // 1. A candidate left by a crash is discarded: nothing references it. So is any
        //    other leftover in staging (a check's or the agent's output file): only the
        //    lock holder uses staging, and we hold the lock.
        let staging = self.layout.staging();
        let leftovers = fs::read_dir(&staging).map_err(Error::io("cannot read", &staging))?;
        for entry in leftovers {
            let entry = entry.map_err(Error::io("cannot read", &staging))?;
            let path = entry.path();
            durable::remove_tree_if_exists(&path).map_err(Error::io("cannot remove", &path))?;
            if path == self.layout.candidate() {
                recovery
                    .notes
                    .push("removed a candidate left in staging by an interrupted command".into());
            }
        }
        let state = self.db.read()?.state()?;
        // 2. A generation directory the database does not know was renamed into place by
        //    an ingest that crashed before its commit (the number it was allocating), or
        //    is one that gc or repair was removing (listed in `removing`). Anything else
        //    there is not polstore's: it is left, for `verify --repair` to move aside.
        let mut removable = self.removal_intent_numbers()?;
        removable.insert(state.next_generation);
        let mut removed = false;
        for path in self.unknown_generation_dirs()? {
            let number = path
                .file_name()
                .and_then(crate::store::layout::generation_number);
            let is_directory = fs::symlink_metadata(&path).is_ok_and(|metadata| metadata.is_dir());
            if is_directory && number.is_some_and(|number| removable.contains(&number)) {
                durable::remove_tree_if_exists(&path).map_err(Error::io("cannot remove", &path))?;
                recovery.notes.push(format!(
                    "removed {} left by an interrupted command",
                    path.display()
                ));
                removed = true;
            } else {
                recovery.notes.push(format!(
                    "{} is not a generation polstore knows; left alone for a repair to move aside",
                    path.display()
                ));
            }
        }
        let generations = self.layout.generations();
        if removed {
            durable::sync_directory(&generations)
                .map_err(Error::io("cannot sync", &generations))?;
        }
        self.clear_removal_intent()?;
        // What the store keeps outside its database for a rebuild is brought up to what
        // the database knows (stores made before kept neither).
        crate::store::trust::raise_serial_floor(&self.layout, state.serial_max)?;
        if fs::symlink_metadata(self.layout.adoption_record()).is_err() {
            let read = self.db.read()?;
            if let Some((generation, _)) = read
                .generations()?
                .into_iter()
                .find(|(_, record)| record.origin == Origin::Adopted)
            {
                let manifest = read.manifest(generation)?.manifest;
                crate::store::trust::record_adoption(&self.layout, generation, &manifest)?;
            }
        }
        // 3. An agent run that never reported back did not confirm its generation.
        if let Some(active) = state.active {
            let record = self.db.read()?.generation(active)?;
            if record.is_some_and(|record| record.state == GenerationState::Confirming) {
                let note = crate::store::transition::fail(
                    self,
                    active,
                    "the confirming agent run was interrupted",
                    Action::Recover,
                )?;
                recovery.notes.push(note);
            }
        }
        // 4. The view follows the database, through the read-only mount.
        let ensured = protect::ensure_mounted(&self.layout, self.config.protect_view)?;
        recovery.notes.extend(ensured.notes);
        if let Protection::Missing(reason) = ensured.protection {
            recovery.warnings.push(format!(
                "the view is not read-only: {reason}; writes through the view reach the store"
            ));
        }
        match self.sync_view() {
            Ok(notes) => recovery.notes.extend(notes),
            Err(Error::ViewDisplaced { view }) => recovery.view_displaced = Some(view),
            Err(error) => return Err(error),
        }
        // 5. An adoption that exchanged every view but stopped before removing the old
        //    directories (now at their temporary names) and its marker is finished.
        if recovery.view_displaced.is_none()
            && self.layout.adoption_marker().exists()
            && let Some(active) = state.active
            && self
                .config
                .views()
                .iter()
                .all(|view| fs::read_link(&view.path).ok() == Some(self.layout.view_target(view)))
            && self.layout.active_generation() == Some(active)
        {
            self.finish_adoption()?;
            recovery
                .notes
                .push("finished an adoption interrupted after its exchange".into());
        }
        Ok(recovery)
    }

    /// The last steps of adoption, view after view: remove the adopted directory, now at
    /// the view's temporary name (the adopted generation holds a verified copy), if it
    /// still matches what was adopted from it (the manifest, or with several views its
    /// `NAME/` part), else keep it as `.NAME.polstore-adopted-changed-TIME`; fsync the
    /// parent. Then remove the marker, fsync the store. A view with nothing at its
    /// temporary name (removed before a crash, or never a directory) is passed over.
    pub(crate) fn finish_adoption(&self) -> Result<()> {
        let views = self.config.views();
        let active = self.db.read()?.state()?.active;
        for (index, view) in views.iter().enumerate() {
            let path = &view.path;
            let temporary =
                durable::temporary_sibling(path, "new").map_err(Error::io("cannot name", path))?;
            // Removed only if it still holds exactly what was adopted: a directory someone
            // changed after the adoption's commit (a crash in between) is kept, renamed.
            if fs::symlink_metadata(&temporary).is_ok_and(|metadata| metadata.is_dir())
                && let Some(active) = active
            {
                let manifest = crate::store::stored_manifest(&self.db.read()?, active)?;
                let manifest = match &view.name {
                    None => manifest,
                    Some(name) => view_part(&manifest, name),
                };
                let mut findings = Vec::new();
                crate::store::tree::check_tree(
                    &temporary,
                    active,
                    &manifest,
                    &mut crate::store::tree::HashCache::default(),
                    self.config.limits.files_max.saturating_mul(2),
                    &mut findings,
                );
                if !findings.is_empty() {
                    let kept = durable::temporary_sibling(
                        path,
                        &format!(
                            "adopted-changed-{}",
                            crate::format::timestamp::Timestamp::now().unix_secs()
                        ),
                    )
                    .map_err(Error::io("cannot name", path))?;
                    fs::rename(&temporary, &kept).map_err(Error::io("cannot keep", &temporary))?;
                }
            }
            durable::remove_tree_if_exists(&temporary)
                .map_err(Error::io("cannot remove", &temporary))?;
            let parent = durable::parent_of(path).map_err(Error::io("cannot sync", path))?;
            durable::sync_directory(parent).map_err(Error::io("cannot sync", parent))?;
            if index + 1 < views.len() {
                crate::crashpoint::point("adopt-directory-removed");
            }
        }
        let marker = self.layout.adoption_marker();
        durable::remove_tree_if_exists(&marker).map_err(Error::io("cannot remove", &marker))?;
        let root = &self.layout.root;
        durable::sync_directory(root).map_err(Error::io("cannot sync", root))
    }

    /// The generation numbers `STORE/removing` lists (empty when it is absent).
    fn removal_intent_numbers(&self) -> Result<std::collections::BTreeSet<u64>> {
        let path = self.layout.removal_intent();
        let text = match crate::fs::read::read_regular(&path, 1 << 20) {
            Ok(text) => text,
            Err(crate::fs::read::ReadError::NotFound) => return Ok(Default::default()),
            Err(error) => {
                return Err(Error::Corrupt(format!("{}: {error}", path.display())));
            }
        };
        Ok(String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|line| line.parse().ok())
            .collect())
    }

    /// Removes `STORE/removing` once what it lists is gone, and syncs the store directory.
    pub(crate) fn clear_removal_intent(&self) -> Result<()> {
        let path = self.layout.removal_intent();
        if fs::symlink_metadata(&path).is_err() {
            return Ok(());
        }
        durable::remove_tree_if_exists(&path).map_err(Error::io("cannot remove", &path))?;
        let root = &self.layout.root;
        durable::sync_directory(root).map_err(Error::io("cannot sync", root))
    }

    /// Entries of `generations/` that are not a generation the database knows.
    pub fn unknown_generation_dirs(&self) -> Result<Vec<PathBuf>> {
        let read = self.db.read()?;
        let generations = self.layout.generations();
        let mut unknown = Vec::new();
        for entry in fs::read_dir(&generations).map_err(Error::io("cannot read", &generations))? {
            let entry = entry.map_err(Error::io("cannot read", &generations))?;
            let number = crate::store::layout::generation_number(&entry.file_name());
            let known = match number {
                Some(number) => read.generation(number)?.is_some(),
                None => false,
            };
            if !known {
                unknown.push(entry.path());
            }
        }
        Ok(unknown)
    }

    /// True when `active` is the only generation and was adopted from the views themselves
    /// (its record names them as [`adoption_source`] does): an `init --adopt` stopped
    /// between its commit and putting every view symlink in place.
    pub(crate) fn adoption_unfinished(&self, active: u64) -> Result<bool> {
        if !self.layout.adoption_marker().exists() {
            return Ok(false);
        }
        let generations = self.db.read()?.generations()?;
        let source = adoption_source(&self.config.views());
        Ok(matches!(generations.as_slice(), [(number, record)]
            if *number == active && record.origin == Origin::Adopted && record.source == source))
    }

    /// Puts each view symlink where its adopted directory was, with renameat2(EXCHANGE) so
    /// the agent never finds the path missing, then removes the old directories, of which
    /// the adopted generation holds a verified copy ([`Store::finish_adoption`]).
    ///
    /// Order: every temporary name looked at first (nothing changes if one is taken);
    /// `STORE/active` switched (durable); then view after view: create the symlink under
    /// the temporary name, exchange it with the directory, fsync the parent (the symlink
    /// is now durable at the view path). A view already polstore's symlink (exchanged
    /// before a crash) is passed over; a missing one (a view with nothing to adopt) is
    /// created. With several views the exchanges are not one atomic step; at every instant
    /// between them each path shows the same bytes, the old directory or generation 1's
    /// copy of it (store-format.md § Commit protocol, Adoption).
    pub fn replace_adopted_views(&self, generation: u64) -> Result<()> {
        let views = self.config.views();
        let mut pending = Vec::new();
        for view in &views {
            let target = self.layout.view_target(view);
            let path = &view.path;
            match fs::symlink_metadata(path) {
                Ok(metadata)
                    if metadata.file_type().is_symlink()
                        && fs::read_link(path).ok() == Some(target.clone()) =>
                {
                    continue;
                }
                Ok(metadata) if metadata.is_dir() || metadata.file_type().is_symlink() => {}
                Ok(_) => return Err(Error::ViewDisplaced { view: path.clone() }),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    pending.push((view, target, false));
                    continue;
                }
                Err(error) => return Err(Error::io("cannot read view", path)(error)),
            }
            let temporary =
                durable::temporary_sibling(path, "new").map_err(Error::io("cannot name", path))?;
            // A symlink there is polstore's own leftover; anything else is someone's, and
            // the adopted directory will land at this name after the exchange: refuse.
            match fs::symlink_metadata(&temporary) {
                Ok(metadata) if metadata.file_type().is_symlink() => {
                    fs::remove_file(&temporary).map_err(Error::io("cannot remove", &temporary))?;
                }
                Ok(metadata) => {
                    return Err(Error::Refused(format!(
                        "{} is a {} polstore did not make; move it away, then adopt again",
                        temporary.display(),
                        crate::fs::type_name(metadata.file_type())
                    )));
                }
                Err(_) => {}
            }
            pending.push((view, target, true));
        }
        // `STORE/active` first (durable, with `readonly/active`), then the views that
        // resolve through it.
        self.switch_active(generation)?;
        for (index, (view, target, exchange)) in pending.iter().enumerate() {
            let path = &view.path;
            if !exchange {
                durable::switch_symlink(path, target)
                    .map_err(Error::io("cannot create the view", path))?;
                continue;
            }
            let temporary =
                durable::temporary_sibling(path, "new").map_err(Error::io("cannot name", path))?;
            std::os::unix::fs::symlink(target, &temporary)
                .map_err(Error::io("cannot create", &temporary))?;
            durable::exchange(&temporary, path)
                .map_err(Error::io("cannot put the view symlink in place of", path))?;
            let parent = durable::parent_of(path).map_err(Error::io("cannot sync", path))?;
            durable::sync_directory(parent).map_err(Error::io("cannot sync", parent))?;
            if index + 1 < pending.len() {
                crate::crashpoint::point("adopt-view-exchanged");
            }
        }
        crate::crashpoint::point("adopt-exchanged");
        // Last: without the marker, recovery never again touches a directory at a view.
        self.finish_adoption()
    }
}

/// What an adopted generation's record names as its source: the one view's path, or
/// `NAME=PATH` for each view, in the configuration's order, separated by `, `. Recovery
/// finishes an adoption only from the views the record names.
pub fn adoption_source(views: &[View]) -> String {
    match views {
        [View { name: None, path }] => path.display().to_string(),
        _ => views
            .iter()
            .map(|view| {
                format!(
                    "{}={}",
                    view.name.as_deref().unwrap_or_default(),
                    view.path.display()
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The part of `manifest` under the top-level directory `name`, as a manifest of that
/// directory alone: what one view's adopted directory held.
fn view_part(manifest: &Manifest, name: &str) -> Manifest {
    let prefix = format!("{name}/");
    Manifest {
        entries: manifest
            .entries
            .iter()
            .filter_map(|entry| {
                let path = entry.path.strip_prefix(&prefix)?;
                Some(Entry {
                    path: path.to_string(),
                    ..entry.clone()
                })
            })
            .collect(),
        directories: manifest
            .directories
            .iter()
            .filter_map(|directory| directory.strip_prefix(&prefix).map(str::to_string))
            .collect(),
        ..manifest.clone()
    }
}
