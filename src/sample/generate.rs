//! Generation: sample codes from the prior, decode them into pairs.
//! `codes → decode → pair`, the second half of the data flow.

use burn::prelude::*;

use crate::Error;
use crate::bundle::Bundle;
use crate::config::SequenceOrder;
use crate::data::batch::to_rgb;
use crate::kernels::packed_prior::{MAX_ROWS, PackedPrior};
use crate::rng::{Rng, Stream};
use crate::sample::conditional::Given;
use crate::sample::rerank::Rerank;
use crate::sample::sampler::{DEFAULT_GUIDANCE, DEFAULT_SECOND_TEMPERATURE, SampleOptions};

/// One generated pair.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedPair {
    /// RGB bytes, 64×64×3.
    pub image: Vec<u8>,
    pub caption: String,
    /// The 72 codes it was decoded from, in stage 1's order (image, then text).
    pub codes: Vec<u32>,
}

impl Bundle {
    /// Code sequences → the tensors to read back: images `[B, 3, 64, 64]` and the most
    /// likely token per position `[B, token_length]`.
    pub fn decode_tensors(&self, codes: &[Vec<u32>], device: &Device) -> (Tensor<4>, Tensor<2, Int>) {
        let (batch, n) = (codes.len(), codes[0].len());
        let flat: Vec<i64> = codes.iter().flatten().map(|&c| c as i64).collect();
        let codes = Tensor::<2, Int>::from_data(TensorData::new(flat, [batch, n]), device);
        let decoded = self.generator.decoder.decode(codes);
        let tokens = decoded.logits.argmax(2).squeeze_dim::<2>(2);
        (decoded.image, tokens)
    }

    /// Read-back values → pairs (shared by the native and the browser path).
    pub fn pairs_from(&self, codes: Vec<Vec<u32>>, image_values: &[f32], token_ids: &[i64]) -> Vec<GeneratedPair> {
        let length = self.tokenizer.length();
        to_rgb(image_values)
            .into_iter()
            .zip(token_ids.chunks(length))
            .zip(codes)
            .map(|((image, ids), codes)| {
                let ids: Vec<u32> = ids.iter().map(|&t| t as u32).collect();
                GeneratedPair { image, caption: self.tokenizer.decode(&ids), codes }
            })
            .collect()
    }

    /// The sampling defaults for this bundle: [`SampleOptions::default`], guided at
    /// [`DEFAULT_GUIDANCE`] where the prior was trained with unconditional sequences, and a
    /// caption-first prior's image codes drawn at [`DEFAULT_SECOND_TEMPERATURE`].
    pub fn default_options(&self) -> SampleOptions {
        let guided = self.config.prior.unconditional > 0.0;
        let caption_first = self.config.prior.order == SequenceOrder::TextFirst;
        SampleOptions {
            guidance: if guided { DEFAULT_GUIDANCE } else { 1.0 },
            second_temperature: caption_first.then_some(DEFAULT_SECOND_TEMPERATURE),
            ..SampleOptions::default()
        }
    }

    /// Refuses sampling options this bundle cannot honour: out-of-range values, and guidance
    /// from a prior never trained without the first part (`prior.unconditional` 0), whose
    /// unconditional logits would mean nothing.
    pub fn check_options(&self, opts: &SampleOptions) -> Result<(), Error> {
        opts.check()?;
        if opts.guidance != 1.0 && self.config.prior.unconditional <= 0.0 {
            return Err(Error::Options(format!(
                "guidance {} needs a prior trained with some sequences unconditional (mxq train prior \
                 --unconditional 0.1); this bundle's prior was not: use guidance 1",
                opts.guidance
            )));
        }
        Ok(())
    }

    /// Sequences drawn by the prior (in its order, [`crate::config::SequenceOrder`]) as stage
    /// 1's unified sequences, which the decoders read.
    pub fn unified_codes(&self, drawn: Vec<Vec<u32>>) -> Vec<Vec<u32>> {
        drawn
            .iter()
            .map(|codes| {
                self.config.to_unified_order(codes).into_iter().map(|c| c.expect("a whole sequence")).collect()
            })
            .collect()
    }

    /// Decodes code sequences into pairs (native, synchronous readback).
    pub fn decode_codes(&self, codes: Vec<Vec<u32>>, device: &Device) -> Vec<GeneratedPair> {
        let (images, tokens) = self.decode_tensors(&codes, device);
        let images = images.into_data().try_into_vec_as::<f32>().expect("f32 images");
        let tokens = tokens.into_data().try_into_vec_as::<i64>().expect("int tokens");
        self.pairs_from(codes, &images, &tokens)
    }

    /// Generates `count` pairs in batches of at most `batch` (see [`batches`]); the prior
    /// samples on the packed kernels where the bundle has them and the batch is small
    /// enough to gain ([`MAX_ROWS`]), else on burn's layers.
    pub fn generate(&self, count: usize, batch: usize, opts: SampleOptions, device: &Device) -> Vec<GeneratedPair> {
        self.generate_from(&Given::default(), count, batch, opts, None, device)
    }

    /// The packed prior, where the bundle has one ([`crate::bundle::load`] packs it on the
    /// CPU) and a batch of `n` sequences is small enough to gain ([`MAX_ROWS`] rows; guidance
    /// runs each sequence's unconditional twin beside it); otherwise burn's layers sample.
    pub fn packed_for(&self, n: usize, opts: &SampleOptions) -> Option<&PackedPrior> {
        let rows = if opts.guidance != 1.0 { 2 * n } else { n };
        self.packed_prior.as_ref().filter(|_| rows <= MAX_ROWS)
    }

    /// [`Self::generate`] from what is `given`, e.g. a caption ([`Bundle::given_caption`]),
    /// each pair the best of `rerank`'s candidates where given.
    #[allow(clippy::too_many_arguments)]
    pub fn generate_from(
        &self,
        given: &Given,
        count: usize,
        batch: usize,
        opts: SampleOptions,
        rerank: Option<&Rerank>,
        device: &Device,
    ) -> Vec<GeneratedPair> {
        let mut out = Vec::with_capacity(count.min(MAX_COUNT));
        let _ = self.generate_each(given, count, batch, opts, rerank, device, |pairs| {
            out.extend(pairs);
            Ok::<_, std::convert::Infallible>(())
        });
        out
    }

    /// [`Self::generate_from`], handing each batch's pairs to `sink` as soon as they are
    /// decoded (so a caller can stream them to disk) and stopping at the sink's first error.
    #[allow(clippy::too_many_arguments)]
    pub fn generate_each<E: Send>(
        &self,
        given: &Given,
        count: usize,
        batch: usize,
        opts: SampleOptions,
        rerank: Option<&Rerank>,
        device: &Device,
        mut sink: impl FnMut(Vec<GeneratedPair>) -> Result<(), E> + Send,
    ) -> Result<(), E> {
        crate::on_cpu_pool(|| {
            for (n, opts) in batches(count, batch, opts) {
                let codes = self.draw_codes(given, n, opts, rerank, device);
                let mut pairs = self.decode_codes(self.unified_codes(codes), device);
                given.apply(&mut pairs);
                sink(pairs)?;
            }
            Ok(())
        })
    }
}

/// The most pairs one generation run makes, and the most it samples together: larger
/// requests are refused up front ([`check_counts`]) rather than failing after hours.
pub const MAX_COUNT: usize = 1_000_000;
pub const MAX_BATCH: usize = 1024;

/// Rejects a pair count or batch size outside `1..=MAX_COUNT` / `1..=MAX_BATCH`.
pub fn check_counts(count: usize, batch: usize) -> Result<(), Error> {
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(Error::Options(format!("count {count} must be between 1 and {MAX_COUNT}")));
    }
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(Error::Options(format!("batch {batch} must be between 1 and {MAX_BATCH}")));
    }
    Ok(())
}

/// How `count` pairs are drawn: batches of at most `batch`, the first from the seed itself,
/// batch `i > 0` from a seed drawn from (`seed`, `i`) — not `seed + i`, with which seed 1's
/// pairs were seed 0's shifted by one batch. Native and browser both follow this plan, so a
/// seed names the same pairs everywhere.
pub fn batches(count: usize, batch: usize, opts: SampleOptions) -> impl Iterator<Item = (usize, SampleOptions)> {
    let batch = batch.max(1);
    (0..count).step_by(batch).enumerate().map(move |(i, start)| {
        let seed = match i {
            0 => opts.seed,
            i => Rng::new(opts.seed, Stream::SamplingBatch(i as u64)).next_u64(),
        };
        (batch.min(count - start), SampleOptions { seed, ..opts })
    })
}
