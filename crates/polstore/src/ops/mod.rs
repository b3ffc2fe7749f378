//! Operations on a store opened under the writer lock, and queries for readers.

pub mod gc;
pub mod ingest;
pub mod query;
pub mod rollback;
