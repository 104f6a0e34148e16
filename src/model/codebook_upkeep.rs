//! Codebook upkeep: what keeps every code of the shared codebook in use while stage 1
//! trains. The EMA update moves codes to the encoder outputs they take; the codebook is
//! seeded from encoder outputs at the first step, and codes unused for a while are restarted
//! at outputs far from every live code (k-means++ style). [`CodebookUsage`] measures the result.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::CodeGroup;
use crate::model::cross_quantizer::CrossQuantizer;
use crate::rng::Rng;

impl CrossQuantizer {
    /// Moves each code to the moving average of the encoder outputs it takes (VQ-VAE-2,
    /// Razavi et al. 2019): `N ← γN + (1−γ)n`, `m ← γm + (1−γ)Σz`, `e = m / N` with
    /// `m = eN`. A gradient step moves a code by about the learning rate per step whatever
    /// the distance; measured here, that left the codes behind the encoder and stage 1
    /// reconstructed grey blurs for hundreds of steps. A code that takes nothing keeps its
    /// place (the `EPS` terms). The codebook must not also be trained by the optimizer.
    ///
    /// # Shapes
    /// - z: `[batch, positions, code_dim]` (detached encoder outputs), codes: `[batch, positions]`
    pub fn ema_update(self, z: Tensor<3>, codes: Tensor<2, Int>, decay: f64) -> Self {
        const EPS: f64 = 1e-5;
        let [batch, positions, dim] = z.dims();
        let k = self.codebook.dims()[0];
        let one_hot: Tensor<2> = codes.reshape([batch * positions]).float().one_hot(k); // [N, K]
        let taken = one_hot.clone().sum_dim(0).reshape([k]); // [K]
        let sums = one_hot.transpose().matmul(z.reshape([batch * positions, dim])); // [K, D]
        let count = self.usage.value(); // [K]
        let new_count = count.clone() * decay + taken * (1.0 - decay);
        // burn's RunningState holds an update per thread until that same thread syncs, and
        // averages the threads' pending updates; checkpoints read only the synced value.
        // Training steps run on any pool thread: sync at once, so every thread and every
        // checkpoint sees this step's counts (measured: unsynced, a resumed run drifted).
        self.usage.update(new_count.clone().detach());
        self.usage.value_sync();
        let codebook = self.codebook.map(|cb| {
            let requires_grad = cb.is_require_grad();
            let old = cb.detach();
            let mass = old.clone() * (count * decay + EPS).reshape([k, 1]) + sums * (1.0 - decay);
            (mass / (new_count + EPS).reshape([k, 1])).detach().set_require_grad(requires_grad)
        });
        Self { codebook, ..self }
    }

    /// Overwrites the codes `ids` with `vectors` (`ids.len() × code_dim` values), keeping the
    /// parameter's identity so the optimizer state follows it. Used to seed the codebook
    /// from encoder outputs and to restart dead codes, which keeps the codebook from
    /// collapsing onto a few entries (Dhariwal et al. 2020, Jukebox).
    pub fn replace_codes(self, ids: &[usize], vectors: &[f32]) -> Self {
        if ids.is_empty() {
            return self;
        }
        let codebook = self.codebook.map(|cb| {
            let [k, d] = cb.dims();
            let device = cb.device();
            let requires_grad = cb.is_require_grad();
            let mut data = cb.into_data().try_into_vec_as::<f32>().expect("f32 codebook");
            for (n, &id) in ids.iter().enumerate() {
                data[id * d..(id + 1) * d].copy_from_slice(&vectors[n * d..(n + 1) * d]);
            }
            Tensor::from_data(TensorData::new(data, [k, d]), &device).set_require_grad(requires_grad)
        });
        Self { codebook, ..self }
    }
}

/// How often each code was taken since the last dead-code check and over the epoch; kept
/// in the training checkpoint, so a resumed run restarts the same codes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeCounts {
    pub recent: Vec<u64>,
    pub epoch: Vec<u64>,
    /// Codes restarted this epoch.
    pub restarted: usize,
}

impl CodeCounts {
    /// Zero counts for a codebook of `entries` rows.
    pub fn new(entries: usize) -> Self {
        Self { recent: vec![0; entries], epoch: vec![0; entries], restarted: 0 }
    }

    /// Counts the codes a batch took.
    pub fn add(&mut self, codes: &[i64]) {
        for &k in codes {
            self.recent[k as usize] += 1;
            self.epoch[k as usize] += 1;
        }
    }

    /// Usage over the epoch, with the restart count; the epoch's counts start again.
    pub fn take_epoch(&mut self) -> (CodebookUsage, usize) {
        let usage = CodebookUsage::from_counts(&self.epoch);
        self.epoch.iter_mut().for_each(|c| *c = 0);
        (usage, std::mem::take(&mut self.restarted))
    }

    /// Restarts every code of each group that took nothing since the last check at rows of
    /// `z` (`[B, T, D]`: this batch's encoder outputs) far from the group's live codes, then
    /// starts counting again.
    pub fn restart_dead(
        &mut self,
        quantizer: CrossQuantizer,
        z: Tensor<3>,
        groups: &[CodeGroup],
        rng: &mut Rng,
    ) -> CrossQuantizer {
        let mut quantizer = quantizer;
        if self.recent.contains(&0) {
            let all = quantizer.codebook.val().into_data().try_into_vec_as::<f32>().expect("f32 codebook");
            let d = z.dims()[2];
            for group in groups {
                let dead: Vec<usize> = group.entries.clone().filter(|&k| self.recent[k] == 0).collect();
                if dead.is_empty() {
                    continue;
                }
                let live: Vec<f32> = group
                    .entries
                    .clone()
                    .filter(|k| self.recent[*k] > 0)
                    .flat_map(|k| all[k * d..(k + 1) * d].to_vec())
                    .collect();
                let z = z.clone().narrow(1, group.positions.start, group.positions.len());
                let vectors = far_rows(z, &live, dead.len(), rng);
                quantizer = quantizer.replace_codes(&dead, &vectors);
                self.restarted += dead.len();
            }
        }
        self.recent.iter_mut().for_each(|c| *c = 0);
        quantizer
    }
}

/// Seeds every code with rows of `z` (`[B, T, D]`, encoder outputs), so every code starts
/// where data lives; each group from its own positions (image codes from image features…).
pub fn seed_codebook(quantizer: CrossQuantizer, z: Tensor<3>, groups: &[CodeGroup], rng: &mut Rng) -> CrossQuantizer {
    let mut quantizer = quantizer;
    for group in groups {
        let z = z.clone().narrow(1, group.positions.start, group.positions.len());
        let vectors = far_rows(z, &[], group.entries.len(), rng);
        let ids: Vec<usize> = group.entries.clone().collect();
        quantizer = quantizer.replace_codes(&ids, &vectors);
    }
    quantizer
}

/// `n` rows of `z: [B, T, D]` picked k-means++ style: each with probability ∝ its squared
/// distance to the nearest of `codes` (`[K, D]` values) and of the rows already picked.
/// Uniform picks land mostly on the black background, which most grid cells show; these
/// land where the codebook describes the data worst (strokes, colours, words).
fn far_rows(z: Tensor<3>, codes: &[f32], n: usize, rng: &mut Rng) -> Vec<f32> {
    let [b, t, d] = z.dims();
    let values = z.into_data().try_into_vec_as::<f32>().expect("f32 features");
    let dist2 = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
    let rows: Vec<&[f32]> = values.chunks(d).collect();
    let mut nearest: Vec<f32> =
        rows.iter().map(|r| codes.chunks(d).map(|c| dist2(r, c)).fold(f32::INFINITY, f32::min)).collect();
    let mut picked = Vec::with_capacity(n * d);
    for _ in 0..n {
        let total: f64 = nearest.iter().map(|&v| v as f64).sum();
        let i = if total > 0.0 && total.is_finite() {
            let mut target = rng.unit_f32() as f64 * total;
            nearest
                .iter()
                .position(|&v| {
                    target -= v as f64;
                    target < 0.0
                })
                .unwrap_or(b * t - 1)
        } else {
            rng.below(b * t)
        };
        picked.extend_from_slice(rows[i]);
        for (k, r) in rows.iter().enumerate() {
            nearest[k] = nearest[k].min(dist2(r, rows[i]));
        }
    }
    picked
}

/// Codebook usage over a set of codes: perplexity exp(H) of the code histogram, and how
/// many codes were used at all. A healthy codebook has both near its size.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CodebookUsage {
    pub perplexity: f64,
    pub live_codes: usize,
}

impl CodebookUsage {
    pub fn from_counts(counts: &[u64]) -> Self {
        let total: u64 = counts.iter().sum();
        let entropy: f64 = counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / total.max(1) as f64;
                -p * p.ln()
            })
            .sum();
        Self { perplexity: entropy.exp(), live_codes: counts.iter().filter(|&&c| c > 0).count() }
    }
}
