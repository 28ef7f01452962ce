//! The residual rows of analysis 4: which datasets, layer and token window, and the two
//! forward passes (base, then instruct) that turn each example into z^instruct - z^base.

use crate::context::StudyContext;
use crate::layers::stream::{self, PassReport};
use crate::spec::TokenChoice;
use anyhow::{bail, Context, Result};
use erosion_analysis::layers::{Pooling, WindowSpec};
use erosion_analysis::matrix::Matrix;
use erosion_data::{Role, ShortResponse};
use erosion_forward::windows::{Window, WindowOptions, WindowRecord};

/// Per dataset: the residual rows (None where an example was left out) and, per model (base,
/// instruct), the examples the window policy left out.
pub(crate) struct ResidualRows {
    pub rows: Vec<Option<Vec<f64>>>,
    pub skipped: [Vec<usize>; 2],
}

/// Base first, then instruct turns each base row into the residual: one model in memory.
pub(crate) fn residual_rows(
    ctx: &StudyContext,
    datasets: &[String],
    opts: &WindowOptions,
    pool: &WindowSpec,
) -> Result<Vec<ResidualRows>> {
    let mut out: Vec<ResidualRows> = Vec::with_capacity(datasets.len());
    for (mi, m) in ["base", "instruct"].into_iter().enumerate() {
        for (di, ds) in datasets.iter().enumerate() {
            let seqs = ctx.sequences(m, ds)?;
            let pass = |sink: &mut dyn FnMut(WindowRecord<'_>) -> Result<()>| {
                stream::windows_pass(ctx, m, ds, opts, &seqs, "directions", sink)
            };
            let what = || format!("directions: model `{m}` on dataset `{ds}`");
            if mi == 0 {
                let (rows, rep) = pooled_rows(pass, seqs.len(), pool).with_context(what)?;
                out.push(ResidualRows {
                    rows,
                    skipped: [rep.skipped, Vec::new()],
                });
            } else {
                let d = &mut out[di];
                d.skipped[1] = subtract_pass(pass, pool, &mut d.rows)
                    .with_context(what)?
                    .skipped;
            }
        }
    }
    Ok(out)
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
