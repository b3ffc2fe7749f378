//! Named crash points, for the crash tests only.
//!
//! Built with the `crash-points` feature, [`point`] aborts the process (SIGABRT, no
//! unwinding, no cleanup) when its name is the one in `POLSTORE_CRASH_AT`; without the
//! feature it is nothing. Each point sits just after a step that changes what is on disk;
//! `store-format.md` § Crash points lists them with what recovery does at each, and
//! `tests/crash_points.rs` runs every operation once per point.

/// Every crash point, in the order the operations reach them.
pub const POINTS: &[&str] = &[
    "spare-taken",
    "ingest-staged",
    "ingest-checked",
    "commit-tree-synced",
    "commit-envelope-written",
    "commit-objects-stored",
    "commit-renamed",
    "commit-floor-raised",
    "commit-committed",
    "view-temporary-created",
    "active-switched",
    "commit-view-switched",
    "confirm-agent-ran",
    "fail-marker-written",
    "fail-committed",
    "rollback-committed",
    "adopt-staged",
    "adopt-committed",
    "adopt-view-exchanged",
    "adopt-exchanged",
    "adopt-directory-removed",
    "repair-objects-restored",
    "repair-tree-built",
    "repair-envelope-replaced",
    "repair-exchanged",
    "repair-fallback-committed",
    "repair-view-exchanged",
    "rebuild-written",
    "rebuild-linked",
    "gc-intent-written",
    "gc-committed",
    "gc-removed",
    "tree-released",
    "publish-staged",
    "publish-renamed",
    "publish-current-switched",
    "publish-head-written",
    "repo-objects-written",
    "repo-head-written",
    "pull-root-recorded",
    "readonly-prepared",
];

#[cfg(feature = "crash-points")]
pub fn point(name: &'static str) {
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    debug_assert!(POINTS.contains(&name), "unlisted crash point {name}");
    if TARGET
        .get_or_init(|| std::env::var("POLSTORE_CRASH_AT").ok())
        .as_deref()
        == Some(name)
    {
        std::process::abort();
    }
}

#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_name: &'static str) {}
