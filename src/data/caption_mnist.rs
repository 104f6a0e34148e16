//! The Caption MNIST generator (`docs/CAPTION_MNIST.md`, the project's definition): 64×64
//! colour images of MNIST digits in named regions, with templated captions that a machine
//! can parse and check ([`crate::data::grammar`]).

use crate::data::grammar::{Colour, Region, SIDE, Unit};
use crate::data::idx::Digits;
use crate::rng::{Rng, Stream};

/// Digits `0..TRAIN_DIGITS` feed the train split, the rest the test split.
pub const TRAIN_DIGITS: usize = 8000;

/// An RGB image, row-major, `SIDE × SIDE × 3` bytes.
pub type Rgb = Vec<u8>;

/// One generated pair with its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionPair {
    pub image: Rgb,
    pub caption: String,
    /// The units in caption order.
    pub units: Vec<Unit>,
}

/// A deterministic Caption MNIST generator over a set of source digits.
pub struct CaptionMnist {
    digits: Digits,
    seed: u64,
}

/// Share of pairs with 0, 1, 2, 3 and 4 digits under the layout rule: one centre digit with
/// probability 1/5, else 1–4 quadrants uniformly (so 1/5 + 4/5 · 1/4 for one digit).
pub const DIGIT_COUNT_SHARES: [f64; 5] = [0.0, 0.4, 0.2, 0.2, 0.2];

/// The spec's two splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Digits `0..8000`, seed 0.
    Train,
    /// Digits `8000..`, seed 1.
    Test,
}

impl CaptionMnist {
    pub fn new(digits: Digits, seed: u64) -> Self {
        Self { digits, seed }
    }

    /// The generator of a split: its own digits (train and test never share one) and its
    /// seed unless `seed` overrides it.
    pub fn split(digits: &Digits, split: Split, seed: Option<u64>) -> Result<Self, crate::Error> {
        if digits.len() <= TRAIN_DIGITS {
            return Err(crate::Error::Dataset {
                path: "MNIST".into(),
                why: format!("{} digits; the train/test split needs more than {TRAIN_DIGITS}", digits.len()),
            });
        }
        Ok(match split {
            Split::Train => Self::new(digits.subset(0..TRAIN_DIGITS), seed.unwrap_or(0)),
            Split::Test => Self::new(digits.subset(TRAIN_DIGITS..digits.len()), seed.unwrap_or(1)),
        })
    }

    /// The source digits.
    pub fn digits(&self) -> &Digits {
        &self.digits
    }

    /// Pair number `index` (below 2^56) of this seed: depends only on `(digits, seed, index)`, so any
    /// range of pairs can be made (or streamed) in any order.
    pub fn pair(&self, index: u64) -> CaptionPair {
        let mut rng = Rng::new(self.seed, Stream::CaptionPair(index));
        let regions: Vec<Region> = if rng.below(5) == 0 {
            vec![Region::Center]
        } else {
            let k = 1 + rng.below(4);
            let mut quadrants = Region::QUADRANTS;
            rng.shuffle(&mut quadrants);
            quadrants[..k].to_vec()
        };
        let mut image = vec![0u8; SIDE * SIDE * 3];
        let mut phrases = Vec::new();
        let mut units = Vec::new();
        for region in regions {
            let glyph = rng.below(self.digits.len());
            let (dx, dy) = (rng.below(5) as isize - 2, rng.below(5) as isize - 2);
            let colour = Colour::ALL[rng.below(4)];
            let form = rng.below(3);
            let unit = Unit { region, colour, digit: self.digits.labels[glyph] };
            self.paste(&mut image, glyph, region, dx, dy, colour);
            phrases.push(unit.phrase(form));
            units.push(unit);
        }
        let mut order: Vec<usize> = (0..units.len()).collect();
        rng.shuffle(&mut order);
        let caption = order.iter().map(|&i| phrases[i].as_str()).collect::<Vec<_>>().join(", ") + ".";
        let units = order.iter().map(|&i| units[i]).collect();
        CaptionPair { image, caption, units }
    }

    /// Pastes glyph `g` at offset (2+dx, 2+dy) of `region`: pixel = glyph / 255 × colour.
    fn paste(&self, image: &mut [u8], g: usize, region: Region, dx: isize, dy: isize, colour: Colour) {
        let (ox, oy) = region.origin();
        let (x0, y0) = ((ox as isize + 2 + dx) as usize, (oy as isize + 2 + dy) as usize);
        let glyph = self.digits.glyph(g);
        let rgb = colour.rgb();
        for r in 0..self.digits.rows {
            for c in 0..self.digits.cols {
                let v = glyph[r * self.digits.cols + c] as u32;
                let p = ((y0 + r) * SIDE + x0 + c) * 3;
                for ch in 0..3 {
                    // round(v / 255 × colour) in integers
                    image[p + ch] = ((v * rgb[ch] as u32 + 127) / 255) as u8;
                }
            }
        }
    }
}
