//! Transports: where new policy and verified copies of objects come from.
//!
//! An [`ObjectSource`] answers two questions: "what manifest do you offer?" and "give me
//! the objects with these hashes". Whatever it returns is hostile until verified: a
//! manifest is checked by the integrity check like any other, and an object is kept only
//! if its content hashes to the hash asked for. The drop place filled by the fetch command
//! ([`drop::DropPlace`]) is the first implementation.
//!
//! **Invariant:** a transport writes nothing inside the store but its command's output file
//! in `staging/`; the store's layers above decide what to keep.

pub mod drop;
pub mod repo;

use std::collections::HashSet;

use crate::error::Result;
use crate::format::manifest::Hash;

pub trait ObjectSource {
    /// Where it reads from, for messages.
    fn describe(&self) -> String;

    /// The exact bytes of the manifest it offers, if it offers one.
    fn manifest(&self) -> Result<Option<Vec<u8>>>;

    /// Calls `found` once with each object among `wanted` that it holds; each object's
    /// content hashes to its hash. An error after some objects were found leaves those
    /// found: a source refused half-way still gives what was verified before.
    fn objects(
        &self,
        wanted: &HashSet<Hash>,
        found: &mut dyn FnMut(Hash, Vec<u8>) -> Result<()>,
    ) -> Result<()>;
}
