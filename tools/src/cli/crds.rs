//! `idn crds`: print the CustomResourceDefinitions, e.g. `idn crds | kubectl apply -f -`.

use std::process::ExitCode;

use idn_operator::resources;

/// Arguments of `idn crds`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {}

pub fn run(_: &Args) -> anyhow::Result<ExitCode> {
    print!("{}", resources::crds_yaml());
    Ok(ExitCode::SUCCESS)
}
