//! `init [--adopt]`.

use super::*;
use polstore::ops::init::{self, InitRequest};
use polstore::store::protect::Protection;

pub(super) fn init(store_root: &Path, args: crate::args::InitArgs) -> Result<()> {
    let (views, keys, config_text, accepts_unsigned) = match &args.config {
        Some(path) => {
            let (config, text) = polstore::config::Config::load_with_text(path)?;
            let accepts_unsigned = !config.trust.require_signature;
            (
                config.views(),
                config.trust.keys.clone(),
                Some(text),
                accepts_unsigned,
            )
        }
        None => {
            let keys = args
                .trust
                .iter()
                .map(|key| absolute(key))
                .collect::<Result<Vec<_>>>()?;
            let views = parse_views(&args.view)?;
            let trust_root = args.trust_root.as_deref().map(absolute).transpose()?;
            let accepts_unsigned = keys.is_empty() && trust_root.is_none();
            // With a root of trust or a repository, the configuration says so; checked as
            // any configuration is before the store is made.
            let text = (trust_root.is_some() || args.url.is_some()).then(|| {
                polstore::config::default_config_text_with(
                    &views,
                    &keys,
                    trust_root.as_deref(),
                    args.url.as_deref(),
                )
            });
            if let Some(text) = &text {
                polstore::config::Config::parse(text)
                    .map_err(|error| anyhow::anyhow!("{error}"))?;
            }
            (views, keys, text, accepts_unsigned)
        }
    };
    let mut progress = ProgressLine::new();
    let report = init::init(InitRequest {
        root: store_root,
        views: &views,
        keys: &keys,
        adopt: args.adopt,
        config_text,
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
    if accepts_unsigned {
        outln!(
            "no trusted key given: unsigned policy will be accepted (trust.require_signature = false)"
        );
    }
    match &report.protection {
        Protection::ReadOnly => outln!(
            "the view reads the store through {}, mounted read-only: writes through it fail",
            store_root.join("readonly").display()
        ),
        Protection::Off => outln!(
            "the view is not read-only (protect_view = false): writes through it reach the store"
        ),
        Protection::Missing(reason) => errln!(
            "polstore: warning: the view is not read-only: {reason}; writes through it reach the store"
        ),
    }
    if let Some(adoption) = &report.adopted {
        match adoption.views.as_slice() {
            [(directory, target)] if views.first().is_some_and(|view| view.name.is_none()) => {
                outln!(
                    "adopted {} as generation {} (unsigned, not checked); it is now a symlink to {}",
                    directory.display(),
                    adoption.generation,
                    target.display()
                );
            }
            adopted => {
                for ((directory, target), view) in adopted.iter().zip(&views) {
                    let name = view.name.as_deref().unwrap_or_default();
                    let generation = adoption.generation;
                    let what = if report.missing.contains(directory) {
                        format!(
                            "{} did not exist: {name}/ of generation {generation} is empty (unsigned, not checked)",
                            directory.display()
                        )
                    } else if report.empty_directories.contains(directory) {
                        format!(
                            "adopted the empty directory {} as {name}/ of generation {generation} (unsigned, not checked)",
                            directory.display()
                        )
                    } else {
                        format!(
                            "adopted {} as {name}/ of generation {generation} (unsigned, not checked)",
                            directory.display()
                        )
                    };
                    outln!("{what}; it is now a symlink to {}", target.display());
                }
            }
        }
        return Ok(());
    }
    let nothing = if args.adopt { "nothing to adopt: " } else { "" };
    for view in &report.empty_directories {
        outln!(
            "{nothing}{} is an empty directory; the first ingest replaces it with the view",
            view.display()
        );
    }
    if args.adopt {
        for view in &report.missing {
            outln!(
                "{nothing}{} does not exist; the first ingest puts the view there",
                view.display()
            );
        }
    }
    Ok(())
}

/// The views of `--view`: one `PATH`, or `NAME=PATH` each (NAME as in `[views]`).
fn parse_views(values: &[String]) -> Result<Vec<polstore::config::View>> {
    let mut views = Vec::new();
    for value in values {
        let named = value
            .split_once('=')
            .filter(|(name, _)| polstore::config::is_view_name(name));
        views.push(match named {
            Some((name, path)) => polstore::config::View {
                name: Some(name.to_string()),
                path: absolute(Path::new(path))?,
            },
            None => polstore::config::View {
                name: None,
                path: absolute(Path::new(value))?,
            },
        });
    }
    let unnamed = views.iter().filter(|view| view.name.is_none()).count();
    if unnamed > 0 && views.len() > 1 {
        return Err(polstore::error::Error::Refused(
            "--view PATH stands alone; for several views give each as --view NAME=PATH".into(),
        )
        .into());
    }
    Ok(views)
}
