//! `erosion generate MODEL --prompt ...`: a reply rendered through the chat template.

use crate::args::{ModelArgs, SamplingArgs};
use anyhow::{Context, Result};
use erosion_model::chat::Message;
use erosion_model::generate::generate;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The user's message.
    #[arg(long)]
    pub prompt: String,
    /// A system prompt (default: the template's own default, if it has one).
    #[arg(long)]
    pub system: Option<String>,
    /// Feed the prompt as plain text, without the chat template (for base models).
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(args: Args) -> Result<()> {
    let ck = args.model.open()?;
    let device = &args.model.device;
    let model = ck.load_model(device.dtype()?, &device.device()?)?;
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
                    args.model.model
                )
            })?
    };
    let opts = args.sampling.options();
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
            opts.max_new_tokens
        );
    }
    Ok(())
}
