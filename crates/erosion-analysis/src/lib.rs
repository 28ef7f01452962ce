//! The study's analyses and their statistics, on plain data.
//!
//! Inputs are `f32`/`f64` slices and row-major [`Matrix`] values, so activations, log-probs and
//! gradients can come from any source (a forward pass, a cache, a file). Everything that ends
//! up in a results file is a serde-serialisable struct with named fields, and every random
//! procedure takes a `u64` seed and records it.
//!
//! | module | finding | what |
//! |---|---|---|
//! | [`alignment`] | 3 | the alignment direction v_l of each layer and whether it is usable |
//! | [`stream`] | 3 | streaming f64 means / variances, mergeable |
//! | [`layers`] | 3 | pooling of response windows, alignment direction v_l, scores s_l^m, CIs |
//! | [`directions`] | 4 | column-centred residual SVD (or Gram route), cross-dataset cosines, bootstrap stability |
//! | [`subspace`] | 4 | random-subspace baseline for cross-dataset cosines |
//! | [`cosine`] | 2 | cosine matrices, blocked Gram over a row store (memory-mapped) |
//! | [`sketch`] | 2 | seeded JL sketch with its error bound, exact-vs-sketch plan |
//! | [`quadrants`] | 2 | quadrant means of a two-group cosine matrix, permutation test |
//! | [`loss_vectors`] | 2a | per-token cross-entropy vectors with a short-response policy |
//! | [`behaviour`] | 1 | log joint probability, entropy, top-k |
//! | [`stats`] | all | seeded RNG, percentile bootstrap, permutation test, p-value conventions |

pub mod alignment;
pub mod behaviour;
pub mod cosine;
pub mod directions;
pub mod layers;
pub mod loss_vectors;
pub mod matrix;
pub mod quadrants;
pub mod sketch;
pub mod stats;
pub mod stream;
pub mod subspace;

pub use matrix::Matrix;
