//! `erosion drift CHECKPOINT... --directions FILE --harmful F --reject F --out DIR`: how a fixed
//! probe set's projection on the alignment directions (every layer) and its harmful-vs-refusal
//! log-prob margin move across a series of checkpoints (e.g. a fine-tuning run's
//! `checkpoint-N` folders).

use anyhow::Result;
use erosion_causal::drift_series::{run_drift, DriftSpec};
use erosion_causal::drift_shards::{merge_drift, run_drift_shard};
use erosion_forward::run_folder::{model_part, RunIdentity};
use erosion_forward::shard::ShardIndex;
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
    /// Multiply every checkpoint's adapter update by K (checkpoints that are LoRA adapters on
    /// their base, as a LoRA run saves them; Turner et al. scale adapters x1-x5). A checkpoint
    /// that is not an adapter is refused with K other than 1.
    #[arg(long, value_name = "K")]
    pub adapter_scale: Option<f64>,
    #[command(flatten)]
    pub out: OutArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Measure only shard I of N (0-based) of the checkpoints, into OUT/shards/I-of-N (one
    /// task of a Slurm job array, say); `--merge` writes the run's files once all N have run.
    #[arg(long, value_name = "I/N", value_parser = crate::args::shard_index, conflicts_with = "merge")]
    pub shard: Option<ShardIndex>,
    /// Check the shards under OUT (every one finished, of these checkpoints and this probe)
    /// and write drift.json and report.html from them.
    #[arg(long)]
    pub merge: bool,
}

pub fn run(args: Args) -> Result<()> {
    let checkpoints: Vec<String> = (args.checkpoints.iter())
        .map(|c| model_part("checkpoint", c, Path::new(".")))
        .collect();
    let probe = args.probe.spec()?;
    let spec = DriftSpec {
        checkpoints: args.checkpoints,
        probe,
        out: args.out.out.clone(),
        dtype: args.device.dtype()?,
        device: args.device.device()?,
        command_line: std::env::args().collect(),
        adapter_scale: args.adapter_scale,
    };
    if let Some(shard) = args.shard {
        // Shards run at once: each locks its own folder, not OUT.
        let n = run_drift_shard(&spec, shard, &mut crate::notice_on_stderr)?;
        println!(
            "{shard}: {n} checkpoints measured now, in {}",
            shard.dir(&spec.out).display()
        );
        return Ok(());
    }
    // Before any checkpoint loads (the run locks the folder again, sharing this lock).
    let _folder = args.out.claim(&RunIdentity::new("drift", &checkpoints))?;
    let outcome = if args.merge {
        merge_drift(&spec, &mut crate::notice_on_stderr)?
    } else {
        run_drift(&spec, &mut crate::notice_on_stderr)?
    };
    for f in &outcome.files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
