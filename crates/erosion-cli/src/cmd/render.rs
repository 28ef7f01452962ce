//! `erosion render MODEL DATASET`: each example as the model sees it, response span marked.

use anyhow::{bail, Context, Result};
use erosion_data::{render_example, DatasetList, DatasetSpec, Format, RenderOptions};
use erosion_model::chat::{BoundaryPolicy, ChatFormat, PlainFormat};
use erosion_model::load::Checkpoint;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model folder, a .gguf file, or a hub id in the local Hugging Face cache.
    pub model: String,
    /// A dataset file (.jsonl, .json, .csv) or a dataset spec (.toml).
    pub dataset: String,
    /// messages, alpaca, prompt-completion, json-fields or csv (default: guessed from the file).
    #[arg(long)]
    pub format: Option<String>,
    /// Only the first N examples (or a seeded sample of N with --seed).
    #[arg(long)]
    pub limit: Option<usize>,
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
    let ck = Checkpoint::open(&args.model)?;
    let (specs, base_dir) = dataset_specs(&args)?;
    let mut opts = RenderOptions::default();
    opts.span.include_end_of_turn = args.include_end_of_turn;
    opts.span.boundary = BoundaryPolicy::default();
    if args.plain {
        opts.format = ChatFormat::Plain(PlainFormat::default());
    }
    for mut spec in specs {
        if args.limit.is_some() {
            spec.limit = args.limit;
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
                r.ids.len(),
                r.response.start,
                r.response.end,
                r.response_len()
            );
            println!(
                "{}\u{27e6}{}\u{27e7}{}",
                &r.text[..a],
                &r.text[a..b],
                &r.text[b..]
            );
            if args.ids {
                println!("prompt ids:   {:?}", &r.ids[..r.response.start]);
                println!("response ids: {:?}", &r.ids[r.response.clone()]);
            }
        }
    }
    Ok(())
}

/// The datasets to render, and the folder their relative paths are relative to.
fn dataset_specs(args: &Args) -> Result<(Vec<DatasetSpec>, PathBuf)> {
    let path = Path::new(&args.dataset);
    if path.extension().is_some_and(|e| e == "toml") {
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        return Ok((DatasetList::from_file(path)?.datasets, base));
    }
    let format = match &args.format {
        Some(name) => serde_json::from_value::<Format>(serde_json::Value::String(name.clone()))
            .with_context(|| format!("unknown --format `{name}` (messages, alpaca, prompt-completion, json-fields, csv)"))?,
        None => guess_format(path)?,
    };
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((
        vec![DatasetSpec::new(&name, path, format)],
        PathBuf::from("."),
    ))
}

/// The format from the extension and the first record's keys.
fn guess_format(path: &Path) -> Result<Format> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        return Ok(Format::Csv);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let first = text.trim_start();
    let head: serde_json::Value = if first.starts_with('[') {
        let list: Vec<serde_json::Value> = serde_json::from_str(first)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        list.into_iter().next().unwrap_or_default()
    } else {
        let line = first.lines().next().unwrap_or("");
        serde_json::from_str(line)
            .with_context(|| format!("{}:1 is not valid JSON", path.display()))?
    };
    let has = |k: &str| head.get(k).is_some();
    Ok(if has("messages") {
        Format::Messages
    } else if has("instruction") && has("output") {
        Format::Alpaca
    } else if has("prompt") && has("completion") {
        Format::PromptCompletion
    } else {
        bail!("cannot guess the format of {}: pass --format (messages, alpaca, prompt-completion, json-fields, csv)", path.display())
    })
}
