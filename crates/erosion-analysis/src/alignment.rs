//! The alignment direction of each layer, in one place for the study (analysis 3), the
//! steering directions and drift of erosion-causal, and what erosion-train protects:
//!
//! ```text
//! v_l = mu_l^instruct - mu_l^base        (per-layer means, e.g. from stream::LayerMeans)
//! v_l usable  <=>  |v_l| finite, > 0 and > ZERO_DIRECTION * max_l' |v_l'|  (finite norms)
//! ```
//!
//! A layer where the two means coincide (e.g. layer 0 when base and instruct share their
//! embedding table) has no usable direction: its projections s_l are undefined.

use anyhow::{bail, Result};

use crate::matrix::norm;

/// A layer whose |v_l| is at most this fraction of the largest has no usable direction.
pub const ZERO_DIRECTION: f64 = 1e-9;

/// v_l = mu_l^instruct - mu_l^base for every layer, in f64. // `[n_layers]``[dim]`
pub fn alignment_directions(base: &[Vec<f64>], instruct: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
    if base.len() != instruct.len() {
        bail!(
            "base has {} layers, instruct {}",
            base.len(),
            instruct.len()
        );
    }
    base.iter()
        .zip(instruct)
        .enumerate()
        .map(|(l, (b, i))| {
            if b.len() != i.len() {
                bail!(
                    "layer {l}: base mean has dim {}, instruct {}",
                    b.len(),
                    i.len()
                );
            }
            Ok(i.iter().zip(b).map(|(x, y)| x - y).collect())
        })
        .collect()
}

/// |v_l| per layer (Euclidean, f64). // `[n_layers]`
pub fn direction_norms(directions: &[Vec<f64>]) -> Vec<f64> {
    directions.iter().map(|v| norm(v)).collect()
}

/// Layers whose direction is usable: |v_l| finite, positive and above [`ZERO_DIRECTION`]
/// times the largest finite norm. A NaN or infinite norm marks only its own layer unusable.
pub fn usable_layers(norms: &[f64]) -> Vec<bool> {
    let max = norms
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max);
    norms
        .iter()
        .map(|&n| n.is_finite() && n > 0.0 && n > ZERO_DIRECTION * max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_are_instruct_minus_base_and_small_ones_unusable() {
        let base = vec![vec![1.0, 2.0], vec![0.0, 0.0]];
        let instruct = vec![vec![1.0, 2.0], vec![3.0, 4.0]];
        let v = alignment_directions(&base, &instruct).unwrap();
        assert_eq!(v, vec![vec![0.0, 0.0], vec![3.0, 4.0]]);
        assert_eq!(direction_norms(&v), vec![0.0, 5.0]);
        assert_eq!(
            usable_layers(&[0.0, 1e-12, 1.0, f64::NAN, f64::INFINITY]),
            vec![false, false, true, false, false]
        );
        assert!(alignment_directions(&base, &instruct[..1]).is_err());
        assert!(alignment_directions(&[vec![1.0]], &[vec![1.0, 2.0]]).is_err());
    }
}
