//! Building a generation's tree in staging: directories, files written or hard-linked
//! from verified copies, and the one file-system sync that makes all of it durable.
//! Ingest builds a candidate with it, and repair a damaged generation's tree anew.
//!
//! **Invariant:** every path given here passed [`crate::format::policy_path::validate`], so
//! joined under the tree it stays inside the tree; nothing is written outside it.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::policy_path;
use crate::fs::durable;

pub struct TreeBuilder {
    tree: PathBuf,
    directories: HashSet<String>,
}

impl TreeBuilder {
    /// Creates the tree's top directory.
    pub fn new(tree: PathBuf) -> Result<TreeBuilder> {
        durable::create_tree_directory(&tree).map_err(Error::io("cannot create", &tree))?;
        Ok(TreeBuilder {
            tree,
            directories: HashSet::new(),
        })
    }

    pub fn tree(&self) -> &Path {
        &self.tree
    }

    /// Creates the directories above `path` that do not exist yet.
    pub fn make_parents(&mut self, path: &str) -> Result<()> {
        for directory in policy_path::ancestors(path) {
            if self.directories.insert(directory.to_string()) {
                let full = self.tree.join(directory);
                durable::create_tree_directory(&full)
                    .map_err(Error::io("cannot create directory in staging", &full))?;
            }
        }
        Ok(())
    }

    /// Creates the (empty) directory `path` and the directories above it.
    pub fn make_directory(&mut self, path: &str) -> Result<()> {
        self.make_parents(path)?;
        if self.directories.insert(path.to_string()) {
            let full = self.tree.join(path);
            durable::create_tree_directory(&full)
                .map_err(Error::io("cannot create directory in staging", &full))?;
        }
        Ok(())
    }

    /// Hard-links `path` to `source`, a verified copy; false if the link failed.
    pub fn link(&self, path: &str, source: &Path) -> bool {
        fs::hard_link(source, self.tree.join(path)).is_ok()
    }

    /// Writes `path` with `content` and `mode`; durable only after [`TreeBuilder::sync`].
    pub fn write(&self, path: &str, content: &[u8], mode: u32) -> Result<PathBuf> {
        let target = self.tree.join(path);
        durable::create_file(&target, content, mode)
            .map_err(Error::io("cannot write to staging", &target))?;
        Ok(target)
    }

    /// Makes the whole tree durable: the content of every file written, and every
    /// directory entry (its directories', its files', its links'), with one syncfs(2) of
    /// the store's file system rather than an fsync for each file and directory (a new
    /// tree of 30,000 files in 1,500 directories cost that many). Linked files' contents
    /// were durable already. The caller uses the tree (renames it, commits it) only after
    /// this returns.
    pub fn sync(&self) -> Result<()> {
        durable::sync_file_system(&self.tree).map_err(Error::io("cannot sync", &self.tree))
    }
}
