//! A steering run's files, each written atomically: `directions.safetensors` and `.npy`,
//! `control_vector.gguf` (llama.cpp), `causal.json` (every number, with provenance) and a
//! self-contained `report.html`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use erosion_forward::notice::Notify;
use erosion_model::atomic::write_bytes_atomic;
use erosion_report::html::Report;
use erosion_report::provenance::Provenance;
use serde::Serialize;

use crate::directions::LayerDirections;
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
    };
    let json = out.join("causal.json");
    write_bytes_atomic(&json, serde_json::to_string_pretty(&file)?.as_bytes())?;
    files.push(json);
    let html = out.join("report.html");
    let mut report = Report::new("erosion steer: causal tests of the alignment direction")
        .provenance(provenance.clone())
        .section(causal_section(results)?);
    if let Some(why) = smoke_run {
        report = report.smoke_run(why);
    }
    report.write(&html)?;
    files.push(html);
    Ok(files)
}
