//! Data: the MNIST IDX reader, the Caption MNIST generator and its caption grammar, the
//! pairs folder layout on disk, the tokenizer, input masking and batching. Imports only
//! the base modules (config, error, rng).

pub mod batch;
pub mod caption_mnist;
pub mod grammar;
pub mod idx;
pub mod masking;
pub mod pairs;
pub mod tokenizer;

pub use batch::{Batch, PairSet};
pub use caption_mnist::{CaptionMnist, CaptionPair};
pub use grammar::parse_caption;
pub use idx::Digits;
pub use pairs::{Fitted, Pair, PairWriter, read_pairs, read_pairs_fitted};
