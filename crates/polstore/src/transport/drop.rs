//! The drop place: a directory, tarball, `.tar.gz` or `.tar.bz2` that any transport fills,
//! and the fetch command that fills it (`[fetch]` in `polstore.toml`).

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::candidate::source::{self, Item, Source};
use crate::config::{Config, FetchConfig, LimitsConfig};
use crate::error::{Check, Error, Rejection, Result};
use crate::format::manifest::{Hash, MANIFEST_BYTES_MAX};
use crate::format::policy_path::MANIFEST_NAME;
use crate::fs::read;
use crate::process;
use crate::transport::ObjectSource;

/// The drop place of a store's configuration.
pub struct DropPlace<'a> {
    fetch: &'a FetchConfig,
    limits: &'a LimitsConfig,
    /// Where a CFEngine program the fetch command names bare is found.
    bin_dirs: &'a [PathBuf],
    /// Where the fetch command's output goes while it runs.
    output_file: PathBuf,
}

impl<'a> DropPlace<'a> {
    pub fn new(config: &'a Config, staging: PathBuf) -> DropPlace<'a> {
        DropPlace {
            fetch: &config.fetch,
            limits: &config.limits,
            bin_dirs: &config.cfengine.bin_dirs,
            output_file: staging.join("fetch-output"),
        }
    }

    /// The drop place as a source, when it is configured and something is there.
    pub fn source(&self) -> Option<Source> {
        let drop = self.fetch.drop.as_ref()?;
        fs::symlink_metadata(drop).ok()?;
        Some(Source::from_argument(drop, &self.fetch.parts))
    }

    /// Runs the configured fetch command, if any. `force`: fetch everything again
    /// (`{force}` = 1, `POLSTORE_FORCE=1`).
    pub fn fetch(&self, force: bool) -> Result<()> {
        let fetch = self.fetch;
        if fetch.command.is_empty() {
            return Ok(());
        }
        let drop = fetch
            .drop
            .as_ref()
            .map(|drop| drop.display().to_string())
            .unwrap_or_default();
        let force_text = if force { "1" } else { "0" };
        let command = crate::programs::resolve(&fetch.command, self.bin_dirs)
            .map_err(|error| Error::Refused(format!("the fetch command: {error}")))?;
        let argv: Vec<String> = command
            .iter()
            .map(|argument| {
                argument
                    .replace("{drop}", &drop)
                    .replace("{force}", force_text)
            })
            .collect();
        let environment = [
            ("POLSTORE_DROP", drop.clone()),
            ("POLSTORE_FORCE", force_text.to_string()),
        ];
        let timeout = Duration::from_secs(fetch.timeout_secs);
        let outcome = process::run_bounded(&argv, &environment, &self.output_file, timeout);
        let _ = fs::remove_file(&self.output_file);
        if outcome.succeeded() {
            return Ok(());
        }
        let mut reason = format!(
            "the fetch command {} {}",
            argv[0],
            outcome.describe(timeout)
        );
        if let Some(line) = outcome.last_line() {
            reason.push_str(": ");
            reason.push_str(&crate::format::text::one_line(
                line,
                crate::format::text::QUOTED_CHARS_MAX,
            ));
        }
        Err(Error::Refused(reason))
    }
}

impl ObjectSource for DropPlace<'_> {
    fn describe(&self) -> String {
        match self.source() {
            Some(source) => source.describe(),
            None => "(no drop place)".to_string(),
        }
    }

    /// A directory's `polstore.manifest` is read alone; an archive is read through.
    fn manifest(&self) -> Result<Option<Vec<u8>>> {
        let Some(source) = self.source() else {
            return Ok(None);
        };
        if let Source::Directory(directory) | Source::Parts { directory, .. } = &source {
            return match read::read_regular(&directory.join(MANIFEST_NAME), MANIFEST_BYTES_MAX) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(read::ReadError::NotFound) => Ok(None),
                Err(read::ReadError::Io(error)) => Err(Error::io(
                    "cannot read",
                    directory.join(MANIFEST_NAME),
                )(error)),
                Err(_) => Err(Rejection::new(
                    Check::Source,
                    Some(MANIFEST_NAME),
                    "is not a regular file of at most 32 MiB",
                )
                .into()),
            };
        }
        let mut manifest = None;
        source::read(&source, self.limits, &mut |item| {
            if let Item::Manifest(bytes) = item {
                manifest = Some(bytes);
            }
            Ok(())
        })?;
        Ok(manifest)
    }

    fn objects(
        &self,
        wanted: &HashSet<Hash>,
        found: &mut dyn FnMut(Hash, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let Some(source) = self.source() else {
            return Ok(());
        };
        let mut given = HashSet::new();
        source::read(&source, self.limits, &mut |item| {
            if let Item::File { content, .. } = item {
                let hash = Hash::of(&content);
                if wanted.contains(&hash) && given.insert(hash) {
                    found(hash, content)?;
                }
            }
            Ok(())
        })
    }
}
