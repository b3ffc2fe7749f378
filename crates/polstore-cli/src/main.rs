//! The `polstore` binary: argument parsing (`args`), one function per command
//! (`commands`), what they print (`output`), and the one place where errors become exit
//! codes (`exit`).

mod args;
mod commands;
mod exit;
mod output;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A panic is a bug or a damaged database that redb trips over: one line, not a
    // backtrace, and the way out.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "polstore: internal failure: {}; if the store's database is damaged, 'polstore verify --repair' rebuilds it",
            message.replace('\n', " ")
        );
    }));
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => exit::report(&error),
    }
}
