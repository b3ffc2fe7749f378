//! Node health: inspecting the store for damage, repairing it, rebuilding the database.

pub mod inspect;
pub mod rebuild;
pub mod repair;
