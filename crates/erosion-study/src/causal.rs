//! Causal tests (`[causal]`): each test acts on one model along the probe's alignment
//! directions (adds `scale * v_l`, or ablates `v_l`, at the chosen layers during every forward
//! pass), beside the same action along a random direction of the same norms, and measures the
//! margin ln P(harmful) - ln P(refusal) with its paired change, the next-token entropy along the
//! harmful answers and the KL cost on benign answers ([`erosion_causal::experiment`]); with the
//! evaluation's judge, also the refusal and compliance rates of answers decoded under steering.
//! The directions are written as safetensors, `.npy` and a llama.cpp control vector.

use crate::analysis::{Analysis, Finished};
use crate::context::StudyContext;
use crate::spec::TestLayers;
use anyhow::{bail, Context, Result};
use erosion_causal::experiment::{run_test, CausalData, CausalOptions, CausalResult, CausalTest};
use erosion_causal::html::causal_section;
use erosion_causal::LayerDirections;
use erosion_eval::{EvalOptions, EvalPrompts, PromptKind};
use serde::Serialize;

/// The causal tests' numbers.
#[derive(Debug, Clone, Serialize)]
pub struct CausalResults {
    /// How the directions were made.
    pub directions: String,
    pub options: CausalOptions,
    /// The judge of the rates (None: no answer decoded).
    pub judge: Option<String>,
    pub tests: Vec<CausalResult>,
    /// Directions and results files, relative to the study's output.
    pub files: Vec<String>,
}

pub struct CausalAnalysis;

impl Analysis for CausalAnalysis {
    const KEY: &'static str = "causal";
    const TITLE: &'static str = "Causal tests: steering along the alignment direction";
    type Results = CausalResults;

    fn run(ctx: &StudyContext) -> Result<Finished<CausalResults>> {
        let spec = &ctx.spec.causal;
        let probe = ctx.probe()?;
        let n = spec
            .prompts
            .unwrap_or(probe.toxic.len())
            .min(probe.toxic.len());
        let benign_name = spec
            .benign
            .as_deref()
            .context("[causal] names no benign dataset")?;
        let mut benign = ctx.sequences("instruct", benign_name)?;
        benign.truncate(n);
        let prompts = harmful_prompts(ctx, n)?;
        let data = CausalData {
            prompts: &prompts,
            toxic: &probe.toxic[..n],
            reject: &probe.reject[..n],
            benign: &benign,
        };
        let opts = CausalOptions {
            eval: EvalOptions {
                seed: ctx.spec.seed,
                two_turn: false,
                ..ctx.spec.evaluation.sampling.clone()
            },
            batch: ctx.batch_options(),
            control_seed: ctx.spec.seed.wrapping_add(1),
        };
        let judge_name = ctx.spec.evaluation.judge.as_deref();
        let judge = judge_name.and_then(|j| ctx.shared.judges.get(j));
        let mut tests = Vec::new();
        for t in &spec.tests {
            let test = CausalTest {
                name: t.name.clone(),
                action: t.action,
                layers: layers(&probe.dirs, &t.layers)?,
            };
            let mut m = ctx.loaded_model(&t.model)?;
            let r = run_test(&mut m, &probe.dirs, &test, &data, judge, &opts)
                .with_context(|| format!("causal test `{}`", t.name))?;
            tests.push(r);
        }
        let mut section = causal_section(&tests)?;
        let mut notes = Vec::new();
        let dir = ctx.out.join("causal");
        let model_type = &ctx.model("base")?.checkpoint.config.model_type;
        let written = erosion_causal::output::write_all(
            &dir,
            &probe.dirs,
            &tests,
            (&ctx.provenance, ctx.spec.smoke_run.as_deref()),
            model_type,
            &mut |line: &str| notes.push(line.to_string()),
        )?;
        if judge.is_none() {
            notes.push(
                "No answer was decoded under steering (no judge registered for [evaluation]): \
                 the rates are left out, the log-prob measures stand."
                    .into(),
            );
        }
        section.notes.extend(notes);
        let files = ctx.relative_to_out(&written);
        let results = CausalResults {
            directions: probe.dirs.origin.clone(),
            options: opts,
            judge: judge.map(|j| j.info().name),
            tests,
            files,
        };
        Ok(Finished { results, section })
    }
}

/// The residual-stream indices a test acts at.
fn layers(dirs: &LayerDirections, chosen: &TestLayers) -> Result<Vec<usize>> {
    let blocks: Vec<usize> = dirs.available().into_iter().filter(|&l| l > 0).collect();
    Ok(match chosen {
        TestLayers::Middle => vec![*blocks
            .get(blocks.len() / 2)
            .context("no block has an alignment direction")?],
        TestLayers::AllBlocks if blocks.is_empty() => {
            bail!("no block has an alignment direction")
        }
        TestLayers::AllBlocks => blocks,
        TestLayers::Indices(v) => v.clone(),
    })
}

/// The first `n` user turns of the probe's harmful answers, as the evaluation's `harmful` set.
fn harmful_prompts(ctx: &StudyContext, n: usize) -> Result<EvalPrompts> {
    let name = ctx
        .spec
        .probe
        .harmful
        .as_deref()
        .context("[probe] names no harmful dataset")?;
    let mut set = erosion_eval::PromptSet::from_dataset(PromptKind::Harmful, ctx.dataset(name)?)?;
    set.name = PromptKind::Harmful.name().to_string();
    set.prompts.truncate(n);
    Ok(EvalPrompts::new(vec![set]))
}
