//! `erosion inspect MODEL`: what a checkpoint is, before anything runs on it.

use crate::args::ModelArg;
use anyhow::Result;
use erosion_model::load::{Adapter, Checkpoint};
use serde_json::json;
use std::collections::BTreeSet;

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

/// What a LoRA adapter changes: its modules (the first few), ranks and scales.
fn adapter(a: &Adapter) -> serde_json::Value {
    let ranks: BTreeSet<usize> = a.modules.iter().map(|m| m.rank).collect();
    let scalings: BTreeSet<String> = a.modules.iter().map(|m| m.scaling.to_string()).collect();
    let mut modules: Vec<&str> = a.modules.iter().map(|m| m.module.as_str()).collect();
    if modules.len() > 8 {
        modules.truncate(7);
        modules.push("...");
    }
    json!({
        "type": "LoRA",
        "adapted_modules": a.modules.len(),
        "modules": modules,
        "ranks": ranks,
        "scalings": scalings,
        "use_rslora": a.config.use_rslora,
        "saved_weights": a.saved.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "files": a.files().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    })
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
        "source": ck.describe(),
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
        "adapter": ck.adapter.as_ref().map(adapter),
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
