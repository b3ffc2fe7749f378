//! Command-line arguments, as clap parses them. Resolved into library calls in
//! `commands/`; nothing here touches the store.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A transactional, content-addressed policy store for CFEngine and Rudder nodes.
///
/// New policy arrives by any transport into a drop place; `polstore ingest` checks it
/// (signature, checksums, freshness, cf-promises, your own checks) and only then makes it
/// the active generation, switching the agent's view atomically. Exit codes: 0 success,
/// 1 error, 2 usage, 3 candidate rejected by a check, 4 damage found (verify) or left
/// unrepaired.
#[derive(Debug, Parser)]
#[command(name = "polstore", version, max_term_width = 100)]
pub struct Cli {
    /// The store directory.
    #[arg(
        long,
        global = true,
        env = "POLSTORE_STORE",
        default_value = "/var/lib/polstore"
    )]
    pub store: PathBuf,

    /// How long to wait for another polstore command that holds the store, in seconds.
    /// 0 fails at once.
    #[arg(long, global = true, default_value_t = 600, value_name = "SECS")]
    pub lock_timeout: u64,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a store, and optionally adopt the policies already in the view path.
    Init(InitArgs),
    /// Write a new signify key pair (unencrypted, like `signify-openbsd -G -n`).
    Keygen(KeygenArgs),
    /// Write the manifest of a policy tree (server side).
    Manifest(ManifestArgs),
    /// Sign a manifest with a signify secret key (server side).
    Sign(SignArgs),
    /// Make, sign and publish a root of trust: which keys sign roots, manifests and heads,
    /// how many of each must, and until when (see repo-format.md § Root of trust).
    #[command(subcommand)]
    Root(RootCommand),
    /// Publish a signed snapshot of a policy tree into a publication directory, switched
    /// in atomically (hub side).
    ///
    /// SRC (e.g. the hub's masterfiles) is copied into OUT/versions/SERIAL without
    /// following a symlink (a symlink, fifo, socket or device in SRC is refused), with
    /// modes normalised: directories 0755, files 0644, or 0755 when their owner may
    /// execute them. Left out: cf_promises_validated, polstore.manifest and
    /// polstore.manifest.sig at the top, .git, .hg and .svn anywhere. The manifest and
    /// signature are made from the copy. Then OUT/current is switched to it, then OUT/head
    /// (the serial, one line) is replaced: a node that copies head first, then
    /// versions/SERIAL, never sees half a publication. Content identical to the current
    /// publication's publishes nothing, unless --force or --serial is given or the current
    /// one is past half of its validity.
    Publish(PublishArgs),
    /// Check a candidate policy and, if every check passes, make it the active generation.
    Ingest(IngestArgs),
    /// Run the fetch command, then ingest what it dropped (for cron or a systemd timer).
    Update(UpdateArgs),
    /// Check every object, generation directory, the view, the database and the parse
    /// check; with --repair, put right what is wrong from verified data.
    Verify(VerifyArgs),
    /// Remove generations beyond `keep` (never the active one, the last good one before
    /// it, or pinned ones) and their objects, and give the space back.
    Gc(GcArgs),
    /// Keep a generation through garbage collection.
    Pin(GenerationArgs),
    /// Let garbage collection remove a generation again.
    Unpin(GenerationArgs),
    /// Show the active generation and the store's state.
    Status(JsonArgs),
    /// List the kept generations.
    List(JsonArgs),
    /// Show the history of attempts: ingests, rejections, rollbacks.
    Log(LogArgs),
    /// Make an earlier generation active again.
    Rollback(RollbackArgs),
    /// Print one file of a generation, verified against its hash.
    Show(ShowArgs),
    /// List the files that differ between two generations.
    Diff(DiffArgs),
    /// Put the read-only mount the view reads through in place (at boot, or after
    /// `unmount`); every writing command does it too.
    Mount,
    /// Take the read-only mount away (before moving or removing the store). The next
    /// writing command puts it back unless polstore.toml says `protect_view = false`.
    Unmount,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The path the agent reads its policy from (e.g. /var/cfengine/inputs). polstore makes
    /// it a symlink to the active generation. Several views, NAME=PATH each, repeated
    /// (e.g. --view inputs=/var/rudder/cfengine-community/inputs --view
    /// ncf=/var/rudder/ncf/common): each shows the top-level directory NAME of every
    /// generation, and all switch together.
    #[arg(
        long,
        value_name = "PATH|NAME=PATH",
        required_unless_present = "config"
    )]
    pub view: Vec<String>,
    /// A signify public key whose signatures are trusted. Repeat for several. Without any,
    /// the store accepts unsigned policy (trust.require_signature = false).
    #[arg(long = "trust", value_name = "PUBKEY", conflicts_with = "config")]
    pub trust: Vec<PathBuf>,
    /// Trust this root of trust (`polstore root create`) instead of keys: trust.root, and
    /// signatures required.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "trust"])]
    pub trust_root: Option<PathBuf>,
    /// Pull from this repository (`polstore publish --repo`) with `polstore update`:
    /// fetch.url.
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    pub url: Option<String>,
    /// Write this configuration as the store's polstore.toml instead of the default one;
    /// it names the views and trusted keys (e.g. integrations/rudder/node/polstore.toml).
    #[arg(long, value_name = "FILE", conflicts_with = "view")]
    pub config: Option<PathBuf>,
    /// Take the policy directory already at the view path in as generation 1 (unsigned,
    /// not checked) and replace it by the view symlink without a moment where it is missing.
    #[arg(long)]
    pub adopt: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the public key.
    #[arg(long, value_name = "FILE")]
    pub public: PathBuf,
    /// Where to write the secret key (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub secret: PathBuf,
}

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The policy tree.
    #[arg(required_unless_present = "parts", conflicts_with = "parts")]
    pub directory: Option<PathBuf>,
    /// Instead of a tree: an archive whose directory FROM (empty: all of it) is the
    /// candidate's TO, as a node's [[fetch.parts]] says. Repeat for each archive.
    #[arg(long = "part", value_name = "TO:FROM:ARCHIVE")]
    pub parts: Vec<String>,
    /// The serial: must be higher than any the nodes accepted before.
    #[arg(long)]
    pub serial: u64,
    /// Make the manifest expire this many days from now.
    #[arg(long, value_name = "DAYS")]
    pub expires_in: Option<u64>,
    /// A free-text `source` header (e.g. the server's name).
    #[arg(long = "source", value_name = "TEXT")]
    pub origin: Option<String>,
    /// Where to write the manifest; standard output if omitted.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The signify secret key.
    #[arg(long, value_name = "SECRET")]
    pub key: PathBuf,
    /// The manifest to sign.
    pub manifest: PathBuf,
    /// Where to write the signature; MANIFEST.sig if omitted.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Add the signature to those already in the signature file (for a manifest that a
    /// root's threshold wants signed by several keys), instead of replacing it.
    #[arg(long)]
    pub append: bool,
}

#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Write a new, unsigned root: the keys of each role and their thresholds.
    Create(RootCreateArgs),
    /// Add a signature to a root file (in place).
    Sign(RootSignArgs),
    /// Show a root file: version, expiry, roles, and who signed it.
    Show(RootShowArgs),
    /// Add a root to a repository: version 1, signed by its own root threshold, or the next
    /// version, signed by a threshold of the previous root's root keys and of its own.
    Publish(RootPublishArgs),
}

#[derive(Debug, Args)]
pub struct RootCreateArgs {
    /// Where to write it (refused if it exists).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Its version: 1 for the first root, then one more for each rotation.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub version: u64,
    /// Make it expire this many days from now.
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..))]
    pub expires_in: u64,
    /// A public key of the root role (signs the next root), repeated.
    #[arg(long, value_name = "PUB", required = true)]
    pub root_key: Vec<PathBuf>,
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub root_threshold: usize,
    /// A public key of the manifest role (signs policy), repeated.
    #[arg(long, value_name = "PUB", required = true)]
    pub manifest_key: Vec<PathBuf>,
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub manifest_threshold: usize,
    /// A public key of the head role (signs heads, the hub's online key), repeated.
    #[arg(long, value_name = "PUB", required = true)]
    pub head_key: Vec<PathBuf>,
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub head_threshold: usize,
}

#[derive(Debug, Args)]
pub struct RootSignArgs {
    /// The root file.
    pub file: PathBuf,
    /// The signify secret key.
    #[arg(long, value_name = "SECRET")]
    pub key: PathBuf,
}

#[derive(Debug, Args)]
pub struct RootShowArgs {
    /// The root file.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RootPublishArgs {
    /// The root file.
    pub file: PathBuf,
    /// The repository.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The policy tree, e.g. /var/cfengine/masterfiles.
    #[arg(value_name = "SRC")]
    pub source: PathBuf,
    /// The publication directory (made with mode 0700 if missing).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "repo",
        conflicts_with = "repo"
    )]
    pub out: Option<PathBuf>,
    /// Publish into a repository that nodes pull from over HTTP (`[fetch] url`) instead:
    /// content-addressed objects, the manifest and deltas from the node's earlier ones,
    /// then its signed head, last (made with mode 0755 if missing; see repo-format.md).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// The signify secret key: a regular file of this user's, mode 0600 or stricter.
    /// With --repo, repeated: each signs the manifest (a root may need several).
    #[arg(long, value_name = "SECRET", required = true)]
    pub key: Vec<PathBuf>,
    /// With --repo: the keys that sign the head, repeated; left out, those of --key.
    #[arg(long, value_name = "SECRET", requires = "repo")]
    pub head_key: Vec<PathBuf>,
    /// With --repo: the node (or group) whose head this is (heads/NODE).
    #[arg(long, value_name = "ID", requires = "repo", default_value = polstore::config::DEFAULT_NODE)]
    pub node: String,
    /// With --repo: make the head expire this many seconds from now. A node refuses an
    /// expired head, so publish must run again before then (the hub's timer).
    #[arg(
        long,
        value_name = "SECS",
        requires = "repo",
        default_value_t = polstore::ops::repo::HEAD_EXPIRES_IN_SECS_DEFAULT,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub head_expires_in: u64,
    /// The serial; must be above every publication in OUT. Default: the current UNIX
    /// time in seconds, or one above the newest publication if that is higher.
    #[arg(long, value_name = "N")]
    pub serial: Option<u64>,
    /// Make the publication expire this many days from now.
    #[arg(
        long,
        value_name = "DAYS",
        default_value_t = polstore::ops::publish::EXPIRES_IN_DAYS_DEFAULT,
        value_parser = clap::value_parser!(u64).range(1..),
        conflicts_with = "no_expiry"
    )]
    pub expires_in: u64,
    /// Publish a manifest that never expires.
    #[arg(long)]
    pub no_expiry: bool,
    /// A free-text `source` header (e.g. the hub's name).
    #[arg(long = "source", value_name = "TEXT")]
    pub origin: Option<String>,
    /// How many publications to keep in OUT/versions, the new one included.
    #[arg(
        long,
        value_name = "N",
        default_value_t = polstore::ops::publish::KEEP_DEFAULT as u64,
        value_parser = clap::value_parser!(u64).range(1..=1000)
    )]
    pub keep: u64,
    /// Publish even when the content is the current publication's.
    #[arg(long)]
    pub force: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// A directory, a .tar, .tar.gz or .tar.bz2 file (the compression is told by its first
    /// bytes), or - for a tar stream on standard input.
    pub source: PathBuf,
    /// The manifest, if it does not travel in the source as polstore.manifest.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// The signature, if it does not travel in the source as polstore.manifest.sig.
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Fetch everything again (the fetch command gets {force} = 1 and POLSTORE_FORCE=1),
    /// re-verify every byte, and repair the store and view from it even when the serial
    /// is unchanged.
    #[arg(long)]
    pub force: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Put right what is found: from verified data only, reporting every change.
    #[arg(long)]
    pub repair: bool,
    /// Print JSON for monitoring instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// How many of the newest generations to keep; `keep` from polstore.toml if omitted
    /// (10 if that is not set either).
    #[arg(long)]
    pub keep: Option<u32>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GenerationArgs {
    pub generation: u64,
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON for monitoring instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Print JSON for monitoring instead of text.
    #[arg(long)]
    pub json: bool,
    /// How many of the newest attempts to show.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub count: usize,
    /// Show each check's outcome too.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The generation to activate; the newest good one before the active one if omitted.
    pub generation: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub generation: u64,
    /// The file's path inside the policy tree.
    pub path: String,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    pub old: u64,
    pub new: u64,
}
