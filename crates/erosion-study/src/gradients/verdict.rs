//! Analysis 2's verdict, read from the gradients' quadrants.

use erosion_analysis::quadrants::QuadrantSummary;
use erosion_report::html::Verdict;

/// Significance level of the permutation tests in the verdict.
pub(crate) const ALPHA: f64 = 0.05;

/// The verdict rule of analysis 2, on the gradient cosines (the study: across-dataset cosines
/// are negative, the two framings push the weights in opposite directions):
/// - **Reproduced**: within - across > 0 with permutation p < [`ALPHA`], and the mean across
///   cosine below 0 by more than `margin` (the sketch's guaranteed cosine error; 0 when exact);
/// - **Partly**: within - across > 0 with p < ALPHA, but the across mean is not below -margin;
/// - **NotReproduced**: otherwise.
pub(crate) fn gradient_verdict(q: &QuadrantSummary, margin: f64) -> (Verdict, String) {
    let significant = q.within_minus_across > 0.0 && q.p_value < ALPHA;
    let sums = format!(
        "mean cosine within A {:.4}, within B {:.4}, across {:.4}; within \u{2212} across {:.4}, permutation p = {:.4}",
        q.mean_within_a, q.mean_within_b, q.mean_across, q.within_minus_across, q.p_value
    );
    let bound = if margin > 0.0 {
        format!(" (sketch error bound {margin:.3})")
    } else {
        String::new()
    };
    if significant && q.mean_across + margin < 0.0 {
        (
            Verdict::Reproduced,
            format!("{sums}: across < within (p < {ALPHA}) and the across mean is negative{bound}"),
        )
    } else if significant {
        (
            Verdict::Partly,
            format!(
                "{sums}: across < within (p < {ALPHA}) but the across mean is not negative{bound}"
            ),
        )
    } else {
        (
            Verdict::NotReproduced,
            format!("{sums}: across is not significantly below within at {ALPHA}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradients::compute::check_groups;
    use erosion_analysis::cosine::cosine_matrix;
    use erosion_analysis::matrix::Matrix;
    use erosion_analysis::quadrants::quadrant_summary;
    use erosion_analysis::stats::Alternative;

    fn q(within: f64, across: f64, p: f64) -> QuadrantSummary {
        QuadrantSummary {
            n_a: 3,
            n_b: 3,
            mean_within_a: within,
            mean_within_b: within,
            mean_across: across,
            within_minus_across: within - across,
            p_value: p,
            alternative: Alternative::Greater,
            n_permutations: 99,
            seed: 0,
            null_mean: 0.0,
            null_sd: 0.1,
            null_p95: 0.2,
        }
    }

    #[test]
    fn verdict_rule() {
        assert_eq!(
            gradient_verdict(&q(0.3, -0.2, 0.01), 0.0).0,
            Verdict::Reproduced
        );
        // Across below within but positive: partly.
        assert_eq!(gradient_verdict(&q(0.5, 0.1, 0.01), 0.0).0, Verdict::Partly);
        // Negative, but not beyond the sketch's error bound: partly.
        assert_eq!(
            gradient_verdict(&q(0.3, -0.05, 0.01), 0.1).0,
            Verdict::Partly
        );
        assert_eq!(
            gradient_verdict(&q(0.3, -0.15, 0.01), 0.1).0,
            Verdict::Reproduced
        );
        // Not significant: not reproduced, whatever the sign.
        assert_eq!(
            gradient_verdict(&q(0.3, -0.2, 0.2), 0.0).0,
            Verdict::NotReproduced
        );
        // Across above within: not reproduced.
        assert_eq!(
            gradient_verdict(&q(-0.1, 0.2, 0.01), 0.0).0,
            Verdict::NotReproduced
        );
        let (_, why) = gradient_verdict(&q(0.3, -0.2, 0.01), 0.0);
        assert!(why.contains("-0.2000") && why.contains("0.5000"), "{why}");
    }

    #[test]
    fn planted_opposing_signals_are_read_as_reproduced() {
        // Group A's vectors point along +e1, group B's along -e1, each with a small distinct
        // second component: within cosines ~ +1, across ~ -1.
        let rows: Vec<Vec<f64>> = (0..12)
            .map(|i| {
                let s = if i < 6 { 1.0 } else { -1.0 };
                vec![s, 0.02 * i as f64, 0.05]
            })
            .collect();
        let m = cosine_matrix(&Matrix::from_rows(&rows).unwrap(), false).unwrap();
        let summary = quadrant_summary(&m, 6, 199, 5).unwrap();
        assert!(summary.mean_across < -0.9 && summary.mean_within_a > 0.9);
        assert_eq!(gradient_verdict(&summary, 0.0).0, Verdict::Reproduced);
        assert!(check_groups("x", 1, 4).is_err() && check_groups("x", 2, 2).is_ok());
    }
}
