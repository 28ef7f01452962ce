//! The study's analyses behind one trait, and the registry that names them.
//!
//! An analysis computes typed, serialisable results from a [`StudyContext`] (forward passes
//! through erosion-forward, statistics from erosion-analysis, arrays saved under `arrays/`),
//! then turns them into its report section. A library user calls [`Analysis::run`] for the
//! typed numbers; the study runs every analysis the spec names through [`registered`] and
//! writes each one's results under its [`Analysis::KEY`] in results.json.
//!
//! Adding an analysis: a module with a unit type implementing [`Analysis`], a variant of
//! [`AnalysisName`] (how STUDY.toml names it), and one line in [`registered`].

use crate::context::StudyContext;
use crate::pass::Pass;
use crate::section::SectionOutput;
use crate::spec::AnalysisName;
use anyhow::Result;
use erosion_report::html::Section;
use serde::Serialize;

/// What one analysis hands back: its typed numbers and its report section.
pub struct Finished<R> {
    pub results: R,
    pub section: Section,
}

/// One analysis of the study.
pub trait Analysis {
    /// The key of its results in results.json.
    const KEY: &'static str;
    /// The report section's heading.
    const TITLE: &'static str;
    /// Every number the analysis computed, with the options that made it.
    type Results: Serialize;

    /// Runs the analysis on `ctx`'s models and datasets.
    fn run(ctx: &StudyContext) -> Result<Finished<Self::Results>>;

    /// The cached forward passes [`Analysis::run`] reads, so a sharded study can run them
    /// first, split over processes ([`crate::shard`]). Work that is not cached is not named:
    /// it runs when the shards are merged.
    fn passes(_ctx: &StudyContext) -> Result<Vec<Pass>> {
        Ok(Vec::new())
    }
}

/// An analysis as the study runs it: named, titled, its results erased to JSON.
#[derive(Clone, Copy)]
pub struct Registered {
    pub key: &'static str,
    pub title: &'static str,
    run: fn(&StudyContext) -> Result<SectionOutput>,
    passes: fn(&StudyContext) -> Result<Vec<Pass>>,
}

impl Registered {
    fn of<A: Analysis>() -> Self {
        Registered {
            key: A::KEY,
            title: A::TITLE,
            run: |ctx| {
                let done = A::run(ctx)?;
                Ok(SectionOutput {
                    key: A::KEY,
                    results: serde_json::to_value(&done.results)?,
                    section: done.section,
                })
            },
            passes: A::passes,
        }
    }

    pub fn run(&self, ctx: &StudyContext) -> Result<SectionOutput> {
        (self.run)(ctx)
    }

    pub fn passes(&self, ctx: &StudyContext) -> Result<Vec<Pass>> {
        (self.passes)(ctx)
    }
}

/// The analysis STUDY.toml calls `name`.
pub fn registered(name: AnalysisName) -> Registered {
    match name {
        AnalysisName::Behaviour => Registered::of::<crate::behaviour::BehaviourAnalysis>(),
        AnalysisName::Gradients => Registered::of::<crate::gradients::GradientsAnalysis>(),
        AnalysisName::Layers => Registered::of::<crate::layers::LayersAnalysis>(),
        AnalysisName::Directions => Registered::of::<crate::directions::DirectionsAnalysis>(),
        AnalysisName::Evaluation => Registered::of::<crate::evaluation::EvaluationAnalysis>(),
        AnalysisName::Causal => Registered::of::<crate::causal::CausalAnalysis>(),
        AnalysisName::Drift => Registered::of::<crate::drift::DriftAnalysis>(),
        AnalysisName::Protection => Registered::of::<crate::protection::ProtectionAnalysis>(),
    }
}
