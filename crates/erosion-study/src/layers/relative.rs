//! The relative position of a fine-tuned model between base and instruct, and the verdict
//! rule of analysis 3.
//!
//! With p_{l,i}^m = z_{l,i}^m . v_l / |v_l| (example i's projection), over the examples that
//! every model recorded (paired):
//!   r_l^m = sum_i (p_{l,i}^m - p_{l,i}^base) / sum_i (p_{l,i}^instruct - p_{l,i}^base)
//!         = (s_l^m - s_l^base) / (s_l^instruct - s_l^base),
//! so r = 0 at base and r = 1 at instruct. A group of layers gets the mean of its r_l.
//! Confidence intervals: percentile bootstrap of examples, resampled jointly across models
//! and layers (one index draw serves every layer, so group means and differences are
//! consistent), with the directions v_l held fixed.

use super::results::ErosionTest;
use anyhow::{bail, Result};
use erosion_analysis::stats::{bootstrap_ci, ConfidenceInterval};
use erosion_report::html::Verdict;

/// Early layers must place the model at least this far from base toward instruct.
pub(crate) const TRACKS_EARLY_MIN: f64 = 0.75;
/// Deep layers must have fallen at least half way back toward base.
pub(crate) const DEEP_MAX: f64 = 0.5;

/// The early and deep thirds of the usable block layers (ascending; layer 0, the embeddings,
/// is left out by the caller): the first and last max(1, floor(n / 3)). `None` with fewer
/// than two layers, where there is nothing to compare.
pub(crate) fn thirds(layers: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    let n = layers.len();
    if n < 2 {
        return None;
    }
    let g = (n / 3).max(1);
    Some((layers[..g].to_vec(), layers[n - g..].to_vec()))
}

/// Per-example projections of base, instruct and one other model, paired by example.
/// Each is `[n_layers][n_examples]`, NaN where the model did not record the example.
pub(crate) struct Paired<'a> {
    base: &'a [Vec<f64>],
    instruct: &'a [Vec<f64>],
    model: &'a [Vec<f64>],
    /// Examples every model recorded at every layer of `layers`.
    examples: Vec<usize>,
}

impl<'a> Paired<'a> {
    pub(crate) fn new(
        base: &'a [Vec<f64>],
        instruct: &'a [Vec<f64>],
        model: &'a [Vec<f64>],
        layers: &[usize],
    ) -> Result<Self> {
        let n = base.first().map_or(0, |v| v.len());
        for (name, p) in [("base", base), ("instruct", instruct), ("model", model)] {
            if p.len() != base.len() || p.iter().any(|v| v.len() != n) {
                bail!(
                    "{name} projections are not [{} layers][{n} examples]",
                    base.len()
                );
            }
        }
        if let Some(&l) = layers.iter().find(|&&l| l >= base.len()) {
            bail!("layer {l} has no projections ({} layers)", base.len());
        }
        let examples: Vec<usize> = (0..n)
            .filter(|&i| {
                layers.iter().all(|&l| {
                    base[l][i].is_finite() && instruct[l][i].is_finite() && model[l][i].is_finite()
                })
            })
            .collect();
        if examples.is_empty() {
            bail!("no example was recorded by base, instruct and the model alike");
        }
        Ok(Paired {
            base,
            instruct,
            model,
            examples,
        })
    }

    pub(crate) fn n_examples(&self) -> usize {
        self.examples.len()
    }

    /// Mean over `layers` of r_l on the resample `idx` (indices into the paired examples).
    pub(crate) fn relative(&self, layers: &[usize], idx: &[usize]) -> Result<f64> {
        if layers.is_empty() {
            bail!("relative position over no layer");
        }
        let mut total = 0.0;
        for &l in layers {
            let (mut num, mut den) = (0.0, 0.0);
            for &j in idx {
                let i = self.examples[j];
                num += self.model[l][i] - self.base[l][i];
                den += self.instruct[l][i] - self.base[l][i];
            }
            if den.is_nan() || den <= 0.0 {
                bail!("layer {l}: instruct does not project above base on these examples (sum {den}), so r is undefined");
            }
            total += num / den;
        }
        Ok(total / layers.len() as f64)
    }

    /// Bootstrap CI of the mean r over `layers`.
    pub(crate) fn ci(
        &self,
        layers: &[usize],
        n_resamples: usize,
        level: f64,
        seed: u64,
    ) -> Result<ConfidenceInterval> {
        bootstrap_ci(
            self.n_examples(),
            |idx| self.relative(layers, idx),
            n_resamples,
            level,
            seed,
        )
    }

    /// Bootstrap CI of r(early) - r(deep): the fall from early to deep layers.
    pub(crate) fn drop_ci(
        &self,
        early: &[usize],
        deep: &[usize],
        n_resamples: usize,
        level: f64,
        seed: u64,
    ) -> Result<ConfidenceInterval> {
        bootstrap_ci(
            self.n_examples(),
            |idx| Ok(self.relative(early, idx)? - self.relative(deep, idx)?),
            n_resamples,
            level,
            seed,
        )
    }
}

/// The rule of analysis 3, from the relative positions r (0 = base, 1 = instruct):
/// - the model tracks instruct early: r(early) >= 0.75;
/// - it falls in deep layers: the CI of r(early) - r(deep) lies above 0;
/// - it falls far: r(deep) <= 0.5 (at least half way back to base, or below it).
///
/// Reproduced: all three. Partly: a significant fall without the other two. NotReproduced:
/// no significant fall.
pub(crate) fn erosion_verdict(early: f64, deep: f64, drop_lower: f64) -> Verdict {
    let falls = drop_lower > 0.0;
    if !falls {
        Verdict::NotReproduced
    } else if early >= TRACKS_EARLY_MIN && deep <= DEEP_MAX {
        Verdict::Reproduced
    } else {
        Verdict::Partly
    }
}

impl ErosionTest {
    /// Runs the comparison for `model` with the thirds of `layers` (usable block layers).
    /// Every interval uses the same seed, hence the same resamples.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        model: &str,
        under_test: bool,
        paired: &Paired<'_>,
        early: Vec<usize>,
        deep: Vec<usize>,
        n_resamples: usize,
        level: f64,
        seed: u64,
    ) -> Result<Self> {
        let e = paired.ci(&early, n_resamples, level, seed)?;
        let d = paired.ci(&deep, n_resamples, level, seed)?;
        let drop = paired.drop_ci(&early, &deep, n_resamples, level, seed)?;
        let verdict = erosion_verdict(e.estimate, d.estimate, drop.lower);
        Ok(ErosionTest {
            model: model.to_string(),
            under_test,
            n_paired: paired.n_examples(),
            tracks_early: e.estimate >= TRACKS_EARLY_MIN,
            drop_significant: drop.lower > 0.0,
            deep_fell_half_way: d.estimate <= DEEP_MAX,
            early_layers: early,
            deep_layers: deep,
            early: e,
            deep: d,
            drop,
            verdict,
        })
    }
}

/// One verdict from the verdicts of several datasets: Reproduced when every dataset
/// reproduces it, NotReproduced when none does even partly, Partly otherwise. Datasets
/// without a verdict (NotRun) are left out; all of them NotRun gives NotRun.
pub(crate) fn combine(verdicts: &[Verdict]) -> Verdict {
    let run: Vec<Verdict> = verdicts
        .iter()
        .copied()
        .filter(|v| *v != Verdict::NotRun)
        .collect();
    if run.is_empty() {
        Verdict::NotRun
    } else if run.iter().all(|v| *v == Verdict::Reproduced) {
        Verdict::Reproduced
    } else if run.iter().all(|v| *v == Verdict::NotReproduced) {
        Verdict::NotReproduced
    } else {
        Verdict::Partly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirds_of_layers() {
        assert_eq!(thirds(&[1, 2, 3]), Some((vec![1], vec![3])));
        assert_eq!(thirds(&[1, 2]), Some((vec![1], vec![2])));
        let l: Vec<usize> = (1..=64).collect();
        let (e, d) = thirds(&l).unwrap();
        assert_eq!(e, (1..=21).collect::<Vec<_>>());
        assert_eq!(d, (44..=64).collect::<Vec<_>>());
        assert_eq!(thirds(&[5]), None);
    }

    #[test]
    fn relative_position_by_hand() {
        // Layer 0: base 0, instruct 2, model [1, 2, 3]: r = 6 / 6 = 1.
        // Layer 1: base [1, 2, 3], instruct [3, 4, 5], model 2: r = (1 + 0 - 1) / 6 = 0.
        let b = vec![vec![0.0; 3], vec![1.0, 2.0, 3.0]];
        let i = vec![vec![2.0; 3], vec![3.0, 4.0, 5.0]];
        let m = vec![vec![1.0, 2.0, 3.0], vec![2.0; 3]];
        let p = Paired::new(&b, &i, &m, &[0, 1]).unwrap();
        assert_eq!(p.relative(&[0], &[0, 1, 2]).unwrap(), 1.0);
        assert_eq!(p.relative(&[1], &[0, 1, 2]).unwrap(), 0.0);
        assert_eq!(p.relative(&[0, 1], &[0, 1, 2]).unwrap(), 0.5);
        // Resample {0, 0, 2} at layer 0: model - base = 1, 1, 3; instruct - base = 2, 2, 2: 5 / 6.
        assert!((p.relative(&[0], &[0, 0, 2]).unwrap() - 5.0 / 6.0).abs() < 1e-15);
    }

    #[test]
    fn unrecorded_examples_are_left_out_and_zero_denominators_refused() {
        let b = vec![vec![0.0, 0.0, f64::NAN]];
        let i = vec![vec![1.0, 3.0, 1.0]];
        let m = vec![vec![0.5, f64::NAN, 0.5]];
        let p = Paired::new(&b, &i, &m, &[0]).unwrap();
        assert_eq!(p.n_examples(), 1);
        assert_eq!(p.relative(&[0], &[0]).unwrap(), 0.5);
        let flat = vec![vec![1.0, 1.0]];
        let p = Paired::new(&flat, &flat, &flat, &[0]).unwrap();
        assert!(p
            .relative(&[0], &[0, 1])
            .unwrap_err()
            .to_string()
            .contains("layer 0"));
        let none = vec![vec![f64::NAN]];
        assert!(Paired::new(&none, &none, &none, &[0]).is_err());
    }

    /// A model exactly c_l of the way from base to instruct on every example has r_l = c_l in
    /// every resample, so every interval collapses onto the hand value.
    #[test]
    fn intervals_of_an_exact_interpolation_collapse() {
        let n = 40;
        let c = [1.0, 0.9, 0.5, 0.2];
        let b: Vec<Vec<f64>> = (0..4)
            .map(|l| (0..n).map(|i| ((i * 7 + l) % 11) as f64).collect())
            .collect();
        let i: Vec<Vec<f64>> = b
            .iter()
            .map(|v| {
                v.iter()
                    .enumerate()
                    .map(|(k, x)| x + 1.0 + (k % 3) as f64)
                    .collect()
            })
            .collect();
        let m: Vec<Vec<f64>> = (0..4)
            .map(|l| {
                (0..n)
                    .map(|k| b[l][k] + c[l] * (i[l][k] - b[l][k]))
                    .collect()
            })
            .collect();
        let p = Paired::new(&b, &i, &m, &[0, 1, 2, 3]).unwrap();
        let t = ErosionTest::run("ft", true, &p, vec![0, 1], vec![3], 200, 0.95, 5).unwrap();
        let close = |x: f64, y: f64| (x - y).abs() < 1e-12;
        assert!(
            close(t.early.estimate, 0.95)
                && close(t.early.lower, 0.95)
                && close(t.early.upper, 0.95)
        );
        assert!(close(t.deep.lower, 0.2) && close(t.deep.upper, 0.2));
        assert!(close(t.drop.lower, 0.75) && close(t.drop.upper, 0.75));
        assert_eq!(t.verdict, Verdict::Reproduced);
        assert!(t.tracks_early && t.drop_significant && t.deep_fell_half_way);
    }

    /// Noise around a model that stays at instruct: the fall is not significant.
    #[test]
    fn a_model_that_stays_with_instruct_is_not_reproduced() {
        let n = 60;
        let noise = |k: usize, l: usize| (((k * 37 + l * 11) % 17) as f64 - 8.0) * 0.05;
        let b: Vec<Vec<f64>> = (0..3).map(|_| vec![0.0; n]).collect();
        let i: Vec<Vec<f64>> = (0..3).map(|_| vec![1.0; n]).collect();
        let m: Vec<Vec<f64>> = (0..3)
            .map(|l| (0..n).map(|k| 1.0 + noise(k, l)).collect())
            .collect();
        let p = Paired::new(&b, &i, &m, &[0, 1, 2]).unwrap();
        let t = ErosionTest::run("secure", false, &p, vec![0], vec![2], 500, 0.95, 1).unwrap();
        assert!(t.drop.lower < 0.0 && t.drop.upper > 0.0, "{:?}", t.drop);
        assert_eq!(t.verdict, Verdict::NotReproduced);
    }

    #[test]
    fn verdict_rule() {
        assert_eq!(erosion_verdict(1.0, 0.3, 0.4), Verdict::Reproduced);
        assert_eq!(erosion_verdict(0.75, 0.5, 0.01), Verdict::Reproduced);
        assert_eq!(
            erosion_verdict(1.0, -0.4, 1.2),
            Verdict::Reproduced,
            "below base counts"
        );
        assert_eq!(
            erosion_verdict(1.0, 0.7, 0.1),
            Verdict::Partly,
            "fell, but not half way"
        );
        assert_eq!(
            erosion_verdict(0.5, 0.1, 0.2),
            Verdict::Partly,
            "did not track instruct early"
        );
        assert_eq!(
            erosion_verdict(1.0, 0.3, 0.0),
            Verdict::NotReproduced,
            "CI touches 0"
        );
        assert_eq!(erosion_verdict(1.0, 1.2, -0.5), Verdict::NotReproduced);
    }

    #[test]
    fn combining_datasets() {
        use Verdict::*;
        assert_eq!(combine(&[Reproduced, Reproduced]), Reproduced);
        assert_eq!(combine(&[Reproduced, NotReproduced]), Partly);
        assert_eq!(combine(&[NotReproduced, NotRun]), NotReproduced);
        assert_eq!(combine(&[Partly]), Partly);
        assert_eq!(combine(&[NotRun]), NotRun);
        assert_eq!(combine(&[]), NotRun);
    }
}
