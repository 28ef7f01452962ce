//! Hook points: record or change any intermediate activation of the forward pass.
//!
//! ```text
//! let mut hooks = Hooks::new(model.n_layers());
//! hooks.record("blocks.3.hook_resid_post", Positions::windows(&response_windows))?;
//! hooks.edit(HookPoint::resid_pre(5), Edit::add(&direction, -4.0), Positions::All)?;
//! let logits = model.forward(&ids, Some(&mask), &mut ForwardOptions::fast().hooks(&mut hooks))?;
//! let acts = hooks.take_cache();   // acts.tensor("blocks.3.hook_resid_post")?  [n_rows, d_model]
//! ```
//!
//! The names, their shapes and how Hugging Face's `output_hidden_states` maps onto them are in
//! [`point`]. Actions registered at one point run in registration order, so a record placed
//! after an edit sees the edited value. A forward pass without `Hooks` does no hook work at all;
//! with `Hooks`, each point costs one slot lookup when nothing is registered there.

mod cache;
pub mod point;
mod positions;
mod steering;

pub use cache::{ActivationCache, Recorded};
pub use point::{HookPoint, IntoHookPoint, Site, NAME_PATTERN};
pub use positions::Positions;
pub use steering::Steering;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, D};
use std::fmt;

/// A custom edit: the activation in, its replacement (same shape) out.
pub type EditFn = Box<dyn FnMut(&Tensor) -> Result<Tensor> + Send>;

/// A change to an activation `x`. Vectors act on the last dimension of `x` (d_model for the
/// residual stream, d_head for per-head activations).
pub enum Edit {
    /// x + scale * vector; `vector` broadcasts against `x` (usually `[d]`).
    Add { vector: Tensor, scale: f64 },
    /// x - (x U^T) U: removes the component along the rows of `basis` `[k, d]`
    /// (orthonormal; [`Edit::project_out`] makes it so).
    ProjectOut { basis: Tensor },
    /// `value`, broadcast to the shape of `x` (a `[d]` vector, or a full activation recorded
    /// from another run, for patching).
    Replace { value: Tensor },
    /// Any function of `x` that keeps its shape.
    Custom(EditFn),
}

impl Edit {
    pub fn add(vector: &Tensor, scale: f64) -> Self {
        Edit::Add {
            vector: vector.clone(),
            scale,
        }
    }

    /// Removes the direction `[d]`, or the span of the rows of `[k, d]`. The rows are
    /// orthonormalised here (Gram-Schmidt in f64), so any spanning set will do; a row that
    /// adds nothing to the span of the previous ones is an error.
    pub fn project_out(directions: &Tensor) -> Result<Self> {
        let rows = match directions.rank() {
            1 => vec![directions.to_dtype(DType::F64)?.to_vec1::<f64>()?],
            2 => directions.to_dtype(DType::F64)?.to_vec2::<f64>()?,
            r => bail!("project_out takes a [d] or [k, d] tensor, got rank {r}"),
        };
        let d = rows.first().map_or(0, Vec::len);
        let mut basis: Vec<Vec<f64>> = Vec::with_capacity(rows.len());
        for (i, mut v) in rows.into_iter().enumerate() {
            let norm0 = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            for u in &basis {
                let c: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= c * b);
            }
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            if !norm.is_finite() || norm <= 1e-10 * norm0.max(f64::MIN_POSITIVE) {
                bail!("project_out: direction {i} is zero or in the span of the previous ones");
            }
            v.iter_mut().for_each(|a| *a /= norm);
            basis.push(v);
        }
        let k = basis.len();
        let flat: Vec<f64> = basis.into_iter().flatten().collect();
        let basis = Tensor::from_vec(flat, (k, d), directions.device())?;
        Ok(Edit::ProjectOut { basis })
    }

    pub fn replace(value: &Tensor) -> Self {
        Edit::Replace {
            value: value.clone(),
        }
    }

    pub fn custom(f: impl FnMut(&Tensor) -> Result<Tensor> + Send + 'static) -> Self {
        Edit::Custom(Box::new(f))
    }

    /// The edited activation at every position.
    fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        let like = |t: &Tensor| t.to_device(x.device())?.to_dtype(x.dtype());
        let y = match self {
            Edit::Add { vector, scale } => x.broadcast_add(&(like(vector)? * *scale)?)?,
            Edit::ProjectOut { basis } => {
                let u = like(basis)?; // [k, d]
                let d = x.dim(D::Minus1)?;
                if u.dim(1)? != d {
                    bail!("project_out direction has length {} but the activation's last dimension is {d}", u.dim(1)?);
                }
                let flat = x.contiguous()?.reshape(((), d))?; // [n, d]
                let coeff = flat.matmul(&u.t()?)?; // [n, k]
                (flat - coeff.matmul(&u)?)?.reshape(x.shape())?
            }
            Edit::Replace { value } => like(value)?.broadcast_as(x.shape())?.contiguous()?,
            Edit::Custom(f) => f(x)?,
        };
        if y.shape() != x.shape() {
            bail!(
                "the edit returned shape {:?} for an activation of shape {:?}",
                y.dims(),
                x.dims()
            );
        }
        Ok(y)
    }
}

impl fmt::Debug for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edit::Add { vector, scale } => write!(f, "Add({:?} x {scale})", vector.dims()),
            Edit::ProjectOut { basis } => write!(f, "ProjectOut({:?})", basis.dims()),
            Edit::Replace { value } => write!(f, "Replace({:?})", value.dims()),
            Edit::Custom(_) => f.write_str("Custom"),
        }
    }
}

#[derive(Debug)]
enum Action {
    Record { name: String, positions: Positions },
    Edit { edit: Edit, positions: Positions },
}

/// The hooks of one model: what to record and change where, and what was recorded.
#[derive(Debug)]
pub struct Hooks {
    n_layers: usize,
    /// Sites this model's blocks do not compute (Llama has no post-norms): hooking one is
    /// an error, not a silent no-op.
    absent: Vec<Site>,
    /// One list of actions per hook point, indexed by `HookPoint::slot`.
    slots: Vec<Vec<Action>>,
    cache: ActivationCache,
}

impl Hooks {
    /// No hooks yet, for a model of `n_layers` blocks.
    pub fn new(n_layers: usize) -> Self {
        let slots = (0..HookPoint::n_slots(n_layers))
            .map(|_| Vec::new())
            .collect();
        Hooks {
            n_layers,
            absent: Vec::new(),
            slots,
            cache: ActivationCache::default(),
        }
    }

    /// No hooks yet, for a model of `n_layers` blocks that lacks the sites `absent`.
    pub fn without_sites(n_layers: usize, absent: Vec<Site>) -> Self {
        Hooks {
            absent,
            ..Hooks::new(n_layers)
        }
    }

    /// `point`, checked against the model's layers and sites.
    fn slot_of(&self, point: impl IntoHookPoint) -> Result<(HookPoint, usize)> {
        let point = point.into_hook_point(self.n_layers)?;
        if let HookPoint::Block { site, .. } = point {
            if self.absent.contains(&site) {
                bail!("`{point}` is not a hook point of this model: its blocks have no such step");
            }
        }
        Ok((point, point.slot(self.n_layers)))
    }

    pub fn n_layers(&self) -> usize {
        self.n_layers
    }

    /// Records the activation at `point`, at `positions` only (see [`Recorded`] for the layout).
    pub fn record(&mut self, point: impl IntoHookPoint, positions: Positions) -> Result<&mut Self> {
        let (point, i) = self.slot_of(point)?;
        let name = point.to_string();
        let slot = &mut self.slots[i];
        if slot.iter().any(|a| matches!(a, Action::Record { .. })) {
            bail!("`{name}` is already recorded");
        }
        slot.push(Action::Record { name, positions });
        Ok(self)
    }

    /// Changes the activation at `point`, at `positions` only (elsewhere it is left exactly as is).
    pub fn edit(
        &mut self,
        point: impl IntoHookPoint,
        edit: Edit,
        positions: Positions,
    ) -> Result<&mut Self> {
        let (_, i) = self.slot_of(point)?;
        self.slots[i].push(Action::Edit { edit, positions });
        Ok(self)
    }

    /// Whether nothing is registered anywhere.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Vec::is_empty)
    }

    /// The hook points that have something registered, in forward order.
    pub fn points(&self) -> Vec<HookPoint> {
        let mut pts = vec![HookPoint::Embed];
        for layer in 0..self.n_layers {
            pts.extend(
                Site::ALL
                    .iter()
                    .map(|&site| HookPoint::Block { layer, site }),
            );
        }
        pts.extend([HookPoint::LnFinal, HookPoint::Logits]);
        pts.retain(|p| !self.slots[p.slot(self.n_layers)].is_empty());
        pts
    }

    /// Removes every action and every record.
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(Vec::clear);
        self.cache = ActivationCache::default();
    }

    pub fn cache(&self) -> &ActivationCache {
        &self.cache
    }

    /// The records so far; the hooks stay registered.
    pub fn take_cache(&mut self) -> ActivationCache {
        std::mem::take(&mut self.cache)
    }

    /// Whether anything is registered at `point` (layer checked by the caller).
    #[inline]
    pub(crate) fn is_active(&self, point: HookPoint) -> bool {
        !self.slots[point.slot(self.n_layers)].is_empty()
    }

    /// Runs the actions registered at `point` on `x` and returns the (possibly changed) value.
    #[inline]
    pub(crate) fn run(&mut self, point: HookPoint, x: Tensor) -> Result<Tensor> {
        let slot = point.slot(self.n_layers);
        if self.slots[slot].is_empty() {
            return Ok(x);
        }
        self.run_slot(slot, point, x)
            .with_context(|| format!("in hook `{point}`"))
    }

    fn run_slot(&mut self, slot: usize, point: HookPoint, mut x: Tensor) -> Result<Tensor> {
        let seq_dim = point.seq_dim();
        let (batch, seq) = (x.dim(0)?, x.dim(seq_dim)?);
        for action in self.slots[slot].iter_mut() {
            match action {
                Action::Record { name, positions } => {
                    let rec = match positions.rows(batch, seq)? {
                        None => Recorded {
                            tensor: x.clone(),
                            rows: None,
                        },
                        Some(rows) => Recorded {
                            tensor: select_rows(&x, seq_dim, &rows)?,
                            rows: Some(rows),
                        },
                    };
                    self.cache.insert(name, rec);
                }
                Action::Edit { edit, positions } => {
                    let y = edit.apply(&x)?;
                    x = match positions.mask(batch, seq, x.device())? {
                        None => y,
                        Some(mask) => {
                            let mut shape = vec![1usize; x.rank()];
                            shape[0] = batch;
                            shape[seq_dim] = seq;
                            mask.reshape(shape)?
                                .broadcast_as(x.shape())?
                                .where_cond(&y, &x)?
                        }
                    };
                }
            }
        }
        Ok(x)
    }
}

/// The rows `(example, position)` of `x`, stacked: `[n_rows, ...]` without the batch and
/// position dimensions.
fn select_rows(x: &Tensor, seq_dim: usize, rows: &[(usize, usize)]) -> Result<Tensor> {
    let x = if seq_dim == 1 {
        x.clone()
    } else {
        x.transpose(1, seq_dim)?
    };
    let dims = x.dims().to_vec();
    let seq = dims[1];
    let mut flat_shape = vec![dims[0] * seq];
    flat_shape.extend_from_slice(&dims[2..]);
    let flat = x.contiguous()?.reshape(flat_shape)?;
    let idx: Vec<u32> = rows.iter().map(|&(b, p)| (b * seq + p) as u32).collect();
    let idx = Tensor::from_vec(idx, rows.len(), x.device())?;
    Ok(flat.index_select(&idx, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn x() -> Tensor {
        // [batch 2, seq 3, d 2], x[b, s, j] = 10b + 2s + j
        let v: Vec<f32> = (0..2)
            .flat_map(|b| {
                (0..3).flat_map(move |s| (0..2).map(move |j| (10 * b + 2 * s + j) as f32))
            })
            .collect();
        Tensor::from_vec(v, (2, 3, 2), &Device::Cpu).unwrap()
    }

    #[test]
    fn records_selected_rows_and_edits_only_selected_positions() {
        let mut h = Hooks::new(1);
        h.record("hook_embed", Positions::windows(&[1..3, 0..1]))
            .unwrap();
        let dir = Tensor::new(&[0f32, 1.], &Device::Cpu).unwrap();
        h.edit(
            "hook_embed",
            Edit::add(&dir, 100.),
            Positions::Same(vec![2]),
        )
        .unwrap();
        let y = h.run(HookPoint::Embed, x()).unwrap();
        let rec = h.cache().get("hook_embed").unwrap();
        assert_eq!(rec.rows.as_deref().unwrap(), &[(0, 1), (0, 2), (1, 0)]);
        assert_eq!(
            rec.tensor.to_vec2::<f32>().unwrap(),
            vec![vec![2., 3.], vec![4., 5.], vec![10., 11.]]
        );
        let y = y.to_vec3::<f32>().unwrap();
        assert_eq!(y[0][2], vec![4., 105.]);
        assert_eq!(y[1][2], vec![14., 115.]);
        assert_eq!(y[1][1], vec![12., 13.]);
    }

    #[test]
    fn project_out_orthonormalises_and_removes_the_span() {
        let dirs = Tensor::new(&[[1f64, 1., 0.], [1., 0., 0.]], &Device::Cpu).unwrap();
        let mut e = Edit::project_out(&dirs).unwrap();
        let x = Tensor::new(&[[3f64, -2., 5.]], &Device::Cpu).unwrap();
        let y = e.apply(&x).unwrap().to_vec2::<f64>().unwrap();
        for (got, want) in y[0].iter().zip([0., 0., 5.]) {
            assert!((got - want).abs() < 1e-12, "{y:?}");
        }
        let dup = Tensor::new(&[[1f64, 1., 0.], [2., 2., 0.]], &Device::Cpu).unwrap();
        assert!(Edit::project_out(&dup).is_err());
    }

    #[test]
    fn custom_edit_must_keep_the_shape() {
        let mut h = Hooks::new(1);
        h.edit(
            "hook_embed",
            Edit::custom(|t| Ok(t.sum_keepdim(2)?)),
            Positions::All,
        )
        .unwrap();
        let e = h.run(HookPoint::Embed, x()).unwrap_err();
        assert!(format!("{e:#}").contains("hook_embed"), "{e:#}");
        assert!(h.record("hook_embed", Positions::All).is_ok());
        assert!(h.record("hook_embed", Positions::All).is_err());
    }
}
