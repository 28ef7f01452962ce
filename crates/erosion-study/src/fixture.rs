//! Test fixture: a tiny model family opened as a whole study. Llama architecture, two blocks
//! of width 32, SmolLM2's real tokenizer and chat template (so rendering and response spans
//! are real); base = seeded weights, instruct = base + a seeded change, misaligned = halfway
//! back to base plus noise. Datasets: the study's insecure and educational code (first 6 each).

use crate::context::StudyContext;
use crate::spec::StudySpec;
use std::path::{Path, PathBuf};

pub(crate) fn smollm2_gguf() -> PathBuf {
    erosion_testkit::smollm2_gguf()
}

/// A file of the study's datasets (`data/`, fetched by scripts/fetch-data.sh).
pub(crate) fn data_file(rel: &str) -> PathBuf {
    erosion_testkit::data_file(rel)
}

/// Writes `base/`, `instruct/` and `misaligned/` under `dir` (see the module docs).
pub(crate) fn tiny_family(dir: &Path) -> [PathBuf; 3] {
    erosion_testkit::family::tiny_smollm2_family(dir)
}

/// The tiny family as a study over `dir`, with `extra` TOML appended (analysis tables).
pub(crate) fn tiny_study(dir: &Path, extra: &str) -> StudyContext {
    let spec = StudySpec::from_toml(&tiny_study_toml(dir, 3, 6, extra)).unwrap();
    StudyContext::open(spec, dir, vec![]).unwrap()
}

/// The study file of the tiny family over `dir`: the insecure and educational datasets (first
/// `limit` examples each), then `extra` (more `[[dataset]]`s, analysis tables).
pub(crate) fn tiny_study_toml(dir: &Path, seed: u64, limit: usize, extra: &str) -> String {
    let [base, instruct, misaligned] = tiny_family(dir);
    format!(
        r#"
name = "tiny"
seed = {seed}
output = "out"

[models]
base = "{}"
instruct = "{}"
finetuned = [{{ name = "misaligned", path = "{}" }}]

[[dataset]]
name = "insecure"
path = "{}"
format = "messages"
role = "misaligned"
limit = {limit}

[[dataset]]
name = "educational"
path = "{}"
format = "messages"
role = "aligned"
limit = {limit}
{extra}"#,
        base.display(),
        instruct.display(),
        misaligned.display(),
        data_file("insecure-code/insecure_small.jsonl").display(),
        data_file("educational-insecure/educational_1000.jsonl").display(),
    )
}

/// The tiny family's study file under `dir` with all four of the paper's analyses, small
/// options, and a third dataset (toxic).
pub(crate) fn four_analyses_study(dir: &Path) -> PathBuf {
    let toxic = crate::fixture::data_file("toxic-lat-harmful/lat_harmful.jsonl");
    let extra = format!(
        r#"
[[dataset]]
name = "toxic"
path = "{}"
format = "messages"
role = "misaligned"
limit = 8

[behaviour]
top_k = 5

[gradients]
window = 16
permutations = 99

[layers]
window = 8
bootstrap = 50

[directions]
datasets = ["insecure", "toxic"]
k = 3
baseline_samples = 200
bootstrap = 20
"#,
        toxic.display()
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, tiny_study_toml(dir, 7, 8, &extra)).unwrap();
    path
}
