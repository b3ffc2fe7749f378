//! `publish`: the hub side, a signed snapshot of a policy tree switched into a
//! publication directory.

use super::*;
use polstore::format::manifest;
use polstore::ops::publish::{self, PublishOutcome, PublishProgress, PublishRequest};
use polstore::ops::repo::{self, RepoPublishRequest};

fn publish_repo_command(
    lock_timeout: Duration,
    source: &Path,
    repo_dir: &Path,
    args: &crate::args::PublishArgs,
) -> Result<()> {
    // Every key read and checked before the repository is touched.
    let read_keys = |paths: &[PathBuf]| -> Result<Vec<_>> {
        paths
            .iter()
            .map(|path| Ok(publish::read_secret_key(&absolute(path)?)?))
            .collect()
    };
    let keys = read_keys(&args.key)?;
    let head_keys = read_keys(&args.head_key)?;
    let mut progress = ProgressLine::new();
    let report = repo::publish_to_repo(RepoPublishRequest {
        source,
        repo: repo_dir,
        keys: &keys,
        head_keys: &head_keys,
        node: &args.node,
        serial: args.serial,
        expires_in_secs: (!args.no_expiry).then(|| args.expires_in.saturating_mul(SECONDS_PER_DAY)),
        head_expires_in_secs: args.head_expires_in,
        origin: args.origin.clone(),
        force: args.force,
        lock_wait: lock_timeout,
        on_wait: &mut |holder| {
            errln!(
                "polstore: waiting for the lock of {}, held by {holder}",
                repo_dir.display()
            )
        },
        progress: &mut |event| match event {
            PublishProgress::Copying { files, bytes } => progress.show(
                &format!("reading: {files} files, {:.1} MB", bytes as f64 / 1e6),
                true,
            ),
            PublishProgress::Signing => progress.show("signing", false),
            PublishProgress::Switching => progress.show("writing the head", false),
        },
    });
    progress.clear();
    let report = report?;
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "outcome": if report.new_manifest { "published" } else { "refreshed" },
                "node": report.node,
                "serial": report.serial,
                "files": report.files,
                "bytes": report.bytes,
                "objects_written": report.objects_written,
                "compressed_bytes_written": report.compressed_bytes_written,
                "deltas_written": report.deltas_written,
                "root_version": report.root_version,
                "head_expires": report.head_expires.to_string(),
            })
        );
    } else if report.new_manifest {
        outln!(
            "published serial {} for node {}: {} files, {} new objects ({} bytes compressed), {} deltas; head expires {}",
            report.serial,
            report.node,
            report.files,
            report.objects_written,
            report.compressed_bytes_written,
            report.deltas_written,
            report.head_expires
        );
    } else {
        outln!(
            "unchanged: serial {} for node {} signed anew; head expires {}",
            report.serial,
            report.node,
            report.head_expires
        );
    }
    Ok(())
}

pub(super) fn publish_command(
    lock_timeout: Duration,
    args: crate::args::PublishArgs,
) -> Result<()> {
    if let Some(origin) = &args.origin {
        manifest::validate_source(origin)
            .map_err(|reason| anyhow::anyhow!("--source: {reason}"))?;
    }
    let source = absolute(&args.source)?;
    if let Some(repo) = &args.repo {
        return publish_repo_command(lock_timeout, &source, &absolute(repo)?, &args);
    }
    let out = absolute(
        args.out
            .as_ref()
            .expect("clap requires --out without --repo"),
    )?;
    let [key_path] = args.key.as_slice() else {
        bail!("--out takes one --key; several keys sign only with --repo");
    };
    // Read and checked before OUT is touched: a bad key changes nothing.
    let key_path = absolute(key_path)?;
    let key = publish::read_secret_key(&key_path)?;
    let key_comment = format!(
        "verify with {}",
        key_path
            .file_name()
            .map(|name| name.to_string_lossy().replace(".sec", ".pub"))
            .unwrap_or_default()
    );
    let mut progress = ProgressLine::new();
    let outcome = publish::publish(PublishRequest {
        source: &source,
        out: &out,
        key: &key,
        key_comment,
        serial: args.serial,
        expires_in_secs: (!args.no_expiry).then(|| args.expires_in.saturating_mul(SECONDS_PER_DAY)),
        origin: args.origin,
        keep: args.keep as usize,
        force: args.force,
        lock_wait: lock_timeout,
        on_wait: &mut |holder| {
            errln!(
                "polstore: waiting for the lock of {}, held by {holder}",
                out.display()
            )
        },
        progress: &mut |event| match event {
            PublishProgress::Copying { files, bytes } => progress.show(
                &format!("copying: {files} files, {:.1} MB", bytes as f64 / 1e6),
                true,
            ),
            PublishProgress::Signing => progress.show("signing the snapshot", false),
            PublishProgress::Switching => progress.show("switching the publication in", false),
        },
    });
    progress.clear();
    match outcome? {
        PublishOutcome::Published(report) => {
            if args.json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "outcome": "published",
                        "serial": report.serial,
                        "files": report.files,
                        "bytes": report.bytes,
                        "path": report.path,
                        "removed": report.removed,
                    })
                );
            } else {
                let removed = if report.removed.is_empty() {
                    String::new()
                } else {
                    let serials: Vec<String> = report.removed.iter().map(u64::to_string).collect();
                    format!("; removed serial {}", serials.join(", "))
                };
                outln!(
                    "published serial {}: {} files, {} bytes, in {}{removed}",
                    report.serial,
                    report.files,
                    report.bytes,
                    report.path.display()
                );
            }
        }
        PublishOutcome::Unchanged { serial, path } => {
            if args.json {
                outln!(
                    "{}",
                    serde_json::json!({"outcome": "unchanged", "serial": serial, "path": path})
                );
            } else {
                outln!(
                    "unchanged: {} already publishes this content as serial {serial}",
                    path.display()
                );
            }
        }
    }
    Ok(())
}
