//! The evaluation protocol of `mxq eval` (`docs/CAPTION_MNIST.md`, "Parsing and judging"):
//! which real pairs are the reference and which the ceiling. Judged pairs are read against
//! as many real test pairs, whose judge features are the Fréchet reference; generated pairs
//! are judged beside real test pairs, and the ceiling's Fréchet distance is that of the next
//! test pairs to the same reference. With a training set's captions, both rows also say
//! how many captions are copied verbatim from it; with a trained stage 1, the ceiling that
//! its decoders set is the judged reconstruction of the same test pairs.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

use burn::prelude::*;
use serde::Serialize;

use crate::Error;
use crate::bundle::Bundle;
use crate::data::caption_mnist::{CaptionMnist, Split};
use crate::data::idx::Digits;
use crate::data::masking::Half;
use crate::data::pairs::{Pair, read_captions};
use crate::data::tokenizer::CaptionTokenizer;
use crate::eval::judge::{Judge, Scores};
use crate::eval::reconstruction::{Reconstruction, reconstruct};
use crate::model::mxq_vae::MxqVae;
use crate::sample::conditional::{Encoder, Given};
use crate::sample::rerank::Rerank;
use crate::sample::sampler::SampleOptions;

/// Pairs sampled together when a bundle is judged.
pub const EVAL_BATCH: usize = 16;

/// The real pairs of the spec's test split.
pub struct TestSplit {
    generator: CaptionMnist,
}

impl TestSplit {
    /// The test split over the MNIST IDX files in `mnist_dir`.
    pub fn load(mnist_dir: &Path) -> Result<Self, Error> {
        Ok(Self { generator: CaptionMnist::split(&Digits::load_dir(mnist_dir)?, Split::Test, None)? })
    }

    /// Test pairs `range`.
    pub fn pairs(&self, range: Range<usize>) -> Vec<Pair> {
        range.map(|i| self.generator.pair(i as u64)).map(|p| Pair { image: p.image, caption: p.caption }).collect()
    }
}

/// Generated pairs judged beside the ceiling.
#[derive(Debug, Clone, Serialize)]
pub struct BundleReport {
    pub generated: Scores,
    /// Real test pairs, as many as were generated; their Fréchet distance is that of the
    /// test pairs after them to the same reference.
    pub real_test: Scores,
}

/// The captions of a training pairs folder, to count generated captions copied from it.
pub fn train_captions(dir: &Path) -> Result<HashSet<String>, Error> {
    Ok(read_captions(dir)?.into_iter().collect())
}

fn score(judge: &Judge, pairs: &[Pair], train: Option<&HashSet<String>>) -> Scores {
    let scores = judge.score(&pairs.iter().map(|p| (p.image.as_slice(), p.caption.as_str())).collect::<Vec<_>>());
    match train {
        Some(train) => scores.with_copied(&pairs.iter().map(|p| p.caption.as_str()).collect::<Vec<_>>(), train),
        None => scores,
    }
}

/// Judges `pairs` (any system's), with the Fréchet distance to as many real test pairs.
pub fn judge_pairs(
    judge: &Judge,
    pairs: &[Pair],
    test: &TestSplit,
    train: Option<&HashSet<String>>,
) -> Result<Scores, Error> {
    let reference = score(judge, &test.pairs(0..pairs.len()), None);
    score(judge, pairs, train).with_frechet(&reference)
}

/// Generates `count` pairs from `bundle` (each the best of `rerank`'s candidates where given)
/// and judges them beside `count` real test pairs.
#[allow(clippy::too_many_arguments)]
pub fn judge_bundle(
    judge: &Judge,
    bundle: &Bundle,
    count: usize,
    opts: SampleOptions,
    rerank: Option<&Rerank>,
    test: &TestSplit,
    train: Option<&HashSet<String>>,
    device: &Device,
) -> Result<BundleReport, Error> {
    let generated: Vec<Pair> = bundle
        .generate_from(&Given::default(), count, EVAL_BATCH, opts, rerank, device)
        .into_iter()
        .map(|p| Pair { image: p.image, caption: p.caption })
        .collect();
    let reference = score(judge, &test.pairs(0..count), train);
    let generated = score(judge, &generated, train).with_frechet(&reference)?;
    let ceiling = score(judge, &test.pairs(count..2 * count), None).with_frechet(&reference)?.frechet_distance;
    Ok(BundleReport { generated, real_test: Scores { frechet_distance: ceiling, ..reference } })
}

/// Completes each of the first `count` test pairs from its `given` half (pair `i` from seed
/// `opts.seed + i`) and judges each completed pair. Given the caption, an image is drawn
/// for it (`mxq eval --drawn`): the consistency is the share of images that show what their
/// caption says. Given the image, an image-first `bundle` captions it (`--captioner`, as `mxq
/// caption` does): the share of captions whose units are the
/// ones the image shows. Each completion is the best of `rerank`'s candidates where given.
#[allow(clippy::too_many_arguments)]
pub fn judge_completed(
    judge: &Judge,
    bundle: &Bundle,
    encoder: &Encoder,
    given: Half,
    count: usize,
    opts: SampleOptions,
    rerank: Option<&Rerank>,
    test: &TestSplit,
    device: &Device,
) -> Result<Scores, Error> {
    let mut completed = Vec::with_capacity(count);
    for (i, real) in test.pairs(0..count).iter().enumerate() {
        let opts = SampleOptions { seed: opts.seed.wrapping_add(i as u64), ..opts };
        let given = match given {
            Half::Caption => bundle.given_caption(encoder, &real.caption, device)?,
            Half::Image => bundle.given_image(encoder, &real.image, device)?,
        };
        let pairs = bundle.generate_from(&given, 1, 1, opts, rerank, device);
        completed.extend(pairs.into_iter().map(|p| Pair { image: p.image, caption: p.caption }));
    }
    judge_pairs(judge, &completed, test, None)
}

/// What a trained stage 1 makes of the first `count` test pairs.
#[derive(Debug, Clone, Serialize)]
pub struct Stage1Report {
    pub reconstruction: Reconstruction,
    /// The reconstructed pairs judged (caption against image): generated pairs, decoded by
    /// the same decoders, cannot agree more than this.
    pub judged: Scores,
    /// Where it is lost: each reconstructed half judged against the other half's original,
    /// the reconstructed image with the true caption …
    pub image_against_true_caption: Scores,
    /// … and the reconstructed caption with the true image.
    pub caption_against_true_image: Scores,
    /// Across modalities, straight from stage 1: the image decoded from the caption alone
    /// (the image masked entirely), judged against the true caption …
    pub image_from_caption: Scores,
    /// … and the caption decoded from the image alone, judged against the true image, with
    /// its exact-caption rate in `caption_from_image_exact_pct`.
    pub caption_from_image: Scores,
    pub caption_from_image_exact_pct: f64,
    /// How much of a pair's codes one half fixes alone: the share of text codes that are
    /// the same with the image masked entirely as with the whole pair (what a prior that
    /// draws the caption's codes first would be given to draw an image for a caption) …
    pub text_codes_without_image_pct: f64,
    /// … and of image codes with the caption masked entirely.
    pub image_codes_without_caption_pct: f64,
}

/// The share (%) of positions in `range` of each `length`-code sequence where `a` and `b` agree.
fn agreement(a: &[i64], b: &[i64], length: usize, range: Range<usize>) -> f64 {
    let (mut same, mut all) = (0usize, 0usize);
    for (x, y) in a.chunks(length).zip(b.chunks(length)) {
        same += x[range.clone()].iter().zip(&y[range.clone()]).filter(|(p, q)| p == q).count();
        all += range.len();
    }
    100.0 * same as f64 / all.max(1) as f64
}

/// Encodes and decodes the first `count` test pairs with `vae`, and judges the result.
pub fn judge_stage1(
    judge: &Judge,
    vae: &MxqVae,
    tokenizer: &CaptionTokenizer,
    count: usize,
    test: &TestSplit,
    device: &Device,
) -> Result<Stage1Report, Error> {
    let pairs = test.pairs(0..count);
    let reconstruction = crate::on_cpu_pool(|| reconstruct(vae, tokenizer, &pairs, None, device));
    let pair = |image: &Vec<u8>, caption: &String| Pair { image: image.clone(), caption: caption.clone() };
    let (images, captions) = (&reconstruction.images, &reconstruction.captions);
    let rebuilt: Vec<Pair> = images.iter().zip(captions).map(|(i, c)| pair(i, c)).collect();
    let judged = judge_pairs(judge, &rebuilt, test, None)?;
    let true_caption: Vec<Pair> = images.iter().zip(&pairs).map(|(i, p)| pair(i, &p.caption)).collect();
    let image_against_true_caption = judge_pairs(judge, &true_caption, test, None)?;
    let true_image: Vec<Pair> = pairs.iter().zip(captions).map(|(p, c)| pair(&p.image, c)).collect();
    let caption_against_true_image = judge_pairs(judge, &true_image, test, None)?;
    let drawn = crate::on_cpu_pool(|| reconstruct(vae, tokenizer, &pairs, Some(Half::Image), device));
    let length = reconstruction.codes.len() / pairs.len().max(1);
    let grid = crate::config::GRID * crate::config::GRID;
    let text_codes_without_image_pct = agreement(&reconstruction.codes, &drawn.codes, length, grid..length);
    let drawn: Vec<Pair> = drawn.images.iter().zip(&pairs).map(|(i, p)| pair(i, &p.caption)).collect();
    let image_from_caption = judge_pairs(judge, &drawn, test, None)?;
    let read = crate::on_cpu_pool(|| reconstruct(vae, tokenizer, &pairs, Some(Half::Caption), device));
    let caption_from_image_exact_pct = read.exact_captions_pct;
    let image_codes_without_caption_pct = agreement(&reconstruction.codes, &read.codes, length, 0..grid);
    let read: Vec<Pair> = pairs.iter().zip(&read.captions).map(|(p, c)| pair(&p.image, c)).collect();
    let caption_from_image = judge_pairs(judge, &read, test, None)?;
    Ok(Stage1Report {
        reconstruction,
        judged,
        image_against_true_caption,
        caption_against_true_image,
        image_from_caption,
        caption_from_image,
        caption_from_image_exact_pct,
        text_codes_without_image_pct,
        image_codes_without_caption_pct,
    })
}
