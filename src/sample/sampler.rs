//! Sampling the prior (paper §3.3): 72 steps from the start token with the KV cache;
//! at each step the logits are read back and the next codes drawn on the CPU with
//! temperature, top-k and top-p (nucleus) filtering and a seeded generator.
//!
//! Drawing on the CPU keeps the result identical on every backend for equal logits, and
//! sidesteps `topk`/sort, which WebGPU in wasm lacks. [`Sampling`] is a step-wise state
//! machine so the browser can await each readback; [`sample_codes`] is the native loop.
//! Both run any [`CachedPrior`]: burn's layers or the packed CPU kernels.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::kernels::packed_prior::{PackedCache, PackedPrior};
use crate::model::prior::{KvCache, Prior};
use crate::rng::{Rng, Stream};

/// The sampling temperature of `mxq generate`, `mxq eval` and the page unless told otherwise:
/// chosen on the distribution targets, not on consistency alone — for the shipped bundle the
/// lowest measured (0.8 / 0.9 / 1.0) whose pairs keep the data's digit-count mix (TV ≤ 0.10),
/// variety (distinct captions ≥ 0.75) and copy no more training captions than real pairs do
/// plus 10 points (README, "Where consistency is lost").
pub const DEFAULT_TEMPERATURE: f32 = 0.9;

/// The guidance of `mxq generate`, `mxq eval` and the page for a prior trained with
/// unconditional sequences (`prior.unconditional` > 0; others sample at 1, the prior as it
/// is): [`crate::bundle::Bundle::default_options`]. Chosen on the same distribution targets
/// as the temperature (README, "Guidance").
pub const DEFAULT_GUIDANCE: f32 = 2.0;

/// A prior that runs new positions against a cache of the earlier ones.
pub trait CachedPrior {
    type Cache: Default;
    /// The start token id.
    fn start(&self) -> usize;
    /// Logits `[batch, T, vocab]` for the next code after each of `tokens` (`[batch, T]`).
    fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut Self::Cache) -> Tensor<3>;
}

impl CachedPrior for Prior {
    type Cache = KvCache;
    fn start(&self) -> usize {
        Prior::start(self)
    }
    fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        Prior::forward_cached(self, tokens, cache)
    }
}

impl CachedPrior for PackedPrior {
    type Cache = PackedCache;
    fn start(&self) -> usize {
        PackedPrior::start(self)
    }
    fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut PackedCache) -> Tensor<3> {
        PackedPrior::forward_cached(self, tokens, cache)
    }
}

/// How to draw codes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleOptions {
    /// Divides the logits: < 1 sharper, > 1 more varied.
    pub temperature: f32,
    /// Keep only the `top_k` most likely codes (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of codes whose probability reaches `top_p` (1 = all).
    pub top_p: f32,
    pub seed: u64,
    /// Classifier-free guidance of the second part (the image codes after a caption's, for a
    /// caption-first prior): logits `u + guidance · (c − u)` from the prior with (`c`) and
    /// without (`u`) the first part; 1 is the prior as it is, above 1 follows the first part
    /// more closely. Needs a prior trained with `prior.unconditional`.
    #[serde(default = "no_guidance")]
    pub guidance: f32,
}

fn no_guidance() -> f32 {
    1.0
}

impl Default for SampleOptions {
    fn default() -> Self {
        Self { temperature: DEFAULT_TEMPERATURE, top_k: 0, top_p: 1.0, seed: 0, guidance: 1.0 }
    }
}

impl SampleOptions {
    /// Rejects options that would quietly mean something else: a temperature that is not a
    /// finite number ≥ 0 (0 is greedy), a top-p outside (0, 1].
    pub fn check(&self) -> Result<(), Error> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::Options(format!(
                "temperature {} must be a finite number ≥ 0 (0 draws greedily)",
                self.temperature
            )));
        }
        if !(self.guidance.is_finite() && (0.0..=100.0).contains(&self.guidance)) {
            return Err(Error::Options(format!(
                "guidance {} must be a number between 0 and 100 (1 samples the prior as it is)",
                self.guidance
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Options(format!("top-p {} must be in (0, 1] (1 keeps every code)", self.top_p)));
        }
        Ok(())
    }
}

/// Draws one index from `logits` under `opts` (greedy when `temperature` is 0).
pub fn draw(logits: &[f32], opts: &SampleOptions, rng: &mut Rng) -> usize {
    let argmax = || logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
    if opts.temperature <= 0.0 {
        return argmax();
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // a total order (ties by index), so the unstable sort gives the one stable order, faster
    order.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if opts.top_k > 0 {
        order.truncate(opts.top_k);
    }
    let top = logits[order[0]];
    let weights: Vec<f32> = order.iter().map(|&i| ((logits[i] - top) / opts.temperature).exp()).collect();
    let total: f32 = weights.iter().sum();
    // nucleus: the shortest prefix whose mass reaches top_p (at least one code)
    let mut keep = weights.len();
    if opts.top_p < 1.0 {
        let mut mass = 0.0;
        for (n, w) in weights.iter().enumerate() {
            mass += w / total;
            if mass >= opts.top_p {
                keep = n + 1;
                break;
            }
        }
    }
    let kept: f32 = weights[..keep].iter().sum();
    let mut u = rng.unit_f32() * kept;
    for (n, w) in weights[..keep].iter().enumerate() {
        if u < *w {
            return order[n];
        }
        u -= w;
    }
    order[keep - 1]
}

/// Step-wise sampling of `batch` code sequences.
pub struct Sampling<P: CachedPrior> {
    cache: P::Cache,
    next: Vec<u32>,
    codes: Vec<Vec<u32>>,
    length: usize,
    /// Codes every sequence starts with instead of drawing them (conditional sampling).
    prefix: Vec<u32>,
    /// With guidance: the codes of the first part, which the unconditional twin of each
    /// sequence (rows `batch..2 × batch` of `next`) sees as start tokens.
    guided: Option<usize>,
    start: u32,
    opts: SampleOptions,
    rng: Rng,
}

impl<P: CachedPrior> Sampling<P> {
    /// Starts `batch` sequences of `length` codes from the start token.
    pub fn new(prior: &P, batch: usize, length: usize, opts: SampleOptions) -> Self {
        Self {
            cache: P::Cache::default(),
            next: vec![prior.start() as u32; batch],
            codes: vec![Vec::with_capacity(length); batch],
            length,
            prefix: Vec::new(),
            guided: None,
            start: prior.start() as u32,
            opts,
            rng: Rng::new(opts.seed, Stream::Sampling),
        }
    }

    /// The same sampling, with every sequence's first codes given instead of drawn (in the
    /// prior's order; at most `length`). The generator draws nothing for them, so the codes
    /// after a prefix differ from those the same seed draws unconditionally.
    pub fn with_prefix(mut self, prefix: &[u32]) -> Self {
        self.prefix = prefix[..prefix.len().min(self.length)].to_vec();
        self
    }

    /// Guides the codes after the first `first_part` ([`MxqConfig::first_part`]) when the
    /// options ask for guidance: each sequence gets an unconditional twin, so the prior runs
    /// on twice the rows.
    ///
    /// [`MxqConfig::first_part`]: crate::config::MxqConfig::first_part
    pub fn guided(mut self, first_part: usize) -> Self {
        if self.opts.guidance != 1.0 && self.guided.is_none() {
            self.guided = Some(first_part);
            self.next.extend(vec![self.start; self.next.len()]);
        }
        self
    }

    pub fn done(&self) -> bool {
        self.codes[0].len() >= self.length
    }
    /// Runs the prior one position forward: logits `[batch, codes]` for the next code.
    pub fn logits(&mut self, prior: &P, device: &Device) -> Tensor<2> {
        let batch = self.next.len();
        let ids: Vec<i64> = self.next.iter().map(|&c| c as i64).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, 1]), device);
        let logits = prior.forward_cached(tokens, &mut self.cache); // [B, 1, K]
        let k = logits.dims()[2];
        logits.reshape([batch, k])
    }

    /// Takes the logits read back from [`Self::logits`] (row-major `[batch, codes]`) and
    /// draws each sequence's next code.
    pub fn push(&mut self, logits: &[f32]) {
        let (batch, k) = (self.codes.len(), logits.len() / self.next.len());
        for b in 0..batch {
            let row = &logits[b * k..(b + 1) * k];
            let position = self.codes[b].len();
            let code = match (self.prefix.get(position), self.guided) {
                (Some(&given), _) => given,
                (None, Some(first_part)) if position >= first_part => {
                    let twin = &logits[(batch + b) * k..(batch + b + 1) * k];
                    let g = self.opts.guidance;
                    let mixed: Vec<f32> = row.iter().zip(twin).map(|(c, u)| u + g * (c - u)).collect();
                    draw(&mixed, &self.opts, &mut self.rng) as u32
                }
                _ => draw(row, &self.opts, &mut self.rng) as u32,
            };
            self.codes[b].push(code);
            self.next[b] = code;
            if let Some(first_part) = self.guided {
                self.next[batch + b] = if position < first_part { self.start } else { code };
            }
        }
    }

    /// The codes drawn so far, one row per sequence.
    pub fn codes(&self) -> &[Vec<u32>] {
        &self.codes
    }

    pub fn into_codes(self) -> Vec<Vec<u32>> {
        self.codes
    }
}

/// Samples `batch` sequences of `length` codes, each starting with `prefix`, guided after
/// the first `first_part` codes where `opts` asks (native: synchronous readback).
#[allow(clippy::too_many_arguments)]
pub fn sample_codes<P: CachedPrior>(
    prior: &P,
    batch: usize,
    length: usize,
    first_part: usize,
    prefix: &[u32],
    opts: SampleOptions,
    device: &Device,
) -> Vec<Vec<u32>> {
    let mut sampling = Sampling::new(prior, batch, length, opts).with_prefix(prefix).guided(first_part);
    while !sampling.done() {
        let logits = sampling.logits(prior, device).into_data().try_into_vec_as::<f32>().expect("f32 logits");
        sampling.push(&logits);
    }
    sampling.into_codes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_top_k_top_p_and_temperature() {
        let logits = [0.0f32, 3.0, 2.9, -1.0];
        let mut rng = Rng::new(0, Stream::Test(0));
        let greedy = SampleOptions { temperature: 0.0, ..Default::default() };
        assert_eq!(draw(&logits, &greedy, &mut rng), 1);
        let t1 = SampleOptions { temperature: 1.0, ..Default::default() };
        let top1 = SampleOptions { top_k: 1, ..t1 };
        assert!((0..50).all(|_| draw(&logits, &top1, &mut rng) == 1));
        let top2 = SampleOptions { top_k: 2, ..t1 };
        let seen: std::collections::BTreeSet<_> = (0..200).map(|_| draw(&logits, &top2, &mut rng)).collect();
        assert_eq!(seen, [1, 2].into());
        // p(1) ≈ 0.50, p(2) ≈ 0.45: top_p 0.4 keeps only code 1
        let nucleus = SampleOptions { top_p: 0.4, ..t1 };
        assert!((0..50).all(|_| draw(&logits, &nucleus, &mut rng) == 1));
        let all = t1;
        let seen: std::collections::BTreeSet<_> = (0..2000).map(|_| draw(&logits, &all, &mut rng)).collect();
        assert_eq!(seen.len(), 4);
    }
}
