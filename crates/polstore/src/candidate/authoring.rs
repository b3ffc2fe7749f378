//! The server side: what a policy server runs to publish a tree polstore will accept.
//! Make a manifest from a directory, make keys, sign a manifest.

use std::path::{Path, PathBuf};

use crate::candidate::source::{self, Item, Source};
use crate::config::{LimitsConfig, Part};
use crate::error::{Error, Result};
use crate::format::manifest::{Entry, Hash, Manifest, SERIAL_MAX};
use crate::format::timestamp::Timestamp;

/// The manifest of the tree at `directory`, leaving out a top-level `polstore.manifest`
/// and `polstore.manifest.sig`. The tree must pass the same rules ingest applies.
pub fn manifest_of_directory(
    directory: &Path,
    serial: u64,
    created: Timestamp,
    expires: Option<Timestamp>,
    origin: Option<String>,
    limits: &LimitsConfig,
) -> Result<Manifest> {
    manifest_of(
        &mut |sink| source::read(&Source::Directory(directory.to_path_buf()), limits, sink),
        serial,
        created,
        expires,
        origin,
    )
}

/// The manifest of the candidate that the archives of `parts` make together, each
/// archive's `from` directory under its `to` (a node's `[[fetch.parts]]`).
pub fn manifest_of_parts(
    parts: &[(Part, PathBuf)],
    serial: u64,
    created: Timestamp,
    expires: Option<Timestamp>,
    origin: Option<String>,
    limits: &LimitsConfig,
) -> Result<Manifest> {
    manifest_of(
        &mut |sink| source::read_parts_at(parts, limits, sink),
        serial,
        created,
        expires,
        origin,
    )
}

type ReadFn<'a> = &'a mut dyn FnMut(&mut dyn FnMut(Item) -> Result<()>) -> Result<()>;

fn manifest_of(
    read: ReadFn,
    serial: u64,
    created: Timestamp,
    expires: Option<Timestamp>,
    origin: Option<String>,
) -> Result<Manifest> {
    if serial > SERIAL_MAX {
        return Err(Error::Refused(format!(
            "serial {serial} is above {SERIAL_MAX}: a serial that high would leave no room for the next update"
        )));
    }
    let mut entries = Vec::new();
    let mut directories = Vec::new();
    read(&mut |item| {
        match item {
            Item::File {
                path,
                mode,
                content,
                ..
            } => entries.push(Entry {
                path,
                mode,
                size: content.len() as u64,
                hash: Hash::of(&content),
            }),
            Item::EmptyDirectory(path) => directories.push(path),
            _ => {}
        }
        Ok(())
    })?;
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(Manifest {
        serial,
        created,
        expires,
        node: None,
        source: origin,
        entries,
        directories,
    })
}
