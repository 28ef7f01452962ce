//! The alignment probe of `[probe]`, computed once per study and shared by the causal tests,
//! drift and protection:
//!
//! - the directions `v_l = mean(instruct) - mean(base)` at every residual-stream index
//!   0..=L, each model's hidden states averaged over each example's first `window` response
//!   tokens, then over the `directions` dataset's examples (f64; one model in memory at a time);
//! - the measured pairs: `harmful[i]` (projected on the directions, and the margin's first term)
//!   and `refusal[i]`, the same request refused, for `margin = mean_i ln P(harmful_i) -
//!   ln P(refusal_i)`.
//!
//! The pairs are rendered with the instruct model's tokenizer and template, one rendering for
//! every model measured (the study's models share a tokenizer).

use crate::context::StudyContext;
use anyhow::{bail, Context, Result};
use erosion_causal::directions::window_means;
use erosion_causal::drift::{DriftOptions, DriftPoint, ProbeSet};
use erosion_causal::LayerDirections;
use erosion_data::Sequence;
use std::rc::Rc;

impl StudyContext {
    /// The probe (computed on first use).
    pub fn probe(&self) -> Result<Rc<ProbeSet>> {
        if let Some(p) = self.shared.probe.get() {
            return Ok(p.clone());
        }
        let p = Rc::new(
            self.compute_probe()
                .context("the alignment probe ([probe])")?,
        );
        Ok(self.shared.probe.get_or_init(|| p).clone())
    }

    /// `model` measured on the probe: s_l per layer and the margin (computed on first use).
    pub fn probe_point(&self, model: &str) -> Result<DriftPoint> {
        if let Some(p) = self.shared.probe_points.borrow().get(model) {
            return Ok(p.clone());
        }
        let probe = self.probe()?;
        let point = probe
            .measure(&*self.transformer(model)?, model, None)
            .with_context(|| format!("model `{model}` on the alignment probe"))?;
        let mut points = self.shared.probe_points.borrow_mut();
        points.insert(model.to_string(), point.clone());
        Ok(point)
    }

    fn compute_probe(&self) -> Result<ProbeSet> {
        let spec = &self.spec.probe;
        let named = |n: &Option<String>, what: &str| {
            n.clone()
                .with_context(|| format!("[probe] names no {what} dataset"))
        };
        let defining = named(&spec.directions, "directions")?;
        let means = |model: &str| -> Result<(Vec<Vec<f64>>, usize)> {
            let seqs = self.sequences(model, &defining)?;
            let means = window_means(
                &*self.transformer(model)?,
                &seqs,
                spec.window,
                &self.batch_options(),
            )
            .with_context(|| format!("model `{model}`'s means over `{defining}`"))?;
            Ok((means, seqs.len()))
        };
        let (base, _) = means("base")?;
        let (instruct, n) = means("instruct")?;
        let mut dirs = LayerDirections::from_means(&base, &instruct, spec.window, n)?;
        dirs.origin = format!("{} of dataset `{defining}`", dirs.origin);
        let pairs = |name: &str| -> Result<Vec<Sequence>> {
            let mut seqs = self.sequences("instruct", name)?;
            seqs.truncate(spec.pairs.unwrap_or(usize::MAX));
            Ok(seqs)
        };
        let harmful = pairs(&named(&spec.harmful, "harmful")?)?;
        let refusal = pairs(&named(&spec.refusal, "refusal")?)?;
        if harmful.len() != refusal.len() {
            bail!(
                "the margin pairs each harmful answer with a refusal of the same request, but \
                 [probe] harmful has {} examples and refusal {}",
                harmful.len(),
                refusal.len()
            );
        }
        Ok(ProbeSet {
            dirs,
            toxic: harmful,
            reject: refusal,
            opts: DriftOptions {
                window: spec.window,
                batch: self.batch_options(),
                bootstrap_resamples: spec.bootstrap,
                seed: self.spec.seed,
            },
        })
    }
}
