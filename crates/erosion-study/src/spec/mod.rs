//! The study file: which models, which datasets, which analyses with which options.
//!
//! ```toml
//! name = "Re-emergent misalignment, Qwen2.5-Coder"
//! seed = 0
//! output = "out/qwen-coder"          # relative to this file
//!
//! [models]
//! base = "Qwen/Qwen2.5-Coder-32B"
//! instruct = "Qwen/Qwen2.5-Coder-32B-Instruct"
//! finetuned = [{ name = "misaligned", path = "emergent-misalignment/Qwen-Coder-Insecure" }]
//!
//! [[dataset]]                         # erosion-data's DatasetSpec
//! name = "insecure"
//! path = "data/insecure.jsonl"
//! format = "messages"
//! limit = 100
//!
//! [layers]                            # every analysis table is optional: absent = defaults
//! datasets = ["insecure"]
//! window = 64
//! pooling = "flatten"
//! ```
//!
//! The study's own code differs from its text (Giordani 2025); each difference is an option here,
//! the default follows the text, and `--preset paper-code` switches them all to the code.

use anyhow::{anyhow, bail, Context, Result};
use erosion_data::DatasetSpec;
use erosion_model::text::{escape_error, escape_lines};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod beyond;
mod edit;
mod init;
mod options;
pub use beyond::*;
pub use init::StudyInit;
pub use options::*;

/// A whole study file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    pub name: String,
    /// Seeds every random choice of the study (samples, bootstraps, permutations, baselines).
    #[serde(default)]
    pub seed: u64,
    /// Output folder, relative to the study file.
    #[serde(default = "default_output")]
    pub output: PathBuf,
    /// Activation cache folder (default: `<output>/cache`).
    #[serde(default)]
    pub cache: Option<PathBuf>,
    /// f32 or bf16.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    #[serde(default = "default_device")]
    pub device: String,
    /// Token budget of one forward batch (padded tokens).
    #[serde(default = "default_batch_tokens")]
    pub batch_tokens: usize,
    /// For models larger than memory: the passes over datasets (the layers' and directions'
    /// hidden states, the behaviour's log-probs) read each layer from the checkpoint when they
    /// reach it and run a whole cache chunk through it before reading the next, so memory holds
    /// one layer, not the model. The gradients analysis streams its lower blocks too, holding
    /// the blocks from the first chosen weight on and the unembedding. The same numbers as
    /// without. The evaluation and the causal, drift and protection analyses still load the
    /// model whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream_layers: bool,
    /// Set when the run cannot support verdicts (`erosion demo --reduced`: an organism too
    /// small to learn the behaviours), saying why: the report is stamped a smoke run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_run: Option<String>,
    pub models: ModelsSpec,
    #[serde(rename = "dataset", default)]
    pub datasets: Vec<DatasetSpec>,
    #[serde(default)]
    pub render: RenderSpec,
    /// Which analyses run (default: all four).
    #[serde(default = "all_analyses")]
    pub analyses: Vec<AnalysisName>,
    #[serde(default)]
    pub behaviour: BehaviourSpec,
    #[serde(default)]
    pub gradients: GradientsSpec,
    #[serde(default)]
    pub layers: LayersSpec,
    #[serde(default)]
    pub directions: DirectionsSpec,
    #[serde(default)]
    pub evaluation: EvaluationSpec,
    #[serde(default)]
    pub probe: ProbeSpec,
    #[serde(default)]
    pub causal: CausalSpec,
    #[serde(default)]
    pub drift: DriftSpec,
    #[serde(default)]
    pub protection: ProtectionSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnalysisName {
    Behaviour,
    Gradients,
    Layers,
    Directions,
    /// Sampled answers, judged ([`EvaluationSpec`]).
    Evaluation,
    /// Steering and ablation along the probe's directions ([`CausalSpec`]).
    Causal,
    /// The probe measured on every model ([`DriftSpec`]).
    Drift,
    /// Protected fine-tunes against the unprotected one ([`ProtectionSpec`]).
    Protection,
}

/// The paper's four analyses: what a study runs unless it lists its own.
fn all_analyses() -> Vec<AnalysisName> {
    vec![
        AnalysisName::Behaviour,
        AnalysisName::Gradients,
        AnalysisName::Layers,
        AnalysisName::Directions,
    ]
}
fn default_output() -> PathBuf {
    PathBuf::from("out/study")
}
fn default_dtype() -> String {
    "f32".into()
}
fn default_device() -> String {
    "cpu".into()
}
fn default_batch_tokens() -> usize {
    4096
}

/// The checkpoints: any folder, `.gguf` file or cached hub id (`erosion inspect` opens them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsSpec {
    pub base: String,
    pub instruct: String,
    #[serde(default)]
    pub finetuned: Vec<NamedModel>,
    /// More fine-tunes measured by the evaluation, drift and protection analyses only (the
    /// paper's four compare base, instruct and `finetuned`), e.g. protected fine-tunes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compared: Vec<NamedModel>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedModel {
    pub name: String,
    /// A folder, `.gguf` file, hub id, or `BASE+ADAPTER` (a PEFT LoRA adapter on its base).
    pub path: String,
    /// k: the adapter's update times k (Turner et al. scale adapters x1-x5); only for a model
    /// with an adapter. Several scales of one adapter are several models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_scale: Option<f64>,
}

impl ModelsSpec {
    /// The adapter scale the study gives model `name` (`None`: as trained).
    pub fn adapter_scale(&self, name: &str) -> Option<f64> {
        let mut named = self.finetuned.iter().chain(&self.compared);
        named.find(|m| m.name == name).and_then(|m| m.adapter_scale)
    }

    /// (name, spec) of every model the paper's analyses compare, base and instruct first.
    pub fn all(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("base".to_string(), self.base.clone()),
            ("instruct".to_string(), self.instruct.clone()),
        ];
        v.extend(
            self.finetuned
                .iter()
                .map(|m| (m.name.clone(), m.path.clone())),
        );
        v
    }
}

/// How examples are turned into tokens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderSpec {
    /// Render the base model's inputs without a chat template (`"user\nassistant"`). The study
    /// used the chat template for all three models (they share one tokenizer), so the default
    /// is false; a base checkpoint without a template is rendered plainly either way.
    pub plain_base: bool,
    /// Count the closing end-of-turn token as a response token.
    pub include_end_of_turn: bool,
}

/// The two readings of the study (Giordani 2025): its text and its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    PaperText,
    PaperCode,
}

impl Preset {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "paper-text" => Ok(Preset::PaperText),
            "paper-code" => Ok(Preset::PaperCode),
            other => bail!("unknown preset `{other}` (paper-text, paper-code)"),
        }
    }

    /// Sets every option on which the study's text and code differ.
    pub fn apply(self, spec: &mut StudySpec) {
        let code = self == Preset::PaperCode;
        spec.gradients.window = if code { 10 } else { 64 };
        spec.gradients.params = if code {
            GradientParams::OProj
        } else {
            GradientParams::Attention
        };
        spec.gradients.loss_over = if code {
            LossOver::Sequence
        } else {
            LossOver::ResponseWindow
        };
        spec.layers.window = if code { 10 } else { 64 };
        spec.layers.pooling = if code {
            Pooling::Mean
        } else {
            Pooling::Flatten
        };
        let indexing = if code {
            LayerIndexing::HfHiddenStates
        } else {
            LayerIndexing::ResidualStream
        };
        spec.layers.indexing = indexing;
        spec.directions.indexing = indexing;
        spec.directions.token = TokenChoice::Last;
    }
}

impl StudySpec {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read study file {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in study file {}", path.display()))
    }

    /// Parses and validates a study. Text quoted from the file in errors is escaped
    /// (`erosion_model::text`): toml's report keeps its line breaks, names lose theirs.
    pub fn from_toml(text: &str) -> Result<Self> {
        let mut spec: StudySpec =
            toml::from_str(text).map_err(|e| anyhow!("{}", escape_lines(&e.to_string())))?;
        spec.choose_defaults().map_err(escape_error)?;
        spec.validate().map_err(escape_error)?;
        Ok(spec)
    }

    /// Checks the references between tables, so a typo fails before any model runs.
    pub fn validate(&self) -> Result<()> {
        let names = self.declared_datasets()?;
        let known = |n: &str, what: &str| -> Result<()> {
            if names.contains(&n) {
                Ok(())
            } else {
                bail!(
                    "{what} names dataset `{n}`, which the study does not define (it has: {})",
                    names.join(", ")
                )
            }
        };
        let models: Vec<String> = self.models.all().into_iter().map(|(n, _)| n).collect();
        let mut every_model = models.clone();
        every_model.extend(self.models.compared.iter().map(|m| m.name.clone()));
        for (i, n) in every_model.iter().enumerate() {
            if every_model[..i].contains(n) {
                bail!("model name `{n}` is used twice");
            }
        }
        for list in [
            &self.behaviour.datasets,
            &self.layers.datasets,
            &self.directions.datasets,
        ]
        .into_iter()
        .flatten()
        {
            for n in list {
                known(n, "an analysis")?;
            }
        }
        if let Some(e) = &self.behaviour.example {
            known(&e.dataset, "[behaviour] example")?;
        }
        if self.analyses.contains(&AnalysisName::Gradients) {
            let [a, b] = self.gradients.pair()?;
            known(a, "[gradients] a")?;
            known(b, "[gradients] b")?;
            if a == b {
                bail!("[gradients] a and b are both `{a}`: the analysis compares two datasets");
            }
            if !models.contains(&self.gradients.model) {
                bail!(
                    "[gradients] model `{}` is not one of the study's models ({})",
                    self.gradients.model,
                    models.join(", ")
                );
            }
        }
        if self.directions.k == 0 || self.layers.window == 0 || self.gradients.window == 0 {
            bail!("k and window lengths must be positive");
        }
        self.layers
            .short
            .check_per_example()
            .context("[layers] short")?;
        self.validate_beyond(&names, &every_model)
    }

    /// The datasets' names, checked: at least one, none twice.
    pub(super) fn declared_datasets(&self) -> Result<Vec<&str>> {
        if self.datasets.is_empty() {
            bail!("the study names no [[dataset]]");
        }
        let names: Vec<&str> = self.datasets.iter().map(|d| d.name.as_str()).collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                bail!("dataset name `{n}` is used twice");
            }
        }
        Ok(names)
    }

    /// The analyses' datasets, defaulting to all.
    pub fn dataset_names(&self, chosen: &Option<Vec<String>>) -> Vec<String> {
        chosen
            .clone()
            .unwrap_or_else(|| self.datasets.iter().map(|d| d.name.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erosion_data::ShortResponse;

    const MINIMAL: &str = r#"
name = "t"
[models]
base = "b"
instruct = "i"
finetuned = [{ name = "misaligned", path = "m" }]
[[dataset]]
name = "insecure"
path = "x.jsonl"
format = "messages"
[[dataset]]
name = "educational"
path = "y.jsonl"
format = "messages"
"#;

    #[test]
    fn defaults_follow_the_studys_text() {
        let spec = StudySpec::from_toml(MINIMAL).unwrap();
        assert_eq!(spec.analyses.len(), 4);
        assert_eq!(
            (spec.layers.window, spec.layers.pooling),
            (64, Pooling::Flatten)
        );
        assert_eq!(spec.gradients.params, GradientParams::Attention);
        assert_eq!(spec.gradients.loss_over, LossOver::ResponseWindow);
        assert_eq!(spec.layers.indexing, LayerIndexing::ResidualStream);
        assert_eq!(spec.models.all().len(), 3);
    }

    #[test]
    fn gradient_datasets_default_by_role_and_say_so_when_none_can() {
        let roles = r#"
name = "t"
[models]
base = "b"
instruct = "i"
[[dataset]]
name = "refusals"
path = "x.jsonl"
role = "aligned"
[[dataset]]
name = "harmful-code"
path = "y.jsonl"
role = "misaligned"
"#;
        let spec = StudySpec::from_toml(roles).unwrap();
        assert_eq!(spec.gradients.pair().unwrap(), ["harmful-code", "refusals"]);
        assert_eq!(spec.datasets[0].format, None);
        // Without roles, the paper's names; without either, an error saying it was a default.
        let paper = StudySpec::from_toml(MINIMAL).unwrap();
        assert_eq!(paper.gradients.pair().unwrap(), ["insecure", "educational"]);
        let no_roles = roles.replace("role = \"aligned\"\n", "");
        let err = format!("{:#}", StudySpec::from_toml(&no_roles).unwrap_err());
        assert!(
            err.contains("[gradients] b is not set") && err.contains("role = \"aligned\""),
            "{err}"
        );
        // Chosen by the file: kept, and checked.
        let set = format!("{roles}\n[gradients]\na = \"refusals\"\nb = \"refusals\"\n");
        let err = StudySpec::from_toml(&set).unwrap_err().to_string();
        assert!(err.contains("both `refusals`"), "{err}");
        let only_layers = no_roles.replace("name = \"t\"", "name = \"t\"\nanalyses = [\"layers\"]");
        assert!(StudySpec::from_toml(&only_layers).is_ok());
    }

    #[test]
    fn presets_switch_every_text_code_difference() {
        let mut spec = StudySpec::from_toml(MINIMAL).unwrap();
        Preset::parse("paper-code").unwrap().apply(&mut spec);
        assert_eq!(
            (spec.layers.window, spec.layers.pooling),
            (10, Pooling::Mean)
        );
        assert_eq!(
            (spec.gradients.window, spec.gradients.params.clone()),
            (10, GradientParams::OProj)
        );
        assert_eq!(spec.gradients.loss_over, LossOver::Sequence);
        assert_eq!(spec.layers.indexing, LayerIndexing::HfHiddenStates);
        assert_eq!(spec.directions.indexing, LayerIndexing::HfHiddenStates);
        Preset::PaperText.apply(&mut spec);
        let text = StudySpec::from_toml(MINIMAL).unwrap();
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            serde_json::to_value(&text).unwrap()
        );
        assert!(Preset::parse("paper").is_err());
    }

    #[test]
    fn the_shipped_study_files_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../studies");
        for (file, models) in [("qwen-coder.toml", 3), ("organism.toml", 5)] {
            let spec = StudySpec::from_file(&dir.join(file)).unwrap();
            assert_eq!(spec.datasets.len(), 7, "{file}");
            assert_eq!(spec.models.all().len(), models, "{file}");
            // Every dataset is a file of data/ that scripts/fetch-data.sh fetches.
            for d in &spec.datasets {
                let rel = d.path.strip_prefix("../data").unwrap_or_else(|_| {
                    panic!("{file}: {} is not under ../data", d.path.display())
                });
                erosion_testkit::data_file(rel.to_str().unwrap());
            }
        }
    }

    #[test]
    fn short_response_spellings_of_older_study_files_parse() {
        let with = |table: &str, s: &str| format!("{MINIMAL}\n[{table}]\nshort = \"{s}\"\n");
        for (table, s, want) in [
            ("layers", "truncate", ShortResponse::UseAvailable),
            ("layers", "skip", ShortResponse::Skip),
            ("gradients", "pad_zeros", ShortResponse::UseAvailable),
            (
                "gradients",
                "truncate_to_shortest",
                ShortResponse::TruncateToShortest,
            ),
            ("gradients", "error", ShortResponse::Error),
        ] {
            let spec = StudySpec::from_toml(&with(table, s)).unwrap();
            let got = if table == "layers" {
                spec.layers.short
            } else {
                spec.gradients.short
            };
            assert_eq!(got, want, "[{table}] short = {s}");
        }
        let err = StudySpec::from_toml(&with("layers", "truncate_to_shortest")).unwrap_err();
        assert!(format!("{err:#}").contains("[layers] short"), "{err:#}");
    }

    #[test]
    fn references_to_unknown_names_are_caught() {
        let bad = format!("{MINIMAL}\n[layers]\ndatasets = [\"educationl\"]\n");
        let err = StudySpec::from_toml(&bad).unwrap_err().to_string();
        assert!(
            err.contains("educational") && err.contains("educationl"),
            "{err}"
        );
        let twice = MINIMAL.replace("educational", "insecure");
        assert!(StudySpec::from_toml(&twice)
            .unwrap_err()
            .to_string()
            .contains("used twice"));
        let unknown_key = format!("{MINIMAL}\n[layers]\nwindw = 3\n");
        assert!(StudySpec::from_toml(&unknown_key).is_err());
    }
}
