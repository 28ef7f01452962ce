//! Analysis 4: one direction governs alignment across domains (Giordani 2025).
//!
//! For each dataset d, the residual matrix R^(d) [n, dim] has one row per example:
//!   R_i = z_i^instruct - z_i^base,   z = the hidden state(s) at layer `layer` of
//!   - `last`: the last token of the sequence (the study's code), dim = d;
//!   - `window-mean`: the mean over the first T response tokens, dim = d;
//!   - `window-flatten`: those T tokens concatenated, dim = T * d.
//!
//! R is column-centred (A = R - 1 m^T) and its top-k right singular vectors are the principal
//! directions of what alignment changed in that domain (erosion_analysis::directions; the thin
//! SVD or, when 2n <= dim, the Gram route). Sign convention: each direction points along the
//! mean residual m (v . m > 0, "toward instruct"); the headline comparison uses |cos|, which
//! needs none.
//!
//! Between two datasets: the k x k matrix of |cos| (and of signed cosines), its largest entry
//! against random k-dimensional subspaces of R^dim, and each direction's stability under
//! bootstrap resampling of examples.

mod report;
mod verdict;

use crate::context::StudyContext;
use crate::layers::stream;
use crate::section::SectionOutput;
use crate::spec::TokenChoice;
use anyhow::{bail, Context, Result};
use erosion_analysis::directions::{
    bootstrap_stability, cross_cosines, top_directions, CosineMode, DirectionStability, Directions,
    SignConvention, SvdMethod,
};
use erosion_analysis::layers::{Pooling, WindowSpec};
use erosion_analysis::matrix::Matrix;
use erosion_analysis::subspace::{random_subspace_baseline, SubspaceBaseline};
use erosion_data::{Role, ShortResponse};
use erosion_forward::windows::{Layers, Window, WindowOptions, WindowRecord};
use erosion_report::html::Verdict;
use stream::PassReport;

/// Confidence level of the stability intervals.
pub(crate) const LEVEL: f64 = 0.95;
const SEED_SALT: u64 = 0x4449_5245_4354_0004;

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

/// Two datasets compared.
pub(crate) struct PairComparison {
    pub a: usize,
    pub b: usize,
    pub abs: Matrix,
    pub signed: Matrix,
    pub baseline: SubspaceBaseline,
    pub verdict: Verdict,
}

/// Residual matrices up to this many values are written to the output folder.
const MAX_WRITTEN_RESIDUALS: usize = 1 << 24;

/// Analysis 4 of the study, as the study runs it (module docs).
pub struct DirectionsAnalysis;

impl crate::analysis::Analysis for DirectionsAnalysis {
    const KEY: &'static str = "directions";
    const TITLE: &'static str = "4. One direction governs alignment across domains";
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
    let layer = resolve_layer(spec.layer, cfg.num_hidden_layers)?;
    let (window, short, pool) = token_window(spec.token, spec.window);
    let opts = WindowOptions {
        layers: Layers::List(vec![layer]),
        convention: spec.indexing.into(),
        window,
        short,
    };
    let dim = pool.pooled_dim(cfg.hidden_size);
    if dim < 2 * spec.k {
        bail!("[directions] k = {} directions in {dim} dimensions: the random-subspace baseline needs dim >= 2k", spec.k);
    }

    // Base first, then instruct turns each base row into the residual: one model in memory.
    let mut rows: Vec<Vec<Option<Vec<f64>>>> = Vec::with_capacity(datasets.len());
    let mut skipped: Vec<[Vec<usize>; 2]> = Vec::with_capacity(datasets.len());
    for (mi, m) in ["base", "instruct"].into_iter().enumerate() {
        for (di, ds) in datasets.iter().enumerate() {
            let seqs = ctx.sequences(m, ds)?;
            let pass = |sink: &mut dyn FnMut(WindowRecord<'_>) -> Result<()>| {
                stream::windows_pass(ctx, m, ds, &opts, &seqs, "directions", sink)
            };
            let what = || format!("directions: model `{m}` on dataset `{ds}`");
            if mi == 0 {
                let (r, rep) = pooled_rows(pass, seqs.len(), &pool).with_context(what)?;
                rows.push(r);
                skipped.push([rep.skipped, Vec::new()]);
            } else {
                skipped[di][1] = subtract_pass(pass, &pool, &mut rows[di])
                    .with_context(what)?
                    .skipped;
            }
        }
    }

    let mut found = Vec::with_capacity(datasets.len());
    for (di, ((ds, r), skipped)) in datasets.iter().zip(rows).zip(skipped).enumerate() {
        let seed = erosion_model::seed::mix(ctx.spec.seed, SEED_SALT.wrapping_add(di as u64));
        let n_examples = r.len();
        let (matrix, kept) =
            residual_matrix(r, dim).with_context(|| format!("directions: dataset `{ds}`"))?;
        found.push(analyse(
            ds,
            matrix,
            kept,
            n_examples,
            skipped,
            spec.k,
            spec.bootstrap,
            seed,
        )?);
    }
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
    report::section(ctx, layer, dim, &found, &pairs)
}

/// The datasets compared: the spec's, else the first two misaligned ones, else the first two.
pub(crate) fn chosen_datasets(ctx: &StudyContext) -> Vec<String> {
    if let Some(d) = &ctx.spec.directions.datasets {
        return d.clone();
    }
    let roles: Vec<(String, Option<Role>)> = ctx
        .datasets
        .iter()
        .map(|d| (d.name.clone(), d.role))
        .collect();
    default_datasets(&roles)
}

pub(crate) fn default_datasets(roles: &[(String, Option<Role>)]) -> Vec<String> {
    let misaligned: Vec<String> = roles
        .iter()
        .filter(|(_, r)| *r == Some(Role::Misaligned))
        .map(|(n, _)| n.clone())
        .collect();
    if misaligned.len() >= 2 {
        misaligned.into_iter().take(2).collect()
    } else {
        roles.iter().take(2).map(|(n, _)| n.clone()).collect()
    }
}

/// A layer index of the spec (negative counts from the end: -1 = L) as 0..=L.
pub(crate) fn resolve_layer(layer: i64, n_layers: usize) -> Result<usize> {
    let top = n_layers as i64;
    let l = if layer < 0 { top + 1 + layer } else { layer };
    if !(0..=top).contains(&l) {
        bail!(
            "[directions] layer {layer} does not exist: a model of {n_layers} blocks has layers 0..={top} \
             (0 = embeddings), or -1..=-{} counted from the end",
            top + 1
        );
    }
    Ok(l as usize)
}

/// The window, its short-response policy and its pooling for a token choice. A window shorter
/// than T is averaged over the tokens there are (`window-mean`) or left out (`window-flatten`,
/// whose rows must all have T * d values).
pub(crate) fn token_window(token: TokenChoice, t: usize) -> (Window, ShortResponse, WindowSpec) {
    let spec = |len, pooling, short| WindowSpec {
        len,
        offset: 0,
        pooling,
        short,
    };
    match token {
        TokenChoice::Last => (
            Window::LastToken,
            ShortResponse::Error,
            spec(1, Pooling::Mean, ShortResponse::Error),
        ),
        TokenChoice::WindowMean => (
            Window::Response { offset: 0, len: t },
            ShortResponse::UseAvailable,
            spec(t, Pooling::Mean, ShortResponse::UseAvailable),
        ),
        TokenChoice::WindowFlatten => (
            Window::Response { offset: 0, len: t },
            ShortResponse::Skip,
            spec(t, Pooling::Flatten, ShortResponse::Skip),
        ),
    }
}

/// The base pass: one pooled row per example of `n` (None when the policy left it out).
pub(crate) fn pooled_rows(
    pass: impl FnOnce(&mut dyn FnMut(WindowRecord<'_>) -> Result<()>) -> Result<PassReport>,
    n: usize,
    pool: &WindowSpec,
) -> Result<(Vec<Option<Vec<f64>>>, PassReport)> {
    let mut rows = vec![None; n];
    let rep = pass(&mut |r| {
        let slot = rows
            .get_mut(r.example)
            .with_context(|| format!("record of example {} of {n}", r.example))?;
        *slot = stream::pool_record(&r, pool)?;
        Ok(())
    })?;
    Ok((rows, rep))
}

/// The instruct pass: row i becomes z_i^instruct - z_i^base in place; an example either model
/// left out becomes None.
pub(crate) fn subtract_pass(
    pass: impl FnOnce(&mut dyn FnMut(WindowRecord<'_>) -> Result<()>) -> Result<PassReport>,
    pool: &WindowSpec,
    rows: &mut [Option<Vec<f64>>],
) -> Result<PassReport> {
    let mut seen = vec![false; rows.len()];
    let rep = pass(&mut |r| {
        if let (Some(z), Some(Some(b))) = (stream::pool_record(&r, pool)?, rows.get_mut(r.example))
        {
            if z.len() != b.len() {
                bail!(
                    "example {}: instruct row has {} values, base row {}",
                    r.example,
                    z.len(),
                    b.len()
                );
            }
            b.iter_mut().zip(&z).for_each(|(b, z)| *b = z - *b);
            seen[r.example] = true;
        }
        Ok(())
    })?;
    for (row, seen) in rows.iter_mut().zip(seen) {
        if !seen {
            *row = None;
        }
    }
    Ok(rep)
}

/// The residual rows as one matrix [n_kept, dim] (rows freed as they are copied) and the
/// example index of each row.
pub(crate) fn residual_matrix(
    rows: Vec<Option<Vec<f64>>>,
    dim: usize,
) -> Result<(Matrix, Vec<usize>)> {
    let kept: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_some())
        .map(|(i, _)| i)
        .collect();
    let mut data = Vec::with_capacity(kept.len() * dim);
    for (i, r) in rows.into_iter().enumerate() {
        if let Some(r) = r {
            if r.len() != dim {
                bail!(
                    "example {i}: residual row has {} values, expected {dim}",
                    r.len()
                );
            }
            data.extend(r);
        }
    }
    Ok((Matrix::from_vec(kept.len(), dim, data)?, kept))
}

/// Top-k directions of one dataset's residual matrix and their bootstrap stability.
#[allow(clippy::too_many_arguments)]
fn analyse(
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
fn compare(
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

#[cfg(test)]
mod tests;
