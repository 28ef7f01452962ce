//! `erosion-train`: supervised fine-tuning of erosion's transformer, the way users fine-tune
//! real models and the way erosion grows its model organism.
//!
//! - [`examples`]: token sequences and which of their tokens carry loss (a chat's response, or
//!   every token for pre-training).
//! - [`batch`]: micro-batches with padding and the loss positions.
//! - [`schedule`]: linear warm-up, then cosine decay of the learning rate.
//! - [`adamw`]: AdamW whose moments can be saved, so a resumed run continues exactly.
//! - [`trainer`]: the loop (accumulation, global-norm clipping, progress), full or LoRA.
//! - [`checkpoint`]: Hugging Face folders (adapters merged) plus the state to resume from.
//! - [`run`]: a whole run into an output folder it locks: resumed, reused, or refused when the
//!   folder holds another run.
//!
//! A run is a pure function of its options, seed and data: the order of examples is drawn
//! from the seed, and the CPU kernels are deterministic, so the same seed gives the same
//! weights bit for bit.

pub mod adamw;
pub mod batch;
pub mod checkpoint;
pub mod examples;
pub mod init;
pub mod options;
pub mod protect;
mod recompute;
pub mod run;
pub mod schedule;
mod surrogate;
pub mod trainer;

pub use examples::{LossOn, TrainExample};
pub use options::{Method, TrainOptions};
pub use protect::{ProbeExample, ProtectMethod, Protection};
pub use trainer::{StepStats, Trainer};
