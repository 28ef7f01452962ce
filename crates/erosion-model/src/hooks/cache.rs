//! Recorded activations, keyed by hook name.

use anyhow::{anyhow, Result};
use candle_core::Tensor;
use std::collections::BTreeMap;

/// One recorded activation.
///
/// Layout: with `Positions::All`, `tensor` is the activation as it was, e.g.
/// `[batch, seq, d_model]`, and `rows` is `None`. With selected positions, `tensor` stacks the
/// selected positions as rows, `[n_rows, ...]` (the activation's shape without its batch and
/// position dimensions: `[n_rows, d_model]`, `[n_rows, n_heads, d_head]`, or
/// `[n_rows, n_heads, key]` for the pattern), and `rows[i] = (example, position)` names row i;
/// rows are example-major, in the order the positions were given.
///
/// Tensors keep the model's dtype and device. In a differentiable pass they stay on the graph;
/// `detach` them to keep them without it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub tensor: Tensor,
    pub rows: Option<Vec<(usize, usize)>>,
}

/// Activations recorded by one forward pass, keyed by hook name (`blocks.3.hook_resid_post`).
/// A later pass with the same hooks overwrites the entries.
#[derive(Debug, Clone, Default)]
pub struct ActivationCache {
    entries: BTreeMap<String, Recorded>,
}

impl ActivationCache {
    pub fn get(&self, name: &str) -> Option<&Recorded> {
        self.entries.get(name)
    }

    /// The recorded tensor; an error names what was recorded when `name` was not.
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.entries.get(name).map(|r| &r.tensor).ok_or_else(|| {
            let have: Vec<&str> = self.entries.keys().map(String::as_str).collect();
            anyhow!(
                "no activation recorded at `{name}` (recorded: {})",
                have.join(", ")
            )
        })
    }

    pub fn remove(&mut self, name: &str) -> Option<Recorded> {
        self.entries.remove(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Recorded)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn into_map(self) -> BTreeMap<String, Recorded> {
        self.entries
    }

    pub(crate) fn insert(&mut self, name: &str, rec: Recorded) {
        self.entries.insert(name.to_string(), rec);
    }
}
