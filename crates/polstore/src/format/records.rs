//! The database's on-disk records. Each is encoded as its own version byte followed by the
//! postcard encoding of the struct for that version; `store-format.md` lists the fields.
//!
//! Every record type implements [`Record`]: its name, the version this polstore writes
//! ([`Record::VERSION`]), and [`Record::decode_version`], which turns the body of any
//! version it still reads into today's struct. [`decode`] dispatches on the version byte;
//! a version the record does not know is refused as [`RecordError::UnknownVersion`].
//!
//! These types carry a compatibility promise: never reorder or remove fields or enum
//! variants of a version once released; a new field needs a new version. Enum variants
//! may be appended: records written before still decode, and an older polstore refuses a
//! record naming a variant it does not know, as undecodable. A record's version covers the
//! types nested in it ([`CheckRecord`] in [`AttemptRecord`], [`StampEntry`] and [`Stamp`]
//! in [`StampsRecord`]): changing one of them is a new version of the record holding it.
//!
//! Adding version 2 of one record is local to that record: keep the version 1 struct as
//! a private `...V1` type that deserializes the old body, give the public struct the new
//! layout, raise its `VERSION` to 2, and override `decode_version` to decode version 1
//! through the old struct and convert it. `tests::two_versions` shows it on a test-only
//! record. The other records, and every caller of [`encode`] and [`decode`], are
//! untouched. Never change a released version's layout, and never reuse its number.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// A record stored in the database, with its own version.
pub trait Record: Serialize + DeserializeOwned {
    /// The record's name, for errors.
    const NAME: &'static str;
    /// The version [`encode`] writes: the layout of the struct itself.
    const VERSION: u8;

    /// Decodes the body of a record of `version`. The default reads [`Record::VERSION`]
    /// only; a record that has had several versions overrides it to read the older ones
    /// too, each into today's struct, and refuses the rest with [`unknown_version`].
    fn decode_version(version: u8, body: &[u8]) -> Result<Self, RecordError> {
        if version == Self::VERSION {
            decode_body(body)
        } else {
            Err(unknown_version::<Self>(version))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("empty record")]
    Empty,
    #[error(
        "{record} version {version} is not understood by this polstore (the newest it reads is version {newest})"
    )]
    UnknownVersion {
        record: &'static str,
        version: u8,
        newest: u8,
    },
    #[error("undecodable record: {0}")]
    Decode(#[from] postcard::Error),
}

/// The refusal of a version `T` does not read.
pub fn unknown_version<T: Record>(version: u8) -> RecordError {
    RecordError::UnknownVersion {
        record: T::NAME,
        version,
        newest: T::VERSION,
    }
}

/// The postcard body of one version, decoded into `T` (today's struct, or an older
/// version's, for [`Record::decode_version`]).
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, RecordError> {
    Ok(postcard::from_bytes(body)?)
}

/// The record's version byte, then its postcard body.
pub fn encode<T: Record>(record: &T) -> Vec<u8> {
    let mut bytes = vec![T::VERSION];
    // Serializing these plain structs into a Vec cannot fail.
    bytes.extend(postcard::to_allocvec(record).expect("record encodes"));
    bytes
}

/// Reads the version byte and decodes the body of that version.
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, RecordError> {
    let (&version, body) = bytes.split_first().ok_or(RecordError::Empty)?;
    T::decode_version(version, body)
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

impl Record for StateRecord {
    const NAME: &'static str = "StateRecord";
    const VERSION: u8 = 1;
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

impl Record for GenerationRecord {
    const NAME: &'static str = "GenerationRecord";
    const VERSION: u8 = 1;
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestRecord {
    /// The manifest's exact bytes, as signed. Read as bytes (serde_bytes), not as a
    /// sequence of numbers: postcard encodes both the same way (a varint length, then the
    /// bytes), and bytes are copied at once rather than visited one by one.
    #[serde(with = "serde_bytes")]
    pub manifest: Vec<u8>,
    /// The signify signature file's exact bytes, when the candidate had one.
    #[serde(with = "serde_bytes")]
    pub signature: Option<Vec<u8>>,
}

impl Record for ManifestRecord {
    const NAME: &'static str = "ManifestRecord";
    const VERSION: u8 = 1;
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

impl Record for StampsRecord {
    const NAME: &'static str = "StampsRecord";
    const VERSION: u8 = 1;
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

impl Record for HealthRecord {
    const NAME: &'static str = "HealthRecord";
    const VERSION: u8 = 1;
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

impl Record for AttemptRecord {
    const NAME: &'static str = "AttemptRecord";
    const VERSION: u8 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
            .collect()
    }

    /// `bytes` (hex) decode to `record`, and `record` encodes to exactly `bytes`.
    fn assert_golden<T: Record + PartialEq + std::fmt::Debug>(bytes: &str, record: T) {
        assert_eq!(decode::<T>(&unhex(bytes)).unwrap(), record, "{}", T::NAME);
        assert_eq!(hex(&encode(&record)), bytes, "{}", T::NAME);
    }

    /// Version 1 of every record, byte for byte as the first polstore wrote it: what the
    /// stores on the nodes hold (`tests/fixtures/store-v1` holds a whole store of them).
    #[test]
    fn version_1_of_every_record_is_unchanged() {
        assert_golden(
            "010103ac02040c",
            StateRecord {
                active: Some(3),
                serial_max: 300,
                next_generation: 4,
                next_attempt: 12,
            },
        );
        assert_golden(
            "010780c49fd50c010180c8ceb40d000201056167656e74028201022f640102616209",
            GenerationRecord {
                serial: 7,
                created: 1_700_000_000,
                manifest_created: -1,
                expires: Some(1_800_000_000),
                origin: Origin::Ingested,
                state: GenerationState::Failed,
                reason: Some("agent".into()),
                files: 2,
                bytes: 130,
                source: "/d".into(),
                signed_by: Some("ab".into()),
                attempt: 9,
            },
        );
        assert_golden(
            "01026d0a00",
            ManifestRecord {
                manifest: b"m\n".to_vec(),
                signature: None,
            },
        );
        assert_golden(
            "01026d0a0102730a",
            ManifestRecord {
                manifest: b"m\n".to_vec(),
                signature: Some(b"s\n".to_vec()),
            },
        );
        assert_golden(
            "01141602017300030102026f6b01057061727365000164016fc801",
            AttemptRecord {
                started: 10,
                finished: 11,
                action: Action::Rollback,
                source: "s".into(),
                serial: None,
                outcome: Outcome::Switched,
                generation: Some(2),
                message: "ok".into(),
                checks: vec![CheckRecord {
                    name: "parse".into(),
                    passed: false,
                    detail: "d".into(),
                    output: "o".into(),
                    duration_ms: 200,
                }],
            },
        );
        assert_golden(
            "01010161010203080a0b0eaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            StampsRecord {
                files: vec![StampEntry {
                    path: "a".into(),
                    stamp: Stamp {
                        dev: 1,
                        ino: 2,
                        size: 3,
                        mtime: (4, 5),
                        ctime: (-6, 7),
                    },
                    hash: [0xaa; 32],
                }],
            },
        );
        assert_golden(
            "010a04016d",
            HealthRecord {
                at: 5,
                outcome: HealthOutcome::Updated,
                message: "m".into(),
            },
        );
    }

    #[test]
    fn records_round_trip_and_carry_their_version() {
        let state = StateRecord {
            active: Some(3),
            serial_max: 9,
            next_generation: 4,
            next_attempt: 12,
        };
        let bytes = encode(&state);
        assert_eq!(bytes[0], StateRecord::VERSION);
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
        for version in [0, 2, 255] {
            bytes[0] = version;
            let error = decode::<StateRecord>(&bytes).unwrap_err();
            assert!(
                matches!(
                    error,
                    RecordError::UnknownVersion {
                        record: "StateRecord",
                        version: found,
                        newest: 1,
                    } if found == version
                ),
                "{error:?}"
            );
            assert_eq!(
                error.to_string(),
                format!(
                    "StateRecord version {version} is not understood by this polstore (the newest it reads is version 1)"
                )
            );
        }
        assert!(matches!(
            decode::<GenerationRecord>(&[2]),
            Err(RecordError::UnknownVersion {
                record: "GenerationRecord",
                version: 2,
                ..
            })
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

    /// How a record gets a version 2, on a test-only record: version 1 had `name` and
    /// `count`; version 2 added `label`. Stores hold both; both decode.
    mod two_versions {
        use super::*;

        /// Version 1's layout, exactly as released. Only decoded now (and encoded here,
        /// to make the bytes an older polstore wrote).
        #[derive(Debug, Serialize, Deserialize)]
        struct ExampleV1 {
            name: String,
            count: u64,
        }

        impl Record for ExampleV1 {
            const NAME: &'static str = "Example";
            const VERSION: u8 = 1;
        }

        /// Today's layout: version 2.
        #[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
        struct Example {
            name: String,
            count: u64,
            label: Option<String>,
        }

        impl From<ExampleV1> for Example {
            fn from(old: ExampleV1) -> Example {
                Example {
                    name: old.name,
                    count: old.count,
                    label: None,
                }
            }
        }

        impl Record for Example {
            const NAME: &'static str = "Example";
            const VERSION: u8 = 2;

            fn decode_version(version: u8, body: &[u8]) -> Result<Self, RecordError> {
                match version {
                    1 => Ok(decode_body::<ExampleV1>(body)?.into()),
                    2 => decode_body(body),
                    _ => Err(unknown_version::<Self>(version)),
                }
            }
        }

        #[test]
        fn a_version_1_body_still_decodes_after_version_2_exists() {
            let old = encode(&ExampleV1 {
                name: "n".into(),
                count: 7,
            });
            assert_eq!(old, [1, 1, b'n', 7]);
            assert_eq!(
                decode::<Example>(&old).unwrap(),
                Example {
                    name: "n".into(),
                    count: 7,
                    label: None,
                }
            );
            // Today's struct is written as version 2 and read back.
            let new = Example {
                name: "n".into(),
                count: 7,
                label: Some("l".into()),
            };
            let bytes = encode(&new);
            assert_eq!(bytes, [2, 1, b'n', 7, 1, 1, b'l']);
            assert_eq!(decode::<Example>(&bytes).unwrap(), new);
            // The polstore that knew only version 1 refuses version 2, by name.
            assert!(matches!(
                decode::<ExampleV1>(&bytes),
                Err(RecordError::UnknownVersion {
                    record: "Example",
                    version: 2,
                    newest: 1,
                })
            ));
            // A version 3 nobody wrote yet is refused.
            let mut future = bytes.clone();
            future[0] = 3;
            assert!(matches!(
                decode::<Example>(&future),
                Err(RecordError::UnknownVersion {
                    record: "Example",
                    version: 3,
                    newest: 2,
                })
            ));
        }
    }
}
