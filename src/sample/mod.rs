//! Sampling: the prior's code sequences drawn with temperature, top-k and top-p from a seed
//! ([`sampler`]), pairs generated from a bundle ([`generate`]: `codes → decode → pair`), and
//! images drawn for a given caption ([`conditional`]: `caption → codes → pair`), and each
//! pair the best of several candidates by a second prior ([`rerank`]).
//! Imports the layers below it (data, model, kernels, bundle).

pub mod conditional;
pub mod generate;
pub mod rerank;
pub mod sampler;

pub use generate::{GeneratedPair, MAX_BATCH, MAX_COUNT, batches, check_counts};
pub use sampler::{DEFAULT_GUIDANCE, DEFAULT_SECOND_TEMPERATURE, DEFAULT_TEMPERATURE, SampleOptions, Sampling};
