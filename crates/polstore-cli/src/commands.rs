//! One function per command: resolve arguments, call the library, print the outcome.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use polstore::candidate::authoring;
use polstore::candidate::source::Source;
use polstore::config::LimitsConfig;
use polstore::format::manifest;
use polstore::format::signify::SecretKey;
use polstore::format::timestamp::Timestamp;
use polstore::health::inspect::Finding;
use polstore::health::repair::{self, VerifyReport, problems};
use polstore::ops::gc;
use polstore::ops::ingest::{self, AgentRun, IngestRequest};
use polstore::ops::init::{self, InitRequest};
use polstore::ops::query::{self, Change};
use polstore::ops::rollback;
use polstore::ops::status::{self, Warning};
use polstore::store::{LockWait, Recovery, Store, StoreReader};
use polstore::update::{self, UpdateOutcome};

use crate::args::{Cli, Command};
use crate::exit::Failure;
use crate::output::{
    AttemptJson, GenerationJson, HealthJson, ProgressLine, StatusJson, state_name, time,
};

/// `println!` that returns a closed pipe as an error (for `exit`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

/// `eprintln!` that never panics: a closed standard error loses the message, nothing more.
macro_rules! errln {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

const SECONDS_PER_DAY: u64 = 86_400;

pub fn run(cli: Cli) -> Result<()> {
    let store = absolute(&cli.store)?;
    let lock_timeout = Duration::from_secs(cli.lock_timeout);
    match cli.command {
        Command::Init(args) => init(&store, args),
        Command::Keygen(args) => keygen(args),
        Command::Manifest(args) => manifest_command(args),
        Command::Sign(args) => sign(args),
        Command::Ingest(args) => ingest_command(&store, lock_timeout, args),
        Command::Update(args) => update_command(&store, lock_timeout, args),
        Command::Verify(args) => verify_command(&store, lock_timeout, args),
        Command::Gc(args) => gc_command(&store, lock_timeout, args),
        Command::Pin(args) => pin_command(&store, lock_timeout, args.generation, true),
        Command::Unpin(args) => pin_command(&store, lock_timeout, args.generation, false),
        Command::Status(args) => status(&store, args.json),
        Command::List(args) => list(&store, args.json),
        Command::Log(args) => log(&store, args),
        Command::Rollback(args) => rollback_command(&store, lock_timeout, args.generation),
        Command::Show(args) => show(&store, args.generation, &args.path),
        Command::Diff(args) => diff(&store, args.old, args.new),
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

fn print_wait(holder: &str) {
    errln!("polstore: waiting for the store lock, held by {holder}");
}

fn open_writer(store: &Path, command: &str, timeout: Duration) -> Result<Store> {
    let (store, recovery) = Store::open(
        store,
        LockWait {
            command,
            timeout,
            on_wait: &mut print_wait,
        },
    )?;
    report_recovery(&recovery);
    Ok(store)
}

fn report_recovery(recovery: &Recovery) {
    for note in &recovery.notes {
        errln!("polstore: recovery: {note}");
    }
}

fn open_reader(store: &Path) -> Result<StoreReader> {
    Ok(StoreReader::open(store)?)
}

fn init(store_root: &Path, args: crate::args::InitArgs) -> Result<()> {
    let view = absolute(&args.view)?;
    let keys = args
        .trust
        .iter()
        .map(|key| absolute(key))
        .collect::<Result<Vec<_>>>()?;
    let mut progress = ProgressLine::new();
    let report = init::init(InitRequest {
        root: store_root,
        view: &view,
        keys: &keys,
        adopt: args.adopt,
        progress: &mut |event| progress.update(event),
    });
    progress.clear();
    let report = report?;
    if report.restarted {
        errln!(
            "polstore: {} held an adoption that was interrupted before it took effect; started over",
            store_root.display()
        );
    }
    outln!("initialized store {}", store_root.display());
    if keys.is_empty() {
        outln!(
            "no trusted key given: unsigned policy will be accepted (trust.require_signature = false)"
        );
    }
    if let (Some((directory, generation)), Some(target)) = (&report.adopted, &report.view_target) {
        outln!(
            "adopted {} as generation {generation} (unsigned, not checked); it is now a symlink to {}",
            directory.display(),
            target.display()
        );
    }
    Ok(())
}

fn keygen(args: crate::args::KeygenArgs) -> Result<()> {
    let secret = SecretKey::generate()?;
    let public = secret.public_key();
    write_new_file(
        &args.secret,
        secret.to_file_text("signify secret key").as_bytes(),
        0o600,
    )?;
    write_new_file(
        &args.public,
        public.to_file_text("signify public key").as_bytes(),
        0o644,
    )?;
    outln!(
        "wrote key {} to {} and {}",
        public.keynum(),
        args.public.display(),
        args.secret.display()
    );
    Ok(())
}

/// Creates `path`, refusing to overwrite: a key pair is not something to lose by a typo.
fn write_new_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(content)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(())
}

fn manifest_command(args: crate::args::ManifestArgs) -> Result<()> {
    if let Some(origin) = &args.origin {
        manifest::validate_source(origin)
            .map_err(|reason| anyhow::anyhow!("--source: {reason}"))?;
    }
    let now = Timestamp::now();
    let expires = args
        .expires_in
        .map(|days| now.plus_secs(days.saturating_mul(SECONDS_PER_DAY)));
    let manifest = authoring::manifest_of_directory(
        &args.directory,
        args.serial,
        now,
        expires,
        args.origin,
        &LimitsConfig::default(),
    )?;
    let text = manifest.render();
    match &args.output {
        Some(path) => {
            fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?
        }
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    if let Some(path) = &args.output {
        errln!(
            "wrote manifest of {} files, serial {}, to {}",
            manifest.entries.len(),
            manifest.serial,
            path.display()
        );
    }
    Ok(())
}

fn sign(args: crate::args::SignArgs) -> Result<()> {
    let key_text =
        fs::read(&args.key).with_context(|| format!("cannot read {}", args.key.display()))?;
    let key = SecretKey::parse(&key_text)
        .map_err(|error| anyhow::anyhow!("secret key {}: {error}", args.key.display()))?;
    let metadata = fs::metadata(&args.manifest)
        .with_context(|| format!("cannot read {}", args.manifest.display()))?;
    if metadata.len() > manifest::MANIFEST_BYTES_MAX as u64 {
        bail!(
            "{} is larger than {} bytes",
            args.manifest.display(),
            manifest::MANIFEST_BYTES_MAX
        );
    }
    let message = fs::read(&args.manifest)
        .with_context(|| format!("cannot read {}", args.manifest.display()))?;
    let output = args.output.unwrap_or_else(|| {
        let mut name = args.manifest.clone().into_os_string();
        name.push(".sig");
        PathBuf::from(name)
    });
    let key_name = args
        .key
        .file_name()
        .map(|name| name.to_string_lossy().replace(".sec", ".pub"))
        .unwrap_or_default();
    let signature = key.sign(&message);
    fs::write(
        &output,
        signature.to_file_text(&format!("verify with {key_name}")),
    )
    .with_context(|| format!("cannot write {}", output.display()))?;
    errln!(
        "signed {} with key {}: {}",
        args.manifest.display(),
        key.public_key().keynum(),
        output.display()
    );
    Ok(())
}

fn ingest_command(
    store_root: &Path,
    lock_timeout: Duration,
    args: crate::args::IngestArgs,
) -> Result<()> {
    let source_path = if args.source == Path::new("-") {
        args.source.clone()
    } else {
        absolute(&args.source)?
    };
    let source = Source::from_argument(&source_path);
    let mut store = open_writer(store_root, "ingest", lock_timeout)?;
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
    auto_gc(&mut store);
    Ok(())
}

fn print_ingest_report(report: &ingest::IngestReport, json: bool) -> Result<()> {
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
        "generation {} active: serial {}, {} files ({} written, {} linked), {agent}",
        report.generation,
        report.serial,
        report.files,
        report.files_written,
        report.files - report.files_written.min(report.files),
    );
    Ok(())
}

/// Garbage collection after a successful ingest, when `keep` is set. Its failure does not
/// undo the ingest; it is reported on standard error.
fn auto_gc(store: &mut Store) {
    let Some(keep) = store.config.keep else {
        return;
    };
    match gc::gc(store, keep, gc::Sweep::Removed) {
        Ok(report) if !report.removed.is_empty() => errln!(
            "polstore: gc: removed generation(s) {}",
            gc::list(&report.removed)
        ),
        Ok(_) => {}
        Err(error) => errln!("polstore: gc after ingest failed: {error}"),
    }
}

fn update_command(
    store_root: &Path,
    lock_timeout: Duration,
    args: crate::args::UpdateArgs,
) -> Result<()> {
    let mut store = open_writer(store_root, "update", lock_timeout)?;
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
        Ok(UpdateOutcome::Unchanged { generation, serial }) => {
            if args.json {
                outln!(
                    "{}",
                    serde_json::json!({"outcome": "unchanged", "generation": generation, "serial": serial})
                );
            } else {
                outln!("unchanged: the drop holds serial {serial}, generation {generation}");
            }
            Ok(())
        }
        Ok(UpdateOutcome::Ingested(report)) => {
            print_ingest_report(&report, args.json)?;
            auto_gc(&mut store);
            Ok(())
        }
        Ok(UpdateOutcome::Verified(report)) => print_verify_report(&report, args.json),
        Err(error) => {
            let stays = match store.state().ok().and_then(|state| state.active) {
                Some(active) if Some(active) == before => {
                    format!("; generation {active} stays active")
                }
                _ => String::new(),
            };
            Err(Failure::from_library(&error, &stays).into())
        }
    }
}

fn verify_command(
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
fn print_verify_report(report: &VerifyReport, json: bool) -> Result<()> {
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
        });
        outln!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for finding in &report.findings {
            outln!("DAMAGED  {finding}");
        }
        for change in &report.changes {
            outln!("REPAIRED {change}");
        }
        for alarm in &report.alarms {
            outln!("ALARM    {alarm}");
        }
        for finding in &report.remaining {
            outln!("LEFT     {finding}");
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

fn gc_command(store_root: &Path, lock_timeout: Duration, args: crate::args::GcArgs) -> Result<()> {
    let mut store = open_writer(store_root, "gc", lock_timeout)?;
    let keep = args.keep.or(store.config.keep).unwrap_or(gc::DEFAULT_KEEP);
    let report = gc::gc(&mut store, keep, gc::Sweep::All)?;
    if args.json {
        let json = serde_json::json!({
            "removed": report.removed,
            "in_use": report.in_use,
            "objects_removed": report.objects_removed,
            "bytes_removed": report.bytes_removed,
            "database_bytes_before": report.database_bytes_before,
            "database_bytes_after": report.database_bytes_after,
            "compacted": report.compacted,
        });
        outln!("{json}");
        return Ok(());
    }
    if report.removed.is_empty() {
        outln!(
            "nothing to remove (keeping the newest {keep}, the active one, the last good one before it and pinned ones)"
        );
    } else {
        outln!(
            "removed generation(s) {}, {} objects ({} bytes); database {} -> {} bytes",
            gc::list(&report.removed),
            report.objects_removed,
            report.bytes_removed,
            report.database_bytes_before,
            report.database_bytes_after
        );
    }
    if !report.in_use.is_empty() {
        outln!(
            "kept generation(s) {}: a running process is using them",
            gc::list(&report.in_use)
        );
    }
    Ok(())
}

fn pin_command(
    store_root: &Path,
    lock_timeout: Duration,
    generation: u64,
    pin: bool,
) -> Result<()> {
    let command = if pin { "pin" } else { "unpin" };
    let store = open_writer(store_root, command, lock_timeout)?;
    let changed = gc::set_pinned(&store, generation, pin)?;
    let what = if pin { "pinned" } else { "not pinned" };
    if changed {
        outln!("generation {generation} is now {what}");
    } else {
        outln!("generation {generation} was already {what}");
    }
    Ok(())
}

fn status(store_root: &Path, json: bool) -> Result<()> {
    let reader = open_reader(store_root)?;
    let found = status::status(&reader)?;
    let status = StatusJson {
        store: store_root.display().to_string(),
        view: found.view.display().to_string(),
        view_target: found
            .view_target
            .as_ref()
            .map(|target| target.display().to_string()),
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
        warnings: found.warnings.iter().map(warning_text).collect(),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    outln!("store        {}", status.store);
    outln!(
        "view         {} -> {}",
        status.view,
        status.view_target.as_deref().unwrap_or("(missing)")
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

fn warning_text(warning: &Warning) -> String {
    match warning {
        Warning::ViewElsewhere { view } => format!(
            "the view {} does not point at the active generation",
            view.display()
        ),
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
    }
}

fn list(store_root: &Path, json: bool) -> Result<()> {
    let reader = open_reader(store_root)?;
    let read = reader.read()?;
    let active = read.state()?.active;
    let generations: Vec<GenerationJson> = read
        .generations()?
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

fn log(store_root: &Path, args: crate::args::LogArgs) -> Result<()> {
    let reader = open_reader(store_root)?;
    let attempts: Vec<AttemptJson> = reader
        .read()?
        .attempts(args.count)?
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
                    for line in check.output.lines().take(20) {
                        writeln!(out, "        | {line}")?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn rollback_command(
    store_root: &Path,
    lock_timeout: Duration,
    generation: Option<u64>,
) -> Result<()> {
    let store = open_writer(store_root, "rollback", lock_timeout)?;
    let report = rollback::rollback(&store, generation)?;
    outln!(
        "generation {} active (serial {}), was {}",
        report.to,
        report.serial,
        report.from
    );
    Ok(())
}

fn show(store_root: &Path, generation: u64, path: &str) -> Result<()> {
    let reader = open_reader(store_root)?;
    let content = query::show(&reader.read()?, generation, path)?;
    std::io::stdout().lock().write_all(&content)?;
    Ok(())
}

fn diff(store_root: &Path, old: u64, new: u64) -> Result<()> {
    let reader = open_reader(store_root)?;
    let changes = query::diff(&reader.read()?, old, new)?;
    let mut out = std::io::stdout().lock();
    for change in &changes {
        match change {
            Change::Added(entry) => writeln!(out, "A {}", entry.path)?,
            Change::Removed(entry) => writeln!(out, "D {}", entry.path)?,
            Change::Modified { old, new } if old.hash == new.hash => {
                writeln!(
                    out,
                    "M {} (mode {:04o} -> {:04o})",
                    new.path, old.mode, new.mode
                )?;
            }
            Change::Modified { new, .. } => writeln!(out, "M {}", new.path)?,
        }
    }
    Ok(())
}
