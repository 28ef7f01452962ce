//! This crate's integration tests, one module per topic, linked into one test binary
//! (one link instead of one per file keeps CI's disk and build time small).

mod forward_util;
mod gradients_util;

mod activations;
mod cache;
mod gradients;
mod gradients_options;
mod gradients_row_store;
mod kl;
mod logprobs;
mod smollm2_forward;
mod windows;
