//! mxq — MXQ-VAE (Lee, Park, Lee, Choi; BMVC 2022, arXiv 2204.07537) in Rust on burn:
//! unconditional generation of image–caption pairs through one shared code space.
//!
//! Data flows `pair → encode → codes → decode → pair`:
//! stage 1 ([`model::mxq_vae::MxqVae`]) turns a pair into 72 codes of one shared codebook and
//! back; stage 2 ([`model::prior::Prior`]) learns to write new code sequences, which
//! [`sample`] draws and the decoders turn into new pairs. [`bundle`] ships the decode half
//! and the prior as int8.
//!
//! One folder per layer, each importing only the layers before it (a test checks this):
//! 1. the base: [`config`], [`device`], [`error`], [`rng`], [`weights`];
//! 2. [`data`]: Caption MNIST, pairs folders, tokenizer, masking, batching;
//! 3. [`model`]: the modules of both stages;
//! 4. [`kernels`]: the CPU sampling kernels and the packed prior;
//! 5. [`bundle`]: the single-file format the page and the CLI load;
//! 6. [`sample`]: drawing codes and generating pairs;
//! 7. [`eval`] and [`train`], which do not import each other.

pub mod config;
pub mod device;
pub mod error;
pub mod rng;
pub mod weights;

pub mod data;

pub mod model;

pub mod kernels;

pub mod bundle;

pub mod sample;

pub mod eval;
#[cfg(feature = "train")]
pub mod train;

pub use config::MxqConfig;
pub use error::Error;

/// The CPU device this build trains and runs on natively.
#[cfg(feature = "flex")]
pub fn cpu() -> burn::prelude::Device {
    burn::prelude::Device::flex()
}

/// Runs `f` on a thread of the CPU backend's pool (natively; elsewhere just runs it).
/// burn-flex's and the sampling kernels' parallel ops then fork from a pool worker instead of
/// each handing its job to the pool and putting the caller to sleep until it is done:
/// measured, a third of a demo 16-pair sample went to those hand-offs.
pub fn on_cpu_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "native")]
    {
        rayon::scope(|_| f())
    }
    #[cfg(not(feature = "native"))]
    {
        f()
    }
}
