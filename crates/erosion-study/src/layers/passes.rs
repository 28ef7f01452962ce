//! The two passes over each (model, dataset) of analysis 3: pass 1 streams the windows into
//! per-layer means (and, once base and instruct are in, the alignment directions and every
//! model's scores s_l); pass 2 replays the cached windows to project each example onto v_l.

use super::stream::{self, PassReport};
use anyhow::{bail, Context, Result};
use erosion_analysis::alignment::usable_layers;
use erosion_analysis::layers::{
    alignment_directions, layer_scores, projections, unit, ModelLayerMeans, WindowSpec,
};
use erosion_analysis::matrix::{norm, Matrix};
use erosion_analysis::stream::LayerMeans;
use erosion_forward::cache::CacheEntry;
use erosion_forward::windows::WindowRecord;

/// Pass-1 state of one dataset.
#[derive(Default)]
pub(super) struct Pass1 {
    pub(super) n_examples: usize,
    pub(super) recorded: Vec<usize>,
    pub(super) skipped: Vec<Vec<usize>>,
    pub(super) base: Option<Vec<Vec<f64>>>,
    /// Base and instruct means on the usable layers, then any model's for a moment.
    pub(super) group: Vec<ModelLayerMeans>,
    pub(super) usable: Vec<bool>,
    pub(super) norms: Vec<f64>,
    pub(super) units: Vec<Option<Vec<f64>>>,
    /// `[model][layer]`, NaN where unusable.
    pub(super) scores: Vec<Vec<f64>>,
}

impl Pass1 {
    /// Takes the means of model `mi` (0 = base, 1 = instruct, then fine-tuned models).
    pub(super) fn add(&mut self, mi: usize, name: &str, means: Vec<Vec<f64>>) -> Result<()> {
        match mi {
            0 => self.base = Some(means),
            1 => {
                let base = self.base.take().context("base means before instruct's")?;
                let v = alignment_directions(&base, &means)?;
                self.norms = v.iter().map(|x| norm(x)).collect();
                self.usable = usable_layers(&self.norms);
                if !self.usable.iter().any(|&u| u) {
                    bail!("base and instruct have the same mean at every layer: there is no alignment direction");
                }
                self.units = v
                    .iter()
                    .zip(&self.usable)
                    .map(|(x, &u)| if u { unit(x).map(Some) } else { Ok(None) })
                    .collect::<Result<_>>()?;
                self.group = vec![
                    self.restrict("base", base),
                    self.restrict("instruct", means),
                ];
                let s = layer_scores(&self.group, "base", "instruct")?;
                self.scores = s.scores.iter().map(|x| self.expand(x)).collect();
            }
            _ => {
                // Scored beside base and instruct, then dropped: only their means are kept.
                let mine = self.restrict(name, means);
                self.group.push(mine);
                let s = layer_scores(&self.group, "base", "instruct");
                self.group.truncate(2);
                let s = s?;
                let last = s.scores.last().context("scores of the model")?;
                self.scores.push(self.expand(last));
            }
        }
        Ok(())
    }

    /// The means of the usable layers only.
    fn restrict(&self, name: &str, means: Vec<Vec<f64>>) -> ModelLayerMeans {
        let means = means
            .into_iter()
            .zip(&self.usable)
            .filter(|(_, &u)| u)
            .map(|(m, _)| m)
            .collect();
        ModelLayerMeans {
            model: name.to_string(),
            means,
        }
    }

    /// Values of the usable layers back at their layer indices, NaN elsewhere.
    fn expand(&self, on_usable: &[f64]) -> Vec<f64> {
        let mut it = on_usable.iter();
        self.usable
            .iter()
            .map(|&u| {
                if u {
                    *it.next().expect("one value per usable layer")
                } else {
                    f64::NAN
                }
            })
            .collect()
    }
}

/// Pass 1 of one (model, dataset): the windows `pass` streams (computed, or read from the
/// cache) pooled into per-layer f64 means. Returns `[n_rows][dim]` and the pass's report.
pub(super) fn layer_means(
    pass: impl FnOnce(&mut dyn FnMut(WindowRecord<'_>) -> Result<()>) -> Result<PassReport>,
    pool: &WindowSpec,
    n_rows: usize,
    dim: usize,
) -> Result<(Vec<Vec<f64>>, PassReport)> {
    let mut acc = LayerMeans::new(n_rows, dim);
    let report = pass(&mut |r| {
        if let Some(z) = stream::pool_record(&r, pool)? {
            acc.push(r.layer, &z)?;
        }
        Ok(())
    })?;
    if report.recorded == 0 {
        bail!(
            "no example has a response window ({} left out by the short-response policy); \
             lower the window T or the offset, or choose the policy `truncate`",
            report.skipped.len()
        );
    }
    let counts = acc.counts();
    if counts.iter().any(|&c| c != counts[0]) {
        bail!("examples per layer differ ({counts:?}): the activation cache entry is inconsistent");
    }
    Ok((acc.means()?, report))
}

/// Pass 2 of one (model, dataset): every cached window pooled and projected onto the unit
/// direction of its layer. Returns `[layer][example]` p_{l,i}, NaN where the example was not
/// recorded or the layer has no direction.
pub(super) fn replay_projections(
    entry: &CacheEntry,
    layers: &[usize],
    pool: &WindowSpec,
    units: &[Option<Vec<f64>>],
    n_examples: usize,
) -> Result<Vec<Vec<f64>>> {
    let mut p = vec![vec![f64::NAN; n_examples]; units.len()];
    erosion_forward::cached_windows::replay_entry(entry, layers, &mut |r| {
        let (Some(Some(u)), true) = (units.get(r.layer), r.example < n_examples) else {
            if r.example >= n_examples || r.layer >= units.len() {
                bail!(
                    "record of example {} layer {} outside {n_examples} examples x {} layers",
                    r.example,
                    r.layer,
                    units.len()
                );
            }
            return Ok(());
        };
        if let Some(z) = stream::pool_record(&r, pool)? {
            let z = Matrix::from_vec(1, z.len(), z)?;
            p[r.layer][r.example] = projections(&z, u)?[0];
        }
        Ok(())
    })?;
    Ok(p)
}
