//! Analysis 2's numbers: scoring, loss vectors, gradients, quadrants, arrays and verdict.

use super::results::{
    DatasetPair, GradientFiles, GradientPassResults, GradientRow, GradientSeeds, GradientSkip,
    GradientsResults, LossVectorResults, Origin, PlanLimits, Unscorable, VerdictRecord,
};
use super::signals::{gradient_gram, loss_spec, GradientGram, DELTA, MAX_COSINE_ERROR, MAX_PASSES};
use super::verdict::{gradient_verdict, ALPHA};
use crate::behaviour::shared::dataset_logprobs;
use crate::context::StudyContext;
use crate::keys::sequences_fingerprint;
use crate::pass::Pass;
use anyhow::{bail, Context, Result};
use erosion_analysis::cosine::{cosine_from_gram, cosine_matrix, double_centre};
use erosion_analysis::loss_vectors::{two_group_loss_vectors, TwoGroupLossVectors};
use erosion_analysis::matrix::Matrix;
use erosion_analysis::quadrants::{quadrant_summary, QuadrantSummary};
use erosion_analysis::sketch::GramPlan;
use erosion_data::Sequence;
use erosion_model::seed;
use erosion_model::transformer::Transformer;
use serde_json::json;

const SALT_LOSS_PERM: u64 = 0x2A_0001;
const SALT_GRAD_PERM: u64 = 0x2B_0001;
const SALT_SKETCH: u64 = 0x2B_0002;

/// The scorable examples among the first n of each dataset.
struct Scored {
    /// Dataset indices of the examples used, per group.
    used: [Vec<usize>; 2],
    /// Unscorable examples among the first n, per group: (index, why).
    unscorable: [Vec<(usize, String)>; 2],
    /// Response log-probs of the used examples, per group.
    logprobs: [Vec<Vec<f64>>; 2],
    /// The used examples' sequences, A then B.
    seqs: Vec<Sequence>,
}

/// Part a: loss vectors, their cosines and quadrants.
struct LossPart {
    loss: TwoGroupLossVectors,
    cosine: Matrix,
    quadrants: QuadrantSummary,
}

/// Part b: the gradient pass, rows per group, cosines (centred when asked) and quadrants.
struct GradientPart {
    grad: GradientGram,
    n: [usize; 2],
    cosine: Matrix,
    quadrants: QuadrantSummary,
    /// Cosine error bound of the sketch (0 for the exact Gram).
    margin: f64,
}

/// The cached passes [`compute`] reads: the model's log-probs of the first `n` examples of
/// both datasets (the gradients themselves are not cached: they run at the merge).
pub(super) fn passes(ctx: &StudyContext) -> Result<Vec<Pass>> {
    let g = &ctx.spec.gradients;
    Ok(g.pair()?
        .into_iter()
        .map(|d| Pass::Logprobs {
            model: g.model.clone(),
            dataset: d.to_string(),
            limit: g.n,
        })
        .collect())
}

/// Runs analysis 2 on `ctx` (module docs) and saves its arrays under `arrays/`.
pub(super) fn compute(ctx: &StudyContext) -> Result<GradientsResults> {
    let g = &ctx.spec.gradients;
    let seeds = GradientSeeds {
        study: ctx.spec.seed,
        loss_vector_permutations: seed::mix(ctx.spec.seed, SALT_LOSS_PERM),
        gradient_permutations: seed::mix(ctx.spec.seed, SALT_GRAD_PERM),
        sketch: seed::mix(ctx.spec.seed, SALT_SKETCH),
    };
    // Streamed when the study streams its layers: the gradients then hold only the blocks
    // from the first chosen weight on and the unembedding (`GradientComputer`).
    let model = ctx.pass_transformer(&g.model)?;
    let scored = score(ctx, &model)?;
    let loss = loss_part(ctx, &scored, seeds.loss_vector_permutations)?;
    let grad = gradient_part(ctx, &model, &scored, loss.loss.loss.window, &seeds)?;
    let files = save_arrays(ctx, &scored.used, &loss, &grad)?;
    let (verdict, reason) = gradient_verdict(&grad.quadrants, grad.margin);
    let [used_a, used_b] = scored.used.clone();
    Ok(GradientsResults {
        options: g.clone(),
        render: ctx.spec.render.clone(),
        datasets: {
            let [a, b] = g.pair()?;
            DatasetPair {
                a: a.into(),
                b: b.into(),
            }
        },
        examples_used: DatasetPair {
            a: used_a,
            b: used_b,
        },
        unscorable: scored.unscorable.clone().map(|u| {
            u.into_iter()
                .map(|(example, reason)| Unscorable { example, reason })
                .collect()
        }),
        loss_vectors: loss_results(ctx, &scored.used, loss),
        gradients: gradient_results(ctx, &scored.used, grad, g.pair()?),
        seeds,
        files,
        verdict: VerdictRecord {
            verdict,
            reason,
            alpha: ALPHA,
        },
    })
}

/// Response log-probs of the first n examples of each dataset; at least 2 scorable in each.
fn score(ctx: &StudyContext, model: &Transformer) -> Result<Scored> {
    let g = &ctx.spec.gradients;
    let mut s = Scored {
        used: Default::default(),
        unscorable: Default::default(),
        logprobs: Default::default(),
        seqs: Vec::new(),
    };
    for (k, d) in g.pair()?.into_iter().enumerate() {
        let all = ctx.sequences(&g.model, d)?;
        let n = g.n.unwrap_or(all.len()).min(all.len());
        let lp = dataset_logprobs(ctx, &g.model, model, d, Some(n))?;
        s.unscorable[k] = lp.skipped;
        for (i, r) in lp.examples.into_iter().enumerate() {
            if let Some(r) = r {
                s.used[k].push(i);
                s.logprobs[k].push(r.logprobs.iter().map(|&v| v as f64).collect());
                s.seqs.push(all[i].clone());
            }
        }
        if s.used[k].len() < 2 {
            bail!("[gradients] dataset `{d}`: {} scorable examples among the first {n}; the quadrant reading needs at least 2 per dataset", s.used[k].len());
        }
    }
    Ok(s)
}

/// Part a: loss vectors over the first T response tokens, their cosines and quadrants.
fn loss_part(ctx: &StudyContext, s: &Scored, perm_seed: u64) -> Result<LossPart> {
    let g = &ctx.spec.gradients;
    let loss = two_group_loss_vectors(&s.logprobs[0], &s.logprobs[1], g.window, g.short)
        .context("[gradients] loss vectors")?;
    check_groups("loss vectors", loss.n_a, loss.n_b)?;
    let cosine =
        cosine_matrix(&loss.loss.vectors, false).context("the loss vectors' cosine matrix")?;
    let quadrants = quadrant_summary(&cosine, loss.n_a, g.permutations, perm_seed)?;
    Ok(LossPart {
        loss,
        cosine,
        quadrants,
    })
}

/// Part b: gradients over the same examples (the short-response policy applies alike), their
/// Gram matrix (double-centred when `centre`), cosines and quadrants.
fn gradient_part(
    ctx: &StudyContext,
    model: &Transformer,
    s: &Scored,
    window: usize,
    seeds: &GradientSeeds,
) -> Result<GradientPart> {
    let g = &ctx.spec.gradients;
    let spec_loss = loss_spec(g, window);
    // Identifies the gradients for the row store (resume).
    let key = json!({
        "pass": "gradients",
        "version": 1,
        "model": ctx.model_identity(&g.model)?,
        "datasets": g.pair()?.map(|d| ctx.dataset_identity(d)).into_iter().collect::<Result<Vec<_>>>()?,
        "examples": s.used,
        "sequences": sequences_fingerprint(&s.seqs),
        "params": g.params,
        "loss": spec_loss,
    });
    let memory = g.memory_budget_mb << 20;
    let grad = gradient_gram(ctx, model, &s.seqs, g, spec_loss, key, memory, seeds.sketch)?;
    let n_a_used = s.used[0].len();
    let grad_a = grad
        .run
        .rows
        .iter()
        .filter(|r| r.example < n_a_used)
        .count();
    let n = [grad_a, grad.run.rows.len() - grad_a];
    check_groups("gradients", n[0], n[1])?;
    let gram = if g.centre {
        double_centre(&grad.gram)?
    } else {
        grad.gram.clone()
    };
    let cosine = cosine_from_gram(&gram).context("the gradients' cosine matrix")?;
    let quadrants = quadrant_summary(&cosine, n[0], g.permutations, seeds.gradient_permutations)?;
    let margin = match &grad.plan {
        GramPlan::Exact { .. } => 0.0,
        GramPlan::Sketch { bound } => bound.cosine_error,
    };
    Ok(GradientPart {
        grad,
        n,
        cosine,
        quadrants,
        margin,
    })
}

pub(super) fn check_groups(what: &str, n_a: usize, n_b: usize) -> Result<()> {
    if n_a < 2 || n_b < 2 {
        bail!("[gradients] {what}: {n_a} and {n_b} examples kept per dataset; the quadrant reading needs at least 2 in each (check `short` and `n`)");
    }
    Ok(())
}

/// (group, dataset index) of position `k` in the concatenation of the two groups' used examples.
pub(super) fn origin(used: &[Vec<usize>; 2], k: usize) -> Origin {
    if k < used[0].len() {
        (0, used[0][k])
    } else {
        (1, used[1][k - used[0].len()])
    }
}

/// Saves the loss vectors, the gradients' losses, Gram and both cosine matrices, and the
/// origins of their rows as `[group, index]` pairs.
fn save_arrays(
    ctx: &StudyContext,
    used: &[Vec<usize>; 2],
    loss: &LossPart,
    grad: &GradientPart,
) -> Result<GradientFiles> {
    let lv = &loss.loss.loss;
    let rows = &grad.grad.run.rows;
    let (n_lv, n_g) = (lv.kept.len(), rows.len());
    let origins = |ks: &mut dyn Iterator<Item = usize>| -> Vec<i64> {
        ks.flat_map(|k| {
            let (grp, i) = origin(used, k);
            [grp as i64, i as i64]
        })
        .collect()
    };
    let losses: Vec<f64> = rows.iter().map(|r| r.loss).collect();
    Ok(GradientFiles {
        loss_vectors: ctx.save_npy(
            "gradients_loss_vectors",
            &[n_lv, lv.window],
            &lv.vectors.data,
        )?,
        loss_vector_examples: ctx.save_npy(
            "gradients_loss_vector_examples",
            &[n_lv, 2],
            &origins(&mut lv.kept.iter().copied()),
        )?,
        loss_vector_cosine: ctx.save_npy(
            "gradients_loss_vector_cosine",
            &[n_lv, n_lv],
            &loss.cosine.data,
        )?,
        gradient_examples: ctx.save_npy(
            "gradients_gradient_examples",
            &[n_g, 2],
            &origins(&mut rows.iter().map(|r| r.example)),
        )?,
        gradient_losses: ctx.save_npy("gradients_gradient_losses", &[n_g], &losses)?,
        gradient_gram: ctx.save_npy(
            "gradients_gradient_gram",
            &[n_g, n_g],
            &grad.grad.gram.data,
        )?,
        gradient_cosine: ctx.save_npy(
            "gradients_gradient_cosine",
            &[n_g, n_g],
            &grad.cosine.data,
        )?,
    })
}

fn loss_results(ctx: &StudyContext, used: &[Vec<usize>; 2], part: LossPart) -> LossVectorResults {
    let eot = if ctx.spec.render.include_end_of_turn {
        "including"
    } else {
        "excluding"
    };
    let lv = part.loss.loss;
    LossVectorResults {
        requested_window: lv.requested_window,
        window: lv.window,
        policy: lv.policy,
        positions: format!("the first T response tokens as rendered, {eot} the end-of-turn token"),
        kept: lv.kept.iter().map(|&k| origin(used, k)).collect(),
        skipped: lv.skipped.iter().map(|&k| origin(used, k)).collect(),
        n_a: part.loss.n_a,
        n_b: part.loss.n_b,
        centred: false,
        quadrants: part.quadrants,
    }
}

fn gradient_results(
    ctx: &StudyContext,
    used: &[Vec<usize>; 2],
    part: GradientPart,
    pair: [&str; 2],
) -> GradientPassResults {
    let g = &ctx.spec.gradients;
    let dataset = |k: usize| {
        let (grp, i) = origin(used, k);
        (pair[grp].to_string(), i)
    };
    let grad = part.grad;
    GradientPassResults {
        layout: grad.run.layout,
        loss: grad.run.loss,
        first_differentiable_layer: grad.first_differentiable_layer,
        rows: grad
            .run
            .rows
            .iter()
            .map(|r| {
                let (dataset, example) = dataset(r.example);
                GradientRow {
                    dataset,
                    example,
                    loss: r.loss,
                    n_tokens: r.n_tokens,
                    short: r.short,
                }
            })
            .collect(),
        skipped: grad
            .run
            .skipped
            .iter()
            .map(|s| {
                let (dataset, example) = dataset(s.example);
                GradientSkip {
                    dataset,
                    example,
                    reason: s.reason.clone(),
                }
            })
            .collect(),
        n_a: part.n[0],
        n_b: part.n[1],
        centred: g.centre,
        gram_plan: grad.plan,
        gram_budget: grad.budget,
        plan_limits: PlanLimits {
            max_passes: MAX_PASSES,
            max_cosine_error: MAX_COSINE_ERROR,
            delta: DELTA,
        },
        store: grad
            .store
            .as_ref()
            .map(|p| p.strip_prefix(&ctx.out).unwrap_or(p).display().to_string()),
        cosine_error_bound: part.margin,
        quadrants: part.quadrants,
    }
}
