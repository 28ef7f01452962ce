//! `erosion-forward`: the forward (and backward) passes the analyses read, run over datasets
//! of tokenized examples in memory-bounded batches.
//!
//! - [`batch`]: batches under a token budget (sorted by length, right-padded), progress.
//! - [`logprobs`]: per-token log-probabilities and entropies of responses; next-token top-k.
//! - [`windows`]: hidden states at chosen layers and positions, streamed to a sink.
//! - [`activations`]: any hook points over a dataset into `.npy` files, resumable.
//! - [`cache`], [`cached_windows`]: the on-disk activation cache, chunked so a study resumes.
//! - [`notice`]: the lines a long run reports to its caller, who decides whether to print them.
//! - [`out_lock`]: one run per output folder, for every crate above that runs into one.
//! - [`run_folder`]: one kind of run per output folder (its manifest), and `--force`.

pub mod activations;
pub mod batch;
pub mod cache;
pub mod cached_windows;
mod depth;
pub mod gradients;
pub mod kl;
pub mod logprobs;
pub mod notice;
pub mod out_lock;
pub mod row_store;
pub mod run_folder;
pub mod shard;
pub mod windows;
