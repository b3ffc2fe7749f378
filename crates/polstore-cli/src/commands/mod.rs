//! One function per command, a file per group of commands: resolve arguments, call the
//! library, print the outcome. `exit.rs` turns what they return into exit codes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use polstore::store::{LockWait, Recovery, Store, StoreReader};

use crate::args::{Cli, Command};
use crate::exit::Failure;
use crate::output::{
    AttemptJson, GenerationJson, HealthJson, ProgressLine, ProtectionJson, StatusJson, ViewJson,
    state_name, time,
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

mod gc;
mod ingest;
mod init;
mod keys;
mod mount;
mod publish;
mod query;
mod root;
mod status;
mod verify;

use gc::{gc_command, pin_command};
use ingest::{ingest_command, update_command};
use init::init;
use keys::{keygen, manifest_command, sign};
use publish::publish_command;
use query::{diff, rollback_command, show};
use status::{list, log, status};
use verify::verify_command;

pub fn run(cli: Cli) -> Result<()> {
    let store = absolute(&cli.store)?;
    let lock_timeout = Duration::from_secs(cli.lock_timeout);
    match cli.command {
        Command::Init(args) => init(&store, args),
        Command::Keygen(args) => keygen(args),
        Command::Manifest(args) => manifest_command(args),
        Command::Sign(args) => sign(args),
        Command::Root(command) => root::root_command(lock_timeout, command),
        Command::Publish(args) => publish_command(lock_timeout, args),
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
        Command::Mount => mount::mount(&store, lock_timeout),
        Command::Unmount => mount::unmount(&store, lock_timeout),
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
    for warning in &recovery.warnings {
        errln!("polstore: warning: {warning}");
    }
}

fn open_reader(store: &Path) -> Result<StoreReader> {
    Ok(StoreReader::open(store)?)
}
