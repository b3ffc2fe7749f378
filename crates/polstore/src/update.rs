//! `polstore update [--force]`: run the fetch command, then ingest what it dropped.
//!
//! Without `--force`, a drop that holds what the store already has (the same manifest
//! bytes as a kept generation; for unsigned drops without a manifest, the same files as
//! the active generation) is a no-op that writes nothing. With `--force`, the fetch
//! command is told to fetch everything again (`{force}` = 1, POLSTORE_FORCE=1); a new
//! serial is ingested as usual, and an unchanged one is checked byte by byte against its
//! signed manifest and then used to verify and repair the whole store.
//!
//! With `[fetch] url`, the pull (`transport::repo`) replaces the fetch command and the
//! drop: a head naming a kept generation's manifest is "unchanged" (with `--force`, the
//! store is verified and repaired), one naming the manifest a check refused last reports
//! that refusal again without fetching (unless `--force`), and anything else is fetched
//! into `fetched/` and ingested from there.

use std::collections::BTreeMap;

use crate::candidate::source::{self, Item, Source};
use crate::checks;
use crate::db::LAST_UPDATE_KEY;
use crate::error::{Check, Error, Rejection, Result};
use crate::format::envelope::Envelope;
use crate::format::manifest::{Entry, Hash, Manifest};
use crate::format::policy_path::MANIFEST_NAME;
use crate::format::records::{GenerationState, HealthOutcome, HealthRecord};
use crate::format::timestamp::Timestamp;
use crate::health::repair::{self, VerifyReport};
use crate::ops::ingest::{self, IngestReport, IngestRequest, Progress};
use crate::store::Store;
use crate::transport::ObjectSource;
use crate::transport::drop::DropPlace;
use crate::transport::repo::{self, PullProgress, PullStats, Pulled};

pub enum UpdateOutcome {
    /// The drop holds what generation `generation` already has. `failed` is the reason
    /// when that generation failed: the drop still holds the policy that was refused or
    /// rolled back, and the node stays on another one until a fix comes.
    Unchanged {
        generation: u64,
        serial: u64,
        failed: Option<String>,
        /// With `fetch.url`: what the pull cost.
        pulled: Option<PullStats>,
    },
    Ingested {
        report: IngestReport,
        pulled: Option<PullStats>,
    },
    /// `--force` with an unchanged serial: the fresh copy was verified and the store
    /// verified and repaired with it.
    Verified(VerifyReport),
}

/// Fetches and ingests; records the outcome for `status`.
pub fn update(
    store: &Store,
    force: bool,
    progress: &mut dyn FnMut(Progress),
    verify_progress: crate::health::inspect::ProgressFn,
) -> Result<UpdateOutcome> {
    let result = update_inner(store, force, progress, verify_progress);
    let (outcome, message) = match &result {
        Ok(UpdateOutcome::Unchanged {
            generation,
            serial,
            failed: None,
            ..
        }) => (
            HealthOutcome::Unchanged,
            format!("serial {serial} unchanged (generation {generation})"),
        ),
        // Still the policy that failed: not a success for monitoring.
        Ok(UpdateOutcome::Unchanged {
            generation,
            serial,
            failed: Some(reason),
            pulled,
        }) => (
            HealthOutcome::Failed,
            format!(
                "{} serial {serial}, whose generation {generation} failed: {reason}",
                if pulled.is_some() {
                    "the repository's head still names"
                } else {
                    "the drop still holds"
                }
            ),
        ),
        Ok(UpdateOutcome::Ingested { report, .. }) => (
            HealthOutcome::Updated,
            format!(
                "generation {} (serial {}) activated",
                report.generation, report.serial
            ),
        ),
        Ok(UpdateOutcome::Verified(report)) => (
            if report.sound() {
                HealthOutcome::Updated
            } else {
                HealthOutcome::Failed
            },
            format!(
                "fresh copy verified; {} problems found, {} remain",
                report.findings.len(),
                if report.sound() {
                    0
                } else {
                    report.remaining.len()
                }
            ),
        ),
        Err(error) if error.is_rejection() => (HealthOutcome::Rejected, error.to_string()),
        Err(error) => (HealthOutcome::Failed, error.to_string()),
    };
    let record = HealthRecord {
        at: Timestamp::now().unix_secs(),
        outcome,
        message,
    };
    // A full disk may refuse even this; the outcome itself is still reported.
    let _ = store
        .db
        .write(|txn| txn.put_health(LAST_UPDATE_KEY, &record));
    result
}

fn update_inner(
    store: &Store,
    force: bool,
    progress: &mut dyn FnMut(Progress),
    verify_progress: crate::health::inspect::ProgressFn,
) -> Result<UpdateOutcome> {
    if let Some(url) = &store.config.fetch.url {
        return update_from_repository(store, url, force, progress, verify_progress);
    }
    let place = DropPlace::new(&store.config, store.layout.staging());
    let Some(drop) = &store.config.fetch.drop else {
        return Err(Error::Refused(
            "fetch.drop is not configured: say in polstore.toml where new policy arrives".into(),
        ));
    };
    // A drop the last update refused by its source or integrity check was damaged or
    // altered on its way (a cut or corrupted download, a tampered mirror): fetched whole
    // again, rather than kept by the transport's own caches (an etag, an unchanged head)
    // and refused again on every run until the server publishes something new.
    place.fetch(force || refused_in_transit(store))?;
    let Some(source) = place.source() else {
        return Err(Error::Refused(format!(
            "nothing at the drop place {}{}",
            drop.display(),
            if store.config.fetch.command.is_empty() {
                ""
            } else {
                " after the fetch command ran"
            }
        )));
    };
    if let Some((generation, serial)) = already_have(store, &place, &source)? {
        if !force {
            return Ok(UpdateOutcome::Unchanged {
                generation,
                serial,
                failed: failure_of(store, generation)?,
                pulled: None,
            });
        }
        verify_progress("checking the fresh copy against its signed manifest", false);
        check_fresh_copy(store, &source)?;
        return verify_and_repair(store, verify_progress);
    }
    let report = ingest::ingest(
        store,
        IngestRequest {
            source,
            manifest_file: None,
            signature_file: None,
            trust_stamps: !force,
            progress,
        },
    )?;
    Ok(UpdateOutcome::Ingested {
        report,
        pulled: None,
    })
}

/// `--force` with nothing new: the whole store verified and repaired.
fn verify_and_repair(
    store: &Store,
    verify_progress: crate::health::inspect::ProgressFn,
) -> Result<UpdateOutcome> {
    let mut report = VerifyReport {
        repaired: true,
        ..VerifyReport::default()
    };
    // A store opened as every writer opens it: redb's checksums were not verified, so
    // every object is re-hashed.
    repair::check_and_repair(
        store,
        true,
        crate::health::inspect::Objects::Rehash,
        &mut report,
        verify_progress,
    )?;
    Ok(UpdateOutcome::Verified(report))
}

/// Why `generation` failed, if it did.
fn failure_of(store: &Store, generation: u64) -> Result<Option<String>> {
    Ok(store
        .db
        .read()?
        .generations()?
        .into_iter()
        .find(|(number, _)| *number == generation)
        .filter(|(_, record)| record.state == GenerationState::Failed)
        .map(|(_, record)| record.reason.unwrap_or_else(|| "no reason recorded".into())))
}

/// `fetch.url`: pull the head and what the store lacks, then ingest it. With `--force` and
/// an unchanged head, the store is verified and repaired.
fn update_from_repository(
    store: &Store,
    url: &str,
    force: bool,
    progress: &mut dyn FnMut(Progress),
    verify_progress: crate::health::inspect::ProgressFn,
) -> Result<UpdateOutcome> {
    let (pulled, stats) = repo::pull(store, url, force, &mut |event| match event {
        PullProgress::Objects { done, total, bytes } => {
            progress(Progress::Fetching { done, total, bytes })
        }
    });
    match pulled? {
        Pulled::Have { generation, serial } => {
            if force {
                return verify_and_repair(store, verify_progress);
            }
            Ok(UpdateOutcome::Unchanged {
                generation,
                serial,
                failed: failure_of(store, generation)?,
                pulled: Some(stats),
            })
        }
        Pulled::Refused { rejection } => Err(rejection.into()),
        Pulled::Ready { manifest, .. } => {
            let pool = store.layout.fetched();
            let result = ingest::ingest(
                store,
                IngestRequest {
                    source: Source::Fetched {
                        pool: pool.clone(),
                        url: url.to_string(),
                    },
                    manifest_file: None,
                    signature_file: None,
                    trust_stamps: true,
                    progress,
                },
            );
            // Used, or refused by a check: emptied (a check's refusal is remembered just
            // below). Kept when the ingest could not finish (a full disk, the system): the
            // next update resumes from it.
            if result.as_ref().is_ok() || result.as_ref().is_err_and(Error::is_rejection) {
                repo::Pool::clear(&pool)?;
            }
            // A check's verdict on this candidate stands until the head names another.
            // An integrity refusal here is a pool object lost since it was fetched, and a
            // refused agent run leaves a failed generation, which the next pull finds.
            if let Err(Error::Rejected(rejection)) = &result
                && matches!(
                    rejection.check,
                    Check::Freshness | Check::Parse | Check::User(_)
                )
            {
                repo::Pool::record_refusal(&pool, manifest, rejection)?;
            }
            Ok(UpdateOutcome::Ingested {
                report: result?,
                pulled: Some(stats),
            })
        }
    }
}

/// Whether the last update was refused by the source or integrity check.
fn refused_in_transit(store: &Store) -> bool {
    let Ok(Some(record)) = store
        .db
        .read()
        .and_then(|read| read.health(LAST_UPDATE_KEY))
    else {
        return false;
    };
    record.outcome == HealthOutcome::Rejected
        && [Check::Source, Check::Integrity]
            .iter()
            .any(|check| record.message.starts_with(&Rejection::prefix(check)))
}

/// The kept generation the drop holds exactly, with its serial.
fn already_have(store: &Store, place: &DropPlace, source: &Source) -> Result<Option<(u64, u64)>> {
    let read = store.db.read()?;
    let generations = read.generations()?;
    match place.manifest()? {
        Some(bytes) => {
            for (generation, record) in generations.iter().rev() {
                if read.manifest(*generation)?.manifest == bytes {
                    return Ok(Some((*generation, record.serial)));
                }
            }
            Ok(None)
        }
        None => {
            // Unsigned and without a manifest: compare the files with the active ones.
            let Some(active) = read.state()?.active else {
                return Ok(None);
            };
            let manifest = crate::store::stored_manifest(&read, active)?;
            let entries = read_entries(store, source)?.0;
            let same = entries.values().eq(manifest.entries.iter());
            let serial = generations
                .iter()
                .find(|(generation, _)| *generation == active)
                .map_or(0, |(_, record)| record.serial);
            Ok(same.then_some((active, serial)))
        }
    }
}

/// Every file of `source`, hashed, with the manifest and signature it carries.
fn read_entries(store: &Store, source: &Source) -> Result<(BTreeMap<String, Entry>, Envelope)> {
    let mut entries = BTreeMap::new();
    let mut envelope = Envelope::default();
    source::read(source, &store.config.limits, &mut |item| {
        match item {
            Item::File {
                path,
                mode,
                content,
                ..
            } => {
                entries.insert(
                    path.clone(),
                    Entry {
                        path,
                        mode,
                        size: content.len() as u64,
                        hash: Hash::of(&content),
                    },
                );
            }
            Item::Manifest(bytes) => envelope.manifest = Some(bytes),
            Item::Signature(bytes) => envelope.signature = Some(bytes),
            // Only returned to a caller that recognizes files; this one reads them all.
            // Empty directories are compared by ingest's integrity check.
            Item::Known { .. } | Item::EmptyDirectory(_) => {}
        }
        Ok(())
    })?;
    Ok((entries, envelope))
}

/// `--force` on an unchanged serial: every byte of the fresh copy against its manifest
/// and the manifest's signature, as ingest's integrity check does.
fn check_fresh_copy(store: &Store, source: &Source) -> Result<()> {
    let (entries, envelope) = read_entries(store, source)?;
    let signature = envelope.signature;
    let Some(manifest_bytes) = envelope.manifest else {
        // Unsigned, no manifest: `already_have` compared every file already.
        return Ok(());
    };
    let manifest =
        Manifest::parse(&manifest_bytes, store.config.manifest_limits()).map_err(|error| {
            crate::error::Rejection::new(
                crate::error::Check::Integrity,
                Some(MANIFEST_NAME),
                error.to_string(),
            )
        })?;
    let trusted = checks::trust_root(&store.config, &store.layout)?;
    let (verdict, _) = checks::integrity(
        &manifest,
        Some(&manifest_bytes),
        signature.as_deref(),
        &trusted,
        store.config.trust.require_signature,
        &entries,
    );
    match verdict.rejection {
        Some(rejection) => Err(rejection.into()),
        None => Ok(()),
    }
}
