//! `root create`, `root sign`, `root show`, `root publish`: the root of trust, server side.

use super::*;
use polstore::format::root::{Role, Root, SignedRoot};
use polstore::format::signify::PublicKey;
use polstore::format::timestamp::Timestamp;
use polstore::ops::publish::read_secret_key;

pub(super) fn root_command(
    lock_timeout: Duration,
    command: crate::args::RootCommand,
) -> Result<()> {
    use crate::args::RootCommand;
    match command {
        RootCommand::Create(args) => create(args),
        RootCommand::Sign(args) => sign(args),
        RootCommand::Show(args) => show(args),
        RootCommand::Publish(args) => {
            let text = read_root_file(&args.file)?;
            let version = polstore::ops::repo::publish_root(
                &args.repo,
                &text,
                lock_timeout,
                &mut |holder| {
                    errln!(
                        "polstore: waiting for the lock of {}, held by {holder}",
                        args.repo.display()
                    )
                },
            )?;
            outln!(
                "root version {version} published in {}",
                args.repo.display()
            );
            Ok(())
        }
    }
}

fn read_public_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>> {
    paths
        .iter()
        .map(|path| {
            let text = polstore::fs::read::read_regular(
                path,
                polstore::format::signify::KEY_FILE_BYTES_MAX,
            )
            .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
            PublicKey::parse(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
        })
        .collect()
}

fn read_root_file(path: &Path) -> Result<Vec<u8>> {
    polstore::fs::read::read_regular(path, polstore::format::root::ROOT_FILE_BYTES_MAX)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
}

fn create(args: crate::args::RootCreateArgs) -> Result<()> {
    let expires = Timestamp::now().plus_secs(args.expires_in.saturating_mul(SECONDS_PER_DAY));
    let root = Root::new(
        args.version,
        expires,
        [
            (args.root_threshold, read_public_keys(&args.root_key)?),
            (
                args.manifest_threshold,
                read_public_keys(&args.manifest_key)?,
            ),
            (args.head_threshold, read_public_keys(&args.head_key)?),
        ],
    )
    .map_err(|error| anyhow::anyhow!("cannot make the root: {error}"))?;
    super::keys::write_new_file(&args.output, root.render().as_bytes(), 0o644)?;
    errln!(
        "wrote root version {} (expires {expires}) to {}; it needs {} root signatures ('polstore root sign')",
        root.version,
        args.output.display(),
        root.role(Role::Root).threshold
    );
    Ok(())
}

fn sign(args: crate::args::RootSignArgs) -> Result<()> {
    let key = read_secret_key(&absolute(&args.key)?)?;
    let text = read_root_file(&args.file)?;
    let mut signed = SignedRoot::parse(&text)
        .map_err(|error| anyhow::anyhow!("{}: {error}", args.file.display()))?;
    let keynum = *key.public_key().keynum();
    signed
        .signatures
        .retain(|signature| *signature.keynum() != keynum);
    if signed.signatures.len() >= polstore::format::signatures::SIGNATURES_MAX {
        bail!(
            "{}: already holds {} signatures, the most a root file may have: nodes would refuse it whole",
            args.file.display(),
            polstore::format::signatures::SIGNATURES_MAX
        );
    }
    signed.signatures.push(key.sign(&signed.text));
    let bytes = signed.render();
    if bytes.len() > polstore::format::root::ROOT_FILE_BYTES_MAX {
        bail!("{}: too many signatures", args.file.display());
    }
    polstore::fs::durable::replace_file_synced(&args.file, &bytes, 0o644)
        .with_context(|| format!("cannot replace {}", args.file.display()))?;
    errln!(
        "signed root version {} with key {keynum}: {} signatures",
        signed.root.version,
        signed.signatures.len()
    );
    Ok(())
}

fn show(args: crate::args::RootShowArgs) -> Result<()> {
    let text = read_root_file(&args.file)?;
    let signed = SignedRoot::parse(&text)
        .map_err(|error| anyhow::anyhow!("{}: {error}", args.file.display()))?;
    let root = &signed.root;
    outln!(
        "root version {}, expires {}",
        root.version,
        root.expires.map_or("never".into(), |time| time.to_string())
    );
    for role in Role::ALL {
        let keys = root.role(role);
        let names: Vec<String> = keys.keys.iter().map(ToString::to_string).collect();
        outln!(
            "  {role}: {} of {}: {}",
            keys.threshold,
            keys.keys.len(),
            names.join(" ")
        );
    }
    let signers: Vec<String> = signed
        .signatures
        .iter()
        .map(|signature| signature.keynum().to_string())
        .collect();
    outln!(
        "  signed by: {}",
        if signers.is_empty() {
            "nobody".to_string()
        } else {
            signers.join(" ")
        }
    );
    match signed.check_self() {
        Ok(_) => outln!("  its own root threshold is met"),
        Err(error) => outln!("  its own root threshold is not met: {error}"),
    }
    Ok(())
}
