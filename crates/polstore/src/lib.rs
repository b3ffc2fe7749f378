//! polstore: a transactional, content-addressed policy store for CFEngine and Rudder nodes.
//!
//! See `ARCHITECTURE.md` for the code map and `store-format.md` for the on-disk format.
//! Layers, lowest first; a module imports only from its own layer or those below it:
//! `format`, `fs`, `process`, `programs`, `config`, `crashpoint` → `db`, `error` → `store` →
//! `candidate`, `checks`, `transport` → `ops` → `health` → `update`.

pub mod candidate;
pub mod checks;
pub mod config;
pub mod crashpoint;
pub mod db;
pub mod error;
pub mod format;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod ops;
pub mod process;
pub mod programs;
pub mod store;
pub mod transport;
pub mod update;
