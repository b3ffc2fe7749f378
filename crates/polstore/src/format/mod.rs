//! On-disk and wire formats: manifests, signify files, database records, timestamps,
//! policy paths. Pure data: nothing here touches the file system.

pub mod delta;
pub mod envelope;
pub mod head;
pub mod manifest;
pub mod policy_path;
pub mod records;
pub mod repo;
pub mod root;
pub mod signatures;
pub mod signify;
pub mod text;
pub mod timestamp;
