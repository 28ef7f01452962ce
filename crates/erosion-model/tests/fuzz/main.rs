//! Fuzz targets of the checkpoint readers (issue 17), in their own test binary because the
//! counting allocator they measure with is process-wide: GGUF files (the header walk, candle's
//! reader behind it, the config and tokenizer rebuilt from metadata, the weights) and Hugging
//! Face folders (config.json, model.safetensors). Properties and budgets:
//! `erosion_testkit::fuzz`; the long run: README, "Bad input and interrupted runs".

#[path = "../suite/load_util/mod.rs"]
mod load_util;

mod folder;
mod gguf;

#[global_allocator]
static ALLOC: erosion_testkit::fuzz::Counting = erosion_testkit::fuzz::Counting;

/// The error of a refused input as the user would see it (the whole chain).
fn refused<T>(r: anyhow::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{e:#}"))
}
