//! `verify [--repair]`.

use super::*;
use polstore::health::inspect::Finding;
use polstore::health::repair::{self, VerifyReport, problems};
use polstore::store::LockWait;
use polstore::store::protect::Protection;

pub(super) fn verify_command(
    store_root: &Path,
    lock_timeout: Duration,
    args: crate::args::VerifyArgs,
) -> Result<()> {
    let mut line = ProgressLine::new();
    let report = repair::verify_store(
        store_root,
        LockWait {
            command: if args.repair {
                "verify --repair"
            } else {
                "verify"
            },
            timeout: lock_timeout,
            on_wait: &mut print_wait,
        },
        args.repair,
        &mut |text, throttle| line.show(text, throttle),
    );
    line.clear();
    print_verify_report(&report?, args.json)
}

/// Prints what verify found and did; fails with exit code 4 unless the store is sound.
pub(super) fn print_verify_report(report: &VerifyReport, json: bool) -> Result<()> {
    if json {
        let findings = |findings: &[Finding]| -> Vec<serde_json::Value> {
            findings
                .iter()
                .map(|finding| {
                    serde_json::json!({
                        "generation": finding.generation,
                        "path": finding.path,
                        "kind": finding.kind.name(),
                        "detail": finding.detail,
                        "message": finding.to_string(),
                    })
                })
                .collect()
        };
        let json = serde_json::json!({
            "sound": report.sound(),
            "repair": report.repaired,
            "active": report.active,
            "generations": report
                .generations
                .iter()
                .map(|generation| serde_json::json!({
                    "generation": generation.generation,
                    "state": state_name(generation.state),
                    "files": generation.files,
                    "active": Some(generation.generation) == report.active,
                    "sound": generation.sound,
                }))
                .collect::<Vec<_>>(),
            "findings": findings(&report.findings),
            "changes": report.changes,
            "alarms": report.alarms,
            "remaining": findings(&report.remaining),
            "view_protection": report.protection.as_ref().map(|protection| {
                ProtectionJson::new(protection)
            }),
        });
        outln!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for finding in &report.findings {
            outln!("DAMAGED  {}", printable(&finding.to_string()));
        }
        for change in &report.changes {
            outln!("REPAIRED {}", printable(change));
        }
        for alarm in &report.alarms {
            outln!("ALARM    {}", printable(alarm));
        }
        for finding in &report.remaining {
            outln!("LEFT     {}", printable(&finding.to_string()));
        }
        if let Some(protection) = &report.protection
            && *protection != Protection::ReadOnly
        {
            outln!(
                "WARNING  view protection {}{}",
                printable(&protection.describe()),
                super::status::mount_advice(ProtectionJson::new(protection).state)
            );
        }
        for generation in &report.generations {
            let marker = if Some(generation.generation) == report.active {
                "*"
            } else {
                " "
            };
            outln!(
                "{marker} generation {:>5}  {:<10}  {:>6} files  {}",
                generation.generation,
                state_name(generation.state),
                generation.files,
                if generation.sound { "sound" } else { "DAMAGED" }
            );
        }
    }
    for alarm in &report.alarms {
        errln!("polstore: ALARM: {alarm}");
    }
    let active = report
        .active
        .map(|active| format!("; generation {active} is active"))
        .unwrap_or_default();
    if report.sound() {
        if !json {
            if report.findings.is_empty() {
                outln!("sound{active}");
            } else {
                outln!(
                    "repaired {}; the store is sound{active}",
                    problems(report.findings.len())
                );
            }
        }
        return Ok(());
    }
    let left = if report.repaired {
        &report.remaining
    } else {
        &report.findings
    };
    let line = if report.repaired {
        format!(
            "verify --repair could not put everything right: {} remain, first: {}{active}",
            problems(left.len()),
            left[0]
        )
    } else {
        format!(
            "verify found {}, first: {}; run 'polstore verify --repair'{active}",
            problems(left.len()),
            left[0]
        )
    };
    Err(Failure::damaged(line).into())
}

/// A line of the report: names found in a tree are anyone's text, so each line is
/// escaped and bounded (a name with a newline or an escape sequence cannot forge a line).
fn printable(line: &str) -> String {
    polstore::format::text::one_line(line, 2000)
}
