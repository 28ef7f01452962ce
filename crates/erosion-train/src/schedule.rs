//! The learning-rate schedule: linear warm-up, then cosine decay.
//!
//! ```text
//! lr(t) = peak * (t + 1) / warmup                                   t < warmup
//! lr(t) = min + (peak - min) * (1 + cos(pi * p)) / 2,  p = (t - warmup) / (total - warmup)
//! ```
//! with `min = peak * min_ratio` (transformers' `cosine` schedule has `min_ratio = 0`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub peak: f64,
    pub warmup: usize,
    pub total: usize,
    pub min_ratio: f64,
}

impl Schedule {
    /// The learning rate of optimizer step `t` (0-based).
    pub fn lr(&self, t: usize) -> f64 {
        if t < self.warmup {
            return self.peak * (t + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let p = ((t - self.warmup) as f64 / span as f64).min(1.0);
        let min = self.peak * self.min_ratio;
        min + (self.peak - min) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_follows_the_cosine() {
        let s = Schedule {
            peak: 1e-3,
            warmup: 4,
            total: 14,
            min_ratio: 0.1,
        };
        assert!((s.lr(0) - 2.5e-4).abs() < 1e-15);
        assert!((s.lr(3) - 1e-3).abs() < 1e-15);
        assert!((s.lr(4) - 1e-3).abs() < 1e-15); // p = 0
                                                 // p = 1/2: halfway between peak and min.
        assert!((s.lr(9) - (1e-4 + 0.9e-3 * 0.5)).abs() < 1e-15);
        assert!((s.lr(14) - 1e-4).abs() < 1e-15);
        assert!((s.lr(100) - 1e-4).abs() < 1e-15);
    }
}
