//! One causal test: a model, an intervention along a direction at chosen layers, and the same
//! intervention along a random direction of the same norm (the control), each measured as
//! the study measured behaviour:
//!
//! | measure | data | how |
//! |---|---|---|
//! | refusal and harmful-compliance rates | harmful prompts | `erosion-eval`: answers decoded with the steering active at every position, judged; Wilson 95% (only with a judge) |
//! | P(compliant first token) | harmful prompts | `erosion-eval`, mean with bootstrap CI |
//! | log-prob margin | pairs (prompt, toxic answer) / (prompt, refusal) | `m_i = ln P(toxic_i) - ln P(reject_i)` (log joint of the response tokens); mean and paired change against the unsteered model, bootstrap CIs |
//! | next-token entropy | the toxic answers | mean over examples of the mean entropy of the next-token distribution along the response (the study's dataset-level entropy), bootstrap CI |
//! | KL cost | benign (prompt, answer) | mean per-token `KL(p || p_steered)` over response positions (`erosion_forward::kl`), bootstrap CI |

use anyhow::{bail, Context, Result};
use erosion_analysis::stats::{bootstrap_mean_ci, ConfidenceInterval};
use erosion_data::Sequence;
use erosion_eval::{evaluate_model, EvalOptions, EvalPrompts, Judge, Proportion};
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_forward::kl::response_kl;
use erosion_forward::logprobs::response_logprobs;
use erosion_model::hooks::{HookPoint, Steering};
use erosion_model::LoadedModel;
use serde::{Deserialize, Serialize};

use crate::directions::LayerDirections;

/// What is done along the direction.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    /// x <- x + scale * v_l at each chosen layer (v_l with its norm: scale 1 moves the base
    /// model's mean onto the instruct model's).
    Add { scale: f64 },
    /// x <- x - (x.u_l) u_l, u_l = v_l / |v_l|, at each chosen layer (directional ablation).
    Ablate,
}

impl Action {
    pub fn describe(&self) -> String {
        match self {
            Action::Add { scale } => format!("add {scale} x v_l"),
            Action::Ablate => "ablate v_l".to_string(),
        }
    }
}

/// A causal test to run on one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CausalTest {
    /// E.g. "restore refusals in insecure".
    pub name: String,
    pub action: Action,
    /// Layer indices (0 = embeddings, l = output of block l-1) to act at.
    pub layers: Vec<usize>,
}

/// The data the measures run on, rendered for the model under test.
pub struct CausalData<'a> {
    /// Harmful prompts (and any other sets) for the behavioural rates.
    pub prompts: &'a EvalPrompts,
    /// `toxic[i]` and `reject[i]`: one prompt with a compliant and with a refusing answer.
    pub toxic: &'a [Sequence],
    pub reject: &'a [Sequence],
    /// Benign (prompt, answer) pairs for the KL cost.
    pub benign: &'a [Sequence],
}

/// How the measures run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CausalOptions {
    pub eval: EvalOptions,
    pub batch: BatchOptions,
    /// Seed of the random control directions.
    pub control_seed: u64,
}

/// One condition's measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// "unsteered", "direction" or "random control".
    pub name: String,
    /// The edits, one line each (empty when unsteered).
    pub steering: Vec<String>,
    pub refusal: Option<Proportion>,
    pub compliance: Option<Proportion>,
    pub first_token: Option<ConfidenceInterval>,
    /// Mean of m_i = ln P(toxic_i) - ln P(reject_i).
    pub margin: ConfidenceInterval,
    /// Mean of m_i(condition) - m_i(unsteered), paired by i (None when unsteered).
    pub margin_change: Option<ConfidenceInterval>,
    /// Mean next-token entropy (nats) along the harmful answers.
    #[serde(default)]
    pub entropy: Option<ConfidenceInterval>,
    /// Mean per-token KL(unsteered || this) on the benign data (None when unsteered).
    pub kl: Option<ConfidenceInterval>,
}

/// A causal test's result: the model's three conditions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CausalResult {
    pub model: String,
    pub test: CausalTest,
    pub directions: String,
    pub pairs: usize,
    pub benign: usize,
    pub conditions: Vec<Condition>,
}

impl CausalResult {
    pub fn condition(&self, name: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.name == name)
    }
}

/// The steering of `test` along `dirs`.
pub fn steering(
    dirs: &LayerDirections,
    test: &CausalTest,
    device: &candle_core::Device,
) -> Result<Steering> {
    if test.layers.is_empty() {
        bail!("test `{}` acts at no layer", test.name);
    }
    let mut s = Steering::default();
    for &l in &test.layers {
        let v = dirs
            .tensor(l, device)
            .with_context(|| format!("test `{}`", test.name))?;
        let point = HookPoint::resid(l);
        s = match test.action {
            Action::Add { scale } => s.add(point, &v, scale),
            Action::Ablate => s.ablate(point, &v)?,
        };
    }
    Ok(s)
}

/// Runs `test` on `m` (its own steering is set per condition and cleared after): unsteered,
/// along `dirs`, and along `dirs.random_like(opts.control_seed)`.
pub fn run_test(
    m: &mut LoadedModel,
    dirs: &LayerDirections,
    test: &CausalTest,
    data: &CausalData<'_>,
    judge: Option<&dyn Judge>,
    opts: &CausalOptions,
) -> Result<CausalResult> {
    if data.toxic.len() != data.reject.len() || data.toxic.is_empty() {
        bail!(
            "the margin needs as many harmful as refusing answers, paired by prompt (got {} and {})",
            data.toxic.len(),
            data.reject.len()
        );
    }
    if data.benign.is_empty() {
        bail!("the KL cost needs benign examples");
    }
    let control = dirs.random_like(opts.control_seed);
    let device = m.model.device().clone();
    let conditions = [
        ("unsteered", Steering::default()),
        ("direction", steering(dirs, test, &device)?),
        ("random control", steering(&control, test, &device)?),
    ];
    let mut out = Vec::new();
    let mut base_margins: Vec<f64> = Vec::new();
    for (name, steer) in conditions {
        m.steering = steer;
        let measured = measure(m, data, judge, opts, name, &base_margins)
            .with_context(|| format!("test `{}`, condition {name}", test.name));
        let (cond, margins) = match measured {
            Ok(x) => x,
            Err(e) => {
                m.steering = Steering::default();
                return Err(e);
            }
        };
        if name == "unsteered" {
            base_margins = margins;
        }
        out.push(cond);
    }
    m.steering = Steering::default();
    Ok(CausalResult {
        model: m.name.clone(),
        test: test.clone(),
        directions: dirs.origin.clone(),
        pairs: data.toxic.len(),
        benign: data.benign.len(),
        conditions: out,
    })
}

/// One condition (the model's current steering); also returns the per-pair margins.
fn measure(
    m: &LoadedModel,
    data: &CausalData<'_>,
    judge: Option<&dyn Judge>,
    opts: &CausalOptions,
    name: &str,
    base_margins: &[f64],
) -> Result<(Condition, Vec<f64>)> {
    let eval_opts = EvalOptions {
        two_turn: false,
        ..opts.eval.clone()
    };
    // Without a judge no answer is decoded: the rates and P(first token) stay empty.
    let me = judge
        .map(|judge| evaluate_model(m, data.prompts, judge, &eval_opts))
        .transpose()?
        .map(|(me, _)| me);
    let n_layers = m.model.n_layers();
    let logprobs = |seqs: &[Sequence]| {
        let mut hooks = m.steering.hooks(n_layers)?;
        response_logprobs(
            &m.model,
            seqs,
            &opts.batch,
            Some(&mut hooks),
            &mut NoProgress,
        )
    };
    let toxic = logprobs(data.toxic).context("harmful answers")?;
    let reject = logprobs(data.reject).context("refusals")?;
    let margins: Vec<f64> = toxic
        .iter()
        .zip(&reject)
        .map(|(t, r)| t.log_joint() - r.log_joint())
        .collect();
    let b = opts.eval.bootstrap_resamples;
    let seed = opts.eval.seed;
    let entropies: Vec<f64> = toxic.iter().map(|r| r.mean_entropy()).collect();
    let entropy =
        bootstrap_mean_ci(&entropies, b, 0.95, seed).context("bootstrap of the entropy")?;
    let margin = bootstrap_mean_ci(&margins, b, 0.95, seed).context("bootstrap of the margin")?;
    let steered = !m.steering.is_empty();
    let margin_change = if steered {
        let d: Vec<f64> = margins
            .iter()
            .zip(base_margins)
            .map(|(a, b)| a - b)
            .collect();
        Some(bootstrap_mean_ci(&d, b, 0.95, seed).context("bootstrap of the margin change")?)
    } else {
        None
    };
    let kl = if steered {
        let mut hooks = m.steering.hooks(n_layers)?;
        let kl = response_kl(&m.model, data.benign, &opts.batch, &mut hooks).context("KL cost")?;
        Some(bootstrap_mean_ci(&kl, b, 0.95, seed).context("bootstrap of the KL")?)
    } else {
        None
    };
    let first_token = me
        .as_ref()
        .and_then(|me| me.set(erosion_eval::PromptKind::Harmful))
        .and_then(|s| s.first_token.as_ref())
        .map(|f| f.mean_p.clone());
    let cond = Condition {
        name: name.to_string(),
        steering: m.steering.describe()?,
        refusal: me.as_ref().and_then(|me| me.refusal().cloned()),
        compliance: me.as_ref().and_then(|me| me.compliance().cloned()),
        first_token,
        margin,
        margin_change,
        entropy: Some(entropy),
        kl,
    };
    Ok((cond, margins))
}
