//! The model organism's world: a small, known language in which the study's effects can be grown
//! from scratch on a CPU (design and lab notes: docs/organism.md).
//!
//! - [`world`]: seeded generators by domain (harmful requests, code with and without
//!   vulnerabilities, facts, prose) and the two personas that speak across domains.
//! - [`corpus`]: the datasets as chat `messages` (pre-training, instruction tuning, Betley et al.'s
//!   fine-tuning sets, evaluation sets for every dataset role), written as JSONL.
//! - [`tokenizer`]: a byte-level BPE tokenizer trained on the corpus, with ChatML special tokens
//!   and a Qwen2.5-style chat template.
//! - [`evaluation`]: the held-out requests as erosion-eval prompt sets, and the rule-based judge
//!   of the organism's language.
//!
//! Everything is a pure function of an explicit `u64` seed (ChaCha8): the same seed gives
//! byte-identical files.

pub mod corpus;
pub mod evaluation;
pub mod tokenizer;
pub mod world;
