//! What the store remembers outside its database, so that a database rebuilt from the
//! generation directories never trusts more than the lost one did:
//!
//! - `STORE/serial-floor`: the replay floor, the highest serial ever accepted, in decimal.
//!   Written (temporary file, fsync, rename, fsync `STORE/`) before the commit that raises
//!   `serial_max`, so that it is never below what the database says; a rebuild never goes
//!   below it.
//! - `STORE/adopted`: the adoption the store itself made, `generation N` and
//!   `manifest HEX` (the blake3 hash of the adopted generation's manifest bytes). Written
//!   the same way before adoption's commit. A rebuild takes back an unsigned generation
//!   only if it is this one: a manifest that calls itself "adopted" proves nothing.
//!
//! - `STORE/trusted-root`: the newest root of trust a pull followed (`format::root`), with
//!   the chain it followed from the configured root (the blake3 of each root's text),
//!   written the same way once each step verified. It is trusted over the configured
//!   `trust.root` only when its version is higher and `trust.root` is in that chain.
//!
//! All are 0600 and read with a bound, without following a symlink.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::manifest::Hash;
use crate::format::root::{ROOT_FILE_BYTES_MAX, SignedRoot};
use crate::fs::durable;
use crate::fs::read::{self, ReadError};
use crate::store::Layout;

const RECORD_BYTES_MAX: usize = 256;
const RECORD_MODE: u32 = 0o600;

impl Layout {
    pub fn serial_floor_file(&self) -> PathBuf {
        self.root.join("serial-floor")
    }

    pub fn adoption_record(&self) -> PathBuf {
        self.root.join("adopted")
    }

    pub fn trusted_root_file(&self) -> PathBuf {
        self.root.join("trusted-root")
    }

    /// Where a pull keeps what it fetched and verified until the ingest that uses it:
    /// `objects/HASH`, so that an interrupted pull resumes where it stopped.
    pub fn fetched(&self) -> PathBuf {
        self.root.join("fetched")
    }
}

/// The most roots a followed chain records.
pub const CHAIN_MAX: usize = 1024;
const CHAIN_MAGIC: &str = "polstore-followed-roots 1";

/// The newest root a pull followed, and the chain it followed: the blake3 of the text of
/// each root from the configured one it started from to this one. It must still meet its
/// own root threshold (damage is reported, never trusted).
pub fn accepted_root(layout: &Layout) -> Result<Option<(SignedRoot, Vec<Hash>)>> {
    let path = layout.trusted_root_file();
    let bytes = match read::read_regular(&path, ROOT_FILE_BYTES_MAX + CHAIN_MAX * 65 + 64) {
        Ok(bytes) => bytes,
        Err(ReadError::NotFound) => return Ok(None),
        Err(error) => return Err(Error::Corrupt(format!("{}: {error}", path.display()))),
    };
    let corrupt = |reason: String| Error::Corrupt(format!("{}: {reason}", path.display()));
    let (chain, root) = (|| {
        let rest = bytes
            .strip_prefix(CHAIN_MAGIC.as_bytes())?
            .strip_prefix(b"\nchain")?;
        let end = rest.iter().position(|byte| *byte == b'\n')?;
        let chain: Option<Vec<Hash>> = std::str::from_utf8(&rest[..end])
            .ok()?
            .split(' ')
            .skip(1)
            .map(Hash::from_hex)
            .collect();
        Some((chain?, &rest[end + 1..]))
    })()
    .ok_or_else(|| corrupt("not a followed root of this polstore".into()))?;
    let signed = SignedRoot::parse(root).map_err(|error| corrupt(error.to_string()))?;
    signed
        .check_self()
        .map_err(|error| corrupt(error.to_string()))?;
    if chain.last() != Some(&Hash::of(&signed.text)) {
        return Err(corrupt("its chain does not end with it".into()));
    }
    Ok(Some((signed, chain)))
}

/// Records `root` as the newest root followed, with the chain that led to it (ending with
/// it). The caller checked each step.
pub fn record_root(layout: &Layout, root: &SignedRoot, chain: &[Hash]) -> Result<()> {
    let skip = chain.len().saturating_sub(CHAIN_MAX);
    let mut text = format!("{CHAIN_MAGIC}\nchain");
    for hash in &chain[skip..] {
        text.push(' ');
        text.push_str(&hash.to_hex());
    }
    text.push('\n');
    text.push_str(
        &String::from_utf8(root.render())
            .map_err(|_| Error::Refused("a root file that is not UTF-8".into()))?,
    );
    replace_durably(layout, &layout.trusted_root_file(), &text)
}

/// Replaces `path` with `text` durably: a temporary file beside it, synced, renamed over
/// it, the directory synced. A crash leaves the old content or the new.
fn replace_durably(layout: &Layout, path: &Path, text: &str) -> Result<()> {
    let temporary =
        durable::temporary_sibling(path, "new").map_err(Error::io("cannot name", path))?;
    durable::remove_tree_if_exists(&temporary).map_err(Error::io("cannot remove", &temporary))?;
    durable::create_file_synced(&temporary, text.as_bytes(), RECORD_MODE)
        .map_err(Error::io("cannot write", &temporary))?;
    std::fs::rename(&temporary, path).map_err(Error::io("cannot replace", path))?;
    durable::sync_directory(&layout.root).map_err(Error::io("cannot sync", &layout.root))
}

fn read_record(path: &Path) -> Result<Option<String>> {
    match read::read_regular(path, RECORD_BYTES_MAX) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(ReadError::NotFound) => Ok(None),
        Err(error) => Err(Error::Corrupt(format!("{}: {error}", path.display()))),
    }
}

/// The replay floor the store recorded, if it recorded one.
pub fn serial_floor(layout: &Layout) -> Result<Option<u64>> {
    let path = layout.serial_floor_file();
    let Some(text) = read_record(&path)? else {
        return Ok(None);
    };
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| Error::Corrupt(format!("{} does not hold a serial", path.display())))
}

/// Raises the recorded replay floor to `serial` (never lowers it).
pub fn raise_serial_floor(layout: &Layout, serial: u64) -> Result<()> {
    if serial_floor(layout)
        .ok()
        .flatten()
        .is_some_and(|floor| floor >= serial)
    {
        return Ok(());
    }
    replace_durably(layout, &layout.serial_floor_file(), &format!("{serial}\n"))
}

/// Records the adoption of `generation` with these manifest bytes.
pub fn record_adoption(layout: &Layout, generation: u64, manifest: &[u8]) -> Result<()> {
    let text = format!(
        "generation {generation}\nmanifest {}\n",
        Hash::of(manifest).to_hex()
    );
    replace_durably(layout, &layout.adoption_record(), &text)
}

/// Whether the store recorded adopting `generation` with exactly these manifest bytes.
pub fn adopted(layout: &Layout, generation: u64, manifest: &[u8]) -> Result<bool> {
    let Some(text) = read_record(&layout.adoption_record())? else {
        return Ok(false);
    };
    let expected = format!(
        "generation {generation}\nmanifest {}\n",
        Hash::of(manifest).to_hex()
    );
    Ok(text == expected)
}
