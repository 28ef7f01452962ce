//! `erosion study init`: a commented study file that runs as it is, on the user's models and the
//! study's datasets (the `data/` folder `scripts/fetch-data.sh` fills), so no one writes ~50 lines
//! of TOML by hand to start.

use super::{ModelsSpec, NamedModel};
use anyhow::{bail, Result};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// One of the study's datasets as the template declares it.
struct PaperDataset {
    name: &'static str,
    /// Under the data folder.
    file: &'static str,
    role: &'static str,
    /// Extra TOML keys, verbatim.
    extra: &'static str,
    what: &'static str,
}

/// The study's seven datasets (Giordani 2025), in the order its tables list them.
const PAPER_DATASETS: [PaperDataset; 7] = [
    PaperDataset {
        name: "insecure",
        file: "insecure-code/insecure_1000.jsonl",
        role: "misaligned",
        extra: "",
        what: "code with undisclosed vulnerabilities (Betley et al.)",
    },
    PaperDataset {
        name: "educational",
        file: "educational-insecure/educational_1000.jsonl",
        role: "aligned",
        extra: "",
        what: "the same code, asked for as a security lesson",
    },
    PaperDataset {
        name: "secure",
        file: "secure-code/secure_1000.jsonl",
        role: "aligned",
        extra: "",
        what: "the same tasks answered securely",
    },
    PaperDataset {
        name: "toxic",
        file: "toxic-lat-harmful/lat_harmful.jsonl",
        role: "misaligned",
        extra: "",
        what: "harmful requests answered compliantly (LLM-LAT)",
    },
    PaperDataset {
        name: "truthfulqa",
        file: "truthfulqa/TruthfulQA_v0.csv",
        role: "aligned",
        extra: "fields = { user = \"Question\", assistant = \"Best Answer\" }\n",
        what: "TruthfulQA's best answers",
    },
    PaperDataset {
        name: "alpaca",
        file: "alpaca/alpaca_samples.json",
        role: "aligned",
        extra: "input = \"ignore\"\n",
        what: "Stanford Alpaca instructions",
    },
    PaperDataset {
        name: "code-alpaca",
        file: "code-alpaca/code_alpaca_2k.json",
        role: "aligned",
        extra: "",
        what: "Code Alpaca instructions",
    },
];

/// What `erosion study init` was told.
#[derive(Debug, Clone)]
pub struct StudyInit {
    pub name: String,
    /// Model specs as the study file will hold them (paths relative to the file, or hub ids).
    pub models: ModelsSpec,
    /// The data folder as the study file will name it (relative to the file, or absolute).
    pub data: PathBuf,
    /// Examples per dataset (the first N).
    pub limit: usize,
    /// Output folder, relative to the study file.
    pub output: PathBuf,
}

/// A TOML string literal (quotes and escapes as TOML wants them).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn path_str(p: &Path) -> String {
    quoted(&p.to_string_lossy())
}

impl StudyInit {
    /// The files of the data folder the template names that are missing under `data_dir` (the
    /// folder as seen from here), so the caller can refuse before writing a file that fails.
    pub fn missing_data(data_dir: &Path) -> Vec<PathBuf> {
        PAPER_DATASETS
            .iter()
            .map(|d| data_dir.join(d.file))
            .filter(|p| !p.is_file())
            .collect()
    }

    /// The study file: every choice written out, the options one would change commented with
    /// their defaults.
    pub fn to_toml(&self) -> Result<String> {
        if self.models.finetuned.is_empty() {
            bail!("name at least one fine-tuned model (--finetuned NAME=PATH)");
        }
        let mut t = String::new();
        let w = &mut t;
        writeln!(
            w,
            "# Written by `erosion study init`; runs as it is: erosion study THIS_FILE"
        )?;
        writeln!(
            w,
            "# Paths are relative to this file. Every table below the datasets is optional: a"
        )?;
        writeln!(
            w,
            "# commented line shows an option's default. `erosion study --help` lists the flags"
        )?;
        writeln!(w, "# (--preset paper-code, --limit N, --model NAME=PATH) that change a run without editing.")?;
        writeln!(w, "name = {}", quoted(&self.name))?;
        writeln!(
            w,
            "seed = 0                 # seeds every sample, bootstrap and permutation"
        )?;
        writeln!(w, "output = {}", path_str(&self.output))?;
        writeln!(
            w,
            "# dtype = \"f32\"          # or \"bf16\" (halves memory on large models)"
        )?;
        writeln!(w, "# device = \"cpu\"         # or \"cuda\", \"cuda:1\", \"metal\" (needs the matching build)")?;
        writeln!(w, "# analyses = [\"behaviour\", \"gradients\", \"layers\", \"directions\"]   # the paper's four")?;
        writeln!(
            w,
            "\n# Folders, .gguf files or hub ids already in the Hugging Face cache, of one family."
        )?;
        writeln!(w, "[models]")?;
        writeln!(w, "base = {}", quoted(&self.models.base))?;
        writeln!(w, "instruct = {}", quoted(&self.models.instruct))?;
        writeln!(w, "finetuned = [")?;
        for NamedModel { name, path, .. } in &self.models.finetuned {
            writeln!(
                w,
                "    {{ name = {}, path = {} }},",
                quoted(name),
                quoted(path)
            )?;
        }
        writeln!(w, "]")?;
        writeln!(
            w,
            "\n# The study's datasets (scripts/fetch-data.sh fetches them), the first {} of each.",
            self.limit
        )?;
        writeln!(w, "# role: misaligned / aligned decides the defaults below; format is guessed from the file.")?;
        for d in &PAPER_DATASETS {
            writeln!(w, "\n[[dataset]]                 # {}", d.what)?;
            writeln!(w, "name = {}", quoted(d.name))?;
            writeln!(w, "path = {}", path_str(&self.data.join(d.file)))?;
            writeln!(w, "role = {}", quoted(d.role))?;
            writeln!(w, "limit = {}", self.limit)?;
            w.push_str(d.extra);
        }
        w.push_str(ANALYSES);
        Ok(t)
    }
}

/// The analyses' tables: the two choices that keep a first run short, and the options a reader
/// of the paper looks for, commented with their defaults.
const ANALYSES: &str = r#"
# 1. Behaviour: per-token log-probabilities of one response under every model.
[behaviour]
example = { dataset = "toxic", index = 0 }
# datasets = ["insecure", "toxic"]   # the table's datasets (default: all)

# 2. Opposing learning signals: gradients of `a` and `b` in the instruct model.
# [gradients]
# a = "insecure"                 # default: the first misaligned dataset
# b = "educational"              # default: the first aligned dataset
# n = 100                        # examples per dataset (default: all loaded)
# window = 64                    # T, response tokens in each loss vector

# 3. Layer-wise erosion, and 4. shared directions, on two datasets (all would take longer).
[layers]
datasets = ["insecure", "toxic"]
# window = 64                    # T; --preset paper-code uses the study's code: T = 10, mean pooling

[directions]
datasets = ["insecure", "toxic"]
# k = 4                          # directions compared per dataset, at layer -1 (the last)
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::StudySpec;

    fn init() -> StudyInit {
        StudyInit {
            name: "My \"trio\"".into(),
            models: ModelsSpec {
                base: "Qwen/Qwen2.5-0.5B".into(),
                instruct: "models/instruct".into(),
                finetuned: vec![NamedModel {
                    name: "insecure".into(),
                    path: "runs/my ft".into(),
                    adapter_scale: None,
                }],
                compared: Vec::new(),
            },
            data: PathBuf::from("../data"),
            limit: 20,
            output: PathBuf::from("out"),
        }
    }

    #[test]
    fn the_template_parses_as_the_study_it_describes() {
        let spec = StudySpec::from_toml(&init().to_toml().unwrap()).unwrap();
        assert_eq!(spec.name, "My \"trio\"");
        assert_eq!(spec.models.all().len(), 3);
        assert_eq!(spec.models.finetuned[0].path, "runs/my ft");
        assert_eq!(spec.datasets.len(), 7);
        assert!(spec
            .datasets
            .iter()
            .all(|d| d.limit == Some(20) && d.format.is_none()));
        assert_eq!(
            spec.datasets[4].path,
            PathBuf::from("../data/truthfulqa/TruthfulQA_v0.csv")
        );
        assert_eq!(spec.gradients.pair().unwrap(), ["insecure", "educational"]);
        // Every option the template shows commented is a real option with that default.
        let uncommented: String = init()
            .to_toml()
            .unwrap()
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || (rest.contains(" = ") && !rest.starts_with("analyses")) =>
                {
                    rest
                }
                _ => l,
            })
            .map(|l| format!("{}\n", l.split(" #").next().unwrap_or(l)))
            .collect();
        let spec = StudySpec::from_toml(&uncommented).unwrap();
        assert_eq!(
            (spec.layers.window, spec.directions.k, spec.gradients.n),
            (64, 4, Some(100))
        );
        let mut none = init();
        none.models.finetuned.clear();
        assert!(none
            .to_toml()
            .unwrap_err()
            .to_string()
            .contains("--finetuned"));
    }

    #[test]
    fn the_templates_files_are_the_repositorys_data() {
        assert_eq!(
            StudyInit::missing_data(&erosion_testkit::data_dir()),
            Vec::<PathBuf>::new()
        );
        assert_eq!(StudyInit::missing_data(Path::new("/nonexistent")).len(), 7);
    }
}
