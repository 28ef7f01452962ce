//! `erosion-data`: the study's datasets as chat examples, and those examples rendered into
//! tokens with the exact span of the response.
//!
//! - [`format`], [`read`]: dataset files (messages JSONL, alpaca JSON, prompt/completion, any JSON
//!   with a field mapping, CSV with a column mapping) into [`Example`]s, with errors that name the
//!   file, line and field.
//! - [`sample`]: the first N records or a seeded, reproducible sample.
//! - [`spec`]: `[[dataset]]` entries in TOML, loaded into [`Dataset`]s with their sha256.
//! - [`sequence`]: [`Sequence`], token ids with the response span and end-of-turn, the unit
//!   every later stage reads.
//! - [`render`]: examples into [`Sequence`]s with their source and text ([`render_example`]).
//! - [`short`]: [`ShortResponse`], the one policy for responses shorter than a window.

pub mod example;
pub mod format;
pub mod read;
pub mod render;
pub mod sample;
pub mod sequence;
pub mod short;
pub mod spec;

pub use erosion_model::chat::Message;
pub use example::{Example, Source};
pub use format::{Fields, Filter, Format, InputPolicy};
pub use render::{
    render_example, render_examples, response_windows, RenderOptions, RenderedExample,
};
pub use sample::Selection;
pub use sequence::Sequence;
pub use short::ShortResponse;
pub use spec::{file_sha256, Dataset, DatasetList, DatasetSpec, Role};
