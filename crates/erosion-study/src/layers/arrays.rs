//! Analysis 3's `.npy` arrays (results.json refers to them by path) and the cross-dataset
//! cosines of the alignment directions.

use super::compute::finite;
use super::results::DirectionCosines;
use super::statistics::DatasetStats;
use super::stream::file_stem;
use crate::context::StudyContext;
use anyhow::Result;
use erosion_analysis::layers::direction_cosines as cosines_of;
use erosion_analysis::stats::ConfidenceInterval;

/// Name of the cosine array (`arrays/<name>.npy`) and figure (`figures/<name>.svg`).
pub(super) const COSINES: &str = "layers_direction_cosines";

/// `field` of every interval, NaN where there is none.
pub(super) fn ci_field(
    c: &[Option<ConfidenceInterval>],
    field: fn(&ConfidenceInterval) -> f64,
) -> Vec<f64> {
    c.iter()
        .map(|c| c.as_ref().map_or(f64::NAN, field))
        .collect()
}

fn flat(rows: &[Vec<f64>]) -> Vec<f64> {
    rows.iter().flatten().copied().collect()
}

/// Writes one dataset's arrays and returns their paths: scores s_l and their CI bounds
/// `[models, n_layers]`, |v_l| `[n_layers]`, unit directions `[n_layers, dim]` (f32, zero rows
/// where unusable), and with fine-tuned models r_l and its CI bounds `[fine-tuned, n_layers]`.
pub(super) fn save_dataset_arrays(
    ctx: &StudyContext,
    models: &[String],
    r: &DatasetStats,
    dim: usize,
) -> Result<Vec<String>> {
    let stem = format!("layers_{}", file_stem(&r.name));
    let n_rows = r.norms.len();
    let by_model = [models.len(), n_rows];
    let bound = |cis: &[Vec<Option<ConfidenceInterval>>], f: fn(&ConfidenceInterval) -> f64| {
        flat(&cis.iter().map(|c| ci_field(c, f)).collect::<Vec<_>>())
    };
    let mut files = vec![
        ctx.save_npy(&format!("{stem}_scores"), &by_model, &flat(&r.scores))?,
        ctx.save_npy(
            &format!("{stem}_scores_ci_lower"),
            &by_model,
            &bound(&r.score_ci, |c| c.lower),
        )?,
        ctx.save_npy(
            &format!("{stem}_scores_ci_upper"),
            &by_model,
            &bound(&r.score_ci, |c| c.upper),
        )?,
        ctx.save_npy(&format!("{stem}_direction_norms"), &[n_rows], &r.norms)?,
    ];
    let units: Vec<f32> = r
        .units
        .iter()
        .flat_map(|u| match u {
            Some(u) => u.iter().map(|&x| x as f32).collect::<Vec<_>>(),
            None => vec![0.0; dim],
        })
        .collect();
    files.push(ctx.save_npy(&format!("{stem}_unit_directions"), &[n_rows, dim], &units)?);
    let n_finetuned = models.len().saturating_sub(2);
    if n_finetuned > 0 {
        let shape = [n_finetuned, n_rows];
        let rel = &r.relative;
        files.push(ctx.save_npy(
            &format!("{stem}_relative"),
            &shape,
            &bound(rel, |c| c.estimate),
        )?);
        files.push(ctx.save_npy(
            &format!("{stem}_relative_ci_lower"),
            &shape,
            &bound(rel, |c| c.lower),
        )?);
        files.push(ctx.save_npy(
            &format!("{stem}_relative_ci_upper"),
            &shape,
            &bound(rel, |c| c.upper),
        )?);
    }
    Ok(files)
}

/// Directions found on different datasets, compared layer by layer (signed: v_l has a sign),
/// for every pair a < b; written as `[pairs, n_layers]` (NaN where either layer has no
/// direction) when there are two datasets or more.
pub(super) fn direction_cosines(
    ctx: &StudyContext,
    stats: &[DatasetStats],
) -> Result<Vec<DirectionCosines>> {
    if stats.len() < 2 {
        return Ok(Vec::new());
    }
    let n_rows = stats[0].norms.len();
    let mut pairs = Vec::new();
    let mut all = Vec::new();
    for a in 0..stats.len() {
        for b in a + 1..stats.len() {
            let (ra, rb) = (&stats[a], &stats[b]);
            let cos = (0..n_rows)
                .map(|l| match (&ra.units[l], &rb.units[l]) {
                    (Some(x), Some(y)) => {
                        Ok(cosines_of(std::slice::from_ref(x), std::slice::from_ref(y))?[0])
                    }
                    _ => Ok(f64::NAN),
                })
                .collect::<Result<Vec<f64>>>()?;
            pairs.push(DirectionCosines {
                a: ra.name.clone(),
                b: rb.name.clone(),
                cosine: finite(&cos),
            });
            all.extend(cos);
        }
    }
    ctx.save_npy(COSINES, &[pairs.len(), n_rows], &all)?;
    Ok(pairs)
}
