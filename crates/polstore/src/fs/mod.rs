//! File system primitives: durable writes, the writer lock, bounded reads.

pub mod durable;
pub mod lock;
pub mod read;
