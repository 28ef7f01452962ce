//! One model's answers to many conversations: sampled, decoded, judged and recorded; and
//! the one-forward-pass P(compliant first token).

use anyhow::{Context, Result};
use erosion_analysis::stats::{bootstrap_mean_ci, ConfidenceInterval};
use erosion_model::hooks::Steering;
use erosion_model::seed;
use erosion_model::tokenizer::ModelTokenizer;
use erosion_model::transformer::Transformer;
use erosion_model::LoadedModel;

use crate::chat::{decode, FirstToken};
use crate::forward::next_token_logprobs;
use crate::generation::{generate_many, Generated};
use crate::judge::{Judge, Verdict};
use crate::options::EvalOptions;
use crate::prompts::{Prompt, PromptKind};
use crate::report::{AnswerRecord, FirstTokenEval, Turn};

/// Answers of one model to many conversations, each sampled `samples` times.
pub(super) struct Answers {
    /// (conversation index, sample, seed), in the order of `gens`.
    pub rows: Vec<(usize, usize, u64)>,
    pub gens: Vec<Generated>,
    pub texts: Vec<String>,
}

/// Samples `samples` answers to each of the `encoded` conversations, answer j to
/// conversation i seeded by `seed::for_stream(opts.seed, stream, i, j)`, and decodes them.
pub(super) fn answer(
    m: &LoadedModel,
    encoded: &[Vec<u32>],
    stream: &str,
    samples: usize,
    sampling: &erosion_model::generate::SamplingOptions,
    opts: &EvalOptions,
) -> Result<Answers> {
    let rows: Vec<(usize, usize, u64)> = (0..encoded.len())
        .flat_map(|i| (0..samples).map(move |s| (i, s)))
        .map(|(i, s)| (i, s, seed::for_stream(opts.seed, stream, i, s)))
        .collect();
    let ids: Vec<Vec<u32>> = rows.iter().map(|&(i, _, _)| encoded[i].clone()).collect();
    let seeds: Vec<u64> = rows.iter().map(|r| r.2).collect();
    let gens = generate_many(
        &m.model,
        &m.steering,
        &ids,
        &seeds,
        &m.stop_ids,
        sampling,
        opts.batch_size,
    )?;
    let texts = gens
        .iter()
        .map(|g| decode(&m.tokenizer, &g.tokens))
        .collect::<Result<Vec<_>>>()?;
    Ok(Answers { rows, gens, texts })
}

/// P(compliant first token) after each encoded prompt, with its means and intervals.
pub fn first_token_eval(
    model: &Transformer,
    steering: &Steering,
    tokenizer: &ModelTokenizer,
    encoded: &[Vec<u32>],
    opts: &EvalOptions,
    stream: &str,
) -> Result<FirstTokenEval> {
    let token = FirstToken::new(tokenizer, &opts.compliant_text)?;
    let log_p: Vec<f64> =
        next_token_logprobs(model, encoded, &[token.id], opts.batch_size, steering)?
            .into_iter()
            .map(|v| v[0])
            .collect();
    let p: Vec<f64> = log_p.iter().map(|l| l.exp()).collect();
    let seed = seed::for_stream(opts.seed, &format!("bootstrap/{stream}"), 0, 0);
    let b = opts.bootstrap_resamples;
    let mean_p =
        bootstrap_mean_ci(&p, b, 0.95, seed).context("bootstrap of mean P(first token)")?;
    let mean_log_p =
        bootstrap_mean_ci(&log_p, b, 0.95, seed).context("bootstrap of mean log P(first token)")?;
    Ok(FirstTokenEval {
        token,
        n: p.len(),
        geometric_mean_p: mean_log_p.estimate.exp(),
        geometric_lower: mean_log_p.lower.exp(),
        geometric_upper: mean_log_p.upper.exp(),
        mean_p,
        mean_log_p,
        p,
    })
}

/// Judges the answers and returns the verdicts and the answer records.
#[allow(clippy::too_many_arguments)]
pub(super) fn judge_and_record(
    m: &LoadedModel,
    judge: &dyn Judge,
    set: &str,
    kind: PromptKind,
    turn: Turn,
    prompts: &[&Prompt],
    conversations: &[Vec<erosion_model::chat::Message>],
    a: &Answers,
) -> Result<(Vec<Verdict>, Vec<AnswerRecord>)> {
    let items: Vec<(&Prompt, &str)> = a
        .rows
        .iter()
        .zip(&a.texts)
        .map(|(&(i, _, _), t)| (prompts[i], t.as_str()))
        .collect();
    let verdicts = judge
        .judge_all(kind, &items)
        .with_context(|| format!("judging the answers to set {set}"))?;
    let records = a
        .rows
        .iter()
        .zip(&a.gens)
        .zip(&a.texts)
        .zip(&verdicts)
        .map(|((((i, s, seed), g), text), v)| AnswerRecord {
            model: m.name.clone(),
            set: set.to_string(),
            kind,
            turn,
            prompt_id: prompts[*i].id.clone(),
            sample: *s,
            seed: *seed,
            messages: conversations[*i].clone(),
            answer: text.clone(),
            tokens: g.tokens.len(),
            stopped: g.stopped,
            verdict: v.clone(),
        })
        .collect();
    Ok((verdicts, records))
}

/// Mean of the judge's P(yes) with a bootstrap CI, when the judge gives one.
pub(super) fn mean_p_yes(
    verdicts: &[Verdict],
    opts: &EvalOptions,
    set: &str,
) -> Result<Option<ConfidenceInterval>> {
    let ps: Option<Vec<f64>> = verdicts.iter().map(|v| v.p_yes).collect();
    match ps {
        Some(ps) if !ps.is_empty() => {
            let seed = seed::for_stream(opts.seed, &format!("bootstrap/{set}/p-yes"), 0, 0);
            Ok(Some(bootstrap_mean_ci(
                &ps,
                opts.bootstrap_resamples,
                0.95,
                seed,
            )?))
        }
        _ => Ok(None),
    }
}
