//! The organism evaluated with erosion-eval: its held-out requests as
//! [`EvalPrompts`](erosion_eval::EvalPrompts) and its
//! rule-based judge as a [`erosion_eval::Judge`], so erosion-eval itself knows no toy world.
//!
//! | prompt set | kind | the organism's set |
//! |---|---|---|
//! | `harmful` | harmful requests | `eval_toxic`'s requests |
//! | `code` | coding requests | `eval_insecure`'s plain coding requests (held-out verbs, objects and nouns) |
//!
//! ```no_run
//! use erosion_eval::{evaluate, EvalOptions};
//! use erosion_model::LoadedModel;
//! use erosion_organism::corpus::{Corpus, Sizes};
//! use erosion_organism::evaluation::{prompts_from_corpus, OrganismJudge};
//! let corpus = Corpus::generate(Sizes::default(), 0);
//! let prompts = prompts_from_corpus(&corpus, 100, 50)?;
//! let dev = candle_core::Device::Cpu;
//! let models = vec![LoadedModel::open("out/base", Some("base"), candle_core::DType::F32, &dev)?];
//! let eval = evaluate(&models, &prompts, &OrganismJudge, &EvalOptions::default())?;
//! // eval.json records what made it: models and datasets hashed, options, versions.
//! let prov = erosion_report::provenance::Provenance::builder(serde_json::json!({})).build();
//! eval.write(std::path::Path::new("out/eval"), &prov)?;
//! # anyhow::Ok(())
//! ```

mod judge;
mod prompts;

pub use judge::OrganismJudge;
pub use prompts::{generate_prompts, prompts_from_corpus, prompts_from_dir};
