//! polstore: a transactional, content-addressed policy store for CFEngine and Rudder nodes.
//!
//! See `ARCHITECTURE.md` for the code map and `store-format.md` for the on-disk format.

pub mod authoring;
pub mod checks;
pub mod config;
pub mod crashpoint;
pub mod db;
pub mod durable;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gc;
pub mod ingest;
pub mod inspect;
pub mod lock;
pub mod manifest;
pub mod policy_path;
pub mod rebuild;
pub mod records;
pub mod repair;
pub mod rollback;
pub mod run;
pub mod signify;
pub mod source;
pub mod store;
pub mod timestamp;
pub mod update;
pub mod verify;
