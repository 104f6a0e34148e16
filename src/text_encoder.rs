//! Text encoder (paper §3.1): token embeddings, then unpadded 1-D convolutions that shrink
//! the caption (64 tokens, kernel 15, four layers) to 8 positions, then a 1×1 conv to the
//! code width. Channels grow linearly from the embedding width to 4×, as in the authors' code.

use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{Embedding, EmbeddingConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::config::Stage1Config;

/// `layers + 1` channel widths from `embed` to `4 × embed` (numpy's linspace, truncated).
pub fn text_channels(embed: usize, layers: usize) -> Vec<usize> {
    (0..=layers).map(|i| embed + (3 * embed * i) / layers).collect()
}

#[derive(Module, Debug)]
pub struct TextEncoder {
    embedding: Embedding,
    convs: Vec<Conv1d>,
    to_code: Conv1d,
}

impl TextEncoder {
    pub fn new(c: &Stage1Config, device: &Device) -> Self {
        let ch = text_channels(c.text_embed, c.text_layers);
        Self {
            embedding: EmbeddingConfig::new(c.vocab_size, c.text_embed).init(device),
            convs: ch.windows(2).map(|w| Conv1dConfig::new(w[0], w[1], c.text_kernel).init(device)).collect(),
            to_code: Conv1dConfig::new(*ch.last().unwrap(), c.code_dim, 1).init(device),
        }
    }

    /// # Shapes
    /// - tokens: `[batch, token_length]`
    /// - output: `[batch, text_positions, code_dim]`
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let x = self.embedding.forward(tokens).swap_dims(1, 2); // [B, E, L]
        let x = self.convs.iter().fold(x, |x, conv| relu(conv.forward(x))); // [B, 4E, 8]
        self.to_code.forward(x).swap_dims(1, 2) // [B, 8, D]
    }
}
