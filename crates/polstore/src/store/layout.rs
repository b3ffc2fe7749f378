//! The paths inside a store directory, and its format file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config;
use crate::error::{Error, Result};

/// The first line of `STORE/format`. A polstore that does not know the version refuses
/// to touch the store.
pub const STORE_FORMAT: &str = "polstore-store 1";

#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }
    pub fn format_file(&self) -> PathBuf {
        self.root.join("format")
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join(config::CONFIG_FILE_NAME)
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("polstore.redb")
    }
    /// Present only while `init --adopt` is between its commit and putting the view
    /// symlink in place of the adopted directory.
    pub fn adoption_marker(&self) -> PathBuf {
        self.root.join("adopting")
    }
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }
    /// The one candidate being built. Only the lock holder builds one at a time.
    pub fn candidate(&self) -> PathBuf {
        self.staging().join("candidate")
    }
    pub fn generations(&self) -> PathBuf {
        self.root.join("generations")
    }
    pub fn generation_dir(&self, generation: u64) -> PathBuf {
        self.generations().join(generation.to_string())
    }
    /// `{tree}`: the directory the view points at and the agent reads.
    pub fn generation_tree(&self, generation: u64) -> PathBuf {
        self.generation_dir(generation).join("tree")
    }
    /// Present while the generation is pinned: gc never removes it.
    pub fn pin_marker(&self, generation: u64) -> PathBuf {
        self.generation_dir(generation).join("pinned")
    }
    /// Written, with the reason, when the generation fails: a database rebuilt from the
    /// directories must not take a failed generation for a good one.
    pub fn failed_marker(&self, generation: u64) -> PathBuf {
        self.generation_dir(generation).join("failed")
    }
    /// Where `verify --repair` builds a generation's tree anew, and a database.
    pub fn repair_dir(&self) -> PathBuf {
        self.staging().join("repair")
    }
    /// Generation directories a database rebuild could not trust, moved aside.
    pub fn untrusted(&self) -> PathBuf {
        self.root.join("untrusted")
    }
    /// The last database that `verify --repair` found damaged and replaced.
    pub fn damaged_database(&self) -> PathBuf {
        self.root.join("polstore.redb.damaged")
    }
}

/// Refuses a directory that is not a store of a format this polstore reads.
pub(crate) fn check_format(layout: &Layout) -> Result<()> {
    let path = layout.format_file();
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotAStore {
                root: layout.root.clone(),
            });
        }
        Err(error) => return Err(Error::io("cannot read", &path)(error)),
    };
    if text.lines().next() != Some(STORE_FORMAT) {
        return Err(Error::Refused(format!(
            "{} has store format {:?}, which this polstore does not understand (it reads {STORE_FORMAT:?})",
            layout.root.display(),
            text.lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(40)
                .collect::<String>()
        )));
    }
    Ok(())
}
