//! Analysis 1's statistics: from the forward passes (passes.rs) to [`BehaviourResults`],
//! saving the arrays results.json names under `arrays/`.

use super::passes::{run_passes, Passes};
use super::results::*;
use super::table::{
    behaviour_verdict, cell_seed, pattern_cell, pattern_seed, summarise, BOOTSTRAP, LEVEL,
    STUDY_MODELS, STUDY_TABLE,
};
use super::tables::slug;
use crate::context::StudyContext;
use anyhow::{Context, Result};
use erosion_data::Role;

/// Runs the forward passes and every statistic of analysis 1.
pub(crate) fn compute(ctx: &StudyContext) -> Result<BehaviourResults> {
    let p = run_passes(ctx)?;
    let eot = if ctx.spec.render.include_end_of_turn {
        "including"
    } else {
        "excluding"
    };
    let table = table_results(ctx, &p)?;
    let pattern = pattern_results(ctx, &p, &table.roles)?;
    let (verdict, reason) = behaviour_verdict(&pattern.cells, !p.finetuned.is_empty());
    Ok(BehaviourResults {
        options: ctx.spec.behaviour.clone(),
        render: ctx.spec.render.clone(),
        positions: format!("response tokens as rendered, {eot} the end-of-turn token"),
        units: "nats".into(),
        example: example_results(ctx, &p)?,
        next_token: next_token_results(ctx, &p)?,
        table,
        pattern,
        study_table: study_table_rows(),
        verdict: BehaviourVerdict { verdict, reason },
    })
}

fn model_index(p: &Passes, name: &str) -> Result<usize> {
    p.models
        .iter()
        .position(|m| m == name)
        .with_context(|| format!("the study has no model `{name}`"))
}

/// (a) The example's per-token values under every model.
fn example_results(ctx: &StudyContext, p: &Passes) -> Result<ExampleResults> {
    let (ex, nm) = (&p.example, p.models.len());
    let nt = ex.ids.len();
    let models: ByName<ExampleModel> = p
        .models
        .iter()
        .zip(&p.example_logprobs)
        .zip(&ex.own_tokens_differ)
        .map(|((m, r), &differs)| {
            let running = r.running_log_joint();
            let model = ExampleModel {
                logprobs: r.logprobs.iter().map(|&v| v as f64).collect(),
                log_joint: running.last().copied().unwrap_or(0.0),
                running_log_joint: running,
                entropy: r.entropy.iter().map(|&v| v as f64).collect(),
                own_tokenization_differs: differs,
            };
            (m.clone(), model)
        })
        .collect();
    let flat = |f: &dyn Fn(&ExampleModel) -> &Vec<f64>| -> Vec<f64> {
        models.values().flat_map(|m| f(m).iter().copied()).collect()
    };
    let files = ExampleFiles {
        token_ids: ctx.save_npy("behaviour_example_token_ids", &[nt], &ex.ids)?,
        logprobs: ctx.save_npy(
            "behaviour_example_logprobs",
            &[nm, nt],
            &flat(&|m| &m.logprobs),
        )?,
        running_log_joint: ctx.save_npy(
            "behaviour_example_running_log_joint",
            &[nm, nt],
            &flat(&|m| &m.running_log_joint),
        )?,
        entropy: ctx.save_npy(
            "behaviour_example_entropy",
            &[nm, nt],
            &flat(&|m| &m.entropy),
        )?,
    };
    Ok(ExampleResults {
        dataset: ex.dataset.clone(),
        index: ex.index,
        chosen_by: if ex.explicit {
            "[behaviour] example"
        } else {
            "default: example 0 of the first misaligned dataset (else of the first dataset)"
        }
        .into(),
        tokens: ex
            .ids
            .iter()
            .zip(&ex.tokens)
            .map(|(&id, t)| TokenLabel {
                id,
                text: t.clone(),
            })
            .collect(),
        models,
        files,
    })
}

/// (b) The next-token distributions after the prefix.
fn next_token_results(ctx: &StudyContext, p: &Passes) -> Result<NextTokenResults> {
    let spec = &ctx.spec.behaviour;
    let nm = p.models.len();
    let ii = model_index(p, "instruct")?;
    // The arrays hold the fewest top tokens any model has.
    let k = p.next.iter().map(|n| n.top.len()).min().unwrap_or(0);
    let entropies: Vec<f64> = p.next.iter().map(|n| n.entropy as f64).collect();
    let probs: Vec<f64> = p
        .next
        .iter()
        .flat_map(|n| n.top[..k].iter().map(|t| t.prob as f64))
        .collect();
    let ids: Vec<u32> = p
        .next
        .iter()
        .flat_map(|n| n.top[..k].iter().map(|t| t.id))
        .collect();
    let files = NextTokenFiles {
        top_ids: ctx.save_npy("behaviour_next_token_top_ids", &[nm, k], &ids)?,
        top_probs: ctx.save_npy("behaviour_next_token_top_probs", &[nm, k], &probs)?,
        entropy: ctx.save_npy("behaviour_next_token_entropy", &[nm], &entropies)?,
    };
    let models = (0..nm)
        .map(|mi| {
            let top = (p.next[mi].top.iter().zip(&p.next_tokens[mi]))
                .map(|(t, s)| TopToken {
                    id: t.id,
                    text: s.clone(),
                    prob: t.prob,
                    logprob: t.logprob,
                })
                .collect();
            let model = NextTokenModel {
                prompt: p.prompts[mi].clone(),
                entropy_nats: entropies[mi],
                top,
            };
            (p.models[mi].clone(), model)
        })
        .collect();
    Ok(NextTokenResults {
        prefix_user: spec.prefix_user.clone(),
        prefix_assistant: spec.prefix_assistant.clone(),
        top_k: spec.top_k,
        models,
        instruct_has_lowest_entropy: (0..nm)
            .filter(|&m| m != ii)
            .all(|m| entropies[ii] < entropies[m]),
        files,
    })
}

fn role_text(r: Option<Role>) -> &'static str {
    match r {
        Some(Role::Misaligned) => "misaligned",
        Some(Role::Aligned) => "aligned",
        None => "-",
    }
}

/// (c) Every (dataset, model) cell with its CIs; every model's CIs of a dataset are over the
/// same resamples.
fn table_results(ctx: &StudyContext, p: &Passes) -> Result<TableResults> {
    let mut cells = Vec::new();
    for (di, d) in p.datasets.iter().enumerate() {
        for (mi, m) in p.models.iter().enumerate() {
            cells.push(summarise(
                d,
                m,
                &p.cells[di][mi],
                cell_seed(ctx.spec.seed, di),
            )?);
        }
    }
    let roles = p
        .datasets
        .iter()
        .map(|d| Ok(role_text(ctx.dataset(d)?.role).to_string()))
        .collect::<Result<_>>()?;
    let excluded = (p.excluded.iter().zip(&p.datasets))
        .map(|(e, d)| {
            let rows = e.iter().map(|(i, w)| Excluded {
                example: *i,
                reason: w.clone(),
            });
            (d.clone(), rows.collect())
        })
        .collect();
    Ok(TableResults {
        datasets: p.datasets.clone(),
        models: p.models.clone(),
        roles,
        n_examples: p.common.iter().map(Vec::len).collect(),
        excluded,
        entropy_column: "mean over examples of each response's mean next-token entropy".into(),
        files: table_files(ctx, p, &cells)?,
        cells,
        bootstrap: BootstrapOptions {
            resamples: BOOTSTRAP,
            level: LEVEL,
            method: "percentile bootstrap over examples".into(),
        },
    })
}

/// The table's arrays: the `[D, M]` means and CIs, and each dataset's per-example values.
fn table_files(ctx: &StudyContext, p: &Passes, cells: &[CellSummary]) -> Result<TableFiles> {
    let (nd, nm) = (p.datasets.len(), p.models.len());
    let grid = |f: &dyn Fn(&CellSummary) -> f64| -> Vec<f64> { cells.iter().map(f).collect() };
    let bounds = |f: &dyn Fn(&CellSummary) -> &erosion_analysis::stats::ConfidenceInterval| {
        cells
            .iter()
            .flat_map(|s| [f(s).lower, f(s).upper])
            .collect::<Vec<f64>>()
    };
    let mut per_dataset = Vec::new();
    for (di, d) in p.datasets.iter().enumerate() {
        let n = p.common[di].len();
        let across = |f: &dyn Fn(&super::table::CellData) -> &Vec<f64>| -> Vec<f64> {
            (0..nm)
                .flat_map(|mi| f(&p.cells[di][mi]).iter().copied())
                .collect()
        };
        let examples: Vec<i64> = p.common[di].iter().map(|&i| i as i64).collect();
        let files = DatasetFiles {
            log_joint: ctx.save_npy(
                &format!("behaviour_log_joint_{}", slug(d)),
                &[nm, n],
                &across(&|c| &c.log_joint),
            )?,
            mean_entropy: ctx.save_npy(
                &format!("behaviour_mean_entropy_{}", slug(d)),
                &[nm, n],
                &across(&|c| &c.mean_entropy),
            )?,
            examples: ctx.save_npy(&format!("behaviour_examples_{}", slug(d)), &[n], &examples)?,
        };
        per_dataset.push((d.clone(), files));
    }
    Ok(TableFiles {
        log_joint: ctx.save_npy(
            "behaviour_table_log_joint",
            &[nd, nm],
            &grid(&|s| s.log_joint_ci.estimate),
        )?,
        log_joint_ci: ctx.save_npy(
            "behaviour_table_log_joint_ci",
            &[nd, nm, 2],
            &bounds(&|s| &s.log_joint_ci),
        )?,
        entropy: ctx.save_npy(
            "behaviour_table_entropy",
            &[nd, nm],
            &grid(&|s| s.entropy_ci.estimate),
        )?,
        entropy_ci: ctx.save_npy(
            "behaviour_table_entropy_ci",
            &[nd, nm, 2],
            &bounds(&|s| &s.entropy_ci),
        )?,
        per_dataset: ByName(per_dataset),
    })
}

/// The paired tests of the ordering on the misaligned datasets (all when none is marked), per
/// fine-tune (instruct vs base alone without one).
fn pattern_results(ctx: &StudyContext, p: &Passes, roles: &[String]) -> Result<PatternResults> {
    let seed = ctx.spec.seed;
    let (ib, ii) = (model_index(p, "base")?, model_index(p, "instruct")?);
    let misaligned: Vec<usize> = (0..p.datasets.len())
        .filter(|&d| roles[d] == "misaligned")
        .collect();
    let role_based = !misaligned.is_empty();
    let tested: Vec<usize> = if role_based {
        misaligned
    } else {
        (0..p.datasets.len()).collect()
    };
    let mut cells = Vec::new();
    for &di in &tested {
        let lj = |mi: usize| p.cells[di][mi].log_joint.as_slice();
        let d = &p.datasets[di];
        if p.finetuned.is_empty() {
            let s = pattern_seed(seed, di, 0);
            cells.push(pattern_cell(d, lj(ib), lj(ii), None, s)?);
        }
        for (fi, f) in p.finetuned.iter().enumerate() {
            let (mf, s) = (model_index(p, f)?, pattern_seed(seed, di, fi + 1));
            cells.push(pattern_cell(d, lj(ib), lj(ii), Some((f, lj(mf))), s)?);
        }
    }
    Ok(PatternResults {
        tested_datasets: tested.iter().map(|&d| p.datasets[d].clone()).collect(),
        chosen_by_role: role_based,
        cells,
    })
}

/// The study's own table, by its model names.
fn study_table_rows() -> Vec<StudyTableRow> {
    let by_model = |v: [f64; 3]| STUDY_MODELS.iter().map(|m| m.to_string()).zip(v).collect();
    STUDY_TABLE
        .iter()
        .map(|r| StudyTableRow {
            dataset: r.dataset.into(),
            role: if r.misaligned_role {
                "misaligned"
            } else {
                "aligned"
            }
            .into(),
            log_joint: by_model(r.log_joint),
            entropy: by_model(r.entropy),
        })
        .collect()
}
