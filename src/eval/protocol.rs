//! The evaluation protocol of `mxq eval` (`docs/CAPTION_MNIST.md`, "Parsing and judging"):
//! which real pairs are the reference and which the ceiling. Judged pairs are read against
//! as many real test pairs, whose judge features are the Fréchet reference; generated pairs
//! are judged beside real test pairs, and the ceiling's Fréchet distance is that of the next
//! test pairs to the same reference.

use std::ops::Range;
use std::path::Path;

use burn::prelude::*;
use serde::Serialize;

use crate::Error;
use crate::bundle::Bundle;
use crate::data::caption_mnist::{CaptionMnist, Split};
use crate::data::idx::Digits;
use crate::data::pairs::Pair;
use crate::eval::judge::{Judge, Scores};
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

fn score(judge: &Judge, pairs: &[Pair]) -> Scores {
    judge.score(&pairs.iter().map(|p| (p.image.as_slice(), p.caption.as_str())).collect::<Vec<_>>())
}

/// Judges `pairs` (any system's), with the Fréchet distance to as many real test pairs.
pub fn judge_pairs(judge: &Judge, pairs: &[Pair], test: &TestSplit) -> Result<Scores, Error> {
    let reference = score(judge, &test.pairs(0..pairs.len()));
    score(judge, pairs).with_frechet(&reference)
}

/// Generates `count` pairs from `bundle` and judges them beside `count` real test pairs.
pub fn judge_bundle(
    judge: &Judge,
    bundle: &Bundle,
    count: usize,
    opts: SampleOptions,
    test: &TestSplit,
    device: &Device,
) -> Result<BundleReport, Error> {
    let generated: Vec<Pair> = bundle
        .generate(count, EVAL_BATCH, opts, device)
        .into_iter()
        .map(|p| Pair { image: p.image, caption: p.caption })
        .collect();
    let reference = score(judge, &test.pairs(0..count));
    let generated = score(judge, &generated).with_frechet(&reference)?;
    let ceiling = score(judge, &test.pairs(count..2 * count)).with_frechet(&reference)?.frechet_distance;
    Ok(BundleReport { generated, real_test: Scores { frechet_distance: ceiling, ..reference } })
}
