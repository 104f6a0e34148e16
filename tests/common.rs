//! Shared helpers of the integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mxq::MxqConfig;
use mxq::data::caption_mnist::{CaptionMnist, Split};
use mxq::data::tokenizer::CaptionTokenizer;
use mxq::data::{Digits, Pair, PairSet};
use mxq::train::{self, CodeSequences, Progress, StepReport, TrainOptions};

pub fn mnist_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

pub fn digits() -> Digits {
    Digits::load_dir(&mnist_dir()).expect("vendored MNIST loads")
}

/// `n` Caption MNIST training pairs.
pub fn pairs(n: usize) -> Vec<Pair> {
    let g = CaptionMnist::split(&digits(), Split::Train, None).unwrap();
    (0..n as u64).map(|i| g.pair(i)).map(|p| Pair { image: p.image, caption: p.caption }).collect()
}

pub fn tokenizer(pairs: &[Pair]) -> CaptionTokenizer {
    CaptionTokenizer::train(pairs.iter().map(|p| p.caption.as_str()), 128, 64).unwrap()
}

/// The shipped demo bundle's bytes.
pub fn shipped_bundle() -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo.mxq.safetensors"))
        .expect("assets/demo.mxq.safetensors is committed")
}

/// The demo bundle shipped before format 3 (the flat config, 8 text codes): kept to test
/// that old bundles still load.
pub fn version_2_bundle() -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo-v2.mxq.safetensors"))
        .expect("tests/fixtures/demo-v2.mxq.safetensors is committed")
}

/// Loads bundle bytes on the CPU with the default options.
pub fn load(bytes: &[u8]) -> mxq::bundle::Bundle {
    mxq::bundle::load(bytes, &mxq::cpu(), mxq::bundle::LoadOptions::default()).unwrap()
}

pub fn tiny_options(steps: usize) -> TrainOptions {
    TrainOptions {
        epochs: 100,
        batch_size: 8,
        learning_rate: 2e-3,
        warmup_steps: 1,
        max_steps: Some(steps),
        checkpoint_every: 1000,
        log_every: 5,
        ..TrainOptions::default()
    }
}

/// Trains (or resumes) stage 1 in `dir` on an autodiff CPU device; the report of each step.
pub fn stage1_steps(
    dir: &Path,
    cfg: &MxqConfig,
    tok: &CaptionTokenizer,
    data: &PairSet,
    options: &TrainOptions,
) -> Vec<StepReport> {
    let mut steps = Vec::new();
    let device = mxq::cpu().autodiff();
    let progress = Progress { on_step: &mut |r| steps.push(r.clone()), on_epoch: &mut |_| {} };
    train::train_stage1(dir, cfg, tok, data, options, &device, progress).unwrap();
    steps
}

/// Trains the prior in `dir` on `codes`; the loss of each step.
pub fn prior_losses(
    dir: &Path,
    cfg: &MxqConfig,
    tok: &CaptionTokenizer,
    sequences: &CodeSequences,
    options: &TrainOptions,
) -> Vec<f64> {
    let mut losses = Vec::new();
    let device = mxq::cpu().autodiff();
    let progress = Progress { on_step: &mut |r| losses.push(r.loss), on_epoch: &mut |_| {} };
    train::train_prior(dir, cfg, tok, sequences, options, None, &device, progress).unwrap();
    losses
}

/// 16 training pairs, a tokenizer and `cfg` with its vocabulary.
pub fn tiny_run(mut cfg: MxqConfig) -> (MxqConfig, CaptionTokenizer, PairSet) {
    let tok = tokenizer(&pairs(200));
    cfg.stage1.text.vocab_size = tok.vocab_size();
    let data = PairSet::new(&pairs(16), &tok);
    (cfg, tok, data)
}
