//! `erosion inspect MODEL`: what a checkpoint is, before anything runs on it.

use crate::args::ModelArg;
use anyhow::Result;
use erosion_model::load::Checkpoint;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also print the chat template's source.
    #[arg(long)]
    pub template: bool,
}

pub fn run(args: Args) -> Result<()> {
    let ck = Checkpoint::open(&args.model.model)?;
    let cfg = &ck.config;
    let tok = &ck.tokenizer;
    let special = |t: &Option<String>| {
        t.as_ref().map(|s| {
            let id = tok.tokenizer.token_to_id(s);
            json!({ "token": s, "id": id })
        })
    };
    let info = json!({
        "source": ck.source.to_string(),
        "architecture": cfg.family()?.model_type,
        "parameters": cfg.num_parameters(),
        "stored_dtype": ck.stored_dtype(),
        "layers": cfg.num_hidden_layers,
        "d_model": cfg.hidden_size,
        "d_mlp": cfg.intermediate_size,
        "heads": cfg.num_attention_heads,
        "kv_heads": cfg.num_kv_heads(),
        "head_dim": cfg.head_dim(),
        "vocab_size": cfg.vocab_size,
        "tokenizer_vocab_size": tok.tokenizer.get_vocab_size(true),
        "tied_embeddings": cfg.tie_word_embeddings,
        "qkv_bias": cfg.qkv_bias(),
        "rope_theta": cfg.rope_theta,
        "rope_scaling": cfg.rope_scaling.as_ref().map(|r| r.rope_type.clone()),
        "rms_norm_eps": cfg.rms_norm_eps,
        "max_position_embeddings": cfg.max_position_embeddings,
        "chat_template": tok.chat_template.is_some(),
        "bos_token": special(&tok.bos_token),
        "eos_token": special(&tok.eos_token),
        "pad_token": special(&tok.pad_token),
        "stop_token_ids": ck.eos_token_ids(),
        "weight_files": ck.weight_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        for (key, value) in info.as_object().expect("an object") {
            let shown = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("{key:<24} {shown}");
        }
    }
    if args.template {
        match &tok.chat_template {
            Some(t) => println!("\n{}", t.source),
            None => println!("\n(no chat template)"),
        }
    }
    Ok(())
}
