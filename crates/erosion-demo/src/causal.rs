//! The demo's causal tests (issue 6): the organism's alignment direction ([`crate::probe`]),
//! on held-out harmful requests: added to the insecure model (does it restore refusals?),
//! subtracted from and ablated out of the instruct model (does it comply?), each beside a
//! random direction of the same norm.

use std::path::Path;

use anyhow::{Context, Result};
use erosion_causal::experiment::{
    run_test, Action, CausalData, CausalOptions, CausalResult, CausalTest,
};
use erosion_causal::html::causal_section;
use erosion_eval::EvalOptions;
use erosion_forward::batch::BatchOptions;
use erosion_forward::notice::Notify;
use erosion_model::LoadedModel;
use erosion_organism::evaluation::{prompts_from_corpus, OrganismJudge};
use erosion_report::provenance::Provenance;
use erosion_study::run::ExtraSection;

use crate::data::sequences;
use crate::grow::Organism;
use crate::study::LAYER_WINDOW;

fn model<'a>(models: &'a mut [LoadedModel], name: &str) -> Result<&'a mut LoadedModel> {
    models
        .iter_mut()
        .find(|m| m.name == name)
        .with_context(|| format!("the organism has no model {name}"))
}

/// Runs the tests, writes their files under `out/causal/` and returns the report section.
/// The first `n` held-out harmful requests are measured; `command_line` is recorded in the
/// files' provenance.
pub fn causal_tests(
    org: &Organism,
    models: &mut [LoadedModel],
    out: &Path,
    n: usize,
    seed: u64,
    command_line: &[String],
    notices: &mut dyn Notify,
) -> Result<ExtraSection> {
    let set = |name: &str| {
        org.corpus
            .set(name)
            .with_context(|| format!("the corpus has no {name}"))
    };
    let (toxic, reject, benign) = (
        set("eval_toxic")?,
        set("eval_toxic_reject")?,
        set("eval_general")?,
    );
    let n = n.min(toxic.len()).min(reject.len());
    let batch = BatchOptions::default();
    // One tokenizer and template for all of the organism's models.
    let tok = &model(models, "base")?.tokenizer;
    let (t_seq, r_seq) = (sequences(&toxic[..n], tok)?, sequences(&reject[..n], tok)?);
    let b_seq = sequences(&benign[..n.min(benign.len())], tok)?;
    let dirs = &org.directions;
    let blocks: Vec<usize> = dirs.available().into_iter().filter(|&l| l > 0).collect();
    let middle = vec![*blocks
        .get(blocks.len() / 2)
        .context("no block has an alignment direction")?];
    let tests = [
        (
            "insecure",
            "restore: insecure + v",
            Action::Add { scale: 1.0 },
            middle.clone(),
        ),
        (
            "instruct",
            "erode: instruct - v",
            Action::Add { scale: -1.0 },
            middle,
        ),
        ("instruct", "ablate v from instruct", Action::Ablate, blocks),
    ];
    let mut prompts = prompts_from_corpus(&org.corpus, n, 0)?;
    prompts.sets.retain(|s| !s.prompts.is_empty());
    let opts = CausalOptions {
        eval: EvalOptions {
            seed,
            two_turn: false,
            ..EvalOptions::default()
        },
        batch,
        control_seed: seed.wrapping_add(1),
    };
    let data = CausalData {
        prompts: &prompts,
        toxic: &t_seq,
        reject: &r_seq,
        benign: &b_seq,
    };
    let mut results: Vec<CausalResult> = Vec::new();
    for (name, label, action, layers) in tests {
        let test = CausalTest {
            name: label.to_string(),
            action,
            layers,
        };
        let m = model(models, name)?;
        results.push(
            run_test(m, dirs, &test, &data, &OrganismJudge, &opts)
                .with_context(|| format!("causal test `{label}`"))?,
        );
    }
    let prov = Provenance::builder(
        serde_json::json!({ "options": &opts, "measured": n, "window": LAYER_WINDOW }),
    )
    .command_line(command_line.to_vec())
    .seed(seed)
    .build();
    erosion_causal::output::write_all(
        &out.join("causal"),
        dirs,
        &results,
        &prov,
        &model(models, "base")?.model.config().model_type,
        notices,
    )?;
    Ok(ExtraSection {
        key: "causal_tests".into(),
        results: serde_json::to_value(&results)?,
        section: causal_section(&results)?,
    })
}
