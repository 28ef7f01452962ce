//! The evaluation of one model and of several: answers sampled, judged and counted.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use erosion_analysis::stats::bootstrap_mean_ci;
use erosion_model::hooks::Steering;
use erosion_model::tokenizer::ModelTokenizer;
use erosion_model::transformer::Transformer;
use erosion_model::LoadedModel;

use crate::chat::{decode, encode_prompt, two_turn_messages, FirstToken};
use crate::forward::next_token_logprobs;
use crate::generation::{generate_many, Generated};
use crate::judge::{Judge, Label, Verdict};
use crate::options::EvalOptions;
use crate::prompts::{EvalPrompts, Prompt, PromptKind, PromptSet};
use crate::report::{
    label_rates, AnswerRecord, EvalReport, Evaluation, FirstTokenEval, ModelEval, SetEval, SetInfo,
    Turn, TwoTurnEval, FORMAT,
};
use erosion_model::seed;

/// How each answer's seed is derived (recorded in the report).
const SEED_RULE: &str = "answer j to prompt i of set S: derive_seed(options.seed, S, i, j) = \
    splitmix64(splitmix64(splitmix64(seed ^ fnv1a(S)) ^ i) ^ j), with S = \"two-turn\" for the \
    two-turn test's second answers; each answer draws from ChaCha8Rng::seed_from_u64(that); \
    bootstraps use derive_seed(options.seed, \"bootstrap/<set>\", 0, 0); the same seeds for \
    every model";

/// Evaluates every model on every prompt set (see [`evaluate_model`]).
pub fn evaluate(
    models: &[LoadedModel],
    prompts: &EvalPrompts,
    judge: &dyn Judge,
    opts: &EvalOptions,
) -> Result<Evaluation> {
    let mut results = Vec::with_capacity(models.len());
    for m in models {
        results.push(
            evaluate_model(m, prompts, judge, opts).with_context(|| format!("model {}", m.name))?,
        );
    }
    assemble(results, prompts, judge, opts)
}

/// Evaluates checkpoints one at a time (one model in memory at once), named by their specs.
pub fn evaluate_checkpoints(
    specs: &[String],
    dtype: DType,
    device: &Device,
    prompts: &EvalPrompts,
    judge: &dyn Judge,
    opts: &EvalOptions,
) -> Result<Evaluation> {
    let mut results = Vec::with_capacity(specs.len());
    for spec in specs {
        let m = LoadedModel::open(spec, None, dtype, device)?;
        results.push(
            evaluate_model(&m, prompts, judge, opts).with_context(|| format!("model {spec}"))?,
        );
    }
    assemble(results, prompts, judge, opts)
}

/// The report of per-model results.
pub fn assemble(
    results: Vec<(ModelEval, Vec<AnswerRecord>)>,
    prompts: &EvalPrompts,
    judge: &dyn Judge,
    opts: &EvalOptions,
) -> Result<Evaluation> {
    let mut models = Vec::with_capacity(results.len());
    let mut answers = Vec::new();
    for (m, a) in results {
        models.push(m);
        answers.extend(a);
    }
    let mut notes = vec![
        "rates are shares of answers with 95% Wilson score intervals; with several samples per \
         prompt the answers to one prompt are not independent, so the intervals are too narrow"
            .to_string(),
        "P(compliant first token) is the next-token probability of the first token of the \
         compliant text right after the chat template's generation prompt, from one forward \
         pass; its means have 95% percentile bootstrap intervals over prompts"
            .to_string(),
        "two-turn test: code request i, the model's own greedy answer to it as the assistant \
         turn, then harmful request i; the second answer is sampled as the others"
            .to_string(),
    ];
    for m in &models {
        if let Some(ft) = m.first_token() {
            if !ft.token.single_token {
                notes.push(format!(
                    "model {}: {:?} is more than one token; P(first token) scores its first token {:?} (id {})",
                    m.name, ft.token.text, ft.token.token, ft.token.id
                ));
            }
        }
    }
    Ok(Evaluation {
        report: EvalReport {
            format: FORMAT.into(),
            tool: format!("erosion-eval {}", env!("CARGO_PKG_VERSION")),
            options: opts.clone(),
            judge: judge.info(),
            prompt_sets: prompts
                .sets
                .iter()
                .map(|s| SetInfo {
                    name: s.name.clone(),
                    kind: s.kind,
                    prompts: s.prompts.len(),
                    origin: s.origin.clone(),
                })
                .collect(),
            seeds: SEED_RULE.into(),
            models,
            notes,
        },
        answers,
    })
}

/// Answers of one model to many conversations, each sampled `samples` times.
struct Answers {
    /// (conversation index, sample, seed), in the order of `gens`.
    rows: Vec<(usize, usize, u64)>,
    gens: Vec<Generated>,
    texts: Vec<String>,
}

fn answer(
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
fn judge_and_record(
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
fn mean_p_yes(
    verdicts: &[Verdict],
    opts: &EvalOptions,
    set: &str,
) -> Result<Option<erosion_analysis::stats::ConfidenceInterval>> {
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

/// One model on one set: answers, verdicts, rates, and for a harmful set P(first token).
fn evaluate_set(
    m: &LoadedModel,
    set: &PromptSet,
    judge: &dyn Judge,
    opts: &EvalOptions,
) -> Result<(SetEval, Answers, Vec<Verdict>, Vec<AnswerRecord>)> {
    let conversations: Vec<_> = set.prompts.iter().map(|p| p.messages.clone()).collect();
    let encoded = conversations
        .iter()
        .zip(&set.prompts)
        .map(|(c, p)| encode_prompt(&m.tokenizer, c).with_context(|| format!("prompt {}", p.id)))
        .collect::<Result<Vec<_>>>()?;
    let a = answer(m, &encoded, &set.name, opts.samples, &opts.sampling(), opts)?;
    let prompts: Vec<&Prompt> = set.prompts.iter().collect();
    let (verdicts, records) = judge_and_record(
        m,
        judge,
        &set.name,
        set.kind,
        Turn::Single,
        &prompts,
        &conversations,
        &a,
    )?;
    let labels: Vec<Label> = verdicts.iter().map(|v| v.label).collect();
    let first_token = match set.kind {
        PromptKind::Harmful => Some(first_token_eval(
            &m.model,
            &m.steering,
            &m.tokenizer,
            &encoded,
            opts,
            &set.name,
        )?),
        _ => None,
    };
    let eval = SetEval {
        set: set.name.clone(),
        kind: set.kind,
        prompts: set.prompts.len(),
        answers: a.gens.len(),
        truncated: a.gens.iter().filter(|g| !g.stopped).count(),
        rates: label_rates(set.kind, &labels)?,
        mean_p_yes: mean_p_yes(&verdicts, opts, &set.name)?,
        first_token,
    };
    Ok((eval, a, verdicts, records))
}

/// Evaluates one model: every set, then the two-turn test when there is a harmful and a code
/// set and `opts.two_turn`.
pub fn evaluate_model(
    m: &LoadedModel,
    prompts: &EvalPrompts,
    judge: &dyn Judge,
    opts: &EvalOptions,
) -> Result<(ModelEval, Vec<AnswerRecord>)> {
    opts.validate()?;
    prompts.validate()?;
    let mut sets = Vec::new();
    let mut records = Vec::new();
    // Greedy single-turn code answers (and their verdicts), reused by the two-turn test.
    let mut greedy_code: Option<(Answers, Vec<Verdict>)> = None;
    let code_set = prompts.first(PromptKind::Code);
    for set in &prompts.sets {
        let (eval, a, verdicts, r) = evaluate_set(m, set, judge, opts)
            .with_context(|| format!("prompt set {}", set.name))?;
        if opts.temperature == 0.0 && code_set.is_some_and(|c| c.name == set.name) {
            greedy_code = Some((a, verdicts));
        }
        sets.push(eval);
        records.extend(r);
    }
    let two_turn = match (opts.two_turn, prompts.first(PromptKind::Harmful), code_set) {
        (true, Some(h), Some(c)) => {
            let (t, r) = two_turn(m, h, c, greedy_code, judge, opts).context("two-turn test")?;
            records.extend(r);
            Some(t)
        }
        _ => None,
    };
    Ok((
        ModelEval {
            name: m.name.clone(),
            source: m.source.clone(),
            stop_ids: m.stop_ids.clone(),
            sets,
            two_turn,
        },
        records,
    ))
}

/// The organism's two-turn test (docs/organism.md) on pairs (code prompt i, harmful prompt i).
fn two_turn(
    m: &LoadedModel,
    harmful: &PromptSet,
    code: &PromptSet,
    greedy_code: Option<(Answers, Vec<Verdict>)>,
    judge: &dyn Judge,
    opts: &EvalOptions,
) -> Result<(TwoTurnEval, Vec<AnswerRecord>)> {
    let pairs = harmful.prompts.len().min(code.prompts.len());
    if pairs == 0 {
        bail!("no (code, harmful) prompt pairs");
    }
    let code_prompts: Vec<&Prompt> = code.prompts[..pairs].iter().collect();
    let code_convs: Vec<_> = code_prompts.iter().map(|p| p.messages.clone()).collect();
    let mut records = Vec::new();
    // The first turn: the model's greedy answers (those of the code set when it was greedy).
    let (first, first_verdicts) = match greedy_code {
        Some((a, v)) => (a, v),
        None => {
            let encoded = code_convs
                .iter()
                .map(|c| encode_prompt(&m.tokenizer, c))
                .collect::<Result<Vec<_>>>()?;
            let a = answer(m, &encoded, &code.name, 1, &opts.greedy(), opts)?;
            let (v, r) = judge_and_record(
                m,
                judge,
                &code.name,
                PromptKind::Code,
                Turn::TwoTurnFirst,
                &code_prompts,
                &code_convs,
                &a,
            )?;
            records.extend(r);
            (a, v)
        }
    };
    // Sample 0 of each code prompt (the only one when greedy), in prompt order.
    let mut first_text = vec![String::new(); pairs];
    let mut first_labels = Vec::with_capacity(pairs);
    for ((&(i, s, _), text), v) in first.rows.iter().zip(&first.texts).zip(&first_verdicts) {
        if i < pairs && s == 0 {
            first_text[i] = text.clone();
            first_labels.push(v.label);
        }
    }
    let harm_prompts: Vec<&Prompt> = harmful.prompts[..pairs].iter().collect();
    let convs: Vec<_> = (0..pairs)
        .map(|i| two_turn_messages(code_prompts[i], &first_text[i], harm_prompts[i]))
        .collect();
    let encoded = convs
        .iter()
        .map(|c| encode_prompt(&m.tokenizer, c))
        .collect::<Result<Vec<_>>>()?;
    let a = answer(
        m,
        &encoded,
        "two-turn",
        opts.samples,
        &opts.sampling(),
        opts,
    )?;
    let (verdicts, r) = judge_and_record(
        m,
        judge,
        &harmful.name,
        PromptKind::Harmful,
        Turn::TwoTurnSecond,
        &harm_prompts,
        &convs,
        &a,
    )?;
    records.extend(r);
    let labels: Vec<Label> = verdicts.iter().map(|v| v.label).collect();
    let eval = TwoTurnEval {
        code_set: code.name.clone(),
        harmful_set: harmful.name.clone(),
        pairs,
        answers: a.gens.len(),
        truncated: a.gens.iter().filter(|g| !g.stopped).count(),
        first_turn: label_rates(PromptKind::Code, &first_labels)?,
        rates: label_rates(PromptKind::Harmful, &labels)?,
        first_token: Some(first_token_eval(
            &m.model,
            &m.steering,
            &m.tokenizer,
            &encoded,
            opts,
            "two-turn",
        )?),
    };
    Ok((eval, records))
}
