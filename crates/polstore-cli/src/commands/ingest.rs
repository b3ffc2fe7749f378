//! `ingest` and `update`, and the gc after them.

use super::verify::print_verify_report;
use super::*;
use polstore::candidate::source::Source;
use polstore::ops::ingest::{self, AgentRun, IngestRequest};
use polstore::transport::repo::PullStats;
use polstore::update::{self, UpdateOutcome};

pub(super) fn ingest_command(
    store_root: &Path,
    lock_timeout: Duration,
    args: crate::args::IngestArgs,
) -> Result<()> {
    let source_path = if args.source == Path::new("-") {
        args.source.clone()
    } else {
        absolute(&args.source)?
    };
    let store = open_writer(store_root, "ingest", lock_timeout)?;
    let source = Source::from_argument(&source_path, &store.config.fetch.parts);
    let before = store.state()?.active;
    let mut progress = ProgressLine::new();
    let request = IngestRequest {
        source,
        manifest_file: args.manifest,
        signature_file: args.signature,
        trust_stamps: true,
        progress: &mut |event| progress.update(event),
    };
    let result = ingest::ingest(&store, request);
    progress.clear();
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            let rolled_back = matches!(&error, polstore::error::Error::Rejected(rejection) if rejection.check == polstore::error::Check::Agent);
            let active = ingest::active_after_failure(store);
            let stays = match active {
                _ if rolled_back => String::new(),
                Some(active) if Some(active) == before => {
                    format!("; generation {active} stays active")
                }
                Some(active) => format!("; generation {active} is active"),
                None => String::new(),
            };
            return Err(Failure::from_library(&error, &stays).into());
        }
    };
    print_ingest_report(&report, None, args.json)?;
    Ok(())
}

/// What a pull cost, for JSON output.
fn pulled_json(pulled: Option<&PullStats>) -> serde_json::Value {
    match pulled {
        Some(stats) => serde_json::json!({
            "requests": stats.requests,
            "bytes": stats.bytes,
            "objects": stats.objects,
            "delta": stats.delta,
        }),
        None => serde_json::Value::Null,
    }
}

/// What a pull cost, for a line of text: empty without a pull.
fn pulled_text(pulled: Option<&PullStats>) -> String {
    match pulled {
        Some(stats) => format!(
            "; pulled {} objects in {} requests, {} bytes",
            stats.objects, stats.requests, stats.bytes
        ),
        None => String::new(),
    }
}

pub(super) fn print_ingest_report(
    report: &ingest::IngestReport,
    pulled: Option<&PullStats>,
    json: bool,
) -> Result<()> {
    if json {
        let json = serde_json::json!({
            "pulled": pulled_json(pulled),
            "generation": report.generation,
            "serial": report.serial,
            "files": report.files,
            "files_written": report.files_written,
            "bytes": report.bytes,
            "agent": match &report.agent {
                AgentRun::NotConfigured => "not-configured".to_string(),
                AgentRun::Succeeded => "succeeded".to_string(),
                AgentRun::FailedUnconfirmed(reason) => format!("failed (confirm off): {reason}"),
            },
        });
        outln!("{json}");
        return Ok(());
    }
    let agent = match &report.agent {
        AgentRun::NotConfigured => "no agent run configured".to_string(),
        AgentRun::Succeeded => "agent run succeeded".to_string(),
        AgentRun::FailedUnconfirmed(reason) => {
            format!("agent run FAILED but confirm is off, so it stays: {reason}")
        }
    };
    outln!(
        "generation {} active: serial {}, {} files ({} written, {} reused), {agent}{}",
        report.generation,
        report.serial,
        report.files,
        report.files_written,
        report.files - report.files_written.min(report.files),
        pulled_text(pulled),
    );
    Ok(())
}

pub(super) fn update_command(
    store_root: &Path,
    lock_timeout: Duration,
    args: crate::args::UpdateArgs,
) -> Result<()> {
    let store = open_writer(store_root, "update", lock_timeout)?;
    let before = store.state()?.active;
    let mut progress = ProgressLine::new();
    let mut verify_line = ProgressLine::new();
    let result = update::update(
        &store,
        args.force,
        &mut |event| progress.update(event),
        &mut |text, throttle| verify_line.show(text, throttle),
    );
    progress.clear();
    verify_line.clear();
    match result {
        Ok(UpdateOutcome::Unchanged {
            generation,
            serial,
            failed,
            pulled,
        }) => {
            let holds = if pulled.is_some() {
                "the repository's head names"
            } else {
                "the drop holds"
            };
            if args.json {
                outln!(
                    "{}",
                    serde_json::json!({"outcome": if failed.is_some() { "failed" } else { "unchanged" }, "generation": generation, "serial": serial, "reason": failed, "pulled": pulled_json(pulled.as_ref())})
                );
            } else if failed.is_none() {
                outln!(
                    "unchanged: {holds} serial {serial}, generation {generation}{}",
                    pulled_text(pulled.as_ref())
                );
            }
            match failed {
                // Every run says so, with the exit code of a refusal, until a fix comes.
                Some(reason) => Err(Failure {
                    line: format!(
                        "{} serial {serial}, whose generation {generation} failed: {}{}",
                        if pulled.is_some() {
                            "the repository's head still names"
                        } else {
                            "the drop still holds"
                        },
                        polstore::format::text::one_line(
                            &reason,
                            polstore::format::text::QUOTED_CHARS_MAX
                        ),
                        before
                            .map(|active| format!("; generation {active} stays active"))
                            .unwrap_or_default()
                    ),
                    code: crate::exit::EXIT_REJECTED,
                }
                .into()),
                None => Ok(()),
            }
        }
        Ok(UpdateOutcome::Ingested { report, pulled }) => {
            print_ingest_report(&report, pulled.as_ref(), args.json)?;
            Ok(())
        }
        Ok(UpdateOutcome::Verified(report)) => print_verify_report(&report, args.json),
        Err(error) => {
            // A rolled-back agent run says where it rolled back to already.
            let rolled_back = matches!(&error, polstore::error::Error::Rejected(rejection) if rejection.check == polstore::error::Check::Agent);
            let stays = match store.state().ok().and_then(|state| state.active) {
                _ if rolled_back => String::new(),
                Some(active) if Some(active) == before => {
                    format!("; generation {active} stays active")
                }
                _ => String::new(),
            };
            Err(Failure::from_library(&error, &stays).into())
        }
    }
}
