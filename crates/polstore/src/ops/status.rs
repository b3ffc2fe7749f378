//! `status`: what a node's operator and its monitoring need to know, read without the lock.

use std::fs;
use std::path::PathBuf;

use crate::db::ReadTxn;
use crate::db::{LAST_UPDATE_KEY, LAST_VERIFY_KEY};
use crate::error::Result;
use crate::format::records::{
    AttemptRecord, GenerationRecord, GenerationState, HealthOutcome, HealthRecord,
};
use crate::format::timestamp::Timestamp;
use crate::store::StoreReader;
use crate::store::protect::{self, Protection};
use crate::store::view::{active_problem, view_problem};

const SECONDS_PER_DAY: i64 = 86_400;
/// `status` warns when the active manifest expires sooner than this.
pub const EXPIRY_WARNING_SECS: i64 = 7 * SECONDS_PER_DAY;

/// Something the operator should look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The view does not point at the active generation's tree: what is wrong.
    ViewElsewhere { problem: String },
    /// Writes through the view reach the store: the read-only mount is missing or off.
    ViewWritable { protection: Protection },
    /// The active manifest's expiry (unix seconds) has passed.
    Expired { at: i64 },
    /// The active manifest expires within [`EXPIRY_WARNING_SECS`].
    ExpiresSoon { at: i64 },
    /// The active generation is not good (confirming or failed).
    ActiveNotGood { state: GenerationState },
    /// The last verify found damage.
    LastVerifyDamaged { record: HealthRecord },
    /// The last update was refused or failed.
    LastUpdateFailed { record: HealthRecord },
    /// More than twice `keep` generations are kept: gc, which no ingest runs, has not run
    /// for a while.
    GcBehind { generations: usize, keep: u32 },
    /// The trusted root (`trust.root`, or the newer one a pull followed) expired at `at`:
    /// nothing is accepted until a newer one is published or installed.
    RootExpired { version: u64, at: i64 },
    /// The trusted root expires within [`EXPIRY_WARNING_SECS`] times four (a rotation
    /// takes its signers time).
    RootExpiresSoon { version: u64, at: i64 },
    /// The root of trust cannot be read: every signed update is refused.
    TrustUnreadable { reason: String },
}

/// The root of trust a node uses now.
pub struct TrustStatus {
    /// 0 for flat `trust.keys`.
    pub root_version: u64,
    pub root_expires: Option<i64>,
    /// Keys of the manifest role, and how many must sign.
    pub manifest_threshold: usize,
    pub manifest_keys: usize,
}

/// One view, as found.
pub struct ViewStatus {
    /// `None` for the one view of `view = PATH`.
    pub name: Option<String>,
    pub path: PathBuf,
    /// Where the view symlink points, if it is one.
    pub target: Option<PathBuf>,
    /// What is at the view when it is not a symlink ("directory", "missing", ...).
    pub kind: Option<&'static str>,
}

pub struct Status {
    /// The views, in the configuration's order (name order for `[views]`).
    pub views: Vec<ViewStatus>,
    /// Where `STORE/active`, the switch every view resolves through, points.
    pub active_link: Option<PathBuf>,
    /// Whether writes through the view reach the store.
    pub protection: Protection,
    /// The active generation, its record, its tree and whether it is pinned.
    pub active: Option<(u64, GenerationRecord, PathBuf, bool)>,
    pub serial_max: u64,
    pub generations: usize,
    pub last_attempt: Option<(u64, AttemptRecord)>,
    pub last_verify: Option<HealthRecord>,
    pub last_update: Option<HealthRecord>,
    /// `None` when it cannot be read (then a warning says why).
    pub trust: Option<TrustStatus>,
    pub warnings: Vec<Warning>,
}

pub fn status(reader: &StoreReader) -> Result<Status> {
    reader.query(|read| status_of(reader, read))
}

fn status_of(reader: &StoreReader, read: &ReadTxn) -> Result<Status> {
    let state = read.state()?;
    let generations = read.generations()?;
    let views: Vec<ViewStatus> = reader
        .config
        .views()
        .into_iter()
        .map(|view| ViewStatus {
            target: fs::read_link(&view.path).ok(),
            kind: match fs::symlink_metadata(&view.path) {
                Ok(metadata) if metadata.file_type().is_symlink() => None,
                Ok(metadata) => Some(crate::fs::type_name(metadata.file_type())),
                Err(_) => Some("missing"),
            },
            name: view.name,
            path: view.path,
        })
        .collect();
    let active_link = fs::read_link(reader.layout.active_link()).ok();
    let protection = protect::protection(&reader.layout, reader.config.protect_view);
    let active = state.active.and_then(|active| {
        generations
            .iter()
            .find(|(number, _)| *number == active)
            .map(|(number, record)| {
                (
                    *number,
                    record.clone(),
                    reader.layout.generation_tree(*number),
                    reader.layout.pin_marker(*number).exists(),
                )
            })
    });
    let mut warnings = Vec::new();
    if let Some(active) = state.active {
        // A store an older polstore made has no `active` yet: its views say where.
        let views = reader.config.views();
        let older = !views.is_empty()
            && views
                .iter()
                .all(|view| crate::store::view::is_older_view(&reader.layout, view, active));
        let active_missing = fs::symlink_metadata(reader.layout.active_link()).is_err();
        if !(older && active_missing)
            && let Some(problem) = active_problem(&reader.layout, active)
        {
            warnings.push(Warning::ViewElsewhere { problem });
        }
        for view in reader.config.views() {
            if let Some(problem) = view_problem(&reader.layout, &view, active) {
                warnings.push(Warning::ViewElsewhere { problem });
            }
        }
    }
    if protection != Protection::ReadOnly {
        warnings.push(Warning::ViewWritable {
            protection: protection.clone(),
        });
    }
    if let Some((_, record, _, _)) = &active {
        let now = Timestamp::now().unix_secs();
        if let Some(expires) = record.expires {
            if expires <= now {
                warnings.push(Warning::Expired { at: expires });
            } else if expires - now < EXPIRY_WARNING_SECS {
                warnings.push(Warning::ExpiresSoon { at: expires });
            }
        }
        if record.state != GenerationState::Good {
            warnings.push(Warning::ActiveNotGood {
                state: record.state,
            });
        }
    }
    let last_verify = read.health(LAST_VERIFY_KEY)?;
    let last_update = read.health(LAST_UPDATE_KEY)?;
    if let Some(record) = &last_verify
        && record.outcome == HealthOutcome::Damaged
    {
        warnings.push(Warning::LastVerifyDamaged {
            record: record.clone(),
        });
    }
    if let Some(record) = &last_update
        && matches!(
            record.outcome,
            HealthOutcome::Rejected | HealthOutcome::Failed
        )
    {
        warnings.push(Warning::LastUpdateFailed {
            record: record.clone(),
        });
    }
    let trust = match crate::checks::trust_root(&reader.config, &reader.layout) {
        Ok(root) => {
            let now = Timestamp::now().unix_secs();
            if let Some(expires) = root.expires.map(Timestamp::unix_secs) {
                if expires <= now {
                    warnings.push(Warning::RootExpired {
                        version: root.version,
                        at: expires,
                    });
                } else if expires - now < 4 * EXPIRY_WARNING_SECS {
                    warnings.push(Warning::RootExpiresSoon {
                        version: root.version,
                        at: expires,
                    });
                }
            }
            let manifest = root.role(crate::format::root::Role::Manifest);
            Some(TrustStatus {
                root_version: root.version,
                root_expires: root.expires.map(Timestamp::unix_secs),
                manifest_threshold: manifest.threshold,
                manifest_keys: manifest.keys.len(),
            })
        }
        Err(error) => {
            warnings.push(Warning::TrustUnreadable {
                reason: error.to_string(),
            });
            None
        }
    };
    let keep = reader.config.keep.unwrap_or(crate::ops::gc::DEFAULT_KEEP);
    if generations.len() > 2 * keep as usize {
        warnings.push(Warning::GcBehind {
            generations: generations.len(),
            keep,
        });
    }
    Ok(Status {
        views,
        active_link,
        protection,
        active,
        serial_max: state.serial_max,
        generations: generations.len(),
        last_attempt: read.attempts(1)?.pop(),
        last_verify,
        last_update,
        trust,
        warnings,
    })
}
