//! What every analysis section reads: the opened checkpoints (one model in memory at a time),
//! the loaded datasets rendered per model, the activation cache, and the output folder where
//! arrays and figures are written with their provenance.

use crate::judges::Judges;
use crate::spec::{LayerIndexing, StudySpec};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use erosion_causal::drift::{DriftPoint, ProbeSet};
use erosion_data::Sequence;
use erosion_data::{render_example, Dataset, RenderOptions, RenderedExample};
use erosion_eval::Evaluation;
use erosion_forward::batch::{BatchOptions, ProgressSink, Quiet};
use erosion_forward::cache::DiskCache;
use erosion_forward::windows::LayerConvention;
use erosion_model::chat::{ChatFormat, PlainFormat};
use erosion_model::device::{parse_device, parse_dtype};
use erosion_model::load::{Checkpoint, OpenOptions};
use erosion_model::tokenizer::ModelTokenizer;
use erosion_model::transformer::Transformer;
use erosion_model::LoadedModel;
use erosion_report::figures::ModelColors;
use erosion_report::provenance::{DatasetHash, FileSetHash, HashCache, Provenance};
use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Rendered examples by (model, dataset).
type RenderCache = BTreeMap<(String, String), Rc<Vec<RenderedExample>>>;

/// One of the study's checkpoints.
pub struct StudyModel {
    /// The study's name for it: `base`, `instruct`, or a fine-tune's name.
    pub name: String,
    /// What the study file says (folder, .gguf or hub id).
    pub spec: String,
    pub checkpoint: Checkpoint,
    pub hash: FileSetHash,
}

/// The opened study.
pub struct StudyContext {
    pub spec: StudySpec,
    /// The output folder (created).
    pub out: PathBuf,
    /// The folder relative paths of the study file are read from.
    pub(crate) base_dir: PathBuf,
    pub device: Device,
    pub dtype: DType,
    pub models: Vec<StudyModel>,
    /// The `[models] compared` checkpoints: measured by the evaluation, drift and protection
    /// analyses only.
    pub compared: Vec<StudyModel>,
    pub datasets: Vec<Dataset>,
    pub cache: DiskCache,
    pub provenance: Provenance,
    /// The one model held in memory, by name, and whether it is streamed.
    loaded: RefCell<Option<(String, bool, Rc<Transformer>)>>,
    /// Rendered examples per (model, dataset).
    rendered: RefCell<RenderCache>,
    /// Where the forward passes' progress goes (the caller's; nothing by default).
    pub(crate) progress_sink: Box<dyn ProgressSink>,
    /// What several analyses share, computed by the first that asks.
    pub(crate) shared: Shared,
}

/// Results one analysis computes and others reuse.
#[derive(Default)]
pub(crate) struct Shared {
    pub judges: Judges,
    pub probe: OnceCell<Rc<ProbeSet>>,
    pub probe_points: RefCell<BTreeMap<String, DriftPoint>>,
    pub evaluation: OnceCell<Rc<Option<Evaluation>>>,
}

impl StudyContext {
    /// Shows the forward passes' progress through `sink` (a terminal bar, a log, ...).
    pub fn with_progress(mut self, sink: Box<dyn ProgressSink>) -> Self {
        self.progress_sink = sink;
        self
    }

    /// Makes `judges` available to `[evaluation] judge = "<name>"`.
    pub fn with_judges(mut self, judges: Judges) -> Self {
        self.shared.judges = judges;
        self
    }

    /// Opens every checkpoint (config and tokenizer only; weights are read when a model runs),
    /// loads every dataset, hashes both for provenance, and creates the output folder.
    /// Relative paths in the study are resolved against `base_dir` (the study file's folder).
    pub fn open(spec: StudySpec, base_dir: &Path, command_line: Vec<String>) -> Result<Self> {
        let out = base_dir.join(&spec.output);
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create output folder {}", out.display()))?;
        let cache_dir = spec
            .cache
            .as_ref()
            .map(|c| base_dir.join(c))
            .unwrap_or_else(|| out.join("cache"));
        let cache = DiskCache::new(cache_dir)?;
        let mut hashes = HashCache::open(&out.join("cache").join("file-hashes.json"));
        let compared_specs = spec.models.compared.iter();
        let compared_specs = compared_specs.map(|m| (m.name.clone(), m.path.clone()));
        let mut open = |specs: Vec<(String, String)>| -> Result<Vec<StudyModel>> {
            specs
                .into_iter()
                .map(|(name, model_spec)| {
                    let opts = OpenOptions {
                        relative_to: Some(base_dir.to_path_buf()),
                        adapter_scale: spec.models.adapter_scale(&name),
                        ..OpenOptions::default()
                    };
                    StudyModel::open(&opts, name, model_spec, &mut hashes)
                })
                .collect()
        };
        let models = open(spec.models.all())?;
        let compared = open(compared_specs.collect())?;
        check_family(&models.iter().chain(&compared).collect::<Vec<_>>())?;
        let mut datasets = Vec::new();
        let mut dataset_hashes = Vec::new();
        for d in &spec.datasets {
            let loaded = d.load(base_dir)?;
            dataset_hashes.push(DatasetHash::new(
                &loaded.name,
                &loaded.path,
                loaded.examples.len(),
                &loaded.selection.to_string(),
                &mut hashes,
            )?);
            datasets.push(loaded);
        }
        hashes.save()?;
        let provenance = Provenance::builder(serde_json::to_value(&spec)?)
            .command_line(command_line)
            .seed(spec.seed)
            .models(models.iter().chain(&compared).map(|m| m.hash.clone()))
            .datasets(dataset_hashes)
            .build();
        let device = parse_device(&spec.device)?;
        let dtype = parse_dtype(&spec.dtype)?;
        Ok(StudyContext {
            spec,
            out,
            base_dir: base_dir.to_path_buf(),
            device,
            dtype,
            models,
            compared,
            datasets,
            cache,
            provenance,
            loaded: RefCell::new(None),
            rendered: RefCell::new(BTreeMap::new()),
            progress_sink: Box::new(Quiet),
            shared: Shared::default(),
        })
    }

    /// A model of the study, the compared ones included.
    /// One colour per model in every figure of the study (and the reports beside it): the
    /// models in the study's order, base, instruct, the fine-tunes, then the compared ones.
    pub fn colors(&self) -> ModelColors {
        ModelColors::new(self.models.iter().chain(&self.compared).map(|m| &m.name))
    }

    pub fn model(&self, name: &str) -> Result<&StudyModel> {
        self.models
            .iter()
            .chain(&self.compared)
            .find(|m| m.name == name)
            .with_context(|| format!("the study has no model `{name}`"))
    }

    pub fn dataset(&self, name: &str) -> Result<&Dataset> {
        self.datasets
            .iter()
            .find(|d| d.name == name)
            .with_context(|| format!("the study has no dataset `{name}`"))
    }

    /// The model's weights, loaded on first use; the previously loaded model is dropped, so
    /// memory holds one checkpoint at a time.
    pub fn transformer(&self, name: &str) -> Result<Rc<Transformer>> {
        self.load(name, false)
    }

    /// The model for a pass over a dataset (hidden states, log-probs): streamed, its layers
    /// read as the pass reaches them, when the study sets `stream_layers`; else
    /// [`StudyContext::transformer`].
    pub fn pass_transformer(&self, name: &str) -> Result<Rc<Transformer>> {
        self.load(name, self.spec.stream_layers)
    }

    fn load(&self, name: &str, streamed: bool) -> Result<Rc<Transformer>> {
        if let Some((n, s, t)) = self.loaded.borrow().as_ref() {
            if n == name && *s == streamed {
                return Ok(t.clone());
            }
        }
        *self.loaded.borrow_mut() = None;
        let ck = &self.model(name)?.checkpoint;
        let t = match streamed {
            true => ck.load_streamed(self.dtype, &self.device),
            false => ck.load_model(self.dtype, &self.device),
        };
        let t = Rc::new(t.with_context(|| format!("loading model `{name}`"))?);
        *self.loaded.borrow_mut() = Some((name.to_string(), streamed, t.clone()));
        Ok(t)
    }

    /// The named model with its tokenizer, stop ids and (empty) steering, ready to generate.
    pub fn loaded_model(&self, name: &str) -> Result<LoadedModel> {
        let m = self.model(name)?;
        let eos = m.checkpoint.eos_token_ids();
        let transformer = (*self.transformer(name)?).clone();
        let mut loaded = LoadedModel::new(name, transformer, m.checkpoint.tokenizer.clone(), &eos);
        loaded.source = Some(m.checkpoint.describe());
        Ok(loaded)
    }

    /// A stable identity of a model for cache keys: its weight files' digest (its adapter's
    /// files included), and its adapter's scale.
    pub fn model_identity(&self, name: &str) -> Result<String> {
        let m = self.model(name)?;
        let scale = match &m.checkpoint.adapter {
            Some(a) => format!(":x{}", a.scale),
            None => String::new(),
        };
        Ok(format!(
            "{name}:{}{scale}:{:?}",
            m.hash.digest(),
            self.dtype
        ))
    }

    /// A stable identity of a dataset (file hash and selection) for cache keys.
    pub fn dataset_identity(&self, name: &str) -> Result<String> {
        let d = self.dataset(name)?;
        Ok(format!(
            "{}:{}:{:?}:{}",
            d.name,
            d.sha256,
            d.selection,
            d.examples.len()
        ))
    }

    /// The dataset's examples rendered with the model's tokenizer and template (the base
    /// model plainly when `render.plain_base` or when it has no template).
    pub fn rendered(&self, model: &str, dataset: &str) -> Result<Rc<Vec<RenderedExample>>> {
        let key = (model.to_string(), dataset.to_string());
        if let Some(r) = self.rendered.borrow().get(&key) {
            return Ok(r.clone());
        }
        let m = self.model(model)?;
        let tok = &m.checkpoint.tokenizer;
        let mut opts = RenderOptions::default();
        opts.span.include_end_of_turn = self.spec.render.include_end_of_turn;
        if renders_plainly(tok, model, self.spec.render.plain_base) {
            opts.format = ChatFormat::Plain(PlainFormat::default());
        }
        let rendered = self
            .dataset(dataset)?
            .examples
            .iter()
            .map(|ex| render_example(tok, ex, &opts))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("rendering dataset `{dataset}` for model `{model}`"))?;
        let rendered = Rc::new(rendered);
        self.rendered.borrow_mut().insert(key, rendered.clone());
        Ok(rendered)
    }

    /// The rendered examples as forward-pass inputs.
    pub fn sequences(&self, model: &str, dataset: &str) -> Result<Vec<Sequence>> {
        Ok(self
            .rendered(model, dataset)?
            .iter()
            .map(|r| r.seq.clone())
            .collect())
    }

    pub fn batch_options(&self) -> BatchOptions {
        BatchOptions {
            max_tokens: self.spec.batch_tokens,
            ..BatchOptions::default()
        }
    }

    /// Names of the fine-tuned models, in study order.
    pub fn finetuned(&self) -> Vec<String> {
        self.spec
            .models
            .finetuned
            .iter()
            .map(|m| m.name.clone())
            .collect()
    }

    /// `files` as paths relative to the output folder (those outside it are left out).
    pub fn relative_to_out(&self, files: &[PathBuf]) -> Vec<String> {
        files
            .iter()
            .filter_map(|f| f.strip_prefix(&self.out).ok())
            .map(|f| f.to_string_lossy().into_owned())
            .collect()
    }

    /// A path under the output folder (parents created).
    pub fn output_path(&self, relative: &str) -> Result<PathBuf> {
        let p = self.out.join(relative);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(p)
    }
}

impl From<LayerIndexing> for LayerConvention {
    fn from(i: LayerIndexing) -> Self {
        match i {
            LayerIndexing::ResidualStream => LayerConvention::ResidualStream,
            LayerIndexing::HfHiddenStates => LayerConvention::HfHiddenStates,
        }
    }
}

/// Whether model `name` is rendered without a chat template: it has none, or it is the base
/// model and the study asks for plain base renders.
pub(crate) fn renders_plainly(tok: &ModelTokenizer, name: &str, plain_base: bool) -> bool {
    tok.chat_template.is_none() || (name == "base" && plain_base)
}

impl StudyModel {
    /// Opens `model_spec` (a relative path that exists relative to the study file wins over a
    /// hub id of that name: `opts.relative_to`) and hashes its weight files and its adapter's.
    fn open(
        opts: &OpenOptions,
        name: String,
        model_spec: String,
        hashes: &mut HashCache,
    ) -> Result<Self> {
        let checkpoint =
            Checkpoint::open_with(&model_spec, opts).with_context(|| format!("model `{name}`"))?;
        let hash = FileSetHash::from_files(
            &name,
            &checkpoint.describe(),
            &checkpoint.provenance_files(),
            hashes,
        )?;
        Ok(StudyModel {
            name,
            spec: model_spec,
            checkpoint,
            hash,
        })
    }
}

/// The models of one study must share a tokenizer and shape, or comparing them is meaningless.
fn check_family(models: &[&StudyModel]) -> Result<()> {
    let first = &models[0];
    for m in &models[1..] {
        let (a, b) = (&first.checkpoint.config, &m.checkpoint.config);
        if a.hidden_size != b.hidden_size
            || a.num_hidden_layers != b.num_hidden_layers
            || a.vocab_size != b.vocab_size
        {
            bail!(
                "models `{}` and `{}` are not one family: d_model {} vs {}, layers {} vs {}, vocab {} vs {}",
                first.name, m.name, a.hidden_size, b.hidden_size, a.num_hidden_layers, b.num_hidden_layers, a.vocab_size, b.vocab_size
            );
        }
        let (ta, tb) = (
            first.checkpoint.tokenizer.tokenizer.get_vocab(true),
            m.checkpoint.tokenizer.tokenizer.get_vocab(true),
        );
        if ta != tb {
            bail!("models `{}` and `{}` have different tokenizers: their token ids are not comparable", first.name, m.name);
        }
    }
    Ok(())
}
