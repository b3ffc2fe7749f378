//! Operations on a store opened under the writer lock, queries for readers, and the hub's
//! publish (which works on a publication directory, not a store).

pub mod gc;
pub mod ingest;
pub mod init;
pub mod publish;
pub mod query;
pub mod repo;
pub mod rollback;
pub mod status;
