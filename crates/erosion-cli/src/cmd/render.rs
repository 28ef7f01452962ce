//! `erosion render MODEL DATASET`: each example as the model sees it, response span marked.

use crate::args::{DatasetArgs, ModelArg};
use anyhow::Result;
use erosion_data::{render_example, RenderOptions};
use erosion_model::chat::{BoundaryPolicy, ChatFormat, PlainFormat};
use erosion_model::load::Checkpoint;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub data: DatasetArgs,
    /// With --limit, a sample of N examples drawn from this seed instead of the first N.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Render without the chat template ("user\nassistant"), as for a base model.
    #[arg(long)]
    pub plain: bool,
    /// Count the closing end-of-turn token as part of the response.
    #[arg(long)]
    pub include_end_of_turn: bool,
    /// Show token ids too.
    #[arg(long)]
    pub ids: bool,
}

pub fn run(args: Args) -> Result<()> {
    let ck = Checkpoint::open(&args.model.model)?;
    let (specs, base_dir) = args.data.specs()?;
    let mut opts = RenderOptions::default();
    opts.span.include_end_of_turn = args.include_end_of_turn;
    opts.span.boundary = BoundaryPolicy::default();
    if args.plain {
        opts.format = ChatFormat::Plain(PlainFormat::default());
    }
    for mut spec in specs {
        if args.data.limit.is_some() {
            spec.sample_seed = args.seed;
        }
        let dataset = spec.load(&base_dir)?;
        println!(
            "=== dataset {} ({} of {} records, {}; sha256 {})",
            dataset.name,
            dataset.examples.len(),
            dataset.records,
            dataset.path.display(),
            &dataset.sha256[..16]
        );
        for example in &dataset.examples {
            let r = render_example(&ck.tokenizer, example, &opts)?;
            let (a, b) = (r.response_text.start, r.response_text.end);
            println!(
                "\n=== example {}: {} tokens, response tokens {}..{} ({} tokens)",
                example.source,
                r.seq.ids.len(),
                r.seq.response.start,
                r.seq.response.end,
                r.response_len()
            );
            println!(
                "{}\u{27e6}{}\u{27e7}{}",
                &r.text[..a],
                &r.text[a..b],
                &r.text[b..]
            );
            if args.ids {
                println!("prompt ids:   {:?}", &r.seq.ids[..r.seq.response.start]);
                println!("response ids: {:?}", r.seq.response_ids());
            }
        }
    }
    Ok(())
}
