//! LoRA (Hu et al., 2021): a frozen linear map plus a trained low-rank update,
//!
//! ```text
//! y = x W^T + s (x A^T) B^T        A [r, in], B [out, r], s = alpha / r
//! ```
//! initialised as PEFT does (A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0, so training starts from the
//! unchanged model) and merged into the weight on save: `W' = W + s B A`. Adapters are named as
//! PEFT names them (`model.layers.{i}.self_attn.q_proj` + `.lora_A.weight` / `.lora_B.weight`).
//! Adapters that PEFT (or `erosion train`) saved are put on a model by `load::adapter`, through
//! [`Transformer::set_lora`]; [`Transformer::lora`] reads them back.

use super::layers::Linear;
use super::params::{linear_mut, LINEARS};
use super::Transformer;
use anyhow::{bail, Result};
use candle_core::{Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which linear maps get adapters, and their size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// r
    pub rank: usize,
    /// The update is scaled by alpha / r.
    pub alpha: f64,
    /// Module names, as PEFT's `target_modules`: `q_proj`, `k_proj`, `v_proj`, `o_proj`,
    /// `gate_proj`, `up_proj`, `down_proj`.
    pub targets: Vec<String>,
    /// Seed of A's initialisation.
    pub seed: u64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            targets: ["q_proj", "k_proj", "v_proj", "o_proj"]
                .map(String::from)
                .to_vec(),
            seed: 0,
        }
    }
}

/// The trained part of one adapted linear map.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// `lora_A.weight` `[r, in]`
    pub a: Tensor,
    /// `lora_B.weight` `[out, r]`
    pub b: Tensor,
    /// alpha / r
    pub scale: f64,
}

impl LoraAdapter {
    /// `s (x A^T) B^T`: `[n, in] -> [n, out]`. The rank-r bottleneck keeps it cheap.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = x.matmul(&self.a.t()?)?; // [n, r]
        Ok((h.matmul(&self.b.t()?)? * self.scale)?)
    }

    /// `s B A` `[out, in]`, the update to add to the weight.
    pub fn delta(&self) -> Result<Tensor> {
        Ok((self.b.matmul(&self.a)? * self.scale)?)
    }
}

/// One adapted module: its PEFT path and its two trained `Var`s.
#[derive(Debug, Clone)]
pub struct LoraVars {
    /// `model.layers.{i}.self_attn.q_proj`
    pub module: String,
    pub a: Var,
    pub b: Var,
}

impl Transformer {
    /// Attaches fresh adapters to every layer's `cfg.targets` and returns their `Var`s (in
    /// layer order, then target order). The model's own weights are left as they are; the
    /// caller trains only the returned `Var`s; `Var::set` on them changes the adapters in place
    /// (as when resuming from a saved adapter).
    pub fn add_lora(&mut self, cfg: &LoraConfig) -> Result<Vec<LoraVars>> {
        if cfg.rank == 0 {
            bail!("LoRA rank must be at least 1");
        }
        self.resident("cannot be trained")?;
        let slots = target_slots(&cfg.targets)?;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let (dtype, device) = (self.dtype, self.device.clone());
        let mut out = Vec::new();
        for (l, block) in self.blocks.iter_mut().enumerate() {
            for &j in &slots {
                let lin = linear_mut(block, j);
                if lin.lora.is_some() {
                    bail!("layer {l} {} already has an adapter", LINEARS[j]);
                }
                let (d_out, d_in) = lin.weight().dims2()?;
                let bound = 1.0 / (d_in as f64).sqrt();
                let a: Vec<f32> = (0..cfg.rank * d_in)
                    .map(|_| rng.random_range(-bound..bound) as f32)
                    .collect();
                let a = Var::from_tensor(
                    &Tensor::from_vec(a, (cfg.rank, d_in), &device)?.to_dtype(dtype)?,
                )?;
                let b = Var::from_tensor(&Tensor::zeros((d_out, cfg.rank), dtype, &device)?)?;
                lin.lora = Some(LoraAdapter {
                    a: a.as_tensor().clone(),
                    b: b.as_tensor().clone(),
                    scale: cfg.alpha / cfg.rank as f64,
                });
                out.push(LoraVars {
                    module: format!("model.layers.{l}.{}", LINEARS[j]),
                    a,
                    b,
                });
            }
        }
        Ok(out)
    }

    /// Folds every adapter into its weight (`W' = W + s B A`) and removes the adapters: the
    /// model then computes the same function with plain weights, as PEFT's `merge_and_unload`.
    pub fn merge_lora(&mut self) -> Result<()> {
        self.resident("cannot be merged with its adapters")?;
        for block in &mut self.blocks {
            for j in 0..LINEARS.len() {
                let lin = linear_mut(block, j);
                if let Some(lora) = lin.lora.take() {
                    let delta = lora.delta()?.detach().to_dtype(lin.weight().dtype())?;
                    lin.set_weight(&(lin.weight().detach() + delta)?)?;
                }
            }
        }
        Ok(())
    }

    /// Puts `adapter` on `module` (`model.layers.{l}.mlp.down_proj`, PEFT's path), replacing
    /// any there; A and B must fit the module's weight.
    pub fn set_lora(&mut self, module: &str, adapter: LoraAdapter) -> Result<()> {
        let (l, j) = self.lora_slot(module)?;
        let held = self.held_index(l);
        if let Some(stream) = &mut self.stream {
            // Put on the block when it is read (and checked against its weight then).
            stream.loras.insert((l, j), adapter.clone());
        }
        match held {
            Some(i) => fit(linear_mut(&mut self.blocks[i], j), module, adapter),
            None => Ok(()),
        }
    }

    /// The adapter on `module`, if any: its A `[r, in]` and B `[out, r]` (for a rank-1
    /// adapter on `mlp.down_proj`, B's column is the direction it writes to the residual
    /// stream) and its scale.
    pub fn lora(&self, module: &str) -> Result<Option<&LoraAdapter>> {
        let (l, j) = self.lora_slot(module)?;
        if let Some(stream) = &self.stream {
            return Ok(stream.loras.get(&(l, j)));
        }
        Ok(super::params::linear(&self.blocks[l], j).lora.as_ref())
    }

    /// The PEFT path of every adapted module, in layer order.
    pub fn lora_modules(&self) -> Vec<String> {
        if let Some(stream) = &self.stream {
            return (stream.loras.keys())
                .map(|&(l, j)| format!("model.layers.{l}.{}", LINEARS[j]))
                .collect();
        }
        let mut out = Vec::new();
        for (l, b) in self.blocks.iter().enumerate() {
            for (j, name) in LINEARS.iter().enumerate() {
                if super::params::linear(b, j).lora.is_some() {
                    out.push(format!("model.layers.{l}.{name}"));
                }
            }
        }
        out
    }

    /// (layer, index into `LINEARS`) of a module path.
    fn lora_slot(&self, module: &str) -> Result<(usize, usize)> {
        let slot = module.strip_prefix("model.layers.").and_then(|rest| {
            let (l, name) = rest.split_once('.')?;
            Some((
                l.parse::<usize>().ok()?,
                LINEARS.iter().position(|&n| n == name)?,
            ))
        });
        match slot {
            Some((l, j)) if l < self.n_layers() => Ok((l, j)),
            _ => bail!(
                "no linear map `{module}` for an adapter: modules are model.layers.{{0..{}}}.{{{}}}",
                self.n_layers(),
                LINEARS.join(",")
            ),
        }
    }

    /// Whether any adapter is attached.
    pub fn has_lora(&self) -> bool {
        !self.lora_modules().is_empty()
    }
}

/// Indices into `LINEARS` of PEFT-style target names.
fn target_slots(targets: &[String]) -> Result<Vec<usize>> {
    if targets.is_empty() {
        bail!("LoRA needs at least one target module");
    }
    targets
        .iter()
        .map(|t| {
            LINEARS
                .iter()
                .position(|n| n.rsplit('.').next() == Some(t.as_str()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown LoRA target `{t}`; targets are q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
                    )
                })
        })
        .collect()
}

/// Puts `adapter` on `lin` (the linear map `module`), replacing any there; A and B must fit its
/// weight.
pub(super) fn fit(lin: &mut Linear, module: &str, adapter: LoraAdapter) -> Result<()> {
    let (d_out, d_in) = lin.weight().dims2()?;
    let (r, a_in) = adapter.a.dims2()?;
    if adapter.b.dims2()? != (d_out, r) || a_in != d_in {
        bail!(
            "adapter for `{module}`: A {:?} and B {:?} do not fit its weight [{d_out}, {d_in}]",
            adapter.a.dims(),
            adapter.b.dims()
        );
    }
    lin.lora = Some(adapter);
    Ok(())
}
