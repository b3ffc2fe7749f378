//! `ingest` and `update`, and the gc after them.

use super::verify::print_verify_report;
use super::*;
use polstore::candidate::source::Source;
use polstore::ops::ingest::{self, AgentRun, IngestRequest};
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
    print_ingest_report(&report, args.json)?;
    Ok(())
}

pub(super) fn print_ingest_report(report: &ingest::IngestReport, json: bool) -> Result<()> {
    if json {
        let json = serde_json::json!({
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
        "generation {} active: serial {}, {} files ({} written, {} reused), {agent}",
        report.generation,
        report.serial,
        report.files,
        report.files_written,
        report.files - report.files_written.min(report.files),
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
        }) => {
            if args.json {
                outln!(
                    "{}",
                    serde_json::json!({"outcome": if failed.is_some() { "failed" } else { "unchanged" }, "generation": generation, "serial": serial, "reason": failed})
                );
            } else if failed.is_none() {
                outln!("unchanged: the drop holds serial {serial}, generation {generation}");
            }
            match failed {
                // Every run says so, with the exit code of a refusal, until a fix comes.
                Some(reason) => Err(Failure {
                    line: format!(
                        "the drop still holds serial {serial}, whose generation {generation} failed: {}{}",
                        polstore::format::text::one_line(&reason, polstore::format::text::QUOTED_CHARS_MAX),
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
        Ok(UpdateOutcome::Ingested(report)) => {
            print_ingest_report(&report, args.json)?;
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
