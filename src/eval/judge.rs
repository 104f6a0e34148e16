//! The Caption MNIST judge (`docs/CAPTION_MNIST.md`, "Parsing and judging"): rules decide
//! which regions of an image hold a digit and in which colour (from the mean RGB of the
//! region's lit pixels); the digit classifier ([`crate::eval::digit_classifier`]) reads each numeral. The judge file is one
//! safetensors file: the classifier's f32 weights, a format name, a version and the test
//! accuracy it was shipped with.

use std::collections::HashMap;

use burn::prelude::*;

use crate::data::caption_mnist::DIGIT_COUNT_SHARES;
use crate::data::grammar::{Colour, Region, SIDE, Unit, parse_caption};
use crate::error::Error;
use crate::eval::digit_classifier::{DigitClassifier, region_pixels};
use crate::weights::{load_weights, save_weights};

/// `format` metadata of a judge file.
pub const FORMAT: &str = "mxq-judge";
/// Judge file version this build writes and reads.
pub const VERSION: u32 = 1;

/// A pixel is lit when its brightest channel reaches this.
pub const LIT: u8 = 96;
/// A region holds a digit when it has at least this many lit pixels.
pub const MIN_LIT: usize = 15;

fn lit(image: &[u8], x: usize, y: usize) -> Option<[u8; 3]> {
    let p = &image[(y * SIDE + x) * 3..(y * SIDE + x) * 3 + 3];
    (p.iter().copied().max().unwrap_or(0) >= LIT).then(|| [p[0], p[1], p[2]])
}

/// Lit pixels of `region` and the nearest of the four colours to their mean.
fn read_region(image: &[u8], region: Region) -> (usize, Colour) {
    let (ox, oy) = region.origin();
    let (mut n, mut sum) = (0usize, [0f64; 3]);
    for y in oy..oy + 32 {
        for x in ox..ox + 32 {
            if let Some(p) = lit(image, x, y) {
                n += 1;
                (0..3).for_each(|c| sum[c] += p[c] as f64);
            }
        }
    }
    let mean = sum.map(|s| s / n.max(1) as f64);
    let colour = Colour::ALL
        .into_iter()
        .min_by(|a, b| {
            let d = |c: Colour| c.rgb().iter().zip(&mean).map(|(&v, m)| (v as f64 - m).powi(2)).sum::<f64>();
            d(*a).total_cmp(&d(*b))
        })
        .expect("four colours");
    (n, colour)
}

/// The regions that hold a digit, each with its colour. A centre digit never reaches
/// the outer 16-pixel band, quadrant digits do: that decides between the two layouts.
pub fn read_layout(image: &[u8]) -> Vec<(Region, Colour)> {
    let outside_centre = (0..SIDE)
        .flat_map(|y| (0..SIDE).map(move |x| (x, y)))
        .filter(|&(x, y)| !(16..48).contains(&x) || !(16..48).contains(&y))
        .filter(|&(x, y)| lit(image, x, y).is_some())
        .count();
    let regions: &[Region] = if outside_centre >= MIN_LIT { &Region::QUADRANTS } else { &[Region::Center] };
    regions
        .iter()
        .filter_map(|&r| {
            let (n, colour) = read_region(image, r);
            (n >= MIN_LIT).then_some((r, colour))
        })
        .collect()
}

/// What the judge reads in one region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub unit: Unit,
    /// The classifier's probability for `unit.digit`.
    pub confidence: f32,
}

/// The pairs whose image the judge reads as holding `digits` digits.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DigitCount {
    pub digits: usize,
    /// Share of all pairs.
    pub share_pct: f64,
    /// Consistent pairs among these.
    pub consistency_pct: f64,
}

/// The spec's figures for a set of pairs (`docs/CAPTION_MNIST.md`, "Parsing and judging").
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scores {
    pub pairs: usize,
    pub validity_pct: f64,
    pub consistency_pct: f64,
    /// Units that match the judge's reading / units in the valid captions.
    pub unit_accuracy_pct: f64,
    /// Captions whose (region, colour) set matches the image, numerals aside.
    pub layout_colour_consistency_pct: f64,
    /// Lit regions whose numeral the classifier calls with probability ≥ 0.9.
    pub fidelity_pct: f64,
    pub distinct_captions_per_pair: f64,
    /// By the number of digits the judge reads in the image (0–4): how many pairs, and how
    /// many of them consistent.
    pub by_digit_count: Vec<DigitCount>,
    /// Total variation between that histogram and the data's ([`DIGIT_COUNT_SHARES`]):
    /// 0 when the pairs have the data's mix of digit counts, 1 when they share none.
    pub digit_count_total_variation: f64,
    /// Captions found verbatim among a training set's; set by [`Scores::with_copied`].
    pub copied_captions_pct: Option<f64>,
    /// Fréchet distance to a reference set in the classifier's penultimate features of
    /// lit regions; set by [`Scores::with_frechet`] (`None` until then, and where either
    /// side has fewer than two lit regions: images with nothing drawn still get every other
    /// score).
    pub frechet_distance: Option<f64>,
    pub judge_test_digit_accuracy_pct: f64,
    /// Penultimate features of every lit region (for the Fréchet distance).
    #[serde(skip)]
    pub features: Vec<Vec<f32>>,
}

impl Scores {
    /// Sets the Fréchet distance to `reference`'s features, where both have two or more.
    pub fn with_frechet(mut self, reference: &Scores) -> Result<Self, Error> {
        let enough = self.features.len() >= 2 && reference.features.len() >= 2;
        self.frechet_distance =
            enough.then(|| crate::eval::frechet::frechet_distance(&self.features, &reference.features)).transpose()?;
        Ok(self)
    }

    /// Sets the share of `captions` (these pairs' captions, in order) that appear in `train`.
    pub fn with_copied(mut self, captions: &[&str], train: &std::collections::HashSet<String>) -> Self {
        let copied = captions.iter().filter(|c| train.contains(**c)).count();
        self.copied_captions_pct = Some(100.0 * copied as f64 / captions.len().max(1) as f64);
        self
    }
}

/// The full judge: the rules above plus a trained digit classifier.
pub struct Judge {
    pub classifier: DigitClassifier,
    /// Accuracy on the held-out test digits, as recorded when the file was written.
    pub test_accuracy: f64,
    device: Device,
}

impl Judge {
    pub fn new(classifier: DigitClassifier, test_accuracy: f64, device: &Device) -> Self {
        Self { classifier, test_accuracy, device: device.clone() }
    }

    /// Each occupied region of each image as (region, colour, digit) with the classifier's
    /// confidence, plus the penultimate features of every occupied region.
    pub fn read(&self, images: &[&[u8]]) -> (Vec<Vec<Reading>>, Vec<Vec<f32>>) {
        let layouts: Vec<Vec<(Region, Colour)>> = images.iter().map(|im| read_layout(im)).collect();
        let regions: Vec<Vec<f32>> = images
            .iter()
            .zip(&layouts)
            .flat_map(|(im, layout)| layout.iter().map(|&(r, _)| region_pixels(im, r)))
            .collect();
        let (calls, features) = self.classifier.classify(&regions, &self.device);
        let mut calls = calls.into_iter();
        let readings = layouts
            .into_iter()
            .map(|layout| {
                layout
                    .into_iter()
                    .map(|(region, colour)| {
                        let (digit, confidence) = calls.next().expect("one call per region");
                        Reading { unit: Unit { region, colour, digit }, confidence }
                    })
                    .collect()
            })
            .collect();
        (readings, features)
    }

    /// Judges (image RGB bytes, caption) pairs: validity, consistency, unit accuracy,
    /// fidelity and diversity, with the features for a Fréchet distance.
    pub fn score(&self, pairs: &[(&[u8], &str)]) -> Scores {
        let n = pairs.len() as f64;
        let (mut valid, mut layout, mut consistent) = (0usize, 0usize, 0usize);
        let (mut units_said, mut units_right, mut lit, mut sure) = (0usize, 0usize, 0usize, 0usize);
        let mut features = Vec::new();
        // Pairs and consistent pairs by the digits the judge reads.
        let mut by_count = [(0usize, 0usize); DIGIT_COUNT_SHARES.len()];
        for chunk in pairs.chunks(64) {
            let images: Vec<&[u8]> = chunk.iter().map(|p| p.0).collect();
            let (readings, f) = self.read(&images);
            features.extend(f);
            for ((_, caption), read) in chunk.iter().zip(readings) {
                let count = &mut by_count[read.len().min(DIGIT_COUNT_SHARES.len() - 1)];
                count.0 += 1;
                lit += read.len();
                sure += read.iter().filter(|r| r.confidence >= 0.9).count();
                let Ok(mut said) = parse_caption(caption) else { continue };
                valid += 1;
                let mut seen: Vec<_> = read.iter().map(|r| r.unit).collect();
                seen.sort();
                said.sort();
                consistent += usize::from(said == seen);
                count.1 += usize::from(said == seen);
                units_said += said.len();
                units_right += said.iter().filter(|u| seen.contains(u)).count();
                let said_layout: Vec<_> = said.iter().map(|u| (u.region, u.colour)).collect();
                let seen_layout: Vec<_> = seen.iter().map(|u| (u.region, u.colour)).collect();
                layout += usize::from(said_layout == seen_layout);
            }
        }
        let distinct = pairs.iter().map(|p| p.1).collect::<std::collections::HashSet<_>>().len();
        let pct = |a: usize, b: f64| if b > 0.0 { 100.0 * a as f64 / b } else { 0.0 };
        let by_digit_count: Vec<DigitCount> = by_count
            .iter()
            .enumerate()
            .map(|(digits, &(all, agree))| DigitCount {
                digits,
                share_pct: pct(all, n),
                consistency_pct: pct(agree, all as f64),
            })
            .collect();
        let digit_count_total_variation = 0.5
            * by_digit_count.iter().zip(DIGIT_COUNT_SHARES).map(|(c, q)| (c.share_pct / 100.0 - q).abs()).sum::<f64>();
        Scores {
            pairs: pairs.len(),
            validity_pct: pct(valid, n),
            consistency_pct: pct(consistent, n),
            unit_accuracy_pct: pct(units_right, units_said as f64),
            layout_colour_consistency_pct: pct(layout, n),
            fidelity_pct: pct(sure, lit as f64),
            distinct_captions_per_pair: distinct as f64 / n.max(1.0),
            by_digit_count,
            digit_count_total_variation,
            copied_captions_pct: None,
            frechet_distance: None,
            judge_test_digit_accuracy_pct: 100.0 * self.test_accuracy,
            features,
        }
    }

    /// The judge file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("version".to_string(), VERSION.to_string()),
            ("test_accuracy".to_string(), self.test_accuracy.to_string()),
        ]);
        save_weights(&self.classifier, metadata)
    }

    /// Reads a judge file; a truncated, foreign or wrong-version file is a named error.
    pub fn from_bytes(bytes: Vec<u8>, device: &Device) -> Result<Self, Error> {
        let bad = |why: String| Error::Judge(why);
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file ({e}); truncated or corrupted?")))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let field = |k: &str| meta.get(k).cloned().ok_or_else(|| bad(format!("no '{k}' in its metadata")));
        if field("format")? != FORMAT {
            return Err(bad(format!("format is not {FORMAT}")));
        }
        let version = field("version")?;
        if version != VERSION.to_string() {
            return Err(bad(format!("version {version}, but this build reads version {VERSION}")));
        }
        let test_accuracy = field("test_accuracy")?.parse().map_err(|_| bad("bad test_accuracy".into()))?;
        let mut classifier = DigitClassifier::new(device);
        load_weights(&mut classifier, bytes).map_err(|e| bad(e.to_string()))?;
        Ok(Self::new(classifier, test_accuracy, device))
    }
}
