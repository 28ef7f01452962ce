//! The training loop: one optimizer step is `grad_accum` micro-batches of `batch_size`
//! sequences; the loss is the mean cross-entropy over every target token of the step.
//!
//! ```text
//! h = norm(Blocks(embed(ids)))[rows]      differentiable, rows = positions that predict a target  [n, d]
//! logits = h W_U^T;  G = d loss / d logits  (closed form)                                        [n, vocab]
//! backward of sum(logits * stopgrad(G)) -> d loss / d theta, summed over micro-batches
//! clip ||g|| to max_grad_norm;  AdamW step with lr(t)
//! ```
//! The surrogate's gradient at the logits is exactly G, so candle's autograd never builds the
//! softmax over the vocabulary. Only the rows that carry loss are unembedded (a chat's prompt
//! costs no unembedding). Backward runs block by block, recomputing each block's forward pass
//! (recompute.rs), so a step holds one block's graph at a time.

use crate::adamw::AdamW;
use crate::batch::MicroBatch;
use crate::examples::TrainExample;
use crate::options::{Method, TrainOptions};
use crate::protect::Protector;
use crate::recompute;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use erosion_forward::batch::Progress;
use erosion_model::transformer::{LoraVars, Transformer, WeightVar};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// What one optimizer step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// 1-based: the step just taken.
    pub step: usize,
    /// Mean cross-entropy per target token (nats), before the update.
    pub loss: f64,
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// The protection penalty added to the loss (penalty method only).
    #[serde(default)]
    pub penalty: Option<f64>,
    /// Tokens fed (pads excluded) and tokens with loss.
    pub tokens: usize,
    pub target_tokens: usize,
    pub seconds: f64,
}

pub struct Trainer {
    model: Transformer,
    /// Trained tensors by name (Hugging Face names; for LoRA, PEFT's
    /// `{module}.lora_A.weight` / `.lora_B.weight`).
    params: Vec<(String, WeightVar)>,
    lora: Vec<LoraVars>,
    opt: AdamW,
    opts: TrainOptions,
    /// The permutation of the epoch last drawn, and which epoch it is.
    order: Option<(usize, Vec<usize>)>,
    protector: Option<Protector>,
}

impl Trainer {
    /// Prepares `model` for training: every weight is detached, then the trained ones become
    /// `Var`s (all of them, or fresh LoRA adapters).
    pub fn new(mut model: Transformer, opts: TrainOptions) -> Result<Self> {
        opts.validate()?;
        opts.check_model(model.config())?;
        for name in model.parameter_names() {
            let t = model.parameter(&name)?.detach();
            model.set_parameter(&name, t)?;
        }
        let (params, lora) = match &opts.method {
            Method::Full => {
                let params = model
                    .parameter_names()
                    .into_iter()
                    .map(|n| Ok((n.clone(), model.var(&n)?)))
                    .collect::<Result<Vec<_>>>()?;
                (params, Vec::new())
            }
            Method::Lora(cfg) => {
                let lora = model.add_lora(cfg)?;
                let params = lora
                    .iter()
                    .flat_map(|l| {
                        [
                            (
                                format!("{}.lora_A.weight", l.module),
                                WeightVar::plain(l.a.clone()),
                            ),
                            (
                                format!("{}.lora_B.weight", l.module),
                                WeightVar::plain(l.b.clone()),
                            ),
                        ]
                    })
                    .collect();
                (params, lora)
            }
        };
        let opt = AdamW::new(&params, opts.adamw)?;
        let protector = match &opts.protect {
            Some(p) => Some(Protector::new(p.clone(), &params, &model).context("the protection")?),
            None => None,
        };
        Ok(Self {
            model,
            params,
            lora,
            opt,
            opts,
            order: None,
            protector,
        })
    }

    pub fn options(&self) -> &TrainOptions {
        &self.opts
    }
    /// Optimizer steps taken.
    pub fn step(&self) -> usize {
        self.opt.steps_taken()
    }
    /// The model being trained (with its adapters attached, for LoRA).
    pub fn model(&self) -> &Transformer {
        &self.model
    }
    pub fn params(&self) -> &[(String, WeightVar)] {
        &self.params
    }
    pub fn lora(&self) -> &[LoraVars] {
        &self.lora
    }
    pub(crate) fn optimizer(&self) -> &AdamW {
        &self.opt
    }
    pub(crate) fn optimizer_mut(&mut self) -> &mut AdamW {
        &mut self.opt
    }

    /// The trained model as plain weights (adapters merged), detached from the graph.
    pub fn merged(&self) -> Result<Transformer> {
        let mut m = self.model.clone();
        m.merge_lora()?;
        for name in m.parameter_names() {
            let t = m.parameter(&name)?.detach().copy()?;
            m.set_parameter(&name, t)?;
        }
        Ok(m)
    }

    /// Indices into the data of the sequences of optimizer step `step` (0-based): consecutive
    /// slices of per-epoch permutations drawn from the seed, so any step's batch is known
    /// without replaying the ones before (what resuming needs).
    pub fn batch_indices(&mut self, n: usize, step: usize) -> Vec<usize> {
        let per = self.opts.sequences_per_step();
        (step * per..(step + 1) * per)
            .map(|p| {
                let epoch = p / n;
                if self.order.as_ref().map(|(e, _)| *e) != Some(epoch) {
                    let mut rng = ChaCha8Rng::seed_from_u64(self.opts.seed);
                    rng.set_stream(epoch as u64);
                    let mut perm: Vec<usize> = (0..n).collect();
                    perm.shuffle(&mut rng);
                    self.order = Some((epoch, perm));
                }
                self.order.as_ref().expect("drawn above").1[p % n]
            })
            .collect()
    }

    /// The step's mean loss per target token, tokens fed, and the gradient of each trained
    /// tensor (in `params()` order, each in its `Var`'s layout), summed over micro-batches of
    /// `batch_size`.
    pub fn loss_and_grads(&self, examples: &[&TrainExample]) -> Result<(f64, usize, Vec<Tensor>)> {
        let n_targets: usize = examples.iter().map(|e| e.n_targets()).sum();
        if n_targets == 0 {
            bail!("no token of the batch carries loss");
        }
        let weight = 1.0 / n_targets as f64;
        // Micro-batches of similar lengths waste little on padding (attention is quadratic in
        // the padded length); the step's loss does not depend on how it is split. Sorted
        // examples are dealt round-robin to the workers so each gets a similar share.
        let mut sorted = examples.to_vec();
        sorted.sort_by_key(|e| e.ids.len());
        let workers = self.opts.threads.max(1).min(sorted.len());
        let groups: Vec<Vec<&TrainExample>> = (0..workers)
            .map(|w| sorted.iter().skip(w).step_by(workers).copied().collect())
            .collect();
        let parts: Vec<Part> = if workers == 1 {
            vec![self.part(&groups[0], weight)?]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = groups
                    .iter()
                    .map(|g| scope.spawn(move || self.part(g, weight)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .map_err(|_| anyhow::anyhow!("a training worker panicked"))?
                    })
                    .collect::<Result<Vec<_>>>()
            })?
        };
        // Summed in worker order: the result depends on the thread count, never on timing.
        let (mut loss, mut tokens) = (0.0, 0);
        let mut acc: Vec<Option<Tensor>> = vec![None; self.params.len()];
        for part in parts {
            loss += part.loss;
            tokens += part.tokens;
            for (slot, g) in acc.iter_mut().zip(part.grads) {
                add_into(slot, g)?;
            }
        }
        let grads = acc
            .into_iter()
            .zip(&self.params)
            .map(|(g, (_, var))| match g {
                Some(g) => Ok(g),
                None => Ok(var.var().zeros_like()?),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((loss, tokens, grads))
    }

    /// One worker's share of a step: its examples in micro-batches of `batch_size`.
    fn part(&self, examples: &[&TrainExample], weight: f64) -> Result<Part> {
        let mut part = Part {
            loss: 0.0,
            tokens: 0,
            grads: vec![None; self.params.len()],
        };
        let device = self.model.device();
        for chunk in examples.chunks(self.opts.batch_size) {
            let mb = MicroBatch::new(chunk, device)?;
            part.tokens += mb.tokens;
            if mb.targets.is_empty() {
                continue;
            }
            let (loss, grads) = recompute::loss_and_grads(&self.model, &mb, weight, &self.params)?;
            part.loss += loss;
            for (slot, g) in part.grads.iter_mut().zip(grads) {
                add_into(slot, g)?;
            }
        }
        Ok(part)
    }

    /// One optimizer step on `examples`: gradients, clipping of their global norm, AdamW.
    pub fn train_step(&mut self, examples: &[&TrainExample]) -> Result<StepStats> {
        let start = Instant::now();
        let step = self.step();
        let (loss, tokens, mut grads) = self
            .loss_and_grads(examples)
            .with_context(|| format!("training step {}", step + 1))?;
        let penalty = match &self.protector {
            Some(p) => match p.penalty(&self.model).context("the protection penalty")? {
                Some((pen, value)) => {
                    let g = pen.backward()?;
                    for (acc, (_, var)) in grads.iter_mut().zip(&self.params) {
                        if let Some(gp) = g.get(var.var()) {
                            *acc = (&*acc + gp)?;
                        }
                    }
                    Some(value)
                }
                None => None,
            },
            None => None,
        };
        let norm = global_norm(&grads)?;
        if !norm.is_finite() || !loss.is_finite() {
            bail!(
                "step {}: the loss is {loss} and the gradient norm {norm}; lower the learning rate",
                step + 1
            );
        }
        let grads = match self.opts.max_grad_norm {
            Some(max) if norm > max => {
                let scale = max / (norm + 1e-6);
                grads
                    .into_iter()
                    .map(|g| Ok((g * scale)?))
                    .collect::<Result<Vec<_>>>()?
            }
            _ => grads,
        };
        let lr = self.opts.schedule().lr(step);
        let before = match &self.protector {
            Some(p) => p.snapshot(&self.params)?,
            None => Vec::new(),
        };
        self.opt.step(&grads, lr)?;
        if let Some(p) = &self.protector {
            p.project(&self.params, &before)?;
        }
        Ok(StepStats {
            step: step + 1,
            loss,
            lr,
            grad_norm: norm,
            penalty,
            tokens,
            target_tokens: examples.iter().map(|e| e.n_targets()).sum(),
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Trains from the current step to step `until` (at most `opts.steps`) on `data`, calling
    /// `after_step` after each step (for checkpoints). Reports to `progress` the sequences of
    /// the whole run (the steps already taken count as done) and each step's loss, learning
    /// rate and tokens per second.
    pub fn fit<F>(
        &mut self,
        data: &[TrainExample],
        until: usize,
        progress: &mut dyn Progress,
        mut after_step: F,
    ) -> Result<Vec<StepStats>>
    where
        F: FnMut(&Trainer, &StepStats) -> Result<()>,
    {
        if data.is_empty() {
            bail!("no training examples");
        }
        for (i, ex) in data.iter().enumerate() {
            ex.check(&format!("training example {i}"))?;
        }
        crate::examples::check_lengths(data, self.opts.max_seq_len)?;
        let total = self.opts.steps;
        let per = self.opts.sequences_per_step();
        progress.set_total(total * per);
        if self.step() > 0 {
            progress.advance(self.step() * per);
        }
        let mut stats = Vec::new();
        while self.step() < until.min(total) {
            let idx = self.batch_indices(data.len(), self.step());
            let batch: Vec<&TrainExample> = idx.iter().map(|&i| &data[i]).collect();
            let s = self.train_step(&batch)?;
            progress.message(&format!(
                "loss {:.4}  lr {:.2e}  {:.0} tok/s",
                s.loss,
                s.lr,
                s.tokens as f64 / s.seconds.max(1e-9)
            ));
            progress.advance(per);
            after_step(self, &s)?;
            stats.push(s);
        }
        Ok(stats)
    }
}

/// One worker's loss, tokens fed and gradients.
struct Part {
    loss: f64,
    tokens: usize,
    grads: Vec<Option<Tensor>>,
}

pub(crate) fn add_into(slot: &mut Option<Tensor>, g: Option<Tensor>) -> Result<()> {
    if let Some(g) = g {
        *slot = Some(match slot.take() {
            Some(a) => (a + g)?,
            None => g,
        });
    }
    Ok(())
}

/// `sqrt(sum_i ||g_i||^2)`, accumulated in f64.
fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let mut sum = 0.0;
    for g in grads {
        sum += g
            .to_dtype(DType::F64)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    Ok(sum.sqrt())
}
