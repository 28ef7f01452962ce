//! Analysis 3: alignment erodes layer by layer (Giordani 2025).
//!
//! For each dataset, with z_{l,i}^m the pooled response window of example i at layer l under
//! model m (`Flatten`: the T x d window concatenated, [T * d]; `Mean`: its token mean, `[d]`):
//!   mu_l^m = mean_i z_{l,i}^m                       (streamed in f64, never all z at once)
//!   v_l    = mu_l^instruct - mu_l^base               (the alignment direction of layer l)
//!   s_l^m  = mu_l^m . v_l / |v_l|                     (= mean_i of p_{l,i}^m = z_{l,i}^m . v_l / |v_l|)
//!   r_l^m  = (s_l^m - s_l^base) / (s_l^instruct - s_l^base)   (0 = base, 1 = instruct)
//! for every layer l in 0..=L (0 = embeddings) and every model.
//!
//! Two passes over each (model, dataset), both through the activation cache:
//! 1. the windows pass (forward, or the cache when a previous run wrote it) accumulates mu_l^m;
//! 2. once v_l is known, the cached windows are replayed from disk (no model needed) to get the
//!    per-example projections p_{l,i}^m, which give bootstrap confidence intervals.
//!
//! Memory: the means of base and instruct (2 x (L + 1) x dim f64 per dataset), one chunk of
//! cached windows, and one projection per (model, layer, example): nothing of size
//! examples x dim.

mod relative;
pub(crate) mod report;
pub(crate) mod stream;

use crate::context::StudyContext;
use crate::section::SectionOutput;
use anyhow::{bail, Context, Result};
pub(crate) use erosion_analysis::alignment::usable_layers;
use erosion_analysis::layers::{
    alignment_directions, layer_scores, projections, unit, ModelLayerMeans, WindowSpec,
};
use erosion_analysis::matrix::{norm, Matrix};
use erosion_analysis::stats::ConfidenceInterval;
use erosion_analysis::stream::LayerMeans;
use erosion_forward::cache::CacheEntry;
use erosion_forward::windows::{Layers, Window, WindowOptions, WindowRecord};
use erosion_report::html::Verdict;
use relative::{thirds, ErosionTest, Paired};
use stream::PassReport;

/// Confidence level of every interval of this analysis.
pub(crate) const LEVEL: f64 = 0.95;
/// Salt of this analysis's seeds (derived from the study's seed, one per dataset).
const SEED_SALT: u64 = 0x4c41_5945_5253_0003;

/// What analysis 3 measured on one dataset.
pub(crate) struct DatasetLayers {
    pub name: String,
    pub n_examples: usize,
    pub seed: u64,
    /// Per model (study order): examples recorded and examples the short-response policy left out.
    pub recorded: Vec<usize>,
    pub skipped: Vec<Vec<usize>>,
    /// Per layer: |v_l| (0 where unusable) and whether v_l is usable.
    pub norms: Vec<f64>,
    pub usable: Vec<bool>,
    /// `[model][layer]` s_l^m (NaN where unusable) and its CI.
    pub scores: Vec<Vec<f64>>,
    pub score_ci: Vec<Vec<Option<ConfidenceInterval>>>,
    /// Per fine-tuned model: `[layer]` CI of r_l (None where unusable or undefined).
    pub relative: Vec<Vec<Option<ConfidenceInterval>>>,
    /// Per fine-tuned model: the early-vs-deep test, or why there is none.
    pub tests: Vec<std::result::Result<ErosionTest, String>>,
    pub verdict: Verdict,
    /// Unit directions per layer (None where unusable), for cross-dataset cosines.
    pub units: Vec<Option<Vec<f64>>>,
}

/// Analysis 3 of the study, as the study runs it (module docs).
pub struct LayersAnalysis;

impl crate::analysis::Analysis for LayersAnalysis {
    const KEY: &'static str = "layers";
    const TITLE: &'static str = "3. Alignment erodes layer by layer";
    type Results = serde_json::Value;

    fn run(ctx: &StudyContext) -> Result<crate::analysis::Finished<Self::Results>> {
        let out = run(ctx)?;
        Ok(crate::analysis::Finished {
            results: out.results,
            section: out.section,
        })
    }
}

fn run(ctx: &StudyContext) -> Result<SectionOutput> {
    let spec = &ctx.spec.layers;
    let datasets = ctx.spec.dataset_names(&spec.datasets);
    if datasets.is_empty() {
        bail!("[layers] names no dataset");
    }
    let opts = WindowOptions {
        layers: Layers::All,
        convention: spec.indexing.into(),
        window: Window::Response {
            offset: spec.offset,
            len: spec.window,
        },
        short: spec.short,
    };
    // Records already start at the offset, so the pooling's offset is 0.
    let pool = WindowSpec {
        len: spec.window,
        offset: 0,
        pooling: stream::analysis_pooling(spec.pooling),
        // Records reaching the pooling already obey the policy; with `UseAvailable`, flatten
        // pooling zero-fills the missing positions.
        short: spec.short,
    };
    let models: Vec<String> = ctx.models.iter().map(|m| m.name.clone()).collect();
    if models.len() < 2 || models[0] != "base" || models[1] != "instruct" {
        bail!(
            "the study's models must begin with base and instruct (got {})",
            models.join(", ")
        );
    }
    let cfg = &ctx.models[0].checkpoint.config;
    let n_rows = cfg.num_hidden_layers + 1;
    let dim = pool.pooled_dim(cfg.hidden_size);

    // Pass 1: per-layer means, one model at a time (loaded only when the cache lacks windows).
    let mut states: Vec<Pass1> = datasets.iter().map(|_| Pass1::default()).collect();
    for (mi, m) in models.iter().enumerate() {
        for (ds, st) in datasets.iter().zip(&mut states) {
            let seqs = ctx.sequences(m, ds)?;
            let (means, rep) = layer_means(
                |sink| stream::windows_pass(ctx, m, ds, &opts, &seqs, "layers", sink),
                &pool,
                n_rows,
                dim,
            )
            .with_context(|| format!("layers: model `{m}` on dataset `{ds}`"))?;
            st.n_examples = seqs.len();
            st.recorded.push(rep.recorded);
            st.skipped.push(rep.skipped);
            st.add(mi, m, means)
                .with_context(|| format!("layers: dataset `{ds}`"))?;
        }
    }

    // The means are no longer needed: s_l of every model and the unit directions are kept.
    for st in &mut states {
        st.group = Vec::new();
    }

    // Pass 2: per-example projections from the cache, then the statistics.
    let mut results = Vec::with_capacity(datasets.len());
    for (di, (ds, st)) in datasets.iter().zip(states).enumerate() {
        let seed = erosion_model::seed::mix(ctx.spec.seed, SEED_SALT.wrapping_add(di as u64));
        let mut proj = Vec::with_capacity(models.len());
        for m in &models {
            let seqs = ctx.sequences(m, ds)?;
            let entry = stream::windows_entry(ctx, m, ds, &opts, &seqs)?;
            let layers: Vec<usize> = (0..n_rows).collect();
            proj.push(
                replay_projections(&entry, &layers, &pool, &st.units, st.n_examples).with_context(
                    || format!("layers: projections of model `{m}` on dataset `{ds}`"),
                )?,
            );
        }
        results.push(statistics(ds, st, &models, &proj, spec.bootstrap, seed)?);
    }
    report::section(ctx, &models, &results, dim)
}

/// Pass-1 state of one dataset.
#[derive(Default)]
struct Pass1 {
    n_examples: usize,
    recorded: Vec<usize>,
    skipped: Vec<Vec<usize>>,
    base: Option<Vec<Vec<f64>>>,
    /// Base and instruct means on the usable layers, then any model's for a moment.
    group: Vec<ModelLayerMeans>,
    usable: Vec<bool>,
    norms: Vec<f64>,
    units: Vec<Option<Vec<f64>>>,
    /// `[model][layer]`, NaN where unusable.
    scores: Vec<Vec<f64>>,
}

impl Pass1 {
    /// Takes the means of model `mi` (0 = base, 1 = instruct, then fine-tuned models).
    fn add(&mut self, mi: usize, name: &str, means: Vec<Vec<f64>>) -> Result<()> {
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
pub(crate) fn layer_means(
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
pub(crate) fn replay_projections(
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

/// Confidence intervals and the early-vs-deep tests of one dataset.
fn statistics(
    name: &str,
    st: Pass1,
    models: &[String],
    proj: &[Vec<Vec<f64>>],
    n_resamples: usize,
    seed: u64,
) -> Result<DatasetLayers> {
    let n_rows = st.usable.len();
    let mut score_ci = Vec::with_capacity(models.len());
    for (mi, m) in models.iter().enumerate() {
        let mut row = Vec::with_capacity(n_rows);
        for (l, p) in proj[mi].iter().enumerate() {
            if !st.usable[l] {
                row.push(None);
                continue;
            }
            let xs: Vec<f64> = p.iter().copied().filter(|x| x.is_finite()).collect();
            let ci = erosion_analysis::layers::score_ci(&xs, n_resamples, LEVEL, seed)
                .with_context(|| format!("CI of s_{l} for model `{m}` on `{name}`"))?;
            // The mean of the replayed projections must be the streamed s_l (same windows).
            let s = st.scores[mi][l];
            if (ci.estimate - s).abs() > 1e-6 * s.abs().max(st.norms[l]) {
                bail!("model `{m}` layer {l} on `{name}`: replayed projections average {} but the streamed means give {s}", ci.estimate);
            }
            row.push(Some(ci));
        }
        score_ci.push(row);
    }
    let block_layers: Vec<usize> = (1..n_rows).filter(|&l| st.usable[l]).collect();
    let mut relative_cis = Vec::new();
    let mut tests = Vec::new();
    for (k, m) in models.iter().enumerate().skip(2) {
        let (rel, test) = relative_of(
            &proj[0],
            &proj[1],
            &proj[k],
            &st.usable,
            &block_layers,
            m,
            k == 2,
            n_resamples,
            seed,
        );
        relative_cis.push(rel);
        tests.push(test);
    }
    let verdict = match tests.first() {
        Some(Ok(t)) => t.verdict,
        _ => Verdict::NotRun,
    };
    Ok(DatasetLayers {
        name: name.to_string(),
        n_examples: st.n_examples,
        seed,
        recorded: st.recorded,
        skipped: st.skipped,
        norms: st
            .norms
            .iter()
            .zip(&st.usable)
            .map(|(&n, &u)| if u { n } else { 0.0 })
            .collect(),
        usable: st.usable,
        scores: st.scores,
        score_ci,
        relative: relative_cis,
        tests,
        verdict,
        units: st.units,
    })
}

/// Per-layer CIs of r_l and the early-vs-deep test of one fine-tuned model.
#[allow(clippy::too_many_arguments)]
fn relative_of(
    base: &[Vec<f64>],
    instruct: &[Vec<f64>],
    model: &[Vec<f64>],
    usable: &[bool],
    block_layers: &[usize],
    name: &str,
    under_test: bool,
    n_resamples: usize,
    seed: u64,
) -> (
    Vec<Option<ConfidenceInterval>>,
    std::result::Result<ErosionTest, String>,
) {
    let all: Vec<usize> = (0..usable.len()).filter(|&l| usable[l]).collect();
    let paired = match Paired::new(base, instruct, model, &all) {
        Ok(p) => p,
        Err(e) => return (vec![None; usable.len()], Err(format!("{e:#}"))),
    };
    let rel = (0..usable.len())
        .map(|l| {
            if usable[l] {
                paired.ci(&[l], n_resamples, LEVEL, seed).ok()
            } else {
                None
            }
        })
        .collect();
    let test = match thirds(block_layers) {
        None => Err(format!(
            "{} usable block layer(s): early and deep layers need at least two",
            block_layers.len()
        )),
        Some((early, deep)) => ErosionTest::run(
            name,
            under_test,
            &paired,
            early,
            deep,
            n_resamples,
            LEVEL,
            seed,
        )
        .map_err(|e| format!("{e:#}")),
    };
    (rel, test)
}

#[cfg(test)]
pub(crate) mod tests;
