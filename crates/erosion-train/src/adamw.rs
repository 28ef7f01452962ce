//! AdamW (Loshchilov & Hutter) as `torch.optim.AdamW` computes it, with moments that can be
//! saved and restored (candle-nn's AdamW keeps them private, so a resumed run could not continue
//! exactly):
//!
//! ```text
//! theta <- theta (1 - lr wd)                       decoupled weight decay (matrices only)
//! m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
//! theta <- theta - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//! Weight decay applies to weight matrices only, not to norms' gains and biases (as
//! transformers' Trainer and nanoGPT do).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use erosion_model::transformer::WeightVar;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// torch's defaults, except weight decay 0 (transformers' Trainer default).
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

struct Slot {
    name: String,
    var: WeightVar,
    decay: bool,
    /// First and second moments, f32 (f64 for f64 weights).
    m: Tensor,
    v: Tensor,
}

pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    /// Steps taken.
    t: usize,
}

impl AdamW {
    /// The moments live in each `Var`'s layout (updates are element-wise) and are saved and
    /// restored in Hugging Face's orientation, as torch's would be.
    pub fn new(params: &[(String, WeightVar)], cfg: AdamWConfig) -> Result<Self> {
        let slots = params
            .iter()
            .map(|(name, w)| {
                let var = w.var();
                let dtype = moment_dtype(var.dtype());
                let zeros = Tensor::zeros(var.shape(), dtype, var.device())?;
                Ok(Slot {
                    name: name.clone(),
                    var: w.clone(),
                    decay: var.rank() >= 2,
                    m: zeros.clone(),
                    v: zeros,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { cfg, slots, t: 0 })
    }

    pub fn steps_taken(&self) -> usize {
        self.t
    }

    /// One update with learning rate `lr`; `grads[i]` is the gradient of `params[i]`.
    pub fn step(&mut self, grads: &[Tensor], lr: f64) -> Result<()> {
        if grads.len() != self.slots.len() {
            bail!(
                "{} gradients for {} parameters",
                grads.len(),
                self.slots.len()
            );
        }
        self.t += 1;
        let AdamWConfig {
            beta1: b1,
            beta2: b2,
            eps,
            weight_decay: wd,
        } = self.cfg;
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2_sqrt = (1.0 - b2.powi(self.t as i32)).sqrt();
        for (slot, g) in self.slots.iter_mut().zip(grads) {
            let dtype = slot.m.dtype();
            let g = g.to_dtype(dtype)?;
            slot.m = ((&slot.m * b1)? + (&g * (1.0 - b1))?)?;
            slot.v = ((&slot.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let denom = ((slot.v.sqrt()? / bc2_sqrt)? + eps)?;
            let update = ((&slot.m / &denom)? * (lr / bc1))?;
            let var = slot.var.var();
            let theta = var.as_tensor().detach().to_dtype(dtype)?;
            let theta = if slot.decay && wd > 0.0 {
                (theta * (1.0 - lr * wd))?
            } else {
                theta
            };
            let new = (theta - update)?.to_dtype(var.dtype())?;
            var.set(&new)?;
        }
        Ok(())
    }

    /// The moments, as `exp_avg.{name}` and `exp_avg_sq.{name}` (torch's names).
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for s in &self.slots {
            out.insert(format!("exp_avg.{}", s.name), s.var.oriented(&s.m)?);
            out.insert(format!("exp_avg_sq.{}", s.name), s.var.oriented(&s.v)?);
        }
        Ok(out)
    }

    /// Restores moments saved by [`AdamW::state`] after `t` steps.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, t: usize) -> Result<()> {
        for s in &mut self.slots {
            for (key, slot) in [("exp_avg", &mut s.m), ("exp_avg_sq", &mut s.v)] {
                let name = format!("{key}.{}", s.name);
                let saved = state
                    .get(&name)
                    .with_context(|| format!("the optimizer state has no `{name}`"))?;
                // Saved in Hugging Face's orientation, held in the Var's layout.
                let want = s.var.oriented(slot)?;
                if saved.dims() != want.dims() {
                    bail!(
                        "optimizer state `{name}` is {:?}, the parameter {:?}",
                        saved.dims(),
                        want.dims()
                    );
                }
                let saved = s.var.oriented(saved)?;
                *slot = (saved.to_dtype(slot.dtype())?.to_device(slot.device())?).contiguous()?;
            }
        }
        self.t = t;
        Ok(())
    }
}

fn moment_dtype(param: DType) -> DType {
    if param == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Two steps on f(x) = sum(x^2) checked against the formulas worked by hand (f64).
    #[test]
    fn matches_the_update_worked_by_hand() -> Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::new(&[[1.0f64, -2.0]], &dev)?)?;
        let b = Var::from_tensor(&Tensor::new(&[0.5f64], &dev)?)?;
        let params = [
            ("w".to_string(), WeightVar::plain(w.clone())),
            ("b".to_string(), WeightVar::plain(b.clone())),
        ];
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = AdamW::new(&params, cfg)?;
        let (lr, mut x, mut y) = (0.01, [1.0f64, -2.0], 0.5f64);
        let (mut m, mut v) = ([0.0f64; 3], [0.0f64; 3]);
        for t in 1..=2 {
            let grads = [
                Tensor::new(&[[2.0 * x[0], 2.0 * x[1]]], &dev)?,
                Tensor::new(&[2.0 * y], &dev)?,
            ];
            opt.step(&grads, lr)?;
            let g = [2.0 * x[0], 2.0 * x[1], 2.0 * y];
            let mut p = [x[0] * (1.0 - lr * 0.1), x[1] * (1.0 - lr * 0.1), y]; // no decay on b
            for i in 0..3 {
                m[i] = 0.9 * m[i] + 0.1 * g[i];
                v[i] = 0.99 * v[i] + 0.01 * g[i] * g[i];
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = (v[i] / (1.0 - 0.99f64.powi(t))).sqrt();
                p[i] -= lr * mh / (vh + 1e-8);
            }
            (x, y) = ([p[0], p[1]], p[2]);
        }
        let got = w.as_tensor().flatten_all()?.to_vec1::<f64>()?;
        assert!(
            (got[0] - x[0]).abs() < 1e-14 && (got[1] - x[1]).abs() < 1e-14,
            "{got:?} vs {x:?}"
        );
        assert!((b.as_tensor().to_vec1::<f64>()?[0] - y).abs() < 1e-14);
        // Restoring the state into a fresh optimizer continues identically.
        let mut again = AdamW::new(&params, cfg)?;
        again.load_state(&opt.state()?, opt.steps_taken())?;
        assert_eq!(again.steps_taken(), 2);
        Ok(())
    }
}
