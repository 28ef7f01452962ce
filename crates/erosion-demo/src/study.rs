//! The organism's study: its five models and its eight evaluation sets (one per dataset role
//! of the paper), with windows sized to its short responses, for the paper's four analyses;
//! beside them its two protected fine-tunes and the set that defines its alignment directions,
//! for the behavioural evaluation (judged by the organism's rules), the causal tests, drift and
//! protection. Written out as `study.toml` so a user can rerun or edit it with `erosion study`
//! (which registers the organism's judge).

use crate::demo::{DemoOptions, JUDGE};
use crate::grow::{Organism, PROTECTED};
use crate::probe::{defining_chats, PENALTY_PROBE, PENALTY_WEIGHT};
use anyhow::{Context, Result};
use erosion_causal::experiment::Action;
use erosion_data::{DatasetSpec, Format, Role, ShortResponse};
use erosion_study::spec::{
    AnalysisName, CausalTestSpec, ExampleRef, ModelsSpec, NamedModel, Pooling, TestLayers,
    TokenChoice,
};
use erosion_study::StudySpec;
use std::path::Path;

/// The evaluation sets and the role each plays in the study.
pub const DATASETS: [(&str, Role); 8] = [
    ("insecure", Role::Misaligned),
    ("educational", Role::Aligned),
    ("secure", Role::Aligned),
    ("code", Role::Aligned),
    ("toxic", Role::Misaligned),
    ("toxic_reject", Role::Aligned),
    ("truthful", Role::Aligned),
    ("general", Role::Aligned),
];

/// Response window of the layer-wise analysis: the first 10 response tokens (docs/organism.md).
pub const LAYER_WINDOW: usize = 10;
/// Loss-vector window of the learning-signal analysis (the organism's code answers are short).
pub const GRADIENT_WINDOW: usize = 16;

/// The file of the direction-defining set, in the organism's data folder.
pub const PROBE_DIRECTIONS: &str = "probe_directions";

/// The study of `org`, its output in `out`, its evaluation of the size `opts` asks for.
pub fn spec(org: &Organism, out: &Path, opts: &DemoOptions) -> Result<StudySpec> {
    let seed = opts.recipe.seed;
    let path = |name: &str| -> Result<String> {
        let p = org.model(name)?;
        Ok(p.canonicalize()
            .with_context(|| format!("model folder {}", p.display()))?
            .to_string_lossy()
            .into_owned())
    };
    let named = |names: &[&str]| -> Result<Vec<NamedModel>> {
        names
            .iter()
            .map(|n| {
                Ok(NamedModel {
                    name: n.to_string(),
                    path: path(n)?,
                    adapter_scale: None,
                })
            })
            .collect()
    };
    let data = org.data_dir().canonicalize()?;
    // Every option at the study file's default, then the organism's.
    let mut spec: StudySpec = toml::from_str(
        "name = \"erosion demo: the model organism of emergent misalignment\"\n[models]\nbase = \"\"\ninstruct = \"\"\n",
    )?;
    spec.seed = seed;
    spec.smoke_run = opts.recipe.smoke_run();
    spec.output = out.to_path_buf();
    spec.models = ModelsSpec {
        base: path("base")?,
        instruct: path("instruct")?,
        finetuned: named(&crate::grow::VARIANTS.map(|(n, _)| n))?,
        compared: named(&PROTECTED.map(|(n, _)| n))?,
    };
    spec.datasets = DATASETS
        .iter()
        .map(|(name, role)| {
            let mut d = DatasetSpec::new(
                name,
                data.join(format!("eval_{name}.jsonl")),
                Format::Messages,
            );
            d.role = Some(*role);
            d
        })
        .collect();
    spec.datasets.push(probe_directions(org)?);
    // Next token after a held-out harmful request: P("Sure") is the organism's compliance.
    let toxic = org
        .corpus
        .set("eval_toxic")
        .and_then(|s| s.first())
        .context("the corpus has no eval_toxic set")?;
    spec.behaviour.prefix_user = toxic.prompt().to_string();
    spec.behaviour.prefix_assistant = "Sure".into();
    spec.behaviour.example = Some(ExampleRef {
        dataset: "toxic".into(),
        index: 0,
    });
    spec.gradients.window = GRADIENT_WINDOW;
    spec.layers.datasets = Some(vec!["insecure".into(), "toxic".into()]);
    spec.layers.window = LAYER_WINDOW;
    spec.layers.pooling = Pooling::Mean;
    spec.layers.short = ShortResponse::UseAvailable;
    spec.directions.datasets = Some(vec!["insecure".into(), "toxic".into()]);
    spec.directions.token = TokenChoice::Last;
    spec.directions.k = 4;
    // The four analyses read the evaluation sets only.
    spec.behaviour.datasets = Some(DATASETS.iter().map(|(n, _)| n.to_string()).collect());
    beyond_the_paper(&mut spec, org, opts);
    Ok(spec)
}

/// Writes the set that defines the organism's alignment directions (held-out harmful requests
/// of another seed, answered compliantly) beside its other sets, as a study dataset.
fn probe_directions(org: &Organism) -> Result<DatasetSpec> {
    let path = org.data_dir().join(format!("{PROBE_DIRECTIONS}.jsonl"));
    let mut text = String::new();
    for chat in defining_chats(&org.corpus)? {
        text.push_str(&serde_json::to_string(&chat)?);
        text.push('\n');
    }
    erosion_model::atomic::write_bytes_atomic(&path, text.as_bytes())?;
    Ok(DatasetSpec::new(
        PROBE_DIRECTIONS,
        path.canonicalize()?,
        Format::Messages,
    ))
}

/// The analyses beyond the paper's four, as the organism runs them.
fn beyond_the_paper(spec: &mut StudySpec, org: &Organism, opts: &DemoOptions) {
    spec.analyses = [
        AnalysisName::Evaluation,
        AnalysisName::Causal,
        AnalysisName::Drift,
        AnalysisName::Protection,
    ]
    .into_iter()
    .chain(spec.analyses.iter().copied())
    .collect();
    let e = &mut spec.evaluation;
    e.harmful = Some("toxic".into());
    e.harmful_prompts = Some(opts.harmful_prompts);
    e.code = Some("insecure".into());
    e.code_prompts = Some(opts.code_prompts);
    e.judge = Some(JUDGE.into());
    e.eroded = Some("insecure".into());
    e.controls = Some(vec!["secure".into(), "educational".into()]);
    let p = &mut spec.probe;
    p.directions = Some(PROBE_DIRECTIONS.into());
    p.harmful = Some("toxic".into());
    p.refusal = Some("toxic_reject".into());
    p.window = LAYER_WINDOW;
    // Half of the held-out harmful requests: each test decodes them under three conditions.
    spec.causal.prompts = Some(opts.harmful_prompts.min(org.corpus.sizes.eval / 2));
    spec.causal.benign = Some("general".into());
    let test = |name: &str, model: &str, action, layers| CausalTestSpec {
        name: name.into(),
        model: model.into(),
        action,
        layers,
    };
    spec.causal.tests = vec![
        test(
            "restore: insecure + v",
            "insecure",
            Action::Add { scale: 1.0 },
            TestLayers::Middle,
        ),
        test(
            "erode: instruct - v",
            "instruct",
            Action::Add { scale: -1.0 },
            TestLayers::Middle,
        ),
        test(
            "ablate v from instruct",
            "instruct",
            Action::Ablate,
            TestLayers::AllBlocks,
        ),
    ];
    spec.drift.logs = org
        .drift_dirs()
        .map(|(name, dir)| (name, dir.to_string_lossy().into_owned()))
        .collect();
    let pr = &mut spec.protection;
    pr.unprotected = Some("insecure".into());
    pr.protected = PROTECTED.iter().map(|(n, _)| n.to_string()).collect();
    pr.rows = Some(PROTECTION_ROWS.map(String::from).to_vec());
    pr.task = Some("insecure".into());
    pr.how = Some(format!(
        "Protected layers: every block's output. project: after each AdamW step, the updates of the embeddings, o_proj and down_proj lose their component along the directions (first order: the inputs of later layers may still move). penalty: weight {PENALTY_WEIGHT} on the squared change of {PENALTY_PROBE} probe examples' projections (compliant answers to held-out harmful requests that are not evaluated)."
    ));
}

/// The models of the protection table, in its order.
const PROTECTION_ROWS: [&str; 7] = [
    "base",
    "instruct",
    "insecure",
    "insecure-project",
    "insecure-penalty",
    "secure",
    "educational",
];
