//! Directions per layer, to steer with: the alignment direction
//! `v_l = mean(instruct) - mean(base)` of each layer's window-mean hidden states over a
//! dataset (analysis 3's direction, with its norm), and the random control of the same norms.
//!
//! Layer index `l` is the residual-stream convention of `erosion_forward::windows`:
//! 0 = `hook_embed`, l = `blocks.{l-1}.hook_resid_post` for l in 1..=L.

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use erosion_analysis::alignment::{alignment_directions, direction_norms, usable_layers};
use erosion_analysis::matrix::norm;
use erosion_analysis::stats::{gaussian_vec, rng_from_seed};
use erosion_analysis::stream::LayerMeans;
use erosion_data::{Sequence, ShortResponse};
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_forward::windows::{record_windows, Layers, Window, WindowOptions};
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

/// Mean over examples of each example's mean hidden state over its first `window` response
/// tokens (fewer when the response is shorter), per layer index 0..=L. // `[L + 1][d_model]`
///
/// Accumulated by erosion-analysis's [`LayerMeans`] in its row-weighted mode (f64, one batch in
/// memory at a time): the steering directions and drift scores have always been computed so.
pub fn window_means(
    model: &Transformer,
    seqs: &[Sequence],
    window: usize,
    batch: &BatchOptions,
) -> Result<Vec<Vec<f64>>> {
    let opts = WindowOptions {
        layers: Layers::All,
        window: Window::Response {
            offset: 0,
            len: window,
        },
        short: ShortResponse::UseAvailable,
        ..WindowOptions::default()
    };
    let mut acc = LayerMeans::new(model.n_layers() + 1, model.config().hidden_size);
    record_windows(model, seqs, &opts, batch, &mut NoProgress, &mut |rec| {
        acc.push_rows_weighted(rec.layer, &rec.flat()?) // [n_positions * d]
    })?;
    if let Some(l) = acc.counts().iter().position(|&n| n == 0) {
        bail!("layer {l}: no example has a response token to average");
    }
    acc.means()
}

/// [`usable_layers`], except that an infinite norm anywhere leaves no layer usable: the
/// steering directions compared each norm with the largest of all, so hidden states that
/// overflowed gave no direction at all. Kept, so every direction stays as it was.
fn usable_for_steering(norms: &[f64]) -> Vec<bool> {
    if norms.iter().any(|n| n.is_infinite()) {
        return vec![false; norms.len()];
    }
    usable_layers(norms)
}

impl LayerDirections {
    /// `v_l = mean(instruct) - mean(base)` at every layer index 0..=L: each example's hidden
    /// states averaged over its first `window` response tokens (fewer when the response is
    /// shorter), then averaged over examples; f64 sums, one batch in memory at a time.
    /// `base_seqs` and `instruct_seqs` are the same examples rendered for each model. A layer
    /// where the two means coincide (not usable by erosion-analysis's `alignment` rule,
    /// |v_l| <= 1e-9 max |v|, e.g. a shared embedding) has None.
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
        let mb = window_means(base, base_seqs, window, batch).context("base model's means")?;
        let mi = window_means(instruct, instruct_seqs, window, batch)
            .context("instruct model's means")?;
        Self::from_means(&mb, &mi, window, instruct_seqs.len())
    }

    /// [`Self::alignment`] from the two models' [`window_means`] (computed one model at a time,
    /// so only one is in memory), over `n_examples` examples' first `window` response tokens.
    pub fn from_means(
        base_means: &[Vec<f64>],
        instruct_means: &[Vec<f64>],
        window: usize,
        n_examples: usize,
    ) -> Result<Self> {
        let v = alignment_directions(base_means, instruct_means)?;
        let d_model = v.first().map_or(0, Vec::len);
        let usable = usable_for_steering(&direction_norms(&v));
        let layers = v
            .into_iter()
            .zip(usable)
            .map(|(v, u)| u.then(|| v.into_iter().map(|x| x as f32).collect()))
            .collect();
        Ok(LayerDirections {
            d_model,
            layers,
            origin: format!(
                "alignment direction v_l = mean(instruct) - mean(base) over {n_examples} examples' first \
                 {window} response tokens (window mean per example, then mean; f64)"
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

    /// Layer indices that have a direction.
    pub fn available(&self) -> Vec<usize> {
        (0..self.layers.len())
            .filter(|&l| self.layers[l].is_some())
            .collect()
    }
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
