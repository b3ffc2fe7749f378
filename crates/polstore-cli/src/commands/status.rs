//! `status`, `list`, `log`: readers.

use super::*;
use crate::output::TrustJson;
use polstore::format::text::one_line;

/// How much of each line of a check's output `log -v` shows.
const OUTPUT_LINE_CHARS_MAX: usize = 300;
use polstore::ops::status::{self, Warning};
use polstore::store::protect::Protection;

pub(super) fn status(store_root: &Path, json: bool) -> Result<()> {
    let reader = open_reader(store_root)?;
    let found = status::status(&reader)?;
    let status = StatusJson {
        store: store_root.display().to_string(),
        view: found.views[0].path.display().to_string(),
        view_target: found.views[0]
            .target
            .as_ref()
            .map(|target| target.display().to_string()),
        view_type: found.views[0].kind,
        views: found
            .views
            .iter()
            .map(|view| ViewJson {
                name: view.name.clone(),
                path: view.path.display().to_string(),
                target: view
                    .target
                    .as_ref()
                    .map(|target| target.display().to_string()),
                kind: view.kind,
            })
            .collect(),
        active_link: found
            .active_link
            .as_ref()
            .map(|target| target.display().to_string()),
        view_protection: ProtectionJson::new(&found.protection),
        active: found.active.as_ref().map(|(number, record, tree, pinned)| {
            GenerationJson::new(*number, record, tree.display().to_string(), true, *pinned)
        }),
        serial_max: found.serial_max,
        generations: found.generations,
        last_attempt: found
            .last_attempt
            .as_ref()
            .map(|(number, record)| AttemptJson::new(*number, record)),
        last_verify: found.last_verify.as_ref().map(HealthJson::new),
        last_update: found.last_update.as_ref().map(HealthJson::new),
        trust: found.trust.as_ref().map(|trust| TrustJson {
            root_version: trust.root_version,
            root_expires: trust.root_expires.map(time),
            manifest_threshold: trust.manifest_threshold,
            manifest_keys: trust.manifest_keys,
        }),
        warnings: found.warnings.iter().map(warning_text).collect(),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    outln!("store        {}", status.store);
    for view in &status.views {
        outln!(
            "view         {}{} -> {}",
            view.name
                .as_ref()
                .map(|name| format!("{name} "))
                .unwrap_or_default(),
            view.path,
            view.target
                .clone()
                .unwrap_or_else(|| format!("({})", view.kind.unwrap_or("missing")))
        );
    }
    outln!(
        "switch       {} -> {}",
        store_root.join("active").display(),
        status.active_link.as_deref().unwrap_or("(missing)")
    );
    let bypassed = found
        .warnings
        .iter()
        .any(|warning| matches!(warning, Warning::ViewElsewhere { .. }));
    outln!(
        "protection   {}{}{}",
        status.view_protection.detail,
        mount_advice(status.view_protection.state),
        if bypassed && status.view_protection.state == "read-only" {
            ", but the view does not point through the mount (see the warning)"
        } else {
            ""
        }
    );
    match &status.active {
        Some(active) => outln!(
            "active       generation {}, serial {}, {}, {} files, made {}{}",
            active.generation,
            active.serial,
            active.state,
            active.files,
            active.created,
            active
                .signed_by
                .as_ref()
                .map(|key| format!(", signed by key {key}"))
                .unwrap_or_default()
        ),
        None => outln!("active       none yet: ingest a policy"),
    }
    if let Some(expires) = status
        .active
        .as_ref()
        .and_then(|active| active.expires.as_ref())
    {
        outln!("expires      {expires}");
    }
    if let Some(trust) = &status.trust {
        if trust.root_version == 0 && trust.manifest_keys == 0 {
            outln!("trust        no trusted key");
        } else if trust.root_version == 0 {
            outln!(
                "trust        trust.keys: any 1 of {} keys",
                trust.manifest_keys
            );
        } else {
            outln!(
                "trust        root version {}, expires {}; manifests need {} of {} keys",
                trust.root_version,
                trust.root_expires.as_deref().unwrap_or("never"),
                trust.manifest_threshold,
                trust.manifest_keys
            );
        }
    }
    outln!("serial max   {}", status.serial_max);
    outln!("generations  {} kept", status.generations);
    if let Some(attempt) = &status.last_attempt {
        outln!(
            "last attempt #{} {} {} {}: {}",
            attempt.attempt,
            attempt.finished,
            attempt.action,
            attempt.outcome,
            attempt.message
        );
    }
    for (label, record) in [
        ("last verify ", &status.last_verify),
        ("last update ", &status.last_update),
    ] {
        match record {
            Some(record) => outln!(
                "{label} {} {}: {}",
                record.at,
                record.outcome,
                record.message
            ),
            None => outln!("{label} never"),
        }
    }
    for warning in &status.warnings {
        outln!("WARNING      {warning}");
    }
    Ok(())
}

pub(super) fn warning_text(warning: &Warning) -> String {
    match warning {
        Warning::ViewElsewhere { problem } => problem.clone(),
        Warning::ViewWritable { protection } => match protection {
            Protection::Missing(reason) => format!(
                "the view is not read-only: {reason}; writes through the view reach the store"
            ),
            _ => "the view is not read-only (protect_view = false): writes through the view reach the store".into(),
        },
        Warning::Expired { at } => format!("the active manifest expired at {}", time(*at)),
        Warning::ExpiresSoon { at } => {
            format!("the active manifest expires soon, at {}", time(*at))
        }
        Warning::ActiveNotGood { state } => {
            format!("the active generation is {}", state_name(*state))
        }
        Warning::LastVerifyDamaged { record } => format!(
            "the last verify, at {}, found damage: {}",
            time(record.at),
            record.message
        ),
        Warning::LastUpdateFailed { record } => format!(
            "the last update, at {}, did not succeed: {}",
            time(record.at),
            record.message
        ),
        Warning::RootExpired { version, at } => format!(
            "the trusted root (version {version}) expired at {}: every update is refused until a newer root is published or installed",
            time(*at)
        ),
        Warning::RootExpiresSoon { version, at } => format!(
            "the trusted root (version {version}) expires at {}: publish the next root before then",
            time(*at)
        ),
        Warning::TrustUnreadable { reason } => {
            format!("the root of trust cannot be read, so every signed update is refused: {reason}")
        }
        Warning::GcBehind { generations, keep } => format!(
            "{generations} generations kept, more than twice keep = {keep}: no ingest collects them; run 'polstore gc' (its timer: polstore-verify.service)"
        ),
    }
}

pub(super) fn list(store_root: &Path, json: bool) -> Result<()> {
    let reader = open_reader(store_root)?;
    let (active, records) = reader.query(|read| Ok((read.state()?.active, read.generations()?)))?;
    let generations: Vec<GenerationJson> = records
        .iter()
        .map(|(number, record)| {
            GenerationJson::new(
                *number,
                record,
                reader.layout.generation_tree(*number).display().to_string(),
                Some(*number) == active,
                reader.layout.pin_marker(*number).exists(),
            )
        })
        .collect();
    if json {
        outln!("{}", serde_json::to_string_pretty(&generations)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "  {:>5} {:>12}  {:<10}  {:<20}  {:>6}  SOURCE",
        "GEN", "SERIAL", "STATE", "CREATED", "FILES"
    )?;
    for generation in &generations {
        let marker = if generation.active { '*' } else { ' ' };
        let mut note = generation.source.clone();
        if generation.origin == "adopted" {
            note.push_str(" (adopted)");
        }
        if generation.pinned {
            note.push_str(" (pinned)");
        }
        if !generation.tree_on_disk {
            note.push_str(" (tree not on disk)");
        }
        if let Some(reason) = &generation.reason {
            note.push_str(&format!(" - {reason}"));
        }
        writeln!(
            out,
            "{marker} {:>5} {:>12}  {:<10}  {:<20}  {:>6}  {note}",
            generation.generation,
            generation.serial,
            generation.state,
            generation.created,
            generation.files
        )?;
    }
    Ok(())
}

pub(super) fn log(store_root: &Path, args: crate::args::LogArgs) -> Result<()> {
    let reader = open_reader(store_root)?;
    let attempts: Vec<AttemptJson> = reader
        .query(|read| Ok(read.attempts(args.count)?))?
        .iter()
        .map(|(number, record)| AttemptJson::new(*number, record))
        .collect();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&attempts)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for attempt in &attempts {
        writeln!(
            out,
            "#{} {} {} {}: {}",
            attempt.attempt, attempt.finished, attempt.action, attempt.outcome, attempt.message
        )?;
        if args.verbose {
            for check in &attempt.checks {
                let verdict = if check.passed { "pass" } else { "FAIL" };
                writeln!(
                    out,
                    "    {verdict} {} ({} ms): {}",
                    check.name, check.duration_ms, check.detail
                )?;
                if !check.passed && !check.output.is_empty() {
                    // A check's output is anyone's text: one escaped line each, bounded.
                    for line in check.output.lines().take(20) {
                        writeln!(out, "        | {}", one_line(line, OUTPUT_LINE_CHARS_MAX))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// What to do about a view that is not read-only, for the human-readable output.
pub(super) fn mount_advice(state: &str) -> &'static str {
    if state == "missing" {
        " (`polstore mount` as root puts the read-only mount in place; `polstore verify --repair` puts right what was planted)"
    } else {
        ""
    }
}
