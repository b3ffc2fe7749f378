//! Which generations have a tree on disk, and moving trees between them.
//!
//! Every kept generation has its directory (manifest, signature, markers) and its content
//! in the database; only a few have their `tree/` too: the active one, the one an
//! automatic rollback would go back to, and any a running process uses. The others'
//! trees are not needed: a tree is *materialized* again from the store when it is needed
//! (a rollback), by recycling a *spare* tree, one that no longer needs to be where it is.
//!
//! An update recycles the spare tree the same way: it is renamed out of its generation into
//! staging and brought to the candidate by changing only what differs
//! ([`crate::store::materialize::TreeBuilder::recycle`]). A generation whose tree was
//! taken away is kept all the same; nothing in the database says which trees exist: the
//! file system does, and a tree in staging belongs to no generation (recovery empties
//! staging).
//!
//! **Invariant:** the active generation's tree is never taken, nor is one a running
//! process uses (its working directory, its root or an open file is inside it).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::format::policy_path::MANIFEST_NAME;
use crate::fs::durable;
use crate::store::materialize::{self, Linkable, TreeBuilder};
use crate::store::{Layout, Store};

/// Whether `generation` has its tree on disk: a real directory (never through a symlink).
pub fn materialized(layout: &Layout, generation: u64) -> bool {
    fs::symlink_metadata(layout.generation_tree(generation)).is_ok_and(|metadata| metadata.is_dir())
}

/// A generation's tree taken out of `generations/`, to be built over.
pub struct Spare {
    pub generation: u64,
    pub manifest: Manifest,
}

/// The generation whose tree is the best to recycle: the newest materialized one other
/// than those in `except` that no running process uses. `/proc` is scanned only when
/// there is such a tree.
pub fn find_spare(store: &Store, except: &[u64]) -> Result<Option<u64>> {
    let mut trees: Vec<u64> = store
        .db
        .read()?
        .generations()?
        .into_iter()
        .map(|(generation, _)| generation)
        .filter(|generation| !except.contains(generation))
        .filter(|generation| materialized(&store.layout, *generation))
        .collect();
    if trees.is_empty() {
        return Ok(None);
    }
    let in_use = generations_in_use(&store.layout);
    trees.retain(|generation| !in_use.contains(generation));
    Ok(trees.last().copied())
}

/// Takes `generation`'s tree out of `generations/` to `into` (in staging), so that it is
/// no longer that generation's: renamed, then both directories synced, so that no change
/// made to it afterwards can appear in `generations/N/tree` after a crash. Returns what
/// the tree holds and when its files were last polstore's (see [`TreeBuilder::recycle`]).
pub fn take(store: &Store, generation: u64, into: &Path) -> Result<(Spare, TreeBuilder)> {
    let manifest = crate::store::stored_manifest(&store.db.read()?, generation)?;
    let directory = store.layout.generation_dir(generation);
    let settled = materialize::modified(&directory.join(MANIFEST_NAME)).unwrap_or((0, 0));
    let tree = store.layout.generation_tree(generation);
    fs::rename(&tree, into).map_err(Error::io("cannot move", &tree))?;
    durable::sync_directory(&directory).map_err(Error::io("cannot sync", &directory))?;
    let parent = durable::parent_of(into).map_err(Error::io("cannot sync", into))?;
    durable::sync_directory(parent).map_err(Error::io("cannot sync", parent))?;
    crate::crashpoint::point("spare-taken");
    let builder = TreeBuilder::recycle(into.to_path_buf(), &manifest, settled)?;
    Ok((
        Spare {
            generation,
            manifest,
        },
        builder,
    ))
}

/// A tree to build in at `into`: the spare ([`find_spare`], not one of `except`) taken
/// there, with what it holds, or a new empty directory when there is none.
pub fn spare_or_new(
    store: &Store,
    except: &[u64],
    into: PathBuf,
) -> Result<(Option<Spare>, TreeBuilder)> {
    Ok(match find_spare(store, except)? {
        Some(generation) => {
            let (spare, builder) = take(store, generation, &into)?;
            (Some(spare), builder)
        }
        None => (None, TreeBuilder::new(into)?),
    })
}

/// The active generation's files a new tree may link, when its tree is on disk; its
/// manifest is parsed only when a file is first looked for.
pub fn active_linkable(store: &Store, active: Option<u64>) -> Result<Linkable> {
    Ok(match active {
        Some(active) if materialized(&store.layout, active) => Linkable::deferred(
            &store.layout,
            active,
            store.db.read()?.manifest(active)?.manifest,
        ),
        _ => Linkable::default(),
    })
}

/// Puts a tree built for `generation` in place as its `tree/`: synced first (one
/// syncfs), then renamed, then the generation's directory synced.
///
/// Then the generation's `polstore.manifest` gets the current modification time: every
/// file of the tree was written before it, as for a tree committed with its generation,
/// so that a later update over this tree keeps what it may (the test in
/// [`TreeBuilder::keep`]). Its bytes do not change.
pub fn place(store: &Store, builder: &TreeBuilder, generation: u64) -> Result<()> {
    builder.sync()?;
    let directory = store.layout.generation_dir(generation);
    let tree = store.layout.generation_tree(generation);
    durable::rename_no_replace(builder.tree(), &tree).map_err(Error::io("cannot move", &tree))?;
    durable::sync_directory(&directory).map_err(Error::io("cannot sync", &directory))?;
    let manifest = directory.join(MANIFEST_NAME);
    let now = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
    };
    // Not durable, nor needed to be: lost, the files are only placed again next time.
    let _ = rustix::fs::utimensat(
        rustix::fs::CWD,
        &manifest,
        &now,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    );
    Ok(())
}

/// Materializes `generation`'s tree if it has none: over a spare tree when there is one
/// (only what differs is written), else anew; every file from the active generation's
/// tree (hard links) or the database's objects. Done in `staging/candidate`, which must be
/// free; placed with [`place`]. A failure leaves the generation without a tree, as before.
pub fn materialize(store: &Store, generation: u64) -> Result<()> {
    materialize_with(store, generation, true)
}

/// [`materialize`] without taking any other generation's tree: every other tree stays.
pub fn materialize_anew(store: &Store, generation: u64) -> Result<()> {
    materialize_with(store, generation, false)
}

fn materialize_with(store: &Store, generation: u64, recycle: bool) -> Result<()> {
    if materialized(&store.layout, generation) {
        return Ok(());
    }
    let read = store.db.read()?;
    let manifest = crate::store::stored_manifest(&read, generation)?;
    let active = read.state()?.active;
    let linkable = active_linkable(store, active)?;
    let candidate = store.layout.candidate();
    durable::remove_tree_if_exists(&candidate).map_err(Error::io("cannot remove", &candidate))?;
    durable::create_directory(&candidate, crate::store::STORE_DIRECTORY_MODE)
        .map_err(Error::io("cannot create", &candidate))?;
    let built = (|| {
        let tree = candidate.join("tree");
        let mut builder = if recycle {
            let except: Vec<u64> = active.into_iter().chain([generation]).collect();
            spare_or_new(store, &except, tree)?.1
        } else {
            TreeBuilder::new(tree)?
        };
        materialize::build_from_store(&mut builder, &manifest, &linkable, &read)?;
        place(store, &builder, generation)
    })();
    let _ = durable::remove_tree_if_exists(&candidate);
    built
}

/// Takes `generation`'s tree away: renamed into staging (synced), then removed. A crash
/// in between leaves it in staging, which recovery empties.
pub fn release(store: &Store, generation: u64) -> Result<()> {
    let directory = store.layout.generation_dir(generation);
    let tree = store.layout.generation_tree(generation);
    let away = store
        .layout
        .staging()
        .join(format!("released-{generation}"));
    durable::remove_tree_if_exists(&away).map_err(Error::io("cannot remove", &away))?;
    fs::rename(&tree, &away).map_err(Error::io("cannot move", &tree))?;
    durable::sync_directory(&directory).map_err(Error::io("cannot sync", &directory))?;
    crate::crashpoint::point("tree-released");
    durable::remove_tree_if_exists(&away).map_err(Error::io("cannot remove", &away))
}

/// Generations whose directory a running process uses: its working directory, its root,
/// or an open file is inside it. Processes that cannot be read are skipped.
pub fn generations_in_use(layout: &Layout) -> BTreeSet<u64> {
    let mut in_use = BTreeSet::new();
    // The generations as the store shows them, and as the read-only mount does (the
    // agent reads through it).
    let prefixes: Vec<std::path::PathBuf> = [layout.generations(), layout.readonly_fallback()]
        .iter()
        .filter_map(|path| path.canonicalize().ok())
        .collect();
    if prefixes.is_empty() {
        return in_use;
    }
    let Ok(processes) = fs::read_dir("/proc") else {
        return in_use;
    };
    let mut consider = |link: &Path| {
        if let Ok(target) = fs::read_link(link)
            && let Some(rest) = prefixes
                .iter()
                .find_map(|prefix| target.strip_prefix(prefix).ok())
            && let Some(first) = rest.components().next()
            && let Some(generation) = first
                .as_os_str()
                .to_str()
                .and_then(|name| name.parse().ok())
        {
            in_use.insert(generation);
        }
    };
    for process in processes.flatten() {
        if !process
            .file_name()
            .as_encoded_bytes()
            .iter()
            .all(u8::is_ascii_digit)
        {
            continue;
        }
        let path = process.path();
        consider(&path.join("cwd"));
        consider(&path.join("root"));
        if let Ok(descriptors) = fs::read_dir(path.join("fd")) {
            for descriptor in descriptors.flatten() {
                consider(&descriptor.path());
            }
        }
    }
    in_use
}
