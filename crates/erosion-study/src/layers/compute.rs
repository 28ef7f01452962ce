//! Analysis 3's numbers: both passes over every (model, dataset), the statistics, the `.npy`
//! arrays, and the typed results that hold them.

use super::arrays::{direction_cosines, save_dataset_arrays};
use super::passes::{layer_means, replay_projections, Pass1};
use super::relative::{combine, DEEP_MAX, TRACKS_EARLY_MIN};
use super::results::{DatasetLayers, LayersOptions, LayersResults, TestOutcome, VerdictRule};
use super::statistics::{statistics, DatasetStats};
use super::stream;
use super::{LEVEL, SEED_SALT};
use crate::by_name::ByName;
use crate::context::StudyContext;
use crate::pass::Pass;
use anyhow::{bail, Context, Result};
use erosion_analysis::layers::WindowSpec;
use erosion_forward::windows::{Layers, Window, WindowOptions};

/// What both passes need: the datasets, models, window options and shapes.
struct Setup {
    datasets: Vec<String>,
    models: Vec<String>,
    opts: WindowOptions,
    pool: WindowSpec,
    /// L + 1 layers, 0 = embeddings.
    n_rows: usize,
    /// Length of one pooled window.
    dim: usize,
}

impl Setup {
    fn new(ctx: &StudyContext) -> Result<Self> {
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
            // Records reaching the pooling already obey the policy; with `UseAvailable`,
            // flatten pooling zero-fills the missing positions.
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
        Ok(Setup {
            datasets,
            models,
            opts,
            n_rows: cfg.num_hidden_layers + 1,
            dim: pool.pooled_dim(cfg.hidden_size),
            pool,
        })
    }
}

/// The passes [`compute`] reads: every model's windows on every dataset.
pub(super) fn passes(ctx: &StudyContext) -> Result<Vec<Pass>> {
    let setup = Setup::new(ctx)?;
    let mut out = Vec::new();
    for m in &setup.models {
        for d in &setup.datasets {
            out.push(Pass::Windows {
                model: m.clone(),
                dataset: d.clone(),
                opts: setup.opts.clone(),
            });
        }
    }
    Ok(out)
}

/// Runs analysis 3 on `ctx`: the passes, the statistics, the arrays under `arrays/`.
pub(super) fn compute(ctx: &StudyContext) -> Result<LayersResults> {
    let setup = Setup::new(ctx)?;
    let mut states = pass_one(ctx, &setup)?;
    // The means are no longer needed: s_l of every model and the unit directions are kept.
    for st in &mut states {
        st.group = Vec::new();
    }
    let mut stats = Vec::with_capacity(setup.datasets.len());
    for (di, (ds, st)) in setup.datasets.iter().zip(states).enumerate() {
        let seed = erosion_model::seed::mix(ctx.spec.seed, SEED_SALT.wrapping_add(di as u64));
        let proj = pass_two(ctx, &setup, ds, &st)?;
        stats.push(statistics(
            ds,
            st,
            &setup.models,
            &proj,
            ctx.spec.layers.bootstrap,
            seed,
        )?);
    }
    let mut datasets = ByName(Vec::with_capacity(stats.len()));
    for st in &stats {
        let files = save_dataset_arrays(ctx, &setup.models, st, setup.dim)?;
        datasets
            .0
            .push((st.name.clone(), dataset_results(st, &setup.models, files)));
    }
    let cosines = direction_cosines(ctx, &stats)?;
    let verdict = combine(&stats.iter().map(|r| r.verdict).collect::<Vec<_>>());
    Ok(LayersResults {
        options: options(ctx, &setup),
        model_under_test: setup.models.get(2).cloned(),
        models: setup.models,
        n_layers: setup.n_rows,
        pooled_dim: setup.dim,
        verdict_rule: verdict_rule(),
        datasets,
        direction_cosines: cosines,
        verdict,
    })
}

/// Pass 1: per-layer means, one model at a time (loaded only when the cache lacks windows).
fn pass_one(ctx: &StudyContext, setup: &Setup) -> Result<Vec<Pass1>> {
    let mut states: Vec<Pass1> = setup.datasets.iter().map(|_| Pass1::default()).collect();
    for (mi, m) in setup.models.iter().enumerate() {
        for (ds, st) in setup.datasets.iter().zip(&mut states) {
            let seqs = ctx.sequences(m, ds)?;
            let (means, rep) = layer_means(
                |sink| stream::windows_pass(ctx, m, ds, &setup.opts, &seqs, "layers", sink),
                &setup.pool,
                setup.n_rows,
                setup.dim,
            )
            .with_context(|| format!("layers: model `{m}` on dataset `{ds}`"))?;
            st.n_examples = seqs.len();
            st.recorded.push(rep.recorded);
            st.skipped.push(rep.skipped);
            st.add(mi, m, means)
                .with_context(|| format!("layers: dataset `{ds}`"))?;
        }
    }
    Ok(states)
}

/// Pass 2 of one dataset: `[model][layer][example]` projections replayed from the cache.
fn pass_two(ctx: &StudyContext, setup: &Setup, ds: &str, st: &Pass1) -> Result<Vec<Vec<Vec<f64>>>> {
    let layers: Vec<usize> = (0..setup.n_rows).collect();
    let mut proj = Vec::with_capacity(setup.models.len());
    for m in &setup.models {
        let seqs = ctx.sequences(m, ds)?;
        let entry = stream::windows_entry(ctx, m, ds, &setup.opts, &seqs)?;
        proj.push(
            replay_projections(&entry, &layers, &setup.pool, &st.units, st.n_examples)
                .with_context(|| format!("layers: projections of model `{m}` on dataset `{ds}`"))?,
        );
    }
    Ok(proj)
}

/// One dataset's typed results; `files` are its arrays.
pub(super) fn dataset_results(
    st: &DatasetStats,
    models: &[String],
    files: Vec<String>,
) -> DatasetLayers {
    let finetuned = &models[2..];
    DatasetLayers {
        examples: st.n_examples,
        seed: st.seed,
        recorded: models.iter().cloned().zip(st.recorded.clone()).collect(),
        skipped_examples: models.iter().cloned().zip(st.skipped.clone()).collect(),
        usable_layers: st.usable.clone(),
        direction_norms: st.norms.clone(),
        scores: models
            .iter()
            .cloned()
            .zip(st.scores.iter().map(|s| finite(s)))
            .collect(),
        score_ci: models.iter().cloned().zip(st.score_ci.clone()).collect(),
        relative: finetuned.iter().cloned().zip(st.relative.clone()).collect(),
        tests: finetuned
            .iter()
            .zip(&st.tests)
            .map(|(m, t)| match t {
                Ok(t) => TestOutcome::Ran(Box::new(t.clone())),
                Err(e) => TestOutcome::NotRun {
                    model: m.clone(),
                    error: e.clone(),
                },
            })
            .collect(),
        verdict: st.verdict,
        files,
    }
}

/// NaN (and any non-finite value, which JSON writes as null too) as None.
pub(super) fn finite(xs: &[f64]) -> Vec<Option<f64>> {
    xs.iter().map(|&x| x.is_finite().then_some(x)).collect()
}

fn options(ctx: &StudyContext, setup: &Setup) -> LayersOptions {
    let spec = &ctx.spec.layers;
    LayersOptions {
        datasets: setup.datasets.clone(),
        window: spec.window,
        offset: spec.offset,
        pooling: spec.pooling,
        short: spec.short,
        indexing: spec.indexing,
        bootstrap: spec.bootstrap,
        level: LEVEL,
        study_seed: ctx.spec.seed,
    }
}

fn verdict_rule() -> VerdictRule {
    let s = |x: &str| x.to_string();
    VerdictRule {
        relative_position: s(
            "r_l = (s_l^m - s_l^base) / (s_l^instruct - s_l^base) over paired examples",
        ),
        early_deep: s("first and last max(1, floor(n/3)) usable block layers (1..=L)"),
        tracks_early_min: TRACKS_EARLY_MIN,
        deep_max: DEEP_MAX,
        reproduced: s(
            "r(early) >= tracks_early_min, CI of r(early) - r(deep) above 0, r(deep) <= deep_max",
        ),
        partly: s("CI of r(early) - r(deep) above 0 only"),
        not_reproduced: s("CI of r(early) - r(deep) reaches 0"),
        datasets: s(
            "all reproduced -> reproduced; all not reproduced -> not reproduced; else partly",
        ),
    }
}
