//! A small seeded random generator (SplitMix64).
//!
//! Written by hand because `docs/CAPTION_MNIST.md` requires byte-identical pairs for a seed
//! on every platform and every future build: a fixed 64-bit mixer pins that, whereas `rand`
//! makes no promise that its generators' output stays the same across versions.
//!
//! Every use of a seed names its [`Stream`]; the streams' ids are disjoint by construction,
//! so two uses of one seed never draw the same numbers.

/// SplitMix64 (Steele, Lea & Flood 2014): one `u64` of state, full period, good mixing.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

/// The independent uses of a seed. Caption MNIST's pairs keep the plain pair index as their
/// stream (the data set's bytes depend on it); every other use sets a tag in the top byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Caption MNIST pair `index` (below 2^56).
    CaptionPair(u64),
    /// Input masking and codebook upkeep of training step `step`.
    TrainStep(u64),
    /// The order of the training items in `epoch`.
    EpochOrder(u64),
    /// Drawing codes from the prior.
    Sampling,
    /// The seed of a generation's batch `i` (`i > 0`; batch 0 takes the seed itself).
    SamplingBatch(u64),
    /// The judge's digit classifier, epoch `epoch`.
    JudgeEpoch(u64),
    /// Synthetic inputs of `mxq bench`.
    Bench,
    /// Tests' own draws, numbered by the test.
    Test(u64),
    /// The seed of the candidates of a batch's `i`th chunk of pairs ([`crate::sample::rerank`]).
    Candidates(u64),
}

impl Stream {
    const TAG: u32 = 56;

    /// The stream's id: `(tag << 56) | n`.
    pub fn id(self) -> u64 {
        let (tag, n) = match self {
            Self::CaptionPair(i) => (0, i),
            Self::TrainStep(s) => (1, s),
            Self::EpochOrder(e) => (2, e),
            Self::Sampling => (3, 0),
            Self::JudgeEpoch(e) => (4, e),
            Self::Bench => (5, 0),
            Self::Test(n) => (6, n),
            Self::SamplingBatch(i) => (7, i),
            Self::Candidates(i) => (8, i),
        };
        assert!(n < 1 << Self::TAG, "{self:?}: stream number out of range");
        (tag << Self::TAG) | n
    }
}

impl Rng {
    /// A generator for `seed` and one of its streams.
    pub fn new(seed: u64, stream: Stream) -> Self {
        let mut rng = Self { state: seed ^ stream.id().wrapping_mul(0xD1B5_4A32_D192_ED03) };
        rng.next_u64(); // decorrelate nearby seeds
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for our `n`).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        ((self.next_u64() >> 32).wrapping_mul(n as u64) >> 32) as usize
    }

    /// Uniform in `[0, 1)` with 24 bits of precision.
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_uniform_range() {
        let (mut a, mut b) = (Rng::new(7, Stream::TrainStep(1)), Rng::new(7, Stream::TrainStep(1)));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(Rng::new(7, Stream::TrainStep(1)).next_u64(), Rng::new(7, Stream::TrainStep(2)).next_u64());
        let mut r = Rng::new(3, Stream::Test(0));
        let mut counts = [0usize; 5];
        for _ in 0..5000 {
            counts[r.below(5)] += 1;
        }
        assert!(counts.iter().all(|&c| (900..1100).contains(&c)), "{counts:?}");
    }

    #[test]
    fn streams_of_one_seed_never_share_an_id() {
        let streams = |n: u64| {
            [
                Stream::CaptionPair(n),
                Stream::TrainStep(n),
                Stream::EpochOrder(n),
                Stream::JudgeEpoch(n),
                Stream::Test(n),
            ]
        };
        let mut ids: Vec<u64> = (0..50).flat_map(streams).map(Stream::id).collect();
        ids.extend([Stream::Sampling.id(), Stream::Bench.id()]);
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "two streams share an id");
        // the pair index is the Caption MNIST stream itself: the data set's bytes depend on it
        assert_eq!(Stream::CaptionPair(12).id(), 12);
    }
}
