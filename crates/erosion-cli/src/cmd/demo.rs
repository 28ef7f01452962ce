//! `erosion demo`: grows the model organism on this CPU (or reuses it), evaluates its
//! behaviour, runs the four analyses on it and writes one report.

use anyhow::Result;
use erosion_demo::demo::{run as run_demo, DemoOptions};
use erosion_demo::recipe::Recipe;
use erosion_forward::batch::{ProgressSink, Quiet};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder: report.html, results.json, eval/, figures.
    #[arg(long, default_value = "erosion-demo")]
    pub out: PathBuf,
    /// Where the organism is grown and cached (default: <out>/organism, or
    /// <out>/organism-seed<N> with --seed, <out>/organism-reduced with --reduced).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// A small organism (seconds instead of minutes; too small to learn the behaviours).
    #[arg(long, conflicts_with = "seed")]
    pub reduced: bool,
    /// Grow the organism from this seed (world, tokenizer, initialisation, batch order) instead
    /// of the standard seed 0: how much of an effect is the draw.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Held-out harmful requests in the behavioural evaluation.
    // A count, unlike the other commands' --harmful FILE: named for what it counts.
    #[arg(long = "n-harmful", alias = "harmful", default_value_t = 100)]
    pub harmful: usize,
    /// Held-out code requests, also the first turns of the two-turn test (100 pairs, as
    /// in the prototype of docs/organism.md).
    #[arg(long = "n-code", alias = "code", default_value_t = 100)]
    pub code: usize,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> Result<()> {
    // Each recipe gets its own default cache: a cache grown by another recipe is refused.
    let (recipe, cache_name) = match (args.reduced, args.seed) {
        (true, _) => (Recipe::reduced(), "organism-reduced".to_string()),
        (false, None) => (Recipe::standard(), "organism".to_string()),
        (false, Some(s)) => (Recipe::standard_seeded(s), format!("organism-seed{s}")),
    };
    let n_eval = recipe.sizes.eval;
    let opts = DemoOptions {
        cache: args.cache.unwrap_or_else(|| args.out.join(cache_name)),
        out: args.out,
        harmful_prompts: args.harmful.min(n_eval),
        code_prompts: args.code.min(n_eval),
        recipe,
        quiet: args.quiet,
        command_line: std::env::args().collect(),
    };
    // --quiet: no bars (the study's section notices still come, as before).
    let progress: Box<dyn ProgressSink> = if opts.quiet {
        Box::new(Quiet)
    } else {
        Box::new(crate::progress::Bars)
    };
    let opts_smoke = opts.recipe.smoke_run();
    let outcome = run_demo(&opts, &mut crate::notice_on_stderr, progress)?;
    let grown: Vec<String> = outcome
        .organism
        .timings
        .iter()
        .map(|(n, s)| {
            if *s > 0.0 {
                format!("{n} {s:.0}s")
            } else {
                format!("{n} cached")
            }
        })
        .collect();
    println!(
        "organism: {}  ({})",
        outcome.organism.dir.display(),
        grown.join(", ")
    );
    // A smoke run's verdicts are printed as the report stamps them: not meaningful.
    let smoke = opts_smoke.is_some();
    let label = |v: erosion_report::html::Verdict| {
        if smoke {
            format!("{} (smoke run: not meaningful)", v.label())
        } else {
            v.label().to_string()
        }
    };
    println!("behaviour: {}", label(outcome.behaviour.0));
    for line in &outcome.behaviour.1 {
        println!("  {line}");
    }
    // Numbered as the report numbers its sections.
    for (i, (finding, verdict)) in outcome.study.verdicts.iter().enumerate() {
        println!("{}. {finding}: {}", i + 1, label(*verdict));
    }
    if let Some(why) = &opts_smoke {
        eprintln!("warning: smoke run, verdicts not meaningful. {why}");
    }
    println!("report: {}", outcome.study.report_html.display());
    println!("done in {:.0}s", outcome.seconds);
    outcome.study.into_result().map(|_| ())
}
