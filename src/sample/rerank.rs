//! Best of K: each pair is drawn as K candidates that share its first part (given, or
//! drawn once as without reranking), and the candidate a second prior on the same stage 1
//! finds most likely is kept — the role CLIP's reranking plays for DALL·E, here with the
//! model's own other direction instead of a separate model.
//!
//! The default use is captioning: the captioner (image-first) draws K captions for an
//! image, and the caption-first prior scores each whole pair, log p(caption codes, image
//! codes) — for a fixed image, the caption's posterior up to a constant. Drawing images can
//! be reranked the same way (the captioner scoring log p(caption codes | image codes)), but
//! measured no gain (docs/consistency.md, "Best of K").
//!
//! The candidates are scored step by step ([`Scoring`], the mirror of
//! [`crate::sample::Sampling`]): the same kernels as sampling, on every backend, so the page
//! (which awaits each step's read-back) chooses as the native CLI does.

use burn::prelude::*;

use crate::Error;
use crate::bundle::Bundle;
use crate::kernels::packed_prior::{MAX_ROWS, PackedPrior};
use crate::rng::{Rng, Stream};
use crate::sample::conditional::Given;
use crate::sample::sampler::{CachedPrior, SampleOptions, sample_completions};

/// The most candidates one pair can be chosen from.
pub const MAX_CANDIDATES: usize = 64;

/// Rejects a candidate count outside `1..=MAX_CANDIDATES` (1: each pair as drawn).
pub fn check_candidates(candidates: usize) -> Result<(), Error> {
    if !(1..=MAX_CANDIDATES).contains(&candidates) {
        return Err(Error::Options(format!("candidates {candidates} must be between 1 and {MAX_CANDIDATES}")));
    }
    Ok(())
}

/// The candidates per pair for `opts`: `requested`, else `default`, checked. Drawn greedily
/// (the second part at temperature 0 or top-k 1), the candidates would all be one draw, so
/// the default falls to 1 (no scorer needed) and a count above 1 is refused by name.
pub fn candidates_for(requested: Option<usize>, default: usize, opts: &SampleOptions) -> Result<usize, Error> {
    let greedy = opts.second_part_is_greedy();
    let candidates = match requested {
        Some(k) if greedy && k > 1 => {
            return Err(Error::Options(format!(
                "{k} candidates drawn greedily (temperature 0 or top-k 1) would all be the same: give a temperature above 0 or 1 candidate"
            )));
        }
        Some(k) => k,
        None if greedy => 1,
        None => default,
    };
    check_candidates(candidates)?;
    Ok(candidates)
}

/// What a scoring prior's log-likelihood is taken of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scored {
    /// The codes after its first part, given the first: log p(second | first).
    SecondPart,
    /// Every code: log p(first, second).
    WholePair,
}

/// How the pairs of a generation are chosen among candidates.
pub struct Rerank<'a> {
    /// The bundle whose prior scores the candidates: on the drawing bundle's stage 1.
    scorer: &'a Bundle,
    candidates: usize,
    scored: Scored,
}

impl<'a> Rerank<'a> {
    /// `candidates` per pair of `bundle`, scored by `scorer`'s prior as `scored` says.
    /// Refused: a scorer on another stage 1 (its codes would mean nothing to it), a count
    /// outside `1..=MAX_CANDIDATES`, and whole pairs scored by a conditional prior, which
    /// never learned a pair's first part.
    pub fn new(bundle: &Bundle, scorer: &'a Bundle, candidates: usize, scored: Scored) -> Result<Self, Error> {
        check_candidates(candidates)?;
        bundle.check_stage1(&scorer.config.stage1, &scorer.tokenizer.to_json(), &scorer.codebook).map_err(
            |differs| {
                Error::Bundle(format!(
                    "the scoring bundle is not on this bundle's stage 1 ({differs} differs): train both on one"
                ))
            },
        )?;
        if scored == Scored::WholePair && scorer.config.prior.conditional {
            return Err(Error::Options(
                "the scoring bundle's prior is conditional: it scores the codes after its first part, not whole pairs"
                    .into(),
            ));
        }
        Ok(Self { scorer, candidates, scored })
    }

    pub fn candidates(&self) -> usize {
        self.candidates
    }

    pub fn scorer(&self) -> &Bundle {
        self.scorer
    }

    /// How many pairs' candidates are drawn together: as many as the packed prior takes at
    /// once (half under guidance, whose twins double the rows). The same on every backend,
    /// packed or not: each chunk draws from a seed of its own, so a chunk size that followed
    /// the backend would give other pairs for the same seed elsewhere.
    pub fn pairs_per_chunk(&self, opts: &SampleOptions) -> usize {
        let rows = if opts.guidance != 1.0 { MAX_ROWS / 2 } else { MAX_ROWS };
        (rows / self.candidates).max(1)
    }

    /// The candidates' prefixes (each pair's first part, once per candidate) and options
    /// (a seed of their own for chunk `chunk`) for the pairs whose first parts are `firsts`.
    pub fn candidate_rows(
        &self,
        firsts: &[Vec<u32>],
        opts: SampleOptions,
        chunk: usize,
    ) -> (Vec<Vec<u32>>, SampleOptions) {
        let rows = firsts.iter().flat_map(|f| std::iter::repeat_n(f.clone(), self.candidates)).collect();
        let seed = Rng::new(opts.seed, Stream::Candidates(chunk as u64)).next_u64();
        (rows, SampleOptions { seed, ..opts })
    }

    /// The candidates (`bundle`'s prior order) as the scorer reads them (its order), and
    /// the position its scores start from.
    pub fn scored_sequences(&self, bundle: &Bundle, candidates: &[Vec<u32>]) -> (Vec<Vec<u32>>, usize) {
        let unified = bundle.unified_codes(candidates.to_vec());
        let ordered = unified.iter().map(|codes| self.scorer.config.to_prior_order(codes)).collect();
        let from = match self.scored {
            Scored::SecondPart => self.scorer.config.first_part(),
            Scored::WholePair => 0,
        };
        (ordered, from)
    }

    /// Each pair's best candidate: the highest score of its group of `candidates`, ties to
    /// the first drawn; a score that is not a number ranks lowest (`total_cmp` alone would
    /// rank a NaN above every real score).
    pub fn choose(&self, candidates: Vec<Vec<u32>>, scores: &[f32]) -> Vec<Vec<u32>> {
        let k = self.candidates;
        let rank = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
        candidates
            .chunks(k)
            .zip(scores.chunks(k))
            .map(|(group, scores)| {
                let best =
                    (0..group.len()).max_by(|&a, &b| rank(scores[a]).total_cmp(&rank(scores[b])).then(b.cmp(&a)));
                group[best.unwrap_or(0)].clone()
            })
            .collect()
    }
}

/// Step-wise scoring of code sequences by a prior: each sequence is fed one position at a
/// time, as sampling feeds its draws, and the log-probability the prior gives each next
/// code is summed from position `from` on. The browser awaits each step's read-back;
/// [`score_codes`] is the native loop.
pub struct Scoring<P: CachedPrior> {
    cache: P::Cache,
    sequences: Vec<Vec<u32>>,
    position: usize,
    from: usize,
    scores: Vec<f32>,
    start: u32,
}

impl<P: CachedPrior> Scoring<P> {
    /// Scores `sequences` (the prior's order, all of one length) from position `from` on.
    pub fn new(prior: &P, sequences: Vec<Vec<u32>>, from: usize) -> Self {
        let scores = vec![0.0; sequences.len()];
        Self { cache: P::Cache::default(), sequences, position: 0, from, scores, start: prior.start() as u32 }
    }

    pub fn done(&self) -> bool {
        self.sequences.first().is_none_or(|s| self.position >= s.len())
    }

    /// Runs the prior one position forward: logits `[batch, codes]` for the code at
    /// the current position.
    pub fn logits(&mut self, prior: &P, device: &Device) -> Tensor<2> {
        let batch = self.sequences.len();
        let ids: Vec<i64> = match self.position {
            0 => vec![self.start as i64; batch],
            p => self.sequences.iter().map(|s| s[p - 1] as i64).collect(),
        };
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, 1]), device);
        let logits = prior.forward_cached(tokens, &mut self.cache); // [B, 1, K]
        let k = logits.dims()[2];
        logits.reshape([batch, k])
    }

    /// Takes the logits read back from [`Self::logits`] and adds each sequence's code's
    /// log-probability (from position `from` on).
    pub fn push(&mut self, logits: &[f32]) {
        let k = logits.len() / self.sequences.len().max(1);
        if self.position >= self.from {
            for (b, sequence) in self.sequences.iter().enumerate() {
                let row = &logits[b * k..(b + 1) * k];
                let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let log_total = row.iter().map(|l| (l - top).exp()).sum::<f32>().ln() + top;
                self.scores[b] += row[sequence[self.position] as usize] - log_total;
            }
        }
        self.position += 1;
    }

    pub fn into_scores(self) -> Vec<f32> {
        self.scores
    }
}

/// Scores `sequences` from position `from` on with `prior` (native: synchronous read-back).
pub fn score_codes<P: CachedPrior>(prior: &P, sequences: Vec<Vec<u32>>, from: usize, device: &Device) -> Vec<f32> {
    let mut scoring = Scoring::new(prior, sequences, from);
    while !scoring.done() {
        let logits = scoring.logits(prior, device).into_data().try_into_vec_as::<f32>().expect("f32 logits");
        scoring.push(&logits);
    }
    scoring.into_scores()
}

impl Bundle {
    /// Scores `sequences` (this prior's order) from position `from` on: on the packed prior
    /// where it takes them all at once, else on burn's layers.
    pub fn score(&self, sequences: Vec<Vec<u32>>, from: usize, device: &Device) -> Vec<f32> {
        match self.packed_for_scoring(sequences.len()) {
            Some(packed) => score_codes(packed, sequences, from, device),
            None => score_codes(&self.generator.prior, sequences, from, device),
        }
    }

    /// The packed prior that scores `rows` sequences, where it gains: scoring runs the
    /// prior as it is (no guidance twins). The page asks the same, so it chooses as natively.
    pub fn packed_for_scoring(&self, rows: usize) -> Option<&PackedPrior> {
        self.packed_for(rows, &SampleOptions { guidance: 1.0, ..SampleOptions::default() })
    }

    /// `n` code sequences (the prior's order) completing `given`: drawn as they are, or each
    /// the best of `rerank`'s candidates.
    pub(crate) fn draw_codes(
        &self,
        given: &Given,
        n: usize,
        opts: SampleOptions,
        rerank: Option<&Rerank>,
        device: &Device,
    ) -> Vec<Vec<u32>> {
        let (length, first) = (self.config.stage1.sequence_length(), self.config.first_part());
        let Some(rerank) = rerank.filter(|r| r.candidates > 1) else {
            return self.sample(&vec![given.prefix.clone(); n], length, opts, device);
        };
        // the first parts: given, or drawn once per pair as without reranking (the same ones)
        let firsts = match given.prefix.len() >= first {
            true => vec![given.prefix.clone(); n],
            false => self.sample(&vec![given.prefix.clone(); n], first, opts, device),
        };
        let mut chosen = Vec::with_capacity(n);
        for (chunk, firsts) in firsts.chunks(rerank.pairs_per_chunk(&opts)).enumerate() {
            let (rows, opts) = rerank.candidate_rows(firsts, opts, chunk);
            let candidates = self.sample(&rows, length, opts, device);
            let (sequences, from) = rerank.scored_sequences(self, &candidates);
            let scores = rerank.scorer.score(sequences, from, device);
            chosen.extend(rerank.choose(candidates, &scores));
        }
        chosen
    }

    /// Sequences of `length` codes completing `prefixes` (one per sequence): on the packed
    /// prior where it gains ([`Self::packed_for`]), else on burn's layers.
    fn sample(&self, prefixes: &[Vec<u32>], length: usize, opts: SampleOptions, device: &Device) -> Vec<Vec<u32>> {
        let first = self.config.first_part();
        match self.packed_for(prefixes.len(), &opts) {
            Some(packed) => sample_completions(packed, prefixes, length, first, opts, device),
            None => sample_completions(&self.generator.prior, prefixes, length, first, opts, device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_draws_take_one_candidate_and_refuse_more() {
        let sampled = SampleOptions { temperature: 0.5, ..SampleOptions::default() };
        assert_eq!(candidates_for(None, 8, &sampled).unwrap(), 8);
        assert_eq!(candidates_for(Some(3), 8, &sampled).unwrap(), 3);
        assert!(candidates_for(Some(0), 8, &sampled).is_err());
        assert!(candidates_for(Some(65), 8, &sampled).is_err());
        let greedy = [
            SampleOptions { temperature: 0.0, ..sampled },
            SampleOptions { top_k: 1, ..sampled },
            SampleOptions { second_temperature: Some(0.0), ..sampled },
        ];
        for opts in greedy {
            assert_eq!(candidates_for(None, 8, &opts).unwrap(), 1, "{opts:?}");
            assert_eq!(candidates_for(Some(1), 8, &opts).unwrap(), 1);
            let says = candidates_for(Some(8), 8, &opts).unwrap_err().to_string();
            assert!(says.contains("8 candidates drawn greedily"), "{says}");
        }
        // only the second part's draws make the candidates differ
        let first_greedy = SampleOptions { temperature: 0.0, second_temperature: Some(0.6), ..sampled };
        assert_eq!(candidates_for(None, 8, &first_greedy).unwrap(), 8);
    }
}
