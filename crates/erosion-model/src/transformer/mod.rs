//! The decoder of every family in [`crate::family`], one implementation driven by Hugging
//! Face's `config.json` and the family's facts, with TransformerLens-style hook points (see
//! [`crate::hooks`]).
//!
//! ```text
//! x_0 = embed_tokens[ids] (* sqrt(d_model), Gemma)         [b, s, d_model]
//! x_{l+1} = Block_l(x_l)   (pre-norm attention + gated MLP; block.rs)
//! logits = norm(x_L) W_lm^T                                [b, s, vocab]
//! logits = c tanh(logits / c)   (final_logit_softcapping c, Gemma 2)
//! ```
//! Weights keep Hugging Face's names (`model.layers.{i}.self_attn.q_proj.weight`, ...;
//! [`Transformer::parameter`]). Padding is handled by the attention mask: positions and
//! attention come from it (context.rs), so a padded batch equals its sequences run one by one.
//!
//! Two modes: [`ForwardMode::Fast`] uses candle's fused softmax / RMS norm / RoPE kernels,
//! which have no backward pass (gradients through them are silently dropped);
//! [`ForwardMode::Differentiable`] computes the same functions with plain ops, whose gradients
//! are correct. The pieces (`embed`, `run_layers`, `final_norm`, `unembed`) let an analysis
//! run the lower layers fast and without a graph, and only the upper ones differentiably.

mod attention;
mod block;
mod block_attention;
mod context;
mod cpu_kernel;
mod fast_exp;
mod frozen_product;
mod kv_cache;
mod layers;
mod lora;
pub mod matrix;
mod mlp;
mod params;
mod rope;
mod softmax;
mod stream;
mod swiglu;

pub use attention::Attention;
pub use block::Block;
pub use context::{BatchContext, LocalAttention};
pub use kv_cache::KvCache;
pub use layers::{Linear, RmsNorm};
pub use lora::{LoraAdapter, LoraConfig, LoraVars};
pub use matrix::MatrixRows;
pub use mlp::Mlp;
pub use params::WeightVar;
pub use rope::Rope;

use crate::config::Config;
use crate::family::{Family, Norms};
use crate::hooks::{HookPoint, Hooks, Site};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};
use matrix::Matrix;
use std::ops::Range;
use std::sync::Arc;

/// Which kernels a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardMode {
    /// Fused kernels; no gradients flow through softmax, norms or RoPE.
    #[default]
    Fast,
    /// Composite ops with correct backward passes. Softmax and norms are slower (softmax about
    /// 3x), but matmuls dominate a pass, which costs about the same as a fast one.
    Differentiable,
}

/// How to run a forward pass: the mode, and optionally hooks.
#[derive(Debug, Default)]
pub struct ForwardOptions<'h> {
    pub mode: ForwardMode,
    pub hooks: Option<&'h mut Hooks>,
}

impl<'h> ForwardOptions<'h> {
    pub fn fast() -> Self {
        ForwardOptions {
            mode: ForwardMode::Fast,
            hooks: None,
        }
    }

    pub fn differentiable() -> Self {
        ForwardOptions {
            mode: ForwardMode::Differentiable,
            hooks: None,
        }
    }

    pub fn hooks(mut self, hooks: &'h mut Hooks) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// Runs the hooks at `point` on `x` (nothing at all without hooks).
    #[inline]
    pub(crate) fn hook(&mut self, point: HookPoint, x: Tensor) -> Result<Tensor> {
        match self.hooks.as_deref_mut() {
            None => Ok(x),
            Some(h) => h.run(point, x),
        }
    }

    /// Whether a hook is registered at `point`.
    fn is_active(&self, point: HookPoint) -> bool {
        self.hooks.as_deref().is_some_and(|h| h.is_active(point))
    }

    /// Like `hook`, for an `[b, H, s, d]` tensor hooked in the `[b, s, H, d]` layout.
    fn hook_transposed(&mut self, point: HookPoint, x: Tensor) -> Result<Tensor> {
        match self.hooks.as_deref_mut() {
            Some(h) if h.is_active(point) => Ok(h
                .run(point, x.transpose(1, 2)?)?
                .transpose(1, 2)?
                .contiguous()?),
            _ => Ok(x),
        }
    }

    fn check(&self, n_layers: usize) -> Result<()> {
        match &self.hooks {
            Some(h) if h.n_layers() != n_layers => {
                bail!(
                    "the hooks were made for {} layers but the model has {n_layers}",
                    h.n_layers()
                )
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Transformer {
    cfg: Config,
    family: &'static Family,
    /// `model.embed_tokens.weight` `[vocab, d_model]`
    embed_tokens: Matrix,
    blocks: Vec<Block>,
    /// `model.norm`
    norm: RmsNorm,
    /// `lm_head.weight` `[vocab, d_model]`; `None` when tied to the embeddings.
    lm_head: Option<Matrix>,
    rope: Rope,
    /// Where the blocks are read from when the model is streamed (`blocks` then holds only
    /// those from [`Transformer::hold_layers_from`]'s layer on, none at first).
    stream: Option<stream::BlockStream>,
    /// The RoPE and window of sliding-window layers, when the model has any.
    local: Option<LocalAttention>,
    /// `sqrt(d_model)` in the model dtype, when the family scales its embeddings.
    embed_scale: Option<Tensor>,
    dtype: DType,
    device: Device,
}

impl Transformer {
    /// Builds the model from weights under Hugging Face's names, in `vb`'s dtype and on its
    /// device. With `VarBuilder::from_varmap` the weights are `Var`s, initialised as
    /// transformers does (normal(0, 0.02), norms 1, biases 0) when the map lacks them.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Self::build(cfg, vb, None)
    }

    /// A model whose blocks stay in `vb` (a backend that reads each tensor when asked, see
    /// [`Checkpoint::load_streamed`](crate::load::Checkpoint::load_streamed)) and are read
    /// when a pass reaches them; the embedding and unembedding rows are read from `rows` as a
    /// pass needs them ([`matrix`]); the final norm is read now.
    pub fn new_streamed(
        cfg: &Config,
        vb: VarBuilder<'static>,
        rows: Arc<dyn MatrixRows>,
    ) -> Result<Self> {
        Self::build(cfg, vb.clone(), Some((vb.pp("model"), rows)))
    }

    /// The model, its blocks read from `vb` now, or left to `stream_from` (`model`, and the
    /// embeddings' rows).
    fn build(
        cfg: &Config,
        vb: VarBuilder,
        stream_from: Option<(VarBuilder<'static>, Arc<dyn MatrixRows>)>,
    ) -> Result<Self> {
        cfg.validate()?;
        let family = cfg.family()?;
        let (d, v) = (cfg.hidden_size, cfg.vocab_size);
        let m = vb.pp("model");
        // `[vocab, d_model]` `name`: held, or left in the checkpoint when streamed.
        let matrix = |name: &'static str, context: &'static str| -> Result<Matrix> {
            let Some((_, rows)) = &stream_from else {
                let (module, leaf) = name.rsplit_once('.').expect("a dotted name");
                let init = Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                };
                let vb = vb.pp(module);
                return Ok(Matrix::Held(
                    vb.get_with_hints((v, d), leaf, init).context(context)?,
                ));
            };
            let shape = rows.shape(name).context(context)?;
            if shape != [v, d] {
                bail!("{context}: its shape is {shape:?}, the config gives [{v}, {d}]");
            }
            Ok(Matrix::Streamed {
                name,
                rows: v,
                cols: d,
                source: rows.clone(),
            })
        };
        let embed_tokens = matrix(
            "model.embed_tokens.weight",
            "weight model.embed_tokens.weight",
        )?;
        let windows = family.layer_windows(cfg);
        let (blocks, stream) = match stream_from.as_ref().map(|(vb, _)| vb.clone()) {
            None => {
                let blocks = (windows.iter().enumerate())
                    .map(|(i, w)| {
                        Block::new(cfg, &m.pp(format!("layers.{i}")), w.is_some())
                            .with_context(|| format!("loading layer {i}"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                (blocks, None)
            }
            Some(vb) => {
                let sliding = windows.iter().map(Option::is_some).collect();
                (Vec::new(), Some(stream::BlockStream::new(vb, sliding)))
            }
        };
        let norm = RmsNorm::new(&m.pp("norm"), d, cfg.rms_norm_eps, family.norm_gain)?;
        let lm_head = (!cfg.tie_word_embeddings)
            .then(|| {
                matrix(
                    "lm_head.weight",
                    "weight lm_head.weight (the config says the embeddings are not tied)",
                )
            })
            .transpose()?;
        let local = windows
            .iter()
            .flatten()
            .next()
            .map(|&window| LocalAttention {
                rope: Rope::local(cfg),
                window,
            });
        // transformers rounds the scale to the model dtype before multiplying.
        let embed_scale = family
            .scale_embeddings
            .then(|| Tensor::new((d as f64).sqrt(), vb.device())?.to_dtype(vb.dtype()))
            .transpose()?;
        Ok(Transformer {
            cfg: cfg.clone(),
            family,
            embed_tokens,
            blocks,
            norm,
            lm_head,
            rope: Rope::new(cfg),
            stream,
            local,
            embed_scale,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn family(&self) -> &'static Family {
        self.family
    }
    pub fn n_layers(&self) -> usize {
        self.stream
            .as_ref()
            .map_or(self.blocks.len(), |s| s.sliding.len())
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// Hooks sized for this model.
    pub fn hooks(&self) -> Hooks {
        let mut absent = Vec::new();
        if !self.family.qk_norm {
            absent.extend([Site::QNormed, Site::KNormed]);
        }
        if self.family.norms != Norms::Sandwich {
            absent.extend([Site::Ln1PostNormalized, Site::Ln2PostNormalized]);
        }
        Hooks::without_sites(self.n_layers(), absent)
    }

    /// Logits `[batch, seq, vocab]` (model dtype) at every position for `ids` `[batch, seq]`
    /// (u32) and `mask` `[batch, seq]` (1 = token, 0 = pad; `None` = no padding). Rows of pad
    /// positions are finite but meaningless.
    pub fn forward(
        &self,
        ids: &Tensor,
        mask: Option<&Tensor>,
        opts: &mut ForwardOptions,
    ) -> Result<Tensor> {
        let normed = self.final_hidden(ids, mask, opts)?;
        self.unembed(&normed, opts)
    }

    /// The final normalised hidden states `[batch, seq, d_model]` (what `unembed` reads), for
    /// callers that need logits at a few positions only.
    pub fn final_hidden(
        &self,
        ids: &Tensor,
        mask: Option<&Tensor>,
        opts: &mut ForwardOptions,
    ) -> Result<Tensor> {
        let (b, s) = ids.dims2().context("input ids must be [batch, seq]")?;
        let ctx = self.context(mask, b, s)?;
        let x = self.embed(ids, opts)?;
        let x = self.run_layers(x, 0..self.n_layers(), &ctx, opts)?;
        self.final_norm(&x, opts)
    }

    /// Positions and attention bias for a `[batch, seq]` input with this mask.
    pub fn context(&self, mask: Option<&Tensor>, batch: usize, seq: usize) -> Result<BatchContext> {
        self.batch_context(&context::mask_rows(mask, batch, seq)?, seq)
    }

    /// The context of `seq` new tokens whose keys (cached and new) are `rows`.
    fn batch_context(&self, rows: &[Vec<u8>], seq: usize) -> Result<BatchContext> {
        let local = self.local.as_ref();
        BatchContext::new(&self.rope, local, rows, seq, self.dtype, &self.device)
    }

    /// Token embeddings `[batch, seq, d_model]`, scaled by `sqrt(d_model)` in Gemma (hook
    /// `hook_embed`).
    pub fn embed(&self, ids: &Tensor, opts: &mut ForwardOptions) -> Result<Tensor> {
        opts.check(self.n_layers())?;
        let (b, s) = ids.dims2().context("input ids must be [batch, seq]")?;
        if b == 0 || s == 0 {
            bail!("empty input ids [{b}, {s}]");
        }
        let ids = ids.to_dtype(DType::U32)?;
        let max = ids.max_all()?.to_scalar::<u32>()? as usize;
        if max >= self.cfg.vocab_size {
            bail!(
                "token id {max} is outside the vocabulary (vocab_size {})",
                self.cfg.vocab_size
            );
        }
        let x = self
            .embed_tokens
            .gather(&ids.flatten_all()?, self.dtype)?
            .reshape((b, s, ()))?;
        let x = match &self.embed_scale {
            Some(scale) => x.broadcast_mul(scale)?,
            None => x,
        };
        opts.hook(HookPoint::Embed, x)
    }

    /// Runs blocks `layers` on the residual stream `[batch, seq, d_model]`.
    pub fn run_layers(
        &self,
        mut x: Tensor,
        layers: Range<usize>,
        ctx: &BatchContext,
        opts: &mut ForwardOptions,
    ) -> Result<Tensor> {
        opts.check(self.n_layers())?;
        self.check_layers(&layers)?;
        for l in layers.clone() {
            x = self.block(l)?.forward(x, ctx, l, opts, None)?;
        }
        check_finite(&x, layers)?;
        Ok(x)
    }

    fn check_layers(&self, layers: &Range<usize>) -> Result<()> {
        if layers.end > self.n_layers() || layers.start > layers.end {
            bail!(
                "layers {layers:?} are out of range: the model has {} layers",
                self.n_layers()
            );
        }
        Ok(())
    }

    /// `model.norm` (hook `ln_final.hook_normalized`).
    pub fn final_norm(&self, x: &Tensor, opts: &mut ForwardOptions) -> Result<Tensor> {
        let y = self.norm.forward(x, opts.mode)?;
        opts.hook(HookPoint::LnFinal, y)
    }

    /// `lm_head`: `[..., d_model] -> [..., vocab]`, soft-capped where the config says so
    /// (hook `hook_logits`).
    pub fn unembed(&self, x: &Tensor, opts: &mut ForwardOptions) -> Result<Tensor> {
        let w = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        let logits = w.project(x, self.dtype)?;
        let logits = match self.cfg.final_logit_softcapping {
            Some(cap) => ((logits / cap)?.tanh()? * cap)?,
            None => logits,
        };
        opts.hook(HookPoint::Logits, logits)
    }

    /// The unembedding matrix `[vocab, d_model]` (`lm_head.weight`, or the tied embedding),
    /// read whole from the files when the model is streamed.
    pub fn unembedding(&self) -> Result<Tensor> {
        let w = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        w.whole(self.dtype, &self.device)
    }

    /// An empty KV cache for [`Transformer::forward_cached`].
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.n_layers())
    }

    /// Feeds `ids` `[batch, seq]` after the tokens already in `cache` and returns the logits
    /// of the new tokens `[batch, seq, vocab]`; equal to the matching rows of a full forward
    /// over everything fed so far. `mask` marks pads among the new tokens (left-pad prompts).
    /// Fast mode only; hook positions refer to the columns of `ids`.
    pub fn forward_cached(
        &self,
        ids: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        opts: &mut ForwardOptions,
    ) -> Result<Tensor> {
        let x = self.feed_cached(ids, mask, cache, opts)?;
        self.unembed(&x, opts)
    }

    /// [`Transformer::forward_cached`] that unembeds only the last column: the logits
    /// `[batch, vocab]` a decoder needs after a (left-padded) prompt, without the
    /// `[batch, seq, vocab]` of every prompt position.
    pub fn prefill(
        &self,
        ids: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        opts: &mut ForwardOptions,
    ) -> Result<Tensor> {
        let x = self.feed_cached(ids, mask, cache, opts)?; // [b, s, d]
        let last = x.dim(1)? - 1;
        let logits = self.unembed(&x.narrow(1, last, 1)?, opts)?; // [b, 1, vocab]
        Ok(logits.squeeze(1)?)
    }

    /// The final-normed hidden states `[batch, seq, d]` of `ids` fed after `cache`.
    fn feed_cached(
        &self,
        ids: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        opts: &mut ForwardOptions,
    ) -> Result<Tensor> {
        if opts.mode != ForwardMode::Fast {
            bail!("the KV-cache path computes no gradients: use ForwardMode::Fast");
        }
        // Each new token would read every block from the checkpoint again.
        self.resident("cannot decode token by token")?;
        let (b, s) = ids.dims2().context("input ids must be [batch, seq]")?;
        let new_rows = context::mask_rows(mask, b, s)?;
        if cache.is_empty() {
            cache.mask = vec![Vec::new(); b];
            cache.layers.resize(self.n_layers(), Default::default());
        } else if cache.mask.len() != b {
            bail!(
                "the cache holds {} sequences but {b} were given",
                cache.mask.len()
            );
        }
        let mut rows = cache.mask.clone();
        rows.iter_mut().zip(new_rows).for_each(|(r, n)| r.extend(n));
        let ctx = self.batch_context(&rows, s)?;
        let mut x = self.embed(ids, opts)?;
        for (l, kv) in cache.layers.iter_mut().enumerate() {
            x = self.block(l)?.forward(x, &ctx, l, opts, Some(kv))?;
        }
        check_finite(&x, 0..self.n_layers())?;
        cache.mask = rows;
        self.final_norm(&x, opts)
    }
}

/// An error unless every value of the residual stream `x` after blocks `layers` is finite.
/// Weights are checked when they load, so a NaN or an infinity here comes from an overflow (an
/// adapter scaled far beyond its training, a huge steering edit, bf16's range): without this,
/// it would flow on into log-probs, activations and gradients as numbers. One sum of the
/// stream per pass (NaN and infinities survive a sum; finite values of a working model do not
/// add up to f32's 3.4e38).
fn check_finite(x: &Tensor, layers: Range<usize>) -> Result<()> {
    let total = x.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    if !total.is_finite() {
        bail!(
            "the residual stream after blocks {layers:?} holds NaN or infinite values: the \
             computation overflowed (an adapter scale, a steering edit or a weight far larger \
             than the model was trained with; or bf16's range)"
        );
    }
    Ok(())
}
