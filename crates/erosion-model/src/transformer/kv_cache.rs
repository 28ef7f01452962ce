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

    /// A cache of one sequence repeated into `n` rows, each to be continued on its own (the
    /// branches of a prefix tree share one prompt). Keys and values `[1, H, len, d]` become
    /// `[n, H, len, d]` (copied: the rows then grow independently).
    pub fn repeat(&self, n: usize) -> candle_core::Result<KvCache> {
        if self.mask.len() != 1 {
            candle_core::bail!(
                "only a cache of one sequence can be repeated, this one holds {}",
                self.mask.len()
            );
        }
        let rep = |t: &Option<candle_core::Tensor>| -> candle_core::Result<_> {
            t.as_ref().map(|t| t.repeat((n, 1, 1, 1))).transpose()
        };
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(LayerKv {
                    k: rep(&l.k)?,
                    v: rep(&l.v)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            mask: vec![self.mask[0].clone(); n],
        })
    }

    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = LayerKv::default());
        self.mask.clear();
    }
}
