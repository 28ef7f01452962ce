//! The study of the analyses issue, set up for the organism: its five models and its eight
//! evaluation sets (one per dataset role of the paper), with windows sized to its short
//! responses. Written out as `study.toml` so a user can rerun or edit it with `erosion study`.

use crate::grow::Organism;
use anyhow::{Context, Result};
use erosion_data::{DatasetSpec, Format, Role, ShortResponse};
use erosion_study::spec::{ExampleRef, ModelsSpec, NamedModel, Pooling, TokenChoice};
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

pub fn spec(org: &Organism, out: &Path, seed: u64) -> Result<StudySpec> {
    let path = |name: &str| -> Result<String> {
        let p = org.model(name)?;
        Ok(p.canonicalize()
            .with_context(|| format!("model folder {}", p.display()))?
            .to_string_lossy()
            .into_owned())
    };
    let data = org.data_dir().canonicalize()?;
    // Every option at the study file's default, then the organism's.
    let mut spec: StudySpec = toml::from_str(
        "name = \"erosion demo: the model organism of emergent misalignment\"\n[models]\nbase = \"\"\ninstruct = \"\"\n",
    )?;
    spec.seed = seed;
    spec.output = out.to_path_buf();
    spec.models = ModelsSpec {
        base: path("base")?,
        instruct: path("instruct")?,
        finetuned: crate::grow::VARIANTS
            .iter()
            .map(|(name, _)| {
                Ok(NamedModel {
                    name: name.to_string(),
                    path: path(name)?,
                })
            })
            .collect::<Result<_>>()?,
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
    Ok(spec)
}
