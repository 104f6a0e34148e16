//! The page's CPU build with relaxed SIMD: the same wasm-bindgen class as `mxq-web`
//! (re-exported, so its exports are this cdylib's), its sampling kernels built with relaxed
//! SIMD's fused multiply-add. A browser without relaxed SIMD cannot compile this module, so
//! the worker fetches it only where `WebAssembly.validate` accepts a relaxed-SIMD
//! instruction, and the plain CPU build otherwise. A thin crate rather than a feature of
//! `mxq-web` so that trunk builds the two wasm files under their own names.

pub use mxq_web::*;
