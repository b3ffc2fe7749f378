//! The database's on-disk records. Each is encoded as one version byte followed by the
//! postcard encoding of the struct for that version; `store-format.md` lists the fields.
//!
//! These types carry a compatibility promise: never reorder or remove fields or enum
//! variants of a version once released; a new field needs a new version. Enum variants
//! may be appended: records written before still decode, and an older polstore refuses a
//! record naming a variant it does not know, as undecodable.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Version byte of every record defined here.
pub const RECORD_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("empty record")]
    Empty,
    #[error(
        "record version {0} is not understood by this polstore (it reads version {RECORD_VERSION})"
    )]
    UnknownVersion(u8),
    #[error("undecodable record: {0}")]
    Decode(#[from] postcard::Error),
}

pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut bytes = vec![RECORD_VERSION];
    // Serializing these plain structs into a Vec cannot fail.
    bytes.extend(postcard::to_allocvec(record).expect("record encodes"));
    bytes
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    let (&version, body) = bytes.split_first().ok_or(RecordError::Empty)?;
    if version != RECORD_VERSION {
        return Err(RecordError::UnknownVersion(version));
    }
    Ok(postcard::from_bytes(body)?)
}

/// The single row of the `state` table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateRecord {
    /// The generation the view must point at. `None` only before the first generation.
    pub active: Option<u64>,
    /// Highest serial ever accepted. Never decreases, not even on rollback.
    pub serial_max: u64,
    pub next_generation: u64,
    pub next_attempt: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum GenerationState {
    /// Activated; the confirming agent run has not finished.
    Confirming,
    /// Passed every check (and the agent run, when confirmation is on).
    Good,
    /// The agent run failed or was interrupted; rolled back.
    Failed,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Origin {
    Ingested,
    /// Taken over by `init --adopt` from the agent's existing directory: unsigned, unchecked.
    Adopted,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GenerationRecord {
    pub serial: u64,
    /// Unix seconds when this generation was made.
    pub created: i64,
    /// The manifest's `created` and `expires`, unix seconds.
    pub manifest_created: i64,
    pub expires: Option<i64>,
    pub origin: Origin,
    pub state: GenerationState,
    /// Why the generation failed, for `Failed`.
    pub reason: Option<String>,
    pub files: u64,
    pub bytes: u64,
    /// Where it came from, as given to ingest.
    pub source: String,
    /// Key number (hex) of the key whose signature verified, if any.
    pub signed_by: Option<String>,
    /// The attempt that made it.
    pub attempt: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestRecord {
    /// The manifest's exact bytes, as signed.
    pub manifest: Vec<u8>,
    /// The signify signature file's exact bytes, when the candidate had one.
    pub signature: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Action {
    Ingest,
    Adopt,
    Rollback,
    Recover,
    /// `verify --repair` changed something.
    Repair,
    /// Garbage collection removed generations.
    Gc,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Outcome {
    /// A new generation was activated (and confirmed, when confirmation is on).
    Accepted,
    /// A check refused the candidate; nothing changed.
    Rejected,
    /// Activated, then the agent run failed and the previous generation came back.
    RolledBack,
    /// An operator rollback or a recovery switched the active generation.
    Switched,
    /// Stopped by an error that is not a check's verdict (I/O, a full disk, ...).
    Failed,
    /// `verify --repair` restored files, objects, the view or the database.
    Repaired,
    /// Garbage collection removed generations and objects.
    Collected,
}

/// A file's identity and change times, as fstat gives them. The change time cannot be
/// set from user space: a file with the same stamp has not been written through the file
/// system since.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

/// The value of the `stamps` table: for one directory source, each file read from it at
/// the last accepted ingest, with its stamp then and the blake3 hash of what was read.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StampsRecord {
    pub files: Vec<StampEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StampEntry {
    pub path: String,
    pub stamp: Stamp,
    pub hash: [u8; 32],
}

/// The outcome of the last `verify` or `update`, kept in the `state` table under
/// `last-verify` and `last-update` for `status` and monitoring.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthRecord {
    /// Unix seconds when it finished.
    pub at: i64,
    pub outcome: HealthOutcome,
    /// One line for the operator.
    pub message: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum HealthOutcome {
    /// verify: nothing wrong.
    Sound,
    /// verify --repair: something was wrong and is now put right.
    Repaired,
    /// verify: something is wrong (and, with --repair, could not all be put right).
    Damaged,
    /// update: the drop held what the store already has.
    Unchanged,
    /// update: a new generation was ingested (or the store repaired from the fresh copy).
    Updated,
    /// update: a check refused what was fetched.
    Rejected,
    /// update: the fetch or the ingest failed.
    Failed,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckRecord {
    pub name: String,
    pub passed: bool,
    /// One line: what the check found.
    pub detail: String,
    /// The tail of the command's output, for command checks.
    pub output: String,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttemptRecord {
    pub started: i64,
    pub finished: i64,
    pub action: Action,
    pub source: String,
    pub serial: Option<u64>,
    pub outcome: Outcome,
    pub generation: Option<u64>,
    /// One line for the operator.
    pub message: String,
    pub checks: Vec<CheckRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_carry_their_version() {
        let state = StateRecord {
            active: Some(3),
            serial_max: 9,
            next_generation: 4,
            next_attempt: 12,
        };
        let bytes = encode(&state);
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(decode::<StateRecord>(&bytes).unwrap(), state);
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        let mut bytes = encode(&StateRecord {
            active: None,
            serial_max: 0,
            next_generation: 1,
            next_attempt: 1,
        });
        bytes[0] = 2;
        assert!(matches!(
            decode::<StateRecord>(&bytes),
            Err(RecordError::UnknownVersion(2))
        ));
        assert!(matches!(
            decode::<StateRecord>(&[]),
            Err(RecordError::Empty)
        ));
        assert!(matches!(
            decode::<GenerationRecord>(&[1, 0xff]),
            Err(RecordError::Decode(_))
        ));
    }
}
