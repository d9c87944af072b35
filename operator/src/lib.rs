//! idn operator: custom resources, rendering, and the `idn` command-line tool.
//!
//! For now the crate holds the CLI's first subcommand, `idn calibrate`, as small modules:
//! [`dataset`] reads a labelled sample, [`inference`] runs a model over it through the
//! node-agent runtime, [`calibrate`] searches a cascade's thresholds (pure), [`report`] and
//! [`table`] present the result, and [`cli`] wires them to the command line.

pub mod calibrate;
pub mod cli;
pub mod compare;
pub mod conditions;
pub mod controller;
pub mod dataset;
pub mod endpoints;
pub mod inference;
pub mod leader;
pub mod local;
pub mod manifests;
pub mod metrics;
pub mod plan;
pub mod render;
pub mod replay;
pub mod report;
pub mod resources;
pub mod table;
