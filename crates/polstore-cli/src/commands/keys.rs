//! `keygen`, `manifest`, `sign`: the server side.

use super::*;
use polstore::candidate::authoring;
use polstore::config::LimitsConfig;
use polstore::format::manifest;
use polstore::format::signify::{SecretKey, Signature as SignatureFile, SignifyError};
use polstore::format::timestamp::Timestamp;

pub(super) fn keygen(args: crate::args::KeygenArgs) -> Result<()> {
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
pub(super) fn write_new_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
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

pub(super) fn manifest_command(args: crate::args::ManifestArgs) -> Result<()> {
    if let Some(origin) = &args.origin {
        manifest::validate_source(origin)
            .map_err(|reason| anyhow::anyhow!("--source: {reason}"))?;
    }
    let now = Timestamp::now();
    let expires = args
        .expires_in
        .map(|days| now.plus_secs(days.saturating_mul(SECONDS_PER_DAY)));
    let limits = LimitsConfig::default();
    let manifest = match &args.directory {
        Some(directory) => authoring::manifest_of_directory(
            directory,
            args.serial,
            now,
            expires,
            args.origin,
            &limits,
        )?,
        None => {
            let parts = args
                .parts
                .iter()
                .map(|argument| {
                    polstore::config::Part::parse_argument(argument)
                        .map_err(|reason| anyhow::anyhow!("--part {reason}"))
                })
                .collect::<Result<Vec<_>>>()?;
            authoring::manifest_of_parts(&parts, args.serial, now, expires, args.origin, &limits)?
        }
    };
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

pub(super) fn sign(args: crate::args::SignArgs) -> Result<()> {
    let key_text =
        fs::read(&args.key).with_context(|| format!("cannot read {}", args.key.display()))?;
    let key = SecretKey::parse(&key_text).map_err(|error| {
        let advice = match error {
            SignifyError::EncryptedSecretKey => " or with 'polstore keygen'",
            _ => "",
        };
        anyhow::anyhow!("secret key {}: {error}{advice}", args.key.display())
    })?;
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
    let mut text = String::new();
    if args.append {
        let keynum = *key.public_key().keynum();
        match polstore::fs::read::read_regular(
            &output,
            polstore::format::signatures::SIGNATURE_LIST_BYTES_MAX,
        ) {
            Ok(existing) => {
                polstore::format::signatures::parse_list(&existing)
                    .map_err(|error| anyhow::anyhow!("{}: {error}", output.display()))?;
                // Each existing signature as it was (its own comment), but this key's.
                let mut rest = existing.as_slice();
                while !rest.is_empty() {
                    let end = rest
                        .iter()
                        .enumerate()
                        .filter(|(_, byte)| **byte == b'\n')
                        .nth(1)
                        .map_or(rest.len(), |(index, _)| index + 1);
                    let one = &rest[..end];
                    let same_key = SignatureFile::parse(one)
                        .is_ok_and(|signature| *signature.keynum() == keynum);
                    if !same_key {
                        text.push_str(&String::from_utf8_lossy(one));
                    }
                    rest = &rest[end..];
                }
            }
            Err(polstore::fs::read::ReadError::NotFound) => {}
            Err(error) => bail!("{}: {error}", output.display()),
        }
    }
    text.push_str(&signature.to_file_text(&format!("verify with {key_name}")));
    fs::write(&output, text).with_context(|| format!("cannot write {}", output.display()))?;
    errln!(
        "signed {} with key {}: {}",
        args.manifest.display(),
        key.public_key().keynum(),
        output.display()
    );
    Ok(())
}
