use candle_core::{Device, Tensor};
use std::time::Instant;
fn main() -> anyhow::Result<()> {
    let d = Device::Cpu;
    for &(m, k, n) in &[
        (256usize, 576usize, 1536usize),
        (256, 1536, 576),
        (256, 576, 576),
        (16, 576, 1536),
        (4, 576, 1536),
        (1024, 576, 1536),
    ] {
        let x = Tensor::randn(0f32, 1.0, (m, k), &d)?;
        let w = Tensor::randn(0f32, 1.0, (n, k), &d)?; // [out, in]
        let wt = w.t()?.contiguous()?; // [in, out]
        let reps = (2_000_000_000 / (2 * m * k * n)).max(5);
        let mut best = [f64::MAX; 3];
        for _ in 0..3 {
            let t = Instant::now();
            for _ in 0..reps {
                let _ = x.matmul(&w.t()?)?;
            }
            best[0] = best[0].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..reps {
                let _ = x.matmul(&wt)?;
            }
            best[1] = best[1].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..reps {
                let _ = w.matmul(&x.t()?)?.t()?.contiguous()?;
            }
            best[2] = best[2].min(t.elapsed().as_secs_f64());
        }
        let gf = |s: f64| 2.0 * (m * k * n * reps) as f64 / s / 1e9;
        println!(
            "m={m} k={k} n={n}: W.t() {:.0} GF/s, Wt contiguous {:.0} GF/s, (W x^T)^T {:.0} GF/s",
            gf(best[0]),
            gf(best[1]),
            gf(best[2])
        );
    }
    Ok(())
}
