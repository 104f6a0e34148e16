//! `y = x · W + b` with the weights packed for small row counts (sampling steps).
//!
//! Linear weights are packed in groups of 64 output columns, `[n / 64][k][64]` — one int8 bundle
//! scale per group row (the bundle's 64-value blocks are exactly these), so the kernel
//! rebuilds each weight as `q × scale`, the value the f32 dequantized model holds, and
//! streams 1 byte per weight instead of 4. With up to 6 rows a whole group runs at once
//! (enough independent sums to hide the FMA latency; 1–2 rows also split `k` in two
//! interleaved halves), with 7–16 rows one 16-column strip keeps every row's sum in an
//! AVX-512 register. Sums are FMAs in a different order than burn's GEMM, so results match
//! burn's `Linear` to float rounding, not bit for bit. Without AVX-512 the same packed weights
//! run a plain loop (the tests compare both); in the browser's wasm (simd128) int8 weights run
//! a loop of wasm SIMD intrinsics that keeps its sums in registers and folds the scale into
//! the input (`(x·scale)·q`), with relaxed SIMD's fused multiply-add in the page's
//! `relaxed-simd` build (`web/fma`): LLVM's vectorized plain loop kept 64 sums per row in
//! memory, a load and a store per 4 products, and wasm has no FMA otherwise.

use crate::kernels::Simd;

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

    /// `x: [m, k]` row-major → `[m, n]`.
    pub fn forward(&self, x: &[f32], m: usize, simd: Simd) -> Vec<f32> {
        let simd = simd.avx512();
        assert_eq!(x.len(), m * self.k, "input is not [{m}, {}]", self.k);
        let mut y = vec![0.0f32; m * self.n];
        let out = Out(y.as_mut_ptr(), self.n);
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
        let k = self.k;
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
                        y: unsafe { y.0.add(row * y.1 + c) },
                        n: y.1,
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
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if let Weights::Int8 { q, scales } = &self.weights {
            let x = wasm::Rows { x, k };
            let (q, scales) = (&q[g * k * GROUP..][..k * GROUP], &scales[g * k..][..k]);
            return wasm::group(x, m, q, scales, bias, y, g * GROUP);
        }
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
                // a multiply and an add, not `mul_add`: without hardware FMA (wasm, where
                // this loop runs on the page) `mul_add` is a software routine per element
                for (a, w) in acc[i * GROUP..][..GROUP].iter_mut().zip(&wrow) {
                    *a += xv * *w;
                }
            }
        }
        for i in 0..m {
            for c in 0..GROUP {
                let b = bias.map_or(0.0, |b| b[c]);
                unsafe { *y.0.add(i * y.1 + g * GROUP + c) = acc[i * GROUP + c] + b };
            }
        }
    }
}

/// The output pointer and its row stride, shared by the groups that write disjoint columns.
#[derive(Clone, Copy)]
struct Out(*mut f32, usize);
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

/// The page's int8 loop (wasm simd128): sums in registers — two rows × 16 columns, or one
/// row × 32 — each `Σ_r (x·scale_r)·q` in the order of `r`, fused multiply-adds where the
/// build has relaxed SIMD, else a multiply and an add. Int8 weights that more than one row
/// pair reads are widened to f32 once per group; every row gets the same bits whatever the
/// row count.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use core::arch::wasm32::*;

    use super::{GROUP, Out};

    /// Rows of `k` inputs, row-major.
    #[derive(Clone, Copy)]
    pub struct Rows<'a> {
        pub x: &'a [f32],
        pub k: usize,
    }

    /// `a·b + c`: fused in the relaxed-SIMD build, else a multiply and an add.
    #[inline(always)]
    fn madd(a: v128, b: v128, c: v128) -> v128 {
        #[cfg(feature = "relaxed-simd")]
        return f32x4_relaxed_madd(a, b, c);
        #[cfg(not(feature = "relaxed-simd"))]
        f32x4_add(f32x4_mul(a, b), c)
    }

    /// 16 int8 values as 4 × 4 floats.
    #[inline(always)]
    fn widen(q: v128) -> [v128; 4] {
        let (lo, hi) = (i16x8_extend_low_i8x16(q), i16x8_extend_high_i8x16(q));
        [
            i32x4_extend_low_i16x8(lo),
            i32x4_extend_high_i16x8(lo),
            i32x4_extend_low_i16x8(hi),
            i32x4_extend_high_i16x8(hi),
        ]
        .map(|i| f32x4_convert_i32x4(i))
    }

    /// Where the weights come from: int8 rows `[k][64]`, or the same widened to f32.
    #[derive(Clone, Copy)]
    enum Source<'a> {
        Int8(&'a [i8]),
        Widened(&'a [f32]),
    }

    impl Source<'_> {
        /// The 16·S weights of input `r` from column `col`.
        #[inline(always)]
        fn load<const S: usize>(self, r: usize, col: usize) -> [[v128; 4]; S] {
            let mut out = [[f32x4_splat(0.0); 4]; S];
            for (s, out) in out.iter_mut().enumerate() {
                let at = r * GROUP + col + 16 * s;
                // SAFETY: row r < k and columns col + 16·s + 16 ≤ 64 are within the slices
                *out = match self {
                    Self::Int8(q) => widen(unsafe { v128_load(q.as_ptr().add(at) as *const v128) }),
                    Self::Widened(w) => unsafe {
                        let p = w.as_ptr().add(at) as *const v128;
                        [v128_load(p), v128_load(p.add(1)), v128_load(p.add(2)), v128_load(p.add(3))]
                    },
                };
            }
            out
        }
    }

    /// Columns `col0..col0 + 64` of y (one group: `q` its `[k][64]` weights, one scale per
    /// input) for all `m` rows of `x`.
    #[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
    pub fn group(x: Rows, m: usize, q: &[i8], scales: &[f32], bias: Option<&[f32]>, y: Out, col0: usize) {
        let widened: Vec<f32>;
        let source = if m > 2 {
            widened = q.iter().map(|&v| v as f32).collect();
            Source::Widened(&widened)
        } else {
            Source::Int8(q)
        };
        let mut row = 0;
        while row + 2 <= m {
            for col in (0..GROUP).step_by(16) {
                strip::<2, 1>(x, row, source, scales, bias, y, col0, col);
            }
            row += 2;
        }
        if row < m {
            for col in (0..GROUP).step_by(32) {
                strip::<1, 2>(x, row, source, scales, bias, y, col0, col);
            }
        }
    }

    /// Rows `row..row + R`, columns `col..col + 16·S` of the group (from `col0` in y).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn strip<const R: usize, const S: usize>(
        x: Rows,
        row: usize,
        source: Source,
        scales: &[f32],
        bias: Option<&[f32]>,
        y: Out,
        col0: usize,
        col: usize,
    ) {
        let k = x.k;
        let mut xs: [&[f32]; R] = [&[]; R];
        for (i, xs) in xs.iter_mut().enumerate() {
            *xs = &x.x[(row + i) * k..][..k];
        }
        let mut acc = [[[f32x4_splat(0.0); 4]; S]; R];
        for (r, &scale) in scales.iter().enumerate() {
            let w = source.load::<S>(r, col);
            for (acc, xs) in acc.iter_mut().zip(&xs) {
                let xv = f32x4_splat(xs[r] * scale);
                for (acc, w) in acc.iter_mut().zip(&w) {
                    for (a, w) in acc.iter_mut().zip(w) {
                        *a = madd(xv, *w, *a);
                    }
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            let out = (row + i) * y.1 + col0 + col;
            for (j, v) in acc.as_flattened().iter().enumerate() {
                let b = bias.map_or(f32x4_splat(0.0), |b| {
                    // SAFETY: col + 4j + 4 ≤ 64 bias values
                    unsafe { v128_load(b.as_ptr().add(col + 4 * j) as *const v128) }
                });
                // SAFETY: row + i < m, and these columns of y are this group's alone
                unsafe { v128_store(y.0.add(out + 4 * j) as *mut v128, f32x4_add(*v, b)) };
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::int8::{dequantize_blocks, quantize_blocks};
    use crate::rng::{Rng, Stream};

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
        let mut rng = Rng::new(3, Stream::Test(9));
        let (k, n) = (70, 192);
        let w: Vec<f32> = (0..k * n).map(|_| rng.unit_f32() - 0.5).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.unit_f32()).collect();
        let (q, scales) = quantize_blocks(&w);
        let dequantized = dequantize_blocks(&q, &scales);
        let f32_layer = PackedLinear::f32(&w, k, n, Some(bias.clone())).unwrap();
        let int8_layer = PackedLinear::int8(&q, &scales, k, n, Some(bias.clone())).unwrap();
        for m in [1, 3, 16, 17, 40] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.unit_f32() * 2.0 - 1.0).collect();
            for simd in crate::kernels::tests::both() {
                close(&f32_layer.forward(&x, m, simd), &reference(&x, &w, &bias, m, k, n));
                // int8: the f32 model's dequantized weights, not the originals
                close(&int8_layer.forward(&x, m, simd), &reference(&x, &dequantized, &bias, m, k, n));
            }
            // the plain loop gives each row the same bits alone as among others (the
            // guidance twins' cache is computed for one row and joins a batch)
            for layer in [&f32_layer, &int8_layer] {
                let alone: Vec<f32> = x.chunks(k).flat_map(|row| layer.forward(row, 1, Simd::Plain)).collect();
                assert_eq!(layer.forward(&x, m, Simd::Plain), alone, "{m} rows");
            }
        }
        // large enough for the threaded path
        let (k, n) = (512, 2048);
        let w: Vec<f32> = (0..k * n).map(|_| rng.unit_f32() - 0.5).collect();
        let x: Vec<f32> = (0..2 * k).map(|_| rng.unit_f32() - 0.5).collect();
        let layer = PackedLinear::f32(&w, k, n, None).unwrap();
        for simd in crate::kernels::tests::both() {
            close(&layer.forward(&x, 2, simd), &reference(&x, &w, &vec![0.0; n], 2, k, n));
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
