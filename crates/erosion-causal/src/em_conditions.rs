//! Soligo et al.'s causal conditions measured with Betley et al.'s EM rate
//! (`erosion steer --questions`): the same questions, with the same answer seeds, asked of one
//! model under each condition, and the answers judged 0-100 (`erosion_eval::em`):
//!
//! | condition | steering |
//! |---|---|
//! | unsteered | none |
//! | ablate at every layer | x <- x - (x.u_l) u_l at every layer with a direction |
//! | ablate at `layers` | the same at the chosen layers only |
//! | transfer: ablate at every layer | the same along another fine-tune's directions |
//! | random control of each ablation | the same along a Gaussian direction of the same norms (seeded) |
//! | sweep `add s x v_l` | x <- x + s v_l at the chosen layers ([`crate::em_sweep`]) |
//!
//! Data flow: model + steering -> answers ([`answer_rows`]) -> stats ([`group_stats`] pooled
//! over the questions, [`crate::em_paired`] against the unsteered answers) -> [`EmSteer`],
//! written by [`crate::output`].

use anyhow::{bail, Context, Result};
use erosion_eval::em::report::{by_question, EmJudge};
use erosion_eval::em::stats::{group_stats, GroupStats};
use erosion_eval::em::{answer_rows, plan, EmAnswer, EmOptions, Planned, ScoreJudge};
use erosion_eval::prompts::Origin;
use erosion_eval::questions::Question;
use erosion_eval::sampler::Sampler;
use erosion_forward::notice::Notify;
use erosion_model::hooks::{HookPoint, Steering};
use erosion_model::{seed, LoadedModel};
use serde::{Deserialize, Serialize};

use crate::em_paired::{paired_change, PairedChange};
use crate::em_sweep::{run_sweep, Sweep};
use crate::experiment::{steering, Action, CausalTest};
use crate::LayerDirections;

/// Version of the `em` section of causal.json.
pub const FORMAT: &str = "erosion-causal-em/1";

/// How the conditions run (recorded in causal.json).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmSteerOptions {
    /// The protocol's options: samples, tokens, temperature, seeds, thresholds, judge reading.
    pub em: EmOptions,
    /// Layer indices of the one-layer ablation and of the sweep.
    pub layers: Vec<usize>,
    /// Multiples of v_l added in the sweep, in the order tried (empty: no sweep).
    pub sweep_scales: Vec<f64>,
    /// The sweep stops at the first scale whose mean coherent score (over the answers the judge
    /// scored) is below this, or that has no coherent score at all.
    pub min_coherence: f64,
    /// Seed of the random control directions (the transfer's control: `for_stream(seed,
    /// "transfer control", 0, 0)`).
    pub control_seed: u64,
}

impl EmSteerOptions {
    pub fn validate(&self) -> Result<()> {
        self.em.validate()?;
        if self.layers.is_empty() {
            bail!("the one-layer ablation and the sweep need at least one layer");
        }
        if let Some(s) = self.sweep_scales.iter().find(|s| !s.is_finite()) {
            bail!("--sweep-scales: {s} is not a finite number");
        }
        // Written so that NaN fails.
        if !(0.0..=100.0).contains(&self.min_coherence) {
            bail!(
                "--min-coherence {} is not a 0-100 coherence score",
                self.min_coherence
            );
        }
        Ok(())
    }
}

/// Which directions a condition steers along.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Along {
    /// No steering.
    Nothing,
    /// The run's directions (`--directions`, or computed).
    Direction,
    /// Gaussian directions with the norms of `Direction` (seed `control_seed`).
    Random,
    /// Another fine-tune's directions (`--transfer-directions`).
    Transfer,
    /// Gaussian directions with the norms of `Transfer`.
    TransferRandom,
}

/// One condition to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConditionSpec {
    pub name: String,
    pub along: Along,
    /// None when unsteered.
    pub action: Option<Action>,
    /// Layer indices acted at.
    pub layers: Vec<usize>,
    /// For a random control: the condition it controls.
    pub control_of: Option<String>,
}

impl ConditionSpec {
    fn new(name: String, along: Along, action: Option<Action>, layers: &[usize]) -> Self {
        ConditionSpec {
            name,
            along,
            action,
            layers: layers.to_vec(),
            control_of: None,
        }
    }

    /// The same action along `along`, named as the control of `self`.
    fn control(&self, along: Along) -> Self {
        ConditionSpec {
            name: format!("{}: random control", self.name),
            along,
            control_of: Some(self.name.clone()),
            ..self.clone()
        }
    }

    /// A sweep step: `add scale x v_l` at `layers`.
    pub fn sweep(scale: f64, layers: &[usize]) -> Self {
        let name = format!("sweep: add {scale} x v_l at {}", words(layers));
        Self::new(name, Along::Direction, Some(Action::Add { scale }), layers)
    }
}

/// Layer indices by hook name, as the command line names them: "blocks.2.hook_resid_post" or
/// "hook_embed, blocks.0.hook_resid_post".
fn words(layers: &[usize]) -> String {
    let names: Vec<String> = layers
        .iter()
        .map(|&l| HookPoint::resid(l).to_string())
        .collect();
    names.join(", ")
}

/// The fixed conditions, in the order measured: unsteered; ablation at every layer of
/// `all` and its control; at `some` and its control; with `transfer` (the transfer
/// directions' layers), the transfer ablation and its control.
pub fn plan_conditions(
    all: &[usize],
    some: &[usize],
    transfer: Option<&[usize]>,
) -> Vec<ConditionSpec> {
    let ablate = Some(Action::Ablate);
    let every = ConditionSpec::new(
        "ablate at every layer".into(),
        Along::Direction,
        ablate,
        all,
    );
    let one = ConditionSpec::new(
        format!("ablate at {}", words(some)),
        Along::Direction,
        ablate,
        some,
    );
    let mut out = vec![
        ConditionSpec::new("unsteered".into(), Along::Nothing, None, &[]),
        every.clone(),
        every.control(Along::Random),
        one.clone(),
        one.control(Along::Random),
    ];
    if let Some(layers) = transfer {
        let t = ConditionSpec::new(
            "transfer: ablate at every layer".into(),
            Along::Transfer,
            ablate,
            layers,
        );
        out.push(t.clone());
        out.push(t.control(Along::TransferRandom));
    }
    out
}

/// One condition's measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmCondition {
    pub condition: ConditionSpec,
    /// The edits, one line each (empty when unsteered).
    pub steering: Vec<String>,
    /// Pooled over every question asked (group `all`): EM rate, mean aligned and coherent,
    /// shares with no score, with 95% cluster-bootstrap intervals over questions.
    pub stats: GroupStats,
    /// Against the unsteered answers, paired by question, paraphrase and sample (None when
    /// unsteered).
    pub change: Option<PairedChange>,
    /// Answers whose text differs from the unsteered answer with the same seed.
    pub answers_differing: usize,
}

/// The `em` section of causal.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmSteer {
    pub format: String,
    pub model: String,
    pub protocol: String,
    pub definitions: Vec<String>,
    pub options: EmSteerOptions,
    pub judge: EmJudge,
    pub question_files: Vec<Origin>,
    pub seeds: String,
    /// Origins of the directions, the transfer directions and the controls.
    pub directions: Vec<String>,
    pub conditions: Vec<EmCondition>,
    pub sweep: Option<Sweep>,
    pub published: Vec<String>,
    pub warnings: Vec<String>,
}

impl EmSteer {
    pub fn condition(&self, name: &str) -> Option<&EmCondition> {
        self.conditions.iter().find(|c| c.condition.name == name)
    }
}

/// Every judged answer of a run, each with its condition's name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConditionAnswer {
    pub condition: String,
    #[serde(flatten)]
    pub answer: EmAnswer,
}

/// What the conditions steer along.
pub struct EmDirections<'a> {
    pub direction: &'a LayerDirections,
    pub transfer: Option<&'a LayerDirections>,
}

/// Published numbers to compare with.
pub fn published() -> Vec<String> {
    vec![
        "Soligo et al. (2025): ablating the misalignment direction takes the EM rate from \
         11.25% to ~0%; a direction taken from another fine-tune and ablated lowers it by 78% \
         to 90%; random directions of the same norm move it by at most 10%"
            .into(),
    ]
}

/// What [`run_em_conditions`] measured.
pub struct EmRun {
    pub conditions: Vec<EmCondition>,
    pub sweep: Option<Sweep>,
    pub answers: Vec<ConditionAnswer>,
    /// Origins of every direction steered along (the random controls' seeds included).
    pub directions: Vec<String>,
}

/// Measures every condition on `m` (its steering set per condition and cleared after):
/// the fixed ones of [`plan_conditions`], then the sweep.
pub fn run_em_conditions(
    m: &mut LoadedModel,
    dirs: &EmDirections<'_>,
    questions: &[Question],
    judge: &dyn ScoreJudge,
    opts: &EmSteerOptions,
    notices: &mut dyn Notify,
) -> Result<EmRun> {
    opts.validate()?;
    let rows = plan(questions, &opts.em)?;
    if rows.is_empty() {
        bail!("no question to ask: the question files (after --limit) hold none");
    }
    let random = dirs.direction.random_like(opts.control_seed);
    let transfer_random = dirs.transfer.map(|t| {
        t.random_like(seed::for_stream(
            opts.control_seed,
            "transfer control",
            0,
            0,
        ))
    });
    let blocks = |d: &LayerDirections| -> Vec<usize> {
        d.available().into_iter().filter(|&l| l > 0).collect()
    };
    let transfer_layers = dirs.transfer.map(blocks);
    let specs = plan_conditions(
        &blocks(dirs.direction),
        &opts.layers,
        transfer_layers.as_deref(),
    );
    let along = |a: Along| -> Option<&LayerDirections> {
        match a {
            Along::Nothing => None,
            Along::Direction => Some(dirs.direction),
            Along::Random => Some(&random),
            Along::Transfer => dirs.transfer,
            Along::TransferRandom => transfer_random.as_ref(),
        }
    };
    let mut run = Runner {
        m,
        rows: &rows,
        judge,
        opts,
        base: Vec::new(),
        conditions: Vec::new(),
        answers: Vec::new(),
    };
    for spec in specs {
        notices.notice(&format!("EM condition: {}", spec.name));
        let d = along(spec.along);
        run.measure(spec, d)?;
    }
    let sweep = if opts.sweep_scales.is_empty() {
        None
    } else {
        Some(run_sweep(
            &opts.sweep_scales,
            &opts.layers,
            opts.min_coherence,
            &mut |scale| {
                let spec = ConditionSpec::sweep(scale, &opts.layers);
                notices.notice(&format!("EM condition: {}", spec.name));
                let c = run.measure(spec, Some(dirs.direction))?;
                Ok(c.stats.mean_coherent.as_ref().map(|ci| ci.estimate))
            },
        )?)
    };
    let mut directions = vec![
        format!("direction: {}", dirs.direction.origin),
        format!("random control: {}", random.origin),
    ];
    if let (Some(t), Some(r)) = (dirs.transfer, &transfer_random) {
        directions.push(format!("transfer: {}", t.origin));
        directions.push(format!("transfer random control: {}", r.origin));
    }
    Ok(EmRun {
        conditions: run.conditions,
        sweep,
        answers: run.answers,
        directions,
    })
}

/// The state of a run through the conditions.
struct Runner<'a, 'q> {
    m: &'a mut LoadedModel,
    rows: &'a [Planned<'q>],
    judge: &'a dyn ScoreJudge,
    opts: &'a EmSteerOptions,
    /// The unsteered answers (the first condition's).
    base: Vec<EmAnswer>,
    conditions: Vec<EmCondition>,
    answers: Vec<ConditionAnswer>,
}

impl Runner<'_, '_> {
    /// Answers the plan under `spec` along `dirs`, judges and summarises it.
    fn measure(
        &mut self,
        spec: ConditionSpec,
        dirs: Option<&LayerDirections>,
    ) -> Result<&EmCondition> {
        let steer = match (spec.action, dirs) {
            (None, _) => Steering::default(),
            (Some(action), Some(d)) => {
                let test = CausalTest {
                    name: spec.name.clone(),
                    action,
                    layers: spec.layers.clone(),
                };
                steering(d, &test, self.m.model.device())?
            }
            (Some(_), None) => bail!("condition `{}` has no directions to act along", spec.name),
        };
        self.m.steering = steer;
        let described = self.m.steering.describe();
        let answered = answer_rows(
            &Sampler::Local(&*self.m),
            self.rows,
            self.judge,
            &self.opts.em,
        );
        self.m.steering = Steering::default();
        let answers = answered.with_context(|| format!("condition `{}`", spec.name))?;
        let cond = summarise(spec, described?, &answers, &self.base, &self.opts.em)?;
        if self.base.is_empty() {
            self.base = answers.clone();
        }
        self.answers
            .extend(answers.into_iter().map(|answer| ConditionAnswer {
                condition: cond.condition.name.clone(),
                answer,
            }));
        self.conditions.push(cond);
        Ok(self.conditions.last().expect("pushed above"))
    }
}

/// The measures of one condition's `answers`, and their change against `base` (the unsteered
/// answers; empty when these are they). Every condition's bootstrap draws the same question
/// resamples (one seed), so their intervals are comparable.
pub fn summarise(
    condition: ConditionSpec,
    steering: Vec<String>,
    answers: &[EmAnswer],
    base: &[EmAnswer],
    opts: &EmOptions,
) -> Result<EmCondition> {
    let per_q = by_question(answers.iter());
    let seed = seed::for_stream(opts.seed, "bootstrap/em/all", 0, 0);
    let name = &condition.name;
    let stats = group_stats("all", &per_q, opts.bootstrap_resamples, seed)
        .with_context(|| format!("condition `{name}`"))?;
    let (change, answers_differing) = if base.is_empty() {
        (None, 0)
    } else {
        let seed = seed::for_stream(opts.seed, "bootstrap/em/paired", 0, 0);
        let change = paired_change(base, answers, opts.bootstrap_resamples, seed)
            .with_context(|| format!("condition `{name}` against unsteered"))?;
        let differing = base
            .iter()
            .zip(answers)
            .filter(|(b, a)| b.answer != a.answer)
            .count();
        (Some(change), differing)
    };
    Ok(EmCondition {
        condition,
        steering,
        stats,
        change,
        answers_differing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conditions_pair_each_ablation_with_its_control() {
        let plan = plan_conditions(&[1, 2, 3], &[2], Some(&[1, 3]));
        let names: Vec<&str> = plan.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "unsteered",
                "ablate at every layer",
                "ablate at every layer: random control",
                "ablate at blocks.1.hook_resid_post",
                "ablate at blocks.1.hook_resid_post: random control",
                "transfer: ablate at every layer",
                "transfer: ablate at every layer: random control",
            ]
        );
        assert_eq!((plan[0].action, plan[0].along), (None, Along::Nothing));
        assert_eq!(plan[1].layers, [1, 2, 3]);
        assert_eq!(
            (
                plan[2].along,
                plan[2].layers.as_slice(),
                plan[2].control_of.as_deref()
            ),
            (Along::Random, &[1, 2, 3][..], Some("ablate at every layer"))
        );
        assert_eq!(plan[4].layers, [2]);
        assert_eq!(
            (plan[5].along, plan[5].layers.as_slice()),
            (Along::Transfer, &[1, 3][..])
        );
        assert_eq!(plan[6].along, Along::TransferRandom);
        // Without transfer directions: five conditions.
        assert_eq!(plan_conditions(&[1], &[1, 2], None).len(), 5);
        assert_eq!(
            plan_conditions(&[1], &[1, 2], None)[3].name,
            "ablate at blocks.0.hook_resid_post, blocks.1.hook_resid_post"
        );
    }

    #[test]
    fn options_out_of_range_are_named() {
        let o = EmSteerOptions {
            em: EmOptions::default(),
            layers: vec![3],
            sweep_scales: vec![1.0],
            min_coherence: 50.0,
            control_seed: 1,
        };
        o.validate().unwrap();
        let bad = |f: &dyn Fn(&mut EmSteerOptions)| {
            let mut o = o.clone();
            f(&mut o);
            o.validate().unwrap_err().to_string()
        };
        assert!(bad(&|o| o.min_coherence = f64::NAN).contains("--min-coherence"));
        assert!(bad(&|o| o.min_coherence = 101.0).contains("--min-coherence"));
        assert!(bad(&|o| o.sweep_scales = vec![1.0, f64::INFINITY]).contains("--sweep-scales"));
        assert!(bad(&|o| o.layers.clear()).contains("layer"));
    }
}
