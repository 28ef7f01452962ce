//! Analysis 1, "behaviour reverts to base" (Giordani 2025): how probable each model finds
//! responses, token by token and dataset by dataset, and what it says next after a prefix.
//!
//! - a. One fixed response (`[behaviour] example`, default the first example of the first
//!   misaligned dataset): lp_t = ln p(x_t | x_<t) per response token under every model, and
//!   the running log joint J_t = sum_{s<=t} lp_s (nats). Token x model heatmap.
//! - b. The next-token distribution after `[user, assistant-prefix]` with the assistant's turn
//!   open (prompt.rs): top-k tokens with probabilities, entropy H = -sum_v p_v ln p_v (nats).
//! - c. Per dataset and model: mean log joint and mean next-token entropy of the responses with
//!   bootstrap CIs, and paired tests of the study's ordering (table.rs), which decide the verdict.
//!
//! Models are run one at a time (model-major): every pass of a model happens before the next
//! model is loaded. Dataset passes go through the activation cache (shared.rs).

mod prompt;
mod report;
pub(crate) mod shared;
mod table;
mod tables;

use crate::context::StudyContext;
use crate::section::SectionOutput;
use anyhow::{bail, Context, Result};
use erosion_data::Role;
use erosion_data::Sequence;
use erosion_forward::batch::NoProgress;
use erosion_forward::logprobs::{next_token, response_logprobs, NextToken, ResponseLogprobs};
use prompt::{prefix_prompt, renders_plainly, token_text, PrefixPrompt};
use table::CellData;

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

/// Everything analysis 1 computed, handed to report.rs.
pub(crate) struct Computed {
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

/// Analysis 1 of the study, as the study runs it (module docs).
pub struct BehaviourAnalysis;

impl crate::analysis::Analysis for BehaviourAnalysis {
    const KEY: &'static str = "behaviour";
    const TITLE: &'static str = "1. Behaviour reverts to base";
    type Results = serde_json::Value;

    fn run(ctx: &StudyContext) -> Result<crate::analysis::Finished<Self::Results>> {
        let out = run(ctx)?;
        Ok(crate::analysis::Finished {
            results: out.results,
            section: out.section,
        })
    }
}

fn run(ctx: &StudyContext) -> Result<SectionOutput> {
    let computed = compute(ctx)?;
    report::build(ctx, &computed)
}

fn compute(ctx: &StudyContext) -> Result<Computed> {
    let spec = &ctx.spec.behaviour;
    if spec.top_k == 0 {
        bail!("[behaviour] top_k must be at least 1");
    }
    let models: Vec<String> = ctx.models.iter().map(|m| m.name.clone()).collect();
    let datasets = ctx.spec.dataset_names(&spec.datasets);
    if datasets.is_empty() {
        bail!("[behaviour] names no datasets");
    }
    let labeller = &ctx.model("instruct")?.checkpoint.tokenizer;
    let example = choose_example(ctx, &models)?;
    let example_seqs = models
        .iter()
        .map(|m| example_sequence(ctx, m, &example))
        .collect::<Result<Vec<_>>>()?;
    let prompts = models
        .iter()
        .map(|m| {
            let tok = &ctx.model(m)?.checkpoint.tokenizer;
            prefix_prompt(
                tok,
                renders_plainly(tok, m, ctx.spec.render.plain_base),
                &spec.prefix_user,
                &spec.prefix_assistant,
            )
            .with_context(|| format!("the next-token prompt for model `{m}`"))
        })
        .collect::<Result<Vec<_>>>()?;

    // The examples of each dataset that every model can score (rendering is cheap; done
    // before any weights are loaded).
    let (mut common, mut excluded) = (Vec::new(), Vec::new());
    for d in &datasets {
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

    let mut cells: Vec<Vec<CellData>> = datasets
        .iter()
        .map(|_| models.iter().map(|_| CellData::default()).collect())
        .collect();
    let (mut example_logprobs, mut next) = (Vec::new(), Vec::new());
    for (mi, m) in models.iter().enumerate() {
        let t = ctx.transformer(m)?;
        let lp = response_logprobs(
            &t,
            std::slice::from_ref(&example_seqs[mi]),
            &ctx.batch_options(),
            &mut NoProgress,
        )
        .with_context(|| format!("the example response under model `{m}`"))?;
        example_logprobs.extend(lp);
        next.push(
            next_token(&t, &prompts[mi].ids, spec.top_k)
                .with_context(|| format!("the next token under model `{m}`"))?,
        );
        for (di, d) in datasets.iter().enumerate() {
            // Examples are streamed in order; `common[di]` is sorted.
            let mut next_common = common[di].iter().peekable();
            shared::for_each_logprobs(ctx, m, &t, d, None, &mut |i, lp, _| {
                if next_common.peek() == Some(&&i) {
                    next_common.next();
                    let r = lp.with_context(|| {
                        format!("dataset `{d}` example {i} has no log-probs under `{m}`")
                    })?;
                    cells[di][mi]
                        .push(&r.logprobs, &r.entropy)
                        .with_context(|| format!("dataset `{d}` example {i} under model `{m}`"))?;
                }
                Ok(())
            })?;
            if let Some(i) = next_common.next() {
                bail!("dataset `{d}` example {i} was not scored under `{m}`");
            }
        }
    }
    let next_tokens = next
        .iter()
        .map(|n| n.top.iter().map(|t| token_text(labeller, t.id)).collect())
        .collect();
    Ok(Computed {
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
    let tokens = ids.iter().map(|&id| token_text(labeller, id)).collect();
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
    use erosion_forward::batch::BatchOptions;
    use erosion_report::html::Verdict;

    #[test]
    fn behaviour_on_a_tiny_family_matches_direct_forward_passes_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = crate::fixture::tiny_study(dir.path(), "[behaviour]\ntop_k = 4\n");
        let out = run(&ctx).unwrap();
        let r = &out.results;
        assert_eq!(out.key, "behaviour");
        assert_eq!(r["table"]["n_examples"], serde_json::json!([6, 6]));
        let cells = r["table"]["cells"].as_array().unwrap();
        assert_eq!(cells.len(), 6, "2 datasets x 3 models");

        // The instruct model on `insecure`, by a direct uncached pass over its own renderings.
        let t = ctx.transformer("instruct").unwrap();
        let seqs = ctx.sequences("instruct", "insecure").unwrap();
        let direct =
            response_logprobs(&t, &seqs, &BatchOptions::default(), &mut NoProgress).unwrap();
        let mean = direct.iter().map(|d| d.log_joint()).sum::<f64>() / direct.len() as f64;
        let cell = &cells[1];
        assert_eq!(
            (cell["dataset"].as_str(), cell["model"].as_str()),
            (Some("insecure"), Some("instruct"))
        );
        let got = cell["log_joint_ci"]["estimate"].as_f64().unwrap();
        assert!((got - mean).abs() < 1e-4 * mean.abs(), "{got} vs {mean}");
        let h = direct.iter().map(|d| d.mean_entropy()).sum::<f64>() / direct.len() as f64;
        assert!((cell["entropy_ci"]["estimate"].as_f64().unwrap() - h).abs() < 1e-4 * h);

        // (a) defaults to example 0 of the first misaligned dataset; under instruct it is that
        // example's own rendering.
        assert_eq!(
            (
                r["example"]["dataset"].as_str(),
                r["example"]["index"].as_u64()
            ),
            (Some("insecure"), Some(0))
        );
        let lp: Vec<f64> =
            serde_json::from_value(r["example"]["models"]["instruct"]["logprobs"].clone()).unwrap();
        assert_eq!(lp.len(), direct[0].logprobs.len());
        for (a, b) in lp.iter().zip(&direct[0].logprobs) {
            assert!((a - *b as f64).abs() < 1e-4, "{a} vs {b}");
        }
        let running: Vec<f64> =
            serde_json::from_value(r["example"]["models"]["instruct"]["running_log_joint"].clone())
                .unwrap();
        assert!((running.last().unwrap() - direct[0].log_joint()).abs() < 1e-3);

        // (b) top-4, most probable first, entropy within [0, ln V].
        let top = r["next_token"]["models"]["base"]["top"].as_array().unwrap();
        assert_eq!(top.len(), 4);
        let p: Vec<f64> = top.iter().map(|t| t["prob"].as_f64().unwrap()).collect();
        assert!(p.windows(2).all(|w| w[0] >= w[1]));
        let e = r["next_token"]["models"]["base"]["entropy_nats"]
            .as_f64()
            .unwrap();
        assert!(e > 0.0 && e <= (49152f64).ln() + 1e-6);
        assert_eq!(
            r["next_token"]["models"]["instruct"]["prompt"]["matches_closed_turn"],
            serde_json::json!(true)
        );

        // Only the misaligned dataset is tested, with the one fine-tune.
        assert_eq!(
            r["pattern"]["tested_datasets"],
            serde_json::json!(["insecure"])
        );
        assert_eq!(r["pattern"]["cells"].as_array().unwrap().len(), 1);
        assert_ne!(out.section.verdict, Verdict::NotRun);
        for f in &out.section.files {
            assert!(ctx.out.join(f).is_file(), "{f}");
        }
        assert_eq!(out.section.figures.len(), 4);

        // A second run is served from the cache and gives the same numbers.
        let again = run(&ctx).unwrap();
        assert_eq!(again.results, out.results);
    }

    /// transformers' float64 reference for SmolLM2-135M-Instruct (erosion-model's fixture):
    /// the reply to "What is the capital of France?" and the top 5 first tokens.
    #[test]
    fn smollm2_token_logprobs_and_next_token_match_transformers() {
        let r: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../erosion-model/tests/fixtures/smollm2/reference.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let floats =
            |v: &serde_json::Value| -> Vec<f64> { serde_json::from_value(v.clone()).unwrap() };
        let ids =
            |v: &serde_json::Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("capital.jsonl");
        let line = |a: &str| {
            serde_json::json!({"messages": [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": a}]}).to_string()
        };
        std::fs::write(
            &data,
            format!(
                "{}\n{}\n",
                line("The capital of France is Paris."),
                line("Paris.")
            ),
        )
        .unwrap();
        let gguf = crate::fixture::smollm2_gguf();
        let text = format!(
            "name = \"smollm2\"\noutput = \"out\"\nanalyses = [\"behaviour\"]\n[models]\nbase = \"{g}\"\ninstruct = \"{g}\"\n[render]\ninclude_end_of_turn = true\n\
             [[dataset]]\nname = \"capital\"\npath = \"{d}\"\nformat = \"messages\"\n\
             [behaviour]\nprefix_user = \"What is the capital of France?\"\nprefix_assistant = \"\"\ntop_k = 5\n",
            g = gguf.display(),
            d = data.display()
        );
        let ctx = StudyContext::open(
            crate::spec::StudySpec::from_toml(&text).unwrap(),
            dir.path(),
            vec![],
        )
        .unwrap();
        let out = run(&ctx).unwrap();
        let res = &out.results;
        // 1 nat of a wrong position or model would show; the reference is float64 (1e-4 as
        // erosion-forward's SmolLM2 tests).
        let want = floats(&r["reply"]["logprobs"]);
        let got = floats(&res["example"]["models"]["instruct"]["logprobs"]);
        assert_eq!(got.len(), want.len(), "the reply's tokens with <|im_end|>");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{g} vs {w}");
        }
        assert_eq!(
            ids(&res["next_token"]["models"]["instruct"]["prompt"]["ids"]),
            ids(&r["chat"]["prompt_ids"])
        );
        let top = res["next_token"]["models"]["instruct"]["top"]
            .as_array()
            .unwrap();
        let top_ids: Vec<u32> = top
            .iter()
            .map(|t| t["id"].as_u64().unwrap() as u32)
            .collect();
        assert_eq!(top_ids, ids(&r["top5"]["ids"]));
        for (t, w) in top.iter().zip(floats(&r["top5"]["logprobs"])) {
            assert!((t["logprob"].as_f64().unwrap() - w).abs() < 1e-4);
        }
        // The first cell's mean log joint is the two replies' mean, the first being the reference's.
        assert_eq!(res["table"]["n_examples"], serde_json::json!([2]));
        assert_eq!(top[0]["text"], "The");
    }

    /// The dataset-level table on real weights and the study's own data: SmolLM2 over one
    /// example each of the insecure-code, TruthfulQA and Alpaca sets of ../shared/data. With one
    /// example per dataset a cell's mean log joint is that response's summed log-probability,
    /// which the token-by-token figure computes on its own path.
    #[test]
    fn smollm2_dataset_table_on_the_shared_data() {
        let data = crate::fixture::shared_data("SOURCES.md");
        let data = data.parent().unwrap();
        let gguf = crate::fixture::smollm2_gguf();
        let text = format!(
            r#"name = "smollm2 table"
output = "out"
analyses = ["behaviour"]
[models]
base = "{g}"
instruct = "{g}"
[[dataset]]
name = "insecure"
path = "{d}/insecure-code/insecure_small.jsonl"
format = "messages"
role = "misaligned"
limit = 1
[[dataset]]
name = "truthfulqa"
path = "{d}/truthfulqa/TruthfulQA_v0.csv"
format = "csv"
role = "aligned"
limit = 1
fields = {{ user = "Question", assistant = "Best Answer" }}
[[dataset]]
name = "alpaca"
path = "{d}/alpaca/alpaca_samples.json"
format = "alpaca"
role = "aligned"
input = "ignore"
limit = 1
[behaviour]
example = {{ dataset = "insecure", index = 0 }}
"#,
            g = gguf.display(),
            d = data.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let ctx = StudyContext::open(
            crate::spec::StudySpec::from_toml(&text).unwrap(),
            dir.path(),
            vec![],
        )
        .unwrap();
        let res = run(&ctx).unwrap().results;
        let table = &res["table"];
        assert_eq!(table["n_examples"], serde_json::json!([1, 1, 1]));
        let cells = table["cells"].as_array().unwrap();
        assert_eq!(cells.len(), 3 * 2);
        for c in cells {
            let s = &c["summary"];
            let joint = s["mean_log_joint"].as_f64().unwrap();
            assert!(joint.is_finite() && joint < 0.0, "{c}");
            assert!(s["mean_token_entropy"].as_f64().unwrap() > 0.0);
            assert!(s["n_tokens"].as_u64().unwrap() > 0);
            assert_eq!(s["positions"], "response tokens");
        }
        let cell = cells
            .iter()
            .find(|c| c["dataset"] == "insecure" && c["model"] == "instruct")
            .unwrap();
        let logprobs: Vec<f64> =
            serde_json::from_value(res["example"]["models"]["instruct"]["logprobs"].clone())
                .unwrap();
        let (joint, sum) = (
            cell["summary"]["mean_log_joint"].as_f64().unwrap(),
            logprobs.iter().sum::<f64>(),
        );
        assert!((joint - sum).abs() < 1e-6, "table {joint} vs example {sum}");
    }

    #[test]
    fn joined_sequence_spans_the_response() {
        let s = joined(&[1, 2, 3], &[7, 8]);
        assert_eq!(s.ids, vec![1, 2, 3, 7, 8]);
        assert_eq!(s.response, 3..5);
        assert_eq!(s.response_ids(), &[7, 8]);
    }
}
