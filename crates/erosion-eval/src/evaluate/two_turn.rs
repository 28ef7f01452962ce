//! The organism's two-turn test (docs/organism.md): code request i, the model's own greedy
//! answer to it as the assistant turn, then harmful request i; the second answer is sampled
//! and judged as the single-turn ones are.

use anyhow::{bail, Result};
use erosion_model::chat::Message;
use erosion_model::LoadedModel;

use super::answers::{answer, first_token_eval, judge_and_record, Answers};
use crate::chat::{encode_prompt, two_turn_messages};
use crate::judge::{Judge, Label, Verdict};
use crate::options::EvalOptions;
use crate::prompts::{Prompt, PromptKind, PromptSet};
use crate::report::{label_rates, AnswerRecord, Turn, TwoTurnEval};

/// The test on pairs (code prompt i, harmful prompt i); `greedy_code` are the code set's
/// answers and verdicts when they were greedy (then they are the first turn).
pub(super) fn two_turn(
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
    let mut records = Vec::new();
    // The first turn: the model's greedy answers (those of the code set when it was greedy).
    let (first, first_verdicts) = match greedy_code {
        Some((a, v)) => (a, v),
        None => {
            let (a, v, r) = greedy_first_turn(m, code, &code_prompts, judge, opts)?;
            records.extend(r);
            (a, v)
        }
    };
    let (first_text, first_labels) = first_samples(&first, &first_verdicts, pairs);
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

/// One greedy answer to each of `code_prompts` (the first `pairs` of the code set), judged
/// and recorded as the two-turn test's first turn.
fn greedy_first_turn(
    m: &LoadedModel,
    code: &PromptSet,
    code_prompts: &[&Prompt],
    judge: &dyn Judge,
    opts: &EvalOptions,
) -> Result<(Answers, Vec<Verdict>, Vec<AnswerRecord>)> {
    let code_convs: Vec<Vec<Message>> = code_prompts.iter().map(|p| p.messages.clone()).collect();
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
        code_prompts,
        &code_convs,
        &a,
    )?;
    Ok((a, v, r))
}

/// Sample 0 of each of the first `pairs` code prompts (the only one when greedy), in prompt
/// order: its text (by prompt) and its label (in the order met).
fn first_samples(first: &Answers, verdicts: &[Verdict], pairs: usize) -> (Vec<String>, Vec<Label>) {
    let mut first_text = vec![String::new(); pairs];
    let mut first_labels = Vec::with_capacity(pairs);
    for ((&(i, s, _), text), v) in first.rows.iter().zip(&first.texts).zip(verdicts) {
        if i < pairs && s == 0 {
            first_text[i] = text.clone();
            first_labels.push(v.label);
        }
    }
    (first_text, first_labels)
}
