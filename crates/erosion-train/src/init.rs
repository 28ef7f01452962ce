//! A fresh model with seeded weights, initialised as transformers initialises Qwen2 / Llama:
//! linear and embedding weights ~ N(0, 0.02), biases 0, norm gains 1. (candle's own random
//! initialisers draw from an unseeded generator, so they cannot give reproducible runs.)

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use erosion_model::{transformer::Transformer, Config};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// transformers' `initializer_range` default for these architectures.
pub const INIT_STD: f64 = 0.02;

pub fn fresh_model(cfg: &Config, seed: u64, dtype: DType, device: &Device) -> Result<Transformer> {
    let mut model = Transformer::new(cfg, VarBuilder::zeros(dtype, device))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, INIT_STD as f32)?;
    for name in model.parameter_names() {
        let shape = model.parameter(&name)?.shape().clone();
        let value = if name.ends_with("norm.weight") {
            Tensor::ones(&shape, dtype, device)?
        } else if name.ends_with(".bias") {
            Tensor::zeros(&shape, dtype, device)?
        } else {
            let v: Vec<f32> = (0..shape.elem_count())
                .map(|_| normal.sample(&mut rng))
                .collect();
            Tensor::from_vec(v, &shape, device)?.to_dtype(dtype)?
        };
        model.set_parameter(&name, value)?;
    }
    Ok(model)
}
