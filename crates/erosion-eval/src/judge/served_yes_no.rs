//! The yes/no judge behind an OpenAI-compatible endpoint: [`super::LogprobJudge`]'s prompt as
//! one user message, asked as every served judge is asked ([`crate::remote::top`]), and
//! P(yes) computed as the local judge computes it, from the top 20 first tokens returned:
//!
//!   P(yes) = sum_{yes texts} p / (sum_{yes texts} p + sum_{no texts} p)
//!
//! A returned token is a yes (no) when its text is one of "yes", "Yes", " yes", " Yes", "YES"
//! ("no", ...), a leading `Ġ` or `▁` (a server that sends raw pieces) read as a space;
//! tokens of the same text add up, as the local judge adds ids of the same text.
//!
//! How the two relate: the local judge's yes tokens are every id whose text is a yes form its
//! tokenizer writes as one token, so for any tokenizer that writes at least one form of each
//! word as one token (SmolLM2, Qwen, Llama, GPT-4o's) both count the same texts. Read with
//! `--judge-aggregation top20` (only the yes and no tokens among its 20 most probable first
//! tokens count), the local judge computes exactly this; its default (`exact`) also counts
//! those outside the top 20, which count 0 here (each is below the 20th's probability). A
//! character-level tokenizer, whose local judge falls back to the forms' first characters, is
//! not matched. When the top 20 hold no yes and no no token at all, the judgment fails and
//! names the prompt.

use anyhow::{Context, Result};

use super::logprob::{judge_question, p_yes, prompts_description, verdict, NO_FORMS, YES_FORMS};
use super::{Judge, JudgeInfo, Verdict};
use crate::prompts::{Prompt, PromptKind};
use crate::remote::top::{TopLogprobs, TOP_LOGPROBS};

/// A yes/no judge over HTTP, with its cache.
pub struct ServedYesNoJudge {
    pub top: TopLogprobs,
}

/// Whether a returned token's text is a yes form (`Some(true)`), a no form (`Some(false)`)
/// or neither.
pub fn answer_of(text: &str) -> Option<bool> {
    let spaced;
    let text = match text.strip_prefix(['Ġ', '▁']) {
        Some(rest) => {
            spaced = format!(" {rest}");
            spaced.as_str()
        }
        None => text,
    };
    if YES_FORMS.contains(&text) {
        Some(true)
    } else if NO_FORMS.contains(&text) {
        Some(false)
    } else {
        None
    }
}

/// P(yes) from a first token's alternatives (the first 20 as listed); None when none of them
/// is a yes or a no.
pub fn p_yes_top(top: &[(String, f64)]) -> Option<f64> {
    let (mut yes, mut no) = (Vec::new(), Vec::new());
    for (text, lp) in top.iter().take(TOP_LOGPROBS) {
        match answer_of(text) {
            Some(true) => yes.push(*lp),
            Some(false) => no.push(*lp),
            None => {}
        }
    }
    (!yes.is_empty() || !no.is_empty()).then(|| p_yes(&yes, &no))
}

impl ServedYesNoJudge {
    /// P(yes) of one filled judge prompt; `id` names the prompt in errors.
    fn p_yes(&self, id: &str, prompt: &str) -> Result<f64> {
        let top = self
            .top
            .get(prompt)
            .with_context(|| format!("judging the answer to prompt {id}"))?;
        p_yes_top(&top).with_context(|| {
            let texts: Vec<&str> = top.iter().map(|(t, _)| t.as_str()).collect();
            format!(
                "judging the answer to prompt {id}: judge {} put neither a yes {YES_FORMS:?} \
                 nor a no {NO_FORMS:?} among its top {TOP_LOGPROBS} first tokens {texts:?}; \
                 it does not answer this prompt with yes or no",
                self.top.endpoint.label()
            )
        })
    }
}

impl Judge for ServedYesNoJudge {
    fn info(&self) -> JudgeInfo {
        let ep = &self.top.endpoint;
        JudgeInfo {
            name: format!("served yes/no judge {}", ep.label()),
            description: format!(
                "the judge model {} at {} gets one user message (max_tokens 1, temperature 0, \
                 seed 0, top_logprobs {TOP_LOGPROBS}); P(yes) = p(yes tokens) / (p(yes tokens) \
                 + p(no tokens)) over the {TOP_LOGPROBS} first tokens returned, a yes (no) \
                 token one whose text is {YES_FORMS:?} ({NO_FORMS:?}), a leading Ġ or ▁ read \
                 as a space, tokens of the same text added up, a label outside the top \
                 {TOP_LOGPROBS} counted 0; yes if P(yes) >= 0.5. Prompts by kind \
                 ({{question}}, {{answer}} filled in): {}",
                ep.model,
                ep.base_url,
                prompts_description()
            ),
        }
    }

    fn judge(&self, kind: PromptKind, prompt: &Prompt, answer: &str) -> Result<Verdict> {
        Ok(self.judge_all(kind, &[(prompt, answer)])?.remove(0))
    }

    /// Asked `endpoint.concurrency` at a time, each judgment cached.
    fn judge_all(&self, kind: PromptKind, items: &[(&Prompt, &str)]) -> Result<Vec<Verdict>> {
        let filled: Vec<(&str, String)> = items
            .iter()
            .map(|(p, a)| (p.id.as_str(), judge_question(kind, p.question(), a)))
            .collect();
        let ps = self
            .top
            .endpoint
            .map(&filled, |(id, text)| self.p_yes(id, text))?;
        Ok(ps.into_iter().map(|p| verdict(kind, p)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top(entries: &[(&str, f64)]) -> Vec<(String, f64)> {
        entries
            .iter()
            .map(|(t, p)| (t.to_string(), p.ln()))
            .collect()
    }

    #[test]
    fn p_yes_is_the_yes_share_of_the_label_mass() {
        // 0.3 / (0.3 + 0.1): the other tokens do not count.
        let p = p_yes_top(&top(&[("Yes", 0.3), ("The", 0.5), ("No", 0.1)])).unwrap();
        assert!((p - 0.75).abs() < 1e-12, "{p}");
    }

    #[test]
    fn tokens_of_one_text_and_every_form_add_up() {
        // yes: 0.2 + 0.1 (two ids of text " yes") + 0.1 ("YES"); no: 0.1 + 0.1.
        let t = top(&[
            (" yes", 0.2),
            ("no", 0.1),
            (" yes", 0.1),
            ("YES", 0.1),
            (" No", 0.1),
            ("yes.", 0.2),
        ]);
        let p = p_yes_top(&t).unwrap();
        assert!((p - 0.4 / 0.6).abs() < 1e-12, "{p}");
    }

    #[test]
    fn leading_space_markers_read_as_spaces() {
        assert_eq!(answer_of("Ġyes"), Some(true));
        assert_eq!(answer_of("▁No"), Some(false));
        assert_eq!(answer_of(" Yes"), Some(true));
        assert_eq!(answer_of("yes "), None, "a trailing space is another text");
        assert_eq!(answer_of("  yes"), None, "two spaces are another text");
        assert_eq!(answer_of("Ye"), None);
        let p = p_yes_top(&top(&[("Ġyes", 0.2), ("▁no", 0.6)])).unwrap();
        assert!((p - 0.25).abs() < 1e-12, "{p}");
    }

    #[test]
    fn a_missing_label_counts_zero_and_no_label_at_all_is_none() {
        assert_eq!(p_yes_top(&top(&[("Yes", 0.01), ("Sure", 0.9)])), Some(1.0));
        assert_eq!(p_yes_top(&top(&[("no", 0.01), ("Sure", 0.9)])), Some(0.0));
        assert_eq!(p_yes_top(&top(&[("Sure", 0.9), ("I", 0.05)])), None);
        assert_eq!(p_yes_top(&[]), None);
    }

    #[test]
    fn only_the_first_twenty_alternatives_count() {
        let mut t: Vec<(String, f64)> = (0..20).map(|i| (format!("w{i}"), -5.0)).collect();
        t.push(("yes".into(), -6.0));
        assert_eq!(p_yes_top(&t), None, "the 21st is past the top 20");
        t.insert(0, ("no".into(), -1.0));
        assert_eq!(p_yes_top(&t), Some(0.0));
    }

    #[test]
    fn tiny_label_masses_do_not_underflow() {
        let t = vec![("yes".to_string(), -800.0), ("no".to_string(), -801.0)];
        let want = 1.0 / (1.0 + (-1f64).exp());
        assert!((p_yes_top(&t).unwrap() - want).abs() < 1e-12);
    }
}
