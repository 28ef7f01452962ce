//! The drift probe's flags, shared by `erosion drift` and `erosion train --monitor`.

use std::path::PathBuf;

use anyhow::Result;
use erosion_causal::drift_series::ProbeSpec;

/// The probe: paired harmful / refusing answers (messages .jsonl), the harmful ones also
/// projected.
#[derive(clap::Args, Debug, Clone)]
pub struct ProbeArgs {
    /// Directions written by `erosion steer` (directions.safetensors).
    #[arg(long, value_name = "FILE")]
    pub directions: Option<PathBuf>,
    /// Harmful requests answered compliantly.
    #[arg(long, value_name = "FILE", alias = "toxic")]
    pub harmful: Option<PathBuf>,
    /// The same requests, in the same order, answered with refusals.
    #[arg(long, value_name = "FILE")]
    pub reject: Option<PathBuf>,
    /// Examples of the probe.
    #[arg(long, default_value_t = 50)]
    pub probe_size: usize,
    /// Response tokens averaged per example (10, the study's code; a study's layer
    /// analysis follows its text, 64, unless --preset paper-code).
    #[arg(long, default_value_t = 10)]
    pub window: usize,
    /// Seed of the margin's bootstrap.
    #[arg(long, default_value_t = 0)]
    pub probe_seed: u64,
}

impl ProbeArgs {
    /// The probe, or which file is missing.
    pub fn spec(&self) -> Result<ProbeSpec> {
        match (&self.directions, &self.harmful, &self.reject) {
            (Some(d), Some(t), Some(r)) => Ok(ProbeSpec {
                directions: d.clone(),
                toxic: t.clone(),
                reject: r.clone(),
                probe_size: self.probe_size,
                window: self.window,
                seed: self.probe_seed,
            }),
            _ => {
                anyhow::bail!("the probe needs --directions FILE, --harmful FILE and --reject FILE")
            }
        }
    }
}
