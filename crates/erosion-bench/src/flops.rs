//! Nominal FLOPs of each task: one count for both sides (so GFLOP/s ratios equal time
//! ratios), the work the task needs rather than what either implementation happens to do.
//!
//! Per sequence of `s` tokens, with `q = heads * head_dim`, `kv = kv_heads * head_dim`:
//! ```text
//! one block:  2 s d (q + 2 kv) + 2 s q d     projections
//!           + 2 s d ff * 3                   gated MLP
//!           + 2 * 2 s^2 q                    scores and weighted values (full square)
//! forward     L blocks
//! logprobs    forward + 2 d V per response token                (unembedding where needed)
//! gradients   forward + 2 x (last block) + 2 x 2 d V per target token
//!             (backward of the part with a graph ~ 2x its forward; logits and
//!              d loss / d h at the target rows only)
//! layers      forward of both models, each sequence up to its last window token
//! ```
//! Norms, softmax, RoPE and the loss are not counted.

use erosion_model::Config;

/// Nominal FLOPs of one block over one sequence of `s` tokens.
pub fn block_flops(cfg: &Config, s: usize) -> f64 {
    let d = cfg.hidden_size as f64;
    let q = (cfg.num_attention_heads * cfg.head_dim()) as f64;
    let kv = (cfg.num_kv_heads() * cfg.head_dim()) as f64;
    let ff = cfg.intermediate_size as f64;
    let per_token = 2.0 * d * (q + 2.0 * kv) + 2.0 * q * d + 6.0 * d * ff;
    let s = s as f64;
    s * per_token + 4.0 * s * s * q
}

/// Nominal FLOPs of a forward pass over sequences of `lens` tokens (no unembedding).
pub fn forward_flops(cfg: &Config, lens: &[usize]) -> f64 {
    let layers = cfg.num_hidden_layers as f64;
    lens.iter().map(|&s| layers * block_flops(cfg, s)).sum()
}

/// The unembedding (`[n, d] x [d, V]`) of `n` rows.
pub fn unembed_flops(cfg: &Config, n: usize) -> f64 {
    2.0 * cfg.hidden_size as f64 * cfg.vocab_size as f64 * n as f64
}

/// Task (c): per example fed `fed[i]` tokens with `targets[i]` target tokens.
pub fn gradient_flops(cfg: &Config, fed: &[usize], targets: &[usize]) -> f64 {
    fed.iter()
        .zip(targets)
        .map(|(&s, &n_t)| {
            forward_flops(cfg, &[s]) + 2.0 * block_flops(cfg, s) + 2.0 * unembed_flops(cfg, n_t)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2() -> Config {
        // SmolLM2-135M: tied embeddings, no biases.
        Config::from_json(
            r#"{"model_type":"llama","vocab_size":49152,"hidden_size":576,"intermediate_size":1536,
            "num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,
            "tie_word_embeddings":true}"#,
        )
        .unwrap()
    }

    #[test]
    fn linear_flops_are_twice_the_layer_weights_per_token() {
        let cfg = smollm2();
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

    #[test]
    fn gradient_flops_add_the_last_blocks_backward_and_two_unembeddings() {
        let cfg = smollm2();
        let (l, s, n_t) = (cfg.num_hidden_layers as f64, 100, 64);
        let want = (l + 2.0) * block_flops(&cfg, s) + 4.0 * 576.0 * 49152.0 * n_t as f64;
        let got = gradient_flops(&cfg, &[s, s], &[n_t, n_t]);
        assert!(
            (got - 2.0 * want).abs() <= 1e-9 * got,
            "{got} vs {}",
            2.0 * want
        );
    }
}
