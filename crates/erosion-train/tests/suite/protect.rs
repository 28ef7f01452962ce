//! Protected fine-tuning on the toy counting task: projecting the updates leaves every
//! residual-stream writer's output along the protected span exactly unchanged; the penalty
//! keeps the probe's projections within a small fraction of how far plain training moves them.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use erosion_forward::batch::NoProgress;
use erosion_model::transformer::Transformer;
use erosion_train::protect::reference_projections;
use erosion_train::{Method, ProbeExample, ProtectMethod, Protection, TrainOptions, Trainer};

use crate::train::{data, model, options};

/// Two fixed directions of the 16-wide stream, at layer indices 1 and 2.
fn directions() -> Vec<(usize, Vec<f32>)> {
    let v = |k: usize| (0..16).map(|i| ((i * k + 3) % 7) as f32 - 3.0).collect();
    vec![(1, v(5)), (2, v(3))]
}

fn probe() -> Vec<ProbeExample> {
    data(6)
        .into_iter()
        .map(|e| ProbeExample {
            window: 1..e.ids.len(),
            ids: e.ids,
        })
        .collect()
}

fn trained(opts: TrainOptions) -> Result<Transformer> {
    let mut t = Trainer::new(model(DType::F32), opts)?;
    t.fit(&data(20), t.options().steps, &mut NoProgress, |_, _| Ok(()))?;
    t.merged()
}

/// Largest change of the probe's projections from the starting model's.
fn drift(m: &Transformer, p: &Protection, p0: &[Vec<f64>]) -> Result<f64> {
    let p1 = reference_projections(m, p)?;
    Ok(p1
        .iter()
        .flatten()
        .zip(p0.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max))
}

#[test]
fn protection_keeps_the_protected_projections() -> Result<()> {
    let steps = 30;
    let base = Protection {
        method: ProtectMethod::ProjectUpdates,
        directions: directions(),
        probe: probe(),
    };
    let start = model(DType::F32);
    let p0 = reference_projections(&start, &base)?;
    let plain = trained(options(steps, Method::Full))?;
    let plain_drift = drift(&plain, &base, &p0)?;
    assert!(
        plain_drift > 0.05,
        "plain training must move the projections ({plain_drift})"
    );

    // Project the updates: each writer's change has no component in the span it feeds.
    let projected = trained(TrainOptions {
        protect: Some(base.clone()),
        ..options(steps, Method::Full)
    })?;
    let units: Vec<Tensor> = directions()
        .iter()
        .map(|(_, v)| {
            let n = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
            Tensor::new(v.as_slice(), &Device::Cpu).and_then(|t| t / n)
        })
        .collect::<candle_core::Result<_>>()?;
    for name in [
        "model.layers.0.self_attn.o_proj.weight",
        "model.layers.0.mlp.down_proj.weight",
    ] {
        let dw = (projected.parameter(name)? - start.parameter(name)?)?; // [16, in]
        let moved = (plain.parameter(name)? - start.parameter(name)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(moved > 1e-3, "{name} trains");
        for u in &units {
            let along = u
                .unsqueeze(0)?
                .matmul(&dw)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(along < 1e-5 * moved.max(1.0), "{name}: {along}");
        }
    }
    let de = (projected.parameter("model.embed_tokens.weight")?
        - start.parameter("model.embed_tokens.weight")?)?;
    for u in &units {
        let along = de
            .matmul(&u.unsqueeze(1)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(along < 1e-5, "embeddings: {along}");
    }

    // Penalise the drift: the probe's projections stay close to the start.
    let penalty = Protection {
        method: ProtectMethod::Penalty {
            weight: 100.0,
            reference: p0.clone(),
        },
        ..base.clone()
    };
    let penalised = trained(TrainOptions {
        protect: Some(penalty.clone()),
        ..options(steps, Method::Full)
    })?;
    let kept = drift(&penalised, &base, &p0)?;
    let proj = drift(&projected, &base, &p0)?;
    // Measured: plain 0.178, projected updates 0.023, penalty 0.003.
    assert!(
        proj < 0.5 * plain_drift,
        "projected updates: {proj} vs plain {plain_drift}"
    );
    assert!(
        kept < 0.1 * plain_drift,
        "penalty: {kept} vs plain {plain_drift}"
    );

    // Both still learn the task.
    let loss = |m: &Transformer| -> Result<f64> {
        let t = Trainer::new(m.clone(), options(1, Method::Full))?;
        let d = data(20);
        Ok(t.loss_and_grads(&d.iter().collect::<Vec<_>>())?.0)
    };
    let l0 = loss(&start)?;
    for (name, m) in [
        ("plain", &plain),
        ("projected", &projected),
        ("penalised", &penalised),
    ] {
        assert!(loss(m)? < 0.9 * l0, "{name} did not learn the task");
    }

    // A wrong shape is refused, naming the problem.
    let bad = Protection {
        directions: vec![(5, vec![1.0; 16])],
        ..base
    };
    let err = Trainer::new(
        model(DType::F32),
        TrainOptions {
            protect: Some(bad),
            ..options(1, Method::Full)
        },
    )
    .err()
    .unwrap();
    assert!(format!("{err:#}").contains("does not fit"), "{err:#}");
    Ok(())
}
