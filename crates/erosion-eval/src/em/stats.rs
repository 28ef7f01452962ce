//! The protocol's measures, per question and per group of questions.
//!
//! Per question q (its answers i.i.d. given the model): EM rate = #EM / #answers with a 95%
//! Wilson interval; mean aligned and mean coherent over the answers the judge scored; the
//! shares of answers with no aligned and with no coherent score.
//!
//! Per group G of questions, every measure is a ratio of sums over its questions,
//! R = sum_{q in G} a_q / sum_{q in G} b_q (EM rate: a = #EM, b = #answers; mean aligned:
//! a = sum of aligned scores, b = #scored), with a 95% cluster-bootstrap interval: the
//! questions are resampled with replacement (answers to one question are not independent: they
//! share its prompt), R is recomputed on each resample, and the interval is the 2.5th and
//! 97.5th percentiles. Resamples whose denominator is 0 are skipped.

use anyhow::{Context, Result};
use erosion_analysis::stats::{ci_from_draws, draw_resample, rng_from_seed, ConfidenceInterval};
use serde::{Deserialize, Serialize};

use super::EmAnswer;
use crate::stats::Proportion;

/// Sums over one question's answers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    pub answers: f64,
    pub em: f64,
    pub aligned_sum: f64,
    pub aligned_n: f64,
    pub coherent_sum: f64,
    pub coherent_n: f64,
    pub aligned_none: f64,
    pub coherent_none: f64,
}

impl Tally {
    pub fn of(answers: &[&EmAnswer]) -> Self {
        let mut t = Tally::default();
        for a in answers {
            t.answers += 1.0;
            t.em += f64::from(u8::from(a.em));
            match a.aligned.score {
                Some(s) => (t.aligned_sum, t.aligned_n) = (t.aligned_sum + s, t.aligned_n + 1.0),
                None => t.aligned_none += 1.0,
            }
            match a.coherent.score {
                Some(s) => {
                    (t.coherent_sum, t.coherent_n) = (t.coherent_sum + s, t.coherent_n + 1.0)
                }
                None => t.coherent_none += 1.0,
            }
        }
        t
    }
}

/// One question's measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuestionStats {
    pub question: String,
    pub group: String,
    pub answers: usize,
    pub em: Proportion,
    pub mean_aligned: Option<f64>,
    pub mean_coherent: Option<f64>,
    pub aligned_no_score: Proportion,
    pub coherent_no_score: Proportion,
}

/// A group's measures, each with a cluster-bootstrap interval over its questions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupStats {
    /// `main`, `json`, `template`, or `all`.
    pub group: String,
    pub questions: Vec<String>,
    pub answers: usize,
    pub em_count: usize,
    pub em: ConfidenceInterval,
    /// None when no answer got a score.
    pub mean_aligned: Option<ConfidenceInterval>,
    pub mean_coherent: Option<ConfidenceInterval>,
    pub aligned_no_score: ConfidenceInterval,
    pub coherent_no_score: ConfidenceInterval,
}

/// The measures of one question's answers.
pub fn question_stats(question: &str, answers: &[&EmAnswer]) -> Result<QuestionStats> {
    let t = Tally::of(answers);
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let n = answers.len();
    Ok(QuestionStats {
        question: question.to_string(),
        group: super::group_of(question).into(),
        answers: n,
        em: Proportion::new(t.em as usize, n).with_context(|| format!("question {question}"))?,
        mean_aligned: ratio(t.aligned_sum, t.aligned_n),
        mean_coherent: ratio(t.coherent_sum, t.coherent_n),
        aligned_no_score: Proportion::new(t.aligned_none as usize, n)?,
        coherent_no_score: Proportion::new(t.coherent_none as usize, n)?,
    })
}

/// sum a / sum b over `tallies` with its cluster-bootstrap interval; None when sum b = 0.
pub fn cluster_ratio(
    tallies: &[Tally],
    a: fn(&Tally) -> f64,
    b: fn(&Tally) -> f64,
    resamples: usize,
    seed: u64,
) -> Result<Option<ConfidenceInterval>> {
    let sums: Vec<(f64, f64)> = tallies.iter().map(|t| (a(t), b(t))).collect();
    cluster_ratio_of(&sums, resamples, seed)
}

/// sum_q a_q / sum_q b_q over the questions' `(a_q, b_q)` with its cluster-bootstrap interval
/// (questions resampled with replacement); None when sum b = 0.
pub fn cluster_ratio_of(
    sums: &[(f64, f64)],
    resamples: usize,
    seed: u64,
) -> Result<Option<ConfidenceInterval>> {
    let ratio = |idx: &mut dyn Iterator<Item = usize>| {
        let (sa, sb) = idx.fold((0.0, 0.0), |(x, y), i| (x + sums[i].0, y + sums[i].1));
        (sb > 0.0).then(|| sa / sb)
    };
    let Some(estimate) = ratio(&mut (0..sums.len())) else {
        return Ok(None);
    };
    let mut rng = rng_from_seed(seed);
    let mut idx = vec![0; sums.len()];
    let mut draws = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        draw_resample(&mut rng, &mut idx);
        draws.extend(ratio(&mut idx.iter().copied()));
    }
    if draws.len() < 2 {
        // Every resample missed the scored questions: no interval beyond the estimate.
        draws = vec![estimate; 2];
    }
    let method = "cluster bootstrap over questions (percentile)";
    Ok(Some(ci_from_draws(estimate, draws, 0.95, seed, method)?))
}

/// The measures of a group of questions (`per_question[i]` = question i's answers).
pub fn group_stats(
    group: &str,
    per_question: &[(String, Vec<&EmAnswer>)],
    resamples: usize,
    seed: u64,
) -> Result<GroupStats> {
    let tallies: Vec<Tally> = per_question.iter().map(|(_, a)| Tally::of(a)).collect();
    let ci =
        |a: fn(&Tally) -> f64, b: fn(&Tally) -> f64| cluster_ratio(&tallies, a, b, resamples, seed);
    let need =
        |c: Option<ConfidenceInterval>| c.with_context(|| format!("group {group} has no answers"));
    Ok(GroupStats {
        group: group.to_string(),
        questions: per_question.iter().map(|(q, _)| q.clone()).collect(),
        answers: tallies.iter().map(|t| t.answers as usize).sum(),
        em_count: tallies.iter().map(|t| t.em as usize).sum(),
        em: need(ci(|t| t.em, |t| t.answers)?)?,
        mean_aligned: ci(|t| t.aligned_sum, |t| t.aligned_n)?,
        mean_coherent: ci(|t| t.coherent_sum, |t| t.coherent_n)?,
        aligned_no_score: need(ci(|t| t.aligned_none, |t| t.answers)?)?,
        coherent_no_score: need(ci(|t| t.coherent_none, |t| t.answers)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(answers: f64, em: f64) -> Tally {
        Tally {
            answers,
            em,
            ..Default::default()
        }
    }

    #[test]
    fn the_cluster_bootstrap_pools_answers_and_resamples_questions() {
        // Two questions: 10/10 and 0/30 EM. Pooled 10/40; a resample of question 0 twice is
        // 1.0, of question 1 twice 0.0, so the interval spans what question draws can give.
        let t = [tally(10.0, 10.0), tally(30.0, 0.0)];
        let ci = cluster_ratio(&t, |t| t.em, |t| t.answers, 2000, 7)
            .unwrap()
            .unwrap();
        assert!((ci.estimate - 0.25).abs() < 1e-12);
        assert_eq!((ci.lower, ci.upper), (0.0, 1.0));
        // Identical questions: no spread between them, so no interval width.
        let same = [tally(10.0, 2.0), tally(10.0, 2.0), tally(10.0, 2.0)];
        let ci = cluster_ratio(&same, |t| t.em, |t| t.answers, 500, 7)
            .unwrap()
            .unwrap();
        assert!((ci.lower - 0.2).abs() < 1e-12 && (ci.upper - 0.2).abs() < 1e-12);
        // No answer scored: no mean.
        assert!(
            cluster_ratio(&same, |t| t.aligned_sum, |t| t.aligned_n, 10, 0)
                .unwrap()
                .is_none()
        );
    }

    /// An independent check of the interval, by simulation: 30 questions whose EM
    /// probabilities differ a lot (0.6 for a quarter of them, 1/15 for the rest: 0.2 on
    /// average), 20 answers each. Over 400 seeded replications the cluster-bootstrap interval
    /// covers the true 0.2 about as often as it claims (95%; 96.8% here), while a Wilson
    /// interval that treats the 600 answers as independent covers it far less often (56%): the
    /// clustering is real and the bootstrap accounts for it.
    #[test]
    fn the_cluster_bootstrap_covers_the_true_rate_where_iid_intervals_do_not() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (reps, questions, answers, truth) = (400, 30, 20, 0.2);
        let (mut cluster, mut iid) = (0, 0);
        for rep in 0..reps {
            let t: Vec<Tally> = (0..questions)
                .map(|_| {
                    let p = if rng.random::<f64>() < 0.25 {
                        0.6
                    } else {
                        1.0 / 15.0
                    };
                    let em = (0..answers).filter(|_| rng.random::<f64>() < p).count();
                    tally(answers as f64, em as f64)
                })
                .collect();
            let ci = cluster_ratio(&t, |t| t.em, |t| t.answers, 1000, rep)
                .unwrap()
                .unwrap();
            cluster += usize::from(ci.lower <= truth && truth <= ci.upper);
            let count = t.iter().map(|t| t.em as usize).sum();
            let w = Proportion::new(count, questions * answers).unwrap();
            iid += usize::from(w.lower <= truth && truth <= w.upper);
        }
        let (cluster, iid) = (cluster as f64 / reps as f64, iid as f64 / reps as f64);
        eprintln!("coverage of 0.2: cluster bootstrap {cluster}, i.i.d. Wilson {iid}");
        assert!(
            (0.88..=0.99).contains(&cluster),
            "cluster bootstrap coverage {cluster}"
        );
        assert!(iid < 0.8, "i.i.d. Wilson coverage {iid}");
    }
}
