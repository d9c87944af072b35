//! idn tools: the `idn` command and what it runs on this machine.
//!
//! [`dataset`] reads a labelled sample; [`inference`] runs a model over it through the
//! node-agent's runtime; [`calibrate`] searches a cascade's thresholds (pure) and [`report`]
//! and [`table`] present the result, [`certificate`] a guaranteed one; [`local`] runs a whole network in-process (`idn up`);
//! [`replay`] sends a sample (or a stream that shifts) to services and [`compare`] sets
//! strategies side by side (drawn by `plot`, rasterised by `raster`); [`cli`]
//! wires them to the command line.

pub mod calibrate;
pub mod certificate;
pub mod cli;
pub mod compare;
pub mod dataset;
pub mod inference;
pub mod local;
mod plot;
mod raster;
pub mod replay;
pub mod report;
pub mod table;
