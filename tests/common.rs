//! Shared helpers of the integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::PathBuf;

use mxq::data::caption_mnist::{CaptionMnist, Split};
use mxq::data::{Digits, Pair};
use mxq::tokenizer::CaptionTokenizer;

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
