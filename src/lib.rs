//! mxq — MXQ-VAE (Lee, Park, Lee, Choi; BMVC 2022, arXiv 2204.07537) in Rust on burn:
//! unconditional generation of image–caption pairs through one shared code space.
//!
//! Data flows `pair → encode → codes → decode → pair`:
//! stage 1 ([`mxq_vae::MxqVae`]) turns a pair into 72 codes of one shared codebook and back;
//! stage 2 ([`prior::Prior`]) learns to write new code sequences, which [`sampler`] draws and
//! the decoders turn into new pairs. [`bundle`] ships the decode half and the prior as int8.

pub mod bundle;
pub mod config;
pub mod cross_maps;
pub mod cross_quantizer;
pub mod data;
pub mod decoders;
pub mod digit_classifier;
pub mod error;
pub mod frechet;
pub mod generate;
pub mod image_encoder;
pub mod joint_encoder;
pub mod judge;
pub mod masking;
pub mod mxq_vae;
pub mod prior;
pub mod reconstruction;
pub mod residual;
pub mod rng;
pub mod sampler;
pub mod sampling_kernels;
pub mod text_encoder;
pub mod tokenizer;
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
