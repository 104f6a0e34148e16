//! The page's WebGPU build: the same wasm-bindgen class as `mxq-web` (re-exported, so its
//! exports are this cdylib's), built with burn's WebGPU backend. A thin crate rather than a
//! feature of `mxq-web` so that trunk builds the two wasm files under their own names.

pub use mxq_web::*;
