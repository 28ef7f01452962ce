//! Analysis 4's numbers: per dataset the top-k directions of its residual matrix and their
//! bootstrap stability; per pair of datasets the k x k cosines against random subspaces.

use super::residuals::{
    chosen_datasets, residual_matrix, residual_rows, resolve_layer, token_window, ResidualRows,
};
use super::results::DirectionsResults;
use super::{record, verdict, LEVEL, MAX_WRITTEN_RESIDUALS, SEED_SALT};
use crate::context::StudyContext;
use crate::pass::Pass;
use anyhow::{bail, Context, Result};
use erosion_analysis::directions::{
    bootstrap_stability, cross_cosines, top_directions, CosineMode, DirectionStability, Directions,
    SignConvention, SvdMethod,
};
use erosion_analysis::layers::WindowSpec;
use erosion_analysis::matrix::Matrix;
use erosion_analysis::subspace::{random_subspace_baseline, SubspaceBaseline};
use erosion_forward::windows::{Layers, WindowOptions};
use erosion_report::html::Verdict;

/// The residual matrix of one dataset and what was found in it.
pub(crate) struct DatasetDirections {
    pub name: String,
    pub n_examples: usize,
    /// Examples whose rows are in R (recorded by base and instruct), in row order.
    pub rows: Vec<usize>,
    /// Per model (base, instruct): examples the window policy left out.
    pub skipped: [Vec<usize>; 2],
    pub seed: u64,
    pub directions: Directions,
    /// Bootstrap stability per direction, or why it could not be computed.
    pub stability: std::result::Result<Vec<DirectionStability>, String>,
    /// R itself when small enough to write (n x dim f32 up to 2^24 values).
    pub residuals: Option<Matrix>,
}

/// Two datasets compared (indices into the datasets).
pub(crate) struct PairComparison {
    pub a: usize,
    pub b: usize,
    pub abs: Matrix,
    pub signed: Matrix,
    pub baseline: SubspaceBaseline,
    pub verdict: Verdict,
}

/// The layer, window options and pooling of the residual rows.
fn window(ctx: &StudyContext) -> Result<(usize, WindowOptions, WindowSpec)> {
    let spec = &ctx.spec.directions;
    let n_layers = ctx.models[0].checkpoint.config.num_hidden_layers;
    let layer = resolve_layer(spec.layer, n_layers)?;
    let (window, short, pool) = token_window(spec.token, spec.window);
    let opts = WindowOptions {
        layers: Layers::List(vec![layer]),
        convention: spec.indexing.into(),
        window,
        short,
    };
    Ok((layer, opts, pool))
}

/// The passes [`compute`] reads: base's and instruct's windows on the compared datasets.
pub(crate) fn passes(ctx: &StudyContext) -> Result<Vec<Pass>> {
    let (_, opts, _) = window(ctx)?;
    let datasets = chosen_datasets(ctx);
    Ok(["base", "instruct"]
        .iter()
        .flat_map(|m| {
            datasets.iter().map(|d| Pass::Windows {
                model: m.to_string(),
                dataset: d.clone(),
                opts: opts.clone(),
            })
        })
        .collect())
}

/// Runs the forward passes and the statistics, writes the `.npy` arrays, returns the results.
pub(crate) fn compute(ctx: &StudyContext) -> Result<DirectionsResults> {
    let spec = &ctx.spec.directions;
    let datasets = chosen_datasets(ctx);
    if datasets.is_empty() {
        bail!("[directions] names no dataset");
    }
    if spec.bootstrap < 2 || spec.baseline_samples < 2 {
        bail!(
            "[directions] bootstrap ({}) and baseline_samples ({}) must be at least 2",
            spec.bootstrap,
            spec.baseline_samples
        );
    }
    let cfg = &ctx.models[0].checkpoint.config;
    let (layer, opts, pool) = window(ctx)?;
    let dim = pool.pooled_dim(cfg.hidden_size);
    if dim < 2 * spec.k {
        bail!("[directions] k = {} directions in {dim} dimensions: the random-subspace baseline needs dim >= 2k", spec.k);
    }
    let residuals = residual_rows(ctx, &datasets, &opts, &pool)?;
    let found = directions_per_dataset(ctx, &datasets, residuals, dim)?;
    let mut pairs = Vec::new();
    for a in 0..found.len() {
        for b in a + 1..found.len() {
            let seed = erosion_model::seed::mix(
                ctx.spec.seed,
                SEED_SALT ^ ((a as u64) << 32 | b as u64) ^ 0xBA5E,
            );
            pairs.push(compare(&found, a, b, dim, spec.baseline_samples, seed)?);
        }
    }
    record::results(ctx, layer, dim, &found, &pairs)
}

/// Each dataset's residual matrix and its directions, seeded by its position.
fn directions_per_dataset(
    ctx: &StudyContext,
    datasets: &[String],
    residuals: Vec<ResidualRows>,
    dim: usize,
) -> Result<Vec<DatasetDirections>> {
    let spec = &ctx.spec.directions;
    let mut found = Vec::with_capacity(datasets.len());
    for (di, (ds, r)) in datasets.iter().zip(residuals).enumerate() {
        let seed = erosion_model::seed::mix(ctx.spec.seed, SEED_SALT.wrapping_add(di as u64));
        let n_examples = r.rows.len();
        let (matrix, kept) =
            residual_matrix(r.rows, dim).with_context(|| format!("directions: dataset `{ds}`"))?;
        found.push(analyse(
            ds,
            matrix,
            kept,
            n_examples,
            r.skipped,
            spec.k,
            spec.bootstrap,
            seed,
        )?);
    }
    Ok(found)
}

/// Top-k directions of one dataset's residual matrix and their bootstrap stability.
#[allow(clippy::too_many_arguments)]
pub(super) fn analyse(
    name: &str,
    r: Matrix,
    rows: Vec<usize>,
    n_examples: usize,
    skipped: [Vec<usize>; 2],
    k: usize,
    n_resamples: usize,
    seed: u64,
) -> Result<DatasetDirections> {
    if r.rows < k + 1 {
        bail!(
            "directions: dataset `{name}` has {} usable examples ({n_examples} loaded, the rest left out by the window policy); \
             k = {k} directions of a column-centred matrix need at least k + 1 = {} (raise the dataset's limit or lower k)",
            r.rows,
            k + 1
        );
    }
    let directions = top_directions(
        &r,
        k,
        SvdMethod::Auto,
        SignConvention::MeanProjectionPositive,
    )
    .with_context(|| {
        format!(
            "directions of dataset `{name}` ({} x {} residual matrix)",
            r.rows, r.cols
        )
    })?;
    // A resample repeats examples, so its rank can fall below k on small datasets: reported, not fatal.
    let stability = bootstrap_stability(&r, &directions, n_resamples, LEVEL, seed)
        .map_err(|e| format!("{e:#}"));
    let residuals = (r.rows * r.cols <= MAX_WRITTEN_RESIDUALS).then_some(r);
    Ok(DatasetDirections {
        name: name.to_string(),
        n_examples,
        rows,
        skipped,
        seed,
        directions,
        stability,
        residuals,
    })
}

/// The cosines between the directions of datasets a and b, against random subspaces.
pub(super) fn compare(
    found: &[DatasetDirections],
    a: usize,
    b: usize,
    dim: usize,
    samples: usize,
    seed: u64,
) -> Result<PairComparison> {
    let (x, y) = (&found[a].directions, &found[b].directions);
    let abs = cross_cosines(x, y, CosineMode::Absolute)?;
    let signed = cross_cosines(x, y, CosineMode::Signed)?;
    // The signed matrix: the max and entry statistics take |.| themselves, and the top
    // canonical cosine (a singular value) is only meaningful on the signed cosines.
    let baseline = random_subspace_baseline(&signed, dim, samples, seed).with_context(|| {
        format!(
            "random-subspace baseline of `{}` vs `{}`",
            found[a].name, found[b].name
        )
    })?;
    let verdict = verdict::shared_direction_verdict(&baseline.max_abs_cos);
    Ok(PairComparison {
        a,
        b,
        abs,
        signed,
        baseline,
        verdict,
    })
}

/// (max |cos|, row, col) of a cosine matrix: the first of ties in row-major order.
pub(crate) fn max_cell(m: &Matrix) -> (f64, usize, usize) {
    let mut best = (f64::NEG_INFINITY, 0, 0);
    for i in 0..m.rows {
        for j in 0..m.cols {
            if m.get(i, j).abs() > best.0 {
                best = (m.get(i, j).abs(), i, j);
            }
        }
    }
    best
}
