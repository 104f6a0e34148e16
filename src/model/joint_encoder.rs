//! Joint encoder (paper §3.1): one Transformer encoder (post-norm, BERT style) over the 72
//! concatenated image and text positions, so every position sees the whole pair before it
//! is quantized. Like the paper, no position or modality embedding is added: each position
//! keeps its place in the sequence, and the cross maps that follow are position-specific.

use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput};
use burn::prelude::*;

use crate::config::JointConfig;

#[derive(Module, Debug)]
pub struct JointEncoder {
    transformer: TransformerEncoder,
}

impl JointEncoder {
    /// A joint encoder over positions of width `code_dim`.
    pub fn new(c: &JointConfig, code_dim: usize, device: &Device) -> Self {
        let cfg = TransformerEncoderConfig::new(code_dim, c.ff, c.heads, c.layers)
            .with_dropout(c.dropout)
            .with_layer_norm_eps(1e-12);
        Self { transformer: cfg.init(device) }
    }

    /// # Shapes
    /// - image: `[batch, 64, code_dim]`, text: `[batch, 8, code_dim]`
    /// - output: `[batch, 72, code_dim]`
    pub fn forward(&self, image: Tensor<3>, text: Tensor<3>) -> Tensor<3> {
        let x = Tensor::cat(vec![image, text], 1); // [B, 72, D]
        self.transformer.forward(TransformerEncoderInput::new(x))
    }
}
