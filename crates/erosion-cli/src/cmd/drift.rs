//! `erosion drift CHECKPOINT... --directions FILE --harmful F --reject F --out DIR`: how a fixed
//! probe set's projection on the alignment directions (every layer) and its harmful-vs-refusal
//! log-prob margin move across a series of checkpoints (e.g. a fine-tuning run's
//! `checkpoint-N` folders).

use anyhow::Result;
use erosion_causal::drift_series::{run_drift, DriftSpec};
use erosion_forward::run_folder::{model_part, RunIdentity};
use std::path::Path;

use crate::args::{DeviceArgs, OutArgs};
use crate::probe::ProbeArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoints in training order (folders, .gguf or hub ids); a folder named
    /// `checkpoint-N` is placed at step N, a finished `erosion train` folder at its last step.
    #[arg(required = true)]
    pub checkpoints: Vec<String>,
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[command(flatten)]
    pub out: OutArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    let checkpoints: Vec<String> = (args.checkpoints.iter())
        .map(|c| model_part("checkpoint", c, Path::new(".")))
        .collect();
    // Before any checkpoint loads (run_drift locks the folder again, sharing this lock).
    let _folder = args.out.claim(&RunIdentity::new("drift", &checkpoints))?;
    let probe = args.probe.spec()?;
    let spec = DriftSpec {
        checkpoints: args.checkpoints,
        probe,
        out: args.out.out,
        dtype: args.device.dtype()?,
        device: args.device.device()?,
        command_line: std::env::args().collect(),
    };
    let outcome = run_drift(&spec, &mut crate::notice_on_stderr)?;
    for f in &outcome.files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
