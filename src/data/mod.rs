//! Data: the MNIST IDX reader, the Caption MNIST generator and the pairs layout on disk.

pub mod batch;
pub mod caption_mnist;
pub mod idx;
pub mod pairs;

pub use caption_mnist::{CaptionMnist, CaptionPair, parse_caption};
pub use idx::Digits;
pub use pairs::{Pair, read_pairs, write_pairs};
