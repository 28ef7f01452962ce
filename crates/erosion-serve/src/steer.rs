//! Per-request steering: the `steering` extension field, read against the directions the server
//! was started with (`--directions NAME=FILE`).
//!
//! A direction file is a `.npy` array (f32 or f64) of shape `[d_model]` (one vector, usable at
//! any layer) or `[n_layers + 1, d_model]` (one vector per residual-stream point, row 0 the
//! embeddings and row l + 1 the output of block l, as `erosion steer` writes `directions.npy`;
//! an all-zero row means no direction there). A request names layers as the CLI does: an
//! integer L is `blocks.L.hook_resid_post` (row L + 1 of a per-layer file).
//!
//! ```json
//! "steering": [{"direction": "align", "layers": [12], "scale": 4, "action": "add"},
//!              {"direction": "refusal", "layers": [10, 11], "action": "ablate"}]
//! ```
//! `add`: x <- x + scale * v at every position (prompt and answer); `ablate`: x <- x - (x.u) u
//! with u = v / |v| (scale not allowed). One object or a list; applied in order.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use erosion_model::hooks::{HookPoint, Steering};
use erosion_model::npy::{read_npy, NpyData};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// The vectors of one direction file.
#[derive(Debug, Clone)]
enum Vectors {
    /// One `[d]` vector for every layer.
    One(Vec<f32>),
    /// Per residual index (0 = embeddings); None where the file's row is all zero.
    PerLayer(Vec<Option<Vec<f32>>>),
}

/// The named directions a server can steer along.
#[derive(Debug, Clone, Default)]
pub struct Directions {
    by_name: BTreeMap<String, Vectors>,
}

impl Directions {
    /// Reads `file` as direction `name` for a model of `n_layers` blocks and width `d_model`.
    pub fn load(&mut self, name: &str, file: &Path, n_layers: usize, d_model: usize) -> Result<()> {
        let what = || format!("direction {name} ({})", file.display());
        if self.by_name.contains_key(name) {
            bail!("direction {name} is named twice");
        }
        let a = read_npy(file).with_context(what)?;
        let data: Vec<f32> = match a.data {
            NpyData::F32(v) => v,
            NpyData::F64(v) => v.into_iter().map(|x| x as f32).collect(),
            other => bail!("{}: dtype {} (expected f32 or f64)", what(), other.descr()),
        };
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            bail!("{}: value {i} is {}", what(), data[i]);
        }
        let vectors = match a.shape.as_slice() {
            [d] if *d == d_model => Vectors::One(data),
            [rows, d] if *rows == n_layers + 1 && *d == d_model => Vectors::PerLayer(
                data.chunks(d_model)
                    .map(|r| r.iter().any(|&x| x != 0.0).then(|| r.to_vec()))
                    .collect(),
            ),
            s => bail!(
                "{}: shape {s:?}; expected [{d_model}] or [{}, {d_model}] (the embeddings and \
                 each block's output) for this model",
                what(),
                n_layers + 1
            ),
        };
        self.by_name.insert(name.to_string(), vectors);
        Ok(())
    }

    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// The vector of `name` at block `layer`'s output.
    fn vector(&self, name: &str, layer: usize) -> Option<&[f32]> {
        match self.by_name.get(name)? {
            Vectors::One(v) => Some(v),
            Vectors::PerLayer(rows) => rows.get(layer + 1)?.as_deref(),
        }
    }
}

/// What a request asks for, one entry of the `steering` field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteerRequest {
    pub direction: String,
    pub layers: LayerList,
    pub scale: Option<f64>,
    #[serde(default)]
    pub action: Action,
}

/// One layer or several.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum LayerList {
    One(i64),
    Many(Vec<i64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Add,
    Ablate,
}

/// What was applied, echoed in the response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    pub direction: String,
    pub layers: Vec<usize>,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// The hook points changed (`blocks.L.hook_resid_post`).
    pub points: Vec<String>,
    /// |v| at each layer, as stored.
    pub norms: Vec<f64>,
}

/// The steering of one request: the hooks' recipe and what it echoes.
#[derive(Debug, Clone, Default)]
pub struct RequestSteering {
    pub steering: Steering,
    pub applied: Vec<Applied>,
    /// Requests with equal keys are decoded in one batch.
    pub key: String,
}

/// Most (direction, layer) edits one request may ask for.
pub const MAX_EDITS: usize = 1024;

/// Reads the `steering` field (an object or a list of them).
pub fn parse(value: &Value, dirs: &Directions, n_layers: usize) -> ApiResult<RequestSteering> {
    let list: Vec<SteerRequest> = match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(_) => serde_json::from_value(value.clone()),
        _ => serde_json::from_value(value.clone()).map(|one| vec![one]),
    }
    .map_err(|e| ApiError::invalid_param("steering", format!("steering: {e}")))?;
    let edits: usize = (list.iter())
        .map(|r| match &r.layers {
            LayerList::One(_) => 1,
            LayerList::Many(ls) => ls.len(),
        })
        .sum();
    // Each edit holds a copy of its vector: the request must not decide the server's memory.
    if edits > MAX_EDITS {
        return Err(ApiError::invalid_param(
            "steering",
            format!("steering: {edits} (direction, layer) edits; at most {MAX_EDITS}"),
        ));
    }
    let mut out = RequestSteering::default();
    for req in list {
        let applied = check(&req, dirs, n_layers)?;
        for &layer in &applied.layers {
            let v = dirs.vector(&req.direction, layer).expect("checked");
            let v = Tensor::from_slice(v, v.len(), &Device::Cpu)
                .map_err(|e| ApiError::internal(format!("building the steering: {e}")))?;
            let point = HookPoint::resid_post(layer);
            out.steering = match req.action {
                Action::Add => out.steering.add(point, &v, applied.scale.unwrap_or(1.0)),
                Action::Ablate => out.steering.ablate(point, &v).map_err(|e| {
                    ApiError::invalid_param("steering", format!("{}: {e}", req.direction))
                })?,
            };
        }
        out.applied.push(applied);
    }
    out.key = serde_json::to_string(&out.applied).unwrap_or_default();
    Ok(out)
}

fn point_name(layer: usize) -> String {
    HookPoint::resid_post(layer).to_string()
}

/// Checks one entry against the directions and the model: unknown names and layers are named.
fn check(req: &SteerRequest, dirs: &Directions, n_layers: usize) -> ApiResult<Applied> {
    let bad = |m: String| ApiError::invalid_param("steering", m);
    if !dirs.by_name.contains_key(&req.direction) {
        let have = dirs.names();
        return Err(bad(format!(
            "unknown direction `{}`; this server has: {}",
            req.direction,
            if have.is_empty() {
                "none (start it with --directions NAME=FILE.npy)".to_string()
            } else {
                have.join(", ")
            }
        )));
    }
    let layers = match &req.layers {
        LayerList::One(l) => vec![*l],
        LayerList::Many(ls) => ls.clone(),
    };
    if layers.is_empty() {
        return Err(bad(format!(
            "direction {}: `layers` is empty",
            req.direction
        )));
    }
    let unknown: Vec<String> = layers
        .iter()
        .filter(|&&l| l < 0 || l as usize >= n_layers)
        .map(i64::to_string)
        .collect();
    if !unknown.is_empty() {
        return Err(bad(format!(
            "direction {}: layer(s) {} do not exist; the model has blocks 0..={} (L means \
             blocks.L.hook_resid_post)",
            req.direction,
            unknown.join(", "),
            n_layers - 1
        )));
    }
    let layers: Vec<usize> = layers.iter().map(|&l| l as usize).collect();
    let missing: Vec<String> = layers
        .iter()
        .filter(|&&l| dirs.vector(&req.direction, l).is_none())
        .map(usize::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!(
            "direction {} has no vector at layer(s) {} (its row is zero)",
            req.direction,
            missing.join(", ")
        )));
    }
    let scale = match (req.action, req.scale) {
        (Action::Ablate, Some(_)) => {
            return Err(bad(format!(
                "direction {}: `scale` has no meaning with action ablate",
                req.direction
            )))
        }
        (Action::Add, Some(s)) if !s.is_finite() => {
            return Err(bad(format!(
                "direction {}: scale {s} is not finite",
                req.direction
            )))
        }
        (Action::Add, s) => Some(s.unwrap_or(1.0)),
        (Action::Ablate, None) => None,
    };
    let norms = layers
        .iter()
        .map(|&l| {
            let v = dirs.vector(&req.direction, l).expect("checked above");
            v.iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    Ok(Applied {
        direction: req.direction.clone(),
        points: layers.iter().map(|&l| point_name(l)).collect(),
        layers,
        action: req.action,
        scale,
        norms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use erosion_model::npy::write_npy;
    use serde_json::json;

    /// Directions for a model of 3 blocks, width 2: `one` [2], `per` [4, 2] with block 1 zero.
    fn dirs() -> Directions {
        let dir = tempfile::tempdir().unwrap();
        let (one, per) = (dir.path().join("one.npy"), dir.path().join("per.npy"));
        write_npy(&one, &[2], &[3f32, 4.]).unwrap();
        write_npy(&per, &[4, 2], &[1f32, 0., 0., 2., 0., 0., 5., 0.]).unwrap();
        let mut d = Directions::default();
        d.load("one", &one, 3, 2).unwrap();
        d.load("per", &per, 3, 2).unwrap();
        let e = d.load("one", &one, 3, 2).unwrap_err().to_string();
        assert!(e.contains("named twice"), "{e}");
        let e = Directions::default().load("x", &per, 4, 2).unwrap_err();
        assert!(format!("{e:#}").contains("[5, 2]"), "{e:#}");
        d
    }

    #[test]
    fn layers_index_block_outputs_and_the_echo_says_what_was_applied() {
        let d = dirs();
        let s = parse(
            &json!({"direction": "per", "layers": [0, 2], "scale": 2}),
            &d,
            3,
        )
        .unwrap();
        let a = &s.applied[0];
        assert_eq!(
            a.points,
            ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]
        );
        // Row l + 1 of the file: block 0 -> [0, 2], block 2 -> [5, 0].
        assert_eq!(a.norms, [2.0, 5.0]);
        assert_eq!((a.action, a.scale), (Action::Add, Some(2.0)));
        assert_eq!(s.steering.points().len(), 2);
        let s = parse(
            &json!([{"direction": "one", "layers": 1, "action": "ablate"}, {"direction": "one", "layers": [2]}]),
            &d,
            3,
        )
        .unwrap();
        assert_eq!(s.applied[0].scale, None);
        assert_eq!(s.applied[1].scale, Some(1.0), "scale defaults to 1");
        assert_eq!(s.applied[1].norms, [5.0]);
        assert!(parse(&Value::Null, &d, 3).unwrap().steering.is_empty());
        assert_ne!(s.key, parse(&Value::Null, &d, 3).unwrap().key);
    }

    #[test]
    fn unknown_names_layers_and_fields_are_400s_naming_them() {
        let d = dirs();
        for (v, needle) in [
            (
                json!({"direction": "nope", "layers": [0]}),
                "`nope`; this server has: one, per",
            ),
            (
                json!({"direction": "one", "layers": [1, 3, -1]}),
                "layer(s) 3, -1 do not exist",
            ),
            (
                json!({"direction": "per", "layers": [1]}),
                "no vector at layer(s) 1",
            ),
            (json!({"direction": "one", "layers": []}), "empty"),
            (
                json!({"direction": "one", "layers": [0], "action": "ablate", "scale": 1}),
                "scale",
            ),
            (
                json!({"direction": "one", "layers": [0], "action": "flip"}),
                "flip",
            ),
            (
                json!({"direction": "one", "layers": [0], "colour": 1}),
                "colour",
            ),
            (json!("one"), "steering"),
            // Memory the request would decide: a copy of the vector per edit.
            (
                json!({"direction": "one", "layers": vec![0; MAX_EDITS + 1]}),
                "at most 1024",
            ),
            (
                json!(vec![
                    json!({"direction": "one", "layers": 0});
                    MAX_EDITS + 1
                ]),
                "at most 1024",
            ),
        ] {
            let e = parse(&v, &d, 3).unwrap_err();
            assert_eq!(e.status.as_u16(), 400);
            assert!(e.message.contains(needle), "{v}: {}", e.message);
            assert_eq!(e.param.as_deref(), Some("steering"));
        }
    }
}
