//! What commands print: JSON types for monitoring (a compatibility promise, kept apart
//! from the library's records) and progress on a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use polstore::format::records::{
    Action, AttemptRecord, CheckRecord, GenerationRecord, GenerationState, HealthOutcome,
    HealthRecord, Origin, Outcome,
};
use polstore::format::timestamp::Timestamp;
use polstore::ops::ingest::Progress;
use polstore::store::protect::Protection;
use serde::Serialize;

#[derive(Serialize)]
pub struct GenerationJson {
    pub generation: u64,
    pub serial: u64,
    pub root: String,
    /// Whether `root` is on disk: only the active generation and one other (the spare)
    /// keep their tree; the others' is materialized from the store when needed.
    pub tree_on_disk: bool,
    pub state: &'static str,
    pub active: bool,
    pub created: String,
    pub manifest_created: String,
    pub expires: Option<String>,
    pub origin: &'static str,
    pub files: u64,
    pub bytes: u64,
    pub source: String,
    pub signed_by: Option<String>,
    pub reason: Option<String>,
    pub pinned: bool,
}

impl GenerationJson {
    pub fn new(
        generation: u64,
        record: &GenerationRecord,
        root: String,
        active: bool,
        pinned: bool,
    ) -> GenerationJson {
        let tree_on_disk = std::fs::symlink_metadata(&root).is_ok_and(|metadata| metadata.is_dir());
        GenerationJson {
            generation,
            serial: record.serial,
            root,
            tree_on_disk,
            state: state_name(record.state),
            active,
            created: time(record.created),
            manifest_created: time(record.manifest_created),
            expires: record.expires.map(time),
            origin: match record.origin {
                Origin::Ingested => "ingested",
                Origin::Adopted => "adopted",
            },
            files: record.files,
            bytes: record.bytes,
            source: record.source.clone(),
            signed_by: record.signed_by.clone(),
            reason: record.reason.clone(),
            pinned,
        }
    }
}

#[derive(Serialize)]
pub struct StatusJson {
    pub store: String,
    pub view: String,
    pub view_target: Option<String>,
    /// What is at the view when it is not a symlink: "directory", "missing", ...
    pub view_type: Option<&'static str>,
    /// Every view (`view`, `view_target` and `view_type` repeat the first).
    pub views: Vec<ViewJson>,
    /// Where `STORE/active`, the one switch every view resolves through, points.
    pub active_link: Option<String>,
    pub view_protection: ProtectionJson,
    pub active: Option<GenerationJson>,
    pub serial_max: u64,
    pub generations: usize,
    pub last_attempt: Option<AttemptJson>,
    pub last_verify: Option<HealthJson>,
    pub last_update: Option<HealthJson>,
    /// The root of trust in use: version 0 for flat `trust.keys`; null when it cannot be
    /// read (a warning says why).
    pub trust: Option<TrustJson>,
    pub warnings: Vec<String>,
}

/// `status --json`'s `trust`.
#[derive(Serialize)]
pub struct TrustJson {
    pub root_version: u64,
    pub root_expires: Option<String>,
    pub manifest_threshold: usize,
    pub manifest_keys: usize,
}

/// One view in `status --json`.
#[derive(Serialize)]
pub struct ViewJson {
    /// Its name in `[views]`; null for the one view of `view = PATH`.
    pub name: Option<String>,
    pub path: String,
    pub target: Option<String>,
    /// What is at the view when it is not a symlink: "directory", "missing", ...
    #[serde(rename = "type")]
    pub kind: Option<&'static str>,
}

/// Whether writes through the view reach the store.
#[derive(Serialize)]
pub struct ProtectionJson {
    /// "read-only", "off" or "missing".
    pub state: &'static str,
    pub detail: String,
}

impl ProtectionJson {
    pub fn new(protection: &Protection) -> ProtectionJson {
        ProtectionJson {
            state: match protection {
                Protection::ReadOnly => "read-only",
                Protection::Off => "off",
                Protection::Missing(_) => "missing",
            },
            detail: protection.describe(),
        }
    }
}

#[derive(Serialize)]
pub struct HealthJson {
    pub at: String,
    pub outcome: &'static str,
    pub message: String,
}

impl HealthJson {
    pub fn new(record: &HealthRecord) -> HealthJson {
        HealthJson {
            at: time(record.at),
            outcome: match record.outcome {
                HealthOutcome::Sound => "sound",
                HealthOutcome::Repaired => "repaired",
                HealthOutcome::Damaged => "damaged",
                HealthOutcome::Unchanged => "unchanged",
                HealthOutcome::Updated => "updated",
                HealthOutcome::Rejected => "rejected",
                HealthOutcome::Failed => "failed",
            },
            message: record.message.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct AttemptJson {
    pub attempt: u64,
    pub started: String,
    pub finished: String,
    pub action: &'static str,
    pub source: String,
    pub serial: Option<u64>,
    pub outcome: &'static str,
    pub generation: Option<u64>,
    pub message: String,
    pub checks: Vec<CheckJson>,
}

#[derive(Serialize)]
pub struct CheckJson {
    pub name: String,
    pub passed: bool,
    pub detail: String,
    pub output: String,
    pub duration_ms: u64,
}

impl AttemptJson {
    pub fn new(attempt: u64, record: &AttemptRecord) -> AttemptJson {
        AttemptJson {
            attempt,
            started: time(record.started),
            finished: time(record.finished),
            action: match record.action {
                Action::Ingest => "ingest",
                Action::Adopt => "adopt",
                Action::Rollback => "rollback",
                Action::Recover => "recover",
                Action::Repair => "repair",
                Action::Gc => "gc",
            },
            source: record.source.clone(),
            serial: record.serial,
            outcome: outcome_name(record.outcome),
            generation: record.generation,
            message: record.message.clone(),
            checks: record.checks.iter().map(CheckJson::new).collect(),
        }
    }
}

impl CheckJson {
    fn new(record: &CheckRecord) -> CheckJson {
        CheckJson {
            name: record.name.clone(),
            passed: record.passed,
            detail: record.detail.clone(),
            output: record.output.clone(),
            duration_ms: record.duration_ms,
        }
    }
}

pub fn state_name(state: GenerationState) -> &'static str {
    match state {
        GenerationState::Confirming => "confirming",
        GenerationState::Good => "good",
        GenerationState::Failed => "failed",
    }
}

pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Accepted => "accepted",
        Outcome::Rejected => "rejected",
        Outcome::RolledBack => "rolled-back",
        Outcome::Switched => "switched",
        Outcome::Failed => "failed",
        Outcome::Repaired => "repaired",
        Outcome::Collected => "collected",
    }
}

pub fn time(unix_secs: i64) -> String {
    Timestamp::from_unix_secs(unix_secs).to_string()
}

/// Progress on standard error, only when it is a terminal, at most ten times a second.
pub struct ProgressLine {
    enabled: bool,
    last: Option<Instant>,
    shown: bool,
}

const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

impl ProgressLine {
    pub fn new() -> ProgressLine {
        ProgressLine {
            enabled: std::io::stderr().is_terminal(),
            last: None,
            shown: false,
        }
    }

    pub fn update(&mut self, progress: Progress) {
        if !self.enabled {
            return;
        }
        match progress {
            Progress::Fetching { done, total, bytes } => self.show(
                &format!(
                    "fetching: {done} of {total} objects, {:.1} MB",
                    bytes as f64 / 1e6
                ),
                true,
            ),
            Progress::Reading { files, bytes } => self.show(
                &format!("reading: {files} files, {:.1} MB", bytes as f64 / 1e6),
                true,
            ),
            Progress::Check(name) => self.show(&format!("checking: {name}"), false),
            Progress::Committing => self.show("committing the new generation", false),
            Progress::AgentRun { generation } => self.show(
                &format!("running the agent on generation {generation}"),
                false,
            ),
        }
    }

    /// Shows `text`; with `throttle`, not if the last line is younger than a tenth of a
    /// second (for counters that change with every file).
    pub fn show(&mut self, text: &str, throttle: bool) {
        if !self.enabled
            || (throttle
                && self
                    .last
                    .is_some_and(|last| last.elapsed() < PROGRESS_INTERVAL))
        {
            return;
        }
        self.last = Some(Instant::now());
        self.shown = true;
        let _ = write!(std::io::stderr(), "\r\x1b[K{text}");
    }

    pub fn clear(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.shown = false;
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.clear();
    }
}
