//! `erosion study STUDY.toml`: every analysis, one report.

use anyhow::Result;
use erosion_organism::evaluation::OrganismJudge;
use erosion_study::judges::Judges;
use erosion_study::run::{run_study_file, Caller};
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
    let caller = Caller {
        command_line: std::env::args().collect(),
        notices: &mut crate::notice_on_stderr,
        progress: Box::new(crate::progress::Bars),
        // The model organism's rules, for studies of the organism (`erosion demo` writes one).
        judges: Judges::none().with("organism", Box::new(OrganismJudge)),
    };
    let outcome = run_study_file(&args.study, preset, args.out, caller)?;
    println!("report:  {}", outcome.report_html.display());
    println!("results: {}", outcome.results_json.display());
    // Numbered as the report numbers its sections.
    for (i, (title, verdict)) in outcome.verdicts.iter().enumerate() {
        let numbered = format!("{}. {title}", i + 1);
        println!("  {numbered:<62} {}", verdict.label());
    }
    outcome.into_result().map(|_| ())
}
