//! `erosion study STUDY.toml`: every analysis, one report.

use anyhow::Result;
use erosion_study::run::run_study_file;
use erosion_study::Preset;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The study file (models, datasets, analyses and options).
    pub study: PathBuf,
    /// paper-text (the study's text: T=64, flattened windows, q/k/v/o gradients) or
    /// paper-code (its code: T=10, mean pooling, o_proj gradients, HF hidden states).
    #[arg(long)]
    pub preset: Option<String>,
    /// Output folder (default: the study file's `output`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let preset = args.preset.as_deref().map(Preset::parse).transpose()?;
    let outcome = run_study_file(
        &args.study,
        preset,
        args.out,
        std::env::args().collect(),
        &mut crate::notice_on_stderr,
        Box::new(crate::progress::Bars),
    )?;
    println!("report:  {}", outcome.report_html.display());
    println!("results: {}", outcome.results_json.display());
    for (title, verdict) in &outcome.verdicts {
        println!("  {:<58} {}", title, verdict.label());
    }
    outcome.into_result().map(|_| ())
}
