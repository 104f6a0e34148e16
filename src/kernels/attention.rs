//! Single-query causal attention over a key/value cache of plain rows, appended in place
//! (burn re-concatenates a tensor cache every step and runs each head as its own GEMM).

use crate::kernels::Simd;
use crate::kernels::activations::exp_in_place;

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

    /// Adds `copies` sequences after the cache's own, each a copy of `one`'s single sequence;
    /// both hold `positions` positions.
    pub fn append_copies(&mut self, one: &CachedRows, positions: usize, copies: usize) {
        if positions == 0 {
            return;
        }
        let d = one.keys.len() / positions;
        let batch = self.keys.len() / (positions * d);
        let widen = |mine: &[f32], theirs: &[f32]| -> Vec<f32> {
            let mut out = Vec::with_capacity(positions * (batch + copies) * d);
            for s in 0..positions {
                out.extend_from_slice(&mine[s * batch * d..(s + 1) * batch * d]);
                (0..copies).for_each(|_| out.extend_from_slice(&theirs[s * d..(s + 1) * d]));
            }
            out
        };
        self.keys = widen(&self.keys, &one.keys);
        self.values = widen(&self.values, &one.values);
    }

    /// Causal attention of the last `t` cached positions' queries (`qkv: [B, t, 3d]`) over
    /// every cached position up to their own: `[B, t, d]`, heads side by side.
    pub fn attend(&self, qkv: &[f32], batch: usize, t: usize, d: usize, heads: usize, simd: Simd) -> Vec<f32> {
        #[cfg(not(target_arch = "x86_64"))]
        let _ = simd; // plain loops only
        let mut out = vec![0.0f32; batch * t * d];
        let step = Step { qkv, batch, t, d, heads };
        // one sequence per task: `out` rows `b·t..(b+1)·t`
        let run = |(b, out): (usize, &mut [f32])| {
            #[cfg(target_arch = "x86_64")]
            if simd.avx512() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Rng, Stream};

    fn close_to(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn cached_attention_is_softmax_of_scaled_dot_products() {
        let mut rng = Rng::new(5, Stream::Test(1));
        let (batch, d, heads) = (3, 32, 2);
        let hd = d / heads;
        let mut cache = CachedRows::default();
        let mut all: Vec<Vec<f32>> = vec![]; // per step the qkv [B, t, 3d]
        for t in [1, 1, 3, 1] {
            let qkv: Vec<f32> = (0..batch * t * 3 * d).map(|_| rng.unit_f32() * 2.0 - 1.0).collect();
            cache.append(&qkv, batch, t, d);
            let outs: Vec<Vec<f32>> =
                crate::kernels::tests::both().map(|simd| cache.attend(&qkv, batch, t, d, heads, simd)).collect();
            let out = &outs[0];
            assert!(outs.iter().all(|o| o == out || close_to(o, out)), "plain and AVX-512 attention differ");
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
}
