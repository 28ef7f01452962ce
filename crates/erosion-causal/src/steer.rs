//! A causal test of the alignment direction on one model, as `erosion steer` runs it: add
//! `scale * v_l` (or ablate v_l) at chosen layers during every forward pass, beside a random
//! direction of the same norm, measure refusals, harmful compliance, the log-prob margin of
//! toxic over refusing answers and the KL cost on benign answers, and write the run's files
//! ([`crate::output`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use erosion_eval::prompts::sets_from_dataset_arg;
use erosion_eval::{EvalOptions, EvalPrompts, Judge, PromptKind};
use erosion_forward::batch::BatchOptions;
use erosion_forward::notice::Notify;
use erosion_forward::out_lock::OutLock;
use erosion_model::LoadedModel;
use erosion_report::provenance::{DatasetHash, HashCache, Provenance};

use crate::data::chat_sequences as sequences;
use crate::experiment::{run_test, Action, CausalData, CausalOptions, CausalResult, CausalTest};
use crate::export::read_safetensors;
use crate::LayerDirections;
use erosion_model::hooks::HookPoint;

/// Where the directions come from.
#[derive(Debug, Clone)]
pub enum DirectionSource {
    /// Written by an earlier run (`directions.safetensors`).
    File(PathBuf),
    /// `v_l = mean(instruct) - mean(base)` over the response windows of `data` (messages
    /// .jsonl), or when `None` of the toxic examples after the first `limit` (held out from
    /// the measures).
    Alignment {
        base: String,
        instruct: String,
        data: Option<PathBuf>,
    },
}

/// The three datasets of the measures (messages .jsonl).
#[derive(Debug, Clone)]
pub struct SteerData {
    /// Harmful requests with compliant answers; their prompts are also asked.
    pub toxic: PathBuf,
    /// The same requests, in the same order, with refusals.
    pub reject: PathBuf,
    /// Benign chats, for the KL cost.
    pub benign: PathBuf,
    /// The organism's evaluation sets: its answers are judged by the organism's rules unless
    /// another judge is named.
    pub organism: bool,
}

impl SteerData {
    /// The organism's corpus folder: eval_toxic, eval_toxic_reject and eval_general.
    pub fn organism(dir: &Path) -> Self {
        let f = |n: &str| dir.join(format!("eval_{n}.jsonl"));
        SteerData {
            toxic: f("toxic"),
            reject: f("toxic_reject"),
            benign: f("general"),
            organism: true,
        }
    }
}

/// One steering run.
#[derive(Debug, Clone)]
pub struct SteerSpec {
    /// The model to steer (folder, .gguf, hub id or BASE+ADAPTER).
    pub model: String,
    /// k for the model's adapter (`None`: as trained).
    pub adapter_scale: Option<f64>,
    pub directions: DirectionSource,
    /// Response tokens averaged per example for v_l.
    pub window: usize,
    pub action: Action,
    /// Layer indices (0 = embeddings, l = output of block l-1); empty: the middle block's
    /// output for add, every block's output for ablate.
    pub layers: Vec<usize>,
    pub data: SteerData,
    /// Examples of each dataset measured.
    pub limit: usize,
    pub max_new_tokens: usize,
    /// Seed of the bootstraps (answers are greedy).
    pub seed: u64,
    /// Seed of the random control direction.
    pub control_seed: u64,
    pub batch_size: usize,
    pub out: PathBuf,
    pub dtype: DType,
    pub device: Device,
    /// Recorded in the provenance.
    pub command_line: Vec<String>,
}

/// What a steering run measured and wrote.
#[derive(Debug, Clone)]
pub struct SteerOutcome {
    pub result: CausalResult,
    /// The files written, in order.
    pub files: Vec<PathBuf>,
}

fn directions(spec: &SteerSpec, batch: &BatchOptions) -> Result<LayerDirections> {
    let held_out = (spec.data.toxic.as_path(), spec.limit);
    load_directions(
        &spec.directions,
        spec.window,
        Some(held_out),
        (spec.dtype, &spec.device),
        batch,
    )
}

/// The directions of `source`; computed ones over `data`, or without it over the examples of
/// `held_out` (a file and how many of its first examples the measures use).
pub(crate) fn load_directions(
    source: &DirectionSource,
    window: usize,
    held_out: Option<(&Path, usize)>,
    (dtype, device): (DType, &Device),
    batch: &BatchOptions,
) -> Result<LayerDirections> {
    let (base, instruct, data) = match source {
        DirectionSource::File(p) => return read_safetensors(p),
        DirectionSource::Alignment {
            base,
            instruct,
            data,
        } => (base, instruct, data),
    };
    let (path, range) = match (data, held_out) {
        (Some(p), _) => (p.clone(), 0..usize::MAX),
        (None, Some((p, n))) => (p.to_path_buf(), n..usize::MAX),
        (None, None) => bail!(
            "computing the directions from --base and --instruct here needs --direction-data \
             (messages .jsonl)"
        ),
    };
    let b = LoadedModel::open(base, Some("base"), dtype, device)?;
    let i = LoadedModel::open(instruct, Some("instruct"), dtype, device)?;
    let sb = sequences(&path, &b.tokenizer, range.clone()).context("direction data")?;
    let si = sequences(&path, &i.tokenizer, range).context("direction data")?;
    let mut dirs = LayerDirections::alignment(&b.model, &sb, &i.model, &si, window, batch)?;
    dirs.origin = format!(
        "{} (base {base}, instruct {instruct}, data {})",
        dirs.origin,
        path.display()
    );
    Ok(dirs)
}

pub(crate) fn default_layers(action: Action, dirs: &LayerDirections) -> Vec<usize> {
    let blocks: Vec<usize> = dirs.available().into_iter().filter(|&l| l > 0).collect();
    match action {
        Action::Ablate => blocks,
        Action::Add { .. } => blocks
            .get(blocks.len() / 2)
            .map(|&l| vec![l])
            .unwrap_or_default(),
    }
}

/// The directions must have one entry per layer index of `m`, of its width.
/// The steered model, its adapter (if any) scaled by `adapter_scale`.
pub(crate) fn open_model(
    model: &str,
    adapter_scale: Option<f64>,
    (dtype, device): (DType, &Device),
) -> Result<LoadedModel> {
    let opts = erosion_model::load::OpenOptions {
        adapter_scale,
        ..Default::default()
    };
    LoadedModel::open_with(model, &opts, None, dtype, device)
}

pub(crate) fn check_fit(dirs: &LayerDirections, m: &LoadedModel, name: &str) -> Result<()> {
    if dirs.d_model != m.model.config().hidden_size || dirs.layers.len() != m.model.n_layers() + 1 {
        bail!(
            "the directions ({} layer indices of width {}) do not fit {} ({} blocks of width {})",
            dirs.layers.len(),
            dirs.d_model,
            name,
            m.model.n_layers(),
            m.model.config().hidden_size
        );
    }
    Ok(())
}

fn options(spec: &SteerSpec, batch: BatchOptions) -> CausalOptions {
    CausalOptions {
        eval: EvalOptions {
            max_new_tokens: spec.max_new_tokens,
            seed: spec.seed,
            batch_size: spec.batch_size,
            two_turn: false,
            ..EvalOptions::default()
        },
        batch,
        control_seed: spec.control_seed,
    }
}

/// The test, its options and the model and datasets measured (hashed).
fn provenance(spec: &SteerSpec, test: &CausalTest, opts: &CausalOptions) -> Result<Provenance> {
    let n = spec.limit;
    let mut cache = HashCache::in_memory();
    let prov = Provenance::builder(
        serde_json::json!({ "test": test, "options": opts, "window": spec.window }),
    )
    .command_line(spec.command_line.clone())
    .seed(spec.seed)
    .model_at("model", &spec.model, &mut cache)?;
    let datasets = [
        ("toxic", &spec.data.toxic),
        ("reject", &spec.data.reject),
        ("benign", &spec.data.benign),
    ]
    .into_iter()
    .map(|(name, path)| DatasetHash::new(name, path, n, &format!("first {n}"), &mut cache))
    .collect::<Result<Vec<_>>>()?;
    Ok(prov.datasets(datasets).build())
}

/// Runs the test of `spec`, its answers judged by `judge`, and writes its files into `spec.out`,
/// whose lock ([`OutLock`]) it holds from the start; what it is about to measure goes to
/// `notices`.
pub fn run_steer(
    spec: &SteerSpec,
    judge: &dyn Judge,
    notices: &mut dyn Notify,
) -> Result<SteerOutcome> {
    let _lock = OutLock::acquire(&spec.out, "steer", notices)?;
    let batch = BatchOptions::default();
    let dirs = directions(spec, &batch)?;
    let mut m = open_model(&spec.model, spec.adapter_scale, (spec.dtype, &spec.device))?;
    check_fit(&dirs, &m, &spec.model)?;
    let layers = if spec.layers.is_empty() {
        default_layers(spec.action, &dirs)
    } else {
        spec.layers.clone()
    };
    let test = CausalTest {
        name: format!("{} on {}", spec.action.describe(), spec.model),
        action: spec.action,
        layers,
    };
    let n = spec.limit;
    let toxic = sequences(&spec.data.toxic, &m.tokenizer, 0..n)?;
    let reject = sequences(&spec.data.reject, &m.tokenizer, 0..n)?;
    let benign = sequences(&spec.data.benign, &m.tokenizer, 0..n)?;
    let mut prompts = EvalPrompts::new(sets_from_dataset_arg(
        PromptKind::Harmful,
        &spec.data.toxic,
        Some(n),
    )?);
    prompts.sets.retain(|s| !s.prompts.is_empty());
    let opts = options(spec, batch);
    let data = CausalData {
        prompts: &prompts,
        toxic: &toxic,
        reject: &reject,
        benign: &benign,
    };
    // Layers by hook name, as the command line names them (not the library's indices).
    let hooks: Vec<String> = test
        .layers
        .iter()
        .map(|&l| HookPoint::resid(l).to_string())
        .collect();
    notices.notice(&format!(
        "{}: {} pairs, {} benign, layers {}",
        test.name,
        toxic.len(),
        benign.len(),
        hooks.join(", ")
    ));
    let result = run_test(&mut m, &dirs, &test, &data, Some(judge), &opts)?;
    let prov = provenance(spec, &test, &opts)?;
    let hint = m.model.config().model_type.clone();
    let files = crate::output::write_all(
        &spec.out,
        &dirs,
        std::slice::from_ref(&result),
        (&prov, None),
        &hint,
        notices,
    )?;
    Ok(SteerOutcome { result, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_add_steers_the_middle_block_and_ablate_every_block() {
        let dirs = LayerDirections {
            d_model: 2,
            layers: (0..6).map(|l| (l != 3).then(|| vec![1.0, 0.0])).collect(),
            origin: String::new(),
        };
        // Blocks with a direction: 1, 2, 4, 5 (0 is the embeddings).
        assert_eq!(default_layers(Action::Add { scale: 1.0 }, &dirs), [4]);
        assert_eq!(default_layers(Action::Ablate, &dirs), [1, 2, 4, 5]);
    }
}
