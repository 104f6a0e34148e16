//! CPU kernels for the prior's sampling steps (issue 5): its linear layers packed (int8
//! stays int8), single-position attention over a plain key/value cache, and GELU. Written
//! by hand because burn's CPU backend has no int8 matmul and runs a step's tiny ops as
//! general ones: a `[16, 512] · [512, 2048]` matmul through a GEMM with AVX2 kernels, the
//! attention as 128 separate `[1, 64] · [64, t]` GEMMs, a cache that is re-concatenated
//! every step, and `erf` one scalar at a time. Measured on the paper preset, those made up
//! most of a 16-pair sample.
//!
//! Linear weights are packed in groups of 64 output columns, `[n / 64][k][64]` — one int8 bundle
//! scale per group row (the bundle's 64-value blocks are exactly these), so the kernel
//! rebuilds each weight as `q × scale`, the value the f32 dequantized model holds, and
//! streams 1 byte per weight instead of 4. With up to 6 rows a whole group runs at once
//! (enough independent sums to hide the FMA latency; 1–2 rows also split `k` in two
//! interleaved halves), with 7–16 rows one 16-column strip keeps every row's sum in an
//! AVX-512 register. Sums are FMAs in a different order than burn's GEMM, so results match
//! burn's `Linear` to float rounding, not bit for bit. Without AVX-512 the same packed
//! weights run a plain reference loop (the tests compare both); the bundle packs only where
//! AVX-512 is, since elsewhere burn's GEMM is the faster choice.

/// Output columns per packed group (and per int8 scale block).
pub const GROUP: usize = 64;

#[derive(Debug, Clone)]
enum Weights {
    /// `[n / 64][k][64]` int8 with `[n / 64][k]` scales.
    Int8 { q: Vec<i8>, scales: Vec<f32> },
    /// `[n / 64][k][64]` f32.
    F32(Vec<f32>),
}

/// `y = x · W + b` for `W: [k, n]` (burn's `Linear` layout), packed.
#[derive(Debug, Clone)]
pub struct PackedLinear {
    k: usize,
    n: usize,
    weights: Weights,
    bias: Option<Vec<f32>>,
}

/// Whether this CPU runs the packed kernels (x86-64 with AVX-512F, detected at run time).
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn check(k: usize, n: usize, len: usize, bias: &Option<Vec<f32>>) -> Result<(), String> {
    if k == 0 || n == 0 || !n.is_multiple_of(GROUP) {
        return Err(format!("a [{k}, {n}] weight does not pack: columns must be a positive multiple of {GROUP}"));
    }
    if len != k * n {
        return Err(format!("{len} weights for a [{k}, {n}] layer"));
    }
    match bias {
        Some(b) if b.len() != n => Err(format!("{} biases for {n} outputs", b.len())),
        _ => Ok(()),
    }
}

/// `[k, n]` row-major → `[n / 64][k][64]`.
fn pack<T: Copy>(w: &[T], k: usize, n: usize) -> Vec<T> {
    (0..n / GROUP).flat_map(|g| (0..k).flat_map(move |r| w[r * n + g * GROUP..][..GROUP].iter().copied())).collect()
}

impl PackedLinear {
    /// From int8 weights `[k, n]` with one scale per 64 consecutive values (the bundle's format).
    pub fn int8(q: &[i8], scales: &[f32], k: usize, n: usize, bias: Option<Vec<f32>>) -> Result<Self, String> {
        check(k, n, q.len(), &bias)?;
        if scales.len() != k * n / GROUP {
            return Err(format!("{} scales for a [{k}, {n}] layer", scales.len()));
        }
        let groups = n / GROUP;
        let scales = (0..groups).flat_map(|g| (0..k).map(move |r| scales[r * groups + g])).collect();
        Ok(Self { k, n, weights: Weights::Int8 { q: pack(q, k, n), scales }, bias })
    }

    /// From f32 weights `[k, n]`.
    pub fn f32(w: &[f32], k: usize, n: usize, bias: Option<Vec<f32>>) -> Result<Self, String> {
        check(k, n, w.len(), &bias)?;
        Ok(Self { k, n, weights: Weights::F32(pack(w, k, n)), bias })
    }

    pub fn outputs(&self) -> usize {
        self.n
    }

    /// `x: [m, k]` row-major → `[m, n]`; SIMD where available, else the plain loop.
    pub fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.forward_with(x, m, simd_available())
    }

    /// As [`Self::forward`], choosing the kernel (the tests run both).
    pub fn forward_with(&self, x: &[f32], m: usize, simd: bool) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "input is not [{m}, {}]", self.k);
        let mut y = vec![0.0f32; m * self.n];
        let out = Out(y.as_mut_ptr());
        let groups = self.n / GROUP;
        let run = |g: usize| {
            // SAFETY: group g writes only columns g*64..(g+1)*64 of each row of y, which no
            // other group touches; y outlives the calls.
            unsafe { self.group(x, m, g, out, simd) }
        };
        #[cfg(feature = "native")]
        if simd && m * self.k * self.n >= 1 << 21 {
            use rayon::prelude::*;
            (0..groups).into_par_iter().for_each(run);
            return y;
        }
        (0..groups).for_each(run);
        y
    }

    /// Columns `g*64..(g+1)*64` of `y` for all `m` rows.
    unsafe fn group(&self, x: &[f32], m: usize, g: usize, y: Out, simd: bool) {
        let (k, n) = (self.k, self.n);
        let bias = self.bias.as_ref().map(|b| &b[g * GROUP..][..GROUP]);
        #[cfg(target_arch = "x86_64")]
        if simd {
            let mut row = 0;
            while row < m {
                let rows = (m - row).min(16);
                // few rows: all 64 columns at once (enough independent sums to hide the
                // FMA latency); many rows: one 16-column strip at a time, 16 rows in registers
                let strips: &[usize] = if rows <= avx512::WIDE_ROWS { &[0] } else { &[0, 1, 2, 3] };
                for &strip in strips {
                    let c = g * GROUP + strip * 16;
                    let args = Strip {
                        x: x[row * k..].as_ptr(),
                        k,
                        y: unsafe { y.0.add(row * n + c) },
                        n,
                        bias: bias.map(|b| b[strip * 16..].as_ptr()),
                    };
                    let w = match &self.weights {
                        Weights::Int8 { q, scales } => {
                            WeightsAt::Int8(q[g * k * GROUP + strip * 16..].as_ptr(), scales[g * k..].as_ptr())
                        }
                        Weights::F32(w) => WeightsAt::F32(w[g * k * GROUP + strip * 16..].as_ptr()),
                    };
                    unsafe { avx512::rows(rows, &args, w) }
                }
                row += rows;
            }
            return;
        }
        let _ = simd;
        let mut wrow = [0.0f32; GROUP];
        let mut acc = vec![0.0f32; m * GROUP];
        for r in 0..k {
            match &self.weights {
                Weights::Int8 { q, scales } => {
                    let s = scales[g * k + r];
                    for (w, &v) in wrow.iter_mut().zip(&q[(g * k + r) * GROUP..][..GROUP]) {
                        *w = v as f32 * s;
                    }
                }
                Weights::F32(w) => wrow.copy_from_slice(&w[(g * k + r) * GROUP..][..GROUP]),
            }
            for i in 0..m {
                let xv = x[i * k + r];
                for (a, w) in acc[i * GROUP..][..GROUP].iter_mut().zip(&wrow) {
                    *a = xv.mul_add(*w, *a);
                }
            }
        }
        for i in 0..m {
            for c in 0..GROUP {
                let b = bias.map_or(0.0, |b| b[c]);
                unsafe { *y.0.add(i * n + g * GROUP + c) = acc[i * GROUP + c] + b };
            }
        }
    }
}

/// The output pointer, shared by the groups that write disjoint columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// One 16-column strip: rows of `x` (stride `k`) in, rows of `y` (stride `n`) out.
#[cfg(target_arch = "x86_64")]
struct Strip {
    x: *const f32,
    k: usize,
    y: *mut f32,
    n: usize,
    bias: Option<*const f32>,
}

/// The strip's weights: row `r` at `r * 64` (int8 with scale `r`, or f32).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum WeightsAt {
    Int8(*const i8, *const f32),
    F32(*const f32),
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{GROUP, Strip, WeightsAt};

    /// Up to this many rows go through [`wide`] (a whole 64-column group), more through [`strip`].
    pub const WIDE_ROWS: usize = 6;

    /// `rows` (1..=16) rows: [`wide`] over the group for few rows, else [`strip`].
    pub unsafe fn rows(rows: usize, s: &Strip, w: WeightsAt) {
        macro_rules! strips {
            ($($r:literal)*) => {
                match rows {
                    1 => unsafe { wide::<1, 2>(s, w) },
                    2 => unsafe { wide::<2, 2>(s, w) },
                    3 => unsafe { wide::<3, 1>(s, w) },
                    4 => unsafe { wide::<4, 1>(s, w) },
                    5 => unsafe { wide::<5, 1>(s, w) },
                    6 => unsafe { wide::<6, 1>(s, w) },
                    $($r => unsafe { strip::<$r>(s, w) },)*
                    _ => unreachable!("1..=16 rows"),
                }
            };
        }
        strips!(7 8 9 10 11 12 13 14 15 16)
    }

    /// The 16 weights of strip `j` (0..4) of row `r`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load(w: WeightsAt, r: usize, j: usize) -> __m512 {
        match w {
            WeightsAt::Int8(q, scales) => unsafe {
                let q8 = _mm_loadu_si128(q.add(r * GROUP + j * 16) as *const __m128i);
                _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q8)), _mm512_set1_ps(*scales.add(r)))
            },
            WeightsAt::F32(p) => unsafe { _mm512_loadu_ps(p.add(r * GROUP + j * 16)) },
        }
    }

    /// Adds the bias and stores `acc[i]` as 16 outputs of row `i`, strip `j`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store(s: &Strip, i: usize, j: usize, acc: __m512) {
        let bias = match s.bias {
            Some(b) => unsafe { _mm512_loadu_ps(b.add(j * 16)) },
            None => _mm512_setzero_ps(),
        };
        unsafe { _mm512_storeu_ps(s.y.add(i * s.n + j * 16), _mm512_add_ps(acc, bias)) };
    }

    /// R rows × the group's 64 columns, the inputs split into S interleaved phases:
    /// 4·R·S independent sums.
    #[target_feature(enable = "avx512f")]
    unsafe fn wide<const R: usize, const S: usize>(s: &Strip, w: WeightsAt) {
        let mut acc = [[[_mm512_setzero_ps(); 4]; R]; S];
        let mut r = 0;
        while r < s.k {
            for (p, acc) in acc.iter_mut().enumerate().take(s.k - r) {
                let wv: [__m512; 4] = std::array::from_fn(|j| unsafe { load(w, r + p, j) });
                for (i, row) in acc.iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(unsafe { *s.x.add(i * s.k + r + p) });
                    for (a, wv) in row.iter_mut().zip(&wv) {
                        *a = _mm512_fmadd_ps(xv, *wv, *a);
                    }
                }
            }
            r += S;
        }
        let (first, rest) = acc.split_first().expect("S ≥ 1");
        for (i, row) in first.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                let sum = rest.iter().fold(*a, |sum, phase| _mm512_add_ps(sum, phase[i][j]));
                unsafe { store(s, i, j, sum) };
            }
        }
    }

    /// R rows × one 16-column strip, R sums in registers (each weight read once for R rows).
    #[target_feature(enable = "avx512f")]
    unsafe fn strip<const R: usize>(s: &Strip, w: WeightsAt) {
        let mut acc = [_mm512_setzero_ps(); R];
        for r in 0..s.k {
            let wv = unsafe { load(w, r, 0) };
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(_mm512_set1_ps(unsafe { *s.x.add(i * s.k + r) }), wv, *a);
            }
        }
        for (i, a) in acc.iter().enumerate() {
            unsafe { store(s, i, 0, *a) };
        }
    }
}

/// Keys and values of the positions seen so far for one block, `[T, B, d]` each (heads
/// side by side in `d`), appended in place.
#[derive(Debug, Clone, Default)]
pub struct CachedRows {
    keys: Vec<f32>,
    values: Vec<f32>,
}

impl CachedRows {
    /// Appends the keys and values of `t` new positions from `qkv: [B, t, 3d]` (q, k, v).
    pub fn append(&mut self, qkv: &[f32], batch: usize, t: usize, d: usize) {
        for i in 0..t {
            for b in 0..batch {
                let row = &qkv[(b * t + i) * 3 * d..][..3 * d];
                self.keys.extend_from_slice(&row[d..2 * d]);
                self.values.extend_from_slice(&row[2 * d..]);
            }
        }
    }

    /// Causal attention of the last `t` cached positions' queries (`qkv: [B, t, 3d]`) over
    /// every cached position up to their own: `[B, t, d]`, heads side by side.
    pub fn attend(&self, qkv: &[f32], batch: usize, t: usize, d: usize, heads: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; batch * t * d];
        let step = Step { qkv, batch, t, d, heads };
        // one sequence per task: `out` rows `b·t..(b+1)·t`
        let run = |(b, out): (usize, &mut [f32])| {
            #[cfg(target_arch = "x86_64")]
            if simd_available() {
                // SAFETY: AVX-512F is present.
                return unsafe { attend_avx512(self, &step, b, out) };
            }
            attend_plain(self, &step, b, out)
        };
        #[cfg(feature = "native")]
        if batch > 1 {
            use rayon::prelude::*;
            out.par_chunks_mut(t * d).enumerate().for_each(run);
            return out;
        }
        out.chunks_mut(t * d).enumerate().for_each(run);
        out
    }
}

/// One attention pass: the new positions' `qkv: [B, t, 3d]` and the shapes.
#[derive(Clone, Copy)]
struct Step<'a> {
    qkv: &'a [f32],
    batch: usize,
    t: usize,
    d: usize,
    heads: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn attend_avx512(c: &CachedRows, step: &Step, b: usize, out: &mut [f32]) {
    attend_plain(c, step, b, out)
}

/// Sequence `b`'s rows (`out: [t, d]`), in plain loops of 16-lane form, so the AVX-512
/// copy above vectorizes them.
#[inline(always)]
fn attend_plain(c: &CachedRows, step: &Step, b: usize, out: &mut [f32]) {
    let Step { qkv, batch, t, d, heads } = *step;
    let total = c.keys.len() / (batch * d);
    let hd = d / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut weights = vec![0.0f32; total];
    for i in 0..t {
        let seen = total - t + i + 1; // causal: positions 0..=own
        let row = b * t + i;
        for h in 0..heads {
            let q = &qkv[row * 3 * d + h * hd..][..hd];
            for (s, w) in weights[..seen].iter_mut().enumerate() {
                *w = dot(q, &c.keys[(s * batch + b) * d + h * hd..][..hd]) * scale;
            }
            softmax_in_place(&mut weights[..seen]);
            let o = &mut out[i * d + h * hd..][..hd];
            for (s, &w) in weights[..seen].iter().enumerate() {
                for (o, &v) in o.iter_mut().zip(&c.values[(s * batch + b) * d + h * hd..][..hd]) {
                    *o += w * v;
                }
            }
        }
    }
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ac, ar) = a.as_chunks::<16>();
    let (bc, br) = b.as_chunks::<16>();
    for (a, b) in ac.iter().zip(bc) {
        for l in 0..16 {
            acc[l] += a[l] * b[l];
        }
    }
    acc.iter().sum::<f32>() + ar.iter().zip(br).map(|(a, b)| a * b).sum::<f32>()
}

#[inline(always)]
fn softmax_in_place(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    v.iter_mut().for_each(|x| *x -= max);
    exp_in_place(v);
    let total: f32 = v.iter().sum();
    v.iter_mut().for_each(|x| *x /= total);
}

/// `e^x` for `x ≤ 0` (softmax) and the GELU's `e^{-x²}`: Cody–Waite reduction to
/// `2^n · e^r`, |r| ≤ ln2/2, and a degree-6 Taylor polynomial (relative error < 1e-6;
/// 0 below e^-87).
#[inline(always)]
fn exp_in_place(v: &mut [f32]) {
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
pub fn gelu_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd_available() {
        // SAFETY: AVX-512F is present.
        unsafe { gelu_avx512(v) };
        return;
    }
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
    use crate::bundle::{dequantize_blocks, quantize_blocks};

    fn reference(x: &[f32], w: &[f32], bias: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut y = vec![0.0f64; m * n];
        for i in 0..m {
            for c in 0..n {
                y[i * n + c] = bias[c] as f64 + (0..k).map(|r| x[i * k + r] as f64 * w[r * n + c] as f64).sum::<f64>();
            }
        }
        y.into_iter().map(|v| v as f32).collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "element {i}: {x} vs {y}");
        }
    }

    #[test]
    fn packed_layers_compute_x_w_plus_b_for_every_row_count() {
        let mut rng = crate::rng::Rng::new(3, 9);
        let (k, n) = (70, 192);
        let w: Vec<f32> = (0..k * n).map(|_| rng.unit_f32() - 0.5).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.unit_f32()).collect();
        let (q, scales) = quantize_blocks(&w);
        let dequantized = dequantize_blocks(&q, &scales);
        let f32_layer = PackedLinear::f32(&w, k, n, Some(bias.clone())).unwrap();
        let int8_layer = PackedLinear::int8(&q, &scales, k, n, Some(bias.clone())).unwrap();
        for m in [1, 3, 16, 17, 40] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.unit_f32() * 2.0 - 1.0).collect();
            for simd in [false, simd_available()] {
                close(&f32_layer.forward_with(&x, m, simd), &reference(&x, &w, &bias, m, k, n));
                // int8: the f32 model's dequantized weights, not the originals
                close(&int8_layer.forward_with(&x, m, simd), &reference(&x, &dequantized, &bias, m, k, n));
            }
        }
        // large enough for the threaded path
        let (k, n) = (512, 2048);
        let w: Vec<f32> = (0..k * n).map(|_| rng.unit_f32() - 0.5).collect();
        let x: Vec<f32> = (0..2 * k).map(|_| rng.unit_f32() - 0.5).collect();
        let layer = PackedLinear::f32(&w, k, n, None).unwrap();
        close(&layer.forward(&x, 2), &reference(&x, &w, &vec![0.0; n], 2, k, n));
    }

    #[test]
    fn gelu_and_exp_match_the_exact_functions() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 / 400.0).collect();
        let mut g = xs.clone();
        gelu_in_place(&mut g);
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

    #[test]
    fn cached_attention_is_softmax_of_scaled_dot_products() {
        let mut rng = crate::rng::Rng::new(5, 1);
        let (batch, d, heads) = (3, 32, 2);
        let hd = d / heads;
        let mut cache = CachedRows::default();
        let mut all: Vec<Vec<f32>> = vec![]; // per step the qkv [B, t, 3d]
        for t in [1, 1, 3, 1] {
            let qkv: Vec<f32> = (0..batch * t * 3 * d).map(|_| rng.unit_f32() * 2.0 - 1.0).collect();
            cache.append(&qkv, batch, t, d);
            let out = cache.attend(&qkv, batch, t, d, heads);
            // reference: gather each batch's keys/values in position order across the steps
            all.push(qkv.clone());
            let steps: Vec<(usize, &Vec<f32>)> = all.iter().map(|q| (q.len() / (batch * 3 * d), q)).collect();
            for b in 0..batch {
                let kv: Vec<&[f32]> = steps
                    .iter()
                    .flat_map(|&(tt, q)| (0..tt).map(move |i| &q[(b * tt + i) * 3 * d..][..3 * d]))
                    .collect();
                for i in 0..t {
                    let own = kv.len() - t + i;
                    for h in 0..heads {
                        let q = &qkv[(b * t + i) * 3 * d + h * hd..][..hd];
                        let scores: Vec<f64> = (0..=own)
                            .map(|s| {
                                let k = &kv[s][d + h * hd..][..hd];
                                q.iter().zip(k).map(|(a, b)| (a * b) as f64).sum::<f64>() / (hd as f64).sqrt()
                            })
                            .collect();
                        let max = scores.iter().copied().fold(f64::MIN, f64::max);
                        let w: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                        let total: f64 = w.iter().sum();
                        for j in 0..hd {
                            let want: f64 = (0..=own).map(|s| w[s] / total * kv[s][2 * d + h * hd + j] as f64).sum();
                            let got = out[(b * t + i) * d + h * hd + j];
                            assert!((got as f64 - want).abs() < 1e-5, "b{b} i{i} h{h} j{j}: {got} vs {want}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn shapes_that_do_not_pack_are_named_errors() {
        let e = PackedLinear::f32(&[0.0; 10 * 48], 10, 48, None).unwrap_err();
        assert!(e.contains("multiple of 64"), "{e}");
        let e = PackedLinear::f32(&[0.0; 10], 2, 64, None).unwrap_err();
        assert!(e.contains("10 weights"), "{e}");
        let e = PackedLinear::int8(&[0; 128], &[1.0], 2, 64, None).unwrap_err();
        assert!(e.contains("1 scales"), "{e}");
        let e = PackedLinear::f32(&[0.0; 128], 2, 64, Some(vec![0.0; 3])).unwrap_err();
        assert!(e.contains("3 biases"), "{e}");
    }
}
