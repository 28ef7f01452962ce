//! Task (d): the layer-wise alignment direction v_l = mu_l^instruct - mu_l^base (finding 3),
//! and the "base" model it is measured with.
//!
//! mu_l^m = mean over examples of the window mean of Hugging Face's `hidden_states[l]`
//! (l = 0..=L; L is after the final norm) over the first T response tokens, model m. Every
//! example has at least T response tokens (`prepare --window T` selects them), so no
//! short-response policy is involved.
//!
//! erosion streams: [`record_windows`] copies out only the T window rows per example and
//! layer through hooks, one batch at a time, and each is pooled at once into f64 running sums
//! ([`LayerMeans`]); nothing grows with the number of examples. Each sequence is fed up to
//! its last window token (`ids[..response.start + T]`), as `record_windows` does.
//!
//! No base/instruct pair of one architecture is available offline, so the converted
//! SmolLM2-135M-Instruct plays "instruct" and [`perturb`] writes its "base": every weight
//! multiplied by `1 + scale * u`, u uniform in [-1, 1) from a seeded generator.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use erosion_analysis::layers::{alignment_directions, pool_window, Pooling, WindowSpec};
use erosion_analysis::stream::LayerMeans;
use erosion_data::{Sequence, ShortResponse};
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_forward::windows::{record_windows, LayerConvention, Layers, Window, WindowOptions};
use erosion_model::load::save_hf_folder;
use erosion_model::seed::SplitMix64;
use erosion_model::transformer::Transformer;

use super::{batch_options, load, open, result, Inputs};
use crate::measure::{best_of, TaskResult};

/// v_l for every layer of the two models of `inputs`, best of `reps`; writes v (`[L + 1][d]`,
/// JSON) to `values_out` for the peer to compare against. The task is named `layers-<n>`.
pub fn layers(inputs: &Inputs, reps: usize, values_out: &Path) -> Result<TaskResult> {
    let t = inputs
        .window
        .context("the inputs have no response window: prepare them with --window T --base DIR")?;
    let base = inputs
        .base
        .as_ref()
        .context("the inputs name no base model")?;
    // Both models stay loaded through the timed runs (as on the peer's side).
    let instruct = load(&inputs.model)?;
    let base = load(base)?;
    let seqs = inputs.sequences()?;
    let batch = batch_options(inputs);
    let (runs, (directions, held)) = best_of(reps, || {
        let (mu_i, held_i) = layer_means(&instruct, &seqs, t, &batch)?;
        let (mu_b, held_b) = layer_means(&base, &seqs, t, &batch)?;
        Ok((alignment_directions(&mu_b, &mu_i)?, held_i.max(held_b)))
    })?;
    let tokens: usize = inputs.examples.iter().map(|e| e.response.start + t).sum();
    let n = inputs.examples.len();
    let mut r = result(&format!("layers-{n}"), runs, 2 * tokens)?;
    erosion_model::atomic::write_bytes_atomic(
        values_out,
        serde_json::to_string(&directions)?.as_bytes(),
    )?;
    let norms: Vec<f64> = directions
        .iter()
        .map(|v| v.iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect();
    r.extra.insert("window".into(), t.into());
    r.extra.insert("direction_norms".into(), norms.into());
    r.extra.insert("max_values_held".into(), held.into());
    Ok(r)
}

/// mu_l for l = 0..=L of one model, and the most hidden-state values its hooks held at once.
fn layer_means(
    model: &Transformer,
    seqs: &[Sequence],
    t: usize,
    batch: &BatchOptions,
) -> Result<(Vec<Vec<f64>>, usize)> {
    let opts = WindowOptions {
        layers: Layers::All,
        convention: LayerConvention::HfHiddenStates,
        window: Window::Response { offset: 0, len: t },
        short: ShortResponse::Error,
    };
    let spec = WindowSpec {
        len: t,
        offset: 0,
        pooling: Pooling::Mean,
        short: ShortResponse::Error,
    };
    let d = model.config().hidden_size;
    let mut means = LayerMeans::new(model.n_layers() + 1, d);
    let report = record_windows(model, seqs, &opts, batch, &mut NoProgress, &mut |r| {
        // The record holds exactly the window's rows: [T, d].
        let z = pool_window(
            &r.flat()?,
            r.positions.len(),
            d,
            0..r.positions.len(),
            &spec,
        )?
        .context("a full window was not pooled")?;
        means.push(r.layer, &z)
    })?;
    if report.recorded != seqs.len() || means.counts().iter().any(|&c| c != seqs.len() as u64) {
        bail!(
            "recorded {} of {} examples (counts per layer {:?})",
            report.recorded,
            seqs.len(),
            means.counts()
        );
    }
    Ok((means.means()?, report.max_values_held))
}

/// How the base model is derived from the instruct one; stored as `perturbation.json` in the
/// folder so a changed recipe rewrites it.
fn recipe(src: &Path, scale: f64, seed: u64) -> serde_json::Value {
    serde_json::json!({
        "source": src,
        "rule": "w * (1 + scale * u), u uniform in [-1, 1) from splitmix64(seed), one stream over the tensors in name order, row-major",
        "scale": scale,
        "seed": seed,
    })
}

/// Writes the "base" folder `out`: the model at `src` (a Hugging Face folder) with every
/// weight multiplied by `1 + scale * u` (see [`recipe`]), stored as f32 with the same
/// config and tokenizer. Does nothing when `out` already holds this recipe's result.
pub fn perturb(src: &Path, out: &Path, scale: f64, seed: u64) -> Result<()> {
    let want = recipe(src, scale, seed);
    let stamp = out.join("perturbation.json");
    if out.join("config.json").exists() {
        let have: Option<serde_json::Value> = std::fs::read_to_string(&stamp)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        if have.as_ref() == Some(&want) {
            println!("{} already perturbed", out.display());
            return Ok(());
        }
    }
    let ckpt = open(src)?;
    let mut tensors = ckpt.tensors(DType::F32, &Device::Cpu)?;
    let mut names: Vec<String> = tensors.keys().cloned().collect();
    names.sort();
    let mut rng = SplitMix64(seed);
    for name in names {
        let t = &tensors[&name];
        let w: Vec<f32> = t
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|x| (x as f64 * (1.0 + scale * uniform(&mut rng))) as f32)
            .collect();
        let shape = t.shape().clone();
        tensors.insert(name, Tensor::from_vec(w, shape, &Device::Cpu)?);
    }
    let gen = ckpt.generation_config.as_ref();
    save_hf_folder(
        out,
        &ckpt.config,
        &tensors,
        &ckpt.tokenizer,
        gen,
        &Default::default(),
    )
    .with_context(|| format!("saving {}", out.display()))?;
    erosion_model::atomic::write_bytes_atomic(
        &stamp,
        serde_json::to_string_pretty(&want)?.as_bytes(),
    )?;
    println!(
        "perturbed {} -> {} (scale {scale}, seed {seed})",
        src.display(),
        out.display()
    );
    Ok(())
}

/// Uniform in [-1, 1) from the top 53 bits of the next splitmix64 output: enough for a fixed
/// noise pattern.
fn uniform(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_seeded_and_uniform_in_range() {
        let draw = |seed| {
            let mut r = SplitMix64(seed);
            (0..10_000).map(|_| uniform(&mut r)).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        assert!(a.iter().all(|&u| (-1.0..1.0).contains(&u)));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!(a.iter().any(|&u| u < -0.99) && a.iter().any(|&u| u > 0.99));
    }
}
