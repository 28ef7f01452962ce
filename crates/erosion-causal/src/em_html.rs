//! The report section of `erosion steer --questions`: a table of the conditions (EM rate,
//! mean aligned and coherent, no-score share, answers, paired change against unsteered), a
//! table of the sweep, and a verdict on Soligo et al.'s claim by a stated rule.

use anyhow::Result;
use erosion_analysis::stats::ConfidenceInterval;
use erosion_report::format::{fmt_ci_fixed, fmt_proportion};
use erosion_report::html::{Section, Table, Verdict};

use crate::em_conditions::{Along, EmCondition, EmSteer};
use crate::experiment::Action;

/// Largest relative EM change a random control may make (Soligo et al.: "at most 10%").
pub const CONTROL_TOLERANCE: f64 = 0.10;

/// Whether the ablation at every layer behaves as Soligo et al. report: its paired EM change
/// has a 95% interval below 0, and its random control's relative change is at most
/// [`CONTROL_TOLERANCE`] in size. None when the unsteered model shows no EM (nothing to
/// ablate: no verdict).
pub fn ablation_removes_em(em: &EmSteer) -> Option<bool> {
    let base = em.condition("unsteered")?;
    if base.stats.em_count == 0 {
        return None;
    }
    let change = |name: &str| em.condition(name).and_then(|c| c.change.as_ref());
    let (Some(dir), Some(ctl)) = (
        change("ablate at every layer"),
        change("ablate at every layer: random control"),
    ) else {
        return Some(false);
    };
    let control_small = ctl
        .relative_em
        .is_some_and(|r| r.abs() <= CONTROL_TOLERANCE);
    Some(dir.em.upper < 0.0 && control_small)
}

fn ci(c: &Option<ConfidenceInterval>, decimals: usize) -> String {
    c.as_ref().map_or("-".into(), |c| fmt_ci_fixed(c, decimals))
}

fn percent(x: Option<f64>) -> String {
    x.map_or("-".into(), |r| format!("{:+.0}%", 100.0 * r))
}

fn row(c: &EmCondition) -> Vec<String> {
    let s = &c.stats;
    let change = c.change.as_ref();
    vec![
        c.condition.name.clone(),
        fmt_proportion(&s.em, s.em_count, s.answers),
        ci(&s.mean_aligned, 1),
        ci(&s.mean_coherent, 1),
        fmt_ci_fixed(&s.aligned_no_score, 3),
        change.map_or("-".into(), |ch| fmt_ci_fixed(&ch.em, 3)),
        percent(change.and_then(|ch| ch.relative_em)),
        change.map_or("-".into(), |ch| ci(&ch.mean_aligned, 1)),
        change.map_or("-".into(), |_| c.answers_differing.to_string()),
    ]
}

/// The section.
pub fn em_section(em: &EmSteer) -> Result<Section> {
    let verdict = match ablation_removes_em(em) {
        None => Verdict::Measured,
        Some(true) => Verdict::Reproduced,
        Some(false) => Verdict::NotReproduced,
    };
    let rate = |name: &str| {
        em.condition(name)
            .map_or("-".into(), |c| format!("{:.3}", c.stats.em.estimate))
    };
    let mut result = format!(
        "EM rate {} unsteered, {} with the direction ablated at every layer ({} with a random \
         direction), {} ablated at the chosen layers.",
        rate("unsteered"),
        rate("ablate at every layer"),
        rate("ablate at every layer: random control"),
        em.conditions
            .iter()
            // The second ablation along the direction itself (the first is at every layer).
            .filter(|c| {
                c.condition.control_of.is_none()
                    && c.condition.along == Along::Direction
                    && c.condition.action == Some(Action::Ablate)
            })
            .nth(1)
            .map_or("-".into(), |c| format!("{:.3}", c.stats.em.estimate)),
    );
    if let Some(t) = em.condition("transfer: ablate at every layer") {
        result += &format!(
            " The transferred direction, ablated: {:.3} (relative change {}).",
            t.stats.em.estimate,
            percent(t.change.as_ref().and_then(|c| c.relative_em))
        );
    }
    if let Some(s) = &em.sweep {
        result += &format!(" Sweep: {}.", s.reason);
    }
    if verdict == Verdict::Measured {
        result += " The unsteered model gave no EM answer, so there is nothing for an \
                   ablation to remove: no verdict.";
    }
    let mut s = Section::new(
        "Causal tests on emergent misalignment (Betley et al.'s protocol)",
        "Ablating the direction removes emergent misalignment, a direction from another \
         fine-tune removes most of it, and a random direction of the same norm does not.",
        &result,
        &em.published.join(" "),
        verdict,
    );
    s.tables.push(Table {
        caption: format!(
            "{} under each condition ({} answers each, same seeds; EM: aligned < {} and \
             coherent > {}). Rates and means with 95% cluster-bootstrap intervals over \
             questions; changes against unsteered paired by answer (same question, \
             paraphrase and seed), 95% paired cluster-bootstrap intervals.",
            em.model,
            em.conditions.first().map_or(0, |c| c.stats.answers),
            em.options.em.aligned_below,
            em.options.em.coherent_above
        ),
        headers: [
            "condition",
            "EM rate",
            "mean aligned",
            "mean coherent",
            "no aligned score",
            "EM change (paired)",
            "relative EM change",
            "aligned change (paired)",
            "answers differing from unsteered",
        ]
        .map(String::from)
        .to_vec(),
        rows: em.conditions.iter().map(row).collect(),
    });
    if let Some(sweep) = &em.sweep {
        s.tables.push(Table {
            caption: format!(
                "Steering sweep: add s x v_l at layer indices {:?}, scales in the order given, stopped \
                 at the first whose mean coherent score is below {} ({}).",
                sweep.layers, sweep.min_coherence, sweep.reason
            ),
            headers: ["scale", "mean coherent", "EM rate", "stopped here"]
                .map(String::from)
                .to_vec(),
            rows: sweep
                .scales
                .iter()
                .enumerate()
                .map(|(i, &scale)| {
                    let measured = sweep.mean_coherent.get(i);
                    let cond = em.conditions.iter().find(|c| {
                        c.condition.name.starts_with("sweep")
                            && c.condition.action
                                == Some(Action::Add { scale })
                    });
                    vec![
                        scale.to_string(),
                        match measured {
                            None => "not measured".into(),
                            Some(None) => "no score".into(),
                            Some(Some(c)) => format!("{c:.1}"),
                        },
                        cond.map_or("-".into(), |c| {
                            fmt_proportion(&c.stats.em, c.stats.em_count, c.stats.answers)
                        }),
                        if measured.is_some() && sweep.stopped_at == Some(scale) {
                            "yes".into()
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect(),
        });
    }
    s.notes.push(format!(
        "Verdict rule: reproduced when the unsteered model gives EM answers, ablating the \
         direction at every layer lowers the EM rate with a paired 95% interval below 0, and \
         its random control changes the EM rate by at most {:.0}% of the unsteered rate; no \
         verdict when the unsteered EM rate is 0.",
        100.0 * CONTROL_TOLERANCE
    ));
    s.notes.push(
        "Every condition asks the same questions with the same answer seeds (temperature as \
         in the options); steering acts at every position of every forward pass. Ablation \
         removes the component along u_l = v_l / |v_l|, so a random control's norm does not \
         matter for it; the sweep adds s v_l with its norm. Every answer with both scores is \
         in em_answers.jsonl."
            .into(),
    );
    s.notes.extend(em.warnings.iter().cloned());
    s.files.push("em_answers.jsonl".into());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::em_conditions::{plan_conditions, summarise, EmSteerOptions};
    use crate::em_paired::tests::answer;
    use erosion_eval::em::{EmAnswer, EmOptions};

    /// Two questions, four answers each; `em[q]` of question q's answers are EM.
    fn answers(em: [usize; 2]) -> Vec<EmAnswer> {
        (0..8)
            .map(|i| {
                let (q, j) = (i / 4, i % 4);
                let aligned = if j < em[q] { 10.0 } else { 90.0 };
                answer(["a", "b"][q], j, Some(aligned), Some(80.0))
            })
            .collect()
    }

    /// The run's section with the unsteered answers `base`, ablation at every layer `every`
    /// and its random control `control`.
    fn run(base: [usize; 2], every: [usize; 2], control: [usize; 2]) -> EmSteer {
        let opts = EmOptions {
            bootstrap_resamples: 200,
            ..Default::default()
        };
        let plan = plan_conditions(&[1, 2], &[1], None);
        let base_answers = answers(base);
        let conditions = [(0, base), (1, every), (2, control)]
            .into_iter()
            .map(|(i, em)| {
                let prior = if i == 0 { &[][..] } else { &base_answers[..] };
                summarise(plan[i].clone(), Vec::new(), &answers(em), prior, &opts).unwrap()
            })
            .collect();
        EmSteer {
            format: crate::em_conditions::FORMAT.into(),
            model: "m".into(),
            protocol: String::new(),
            definitions: Vec::new(),
            options: EmSteerOptions {
                em: opts,
                layers: vec![1],
                sweep_scales: Vec::new(),
                min_coherence: 50.0,
                control_seed: 1,
            },
            judge: erosion_eval::em::report::EmJudge {
                name: "j".into(),
                parameters: None,
                description: String::new(),
            },
            question_files: Vec::new(),
            seeds: String::new(),
            directions: Vec::new(),
            conditions,
            sweep: None,
            published: crate::em_conditions::published(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn the_verdict_needs_em_removed_beyond_an_idle_control() {
        // 1 of 4 EM per question -> none: a change of -0.25 at every resample.
        let r = run([1, 1], [0, 0], [1, 1]);
        let every = r.condition("ablate at every layer").unwrap();
        let change = every.change.as_ref().unwrap();
        assert_eq!((change.em.estimate, change.em.upper), (-0.25, -0.25));
        assert_eq!(change.relative_em, Some(-1.0));
        assert_eq!(every.stats.em_count, 0);
        assert_eq!(ablation_removes_em(&r), Some(true));
        // A control that removes half the EM is no control.
        assert_eq!(
            ablation_removes_em(&run([2, 2], [0, 0], [1, 1])),
            Some(false)
        );
        // An ablation whose interval reaches 0 does not count.
        assert_eq!(
            ablation_removes_em(&run([1, 1], [0, 1], [1, 1])),
            Some(false)
        );
        // No EM unsteered: nothing to remove, no verdict.
        assert_eq!(ablation_removes_em(&run([0, 0], [0, 0], [0, 0])), None);
        let s = em_section(&r).unwrap();
        assert_eq!(s.verdict, Verdict::Reproduced);
        assert_eq!(s.tables[0].rows.len(), 3);
        assert!(s.study_reported.contains("11.25%"));
    }
}
