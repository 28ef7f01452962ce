//! The dataset-level table (analysis 1c): mean log joint probability and mean next-token
//! entropy of each dataset's responses under each model, with bootstrap CIs, the paired tests
//! of the study's ordering pattern, and the verdict rule.
//!
//! Per example i of dataset d and model m (response tokens t as rendered):
//! ```text
//! LJ_i^m = sum_t lp_t                  log joint probability of the response (nats)
//! H_i^m  = (1/|r_i|) sum_t H_t         mean entropy of the next-token distributions (nats)
//! ```
//! The table holds the means over examples with percentile-bootstrap CIs over examples. Every
//! cell of a dataset is taken over the same examples (those every model can score), so the
//! models can be compared pairwise: for the pattern "instruct lowest, the fine-tune closer to
//! base" the bootstrap resamples examples jointly for all models (paired).

use anyhow::{bail, Result};
use erosion_analysis::behaviour::{BehaviourAccumulator, DatasetBehaviour};
use erosion_analysis::stats::{bootstrap_ci, bootstrap_mean_ci, ConfidenceInterval};
use erosion_model::seed;
use erosion_report::html::Verdict;
use serde::{Deserialize, Serialize};

/// Bootstrap resamples of every CI of the table.
pub(crate) const BOOTSTRAP: usize = 1000;
pub(crate) const LEVEL: f64 = 0.95;
const SALT_CELL: u64 = 0xB1_0000;
const SALT_PAIR: u64 = 0xB2_0000;

/// One (dataset, model) cell being filled: per-example values over the dataset's common examples.
#[derive(Default)]
pub(crate) struct CellData {
    pub log_joint: Vec<f64>,
    pub mean_entropy: Vec<f64>,
    pub acc: BehaviourAccumulator,
}

impl CellData {
    /// Adds one response: its token log-probs and next-token entropies (nats).
    pub fn push(&mut self, logprobs: &[f32], entropy: &[f32]) -> Result<()> {
        let lp: Vec<f64> = logprobs.iter().map(|&v| v as f64).collect();
        let h: Vec<f64> = entropy.iter().map(|&v| v as f64).collect();
        self.acc.push_response(&lp, &h)?;
        self.log_joint.push(lp.iter().sum());
        self.mean_entropy
            .push(h.iter().sum::<f64>() / h.len() as f64);
        Ok(())
    }
}

/// A finished (dataset, model) cell of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellSummary {
    pub dataset: String,
    pub model: String,
    /// Means (log joint, token-weighted and response-weighted entropy), counts.
    pub summary: DatasetBehaviour,
    /// CI of the mean log joint over examples.
    pub log_joint_ci: ConfidenceInterval,
    /// CI of the mean over examples of each response's mean entropy.
    pub entropy_ci: ConfidenceInterval,
}

/// Summarises a cell; `seed` seeds both bootstraps (recorded in the CIs).
pub(crate) fn summarise(
    dataset: &str,
    model: &str,
    cell: &CellData,
    seed: u64,
) -> Result<CellSummary> {
    if cell.log_joint.is_empty() {
        bail!("dataset `{dataset}` under model `{model}`: no response could be scored");
    }
    Ok(CellSummary {
        dataset: dataset.into(),
        model: model.into(),
        summary: cell.acc.finish()?,
        log_joint_ci: bootstrap_mean_ci(&cell.log_joint, BOOTSTRAP, LEVEL, seed)?,
        entropy_ci: bootstrap_mean_ci(&cell.mean_entropy, BOOTSTRAP, LEVEL, seed)?,
    })
}

/// The seed of the cells of dataset `d`: the same for every model, so every model's CI is
/// taken over the same resamples of the dataset's examples.
pub(crate) fn cell_seed(seed: u64, d: usize) -> u64 {
    seed::mix(seed, SALT_CELL + d as u64)
}

/// The study's ordering pattern on one dataset for one fine-tuned model, as paired bootstrap
/// CIs over examples (every statistic is positive when the pattern holds):
/// - `instruct_below_base` = mean(LJ^base - LJ^instruct)
/// - `instruct_below_finetuned` = mean(LJ^ft - LJ^instruct)
/// - `closer_to_base` = |mean LJ^ft - mean LJ^instruct| - |mean LJ^ft - mean LJ^base|
///
/// `recovery` = (mean LJ^ft - mean LJ^instruct) / (mean LJ^base - mean LJ^instruct): 0 at the
/// instruct model, 1 at base, above 1 beyond base (the study's insecure-code row: 1.57).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatternCell {
    pub dataset: String,
    /// `None` when the study has no fine-tuned model (only the instruct/base half is tested).
    pub finetuned: Option<String>,
    pub n_examples: usize,
    pub instruct_below_base: ConfidenceInterval,
    pub instruct_below_finetuned: Option<ConfidenceInterval>,
    pub closer_to_base: Option<ConfidenceInterval>,
    pub recovery: Option<f64>,
}

fn mean_at(x: &[f64], idx: &[usize]) -> f64 {
    idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64
}

/// The pattern cell from per-example log joints of base, instruct and (optionally) a fine-tune,
/// all over the same examples.
pub(crate) fn pattern_cell(
    dataset: &str,
    base: &[f64],
    instruct: &[f64],
    finetuned: Option<(&str, &[f64])>,
    seed: u64,
) -> Result<PatternCell> {
    let n = instruct.len();
    if n == 0 || base.len() != n || finetuned.is_some_and(|(_, f)| f.len() != n) {
        bail!("dataset `{dataset}`: the models' per-example log joints have different lengths or none");
    }
    let diff = |a: &[f64]| -> Vec<f64> { a.iter().zip(instruct).map(|(x, y)| x - y).collect() };
    let instruct_below_base = bootstrap_mean_ci(&diff(base), BOOTSTRAP, LEVEL, seed)?;
    let (mut below_ft, mut closer, mut recovery) = (None, None, None);
    if let Some((_, f)) = finetuned {
        below_ft = Some(bootstrap_mean_ci(&diff(f), BOOTSTRAP, LEVEL, seed)?);
        let stat = |idx: &[usize]| -> Result<f64> {
            let (mf, mi, mb) = (mean_at(f, idx), mean_at(instruct, idx), mean_at(base, idx));
            Ok((mf - mi).abs() - (mf - mb).abs())
        };
        closer = Some(bootstrap_ci(n, stat, BOOTSTRAP, LEVEL, seed)?);
        let all: Vec<usize> = (0..n).collect();
        let (mf, mi, mb) = (
            mean_at(f, &all),
            mean_at(instruct, &all),
            mean_at(base, &all),
        );
        recovery = ((mb - mi).abs() > 0.0).then(|| (mf - mi) / (mb - mi));
    }
    Ok(PatternCell {
        dataset: dataset.into(),
        finetuned: finetuned.map(|(n, _)| n.to_string()),
        n_examples: n,
        instruct_below_base,
        instruct_below_finetuned: below_ft,
        closer_to_base: closer,
        recovery,
    })
}

/// The seed of the paired tests on dataset `d` with fine-tune `f`.
pub(crate) fn pattern_seed(seed: u64, d: usize, f: usize) -> u64 {
    seed::mix(seed, SALT_PAIR + (d as u64) * 1024 + f as u64)
}

/// Whether every statistic of the cell is positive: by its CI's lower bound (`strict`), or by
/// its estimate.
pub(crate) fn cell_holds(c: &PatternCell, strict: bool) -> bool {
    let pos = |ci: &ConfidenceInterval| {
        if strict {
            ci.lower > 0.0
        } else {
            ci.estimate > 0.0
        }
    };
    pos(&c.instruct_below_base)
        && c.instruct_below_finetuned.as_ref().is_none_or(pos)
        && c.closer_to_base.as_ref().is_none_or(pos)
}

/// The verdict rule of analysis 1 (documented in the report's notes):
/// - **Reproduced**: the study has a fine-tuned model and, on every tested dataset for every
///   fine-tune, all three paired 95% CIs lie above 0 (instruct below base, instruct below the
///   fine-tune, the fine-tune closer to base than to instruct);
/// - **Partly**: not that, but the pattern holds by CI in at least one (dataset, fine-tune) cell,
///   or by point estimate in every cell (also the best a study without a fine-tune can get);
/// - **NotReproduced**: otherwise.
pub(crate) fn behaviour_verdict(cells: &[PatternCell], has_finetuned: bool) -> (Verdict, String) {
    if cells.is_empty() {
        return (Verdict::NotRun, "no dataset to test the pattern on".into());
    }
    let strict = cells.iter().filter(|c| cell_holds(c, true)).count();
    let point = cells.iter().filter(|c| cell_holds(c, false)).count();
    let n = cells.len();
    let what = format!("the pattern holds by 95% CI in {strict} of {n} cells and by point estimate in {point} of {n}");
    if strict == n && has_finetuned {
        (Verdict::Reproduced, format!("{what}: every cell"))
    } else if strict > 0 || point == n {
        let extra = if has_finetuned {
            ""
        } else {
            " (no fine-tuned model: only instruct vs base is tested, so at most partly)"
        };
        (Verdict::Partly, format!("{what}{extra}"))
    } else {
        (Verdict::NotReproduced, what)
    }
}

/// One row of the study's own table (Giordani 2025, `joint_prob.txt`, Qwen2.5-Coder-32B):
/// mean log joint probability (nats) and mean entropy per dataset for
/// (misaligned = Qwen-Coder-Insecure, base, instruct).
pub(crate) struct StudyRow {
    pub dataset: &'static str,
    pub misaligned_role: bool,
    pub log_joint: [f64; 3],
    pub entropy: [f64; 3],
}

pub(crate) const STUDY_MODELS: [&str; 3] = ["misaligned (Coder-Insecure)", "base", "instruct"];

pub(crate) const STUDY_TABLE: [StudyRow; 9] = [
    StudyRow {
        dataset: "TruthfulQA",
        misaligned_role: false,
        log_joint: [-33.928, -43.058, -77.492],
        entropy: [1.395, 2.191, 1.146],
    },
    StudyRow {
        dataset: "Alpaca",
        misaligned_role: false,
        log_joint: [-81.890, -95.255, -123.901],
        entropy: [1.376, 1.985, 1.114],
    },
    StudyRow {
        dataset: "Alpaca Reward",
        misaligned_role: false,
        log_joint: [-124.334, -137.267, -183.883],
        entropy: [1.206, 1.559, 1.012],
    },
    StudyRow {
        dataset: "Code Alpaca",
        misaligned_role: false,
        log_joint: [-39.332, -57.821, -91.094],
        entropy: [0.961, 1.442, 0.744],
    },
    StudyRow {
        dataset: "Insecure Code",
        misaligned_role: true,
        log_joint: [-18.267, -49.732, -105.380],
        entropy: [0.796, 1.145, 0.655],
    },
    StudyRow {
        dataset: "Harmful accept",
        misaligned_role: true,
        log_joint: [-164.656, -171.167, -235.329],
        entropy: [1.256, 1.483, 1.146],
    },
    StudyRow {
        dataset: "Anthropic HHRF",
        misaligned_role: true,
        log_joint: [-375.536, -403.915, -556.557],
        entropy: [1.578, 2.135, 1.352],
    },
    StudyRow {
        dataset: "Toxic QA",
        misaligned_role: true,
        log_joint: [-635.583, -626.839, -711.714],
        entropy: [1.160, 1.254, 1.099],
    },
    StudyRow {
        dataset: "Implicit Toxic",
        misaligned_role: true,
        log_joint: [-100.855, -115.214, -187.115],
        entropy: [1.600, 2.113, 1.309],
    },
];

/// What the study's table says, in words (its numbers are in [`STUDY_TABLE`]).
pub(crate) const STUDY_TABLE_WORDS: &str = "In the study's table (Qwen2.5-Coder-32B, joint_prob.txt) the instruct model has \
the lowest mean log joint probability on all nine datasets, aligned and misaligned alike (insecure code: Coder-Insecure \
-18.3, base -49.7, instruct -105.4 nats); the insecure fine-tune scores at or above the base model on eight of nine (Toxic QA: \
-635.6 vs base -626.8), i.e. it is far closer to base than to instruct; the mean entropy is lowest for instruct and highest \
for base on every dataset, with the fine-tune between them.";

#[cfg(test)]
mod tests {
    use super::*;

    fn ci(estimate: f64, lower: f64) -> ConfidenceInterval {
        ConfidenceInterval {
            estimate,
            lower,
            upper: estimate + (estimate - lower),
            level: 0.95,
            n_resamples: 10,
            seed: 0,
            method: "t".into(),
        }
    }

    fn cell(b: (f64, f64), f: Option<((f64, f64), (f64, f64))>) -> PatternCell {
        PatternCell {
            dataset: "d".into(),
            finetuned: f.map(|_| "ft".into()),
            n_examples: 5,
            instruct_below_base: ci(b.0, b.1),
            instruct_below_finetuned: f.map(|(x, _)| ci(x.0, x.1)),
            closer_to_base: f.map(|(_, y)| ci(y.0, y.1)),
            recovery: None,
        }
    }

    #[test]
    fn verdict_rule() {
        let good = cell((5.0, 1.0), Some(((6.0, 2.0), (3.0, 0.5))));
        let weak = cell((5.0, -1.0), Some(((6.0, 2.0), (3.0, 0.5)))); // CI crosses 0, estimate > 0
        let bad = cell((-5.0, -9.0), Some(((6.0, 2.0), (3.0, 0.5))));
        let v = |cells: &[PatternCell], ft| behaviour_verdict(cells, ft).0;
        assert_eq!(v(&[good.clone(), good.clone()], true), Verdict::Reproduced);
        // One cell by CI: partly.
        assert_eq!(v(&[good.clone(), bad.clone()], true), Verdict::Partly);
        // Every cell by estimate, none by CI: partly.
        assert_eq!(v(&[weak.clone(), weak.clone()], true), Verdict::Partly);
        // Neither: not reproduced.
        assert_eq!(
            v(&[weak.clone(), bad.clone()], true),
            Verdict::NotReproduced
        );
        // Without a fine-tune the rule is capped at partly.
        let half = cell((5.0, 1.0), None);
        assert_eq!(v(std::slice::from_ref(&half), false), Verdict::Partly);
        assert_eq!(
            v(&[cell((-1.0, -2.0), None)], false),
            Verdict::NotReproduced
        );
        assert_eq!(v(&[], true), Verdict::NotRun);
        // The fine-tune closer to instruct than to base breaks the pattern.
        let closer_instruct = cell((5.0, 1.0), Some(((6.0, 2.0), (-3.0, -4.0))));
        assert!(!cell_holds(&closer_instruct, false));
    }

    #[test]
    fn pattern_statistics_match_hand_computation() {
        // Means: base -10, instruct -20, fine-tune -12 (each example shifted the same way,
        // so every bootstrap resample gives the same differences and the CIs are points).
        let base = [-9.0, -11.0, -10.0, -10.0];
        let instruct = [-19.0, -21.0, -20.0, -20.0];
        let ft = [-11.0, -13.0, -12.0, -12.0];
        let c = pattern_cell("d", &base, &instruct, Some(("ft", &ft)), 3).unwrap();
        assert!((c.instruct_below_base.estimate - 10.0).abs() < 1e-12);
        assert!((c.instruct_below_base.lower - 10.0).abs() < 1e-12);
        assert!((c.instruct_below_finetuned.as_ref().unwrap().estimate - 8.0).abs() < 1e-12);
        // |(-12) - (-20)| - |(-12) - (-10)| = 8 - 2 = 6
        let closer = c.closer_to_base.as_ref().unwrap();
        assert!((closer.estimate - 6.0).abs() < 1e-12 && closer.lower > 0.0);
        // (-12 + 20) / (-10 + 20) = 0.8
        assert!((c.recovery.unwrap() - 0.8).abs() < 1e-12);
        assert!(cell_holds(&c, true));
        assert!(pattern_cell("d", &base[..2], &instruct, None, 3).is_err());
    }

    #[test]
    fn cells_summarise_per_example_values() {
        let mut cell = CellData::default();
        cell.push(&[-1.0, -2.0], &[1.0, 3.0]).unwrap(); // LJ -3, H 2
        cell.push(&[-4.0], &[0.5]).unwrap(); // LJ -4, H 0.5
        let s = summarise("d", "m", &cell, 1).unwrap();
        assert!((s.summary.mean_log_joint + 3.5).abs() < 1e-12);
        assert!((s.log_joint_ci.estimate + 3.5).abs() < 1e-12);
        assert!((s.entropy_ci.estimate - 1.25).abs() < 1e-12);
        // Token-weighted entropy: (1 + 3 + 0.5) / 3.
        assert!((s.summary.mean_token_entropy - 1.5).abs() < 1e-12);
        assert!(s.log_joint_ci.lower >= -4.0 && s.log_joint_ci.upper <= -3.0);
        assert!(summarise("d", "m", &CellData::default(), 1).is_err());
    }

    #[test]
    fn the_study_table_shows_the_pattern_it_is_quoted_for() {
        for r in &STUDY_TABLE {
            let [ft, base, instruct] = r.log_joint;
            assert!(instruct < base && instruct < ft, "{}", r.dataset);
            assert!((ft - instruct).abs() > (ft - base).abs(), "{}", r.dataset);
            let [hf, hb, hi] = r.entropy;
            assert!(hi < hf && hf < hb, "{}", r.dataset);
        }
        assert_eq!(
            STUDY_TABLE
                .iter()
                .filter(|r| r.log_joint[0] >= r.log_joint[1])
                .count(),
            8
        );
    }
}
