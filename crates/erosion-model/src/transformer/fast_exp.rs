//! `exp` for f32 that vectorises, and a way to run a loop on the widest vector unit the CPU has.
//!
//! libm's `expf` is a call per element, which keeps the softmax and SiLU loops scalar (6% of a
//! forward pass). [`exp`] is the classic Cephes reduction, written branch-free so that a loop
//! calling it compiles to vector instructions:
//!
//! ```text
//! exp(x) = 2^n e^r,  n = round(x / ln 2),  r = x - n ln 2 in [-ln2/2, ln2/2]
//! e^r ~ 1 + r + r^2 P(r)        P of degree 5 (Cephes expf), relative error under 2 ulp
//! ```
//! `ln 2` is split in two (`LN2_HI` exact in few bits) so that `r` is computed without
//! cancellation. Inputs below `LO` (where e^x nears the subnormal range) give 0, inputs above `HI` give
//! e^`HI` (f32 overflows from 88.72: only SiLU of g < -88 sees this, where the result is 0 to
//! within 1e-37), NaN gives NaN.

/// Below this the result is 0. e^LO is 0.7% above f32's smallest normal number (ln 2^-126 =
/// -87.33654): the lanes clamped to LO compute e^LO before the select discards it, and a
/// subnormal product there costs a microcode assist per vector (it was 57% of the softmax's time,
/// since every masked score went through it).
const LO: f32 = -87.33;
/// 2^n stays a normal number for n = round(HI / ln 2) = 127.
const HI: f32 = 88.376_26;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding and subtracting it rounds to the nearest integer (|v| < 2^22).
const ROUND: f32 = 12_582_912.0;

/// e^x (see the module's comment for its accuracy and range).
#[inline(always)]
#[allow(clippy::manual_clamp)] // the compare-and-select form is the one measured to vectorise
pub(crate) fn exp(x: f32) -> f32 {
    let xc = if x < LO {
        LO
    } else if x > HI {
        HI
    } else {
        x
    };
    // t holds round(xc / ln 2) in its low mantissa bits: n as a float and as an integer
    // without a float-to-int conversion (whose saturating form does not vectorise).
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    let y = er * scale;
    // NaN passed the clamp and gives NaN; below LO the result is 0.
    if x < LO {
        0.0
    } else {
        y
    }
}

/// Runs `f` compiled for AVX-512 or AVX2 when the CPU has it (else as is): loops in `f` that
/// call [`exp`] then use the wide registers. The binary stays portable; the choice is made at
/// run time. Only what is inlined into the dispatching function gets its features: mark `f`
/// `#[inline(always)]` (LLVM otherwise keeps a large closure, called from three places, as one
/// baseline-SSE function).
#[inline(always)]
pub(crate) fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within 2 ulp of libm over the whole normal range, on a dense grid and at the edges.
    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut worst = 0f64;
        let mut x = LO;
        while x <= HI {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs() / f32::EPSILON as f64);
            x += 0.000_37;
        }
        for x in [
            0.0f32, -0.0, 1.0, -1.0, 1e-30, -1e-30, 0.5, LO, HI, 20.0, -20.0,
        ] {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs() / f32::EPSILON as f64);
        }
        assert!(worst < 2.0, "worst error {worst} ulp");
        assert!(
            exp(LO).is_normal(),
            "clamped lanes must not compute a subnormal"
        );
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(100.0).is_finite() && exp(100.0) > 1e38);
    }

    #[test]
    fn widest_runs_the_closure() {
        let v: Vec<f32> = (0..1000).map(|i| i as f32 * -0.01).collect();
        let out = widest(|| v.iter().map(|&x| exp(x)).collect::<Vec<_>>());
        for (x, y) in v.iter().zip(out) {
            assert!((y - x.exp()).abs() <= 2.0 * f32::EPSILON * x.exp());
        }
    }
}
