//! Which weights a gradient is taken over, checked against the model, and where each one's
//! values sit in the flattened gradient.

use anyhow::{bail, Result};
use erosion_model::transformer::Transformer;
use serde::{Deserialize, Serialize};

/// The weights to differentiate with respect to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", content = "names", rename_all = "snake_case")]
pub enum ParamSelection {
    /// `model.layers.{L-1}.self_attn.o_proj.weight` (the study's code; the default).
    #[default]
    LastOProj,
    /// The q, k, v and o projection weights of the last layer (the study's text: "the final
    /// attention layer"); biases are not included (name them to add them).
    LastAttention,
    /// Any weights, by Hugging Face name (`model.layers.3.mlp.up_proj.weight`, ...).
    Named(Vec<String>),
}

impl ParamSelection {
    /// The chosen names in the model's checkpoint order ([`Transformer::parameter_names`]),
    /// which is the order of the flattened gradient. Errors on an unknown or repeated name,
    /// listing the weights of the layer it names.
    pub fn resolve(&self, model: &Transformer) -> Result<Vec<String>> {
        let last = model.n_layers().checked_sub(1);
        let wanted: Vec<String> = match self {
            ParamSelection::LastOProj | ParamSelection::LastAttention if last.is_none() => {
                bail!("the model has no layers, so it has no last attention layer")
            }
            ParamSelection::LastOProj => {
                vec![format!(
                    "model.layers.{}.self_attn.o_proj.weight",
                    last.unwrap_or(0)
                )]
            }
            ParamSelection::LastAttention => ["q", "k", "v", "o"]
                .iter()
                .map(|p| {
                    format!(
                        "model.layers.{}.self_attn.{p}_proj.weight",
                        last.unwrap_or(0)
                    )
                })
                .collect(),
            ParamSelection::Named(names) => names.clone(),
        };
        if wanted.is_empty() {
            bail!("no weights were chosen for the gradient");
        }
        let all = model.parameter_names();
        for (i, name) in wanted.iter().enumerate() {
            check_name(model, &all, name)?;
            if wanted[..i].contains(name) {
                bail!("weight `{name}` is chosen twice for the gradient");
            }
        }
        Ok(all.into_iter().filter(|n| wanted.contains(n)).collect())
    }
}

/// `name` must be one of the model's weights; the error lists the weights of the layer it
/// names (or the model's non-layer weights and its last layer's).
fn check_name(model: &Transformer, all: &[String], name: &str) -> Result<()> {
    if all.iter().any(|n| n == name) {
        return Ok(());
    }
    if name == "lm_head.weight" && model.config().tie_word_embeddings {
        bail!(
            "`lm_head.weight` is tied to `model.embed_tokens.weight` in this model \
             (tie_word_embeddings): choose `model.embed_tokens.weight`, whose gradient then \
             covers both its uses (embedding and unembedding)"
        );
    }
    let n = model.n_layers();
    let layer = name
        .strip_prefix("model.layers.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(l, _)| l.parse::<usize>().ok());
    let listed = |l: usize| -> String {
        let prefix = format!("model.layers.{l}.");
        all.iter()
            .filter(|x| x.starts_with(&prefix))
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    match layer {
        Some(l) if l < n => {
            bail!(
                "the model has no weight `{name}`; layer {l}'s weights are: {}",
                listed(l)
            )
        }
        Some(l) => bail!(
            "the model has no weight `{name}`: layer {l} does not exist (the model has {n} layers, 0..{}); \
             the last layer's weights are: {}",
            n.saturating_sub(1),
            listed(n.saturating_sub(1))
        ),
        None => {
            let outside: Vec<&str> = all
                .iter()
                .filter(|x| !x.starts_with("model.layers."))
                .map(String::as_str)
                .collect();
            bail!(
                "the model has no weight `{name}`; besides its {n} layers it has: {}; the last \
                 layer's weights are: {}",
                outside.join(", "),
                listed(n.saturating_sub(1))
            )
        }
    }
}

/// Where the forward pass must start building a graph for a weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// The embedding matrix: the lookup itself is differentiated.
    Embed,
    /// A weight of block `l`: blocks `l..` run differentiably.
    Layer(usize),
    /// `model.norm.weight`, `lm_head.weight`: no block needs a graph.
    Head,
}

pub(crate) fn stage(name: &str) -> Stage {
    if name == "model.embed_tokens.weight" {
        return Stage::Embed;
    }
    name.strip_prefix("model.layers.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(l, _)| l.parse().ok())
        .map_or(Stage::Head, Stage::Layer)
}

/// One weight's place in the flattened gradient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSlice {
    pub name: String,
    /// As stored by Hugging Face (`[out, in]` for linear weights).
    pub shape: Vec<usize>,
    /// Index of the weight's first value in the flattened gradient.
    pub offset: usize,
    pub len: usize,
}

/// The flattened gradient's layout: the chosen weights in checkpoint order
/// ([`Transformer::parameter_names`]), each flattened row-major (C order, as numpy's
/// `ravel()` of the Hugging Face tensor), one after another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GradientLayout {
    pub params: Vec<ParamSlice>,
    /// Total length of a flattened gradient.
    pub dim: usize,
}

impl GradientLayout {
    pub(crate) fn new(model: &Transformer, names: &[String]) -> Result<Self> {
        let mut params = Vec::with_capacity(names.len());
        let mut offset = 0;
        for name in names {
            let shape = model.parameter(name)?.dims().to_vec();
            let len = shape.iter().product();
            params.push(ParamSlice {
                name: name.clone(),
                shape,
                offset,
                len,
            });
            offset += len;
        }
        Ok(GradientLayout {
            params,
            dim: offset,
        })
    }

    /// The slice of weight `name`, if chosen.
    pub fn slice(&self, name: &str) -> Option<&ParamSlice> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.params.iter().map(|p| p.name.as_str()).collect()
    }
}
