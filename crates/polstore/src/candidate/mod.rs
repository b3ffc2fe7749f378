//! The candidate: reading a source into admitted files, and a manifest of a directory.

pub mod authoring;
pub mod source;
