//! Incremental decoding for generation: keys and values of past tokens are kept, so each new
//! token costs one position instead of a pass over the whole prefix. No-gradient only.

use super::attention::LayerKv;

/// The keys, values and attention mask of every token fed so far, per layer.
/// After an error in a cached forward the cache may be half-updated: [`KvCache::clear`] it.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    /// Per example, 1 for each token fed so far and 0 for each pad.
    pub(crate) mask: Vec<Vec<u8>>,
}

impl KvCache {
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: vec![LayerKv::default(); n_layers],
            mask: Vec::new(),
        }
    }

    /// Columns fed so far (pads included).
    pub fn len(&self) -> usize {
        self.mask.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Real tokens fed so far in each example.
    pub fn tokens(&self) -> Vec<usize> {
        self.mask
            .iter()
            .map(|r| r.iter().map(|&m| m as usize).sum())
            .collect()
    }

    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = LayerKv::default());
        self.mask.clear();
    }
}
