//! `erosion-bench fixtures`: the GPU check (scripts/gpu-check.sh). The tiny transformers
//! fixtures of crates/erosion-model run on one device, in f32 and bf16, against the logits
//! transformers wrote (the same bounds as the CPU tests in tests/suite/hf_fixtures.rs), and
//! the log-probs and gradients tasks on that device against the same tasks on the CPU (whose
//! gradients the CPU tests hold against finite differences). Prints one table; fails if any row
//! fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use erosion_data::Sequence;
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_forward::gradients::{GradientComputer, LossSpec, ParamSelection};
use erosion_forward::logprobs::response_logprobs;
use erosion_forward::row_store::MemoryRows;
use erosion_model::transformer::{ForwardOptions, Transformer};
use erosion_model::Config;

/// One line of the table.
struct Row {
    fixture: String,
    dtype: &'static str,
    check: &'static str,
    against: &'static str,
    err: f64,
    bound: f64,
}

impl Row {
    fn ok(&self) -> bool {
        self.err.is_finite() && self.err <= self.bound
    }
}

/// Runs every `tiny-*` fixture under `dir` on `device` (named as the CLI names it).
pub fn run(dir: &Path, device_name: &str) -> Result<()> {
    let device = erosion_model::device::parse_device(device_name)?;
    let mut archs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("tiny-"))
                && p.join("reference.safetensors").is_file()
        })
        .collect();
    archs.sort();
    if archs.is_empty() {
        bail!(
            "no tiny-* fixture with reference.safetensors in {}",
            dir.display()
        );
    }
    let mut rows = Vec::new();
    for fixture in &archs {
        let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
        let reference =
            candle_core::safetensors::load(fixture.join("reference.safetensors"), &Device::Cpu)?;
        rows.extend(
            logits_rows(&name, fixture, &reference, &device).with_context(|| name.clone())?,
        );
        rows.extend(task_rows(&name, fixture, &reference, &device).with_context(|| name.clone())?);
    }
    println!("erosion on {device_name} ({device:?}) against transformers' fixtures and its own CPU results");
    println!();
    println!("| fixture | dtype | check | against | max abs diff | bound | ok |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.2e} | {:.2e} | {} |",
            r.fixture,
            r.dtype,
            r.check,
            r.against,
            r.err,
            r.bound,
            if r.ok() { "yes" } else { "**NO**" }
        );
    }
    let failed = rows.iter().filter(|r| !r.ok()).count();
    if failed > 0 {
        bail!("{failed} of {} checks failed", rows.len());
    }
    println!();
    println!("all {} checks pass", rows.len());
    Ok(())
}

fn load(fixture: &Path, dtype: DType, device: &Device) -> Result<Transformer> {
    let cfg = Config::from_file(&fixture.join("config.json"))?;
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[fixture.join("model.safetensors")], dtype, device)?
    };
    Transformer::new(&cfg, vb)
}

/// Logits of the fixture batch (left as transformers padded it) against transformers', at the
/// valid positions: f32 within 1e-4; bf16 by the CPU test's two bounds (mean error at most
/// 1.5x transformers' own bf16 mean error, max distance to its bf16 logits at most 2x its own
/// largest bf16 error).
fn logits_rows(
    name: &str,
    fixture: &Path,
    reference: &HashMap<String, Tensor>,
    device: &Device,
) -> Result<Vec<Row>> {
    let ids = reference["input_ids"]
        .to_dtype(DType::U32)?
        .to_device(device)?;
    let mask_cpu = &reference["attention_mask"];
    let mask = mask_cpu.to_device(device)?;
    let logits = |dtype| -> Result<Tensor> {
        let model = load(fixture, dtype, device)?;
        let out = model.forward(&ids, Some(&mask), &mut ForwardOptions::fast())?;
        if out.dtype() != dtype {
            bail!("{dtype:?} model gave {:?} logits", out.dtype());
        }
        Ok(out.to_device(&Device::Cpu)?)
    };
    let (hf_f32, hf_bf16) = (&reference["logits"], &reference["logits_bf16"]);
    let f32_err = masked_diff(&logits(DType::F32)?, hf_f32, mask_cpu, Reduce::Max)?;
    let bf16 = logits(DType::BF16)?;
    let hf_mean = masked_diff(hf_bf16, hf_f32, mask_cpu, Reduce::Mean)?;
    let hf_max = masked_diff(hf_bf16, hf_f32, mask_cpu, Reduce::Max)?;
    let row = |dtype, check, against, err, bound| Row {
        fixture: name.to_string(),
        dtype,
        check,
        against,
        err,
        bound,
    };
    Ok(vec![
        row("f32", "logits", "transformers f32", f32_err, 1e-4),
        row(
            "bf16",
            "logits (mean)",
            "transformers f32",
            masked_diff(&bf16, hf_f32, mask_cpu, Reduce::Mean)?,
            1.5 * hf_mean,
        ),
        row(
            "bf16",
            "logits",
            "transformers bf16",
            masked_diff(&bf16, hf_bf16, mask_cpu, Reduce::Max)?,
            2.0 * hf_max,
        ),
    ])
}

/// The log-probs and gradients tasks (f32) on `device` against the same on the CPU, on the
/// fixture batch's sequences with their second half as the response.
fn task_rows(
    name: &str,
    fixture: &Path,
    reference: &HashMap<String, Tensor>,
    device: &Device,
) -> Result<Vec<Row>> {
    let ids = reference["input_ids"]
        .to_dtype(DType::U32)?
        .to_vec2::<u32>()?;
    let mask = reference["attention_mask"]
        .to_dtype(DType::U32)?
        .to_vec2::<u32>()?;
    // transformers' fixture batch may be padded on either side: keep the valid tokens.
    let seqs = ids
        .iter()
        .zip(&mask)
        .map(|(i, m)| {
            let ids: Vec<u32> = i
                .iter()
                .zip(m)
                .filter(|(_, &m)| m == 1)
                .map(|(&i, _)| i)
                .collect();
            let n = ids.len();
            Sequence::new(ids, n / 2..n)
        })
        .collect::<Result<Vec<_>>>()?;
    let opts = BatchOptions {
        max_tokens: 4096,
        max_batch: 64,
    };
    let logprobs = |device: &Device| -> Result<Vec<f32>> {
        let model = load(fixture, DType::F32, device)?;
        let out = response_logprobs(&model, &seqs, &opts, None, &mut NoProgress)?;
        Ok(out.into_iter().flat_map(|r| r.logprobs).collect())
    };
    // The gradient at the last layer's o_proj of the mean response loss, every example.
    let gradients = |device: &Device| -> Result<Vec<f32>> {
        let model = load(fixture, DType::F32, device)?;
        let loss = LossSpec::default();
        let gc = GradientComputer::new(&model, &ParamSelection::LastOProj, loss)?;
        let mut rows = MemoryRows::new(gc.dim())?;
        let run = gc.run(&seqs, seqs.len(), &mut rows, &mut |_| {})?;
        if run.rows.len() != seqs.len() {
            bail!("{} of {} examples skipped", run.skipped.len(), seqs.len());
        }
        let mut all = Vec::new();
        for k in 0..rows.n_rows() {
            all.extend_from_slice(rows.row(k)?);
        }
        Ok(all)
    };
    let lp = max_diff(&logprobs(device)?, &logprobs(&Device::Cpu)?)?;
    let (g_dev, g_cpu) = (gradients(device)?, gradients(&Device::Cpu)?);
    // Relative to the gradient's largest entry: its scale depends on the random weights.
    let g_scale = g_cpu
        .iter()
        .fold(0f64, |m, &v| m.max(v.abs() as f64))
        .max(1e-30);
    let g = max_diff(&g_dev, &g_cpu)? / g_scale;
    let row = |check, err, bound| Row {
        fixture: name.to_string(),
        dtype: "f32",
        check,
        against: "erosion on cpu",
        err,
        bound,
    };
    Ok(vec![
        row("response log-probs", lp, 1e-4),
        row("o_proj gradients (relative)", g, 1e-4),
    ])
}

#[derive(Clone, Copy)]
enum Reduce {
    Max,
    Mean,
}

/// |a - b| over the positions where `mask` `[batch, seq]` is 1, largest or mean per value.
fn masked_diff(a: &Tensor, b: &Tensor, mask: &Tensor, reduce: Reduce) -> Result<f64> {
    if a.dims() != b.dims() {
        bail!("shapes differ: {:?} and {:?}", a.dims(), b.dims());
    }
    let mut shape = mask.dims().to_vec();
    shape.resize(a.rank(), 1);
    let m = mask.to_dtype(DType::F64)?.reshape(shape)?;
    let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?
        .abs()?
        .broadcast_mul(&m)?;
    Ok(match reduce {
        Reduce::Max => d.flatten_all()?.max(D::Minus1)?.to_scalar::<f64>()?,
        Reduce::Mean => {
            let per_row: usize = a.dims()[mask.rank()..].iter().product();
            d.sum_all()?.to_scalar::<f64>()? / (m.sum_all()?.to_scalar::<f64>()? * per_row as f64)
        }
    })
}

fn max_diff(a: &[f32], b: &[f32]) -> Result<f64> {
    if a.len() != b.len() {
        bail!("{} values against {}", a.len(), b.len());
    }
    Ok(a.iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs())))
}
