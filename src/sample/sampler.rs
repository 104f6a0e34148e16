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
/// plus 10 points (docs/consistency.md).
pub const DEFAULT_TEMPERATURE: f32 = 0.9;

/// The guidance of `mxq generate`, `mxq eval` and the page for a prior trained with
/// unconditional sequences (`prior.unconditional` > 0; others sample at 1, the prior as it
/// is): [`crate::bundle::Bundle::default_options`]. Chosen on the same distribution targets
/// as the temperature (docs/consistency.md, "Guidance").
pub const DEFAULT_GUIDANCE: f32 = 2.0;

/// The temperature of the image codes after a caption's (a caption-first prior's second
/// part) unless told otherwise: [`crate::bundle::Bundle::default_options`]. The captions are
/// still drawn at [`DEFAULT_TEMPERATURE`], so what is said keeps the data's variety, and the
/// image follows it more closely. Chosen on the same distribution targets, with fidelity
/// (docs/consistency.md, "Where the prior loses multi-digit pairs").
pub const DEFAULT_SECOND_TEMPERATURE: f32 = 0.6;

/// A prior that runs new positions against a cache of the earlier ones.
pub trait CachedPrior {
    type Cache: Default + RowCache;
    /// The start token id.
    fn start(&self) -> usize;
    /// Logits `[batch, T, vocab]` for the next code after each of `tokens` (`[batch, T]`).
    fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut Self::Cache) -> Tensor<3>;

    /// Adds `rows` sequences to `cache` that have seen only start tokens at its positions:
    /// the guidance twins, whose first part is start tokens, the same keys and values for
    /// every sequence. They are computed once, for one row, instead of beside every
    /// sequence step by step ([`Sampling::guided`]).
    fn add_start_rows(&self, cache: &mut Self::Cache, rows: usize, device: &Device) {
        let mut one = Self::Cache::default();
        if cache.positions() > 0 {
            let starts = Tensor::<2, Int>::full([1, cache.positions()], self.start() as i64, device);
            self.forward_cached(starts, &mut one);
        }
        cache.append_copies(&one, rows);
    }
}

/// A key/value cache that sequences can be added to.
pub trait RowCache {
    /// Positions in the cache.
    fn positions(&self) -> usize;
    /// Adds `copies` sequences, each a copy of `one`'s single sequence, after the cache's own
    /// (`one` holds as many positions, or nothing where the cache is empty).
    fn append_copies(&mut self, one: &Self, copies: usize);
}

impl RowCache for KvCache {
    fn positions(&self) -> usize {
        self.len
    }
    fn append_copies(&mut self, one: &Self, copies: usize) {
        KvCache::append_copies(self, one, copies)
    }
}

impl RowCache for PackedCache {
    fn positions(&self) -> usize {
        self.len
    }
    fn append_copies(&mut self, one: &Self, copies: usize) {
        PackedCache::append_copies(self, one, copies)
    }
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
    /// The temperature of the codes after the first part (the image's, after the caption's,
    /// for a caption-first prior); `None`: `temperature`. The first part's temperature sets
    /// what is said (the captions' variety); this one how closely the rest follows it.
    #[serde(default)]
    pub second_temperature: Option<f32>,
}

fn no_guidance() -> f32 {
    1.0
}

impl Default for SampleOptions {
    fn default() -> Self {
        Self {
            temperature: DEFAULT_TEMPERATURE,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            guidance: 1.0,
            second_temperature: None,
        }
    }
}

impl SampleOptions {
    /// The options the codes after the first part are drawn with.
    fn second(&self) -> SampleOptions {
        SampleOptions { temperature: self.second_temperature.unwrap_or(self.temperature), ..*self }
    }

    /// Whether the codes after the first part are drawn without chance (temperature 0 or
    /// top-k 1): every draw from the same first part is then the same.
    pub fn second_part_is_greedy(&self) -> bool {
        self.second().temperature <= 0.0 || self.top_k == 1
    }

    /// Rejects options that would quietly mean something else: a temperature or second
    /// temperature that is not a finite number ≥ 0 (0 is greedy), a guidance outside
    /// [0, 100], a top-p outside (0, 1].
    pub fn check(&self) -> Result<(), Error> {
        for (what, t) in [("temperature", Some(self.temperature)), ("second temperature", self.second_temperature)] {
            if let Some(t) = t.filter(|t| !(t.is_finite() && *t >= 0.0)) {
                return Err(Error::Options(format!("{what} {t} must be a finite number ≥ 0 (0 draws greedily)")));
            }
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
    /// Codes each sequence starts with instead of drawing them (conditional sampling), one
    /// row per sequence.
    prefixes: Vec<Vec<u32>>,
    /// How many codes the first part has ([`Self::guided`]); the rest are drawn with
    /// [`SampleOptions::second_temperature`] and, with guidance, against the unconditional
    /// twin of each sequence (rows `batch..2 × batch` of `next` once they have joined), which
    /// sees start tokens for the first part.
    first_part: Option<usize>,
    /// Whether the second part is guided (each sequence has a twin).
    twins: bool,
    /// Whether the twins run beside the sequences yet: they join at the second part, with
    /// the first part's start tokens in the cache ([`CachedPrior::add_start_rows`]).
    joined: bool,
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
            prefixes: vec![Vec::new(); batch],
            first_part: None,
            twins: false,
            joined: false,
            start: prior.start() as u32,
            opts,
            rng: Rng::new(opts.seed, Stream::Sampling),
        }
    }

    /// The same sampling, with every sequence's first codes given instead of drawn (in the
    /// prior's order; at most `length`). The generator draws nothing for them, so the codes
    /// after a prefix differ from those the same seed draws unconditionally.
    pub fn with_prefix(self, prefix: &[u32]) -> Self {
        let rows = vec![prefix.to_vec(); self.codes.len()];
        self.with_prefixes(&rows)
    }

    /// [`Self::with_prefix`] with each sequence's own first codes (`rows[b]` for sequence
    /// `b`; as many rows as sequences): a batch of candidates that complete different
    /// first parts ([`crate::sample::rerank`]).
    pub fn with_prefixes(mut self, rows: &[Vec<u32>]) -> Self {
        assert_eq!(rows.len(), self.codes.len(), "one prefix per sequence");
        self.prefixes = rows.iter().map(|p| p[..p.len().min(self.length)].to_vec()).collect();
        self
    }

    /// Names the first `first_part` codes ([`MxqConfig::first_part`]) the first part: the
    /// codes after it are drawn at the second temperature, and guided when the options ask
    /// for guidance — each sequence then gets an unconditional twin for the second part, so
    /// the prior runs on twice the rows there.
    ///
    /// [`MxqConfig::first_part`]: crate::config::MxqConfig::first_part
    pub fn guided(mut self, first_part: usize) -> Self {
        self.first_part = Some(first_part);
        self.twins = self.opts.guidance != 1.0;
        self
    }

    pub fn done(&self) -> bool {
        self.codes[0].len() >= self.length
    }
    /// Runs the prior one position forward: logits `[batch, codes]` for the next code.
    pub fn logits(&mut self, prior: &P, device: &Device) -> Tensor<2> {
        if self.twins && !self.joined && self.first_part.is_some_and(|first| self.codes[0].len() >= first) {
            let batch = self.codes.len();
            prior.add_start_rows(&mut self.cache, batch, device);
            self.next.extend(vec![self.start; batch]);
            self.joined = true;
        }
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
        let second = self.opts.second();
        for b in 0..batch {
            let row = &logits[b * k..(b + 1) * k];
            let position = self.codes[b].len();
            let in_second = self.first_part.is_some_and(|first| position >= first);
            let code = match self.prefixes[b].get(position) {
                Some(&given) => given,
                None if in_second && self.joined => {
                    let twin = &logits[(batch + b) * k..(batch + b + 1) * k];
                    let g = self.opts.guidance;
                    let mixed: Vec<f32> = row.iter().zip(twin).map(|(c, u)| u + g * (c - u)).collect();
                    draw(&mixed, &second, &mut self.rng) as u32
                }
                None if in_second => draw(row, &second, &mut self.rng) as u32,
                None => draw(row, &self.opts, &mut self.rng) as u32,
            };
            self.codes[b].push(code);
            self.next[b] = code;
            if self.joined {
                self.next[batch + b] = code;
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
    sample_completions(prior, &vec![prefix.to_vec(); batch], length, first_part, opts, device)
}

/// [`sample_codes`] with each sequence's own prefix: one sequence per row of `prefixes`.
pub fn sample_completions<P: CachedPrior>(
    prior: &P,
    prefixes: &[Vec<u32>],
    length: usize,
    first_part: usize,
    opts: SampleOptions,
    device: &Device,
) -> Vec<Vec<u32>> {
    let batch = prefixes.len();
    let mut sampling = Sampling::new(prior, batch, length, opts).with_prefixes(prefixes).guided(first_part);
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

    impl RowCache for () {
        fn positions(&self) -> usize {
            0
        }
        fn append_copies(&mut self, _: &Self, _: usize) {}
    }

    /// A prior whose logits the test hands to [`Sampling::push`] itself.
    struct Given;
    impl CachedPrior for Given {
        type Cache = ();
        fn start(&self) -> usize {
            9
        }
        fn forward_cached(&self, _: Tensor<2, Int>, _: &mut ()) -> Tensor<3> {
            unreachable!("the test pushes its own logits")
        }
    }

    #[test]
    fn the_second_part_is_drawn_at_its_own_temperature() {
        // nearly flat logits: temperature 1 draws every code, 0 only the first
        let logits = [0.3f32, 0.2, 0.1, 0.0];
        let (batch, length, first) = (64, 6, 2);
        let draw_with = |second_temperature| {
            let opts = SampleOptions { temperature: 1.0, second_temperature, seed: 3, ..Default::default() };
            let mut sampling = Sampling::new(&Given, batch, length, opts).guided(first);
            while !sampling.done() {
                sampling.push(&logits.repeat(batch));
            }
            let codes = sampling.into_codes();
            let seen = |range: std::ops::Range<usize>| {
                codes.iter().flat_map(|c| c[range.clone()].to_vec()).collect::<std::collections::BTreeSet<u32>>()
            };
            (seen(0..first), seen(first..length))
        };
        assert_eq!(draw_with(None), ([0, 1, 2, 3].into(), [0, 1, 2, 3].into()));
        assert_eq!(draw_with(Some(0.0)), ([0, 1, 2, 3].into(), [0].into()));
        let bad = SampleOptions { second_temperature: Some(f32::NAN), ..Default::default() };
        assert!(bad.check().unwrap_err().to_string().contains("second temperature NaN"));
    }
}
