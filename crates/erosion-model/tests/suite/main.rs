//! This crate's integration tests, one module per topic, linked into one test binary
//! (one link instead of one per file keeps CI's disk and build time small).

mod chat_util;
mod load_util;
mod transformer_util;

mod chat_fixtures;
mod chat_smollm2;
mod chat_tokens;
mod gemma3_gguf;
mod gradients;
mod hf_fixtures;
mod hooks_record_edit;
mod hostile_folder;
mod hostile_gguf;
mod hostile_template;
mod load_folder;
mod load_gguf;
mod load_hub;
mod load_save;
mod npy;
mod peft_fixtures;
mod smollm2;
mod streamed;
mod transformer_batching;
mod transformer_kv_cache;
mod transformer_params;
