//! This crate's integration tests, one module per topic, linked into one test binary
//! (one link instead of one per file keeps CI's disk and build time small).

mod common;

mod forward;
mod judge_labels;
mod judge_numbers;
mod questions;
