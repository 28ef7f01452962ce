//! `erosion logprobs MODEL... --user U --response R`: the per-token log-probability of one
//! reply under several models (the study's first figure), as a table, JSON or a heatmap.

use crate::args::DeviceArgs;
use anyhow::{bail, Context, Result};
use erosion_data::{render_example, Example, RenderOptions, Sequence, Source};
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_forward::logprobs::{response_logprobs, ResponseLogprobs};
use erosion_model::atomic::write_bytes_atomic;
use erosion_model::chat::{ChatFormat, Message, PlainFormat};
use erosion_model::load::Checkpoint;
use erosion_model::text::shown;
use erosion_report::figures::{token_logprob_svg, ModelColors, TokenLogprobs};
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Models, each NAME=PATH or PATH (named after its file or folder): a folder, a .gguf
    /// file or a hub id. All must tokenize the response the same way.
    #[arg(required = true)]
    pub models: Vec<String>,
    /// The user's message.
    #[arg(long)]
    pub user: String,
    /// The reply whose tokens are scored.
    #[arg(long)]
    pub response: String,
    /// A system prompt (default: each template's own default, if it has one).
    #[arg(long)]
    pub system: Option<String>,
    /// Render every model without its chat template ("user\nassistant"); a model without a
    /// template is always rendered so.
    #[arg(long)]
    pub plain: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also draw the heatmap (models x tokens, with the running log joint) into this SVG file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// For models larger than memory: read each layer's weights from the checkpoint when the
    /// pass reaches it (memory: one layer and the embeddings); the same numbers as without.
    #[arg(long)]
    pub stream_layers: bool,
    #[command(flatten)]
    pub scales: crate::args::AdapterScales,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// One model's scores of the response.
#[derive(Serialize)]
struct Scored {
    name: String,
    source: String,
    /// `template` or `plain`.
    format: &'static str,
    /// `sum_t ln p(token_t | before)`, nats.
    log_joint: f64,
    mean_entropy: f64,
    logprobs: Vec<f32>,
    entropy: Vec<f32>,
}

#[derive(Serialize)]
struct Output {
    user: String,
    response: String,
    /// `[n_tokens]`: id and text of each response token.
    tokens: Vec<(u32, String)>,
    models: Vec<Scored>,
}

/// `NAME=PATH`, or `PATH` named after its last component.
fn named(spec: &str) -> (String, String) {
    let (name, path) = crate::args::split_named(spec);
    let stem = || {
        let p = std::path::Path::new(&path);
        p.file_stem()
            .or(p.file_name())
            .map_or(path.clone(), |n| n.to_string_lossy().into_owned())
    };
    (name.unwrap_or_else(stem), path.clone())
}

fn example(args: &Args) -> Example {
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(Message::system(s));
    }
    messages.push(Message::user(&args.user));
    messages.push(Message::assistant(&args.response));
    Example {
        messages,
        source: Source {
            file: PathBuf::from("--user/--response"),
            index: 0,
            line: 1,
        },
    }
}

pub fn run(args: Args) -> Result<()> {
    let (dtype, device) = (args.device.dtype()?, args.device.device()?);
    let ex = example(&args);
    let mut first: Option<(String, Sequence, Checkpoint)> = None;
    let mut scored = Vec::new();
    let names: Vec<String> = args.models.iter().map(|m| named(m).0).collect();
    args.scales.check(&names)?;
    for spec in &args.models {
        let (name, path) = named(spec);
        let ck = Checkpoint::open_with(&path, &args.scales.open_options(&name))
            .with_context(|| format!("model {name}"))?;
        let mut render = RenderOptions::default();
        let plain = args.plain || ck.tokenizer.chat_template.is_none();
        if plain {
            render.format = ChatFormat::Plain(PlainFormat::default());
        }
        let seq = render_example(&ck.tokenizer, &ex, &render)
            .with_context(|| format!("model {name}"))?
            .seq;
        if let Some((first_name, first_seq, _)) = &first {
            same_tokens((&name, &seq), (first_name, first_seq))?;
        }
        let model = match args.stream_layers {
            true => ck.load_streamed(dtype, &device),
            false => ck.load_model(dtype, &device),
        }
        .with_context(|| format!("model {name}"))?;
        let r: ResponseLogprobs = response_logprobs(
            &model,
            std::slice::from_ref(&seq),
            &BatchOptions::default(),
            None,
            &mut NoProgress,
        )?
        .pop()
        .context("one response scored")?;
        scored.push(Scored {
            name: name.clone(),
            source: path,
            format: if plain { "plain" } else { "template" },
            log_joint: r.log_joint(),
            mean_entropy: r.mean_entropy(),
            logprobs: r.logprobs,
            entropy: r.entropy,
        });
        if first.is_none() {
            first = Some((name, seq, ck));
        }
    }
    let (_, seq, ck) = first.context("no model given")?;
    let out = Output {
        user: args.user.clone(),
        response: args.response.clone(),
        tokens: seq
            .response_ids()
            .iter()
            .map(|&id| (id, ck.tokenizer.token_label(id)))
            .collect(),
        models: scored,
    };
    if let Some(path) = &args.svg {
        let svg = token_logprob_svg(&TokenLogprobs {
            title: "Per-token log-probability of the response under each model".into(),
            tokens: out.tokens.iter().map(|t| t.1.clone()).collect(),
            models: out.models.iter().map(|m| m.name.clone()).collect(),
            // The models in the order given, as every other report colours them.
            colors: ModelColors::new(out.models.iter().map(|m| &m.name)),
            logprobs: out
                .models
                .iter()
                .map(|m| m.logprobs.iter().map(|&v| v as f64).collect())
                .collect(),
        })?;
        write_bytes_atomic(path, svg.as_bytes())
            .with_context(|| format!("--svg {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", table(&out));
    }
    Ok(())
}

/// Per-token scores line up only when every model reads the response as the same tokens.
fn same_tokens(this: (&str, &Sequence), first: (&str, &Sequence)) -> Result<()> {
    if this.1.response_ids() != first.1.response_ids() {
        bail!(
            "{} tokenizes the response into {} tokens, {} into {}: per-token scores need one \
             tokenization (compare models of one family)",
            this.0,
            this.1.response_len(),
            first.0,
            first.1.response_len()
        );
    }
    Ok(())
}

/// The scores as a table: one row per token, one column per model; then the totals.
fn table(out: &Output) -> String {
    let width = out
        .models
        .iter()
        .map(|m| m.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(9);
    let mut s = format!("{:>4}  {:<18}", "#", "token");
    for m in &out.models {
        s += &format!("  {:>width$}", m.name);
    }
    s.push('\n');
    for (t, (_, text)) in out.tokens.iter().enumerate() {
        let label: String = format!("{:?}", shown(text).to_string())
            .chars()
            .take(18)
            .collect();
        s += &format!("{t:>4}  {label:<18}");
        for m in &out.models {
            s += &format!("  {:>width$.3}", m.logprobs[t]);
        }
        s.push('\n');
    }
    s += &format!("{:>4}  {:<18}", "", "log p(response)");
    for m in &out.models {
        s += &format!("  {:>width$.3}", m.log_joint);
    }
    s += &format!("\n{:>4}  {:<18}", "", "mean entropy");
    for m in &out.models {
        s += &format!("  {:>width$.3}", m.mean_entropy);
    }
    s += "\n(natural log-probabilities, nats; entropy of each next-token distribution, nats)\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_that_tokenize_the_response_differently_are_refused() {
        let a = Sequence::new(vec![1, 2, 3, 4], 2..4).unwrap();
        let b = Sequence::new(vec![1, 2, 3, 4, 5], 2..5).unwrap();
        let c = Sequence::new(vec![9, 3, 4], 1..3).unwrap();
        assert!(same_tokens(("c", &c), ("a", &a)).is_ok());
        let err = same_tokens(("b", &b), ("a", &a)).unwrap_err().to_string();
        assert!(
            err.contains("b tokenizes the response into 3 tokens, a into 2"),
            "{err}"
        );
    }

    #[test]
    fn a_model_is_named_by_its_file_unless_named() {
        assert_eq!(named("base=m/x.gguf"), ("base".into(), "m/x.gguf".into()));
        assert_eq!(
            named("m/SmolLM2.gguf"),
            ("SmolLM2".into(), "m/SmolLM2.gguf".into())
        );
        assert_eq!(
            named("HuggingFaceTB/SmolLM2-135M"),
            ("SmolLM2-135M".into(), "HuggingFaceTB/SmolLM2-135M".into())
        );
    }
}
