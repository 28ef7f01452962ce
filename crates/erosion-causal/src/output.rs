//! A steering run's files, each written atomically: `directions.safetensors` and `.npy`,
//! `control_vector.gguf` (llama.cpp), `causal.json` (every number, with provenance), a
//! self-contained `report.html`, and with `--questions` `em_answers.jsonl` (every judged
//! answer of every condition).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use erosion_forward::notice::Notify;
use erosion_model::atomic::write_bytes_atomic;
use erosion_report::html::Report;
use erosion_report::provenance::Provenance;
use serde::Serialize;

use crate::directions::LayerDirections;
use crate::em_conditions::{ConditionAnswer, EmSteer};
use crate::em_html::em_section;
use crate::experiment::CausalResult;
use crate::export::{write_control_vector, write_npy, write_safetensors};
use crate::html::causal_section;

/// `causal.json`'s layout.
#[derive(Serialize)]
struct CausalFile<'a> {
    format: &'static str,
    provenance: &'a Provenance,
    directions: DirectionsInfo<'a>,
    results: &'a [CausalResult],
    /// Soligo et al.'s conditions on the EM protocol (`--questions` runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    em: Option<&'a EmSteer>,
}

#[derive(Serialize)]
struct DirectionsInfo<'a> {
    origin: &'a str,
    d_model: usize,
    /// |v_l| per layer index (0 where there is none).
    norms: Vec<f64>,
    /// Layers a llama.cpp control vector cannot carry (the embeddings and block 0's output).
    left_out_of_control_vector: Vec<usize>,
}

/// Writes every file into `out` and returns their paths. `model_hint` names the architecture
/// in the control vector (e.g. "qwen2"); a control vector that cannot be written is a notice.
/// `smoke_run`, when the run cannot support verdicts, says why on the report.
pub fn write_all(
    out: &Path,
    dirs: &LayerDirections,
    results: &[CausalResult],
    run: (&Provenance, Option<&str>),
    model_hint: &str,
    notices: &mut dyn Notify,
) -> Result<Vec<PathBuf>> {
    write_run(out, dirs, results, None, run, model_hint, notices)
}

/// [`write_all`], with the EM conditions and their answers when the run measured them.
pub fn write_run(
    out: &Path,
    dirs: &LayerDirections,
    results: &[CausalResult],
    em: Option<(&EmSteer, &[ConditionAnswer])>,
    (provenance, smoke_run): (&Provenance, Option<&str>),
    model_hint: &str,
    notices: &mut dyn Notify,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut files = vec![
        out.join("directions.safetensors"),
        out.join("directions.npy"),
    ];
    write_safetensors(dirs, &files[0])?;
    write_npy(dirs, &files[1])?;
    let gguf = out.join("control_vector.gguf");
    // A vector with no steerable layer (a one-block model) is reported, not fatal.
    let left_out = match write_control_vector(dirs, 1.0, model_hint, &gguf) {
        Ok(left) => {
            files.push(gguf);
            left
        }
        Err(e) => {
            notices.notice(&format!("no control vector written: {e:#}"));
            dirs.available()
        }
    };
    let file = CausalFile {
        format: "erosion-causal-1",
        provenance,
        directions: DirectionsInfo {
            origin: &dirs.origin,
            d_model: dirs.d_model,
            norms: dirs.norms(),
            left_out_of_control_vector: left_out,
        },
        results,
        em: em.map(|(e, _)| e),
    };
    let json = out.join("causal.json");
    write_bytes_atomic(&json, serde_json::to_string_pretty(&file)?.as_bytes())?;
    files.push(json);
    let mut report = Report::new("erosion steer: causal tests of the alignment direction")
        .provenance(provenance.clone());
    if !results.is_empty() || em.is_none() {
        report = report.section(causal_section(results)?);
    }
    if let Some((e, answers)) = em {
        let path = out.join("em_answers.jsonl");
        erosion_model::atomic::write_jsonl_atomic(&path, answers)?;
        files.push(path);
        report = report.section(em_section(e)?);
    }
    let html = out.join("report.html");
    if let Some(why) = smoke_run {
        report = report.smoke_run(why);
    }
    report.write(&html)?;
    files.push(html);
    Ok(files)
}
