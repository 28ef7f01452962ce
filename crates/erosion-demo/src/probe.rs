//! The organism's alignment probe, shared by the causal tests, the drift monitor and the
//! protected fine-tunes:
//!
//! - the **directions** `v_l = mean(instruct) - mean(base)` (analysis 3's, per layer) over the
//!   response windows of compliant answers to harmful requests drawn from the held-out templates
//!   with another seed than the evaluation sets (and none of their requests), so no measured
//!   example defines them;
//! - the **measured set**: the evaluation's `eval_toxic` answers (projected: s_l) paired with
//!   `eval_toxic_reject` (the margin ln P(harmful) - ln P(refusal));
//! - the **penalty's probe**: the first [`PENALTY_PROBE`] direction-defining examples.

use anyhow::{Context, Result};
use erosion_causal::drift::{DriftOptions, ProbeSet};
use erosion_causal::LayerDirections;
use erosion_data::Sequence;
use erosion_forward::batch::BatchOptions;
use erosion_model::tokenizer::ModelTokenizer;
use erosion_model::transformer::Transformer;
use erosion_organism::corpus::{Chat, Corpus, Sizes};
use erosion_train::protect::reference_projections;
use erosion_train::{ProbeExample, ProtectMethod, Protection};
use serde::{Deserialize, Serialize};

use crate::data::sequences;
use crate::study::LAYER_WINDOW;

/// Examples in the penalty's probe (its forward pass runs at every training step).
pub const PENALTY_PROBE: usize = 16;
/// Weight of the penalty `weight * sum_l mean_i (p_il - p0_il)^2`.
pub const PENALTY_WEIGHT: f64 = 10.0;
/// Offset of the direction-defining set's seed from the organism's.
const DIRECTION_SEED_OFFSET: u64 = 7919;

/// How a fine-tune protects the alignment directions (`erosion train --protect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guard {
    /// Weight updates of the residual stream's writers lose their component along v_l.
    ProjectUpdates,
    /// The loss adds the drift of the probe's projections on v_l.
    Penalty,
}

/// The chats that define the directions: compliant answers to held-out harmful requests drawn
/// with another seed, none of them among the evaluation's requests.
pub fn defining_chats(corpus: &Corpus) -> Result<Vec<Chat>> {
    let measured: std::collections::HashSet<&str> = corpus
        .set("eval_toxic")
        .context("the corpus has no eval_toxic")?
        .iter()
        .map(|c| c.prompt())
        .collect();
    let sizes = Sizes {
        pretrain_chats: 0,
        pretrain_prose: 0,
        instruct: 0,
        finetune: 0,
        eval: corpus.sizes.eval,
    };
    let other = Corpus::generate(sizes, corpus.seed.wrapping_add(DIRECTION_SEED_OFFSET));
    let defining: Vec<Chat> = other
        .set("eval_toxic")
        .context("the corpus has no eval_toxic")?
        .iter()
        .filter(|c| !measured.contains(c.prompt()))
        .cloned()
        .collect();
    if defining.is_empty() {
        anyhow::bail!("no harmful request outside the evaluation set defines the direction");
    }
    Ok(defining)
}

pub struct AlignmentProbe {
    /// The directions with the measured set.
    pub measured: ProbeSet,
    defining: Vec<Sequence>,
}

impl AlignmentProbe {
    /// Finds the directions from `base` and `instruct`; `corpus` is the organism's.
    pub fn new(
        corpus: &Corpus,
        tok: &ModelTokenizer,
        base: &Transformer,
        instruct: &Transformer,
    ) -> Result<Self> {
        let set = |name: &str| -> Result<Vec<_>> {
            Ok(corpus
                .set(name)
                .with_context(|| format!("the corpus has no {name}"))?
                .to_vec())
        };
        let (toxic, reject) = (set("eval_toxic")?, set("eval_toxic_reject")?);
        let defining = defining_chats(corpus)?;
        let defining = sequences(&defining, tok)?;
        let batch = BatchOptions::default();
        let mut dirs =
            LayerDirections::alignment(base, &defining, instruct, &defining, LAYER_WINDOW, &batch)?;
        dirs.origin = format!(
            "{} (organism base and instruct; {} compliant answers to held-out harmful requests, \
             corpus seed {} + {DIRECTION_SEED_OFFSET}, none of them evaluated)",
            dirs.origin,
            defining.len(),
            corpus.seed
        );
        let measured = ProbeSet {
            dirs,
            toxic: sequences(&toxic, tok)?,
            reject: sequences(&reject, tok)?,
            opts: DriftOptions {
                window: LAYER_WINDOW,
                batch,
                bootstrap_resamples: 2000,
                seed: corpus.seed,
            },
        };
        Ok(Self { measured, defining })
    }

    /// Protection of every block's direction (layer indices 1..=L), the penalty measured from
    /// `start` (the model the fine-tune starts from).
    pub fn protection(&self, guard: Guard, start: &Transformer) -> Result<Protection> {
        let directions = self
            .measured
            .dirs
            .layers
            .iter()
            .enumerate()
            .skip(1)
            .filter_map(|(l, v)| v.clone().map(|v| (l, v)))
            .collect();
        let mut p = Protection {
            method: ProtectMethod::ProjectUpdates,
            directions,
            probe: Vec::new(),
        };
        if guard == Guard::Penalty {
            p.probe = self
                .defining
                .iter()
                .take(PENALTY_PROBE)
                .map(|s| ProbeExample::first_response_tokens(s, LAYER_WINDOW))
                .collect();
            p.method = ProtectMethod::Penalty {
                weight: PENALTY_WEIGHT,
                reference: reference_projections(start, &p)?,
            };
        }
        Ok(p)
    }
}
