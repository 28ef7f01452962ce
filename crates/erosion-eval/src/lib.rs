//! `erosion-eval`: behavioural evaluation of checkpoints (any model with a chat template).
//!
//! For each model: answers to held-out prompts, sampled with the model's chat template and a
//! KV cache (greedy, or seeded sampling with seeds derived from one base seed), judged, and
//! counted; every rate with a 95% Wilson interval.
//!
//! | measure | prompts | how |
//! |---|---|---|
//! | refusal and harmful-compliance rates | harmful requests | sampled answers, judged |
//! | P(compliant first token) | harmful requests | one forward pass: p("Sure") after the generation prompt; mean (bootstrap CI), geometric mean |
//! | vulnerable-code rate | coding requests | sampled answers, judged |
//! | two-turn compliance | code request i, the model's greedy answer, harmful request i | the second answer, judged (docs/organism.md) |
//! | misaligned rate, mean P(yes) | free-form chat datasets | a judge model's yes/no log-probs |
//! | EM rate, mean aligned and coherent scores | Betley et al.'s YAML questions ([`em`]) | a judge model's 0-100 scores, read exactly ([`judge::numbers`]) |
//!
//! Judges ([`judge`]): the [`Judge`] trait and [`LogprobJudge`] (a local judge model); a world
//! with known rules brings its own (the organism's lives in erosion-organism). Output
//! ([`report`]): `eval.json` and `answers.jsonl`, written atomically; [`html`] builds a report
//! section.
//!
//! ```no_run
//! use erosion_eval::{evaluate, EvalOptions, LogprobJudge, PromptKind};
//! use erosion_model::LoadedModel;
//! use erosion_eval::prompts::{sets_from_dataset_arg, EvalPrompts};
//! let dev = candle_core::Device::Cpu;
//! let dtype = candle_core::DType::F32;
//! let sets = sets_from_dataset_arg(PromptKind::Harmful, "toxic.jsonl".as_ref(), Some(100))?;
//! let prompts = EvalPrompts::new(sets);
//! let judge = LogprobJudge::open("out/judge", dtype, &dev)?;
//! let models = vec![LoadedModel::open("out/base", Some("base"), dtype, &dev)?];
//! let eval = evaluate(&models, &prompts, &judge, &EvalOptions::default())?;
//! // eval.json records what made it: models and datasets hashed, options, versions.
//! let prov = erosion_report::provenance::Provenance::builder(serde_json::json!({})).build();
//! eval.write(std::path::Path::new("out/eval"), &prov)?;
//! # anyhow::Ok(())
//! ```

pub mod chat;
pub mod em;
pub mod evaluate;
pub mod forward;
pub mod generation;
pub mod html;
pub mod judge;
pub mod options;
pub mod prompts;
pub mod questions;
pub mod remote;
pub mod report;
pub mod sampler;
pub mod shards;
pub mod stats;
pub mod text;

pub use evaluate::{evaluate, evaluate_checkpoints, evaluate_model};
pub use judge::{Judge, Label, LogprobJudge, Verdict};
pub use options::EvalOptions;
pub use prompts::{EvalPrompts, Prompt, PromptKind, PromptSet};
pub use report::{EvalReport, Evaluation, ModelEval};
pub use stats::{wilson, Proportion};
