//! The judge's digit classifier (`docs/CAPTION_MNIST.md`): a small CNN that reads the numeral in
//! one 32×32 region. Trained on the train digits only, each pasted as the generator pastes
//! it (offset 2 ± 2 in its region) at a random brightness, never on generated images.
//! Its penultimate features are the space of the Fréchet distance.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};

use crate::data::grammar::{Region, SIDE};
use crate::data::idx::Digits;

/// Side of a region, the classifier's input.
pub const REGION: usize = 32;
/// Width of the penultimate features.
pub const FEATURES: usize = 128;

#[derive(Module, Debug)]
pub struct DigitClassifier {
    convs: Vec<Conv2d>,
    norms: Vec<BatchNorm>,
    pool: MaxPool2d,
    /// Active in training only (burn drops nothing on a non-autodiff device).
    dropout: Dropout,
    hidden: Linear,
    out: Linear,
}

impl DigitClassifier {
    pub fn new(device: &Device) -> Self {
        let conv = |a, b| Conv2dConfig::new([a, b], [3, 3]).with_padding(PaddingConfig2d::Same).init(device);
        Self {
            convs: vec![conv(1, 32), conv(32, 32), conv(32, 64), conv(64, 64)],
            norms: [32, 32, 64, 64].map(|c| BatchNormConfig::new(c).init(device)).into(),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            dropout: DropoutConfig::new(0.3).init(),
            hidden: LinearConfig::new(64 * 8 * 8, FEATURES).init(device),
            out: LinearConfig::new(FEATURES, 10).init(device),
        }
    }

    /// # Shapes
    /// - regions: `[batch, 1, 32, 32]`, brightness in [0, 1]
    /// - output: logits `[batch, 10]` and penultimate features `[batch, 128]`
    pub fn forward(&self, regions: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let [batch, ..] = regions.dims();
        let mut x = regions;
        for (i, (conv, norm)) in self.convs.iter().zip(&self.norms).enumerate() {
            x = relu(norm.forward(conv.forward(x)));
            if i % 2 == 1 {
                x = self.pool.forward(x); // 32 → 16 → 8
            }
        }
        let features = relu(self.hidden.forward(self.dropout.forward(x.reshape([batch, 64 * 8 * 8]))));
        (self.out.forward(self.dropout.forward(features.clone())), features)
    }

    /// The most likely digit of each region, its probability, and the features. The
    /// probabilities are averaged over the region and its four one-pixel shifts, which makes
    /// the call steadier on glyphs a little off the generator's grid.
    pub fn classify(&self, regions: &[Vec<f32>], device: &Device) -> (Vec<(u8, f32)>, Vec<Vec<f32>>) {
        if regions.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let n = regions.len();
        let views: Vec<Vec<f32>> =
            SHIFTS.iter().flat_map(|&(dx, dy)| regions.iter().map(move |r| shifted(r, dx, dy))).collect();
        let (logits, features) = self.forward(regions_tensor(&views, device));
        let p = softmax(logits, 1).into_data().try_into_vec_as::<f32>().expect("f32 probabilities");
        let calls = (0..n)
            .map(|i| {
                let mean: Vec<f32> = (0..10)
                    .map(|d| (0..SHIFTS.len()).map(|v| p[(v * n + i) * 10 + d]).sum::<f32>() / SHIFTS.len() as f32)
                    .collect();
                let (d, &q) = mean.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).expect("10 classes");
                (d as u8, q)
            })
            .collect();
        let f = features.into_data().try_into_vec_as::<f32>().expect("f32 features");
        (calls, f.chunks(FEATURES).take(n).map(<[f32]>::to_vec).collect())
    }
}

/// The views `classify` averages over: the region itself first, then one-pixel shifts.
const SHIFTS: [(isize, isize); 5] = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)];

/// `region` moved by (dx, dy), zeros shifted in.
fn shifted(region: &[f32], dx: isize, dy: isize) -> Vec<f32> {
    let side = REGION as isize;
    (0..side)
        .flat_map(|y| (0..side).map(move |x| (x - dx, y - dy)))
        .map(
            |(x, y)| {
                if (0..side).contains(&x) && (0..side).contains(&y) { region[(y * side + x) as usize] } else { 0.0 }
            },
        )
        .collect()
}

fn regions_tensor(regions: &[Vec<f32>], device: &Device) -> Tensor<4> {
    let flat: Vec<f32> = regions.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [regions.len(), 1, REGION, REGION]), device)
}

/// Brightness (brightest channel / 255) of `region` of a 64×64 RGB image: what the
/// classifier reads, the same for every colour of the spec.
pub fn region_pixels(image: &[u8], region: Region) -> Vec<f32> {
    let (ox, oy) = region.origin();
    (oy..oy + REGION)
        .flat_map(|y| (ox..ox + REGION).map(move |x| (x, y)))
        .map(|(x, y)| {
            let p = &image[(y * SIDE + x) * 3..(y * SIDE + x) * 3 + 3];
            p.iter().copied().max().unwrap_or(0) as f32 / 255.0
        })
        .collect()
}

/// Glyph `i` placed in a region the way the generator places it, at `brightness`.
fn placed(digits: &Digits, i: usize, dx: usize, dy: usize, brightness: f32) -> Vec<f32> {
    let mut out = vec![0f32; REGION * REGION];
    let glyph = digits.glyph(i);
    for r in 0..digits.rows {
        for c in 0..digits.cols {
            out[(dy + r) * REGION + dx + c] = glyph[r * digits.cols + c] as f32 / 255.0 * brightness;
        }
    }
    out
}

/// Share of `digits` classified right, each at the generator's centre offset and full
/// brightness.
pub fn accuracy(model: &DigitClassifier, digits: &Digits, device: &Device) -> f64 {
    let ids: Vec<usize> = (0..digits.len()).collect();
    let right: usize = ids
        .chunks(256)
        .map(|chunk| {
            let regions: Vec<Vec<f32>> = chunk.iter().map(|&i| placed(digits, i, 2, 2, 1.0)).collect();
            let (calls, _) = model.classify(&regions, device);
            chunk.iter().zip(calls).filter(|(i, (d, _))| digits.labels[**i] == *d).count()
        })
        .sum();
    right as f64 / digits.len().max(1) as f64
}

/// Trains the classifier on `digits` for `epochs` (batches of 64, AdamW 1e-3), each digit
/// at a random offset of the generator's range and brightness in [0.5, 1]. A short plain
/// loop (minutes): no checkpoints, since retraining is cheaper than resuming.
/// `device` must be an autodiff device; `on_epoch(epoch, mean loss)` reports progress.
#[cfg(feature = "train")]
pub fn train(
    digits: &Digits,
    epochs: usize,
    seed: u64,
    device: &Device,
    on_epoch: &mut dyn FnMut(usize, f64),
) -> DigitClassifier {
    use crate::rng::{Rng, Stream};
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
    device.seed(seed);
    let mut model = DigitClassifier::new(device);
    let mut optim: ModuleOptimizer = AdamWConfig::new().with_weight_decay(1e-4).init();
    let ce = CrossEntropyLossConfig::new().init(device);
    for epoch in 0..epochs {
        let mut rng = Rng::new(seed, Stream::JudgeEpoch(epoch as u64));
        let mut order: Vec<usize> = (0..digits.len()).collect();
        rng.shuffle(&mut order);
        let lr = 1e-3 * if epoch + 2 >= epochs { 0.1 } else { 1.0 };
        let (mut sum, mut n) = (0.0, 0);
        for chunk in order.chunks_exact(64) {
            let regions: Vec<Vec<f32>> = chunk
                .iter()
                .map(|&i| placed(digits, i, rng.below(5), rng.below(5), 0.5 + rng.below(51) as f32 / 100.0))
                .collect();
            let labels: Vec<i64> = chunk.iter().map(|&i| digits.labels[i] as i64).collect();
            let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [chunk.len()]), device);
            let loss = ce.forward(model.forward(regions_tensor(&regions, device)).0, labels);
            sum += loss.clone().into_scalar::<f32>() as f64;
            n += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
        }
        on_epoch(epoch, sum / n.max(1) as f64);
    }
    model.valid()
}
