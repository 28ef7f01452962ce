//! One module per subcommand.

pub mod activations;
pub mod demo;
pub mod drift;
pub mod eval;
pub mod eval_em;
pub mod eval_labels;
pub mod generate;
pub mod inspect;
pub mod logprobs;
pub mod remote;
pub mod render;
pub mod serve;
pub mod steer;
pub mod study;
pub mod train;
