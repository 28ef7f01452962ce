//! Steering: a fixed intervention applied to every forward pass of a model, at every position
//! (prompt and generated tokens alike), as control vectors (repeng, llama.cpp) and directional
//! ablation do.
//!
//! ```text
//! let steer = Steering::default()
//!     .add(HookPoint::resid_post(4), &v4, 2.0)          // x <- x + 2 v4
//!     .ablate(HookPoint::resid_post(6), &u6)?;          // x <- x - (x.u) u, u = u6 / |u6|
//! let mut hooks = steer.hooks(model.n_layers())?;       // fresh hooks for one forward pass
//! ```
//!
//! Unlike [`Hooks`], a `Steering` is cheap to clone and records nothing, so a decoder builds
//! fresh hooks from it for each forward pass (full prompt, then each cached step).

use anyhow::{bail, Result};
use candle_core::Tensor;

use super::{Edit, HookPoint, Hooks, Positions};

#[derive(Clone, Debug)]
enum Change {
    /// x + scale * vector, vector `[d]`.
    Add { vector: Tensor, scale: f64 },
    /// x - (x U^T) U with orthonormal rows U `[k, d]`.
    ProjectOut { basis: Tensor },
}

/// Edits applied at all positions of every forward pass; empty by default (no change at all).
#[derive(Clone, Debug, Default)]
pub struct Steering {
    changes: Vec<(HookPoint, Change)>,
}

impl Steering {
    /// Also adds `scale * vector` (`[d]`) at `point`.
    pub fn add(mut self, point: HookPoint, vector: &Tensor, scale: f64) -> Self {
        let change = Change::Add {
            vector: vector.clone(),
            scale,
        };
        self.changes.push((point, change));
        self
    }

    /// Also removes the component along `directions` (`[d]`, or the span of the rows of
    /// `[k, d]`; orthonormalised once, here) at `point`.
    pub fn ablate(mut self, point: HookPoint, directions: &Tensor) -> Result<Self> {
        let Edit::ProjectOut { basis } = Edit::project_out(directions)? else {
            bail!("project_out returned another edit");
        };
        self.changes.push((point, Change::ProjectOut { basis }));
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The hook points changed, in the order the changes were given.
    pub fn points(&self) -> Vec<HookPoint> {
        self.changes.iter().map(|(p, _)| *p).collect()
    }

    /// Fresh hooks for a model of `n_layers` blocks that make these changes at every position.
    pub fn hooks(&self, n_layers: usize) -> Result<Hooks> {
        let mut hooks = Hooks::new(n_layers);
        for (point, change) in &self.changes {
            let edit = match change {
                Change::Add { vector, scale } => Edit::add(vector, *scale),
                Change::ProjectOut { basis } => Edit::ProjectOut {
                    basis: basis.clone(),
                },
            };
            hooks.edit(*point, edit, Positions::All)?;
        }
        Ok(hooks)
    }

    /// One line per change, for provenance: `blocks.4.hook_resid_post: add 2 x [576] (|v| = 3.1)`.
    pub fn describe(&self) -> Result<Vec<String>> {
        self.changes
            .iter()
            .map(|(point, change)| {
                Ok(match change {
                    Change::Add { vector, scale } => {
                        let norm = vector
                            .to_dtype(candle_core::DType::F64)?
                            .sqr()?
                            .sum_all()?
                            .sqrt()?
                            .to_scalar::<f64>()?;
                        format!(
                            "{point}: add {scale} x {:?} (|v| = {norm:.4})",
                            vector.dims()
                        )
                    }
                    Change::ProjectOut { basis } => {
                        format!("{point}: project out {} direction(s)", basis.dim(0)?)
                    }
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn add_then_subtract_restores_and_ablation_leaves_no_component() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1., (2, 5, 4), &dev).unwrap();
        let v = Tensor::new(&[0.5f64, -1., 2., 0.25], &dev).unwrap();
        let steer =
            Steering::default()
                .add(HookPoint::Embed, &v, 3.0)
                .add(HookPoint::Embed, &v, -3.0);
        let mut hooks = steer.hooks(1).unwrap();
        let y = hooks.run(HookPoint::Embed, x.clone()).unwrap();
        // Exact up to the rounding of x + 3v (one ulp of its largest value).
        let diff = (y - &x).unwrap().abs().unwrap().max_all().unwrap();
        let bound = 8.0 * f64::EPSILON;
        assert!(diff.to_scalar::<f64>().unwrap() <= bound * 8.0, "{diff}");

        let steer = Steering::default().ablate(HookPoint::Embed, &v).unwrap();
        let mut hooks = steer.hooks(1).unwrap();
        let y = hooks.run(HookPoint::Embed, x.clone()).unwrap();
        let along = y.broadcast_mul(&v).unwrap().sum(2).unwrap();
        let max = along
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(max < 1e-12, "{max}");
        let lines = Steering::default()
            .add(
                HookPoint::resid_post(0),
                &v.to_dtype(DType::F32).unwrap(),
                2.0,
            )
            .describe()
            .unwrap();
        assert_eq!(
            lines[0],
            "blocks.0.hook_resid_post: add 2 x [4] (|v| = 2.3049)"
        );
    }
}
