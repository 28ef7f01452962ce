//! Hidden states at chosen layers and token positions, streamed example by example (the
//! inputs of analyses 3 and 4).
//!
//! Layers use the study's notation (Giordani 2025): layer 0 is the token embeddings and layer l
//! (1..=L) the residual stream after block l-1, `blocks.{l-1}.hook_resid_post`. Hugging Face's
//! `output_hidden_states[L]` is instead taken *after* the final norm (`model.norm`); the
//! study's code read those, so [`LayerConvention::HfHiddenStates`] offers that indexing. The
//! default, [`LayerConvention::ResidualStream`], keeps the residual stream at every layer.
//!
//! The hidden state "of response token t" is the one at the position of token t (the state
//! after reading it), as in `hidden_states[:, start:start + T]`.
//!
//! Memory: per batch, hooks copy out only the selected rows, `[n_rows, d_model]` per layer
//! (never every position of every layer); each sequence runs only up to its last selected
//! position (later tokens cannot change a causal model's earlier states) and only through the
//! blocks the deepest requested layer needs. Rows go to a sink as soon as a batch is done, so
//! what is held never grows with the number of examples.

use crate::batch::{pass_groups, plan_batches, Batch, BatchOptions, Progress};
use crate::depth::Depth;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use erosion_data::{Sequence, ShortResponse};
use erosion_model::hooks::{HookPoint, Positions};
use erosion_model::transformer::Transformer;
use serde::{Deserialize, Serialize};

/// What layer index L (the last) means. Indices 0..L-1 mean the same in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerConvention {
    /// 0 = `hook_embed`, l = `blocks.{l-1}.hook_resid_post` for l in 1..=L: the residual
    /// stream at every layer (TransformerLens' `resid_post`).
    #[default]
    ResidualStream,
    /// Hugging Face's `output_hidden_states[l]`: as above, but L = `ln_final.hook_normalized`
    /// (after the final norm), which is what the study's code used.
    HfHiddenStates,
}

impl LayerConvention {
    /// The hook point of layer index `layer` (0..=n_layers).
    pub fn hook_point(self, layer: usize, n_layers: usize) -> Result<HookPoint> {
        match self {
            LayerConvention::HfHiddenStates => HookPoint::hf_hidden_state(layer, n_layers),
            LayerConvention::ResidualStream if layer <= n_layers => Ok(HookPoint::resid(layer)),
            LayerConvention::ResidualStream => bail!(
                "layer {layer} does not exist: a model of {n_layers} blocks has layers 0..={n_layers} \
                 (0 = embeddings, l = output of block l-1)"
            ),
        }
    }
}

/// Which layers to record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layers {
    /// 0..=L: the embeddings and every block's output.
    #[default]
    All,
    /// These layer indices (0..=L).
    List(Vec<usize>),
}

/// Which token positions of each example to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// Response tokens `offset..offset + len` (T = `len`; the study: 64 in its text, 10 in its
    /// code).
    Response { offset: usize, len: usize },
    /// The last response token.
    LastResponseToken,
    /// The last token of the sequence (the study's choice for analysis 4).
    LastToken,
}

/// What [`record_windows`] records. Serialised into cache keys: every field changes results.
/// Fields left out of a serialised form take their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowOptions {
    pub layers: Layers,
    pub convention: LayerConvention,
    pub window: Window,
    pub short: ShortResponse,
}

impl Default for WindowOptions {
    /// Every layer, residual stream, the first 64 response tokens (the study's text), an
    /// error for shorter responses.
    fn default() -> Self {
        WindowOptions {
            layers: Layers::All,
            convention: LayerConvention::ResidualStream,
            window: Window::Response { offset: 0, len: 64 },
            short: ShortResponse::Error,
        }
    }
}

/// Token positions of one example, or why it has none.
enum Selection {
    Positions(Vec<usize>),
    Skip { available: usize, wanted: usize },
}

impl WindowOptions {
    /// The recorded layer indices, ascending and without repeats, for `n_layers` blocks.
    pub fn layer_indices(&self, n_layers: usize) -> Result<Vec<usize>> {
        let mut layers = match &self.layers {
            Layers::All => (0..=n_layers).collect(),
            Layers::List(v) if v.is_empty() => bail!("the list of layers to record is empty"),
            Layers::List(v) => v.clone(),
        };
        layers.sort_unstable();
        layers.dedup();
        for &l in &layers {
            self.convention.hook_point(l, n_layers)?;
        }
        Ok(layers)
    }

    /// The positions example `index` contributes (token indices into `seq.ids`), or `None`
    /// when the short-response policy leaves it out. Errors under [`ShortResponse::Error`].
    pub fn positions(&self, index: usize, seq: &Sequence) -> Result<Option<Vec<usize>>> {
        Ok(match self.select(index, seq)? {
            Selection::Positions(p) => Some(p),
            Selection::Skip { .. } => None,
        })
    }

    fn select(&self, index: usize, seq: &Sequence) -> Result<Selection> {
        let r = &seq.response;
        let (start, wanted) = match self.window {
            Window::LastToken => return Ok(Selection::Positions(vec![seq.len() - 1])),
            Window::LastResponseToken => (r.end.saturating_sub(1).max(r.start), 1),
            Window::Response { offset, len } => {
                if len == 0 {
                    bail!("the window length T must be at least 1");
                }
                (r.start + offset, len)
            }
        };
        let available = r.end.saturating_sub(start).min(wanted);
        if available == wanted {
            return Ok(Selection::Positions((start..start + wanted).collect()));
        }
        let offset = start - r.start;
        self.short.check_per_example()?;
        match self.short {
            ShortResponse::Error => bail!(
                "example {index}: the response has {} tokens, fewer than the window needs \
                 (offset {offset} + T {wanted}); choose the short-response policy `skip` or \
                 `use_available` to go on",
                r.len()
            ),
            ShortResponse::UseAvailable if available > 0 => {
                Ok(Selection::Positions((start..start + available).collect()))
            }
            _ => Ok(Selection::Skip { available, wanted }),
        }
    }
}

/// Hidden states of one example at one layer, handed to the sink.
#[derive(Debug)]
pub struct WindowRecord<'a> {
    /// Index of the example in the input.
    pub example: usize,
    /// Layer index (0 = embeddings; see [`LayerConvention`]).
    pub layer: usize,
    /// Token positions of the rows, in `seq.ids`. `[n_positions]`
    pub positions: &'a [usize],
    /// The hidden states, one row per position. `[n_positions, d_model]` f32 on the CPU
    pub hidden: &'a Tensor,
}

impl WindowRecord<'_> {
    /// The rows, concatenated: `[n_positions * d_model]`.
    pub fn flat(&self) -> Result<Vec<f32>> {
        Ok(self.hidden.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// An example the short-response policy left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub example: usize,
    /// Response tokens available in the window.
    pub available: usize,
    /// Tokens the window asked for.
    pub wanted: usize,
}

/// What a pass recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WindowReport {
    /// Examples sent to the sink.
    pub recorded: usize,
    pub skipped: Vec<Skipped>,
    /// The most hidden-state values held by the hooks at once (one batch's selected rows
    /// over all recorded layers): bounded by the batch options, not by the dataset.
    pub max_values_held: usize,
}

/// Examples the options leave out, and the positions of the others (`None` when left out).
#[allow(clippy::type_complexity)]
pub(crate) fn select_all(
    seqs: &[Sequence],
    opts: &WindowOptions,
) -> Result<(Vec<Option<Vec<usize>>>, Vec<Skipped>)> {
    Sequence::check_all(seqs)?;
    let mut skipped = Vec::new();
    let mut sel = Vec::with_capacity(seqs.len());
    for (i, s) in seqs.iter().enumerate() {
        match opts.select(i, s)? {
            Selection::Positions(p) => sel.push(Some(p)),
            Selection::Skip { available, wanted } => {
                skipped.push(Skipped {
                    example: i,
                    available,
                    wanted,
                });
                sel.push(None);
            }
        }
    }
    Ok((sel, skipped))
}

/// Records the hidden states `opts` selects for every sequence and hands them to `sink`, one
/// call per (example, layer): examples in batch order (longest first; `example` gives the
/// input index), each example's layers ascending. Returns what was recorded and skipped.
pub fn record_windows(
    model: &Transformer,
    seqs: &[Sequence],
    opts: &WindowOptions,
    batch: &BatchOptions,
    progress: &mut dyn Progress,
    sink: &mut dyn FnMut(WindowRecord<'_>) -> Result<()>,
) -> Result<WindowReport> {
    let plan = LayerPlan::new(model.n_layers(), opts)?;
    let (selection, skipped) = select_all(seqs, opts)?;
    progress.set_total(seqs.len());
    progress.advance(skipped.len());
    // Each sequence runs up to its last selected position.
    let lens: Vec<usize> = selection
        .iter()
        .map(|s| {
            s.as_ref()
                .map_or(0, |p| p.iter().max().map_or(0, |m| m + 1))
        })
        .collect();
    let mut report = WindowReport {
        skipped,
        ..Default::default()
    };
    let mut batches = Vec::new();
    for examples in plan_batches(&lens, batch)? {
        let rows: Vec<&[u32]> = examples.iter().map(|&i| &seqs[i].ids[..lens[i]]).collect();
        batches.push(Batch::new(examples, &rows, model.device())?);
    }
    let positions_of = |b: &Batch| -> Result<Vec<&Vec<usize>>> {
        (b.examples.iter())
            .map(|&i| {
                selection[i]
                    .as_ref()
                    .with_context(|| format!("example {i} was batched without positions"))
            })
            .collect()
    };
    for group in pass_groups(&batches, model.is_streamed()) {
        let positions = group.iter().map(positions_of).collect::<Result<Vec<_>>>()?;
        let recorded = plan.record_batches(model, group, &positions)?;
        for ((b, positions), (per_layer, held)) in group.iter().zip(&positions).zip(recorded) {
            report.max_values_held = report.max_values_held.max(held);
            plan.emit(b, positions, &per_layer, sink)?;
            report.recorded += b.len();
            progress.advance(b.len());
        }
    }
    Ok(report)
}

/// The recorded layers, their hook points, and how much of the model a pass must run.
struct LayerPlan {
    /// Layer indices, ascending.
    layers: Vec<usize>,
    /// The hook point of each layer.
    points: Vec<HookPoint>,
    /// How far a pass runs.
    depth: Depth,
}

impl LayerPlan {
    fn new(n_layers: usize, opts: &WindowOptions) -> Result<Self> {
        let layers = opts.layer_indices(n_layers)?;
        let points = layers
            .iter()
            .map(|&l| opts.convention.hook_point(l, n_layers))
            .collect::<Result<Vec<_>>>()?;
        let depth = Depth::of(&points, n_layers);
        Ok(LayerPlan {
            layers,
            points,
            depth,
        })
    }

    /// Runs `batches` as far as the plan needs, with hooks copying out each example's
    /// `positions[i]`. Returns for each batch, per layer, the selected rows of every example in
    /// batch order, `[sum_k n_positions_k, d_model]` f32 on the CPU, and the number of values
    /// its hooks held.
    fn record_batches(
        &self,
        model: &Transformer,
        batches: &[Batch],
        positions: &[Vec<&Vec<usize>>],
    ) -> Result<Vec<(Vec<Tensor>, usize)>> {
        let mut hooks = Vec::with_capacity(batches.len());
        for p in positions {
            let per_example = Positions::PerExample(p.iter().map(|p| p.to_vec()).collect());
            let mut h = model.hooks();
            for &point in &self.points {
                h.record(point, per_example.clone())?;
            }
            hooks.push(h);
        }
        self.depth.run_many(model, batches, &mut hooks)?;
        let mut out = Vec::with_capacity(batches.len());
        for mut h in hooks {
            let cache = h.take_cache();
            let mut held = 0;
            let mut per_layer = Vec::with_capacity(self.points.len());
            for p in &self.points {
                let t = cache.tensor(&p.to_string())?; // [n_rows, d]
                held += t.elem_count();
                per_layer.push(t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?);
            }
            out.push((per_layer, held));
        }
        Ok(out)
    }

    /// Hands each example's rows of each layer to `sink`, examples in batch order.
    fn emit(
        &self,
        b: &Batch,
        positions: &[&Vec<usize>],
        per_layer: &[Tensor],
        sink: &mut dyn FnMut(WindowRecord<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut at = 0;
        for (k, &i) in b.examples.iter().enumerate() {
            let n = positions[k].len();
            for (&layer, t) in self.layers.iter().zip(per_layer) {
                // A copy, so a sink that keeps it does not keep the whole batch alive.
                let hidden = t.narrow(0, at, n)?.copy()?;
                sink(WindowRecord {
                    example: i,
                    layer,
                    positions: positions[k],
                    hidden: &hidden,
                })
                .with_context(|| format!("sink for example {i}, layer {layer}"))?;
            }
            at += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_read_from_json_with_defaults() {
        // The study's code: T = 10, HF indexing; everything else default.
        let o: WindowOptions = serde_json::from_str(
            r#"{"window": {"response": {"offset": 0, "len": 10}}, "convention": "hf_hidden_states"}"#,
        )
        .unwrap();
        assert_eq!(o.window, Window::Response { offset: 0, len: 10 });
        assert_eq!(o.convention, LayerConvention::HfHiddenStates);
        assert_eq!(
            (o.layers.clone(), o.short),
            (Layers::All, ShortResponse::Error)
        );
        let back: WindowOptions =
            serde_json::from_value(serde_json::to_value(&o).unwrap()).unwrap();
        assert_eq!(back, o);
        let o: WindowOptions =
            serde_json::from_str(r#"{"layers": {"list": [4, 0, 4]}, "window": "last_token"}"#)
                .unwrap();
        assert_eq!(o.layer_indices(4).unwrap(), vec![0, 4]);
        assert!(o.layer_indices(3).is_err());
    }

    #[test]
    fn layer_conventions_differ_only_at_the_last_layer() {
        for l in 0..4 {
            assert_eq!(
                LayerConvention::ResidualStream.hook_point(l, 4).unwrap(),
                LayerConvention::HfHiddenStates.hook_point(l, 4).unwrap()
            );
        }
        assert_eq!(
            LayerConvention::ResidualStream.hook_point(4, 4).unwrap(),
            HookPoint::resid_post(3)
        );
        assert_eq!(
            LayerConvention::HfHiddenStates.hook_point(4, 4).unwrap(),
            HookPoint::LnFinal
        );
        assert!(LayerConvention::ResidualStream.hook_point(5, 4).is_err());
    }
}
