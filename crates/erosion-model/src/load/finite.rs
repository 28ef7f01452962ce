//! NaN / Inf detection in weights, naming the tensor. A broken conversion or a diverged
//! fine-tune otherwise shows up much later as NaN logits with no hint of where they came from.
//! Loading checks every tensor with [`ensure_finite`] (two reductions, so the fast path stays
//! fast); safetensors weights go through [`CheckedSafetensors`], which checks each tensor as
//! the model asks for it.

use anyhow::{bail, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use std::collections::HashMap;

/// [`check_finite`] behind a cheap filter: the sum of all values is finite exactly when no
/// value is NaN or infinite, barring overflow of the sum itself, so the value-by-value scan
/// (which copies the tensor to the host) runs only when the sum is not finite. Rows are summed
/// in the tensor's own dtype first so no f32 copy of a large tensor is made.
pub fn ensure_finite(name: &str, t: &Tensor) -> Result<()> {
    if !t.dtype().is_float() || t.elem_count() == 0 {
        return Ok(());
    }
    let rows = match t.rank() {
        0 => t.clone(),
        r => t.sum(r - 1)?,
    };
    let sum = rows.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    if sum.is_finite() {
        return Ok(());
    }
    check_finite(name, t)
}

/// The safetensors files of a checkpoint as a `VarBuilder` backend that checks every tensor it
/// hands out with [`ensure_finite`] (after the conversion to the model's dtype, which is
/// where an f32 weight too large for f16 becomes infinite).
pub struct CheckedSafetensors(pub MmapedSafetensors);

impl CheckedSafetensors {
    fn load(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.0.load(name, dev)?.to_dtype(dtype)?;
        ensure_finite(name, &t).map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
        Ok(t)
    }
}

/// `t` if it has shape `s` (what a `VarBuilder` asked for), else candle's shape error.
pub(crate) fn of_shape(t: Tensor, s: Shape, name: &str) -> candle_core::Result<Tensor> {
    if t.shape() != &s {
        return Err(candle_core::Error::UnexpectedShape {
            msg: format!("shape mismatch for {name}"),
            expected: s,
            got: t.shape().clone(),
        });
    }
    Ok(t)
}

impl SimpleBackend for CheckedSafetensors {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        of_shape(self.load(name, dtype, dev)?, s, name)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.get(name).is_ok()
    }
}

/// Fails if `t` holds a NaN or an infinity, with the tensor's name, how many values are bad,
/// and the index of the first one.
pub fn check_finite(name: &str, t: &Tensor) -> Result<()> {
    if !t.dtype().is_float() {
        return Ok(());
    }
    let dims = t.dims().to_vec();
    let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let mut bad = values.iter().enumerate().filter(|(_, v)| !v.is_finite());
    let Some((first, value)) = bad.next() else {
        return Ok(());
    };
    let count = 1 + bad.count();
    bail!(
        "tensor {name} {dims:?} has {count} non-finite value{} (first: {value} at index {:?})",
        if count == 1 { "" } else { "s" },
        unravel(first, &dims)
    )
}

/// [`check_finite`] over a map, in name order so the first bad tensor reported is stable.
pub fn check_all_finite(tensors: &HashMap<String, Tensor>) -> Result<()> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        check_finite(name, &tensors[name])?;
    }
    Ok(())
}

/// Flat index -> multi-index for a row-major shape.
fn unravel(mut flat: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for (i, &d) in dims.iter().enumerate().rev() {
        idx[i] = flat % d.max(1);
        flat /= d.max(1);
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn names_tensor_count_and_position() {
        let t = Tensor::new(
            &[[1f32, 2.0, 3.0], [f32::NAN, 5.0, f32::INFINITY]],
            &Device::Cpu,
        )
        .unwrap();
        let msg = check_finite("model.layers.0.mlp.up_proj.weight", &t)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("model.layers.0.mlp.up_proj.weight"), "{msg}");
        assert!(
            msg.contains("2 non-finite values") && msg.contains("NaN at index [1, 0]"),
            "{msg}"
        );
        let ok = Tensor::new(&[1f32, -1e30], &Device::Cpu).unwrap();
        check_finite("ok", &ok).unwrap();
        // bf16 is checked too.
        let b = t.to_dtype(DType::BF16).unwrap();
        assert!(check_finite("b", &b).is_err());
    }

    #[test]
    fn fast_check_agrees_with_the_scan() {
        let dev = Device::Cpu;
        let ok = Tensor::new(&[[1f32, -2.0], [3.0, 4.0]], &dev).unwrap();
        ensure_finite("ok", &ok).unwrap();
        ensure_finite("ok16", &ok.to_dtype(DType::F16).unwrap()).unwrap();
        // Values whose f16 row sum overflows are finite: the scan clears them.
        let big = Tensor::new(&[[60000f32, 60000.0]], &dev).unwrap();
        ensure_finite("big", &big.to_dtype(DType::F16).unwrap()).unwrap();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let t = Tensor::new(&[[1f32, bad], [3.0, 4.0]], &dev).unwrap();
            let msg = ensure_finite("w", &t).unwrap_err().to_string();
            assert!(
                msg.contains("tensor w [2, 2]") && msg.contains("[0, 1]"),
                "{msg}"
            );
        }
        let scalar = Tensor::new(f32::NAN, &dev).unwrap();
        assert!(ensure_finite("s", &scalar).is_err());
    }
}
