//! Streaming accumulation in f64: means (and variances) of vectors as the data streams, so
//! memory does not grow with the dataset. Accumulators of parallel chunks merge exactly
//! (sums add; Welford states combine with Chan et al.'s formula).
//!
//! Precision: sums are kept in f64. Summing n f32-valued activations in f64 has a relative
//! rounding error of about n * 1.1e-16, negligible against the f32 inputs themselves
//! (relative 6e-8) for any n below ~10^8.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Running sum and count of `dim`-vectors: mean = sum / count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanAccumulator {
    sum: Vec<f64>, // [dim]
    count: u64,
}

impl MeanAccumulator {
    pub fn new(dim: usize) -> Self {
        Self {
            sum: vec![0.0; dim],
            count: 0,
        }
    }

    pub fn dim(&self) -> usize {
        self.sum.len()
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The running sum. // `[dim]`
    pub fn sum(&self) -> &[f64] {
        &self.sum
    }

    /// Adds one `f32` vector (e.g. a pooled activation). // x: `[dim]`
    pub fn push_f32(&mut self, x: &[f32]) -> Result<()> {
        self.check_dim(x.len())?;
        check_finite_f32(x)?;
        self.sum
            .iter_mut()
            .zip(x)
            .for_each(|(s, &v)| *s += v as f64);
        self.count += 1;
        Ok(())
    }

    /// Adds one `f64` vector. // x: `[dim]`
    pub fn push(&mut self, x: &[f64]) -> Result<()> {
        self.check_dim(x.len())?;
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            bail!("value {i} of the pushed vector is {}", x[i]);
        }
        self.sum.iter_mut().zip(x).for_each(|(s, &v)| *s += v);
        self.count += 1;
        Ok(())
    }

    /// Adds one example's window of T rows in the row-weighted mode: each row x_t goes into
    /// the sum as `(1/T) * x_t`, row by row, so the sum gains the window mean without a pooled
    /// vector. The count grows by 1. // rows: `[T * dim]`, T >= 1
    ///
    /// Not bit-identical to pooling first ([`Self::push`] of `(sum_t x_t) / T`): the
    /// roundings differ. Values are not checked: a non-finite row makes the mean non-finite
    /// (which [`crate::alignment::usable_layers`] then drops), as the steering directions
    /// always did.
    pub fn push_rows_weighted(&mut self, rows: &[f32]) -> Result<()> {
        let dim = self.dim();
        if rows.is_empty() || dim == 0 || rows.len() % dim != 0 {
            bail!(
                "{} values are not a whole number (>= 1) of rows of dim {dim}",
                rows.len()
            );
        }
        let w = 1.0 / (rows.len() / dim) as f64;
        for row in rows.chunks_exact(dim) {
            self.sum
                .iter_mut()
                .zip(row)
                .for_each(|(s, &x)| *s += w * x as f64);
        }
        self.count += 1;
        Ok(())
    }

    /// Adds the accumulator of another chunk of the same stream.
    pub fn merge(&mut self, other: &MeanAccumulator) -> Result<()> {
        self.check_dim(other.dim())?;
        self.sum
            .iter_mut()
            .zip(&other.sum)
            .for_each(|(s, &v)| *s += v);
        self.count += other.count;
        Ok(())
    }

    /// Mean of everything pushed; an error before the first push. // `[dim]`
    pub fn mean(&self) -> Result<Vec<f64>> {
        if self.count == 0 {
            bail!("mean of an empty stream (dim {})", self.dim());
        }
        let n = self.count as f64;
        Ok(self.sum.iter().map(|s| s / n).collect())
    }

    fn check_dim(&self, got: usize) -> Result<()> {
        if got != self.dim() {
            bail!(
                "vector of length {got} pushed into a mean accumulator of dim {}",
                self.dim()
            );
        }
        Ok(())
    }
}

fn check_finite_f32(x: &[f32]) -> Result<()> {
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        bail!("value {i} of the pushed vector is {}", x[i]);
    }
    Ok(())
}

/// Per-coordinate running mean and variance (Welford), mergeable (Chan, Golub & LeVeque 1979):
/// for chunks a, b with counts n_a, n_b, delta = mean_b - mean_a, n = n_a + n_b:
/// mean = mean_a + delta n_b / n, M2 = M2_a + M2_b + delta^2 n_a n_b / n.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WelfordAccumulator {
    mean: Vec<f64>, // [dim]
    m2: Vec<f64>,   // [dim] sum of squared deviations from the mean
    count: u64,
}

impl WelfordAccumulator {
    pub fn new(dim: usize) -> Self {
        Self {
            mean: vec![0.0; dim],
            m2: vec![0.0; dim],
            count: 0,
        }
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds one vector. // x: `[dim]`
    pub fn push(&mut self, x: &[f64]) -> Result<()> {
        if x.len() != self.dim() {
            bail!(
                "vector of length {} pushed into a variance accumulator of dim {}",
                x.len(),
                self.dim()
            );
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            bail!("value {i} of the pushed vector is {}", x[i]);
        }
        self.count += 1;
        let n = self.count as f64;
        for ((m, m2), &v) in self.mean.iter_mut().zip(self.m2.iter_mut()).zip(x) {
            let d = v - *m;
            *m += d / n;
            *m2 += d * (v - *m);
        }
        Ok(())
    }

    /// Adds one `f32` vector. // x: `[dim]`
    pub fn push_f32(&mut self, x: &[f32]) -> Result<()> {
        let v: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        self.push(&v)
    }

    /// Combines with the accumulator of another chunk (Chan et al.).
    pub fn merge(&mut self, other: &WelfordAccumulator) -> Result<()> {
        if other.dim() != self.dim() {
            bail!(
                "merging variance accumulators of dims {} and {}",
                self.dim(),
                other.dim()
            );
        }
        if other.count == 0 {
            return Ok(());
        }
        if self.count == 0 {
            *self = other.clone();
            return Ok(());
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        for i in 0..self.dim() {
            let delta = other.mean[i] - self.mean[i];
            self.mean[i] += delta * nb / n;
            self.m2[i] += other.m2[i] + delta * delta * na * nb / n;
        }
        self.count += other.count;
        Ok(())
    }

    /// Mean per coordinate. // `[dim]`
    pub fn mean(&self) -> Result<Vec<f64>> {
        if self.count == 0 {
            bail!("mean of an empty stream (dim {})", self.dim());
        }
        Ok(self.mean.clone())
    }

    /// Unbiased sample variance per coordinate (n - 1 denominator); needs 2 values. // `[dim]`
    pub fn sample_variance(&self) -> Result<Vec<f64>> {
        if self.count < 2 {
            bail!(
                "sample variance needs at least 2 values, have {}",
                self.count
            );
        }
        let d = (self.count - 1) as f64;
        Ok(self.m2.iter().map(|m| m / d).collect())
    }

    /// Population variance per coordinate (n denominator). // `[dim]`
    pub fn population_variance(&self) -> Result<Vec<f64>> {
        if self.count == 0 {
            bail!("variance of an empty stream");
        }
        let d = self.count as f64;
        Ok(self.m2.iter().map(|m| m / d).collect())
    }
}

/// One [`MeanAccumulator`] per layer: the per-layer means mu_l of one model on one dataset.
///
/// Two accumulation modes for an example's window of T rows x_t, equal up to rounding but not
/// in their bits (keep one mode per accumulator; the pinned results depend on it):
/// - **pool then sum**, [`Self::push`]: the caller pools the window (e.g.
///   [`crate::layers::pool_window`]: `z = (sum_t x_t) / T` in f64) and `sum += z`. The study's
///   layer analysis and the benchmark.
/// - **row-weighted sum**, [`Self::push_rows_weighted`]: `sum += (1/T) x_t` for each row in
///   turn. erosion-causal's steering directions and drift scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerMeans {
    layers: Vec<MeanAccumulator>, // [n_layers] of [dim]
}

impl LayerMeans {
    /// `n_layers` accumulators of width `dim` (dim = T*d for flatten pooling, d for mean).
    pub fn new(n_layers: usize, dim: usize) -> Self {
        Self {
            layers: (0..n_layers).map(|_| MeanAccumulator::new(dim)).collect(),
        }
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Adds the pooled vector of one example at `layer`. // x: `[dim]`
    pub fn push(&mut self, layer: usize, x: &[f64]) -> Result<()> {
        self.layer_mut(layer)?
            .push(x)
            .map_err(|e| e.context(format!("layer {layer}")))
    }

    /// Adds one example's window rows at `layer` in the row-weighted mode
    /// ([`MeanAccumulator::push_rows_weighted`]). // rows: `[T * dim]`
    pub fn push_rows_weighted(&mut self, layer: usize, rows: &[f32]) -> Result<()> {
        self.layer_mut(layer)?
            .push_rows_weighted(rows)
            .map_err(|e| e.context(format!("layer {layer}")))
    }

    fn layer_mut(&mut self, layer: usize) -> Result<&mut MeanAccumulator> {
        let n = self.layers.len();
        match self.layers.get_mut(layer) {
            Some(acc) => Ok(acc),
            None => bail!("layer {layer} out of range: accumulating {n} layers"),
        }
    }

    /// Merges another chunk's per-layer accumulators.
    pub fn merge(&mut self, other: &LayerMeans) -> Result<()> {
        if other.n_layers() != self.n_layers() {
            bail!(
                "merging layer means of {} and {} layers",
                self.n_layers(),
                other.n_layers()
            );
        }
        for (l, (a, b)) in self.layers.iter_mut().zip(&other.layers).enumerate() {
            a.merge(b).map_err(|e| e.context(format!("layer {l}")))?;
        }
        Ok(())
    }

    /// Per-layer counts (equal when every example was pushed at every layer).
    pub fn counts(&self) -> Vec<u64> {
        self.layers.iter().map(|a| a.count()).collect()
    }

    /// Per-layer means. // `[n_layers]``[dim]`
    pub fn means(&self) -> Result<Vec<Vec<f64>>> {
        self.layers
            .iter()
            .enumerate()
            .map(|(l, a)| a.mean().map_err(|e| e.context(format!("layer {l}"))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_merge_by_hand() {
        let mut a = MeanAccumulator::new(2);
        a.push_f32(&[1.0, 2.0]).unwrap();
        a.push_f32(&[3.0, 6.0]).unwrap();
        let mut b = MeanAccumulator::new(2);
        b.push(&[5.0, -2.0]).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a.count(), 3);
        assert_eq!(a.mean().unwrap(), vec![3.0, 2.0]);
        assert!(a.push(&[1.0]).is_err());
        assert!(a.push(&[f64::NAN, 1.0]).is_err());
        assert!(MeanAccumulator::new(3).mean().is_err());
    }

    #[test]
    fn welford_matches_two_pass_and_merges() {
        let xs = [
            [1.0, 10.0],
            [2.0, 20.0],
            [4.0, 0.0],
            [7.0, -5.0],
            [1e8 + 1.0, 3.0],
        ];
        let mut whole = WelfordAccumulator::new(2);
        xs.iter().for_each(|x| whole.push(x).unwrap());
        let mut a = WelfordAccumulator::new(2);
        let mut b = WelfordAccumulator::new(2);
        xs[..2].iter().for_each(|x| a.push(x).unwrap());
        xs[2..].iter().for_each(|x| b.push(x).unwrap());
        a.merge(&b).unwrap();
        for j in 0..2 {
            let col: Vec<f64> = xs.iter().map(|x| x[j]).collect();
            let m = col.iter().sum::<f64>() / 5.0;
            let var = col.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / 4.0;
            for acc in [&whole, &a] {
                assert!((acc.mean().unwrap()[j] - m).abs() <= 1e-12 * m.abs().max(1.0));
                assert!((acc.sample_variance().unwrap()[j] - var).abs() <= 1e-10 * var);
            }
        }
    }

    #[test]
    fn the_two_modes_give_the_same_mean_up_to_rounding() {
        // Two examples of 3 rows of dim 2 (row-major).
        let windows: [[f32; 6]; 2] = [
            [0.1, 1.0, 0.2, -3.0, 0.7, 5.5],
            [1.3, 0.0, -0.4, 2.0, 0.9, 0.25],
        ];
        let (mut pooled, mut weighted) = (LayerMeans::new(1, 2), LayerMeans::new(1, 2));
        for w in &windows {
            let z: Vec<f64> = (0..2)
                .map(|j| w.iter().skip(j).step_by(2).map(|&x| x as f64).sum::<f64>() / 3.0)
                .collect();
            pooled.push(0, &z).unwrap();
            weighted.push_rows_weighted(0, w).unwrap();
        }
        // The row-weighted sum, by hand: (1/3) x_t added row by row.
        let mut want = [0.0f64; 2];
        for w in &windows {
            for row in w.chunks(2) {
                want.iter_mut()
                    .zip(row)
                    .for_each(|(s, &x)| *s += (1.0 / 3.0) * x as f64);
            }
        }
        let got = weighted.means().unwrap();
        assert_eq!(got[0], want.iter().map(|s| s / 2.0).collect::<Vec<_>>());
        for (a, b) in got[0].iter().zip(&pooled.means().unwrap()[0]) {
            assert!((a - b).abs() < 1e-12, "{a} {b}");
        }
        assert_eq!(weighted.counts(), vec![2]);
        assert!(weighted.push_rows_weighted(0, &[1.0; 3]).is_err());
        assert!(weighted.push_rows_weighted(0, &[]).is_err());
        assert!(weighted.push_rows_weighted(1, &[1.0; 2]).is_err());
    }

    #[test]
    fn layer_means_name_the_layer() {
        let mut lm = LayerMeans::new(2, 1);
        lm.push(0, &[2.0]).unwrap();
        lm.push(0, &[4.0]).unwrap();
        lm.push(1, &[1.0]).unwrap();
        assert_eq!(lm.means().unwrap(), vec![vec![3.0], vec![1.0]]);
        assert!(lm
            .push(2, &[1.0])
            .unwrap_err()
            .to_string()
            .contains("layer 2"));
        assert!(format!("{:#}", LayerMeans::new(2, 1).means().unwrap_err()).contains("layer 0"));
    }
}
