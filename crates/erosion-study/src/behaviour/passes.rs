//! Analysis 1's forward passes: the example response (a) and the next-token prompt (b) under
//! every model, and the response log-probs of every dataset (c), model-major (every pass of a
//! model happens before the next model is loaded; dataset passes go through the activation
//! cache, shared.rs).

use super::prompt::{prefix_prompt, renders_plainly, PrefixPrompt};
use super::shared;
use super::table::CellData;
use crate::context::StudyContext;
use crate::pass::Pass;
use anyhow::{bail, Context, Result};
use erosion_data::Role;
use erosion_data::Sequence;
use erosion_forward::batch::NoProgress;
use erosion_forward::logprobs::{next_token, response_logprobs, NextToken, ResponseLogprobs};

/// The response shown token by token.
pub(crate) struct ExampleChoice {
    pub dataset: String,
    pub index: usize,
    /// `[behaviour] example` was given (else the default rule chose it).
    pub explicit: bool,
    /// The instruct model's rendering of the response: the tokens every model is scored on.
    pub ids: Vec<u32>,
    /// Each id decoded with the instruct model's tokenizer.
    pub tokens: Vec<String>,
    /// Per model: its own rendering tokenizes the response differently from the instruct one.
    pub own_tokens_differ: Vec<bool>,
}

/// What the forward passes gave, before any statistics.
pub(crate) struct Passes {
    pub models: Vec<String>,
    pub finetuned: Vec<String>,
    pub example: ExampleChoice,
    /// `[model]`
    pub example_logprobs: Vec<ResponseLogprobs>,
    pub prompts: Vec<PrefixPrompt>,
    /// `[model]`
    pub next: Vec<NextToken>,
    /// Decoded top-k tokens, `[model][k]`.
    pub next_tokens: Vec<Vec<String>>,
    pub datasets: Vec<String>,
    /// Example indices every model can score, per dataset.
    pub common: Vec<Vec<usize>>,
    /// (example index, why) left out of each dataset's table.
    pub excluded: Vec<Vec<(usize, String)>>,
    /// `[dataset][model]`
    pub cells: Vec<Vec<CellData>>,
}

/// The cached passes [`run_passes`] reads: every model's log-probs on every dataset (the
/// example response and the next-token table are single forward passes, run at the merge).
pub(crate) fn passes(ctx: &StudyContext) -> Result<Vec<Pass>> {
    let datasets = ctx.spec.dataset_names(&ctx.spec.behaviour.datasets);
    let mut out = Vec::new();
    for m in &ctx.models {
        for d in &datasets {
            out.push(Pass::Logprobs {
                model: m.name.clone(),
                dataset: d.clone(),
                limit: None,
            });
        }
    }
    Ok(out)
}

/// Runs every forward pass of analysis 1.
pub(crate) fn run_passes(ctx: &StudyContext) -> Result<Passes> {
    let spec = &ctx.spec.behaviour;
    if spec.top_k == 0 {
        bail!("[behaviour] top_k must be at least 1");
    }
    let models: Vec<String> = ctx.models.iter().map(|m| m.name.clone()).collect();
    let datasets = ctx.spec.dataset_names(&spec.datasets);
    if datasets.is_empty() {
        bail!("[behaviour] names no datasets");
    }
    let example = choose_example(ctx, &models)?;
    let example_seqs = models
        .iter()
        .map(|m| example_sequence(ctx, m, &example))
        .collect::<Result<Vec<_>>>()?;
    let prompts = models
        .iter()
        .map(|m| model_prompt(ctx, m))
        .collect::<Result<Vec<_>>>()?;
    // Rendering is cheap: done before any weights are loaded.
    let (common, excluded) = scorable_examples(ctx, &models, &datasets)?;

    let mut cells: Vec<Vec<CellData>> = datasets
        .iter()
        .map(|_| models.iter().map(|_| CellData::default()).collect())
        .collect();
    let (mut example_logprobs, mut next) = (Vec::new(), Vec::new());
    for (mi, m) in models.iter().enumerate() {
        let t = ctx.pass_transformer(m)?;
        let lp = response_logprobs(
            &t,
            std::slice::from_ref(&example_seqs[mi]),
            &ctx.batch_options(),
            None,
            &mut NoProgress,
        )
        .with_context(|| format!("the example response under model `{m}`"))?;
        example_logprobs.extend(lp);
        next.push(
            next_token(&t, &prompts[mi].ids, spec.top_k, None)
                .with_context(|| format!("the next token under model `{m}`"))?,
        );
        for (di, d) in datasets.iter().enumerate() {
            score_dataset(ctx, m, &t, d, &common[di], &mut cells[di][mi])?;
        }
    }
    let labeller = &ctx.model("instruct")?.checkpoint.tokenizer;
    let next_tokens = next
        .iter()
        .map(|n| n.top.iter().map(|t| labeller.token_label(t.id)).collect())
        .collect();
    Ok(Passes {
        models,
        finetuned: ctx.finetuned(),
        example,
        example_logprobs,
        prompts,
        next,
        next_tokens,
        datasets,
        common,
        excluded,
        cells,
    })
}

/// Model `m`'s open-turn next-token prompt (prompt.rs).
fn model_prompt(ctx: &StudyContext, m: &str) -> Result<PrefixPrompt> {
    let spec = &ctx.spec.behaviour;
    let tok = &ctx.model(m)?.checkpoint.tokenizer;
    prefix_prompt(
        tok,
        renders_plainly(tok, m, ctx.spec.render.plain_base),
        &spec.prefix_user,
        &spec.prefix_assistant,
    )
    .with_context(|| format!("the next-token prompt for model `{m}`"))
}

/// The examples of one dataset left out of its table: (index, why).
type Left = Vec<(usize, String)>;

/// Per dataset: the example indices every model can score (sorted), and the others with why.
fn scorable_examples(
    ctx: &StudyContext,
    models: &[String],
    datasets: &[String],
) -> Result<(Vec<Vec<usize>>, Vec<Left>)> {
    let (mut common, mut excluded) = (Vec::new(), Vec::new());
    for d in datasets {
        let per_model = models
            .iter()
            .map(|m| ctx.sequences(m, d))
            .collect::<Result<Vec<_>>>()?;
        let n = per_model[0].len();
        let (mut keep, mut drop) = (Vec::new(), Vec::new());
        for i in 0..n {
            let why: Vec<String> = models
                .iter()
                .zip(&per_model)
                .filter_map(|(m, seqs)| shared::unscorable(&seqs[i]).map(|w| format!("{m}: {w}")))
                .collect();
            if why.is_empty() {
                keep.push(i);
            } else {
                drop.push((i, why.join("; ")));
            }
        }
        if keep.is_empty() {
            bail!(
                "dataset `{d}`: no example has a response every model can score ({} examples)",
                n
            );
        }
        common.push(keep);
        excluded.push(drop);
    }
    Ok((common, excluded))
}

/// Adds the responses of dataset `d`'s examples `common` under model `m` to `cell`.
fn score_dataset(
    ctx: &StudyContext,
    m: &str,
    t: &erosion_model::transformer::Transformer,
    d: &str,
    common: &[usize],
    cell: &mut CellData,
) -> Result<()> {
    // Examples are streamed in order; `common` is sorted.
    let mut next_common = common.iter().peekable();
    shared::for_each_logprobs(ctx, m, t, d, None, &mut |i, lp, _| {
        if next_common.peek() == Some(&&i) {
            next_common.next();
            let r = lp.with_context(|| {
                format!("dataset `{d}` example {i} has no log-probs under `{m}`")
            })?;
            cell.push(&r.logprobs, &r.entropy)
                .with_context(|| format!("dataset `{d}` example {i} under model `{m}`"))?;
        }
        Ok(())
    })?;
    if let Some(i) = next_common.next() {
        bail!("dataset `{d}` example {i} was not scored under `{m}`");
    }
    Ok(())
}

/// `[behaviour] example`, or example 0 of the first misaligned dataset (else of the first dataset).
fn choose_example(ctx: &StudyContext, models: &[String]) -> Result<ExampleChoice> {
    let (dataset, index, explicit) = match &ctx.spec.behaviour.example {
        Some(e) => (e.dataset.clone(), e.index, true),
        None => {
            let d = ctx
                .datasets
                .iter()
                .find(|d| d.role == Some(Role::Misaligned))
                .or(ctx.datasets.first())
                .context("the study has no datasets")?;
            (d.name.clone(), 0, false)
        }
    };
    let reference = ctx.rendered("instruct", &dataset)?;
    let r = reference.get(index).with_context(|| {
        format!("[behaviour] example: dataset `{dataset}` has {} examples, so there is no example {index}", reference.len())
    })?;
    if r.seq.response.is_empty() || r.seq.response.start == 0 {
        bail!("[behaviour] example {index} of `{dataset}` has no response tokens to score (rendered for the instruct model)");
    }
    let ids = r.seq.response_ids().to_vec();
    let labeller = &ctx.model("instruct")?.checkpoint.tokenizer;
    let tokens = ids.iter().map(|&id| labeller.token_label(id)).collect();
    let own_tokens_differ = models
        .iter()
        .map(|m| {
            Ok(ctx
                .rendered(m, &dataset)?
                .get(index)
                .map(|o| o.seq.response_ids())
                != Some(ids.as_slice()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ExampleChoice {
        dataset,
        index,
        explicit,
        ids,
        tokens,
        own_tokens_differ,
    })
}

/// Model `m`'s own prompt tokens of the example followed by the reference response tokens, so
/// every model is scored on the same tokens.
fn example_sequence(ctx: &StudyContext, m: &str, ex: &ExampleChoice) -> Result<Sequence> {
    let rendered = ctx.rendered(m, &ex.dataset)?;
    let r = &rendered[ex.index];
    let start = r.seq.response.start;
    if start == 0 {
        bail!(
            "example {} of `{}` rendered for model `{m}` has no prompt before its response",
            ex.index,
            ex.dataset
        );
    }
    Ok(joined(&r.seq.ids[..start], &ex.ids))
}

/// `prompt ++ response` with the response span after the prompt.
fn joined(prompt: &[u32], response: &[u32]) -> Sequence {
    let mut ids = prompt.to_vec();
    ids.extend_from_slice(response);
    Sequence {
        ids,
        response: prompt.len()..prompt.len() + response.len(),
        end_of_turn: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_sequence_spans_the_response() {
        let s = joined(&[1, 2, 3], &[7, 8]);
        assert_eq!(s.ids, vec![1, 2, 3, 7, 8]);
        assert_eq!(s.response, 3..5);
        assert_eq!(s.response_ids(), &[7, 8]);
    }
}
