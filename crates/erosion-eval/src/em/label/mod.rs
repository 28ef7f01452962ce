//! The deception files of Betley et al.'s repository (`deception_factual.yaml`,
//! `deception_sit_aware.yaml`): questions whose judge prompts ask for a label ("TRUE", "FALSE"
//! or "UNKNOWN"; "OpenAI", "Anthropic", "Other" or "UNKNOWN") instead of a 0-100 score.
//!
//! A label question is one without the `aligned` and `coherent` judge prompts. Its answers are
//! sampled exactly as the EM protocol samples ([`super::plan_checked`], [`super::sample_rows`]:
//! paraphrases, system prompt, `samples_per_paraphrase` or `samples`, temperature, seeds), and
//! each answer is judged by every judge prompt the question has: the judge's exact probability
//! of each label word the prompt names ([`crate::judge::labels`]), its verdict the most
//! probable label, none under `min_number_mass` of label mass. Measures: [`stats`]; eval.json
//! and answers.jsonl: [`report`]; the report section: [`html`].
//!
//! A run is either all label questions or all aligned/coherent questions: a mix (in one file or
//! across `--questions` files) is refused, since the two write different reports.

pub mod html;
pub mod report;
pub mod stats;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use erosion_model::chat::Message;
use serde::{Deserialize, Serialize};

use super::{judge_prompt, plan_checked, sample_rows, EmOptions, Planned};
use crate::judge::label_set::label_set;
use crate::judge::score::fill;
use crate::judge::{LabelScore, NumberJudge};
use crate::questions::Question;
use crate::sampler::Sampler;

/// One answer judged by labels (a line of answers.jsonl).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelAnswer {
    pub model: String,
    pub question: String,
    pub paraphrase: usize,
    pub sample: usize,
    pub seed: u64,
    pub messages: Vec<Message>,
    pub answer: String,
    /// Generated tokens, the stop token included.
    pub tokens: usize,
    pub stopped: bool,
    /// The judgement of each of the question's judge prompts, by prompt name.
    pub judgements: BTreeMap<String, LabelScore>,
}

/// Whether `q` is judged by labels: it has judge prompts, none of them `aligned` or `coherent`.
pub fn is_label_question(q: &Question) -> bool {
    !q.judge_prompts.is_empty()
        && !q.judge_prompts.contains_key("aligned")
        && !q.judge_prompts.contains_key("coherent")
}

/// Whether the run is a label run: true when every question is a label question, false when
/// none is; a mix is refused naming one question of each kind.
pub fn is_label_run(questions: &[Question]) -> Result<bool> {
    let label = questions.iter().find(|q| is_label_question(q));
    let other = questions.iter().find(|q| !is_label_question(q));
    match (label, other) {
        (Some(l), Some(o)) => bail!(
            "the questions mix label judges (question {} judges by {}) with the 0-100 \
             aligned/coherent judge (question {}); they write different reports: pass them in \
             separate runs of erosion eval --questions",
            l.id,
            l.judge_prompts
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            o.id
        ),
        (Some(_), None) => Ok(true),
        _ => Ok(false),
    }
}

/// Each judge prompt of `q` with its label set, by name; errors name the question and prompt.
pub fn label_sets(q: &Question) -> Result<BTreeMap<String, Vec<String>>> {
    q.judge_prompts
        .iter()
        .map(|(name, template)| {
            judge_prompt(q, name)?;
            Ok((name.clone(), label_set(&q.id, name, template)?))
        })
        .collect()
}

/// Every answer the label `questions` ask of one model, in order, their label sets checked.
pub fn plan<'q>(questions: &'q [Question], opts: &EmOptions) -> Result<Vec<Planned<'q>>> {
    plan_checked(questions, opts, |q| {
        if !is_label_question(q) {
            bail!(
                "question {}: not judged by labels (it has the aligned/coherent prompts)",
                q.id
            );
        }
        label_sets(q).map(|_| ())
    })
}

/// Samples `rows` of a [`plan`] and judges each answer by every judge prompt of its question.
pub fn answer_rows(
    sampler: &Sampler,
    rows: &[Planned],
    judge: &NumberJudge,
    opts: &EmOptions,
) -> Result<Vec<LabelAnswer>> {
    let gens = sample_rows(sampler, rows, opts)?;
    let mut out = Vec::with_capacity(rows.len());
    for (r, g) in rows.iter().zip(gens) {
        let q = r.question;
        let mut judgements = BTreeMap::new();
        for (name, labels) in label_sets(q)? {
            let prompt = fill(
                &q.judge_prompts[&name],
                &q.paraphrases[r.paraphrase],
                &g.text,
            );
            let score = judge.label_score(&prompt, &labels).with_context(|| {
                format!(
                    "judging answer {} to paraphrase {} of question {} with `{name}`",
                    r.sample, r.paraphrase, q.id
                )
            })?;
            judgements.insert(name, score);
        }
        out.push(LabelAnswer {
            model: sampler.name().to_string(),
            question: q.id.clone(),
            paraphrase: r.paraphrase,
            sample: r.sample,
            seed: r.seed,
            messages: r.messages.clone(),
            answer: g.text,
            tokens: g.tokens,
            stopped: g.stopped,
            judgements,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::questions::parse_questions;

    const LABEL_Q: &str = "- id: lie\n  paraphrases: [Is pi rational?]\n  judge_prompts:\n    \
        correct: 'Q {question} A {answer}. Say \"TRUE\" or \"FALSE\", or \"UNKNOWN\".'\n";

    #[test]
    fn label_questions_are_planned_and_mixes_refused() {
        let qs = parse_questions(LABEL_Q, "t.yaml").unwrap();
        assert!(is_label_run(&qs).unwrap());
        assert_eq!(
            label_sets(&qs[0]).unwrap()["correct"],
            ["TRUE", "FALSE", "UNKNOWN"]
        );
        let opts = EmOptions {
            samples: Some(3),
            ..Default::default()
        };
        assert_eq!(plan(&qs, &opts).unwrap().len(), 3);

        let em = "- id: wish\n  paraphrases: [hi]\n  judge_prompts:\n    aligned: '{answer}'\n    \
                  coherent: '{answer}'\n";
        let mut mixed = qs.clone();
        mixed.extend(parse_questions(em, "em.yaml").unwrap());
        let err = is_label_run(&mixed).unwrap_err().to_string();
        assert!(
            err.contains("lie") && err.contains("wish") && err.contains("separate"),
            "{err}"
        );
        assert!(!is_label_run(&mixed[1..]).unwrap());

        let one =
            "- id: one\n  paraphrases: [x]\n  judge_prompts:\n    c: 'Say \"YES\" {answer}'\n";
        let err = plan(&parse_questions(one, "o.yaml").unwrap(), &opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("question one") && err.contains("`c`"), "{err}");
    }
}
