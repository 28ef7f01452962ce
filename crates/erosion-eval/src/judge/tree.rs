//! The prefix tree of token paths a judge's reply may begin with, walked by teacher-forced
//! forward passes: the machinery shared by the number judge ([`super::numbers`]) and the label
//! judge ([`super::labels`]).
//!
//! The root is the judge prompt x; an edge is a token; a node is a token path t_1..t_k with
//! ln p(t_1..t_k | x) = sum_i ln p(t_i | x, t_1..t_{i-1}). The tree is walked level by level:
//! x runs once through the model into a KV cache, and every node of a level is one row of a
//! batched cached forward pass (the cache repeated per row, the node's path left-padded under a
//! mask), which gives the node's next-token distribution. A caller's `visit` reads that
//! distribution (what ends at the node) and names the children to extend; a child whose path
//! probability is under `min_prefix_prob` (or 0) is not extended and its probability is added
//! to `unexpanded`, which bounds the mass the walk leaves out. With `min_prefix_prob = 0` every
//! child is extended and the walk is exact (up to float rounding).

use anyhow::{bail, Context, Result};
use candle_core::{DType, IndexOp, Tensor};
use erosion_analysis::behaviour::log_softmax;
use erosion_model::transformer::{ForwardOptions, KvCache, Transformer};

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

/// A node: its token path, ln p(path | x), and what the caller keeps of it (the text spelled).
pub struct Prefix<S> {
    pub path: Vec<u32>,
    pub log_p: f64,
    pub state: S,
}

impl<S> Prefix<S> {
    /// The child of `parent` (None: the root) by token `id` of log-prob `lp`.
    pub fn child(parent: Option<&Prefix<S>>, id: u32, lp: f64, state: S) -> Self {
        let (mut path, log_p) = parent.map_or((Vec::new(), 0.0), |p| (p.path.clone(), p.log_p));
        path.push(id);
        Prefix {
            path,
            log_p: log_p + lp,
            state,
        }
    }
}

/// What a walk saw besides what its visitor counted.
#[derive(Clone, Debug, PartialEq)]
pub struct Walk {
    /// Next-token log-probabilities after the prompt (the reply's first token), `[vocab]`.
    pub first: Vec<f64>,
    /// Probability of the children left unexpanded.
    pub unexpanded: f64,
    /// Nodes run through the model (the root not counted).
    pub nodes: usize,
}

/// Walks the tree after `prompt` (ids, the judge's generation prompt included). `visit(node,
/// lp, children)` is called for the root (`None`) and then for every extended node, in level
/// order, with the node's next-token log-probs `lp`; it pushes the children to extend.
pub fn walk<S>(
    model: &Transformer,
    prompt: &[u32],
    opts: &TreeOptions,
    mut visit: impl FnMut(Option<&Prefix<S>>, &[f64], &mut Vec<Prefix<S>>),
) -> Result<Walk> {
    if prompt.is_empty() {
        bail!("cannot score the reply to an empty prompt");
    }
    let device = model.device();
    let mut cache = model.new_cache();
    let ids = Tensor::new(prompt, device)?.unsqueeze(0)?;
    let logits = model.forward_cached(&ids, None, &mut cache, &mut ForwardOptions::fast())?;
    let first = row_log_probs(&logits.i((0, prompt.len() - 1))?)?;
    let mut out = Walk {
        first,
        unexpanded: 0.0,
        nodes: 0,
    };
    let mut level = Vec::new();
    let mut children = Vec::new();
    visit(None, &out.first, &mut children);
    keep(&mut children, opts, &mut out.unexpanded, &mut level);
    let rows = rows_per_pass(model, prompt.len(), opts.cache_bytes);
    while !level.is_empty() {
        let mut next = Vec::new();
        for chunk in level.chunks(rows) {
            let lps = node_log_probs(model, &cache, chunk)
                .with_context(|| format!("judge prefixes of {} tokens", chunk[0].path.len()))?;
            for (node, lp) in chunk.iter().zip(&lps) {
                visit(Some(node), lp, &mut children);
                keep(&mut children, opts, &mut out.unexpanded, &mut next);
            }
        }
        out.nodes += level.len();
        level = next;
    }
    Ok(out)
}

/// Moves `children` probable enough to extend onto `level`; adds the others to `unexpanded`.
fn keep<S>(
    children: &mut Vec<Prefix<S>>,
    opts: &TreeOptions,
    unexpanded: &mut f64,
    level: &mut Vec<Prefix<S>>,
) {
    for c in children.drain(..) {
        let p = c.log_p.exp();
        if p >= opts.min_prefix_prob && p > 0.0 {
            level.push(c);
        } else {
            *unexpanded += p;
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
fn node_log_probs<S>(
    model: &Transformer,
    prompt: &KvCache,
    nodes: &[Prefix<S>],
) -> Result<Vec<Vec<f64>>> {
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
