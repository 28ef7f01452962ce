//! `erosion-model`: open the checkpoints a researcher has (Hugging Face folders, the hub cache,
//! GGUF files), render chat examples with the checkpoint's own template, and run the Qwen2/3,
//! Llama, Mistral and Gemma 2/3 transformer with TransformerLens-style hook points at every
//! intermediate.

pub mod atomic;
pub mod chat;
pub mod config;
pub mod device;
pub mod family;
pub mod generate;
pub mod hooks;
pub mod load;
pub mod loaded;
pub mod npy;
pub mod seed;
pub mod text;
pub mod tokenizer;
pub mod transformer;
pub mod unsupported;

pub use config::Config;
pub use family::Family;
pub use loaded::LoadedModel;
