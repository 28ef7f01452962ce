//! `erosion generate MODEL --prompt ...`: a reply rendered through the chat template.

use crate::device::DeviceArgs;
use anyhow::{Context, Result};
use erosion_model::chat::Message;
use erosion_model::generate::{generate, SamplingOptions};
use erosion_model::load::Checkpoint;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model folder, a .gguf file, or a hub id in the local Hugging Face cache.
    pub model: String,
    /// The user's message.
    #[arg(long)]
    pub prompt: String,
    /// A system prompt (default: the template's own default, if it has one).
    #[arg(long)]
    pub system: Option<String>,
    /// Feed the prompt as plain text, without the chat template (for base models).
    #[arg(long)]
    pub raw: bool,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    let ck = Checkpoint::open(&args.model)?;
    let model = ck.load_model(args.device.dtype()?, &args.device.device()?)?;
    let ids = if args.raw {
        let enc = ck
            .tokenizer
            .tokenizer
            .encode(args.prompt.as_str(), true)
            .map_err(anyhow::Error::msg)?;
        enc.get_ids().to_vec()
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(Message::system(system));
        }
        messages.push(Message::user(&args.prompt));
        ck.tokenizer
            .encode_chat_prompt(&messages, true)
            .with_context(|| {
                format!(
                    "{}: pass --raw to feed the prompt as plain text",
                    args.model
                )
            })?
    };
    let opts = SamplingOptions {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    };
    let out = generate(&model, &ids, &ck.eos_token_ids(), &opts)?;
    let reply = ck
        .tokenizer
        .tokenizer
        .decode(&out.tokens, true)
        .map_err(anyhow::Error::msg)?;
    println!("{reply}");
    if !out.stopped {
        eprintln!(
            "(stopped after --max-new-tokens {} tokens)",
            args.max_new_tokens
        );
    }
    Ok(())
}
