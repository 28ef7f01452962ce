//! Incremental decoding for generation: keys and values of past tokens are kept, so each new
//! token costs one position instead of a pass over the whole prefix. No-gradient only.

use super::attention::LayerKv;
use candle_core::Tensor;

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
        let rep = |t: &Option<Tensor>| -> candle_core::Result<_> {
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

    /// Only rows `keep`, in that order, without the leading columns that are pads in every
    /// one of them (left padding of rows that have left). Positions count real tokens and pads
    /// are never attended to, so each kept row continues exactly as before.
    /// Keys and values `[b, H, len, d]` become `[keep.len(), H, len - dropped, d]`.
    pub fn keep_rows(&self, keep: &[usize]) -> candle_core::Result<KvCache> {
        if let Some(&r) = keep.iter().find(|&&r| r >= self.mask.len()) {
            candle_core::bail!("row {r} is not in a cache of {} rows", self.mask.len());
        }
        if keep.is_empty() {
            return Ok(KvCache::new(self.layers.len()));
        }
        let mask: Vec<Vec<u8>> = keep.iter().map(|&r| self.mask[r].clone()).collect();
        let len = self.len();
        let skip = (0..len)
            .find(|&c| mask.iter().any(|row| row[c] == 1))
            .unwrap_or(len);
        let index: Vec<u32> = keep.iter().map(|&r| r as u32).collect();
        let pick = |t: &Option<Tensor>| -> candle_core::Result<_> {
            t.as_ref()
                .map(|t| {
                    let index = Tensor::new(index.as_slice(), t.device())?;
                    t.index_select(&index, 0)?.narrow(2, skip, len - skip)
                })
                .transpose()
        };
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(LayerKv {
                    k: pick(&l.k)?,
                    v: pick(&l.v)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mask = mask.into_iter().map(|row| row[skip..].to_vec()).collect();
        Ok(KvCache { layers, mask })
    }

    /// The rows of `self`, then those of `other`; the shorter cache is left-padded (keys and
    /// values 0, mask 0) so that both end at the same column and the next token of every row
    /// is fed in one column. Each row sees the tokens it saw, at the positions it had.
    pub fn append_rows(&self, other: &KvCache) -> candle_core::Result<KvCache> {
        if self.mask.is_empty() {
            return Ok(other.clone());
        }
        if other.mask.is_empty() {
            return Ok(self.clone());
        }
        if self.layers.len() != other.layers.len() {
            candle_core::bail!(
                "caches of {} and {} layers cannot be joined",
                self.layers.len(),
                other.layers.len()
            );
        }
        let len = self.len().max(other.len());
        // Pads `t` [b, H, s, d] on the left of its columns up to `len`.
        let pad = |t: &Tensor| -> candle_core::Result<Tensor> {
            let (b, h, s, d) = t.dims4()?;
            if s == len {
                return Ok(t.clone());
            }
            let zeros = Tensor::zeros((b, h, len - s, d), t.dtype(), t.device())?;
            Tensor::cat(&[&zeros, t], 2)
        };
        let join = |a: &Option<Tensor>, b: &Option<Tensor>| match (a, b) {
            (Some(a), Some(b)) => Ok(Some(Tensor::cat(&[pad(a)?, pad(b)?], 0)?)),
            (None, None) => Ok(None),
            _ => candle_core::bail!("one cache holds a layer the other has not been fed"),
        };
        let layers = self
            .layers
            .iter()
            .zip(&other.layers)
            .map(|(a, b)| {
                Ok(LayerKv {
                    k: join(&a.k, &b.k)?,
                    v: join(&a.v, &b.v)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mask = self
            .mask
            .iter()
            .chain(&other.mask)
            .map(|row| {
                let mut padded = vec![0u8; len - row.len()];
                padded.extend_from_slice(row);
                padded
            })
            .collect();
        Ok(KvCache { layers, mask })
    }

    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = LayerKv::default());
        self.mask.clear();
    }
}
