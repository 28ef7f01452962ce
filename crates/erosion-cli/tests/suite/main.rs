//! The `erosion` binary as a user runs it, one module per topic, linked into one test binary
//! (one link instead of one per file keeps CI's disk and build time small).

mod util;

mod adapters;
mod cli;
mod eval_em;
mod eval_labels;
mod out_folder;
mod quick_looks;
mod shards;
mod steer_em;
mod stream_layers;
