//! GELU and the `exp` it and the attention's softmax need, vectorizable (burn's CPU
//! backend runs `erf` one scalar at a time).

use crate::kernels::Simd;

/// `e^x` for `x ≤ 0` (softmax) and the GELU's `e^{-x²}`: Cody–Waite reduction to
/// `2^n · e^r`, |r| ≤ ln2/2, and a degree-6 Taylor polynomial (relative error < 1e-6;
/// 0 below e^-87).
#[inline(always)]
pub(crate) fn exp_in_place(v: &mut [f32]) {
    for x in v.iter_mut() {
        let x0 = x.max(-87.0);
        let n = (x0 * std::f32::consts::LOG2_E).round();
        let r = x0 - n * 0.693_145_75 - n * 1.428_606_8e-6;
        let p =
            1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
        let y = p * f32::from_bits(((n as i32 + 127) as u32) << 23);
        *x = if *x < -87.0 { 0.0 } else { y }; // below f32's normal range
    }
}

/// GELU in place, `x · Φ(x)` with `erf` from Abramowitz & Stegun 7.1.26 (absolute error
/// < 1.5e-7, as PyTorch's vectorized `erf`).
pub fn gelu_in_place(v: &mut [f32], simd: Simd) {
    #[cfg(target_arch = "x86_64")]
    if simd.avx512() {
        // SAFETY: AVX-512F is present.
        unsafe { gelu_avx512(v) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd; // plain loops only
    gelu_plain(v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_avx512(v: &mut [f32]) {
    gelu_plain(v)
}

#[inline(always)]
fn gelu_plain(v: &mut [f32]) {
    let mut e = [0.0f32; 64];
    for chunk in v.chunks_mut(64) {
        let e = &mut e[..chunk.len()];
        for (e, &x) in e.iter_mut().zip(chunk.iter()) {
            let z = x * std::f32::consts::FRAC_1_SQRT_2;
            *e = -z * z;
        }
        exp_in_place(e);
        for (x, &e) in chunk.iter_mut().zip(e.iter()) {
            let z = (*x * std::f32::consts::FRAC_1_SQRT_2).abs();
            let k = 1.0 / (1.0 + 0.327_591_1 * z);
            let poly =
                k * (0.254_829_6 + k * (-0.284_496_74 + k * (1.421_413_7 + k * (-1.453_152_1 + k * 1.061_405_4))));
            let erf = (1.0 - poly * e).copysign(*x);
            *x *= 0.5 * (1.0 + erf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_and_exp_match_the_exact_functions() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 / 400.0).collect();
        let mut g = xs.clone();
        gelu_in_place(&mut g, Simd::best());
        let mut plain = xs.clone();
        gelu_plain(&mut plain);
        for ((&x, &y), &p) in xs.iter().zip(&g).zip(&plain) {
            let exact = 0.5 * x as f64 * (1.0 + erf_series(x as f64 / 2f64.sqrt()));
            assert!((y as f64 - exact).abs() < 2e-6 * (1.0 + x.abs() as f64), "gelu({x}) = {y}, exact {exact}");
            assert!((y - p).abs() <= 1e-6 * (1.0 + x.abs()), "simd and plain gelu differ at {x}");
        }
        let mut e: Vec<f32> = (0..=1000).map(|i| -(i as f32) / 10.0).collect();
        let xs = e.clone();
        exp_in_place(&mut e);
        for (x, y) in xs.iter().zip(&e) {
            let exact = (*x as f64).exp();
            assert!((*y as f64 - exact).abs() <= 1e-6 * exact + 1e-37, "exp({x}) = {y}, exact {exact}");
        }
    }

    /// erf in f64 by its Maclaurin series (A&S 7.1.5), the tests' reference: converges for
    /// every |x| ≤ 5 used here; beyond, erf is ±1 to f64 precision.
    fn erf_series(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
