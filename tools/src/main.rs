//! `idn`: the command-line tool of an inference delivery network (see `idn --help`).

use std::process::ExitCode;

use clap::Parser;
use idn_tools::cli::Cli;

fn main() -> ExitCode {
    match Cli::parse().run() {
        Ok(code) => code,
        Err(error) => {
            // `{:#}` prints the whole chain of causes on one line.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
