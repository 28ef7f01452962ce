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
//!
//! Layout: passes.rs runs the forward passes, compute.rs turns them into the typed
//! [`BehaviourResults`] (results.rs) and saves the arrays, section.rs writes the report section
//! from those results alone (figures.rs, tables.rs).

mod compute;
mod figures;
mod passes;
mod prompt;
mod results;
mod section;
pub(crate) mod shared;
mod table;
mod tables;

pub use results::*;

use crate::analysis::{Analysis, Finished};
use crate::context::StudyContext;
use crate::pass::Pass;
use anyhow::Result;

/// Analysis 1 of the study (module docs). [`Analysis::run`] hands back a
/// [`BehaviourResults`]: per model, the example response's per-token log-probabilities and
/// running log joint (`example.models`); the top next tokens after the prefix with their
/// probabilities and the distribution's entropy (`next_token.models`); per dataset and model,
/// the mean log joint and mean entropy of the responses with bootstrap CIs
/// (`table.cells`, or [`BehaviourResults::cell`]); the paired tests of the study's ordering with
/// the recovery of each fine-tune towards base (`pattern.cells`); and the verdict they give.
pub struct BehaviourAnalysis;

impl Analysis for BehaviourAnalysis {
    const KEY: &'static str = "behaviour";
    const TITLE: &'static str = section::TITLE;
    type Results = BehaviourResults;

    fn run(ctx: &StudyContext) -> Result<Finished<BehaviourResults>> {
        let results = compute::compute(ctx)?;
        let section = section::section(ctx, &results)?;
        Ok(Finished { results, section })
    }

    fn passes(ctx: &StudyContext) -> Result<Vec<Pass>> {
        passes::passes(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::StudySpec;
    use erosion_forward::batch::{BatchOptions, NoProgress};
    use erosion_forward::logprobs::response_logprobs;
    use erosion_report::html::Verdict;

    /// The analysis run on `ctx`, its results as results.json holds them, and its section.
    fn run(ctx: &StudyContext) -> (serde_json::Value, erosion_report::html::Section) {
        let done = BehaviourAnalysis::run(ctx).unwrap();
        (serde_json::to_value(&done.results).unwrap(), done.section)
    }

    #[test]
    fn behaviour_on_a_tiny_family_matches_direct_forward_passes_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = crate::fixture::tiny_study(dir.path(), "[behaviour]\ntop_k = 4\n");
        let (r, section) = run(&ctx);
        let r = &r;
        assert_eq!(r["table"]["n_examples"], serde_json::json!([6, 6]));
        let cells = r["table"]["cells"].as_array().unwrap();
        assert_eq!(cells.len(), 6, "2 datasets x 3 models");

        // The instruct model on `insecure`, by a direct uncached pass over its own renderings.
        let t = ctx.transformer("instruct").unwrap();
        let seqs = ctx.sequences("instruct", "insecure").unwrap();
        let direct =
            response_logprobs(&t, &seqs, &BatchOptions::default(), None, &mut NoProgress).unwrap();
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
        assert_ne!(section.verdict, Verdict::NotRun);
        for f in &section.files {
            assert!(ctx.out.join(f).is_file(), "{f}");
        }
        assert_eq!(section.figures.len(), 4);

        // The typed results read the same numbers, and survive a trip through JSON.
        let typed: BehaviourResults = serde_json::from_value(r.clone()).unwrap();
        let cell = typed.cell(0, typed.model_index("instruct").unwrap());
        assert_eq!(
            (cell.dataset.as_str(), cell.model.as_str()),
            ("insecure", "instruct")
        );
        assert_eq!(serde_json::to_value(&typed).unwrap(), *r);
        assert_eq!(typed.finetuned().collect::<Vec<_>>(), ["misaligned"]);

        // A second run is served from the cache and gives the same numbers.
        assert_eq!(run(&ctx).0, *r);
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
        let ctx =
            StudyContext::open(StudySpec::from_toml(&text).unwrap(), dir.path(), vec![]).unwrap();
        let (res, _) = run(&ctx);
        let res = &res;
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
    /// example each of the insecure-code, TruthfulQA and Alpaca sets of data/. With one
    /// example per dataset a cell's mean log joint is that response's summed log-probability,
    /// which the token-by-token figure computes on its own path.
    #[test]
    fn smollm2_dataset_table_on_the_study_data() {
        let data = erosion_testkit::data_dir();
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
        let ctx =
            StudyContext::open(StudySpec::from_toml(&text).unwrap(), dir.path(), vec![]).unwrap();
        let (res, _) = run(&ctx);
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
}
