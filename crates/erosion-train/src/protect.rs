//! Fine-tuning that keeps alignment: protected directions of the residual stream (the
//! alignment directions v_l of analysis 3) that training must not move.
//!
//! Two methods:
//!
//! - **Project the updates.** After every optimizer step, the change of each weight that writes
//!   into the residual stream (the token embeddings, each block's `o_proj` and `down_proj`,
//!   their biases; for LoRA the `lora_B` of those projections) loses its component along the
//!   protected directions of the layers it feeds (layer index l > b for block b, all for the
//!   embeddings): `dW <- dW - U^T U dW` with U the orthonormal basis of that span `[k, d]`
//!   (rows of the embedding: `dE <- dE - dE U^T U`). Those writers then write exactly what they
//!   wrote before along U, for the same input; the inputs may still change through other
//!   directions, so the projections are kept to first order, not exactly.
//! - **Penalise the drift.** Each step adds `weight * sum_l mean_i (p_il - p0_il)^2` to the loss,
//!   where `p_il = mean_{t in window_i} h_{i,l,t} . u_l` is probe example i's mean projection on
//!   the unit direction at layer l and `p0` the same under the starting model (computed by
//!   [`reference_projections`] and stored in the options, so a resumed run uses the same one).

use std::ops::Range;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use erosion_data::Sequence;
use erosion_model::hooks::{Edit, HookPoint, Hooks, Positions};
use erosion_model::transformer::{ForwardMode, ForwardOptions, Transformer, WeightVar};
use serde::{Deserialize, Serialize};

/// How the directions are protected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ProtectMethod {
    ProjectUpdates,
    Penalty {
        weight: f64,
        /// `p0[l][i]`, one row per protected direction in `directions` order.
        reference: Vec<Vec<f64>>,
    },
}

/// One probe example of the penalty: its tokens and the positions averaged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeExample {
    pub ids: Vec<u32>,
    pub window: Range<usize>,
}

impl ProbeExample {
    /// The probe reads the first `t` response tokens of `seq` (fewer when the response is
    /// shorter).
    pub fn first_response_tokens(seq: &Sequence, t: usize) -> Self {
        ProbeExample {
            ids: seq.ids.clone(),
            window: seq.first_response_tokens(t),
        }
    }
}

/// What to protect and how (part of the run's options, so a resumed run checks it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Protection {
    pub method: ProtectMethod,
    /// `(layer index l, v_l)`: 0 = embeddings, l = output of block l-1; any norm.
    pub directions: Vec<(usize, Vec<f32>)>,
    /// The penalty's probe (unused by `ProjectUpdates`).
    #[serde(default)]
    pub probe: Vec<ProbeExample>,
}

/// The hook point of layer index `l`.
fn point(l: usize) -> HookPoint {
    match l {
        0 => HookPoint::Embed,
        l => HookPoint::resid_post(l - 1),
    }
}

fn unit(v: &[f32], device: &Device) -> Result<Tensor> {
    let n = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    if !(n > 0.0 && n.is_finite()) {
        bail!("a protected direction has norm {n}");
    }
    Ok(Tensor::from_vec(
        v.iter().map(|&x| (x as f64 / n) as f32).collect(),
        v.len(),
        device,
    )?)
}

/// `p[l][i]` of every probe example on every protected direction (no gradient).
pub fn reference_projections(model: &Transformer, p: &Protection) -> Result<Vec<Vec<f64>>> {
    let t = probe_projections(model, p, ForwardMode::Fast)?;
    t.to_dtype(DType::F64)?.to_vec2::<f64>().map_err(Into::into)
}

/// `[n_directions, n_probe]` projections (differentiable in `ForwardMode::Differentiable`).
fn probe_projections(model: &Transformer, p: &Protection, mode: ForwardMode) -> Result<Tensor> {
    if p.probe.is_empty() {
        bail!("the penalty needs probe examples");
    }
    let device = model.device();
    let len = p.probe.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(p.probe.len() * len);
    for e in &p.probe {
        if e.window.is_empty() || e.window.end > e.ids.len() {
            bail!(
                "a probe window {:?} is empty or past its {} tokens",
                e.window,
                e.ids.len()
            );
        }
        ids.extend_from_slice(&e.ids);
        // Right padding: causal attention never lets a real token see the pads after it.
        ids.extend(std::iter::repeat_n(0u32, len - e.ids.len()));
    }
    let ids = Tensor::from_vec(ids, (p.probe.len(), len), device)?;
    let windows: Vec<Range<usize>> = p.probe.iter().map(|e| e.window.clone()).collect();
    let mut hooks = Hooks::new(model.n_layers());
    for (l, _) in &p.directions {
        hooks.record(point(*l), Positions::windows(&windows))?;
    }
    // Only the blocks up to the last protected layer are needed (layer l = block l-1's output).
    let n_blocks = p.directions.iter().map(|(l, _)| *l).max().unwrap_or(0);
    {
        let mut fo = ForwardOptions {
            mode,
            hooks: Some(&mut hooks),
        };
        let ctx = model.context(None, p.probe.len(), len)?;
        let x = model.embed(&ids, &mut fo)?;
        model.run_layers(x, 0..n_blocks, &ctx, &mut fo)?;
    }
    let cache = hooks.take_cache();
    // Averaging matrix [n_probe, n_rows]: row i holds 1/|window_i| over its rows.
    let n_rows: usize = windows.iter().map(|w| w.len()).sum();
    let mut avg = vec![0f32; p.probe.len() * n_rows];
    let mut at = 0;
    for (i, w) in windows.iter().enumerate() {
        for r in at..at + w.len() {
            avg[i * n_rows + r] = 1.0 / w.len() as f32;
        }
        at += w.len();
    }
    let avg = Tensor::from_vec(avg, (p.probe.len(), n_rows), device)?;
    let mut rows = Vec::new();
    for (l, v) in &p.directions {
        let rec = cache
            .get(&point(*l).to_string())
            .context("a protected layer was not recorded")?;
        let h = rec.tensor.to_dtype(DType::F32)?; // [n_rows, d]
        let u = unit(v, device)?.unsqueeze(1)?; // [d, 1]
        rows.push(avg.matmul(&h.matmul(&u)?)?.squeeze(1)?); // [n_probe]
    }
    Ok(Tensor::stack(&rows, 0)?)
}

/// Which side of a writer's weight faces the residual stream.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// `[d, in]` (or a bias `[d]`): the output.
    Output,
    /// `[vocab, d]`: each row is a vector of the stream.
    Rows,
}

/// The block whose output a parameter writes into (`None`: the embeddings), and its side;
/// `None` for parameters that do not write into the residual stream.
fn writer(name: &str) -> Option<(Option<usize>, Side)> {
    if name == "model.embed_tokens.weight" {
        return Some((None, Side::Rows));
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (b, rest) = rest.split_once('.')?;
    let b: usize = b.parse().ok()?;
    let writes = ["self_attn.o_proj.", "mlp.down_proj."]
        .iter()
        .any(|p| rest.starts_with(p) && !rest.contains("lora_A"));
    writes.then_some((Some(b), Side::Output))
}

/// The runtime of a protection inside the trainer.
pub(crate) struct Protector {
    pub protection: Protection,
    /// For `ProjectUpdates`: parameter index, orthonormal basis U `[k, d]`, side.
    targets: Vec<(usize, Tensor, Side)>,
}

impl Protector {
    pub fn new(p: Protection, params: &[(String, WeightVar)], model: &Transformer) -> Result<Self> {
        let d = model.config().hidden_size;
        let n_layers = model.n_layers();
        if p.directions.is_empty() {
            bail!("nothing to protect: no direction given");
        }
        for (l, v) in &p.directions {
            if *l > n_layers || v.len() != d {
                bail!("protected direction at layer {l} of width {} does not fit the model ({n_layers} blocks, width {d})", v.len());
            }
        }
        let mut targets = Vec::new();
        if p.method == ProtectMethod::ProjectUpdates {
            for (i, (name, _)) in params.iter().enumerate() {
                let Some((block, side)) = writer(name) else {
                    continue;
                };
                // Block b writes into every layer index above b; the embeddings into all.
                let first = block.map_or(0, |b| b + 1);
                let dirs: Vec<f32> = p
                    .directions
                    .iter()
                    .filter(|(l, _)| *l >= first)
                    .flat_map(|(_, v)| v.iter().copied())
                    .collect();
                if dirs.is_empty() {
                    continue;
                }
                let k = dirs.len() / d;
                let Edit::ProjectOut { basis } =
                    Edit::project_out(&Tensor::from_vec(dirs, (k, d), model.device())?)?
                else {
                    bail!("project_out returned another edit");
                };
                targets.push((i, basis.to_dtype(DType::F32)?, side));
            }
            if targets.is_empty() {
                bail!(
                    "no trained weight writes into the residual stream before the protected layers"
                );
            }
        }
        if let ProtectMethod::Penalty { reference, .. } = &p.method {
            if reference.len() != p.directions.len()
                || reference.iter().any(|r| r.len() != p.probe.len())
            {
                bail!("the penalty's reference projections do not match its directions and probe");
            }
        }
        Ok(Protector {
            protection: p,
            targets,
        })
    }

    /// Copies of the parameters whose updates are projected (before a step).
    pub fn snapshot(&self, params: &[(String, WeightVar)]) -> Result<Vec<Tensor>> {
        self.targets
            .iter()
            .map(|(i, _, _)| Ok(params[*i].1.value()?.detach().copy()?))
            .collect()
    }

    /// Projects the protected span out of each target's change since `before`.
    /// (Both in Hugging Face's orientation, which `side` refers to.)
    pub fn project(&self, params: &[(String, WeightVar)], before: &[Tensor]) -> Result<()> {
        for ((i, u, side), old) in self.targets.iter().zip(before) {
            let var = &params[*i].1;
            let new = var.value()?.detach();
            let dtype = new.dtype();
            let delta = (&new - old)?.to_dtype(DType::F32)?;
            let removed = match side {
                Side::Output if delta.rank() == 1 => u
                    .t()?
                    .matmul(&u.matmul(&delta.unsqueeze(1)?)?)?
                    .squeeze(1)?,
                Side::Output => u.t()?.matmul(&u.matmul(&delta)?)?,
                Side::Rows => delta.matmul(&u.t()?)?.matmul(u)?,
            };
            var.set(&(old + (delta - removed)?.to_dtype(dtype)?)?)?;
        }
        Ok(())
    }

    /// The penalty (a scalar tensor on the graph) and its value, or None for `ProjectUpdates`.
    pub fn penalty(&self, model: &Transformer) -> Result<Option<(Tensor, f64)>> {
        let ProtectMethod::Penalty { weight, reference } = &self.protection.method else {
            return Ok(None);
        };
        let p = probe_projections(model, &self.protection, ForwardMode::Differentiable)?;
        let flat: Vec<f32> = reference.iter().flatten().map(|&x| x as f32).collect();
        let p0 = Tensor::from_vec(flat, p.dims(), p.device())?;
        let per_dir = (p - p0)?.sqr()?.mean(1)?; // [n_directions]
        let pen = (per_dir.sum_all()? * *weight)?;
        let value = pen.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        Ok(Some((pen, value)))
    }
}
