//! NaN / Inf detection in weights, naming the tensor. A broken conversion or a diverged
//! fine-tune otherwise shows up much later as NaN logits with no hint of where they came from.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use std::collections::HashMap;

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
}
