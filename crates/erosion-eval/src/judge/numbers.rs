//! The exact distribution of the number a judge model's reply begins with.
//!
//! For a judge prompt x and n in 0..=100,
//!
//!   P(n) = sum over token paths t_1..t_k spelling n (see [`super::digits`]) of
//!          p(t_1..t_k | x) * [ends inside t_k ? 1 : sum_{u: u does not start with a digit} p(u | x, t_1..t_k)].
//!
//! The paths form a prefix tree: its root is x, an edge is a digit-bearing token, and a node
//! whose digits are a number of the scale and whose last token does not end the number is a
//! prefix to extend. The tree is walked level by level: x runs once through the model into a
//! KV cache, and every node of a level is one row of a batched cached forward pass (the cache
//! repeated per row, the node's path left-padded under a mask), which gives the node's
//! next-token distribution, hence its end mass and its children. Digit strings that are no
//! number of the scale ("05", "101") are not extended: their mass is non-number mass.
//!
//! A node whose path probability is under `min_prefix_prob` is not extended; its probability
//! is added to `unexpanded`, which bounds the mass left out of sum_n P(n). With
//! `min_prefix_prob = 0` every prefix is extended and P(n) is exact (up to float rounding).

use anyhow::{bail, Context, Result};
use candle_core::{DType, IndexOp, Tensor};
use erosion_analysis::behaviour::log_softmax;
use erosion_model::transformer::{ForwardOptions, KvCache, Transformer};

use super::digits::{is_score, parse, DigitVocab, MAX_SCORE};

/// How the tree is walked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TreeOptions {
    /// Prefixes less probable than this are not extended (their mass goes to `unexpanded`).
    pub min_prefix_prob: f64,
    /// Bytes of repeated KV cache one batched pass may hold (bounds the rows per pass).
    pub cache_bytes: usize,
}

impl Default for TreeOptions {
    fn default() -> Self {
        Self {
            min_prefix_prob: 1e-9,
            cache_bytes: 512 << 20,
        }
    }
}

/// The judge's number distribution after one prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct NumberProbs {
    /// P(n) for n = 0..=100 (101 entries).
    pub p: Vec<f64>,
    /// Probability of the prefixes left unexpanded.
    pub unexpanded: f64,
    /// Next-token log-probabilities after the prompt (the reply's first token), `[vocab]`.
    pub first: Vec<f64>,
    /// Tree nodes run through the model (prefixes extended).
    pub nodes: usize,
}

/// A prefix to extend: its token path, the digits it spells and ln p(path | x).
struct Node {
    path: Vec<u32>,
    digits: String,
    log_p: f64,
}

/// Walks the tree after `prompt` (ids, the judge's generation prompt included).
pub fn number_probs(
    model: &Transformer,
    vocab: &DigitVocab,
    prompt: &[u32],
    opts: &TreeOptions,
) -> Result<NumberProbs> {
    if prompt.is_empty() {
        bail!("cannot score the reply to an empty prompt");
    }
    if vocab.starts_digit.len() != model.config().vocab_size {
        bail!(
            "the digit vocabulary has {} ids, the judge model {}",
            vocab.starts_digit.len(),
            model.config().vocab_size
        );
    }
    let device = model.device();
    let mut cache = model.new_cache();
    let ids = Tensor::new(prompt, device)?.unsqueeze(0)?;
    let logits = model.forward_cached(&ids, None, &mut cache, &mut ForwardOptions::fast())?;
    let first = row_log_probs(&logits.i((0, prompt.len() - 1))?)?;
    let mut out = NumberProbs {
        p: vec![0.0; MAX_SCORE as usize + 1],
        unexpanded: 0.0,
        first,
        nodes: 0,
    };
    let root = Node {
        path: Vec::new(),
        digits: String::new(),
        log_p: 0.0,
    };
    let mut level = Vec::new();
    let first = std::mem::take(&mut out.first);
    expand(&root, &first, &vocab.first, opts, &mut out, &mut level);
    out.first = first;
    let rows = rows_per_pass(model, prompt.len(), opts.cache_bytes);
    while !level.is_empty() {
        let mut next = Vec::new();
        for chunk in level.chunks(rows) {
            let lps = node_log_probs(model, &cache, chunk)
                .with_context(|| format!("judge prefixes of {} tokens", chunk[0].path.len()))?;
            for (node, lp) in chunk.iter().zip(&lps) {
                // The number ends here when the next token does not start with a digit.
                let end: f64 = lp
                    .iter()
                    .zip(&vocab.starts_digit)
                    .filter(|(_, &d)| !d)
                    .map(|(l, _)| l.exp())
                    .sum();
                out.p[parse(&node.digits) as usize] += node.log_p.exp() * end;
                expand(node, lp, &vocab.next, opts, &mut out, &mut next);
            }
        }
        out.nodes += level.len();
        level = next;
    }
    Ok(out)
}

/// The children of `node` (next-token log-probs `lp`) over `edges`: a number ending inside
/// the token is counted, a prefix to extend is pushed onto `level` (or left unexpanded).
fn expand(
    node: &Node,
    lp: &[f64],
    edges: &[super::digits::DigitToken],
    opts: &TreeOptions,
    out: &mut NumberProbs,
    level: &mut Vec<Node>,
) {
    for t in edges {
        let digits = format!("{}{}", node.digits, t.digits);
        if !is_score(&digits) {
            continue;
        }
        let log_p = node.log_p + lp[t.id as usize];
        let p = log_p.exp();
        if t.ends {
            out.p[parse(&digits) as usize] += p;
        } else if p >= opts.min_prefix_prob && p > 0.0 {
            let mut path = node.path.clone();
            path.push(t.id);
            level.push(Node {
                path,
                digits,
                log_p,
            });
        } else {
            out.unexpanded += p;
        }
    }
}

/// Rows of one batched pass: the prompt's KV cache is repeated per row.
fn rows_per_pass(model: &Transformer, prompt_len: usize, budget: usize) -> usize {
    let c = model.config();
    let per_row = 2 * c.num_hidden_layers * c.num_kv_heads() * c.head_dim() * prompt_len * 4;
    (budget / per_row.max(1)).clamp(1, 64)
}

/// Next-token log-probs after each node's path, from one cached pass over the prompt's cache
/// repeated per node; paths are left-padded (pads masked, positions count real tokens).
fn node_log_probs(model: &Transformer, prompt: &KvCache, nodes: &[Node]) -> Result<Vec<Vec<f64>>> {
    let b = nodes.len();
    let len = nodes.iter().map(|n| n.path.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(b * len);
    let mut mask = Vec::with_capacity(b * len);
    for n in nodes {
        let pad = len - n.path.len();
        ids.extend(std::iter::repeat_n(0u32, pad));
        ids.extend_from_slice(&n.path);
        mask.extend(std::iter::repeat_n(0f32, pad));
        mask.extend(std::iter::repeat_n(1f32, n.path.len()));
    }
    let device = model.device();
    let ids = Tensor::from_vec(ids, (b, len), device)?;
    let mask = Tensor::from_vec(mask, (b, len), device)?;
    let mut cache = prompt.repeat(b)?;
    let logits =
        model.forward_cached(&ids, Some(&mask), &mut cache, &mut ForwardOptions::fast())?;
    let last = logits.i((.., len - 1))?; // [b, vocab]
    (0..b).map(|r| row_log_probs(&last.i(r)?)).collect()
}

/// log_softmax of one logit row `[vocab]`, in f64.
fn row_log_probs(logits: &Tensor) -> Result<Vec<f64>> {
    let row = logits.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    log_softmax(&row)
}
