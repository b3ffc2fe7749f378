//! Operations on a store opened under the writer lock, and queries for readers.

pub mod gc;
pub mod ingest;
pub mod init;
pub mod query;
pub mod rollback;
pub mod status;
