//! The verdict rule of analysis 4.
//!
//! The study found |cos| = 0.90 between insecure component 1 and toxic component 0 of
//! Qwen2.5-Coder-32B's instruct - base residuals. Our statistic is the largest |cos| of the
//! k x k matrix, against its null distribution over random k-dimensional subspaces of R^dim
//! (the brightest cell of a heatmap of random directions):
//! - above chance: observed > the null's 95th percentile and Monte Carlo p < 0.05;
//! - large: observed >= 0.5.
//!
//! Reproduced: above chance and large. Partly: above chance, small. NotReproduced: not above
//! chance.

use erosion_analysis::subspace::NullComparison;
use erosion_report::html::Verdict;

/// Significance level of the random-subspace test.
pub(crate) const ALPHA: f64 = 0.05;
/// A shared direction counts as large from this |cos| on.
pub(crate) const LARGE_COS: f64 = 0.5;

pub(crate) fn shared_direction_verdict(max_abs_cos: &NullComparison) -> Verdict {
    let above_chance = max_abs_cos.observed > max_abs_cos.null_p95 && max_abs_cos.p_value < ALPHA;
    if !above_chance {
        Verdict::NotReproduced
    } else if max_abs_cos.observed >= LARGE_COS {
        Verdict::Reproduced
    } else {
        Verdict::Partly
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erosion_analysis::matrix::Matrix;
    use erosion_analysis::subspace::random_subspace_baseline;

    fn null(observed: f64, p95: f64, p: f64) -> NullComparison {
        NullComparison {
            observed,
            null_mean: p95 / 2.0,
            null_p95: p95,
            p_value: p,
        }
    }

    #[test]
    fn rule_by_hand() {
        // The study's 0.90 against a small null.
        assert_eq!(
            shared_direction_verdict(&null(0.90, 0.07, 0.0005)),
            Verdict::Reproduced
        );
        // The prototype organism: 0.48 against a 95th percentile of 0.30 (docs/organism.md).
        assert_eq!(
            shared_direction_verdict(&null(0.48, 0.30, 0.01)),
            Verdict::Partly
        );
        assert_eq!(
            shared_direction_verdict(&null(0.5, 0.30, 0.01)),
            Verdict::Reproduced
        );
        // Large but not above chance (a tiny space): not reproduced.
        assert_eq!(
            shared_direction_verdict(&null(0.8, 0.85, 0.09)),
            Verdict::NotReproduced
        );
        // Above the 95th percentile but p not below 0.05 (ties at the percentile).
        assert_eq!(
            shared_direction_verdict(&null(0.6, 0.59, 0.05)),
            Verdict::NotReproduced
        );
    }

    /// Through the real baseline: in R^512 with k = 4, random subspaces rarely give a |cos| of
    /// 0.3 (each entry has sd 1/sqrt(512) = 0.044; the 95th percentile of the largest of 16 is ~0.13), so 0.9 is reproduced, 0.3 partly, 0.1 not.
    #[test]
    fn rule_on_the_random_subspace_baseline() {
        let observed = |c: f64| {
            let mut m = Matrix::zeros(4, 4);
            m.set(1, 0, c);
            m
        };
        let v = |c| {
            shared_direction_verdict(
                &random_subspace_baseline(&observed(c), 512, 500, 7)
                    .unwrap()
                    .max_abs_cos,
            )
        };
        assert_eq!(v(0.9), Verdict::Reproduced);
        assert_eq!(v(0.3), Verdict::Partly);
        assert_eq!(v(0.1), Verdict::NotReproduced);
    }
}
