//! Everything a training run depends on besides the model and the data.

use crate::adamw::AdamWConfig;
use crate::examples::LossOn;
use crate::protect::Protection;
use crate::schedule::Schedule;
use anyhow::{bail, Result};
use erosion_model::transformer::LoraConfig;
use serde::{Deserialize, Serialize};

/// Which weights train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Method {
    /// Every weight.
    Full,
    /// Low-rank adapters on chosen projections; the rest is frozen. Merged into the weights on save.
    Lora(LoraConfig),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOptions {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per micro-batch (one forward and backward pass).
    pub batch_size: usize,
    /// Micro-batches per optimizer step; the loss is the mean over every target token of the step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    pub warmup_steps: usize,
    /// The cosine ends at `lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
    /// Longer sequences are cut.
    pub max_seq_len: usize,
    pub loss_on: LossOn,
    pub method: Method,
    /// Workers that share each step's micro-batches (data parallelism on CPU; run candle's
    /// own kernels single-threaded then, `CANDLE_NUM_THREADS=1`). The weights depend on this
    /// number (the order of a floating-point sum), never on timing.
    #[serde(default = "one")]
    pub threads: usize,
    /// Draws the order of examples (and LoRA's initialisation through its own seed).
    pub seed: u64,
    /// Write a resumable checkpoint every this many steps (`None`: only at the end).
    pub save_every: Option<usize>,
    /// Directions of the residual stream to keep (`None`: plain fine-tuning).
    #[serde(default)]
    pub protect: Option<Protection>,
}

fn one() -> usize {
    1
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            steps: 100,
            batch_size: 8,
            grad_accum: 1,
            lr: 1e-4,
            warmup_steps: 10,
            min_lr_ratio: 0.0,
            adamw: AdamWConfig::default(),
            max_grad_norm: Some(1.0),
            max_seq_len: 1024,
            loss_on: LossOn::Response,
            method: Method::Full,
            threads: 1,
            seed: 0,
            save_every: None,
            protect: None,
        }
    }
}

impl TrainOptions {
    pub fn schedule(&self) -> Schedule {
        Schedule {
            peak: self.lr,
            warmup: self.warmup_steps,
            total: self.steps,
            min_ratio: self.min_lr_ratio,
        }
    }

    /// Sequences per optimizer step.
    pub fn sequences_per_step(&self) -> usize {
        self.batch_size * self.grad_accum
    }

    /// Steps for `epochs` passes over `n` examples (at least one).
    pub fn steps_for_epochs(&self, epochs: f64, n: usize) -> usize {
        ((epochs * n as f64) / self.sequences_per_step() as f64)
            .ceil()
            .max(1.0) as usize
    }

    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 || self.batch_size == 0 || self.grad_accum == 0 {
            bail!("steps, batch_size and grad_accum must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("the learning rate must be positive, not {}", self.lr);
        }
        if self.max_seq_len < 2 {
            bail!("max_seq_len must be at least 2");
        }
        if let Some(c) = self.max_grad_norm {
            if c.is_nan() || c <= 0.0 {
                bail!("max_grad_norm must be positive, not {c}");
            }
        }
        Ok(())
    }
}
