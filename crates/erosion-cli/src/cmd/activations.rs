//! `erosion activations MODEL DATASET --hooks NAMES --positions SPEC --out DIR`: the
//! activations at named hook points over a dataset, one `.npy` per hook with an index of
//! (example, position, token) rows; memory-bounded and resumable.

use crate::args::{DatasetArgs, ModelArgs, OutArgs};
use crate::layer::ResidLayer;
use crate::progress::Bars;
use anyhow::{Context, Result};
use erosion_data::{render_example, Dataset, RenderOptions, Sequence};
use erosion_forward::activations::{
    dump_activations, ActivationOptions, ActivationReport, TokenPositions,
};
use erosion_forward::batch::{BatchOptions, ProgressSink};
use erosion_forward::run_folder::{model_part, RunIdentity};
use erosion_model::atomic::write_bytes_atomic;
use erosion_model::chat::{ChatFormat, PlainFormat};
use erosion_model::hooks::HookPoint;
use erosion_report::provenance::{DatasetHash, HashCache, Provenance};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Hook points, comma-separated, as TransformerLens names them: blocks.L.hook_resid_post,
    /// blocks.L.attn.hook_z, blocks.L.mlp.hook_post, ln_final.hook_normalized, hook_logits, ...;
    /// a bare integer L means blocks.L.hook_resid_post, `embed` hook_embed.
    #[arg(long, value_delimiter = ',', required = true)]
    pub hooks: Vec<String>,
    /// Token positions of each example: all, prompt, response, response:N (first N response
    /// tokens), last, last-prompt (the state that predicts the response), last-response.
    #[arg(long, default_value = "response")]
    pub positions: TokenPositions,
    /// Render without the chat template ("user\nassistant"), as for a base model (the default
    /// when the checkpoint has no template).
    #[arg(long)]
    pub plain: bool,
    /// Most tokens in one forward pass, padding included (lower it for hook_logits, whose rows
    /// are as wide as the vocabulary).
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: usize,
    /// Examples per chunk: a stopped run goes on from its last finished chunk.
    #[arg(long, default_value_t = 256)]
    pub chunk: usize,
    /// For models larger than memory: read each layer's weights from the checkpoint when the
    /// pass reaches it, and run every example of a chunk through it before reading the next.
    /// Memory: one layer, the embeddings, and the chunk's residual streams (--chunk x longest
    /// example x d_model floats); the same numbers as without.
    #[arg(long)]
    pub stream_layers: bool,
    #[command(flatten)]
    pub out: OutArgs,
}

/// A hook as the user named it: a full hook name, or a residual-stream point as every command
/// reads one (a bare integer L = `blocks.L.hook_resid_post`, `embed`; see [`crate::layer`]).
fn hook_point(name: &str, n_layers: usize) -> Result<HookPoint> {
    let point = match name.parse::<ResidLayer>() {
        Ok(layer) => HookPoint::resid(layer.0),
        Err(_) => HookPoint::parse(name.trim(), n_layers)?,
    };
    point.check(n_layers)?;
    Ok(point)
}

pub fn run(args: Args) -> Result<()> {
    let out = &args.out.out;
    // The model makes the run; other data or hook points into the same folder are refused
    // by the dump itself (its recorded source), which resumes the same dump.
    let model = model_part("model", &args.model.model, Path::new("."));
    let _folder = args.out.claim(&RunIdentity::new("activations", &[model]))?;
    let ck = args.model.open()?;
    let n_layers = ck.config.num_hidden_layers;
    let hooks = args
        .hooks
        .iter()
        .map(|h| hook_point(h, n_layers).with_context(|| format!("--hooks {h}")))
        .collect::<Result<Vec<_>>>()?;
    let mut render = RenderOptions::default();
    if args.plain || ck.tokenizer.chat_template.is_none() {
        render.format = ChatFormat::Plain(PlainFormat::default());
    }
    let (specs, base_dir) = args.data.specs()?;
    let device = &args.model.device;
    let (dtype, dev) = (device.dtype()?, device.device()?);
    let model = match args.stream_layers {
        true => ck.load_streamed(dtype, &dev)?,
        false => ck.load_model(dtype, &dev)?,
    };
    let mut opts = ActivationOptions::new(hooks, args.positions);
    opts.batch = BatchOptions {
        max_tokens: args.max_tokens,
        ..BatchOptions::default()
    };
    opts.chunk_examples = args.chunk;
    let mut cache = HashCache::in_memory();
    for spec in &specs {
        let dataset = spec.load(&base_dir)?;
        let seqs = dataset
            .examples
            .iter()
            .map(|ex| Ok(render_example(&ck.tokenizer, ex, &render)?.seq))
            .collect::<Result<Vec<Sequence>>>()?;
        // Several datasets (a spec file) go to one subfolder each.
        let dir = match specs.len() {
            1 => out.clone(),
            _ => out.join(&dataset.name),
        };
        let provenance = provenance(&args, &opts, &render, &dataset, seqs.len(), &mut cache)?;
        // What decides the rows (no times): a folder with another source is refused.
        let source = serde_json::json!({
            "models": provenance.models,
            "datasets": provenance.datasets,
            "render": render,
            "dtype": device.dtype,
        });
        let mut bar = Bars.start(&format!("activations of {}", dataset.name));
        let report = dump_activations(&model, &seqs, &opts, &dir, &source, bar.as_mut())?;
        drop(bar);
        write_bytes_atomic(
            &dir.join("provenance.json"),
            &serde_json::to_vec_pretty(&provenance)?,
        )?;
        say(&report, &opts, &dir);
    }
    Ok(())
}

/// The run's provenance for one dataset: the options, the command line, the model's and the
/// dataset's hashes.
fn provenance(
    args: &Args,
    opts: &ActivationOptions,
    render: &RenderOptions,
    dataset: &Dataset,
    n_examples: usize,
    cache: &mut HashCache,
) -> Result<Provenance> {
    let selection = dataset.selection.to_string();
    let data_hash = DatasetHash::new(&dataset.name, &dataset.path, n_examples, &selection, cache)?;
    let device = &args.model.device;
    Ok(Provenance::builder(serde_json::json!({
        "hooks": opts.hooks.iter().map(HookPoint::to_string).collect::<Vec<_>>(),
        "positions": opts.positions,
        "render": render,
        "dtype": device.dtype,
        "device": device.device,
        "max_tokens": args.max_tokens,
        "chunk_examples": args.chunk,
    }))
    .command_line(std::env::args().collect())
    .model_at("model", &args.model.model, cache)?
    .datasets([data_hash])
    .build())
}

/// What a dump did, on the terminal.
fn say(report: &ActivationReport, opts: &ActivationOptions, dir: &Path) {
    if report.chunks_before > 0 {
        eprintln!(
            "went on from chunk {} of {}",
            report.chunks_before, report.n_chunks
        );
    }
    if !report.without_rows.is_empty() {
        eprintln!(
            "{} of {} examples have no token at positions `{}` and add no rows (index.npy lists the rows)",
            report.without_rows.len(),
            report.n_examples,
            opts.positions
        );
    }
    println!(
        "wrote {} rows of {} examples at {} hook(s) to {}",
        report.n_rows,
        report.n_examples,
        opts.hooks.len(),
        dir.display()
    );
    // What --stream-layers is for, measured (Linux only).
    if let Ok(mb) = crate::alloc::peak_rss_mb() {
        eprintln!("peak resident memory {mb:.0} MiB");
    }
}
