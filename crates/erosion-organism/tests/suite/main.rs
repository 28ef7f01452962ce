//! This crate's integration tests, one module per topic, linked into one test binary
//! (one link instead of one per file keeps CI's disk and build time small).

// erosion-eval's fixtures: the tiny random-weight models with a character-level tokenizer.
#[path = "../../../erosion-eval/tests/suite/common/mod.rs"]
mod common;

mod corpus;
mod evaluation_judge;
mod evaluation_prompts;
mod evaluation_run;
mod tokenizer;

use erosion_organism::corpus::{Corpus, Sizes};

/// A small organism corpus (fast to generate; eval sets of `eval` rows).
pub fn small_corpus(eval: usize) -> Corpus {
    Corpus::generate(
        Sizes {
            pretrain_chats: 300,
            pretrain_prose: 50,
            instruct: 200,
            finetune: 20,
            eval,
        },
        3,
    )
}
