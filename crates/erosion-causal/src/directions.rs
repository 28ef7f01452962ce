//! Directions per layer, to steer with: the alignment direction
//! `v_l = mean(instruct) - mean(base)` of each layer's window-mean hidden states over a
//! dataset (analysis 3's direction, with its norm), and the random control of the same norms.
//!
//! Layer index `l` is the residual-stream convention of `erosion_forward::windows`:
//! 0 = `hook_embed`, l = `blocks.{l-1}.hook_resid_post` for l in 1..=L.

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use erosion_analysis::stats::{gaussian_vec, rng_from_seed};
use erosion_data::{Sequence, ShortResponse};
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_forward::windows::{record_windows, Layers, Window, WindowOptions};
use erosion_model::hooks::HookPoint;
use erosion_model::transformer::Transformer;
use serde::{Deserialize, Serialize};

/// One optional direction per layer index 0..=L, each `[d_model]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerDirections {
    pub d_model: usize,
    /// `layers[l]`: the direction at layer index l, None where there is none.
    pub layers: Vec<Option<Vec<f32>>>,
    /// How they were made, for provenance.
    pub origin: String,
}

/// Per-layer sums of example window means, in f64, so memory does not grow with the data.
pub(crate) struct LayerMeans {
    sums: Vec<Vec<f64>>,
    counts: Vec<usize>,
}

impl LayerMeans {
    /// Mean over examples of each example's mean hidden state over its window, per layer.
    pub(crate) fn of(
        model: &Transformer,
        seqs: &[Sequence],
        window: usize,
        batch: &BatchOptions,
    ) -> Result<Vec<Vec<f64>>> {
        let n_layers = model.n_layers();
        let d = model.config().hidden_size;
        let opts = WindowOptions {
            layers: Layers::All,
            window: Window::Response {
                offset: 0,
                len: window,
            },
            short: ShortResponse::UseAvailable,
            ..WindowOptions::default()
        };
        let mut acc = LayerMeans {
            sums: vec![vec![0.0; d]; n_layers + 1],
            counts: vec![0; n_layers + 1],
        };
        record_windows(model, seqs, &opts, batch, &mut NoProgress, &mut |rec| {
            let rows = rec.hidden.to_vec2::<f32>()?; // [n_positions, d]
            let sum = &mut acc.sums[rec.layer];
            let w = 1.0 / rows.len() as f64;
            for row in &rows {
                sum.iter_mut()
                    .zip(row)
                    .for_each(|(s, &x)| *s += w * x as f64);
            }
            acc.counts[rec.layer] += 1;
            Ok(())
        })?;
        acc.sums
            .into_iter()
            .zip(acc.counts)
            .enumerate()
            .map(|(l, (s, n))| {
                if n == 0 {
                    bail!("layer {l}: no example has a response token to average");
                }
                Ok(s.into_iter().map(|x| x / n as f64).collect())
            })
            .collect()
    }
}

impl LayerDirections {
    /// `v_l = mean(instruct) - mean(base)` at every layer index 0..=L: each example's hidden
    /// states averaged over its first `window` response tokens (fewer when the response is
    /// shorter), then averaged over examples; f64 sums, one batch in memory at a time.
    /// `base_seqs` and `instruct_seqs` are the same examples rendered for each model. A layer
    /// where the two means coincide (|v_l| <= 1e-9 max |v|, e.g. a shared embedding) has None.
    pub fn alignment(
        base: &Transformer,
        base_seqs: &[Sequence],
        instruct: &Transformer,
        instruct_seqs: &[Sequence],
        window: usize,
        batch: &BatchOptions,
    ) -> Result<Self> {
        if base.config().hidden_size != instruct.config().hidden_size
            || base.n_layers() != instruct.n_layers()
        {
            bail!("base and instruct differ in shape: they are not one family");
        }
        if window == 0 {
            bail!("the window must hold at least one response token");
        }
        let mb = LayerMeans::of(base, base_seqs, window, batch).context("base model's means")?;
        let mi = LayerMeans::of(instruct, instruct_seqs, window, batch)
            .context("instruct model's means")?;
        let diffs: Vec<Vec<f64>> = mi
            .iter()
            .zip(&mb)
            .map(|(i, b)| i.iter().zip(b).map(|(x, y)| x - y).collect())
            .collect();
        let norms: Vec<f64> = diffs.iter().map(|v| norm(v)).collect();
        let max = norms.iter().copied().fold(0.0, f64::max);
        let layers = diffs
            .into_iter()
            .zip(&norms)
            .map(|(v, &n)| (n > 1e-9 * max).then(|| v.into_iter().map(|x| x as f32).collect()))
            .collect();
        Ok(LayerDirections {
            d_model: base.config().hidden_size,
            layers,
            origin: format!(
                "alignment direction v_l = mean(instruct) - mean(base) over {} examples' first \
                 {window} response tokens (window mean per example, then mean; f64)",
                instruct_seqs.len()
            ),
        })
    }

    /// Checks the shape: every direction has `d_model` finite values.
    pub fn validate(&self) -> Result<()> {
        for (l, v) in self.layers.iter().enumerate() {
            if let Some(v) = v {
                if v.len() != self.d_model {
                    bail!(
                        "layer {l}: direction has {} values, d_model is {}",
                        v.len(),
                        self.d_model
                    );
                }
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    bail!("layer {l}: value {i} of the direction is {}", v[i]);
                }
            }
        }
        Ok(())
    }

    /// |v_l| per layer (0 where there is none).
    pub fn norms(&self) -> Vec<f64> {
        self.layers
            .iter()
            .map(|v| v.as_ref().map_or(0.0, |v| norm_f32(v)))
            .collect()
    }

    /// The control: at each layer with a direction, a Gaussian direction (seeded, one stream
    /// for all layers) scaled to the same norm.
    pub fn random_like(&self, seed: u64) -> Self {
        let mut rng = rng_from_seed(seed);
        let layers = self
            .layers
            .iter()
            .map(|v| {
                let v = v.as_ref()?;
                let g = gaussian_vec(&mut rng, self.d_model);
                let s = norm_f32(v) / norm(&g);
                Some(g.into_iter().map(|x| (x * s) as f32).collect())
            })
            .collect();
        LayerDirections {
            d_model: self.d_model,
            layers,
            origin: format!(
                "random Gaussian directions (seed {seed}) with the norms of: {}",
                self.origin
            ),
        }
    }

    /// The direction at layer index `layer` as a `[d_model]` f32 tensor.
    pub fn tensor(&self, layer: usize, device: &Device) -> Result<Tensor> {
        match self.layers.get(layer) {
            Some(Some(v)) => Ok(Tensor::from_slice(v, v.len(), device)?),
            Some(None) => bail!("layer {layer} has no direction"),
            None => bail!(
                "layer {layer} does not exist (layers 0..={})",
                self.layers.len().saturating_sub(1)
            ),
        }
    }

    /// The hook point of layer index `layer` (0 = `hook_embed`, l = `blocks.{l-1}.hook_resid_post`).
    pub fn hook_point(layer: usize) -> HookPoint {
        match layer {
            0 => HookPoint::Embed,
            l => HookPoint::resid_post(l - 1),
        }
    }

    /// Layer indices that have a direction.
    pub fn available(&self) -> Vec<usize> {
        (0..self.layers.len())
            .filter(|&l| self.layers[l].is_some())
            .collect()
    }
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn norm_f32(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_random_control_keeps_each_norm_and_is_seeded() {
        let dirs = LayerDirections {
            d_model: 3,
            layers: vec![None, Some(vec![3.0, 0.0, 4.0]), Some(vec![0.0, 1.0, 0.0])],
            origin: "hand".into(),
        };
        let r = dirs.random_like(7);
        assert_eq!(r.layers[0], None);
        for (a, b) in dirs.norms().iter().zip(r.norms()) {
            assert!((a - b).abs() < 1e-5, "{a} {b}");
        }
        assert_eq!(r, dirs.random_like(7));
        assert_ne!(r, dirs.random_like(8));
        assert_eq!(dirs.available(), vec![1, 2]);
        assert!(dirs.tensor(0, &Device::Cpu).is_err());
    }
}
