//! The browser demo of mxq (WebGPU first, CPU fallback) lands with the browser issue.
//! It will hold no model code: it loads the bundle that `mxq export` writes with
//! `mxq::bundle::load` and drives `mxq::sampler::Sampling` and the core crate's decoders,
//! reading each step's logits back asynchronously.

pub use mxq::bundle;
