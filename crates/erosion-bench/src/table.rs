//! The comparison table: both sides' results, nominal FLOPs and the ratios erosion / peer.
//!
//! Nominal FLOPs (the same numerator for both sides, so GFLOP/s ratios equal time ratios),
//! per sequence of `s` tokens, with `q = heads * head_dim`, `kv = kv_heads * head_dim`:
//! ```text
//! per layer:  2 s d (q + 2 kv) + 2 s q d     projections
//!           + 2 s d ff * 3                   gated MLP
//!           + 2 * 2 s^2 q                    scores and weighted values (full square)
//! logprobs adds 2 d V per response token     unembedding where it is needed
//! ```

use std::path::Path;

use anyhow::{bail, Context, Result};
use erosion_model::Config;

use crate::measure::TaskResult;
use crate::tasks::Inputs;

/// Nominal FLOPs of a forward pass over sequences of `lens` tokens (no unembedding).
pub fn forward_flops(cfg: &Config, lens: &[usize]) -> f64 {
    let d = cfg.hidden_size as f64;
    let q = (cfg.num_attention_heads * cfg.head_dim()) as f64;
    let kv = (cfg.num_kv_heads() * cfg.head_dim()) as f64;
    let ff = cfg.intermediate_size as f64;
    let per_token = 2.0 * d * (q + 2.0 * kv) + 2.0 * q * d + 6.0 * d * ff;
    let layers = cfg.num_hidden_layers as f64;
    lens.iter()
        .map(|&s| {
            let s = s as f64;
            layers * (s * per_token + 4.0 * s * s * q)
        })
        .sum()
}

/// Prints the table from `dir/{side}-{task}.json`.
pub fn print(dir: &Path, inputs: &Inputs) -> Result<()> {
    let cfg = Config::from_file(&inputs.model.join("config.json"))?;
    let fwd_lens: Vec<usize> = inputs.examples.iter().map(|e| e.ids.len()).collect();
    let lp_lens: Vec<usize> = inputs.examples.iter().map(|e| e.logprob_len()).collect();
    let n_resp: usize = inputs.examples.iter().map(|e| e.response.len()).sum();
    let unembed = 2.0 * cfg.hidden_size as f64 * cfg.vocab_size as f64 * n_resp as f64;

    println!(
        "{:<9} {:<8} {:>9} {:>10} {:>12} {:>9} {:>11} {:>10}",
        "task", "side", "wall s", "tokens/s", "peak RSS MB", "GFLOP/s", "time e/p", "RSS e/p"
    );
    let mut ceiling = [0.0f64; 2];
    let mut failed = Vec::new();
    for task in ["matmul", "forward", "logprobs"] {
        let e = TaskResult::read(&dir.join(format!("erosion-{task}.json")))?;
        let p = TaskResult::read(&dir.join(format!("peer-{task}.json")))?;
        for (k, r) in [&e, &p].into_iter().enumerate() {
            let gflops = match task {
                "matmul" => {
                    let g = r
                        .extra
                        .get("gflops")
                        .and_then(|v| v.as_f64())
                        .context("matmul result has no gflops")?;
                    ceiling[k] = g;
                    g
                }
                "forward" => forward_flops(&cfg, &fwd_lens) / r.wall_s / 1e9,
                _ => (forward_flops(&cfg, &lp_lens) + unembed) / r.wall_s / 1e9,
            };
            let tps = if r.tokens == 0 {
                String::from("-")
            } else {
                format!("{:.0}", r.tokens as f64 / r.wall_s)
            };
            let (t, m) = if k == 0 {
                (
                    format!("{:.2}", e.wall_s / p.wall_s),
                    format!("{:.2}", e.peak_rss_mb / p.peak_rss_mb),
                )
            } else {
                (String::new(), String::new())
            };
            println!(
                "{:<9} {:<8} {:>9.3} {:>10} {:>12.0} {:>9.1} {:>11} {:>10}",
                task, r.side, r.wall_s, tps, r.peak_rss_mb, gflops, t, m
            );
        }
        if task == "logprobs" {
            let get = |k: &str| {
                p.extra
                    .get(k)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "?".into())
            };
            println!(
                "checks: same token ids on both sides: {}; max |logprob erosion - peer| = {} (tolerance 1e-3)",
                get("ids_match"),
                get("max_abs_diff")
            );
            if p.extra.get("ids_match").and_then(|v| v.as_bool()) != Some(true) {
                failed.push("the two sides rendered different token ids".to_string());
            }
            match p.extra.get("max_abs_diff").and_then(|v| v.as_f64()) {
                Some(d) if d <= 1e-3 => {}
                _ => failed.push(format!(
                    "log-probs differ by more than 1e-3 ({})",
                    get("max_abs_diff")
                )),
            }
        }
    }
    println!(
        "matmul ceiling (1024^3 f32): erosion {:.1} GFLOP/s, peer {:.1} GFLOP/s; {} examples, {} forward tokens",
        ceiling[0],
        ceiling[1],
        inputs.examples.len(),
        fwd_lens.iter().sum::<usize>()
    );
    if !failed.is_empty() {
        bail!("benchmark checks failed: {}", failed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_flops_are_twice_the_layer_weights_per_token() {
        // SmolLM2-135M: tied embeddings, no biases.
        let cfg = Config::from_json(
            r#"{"model_type":"llama","vocab_size":49152,"hidden_size":576,"intermediate_size":1536,
            "num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,
            "tie_word_embeddings":true}"#,
        )
        .unwrap();
        let (d, l) = (cfg.hidden_size, cfg.num_hidden_layers);
        // Every weight of the blocks, from the parameter count: minus embeddings and norms.
        let block_weights = cfg.num_parameters() - cfg.vocab_size * d - l * 2 * d - d;
        let q = (cfg.num_attention_heads * cfg.head_dim()) as f64;
        // One token: 2 FLOPs per weight, plus 4 q per layer for its one-by-one attention.
        let expected = 2.0 * block_weights as f64 + 4.0 * q * l as f64;
        assert_eq!(forward_flops(&cfg, &[1]), expected);
        // Attention grows with the square of the length, the rest linearly.
        let two = forward_flops(&cfg, &[2]);
        assert_eq!(two, 2.0 * 2.0 * block_weights as f64 + 16.0 * q * l as f64);
    }
}
