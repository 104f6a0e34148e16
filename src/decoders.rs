//! The two decoders (paper §3.1): a CNN that rebuilds the 64×64 image from the 8×8 image
//! latents, and 1-D transposed convolutions that rebuild the caption's token logits from
//! the 8 text latents. Both mirror their encoders.

use burn::nn::conv::{
    Conv1d, Conv1dConfig, Conv2d, Conv2dConfig, ConvTranspose1d, ConvTranspose1dConfig, ConvTranspose2d,
    ConvTranspose2dConfig,
};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::config::Stage1Config;
use crate::residual::ResidualStack;
use crate::text_encoder::text_channels;

#[derive(Module, Debug)]
pub struct ImageDecoder {
    trunk_in: Conv2d,
    trunk: ResidualStack,
    up: Vec<ConvTranspose2d>,
}

impl ImageDecoder {
    pub fn new(c: &Stage1Config, device: &Device) -> Self {
        let [c0, c1, _] = c.down_channels;
        let widths = [c.hidden, c1, c0, 3];
        Self {
            trunk_in: Conv2dConfig::new([c.code_dim, c.hidden], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            trunk: ResidualStack::new(c.hidden, c.res_hidden, c.res_blocks, device),
            up: widths
                .windows(2)
                .map(|w| {
                    ConvTranspose2dConfig::new([w[0], w[1]], [4, 4])
                        .with_stride([2, 2])
                        .with_padding([1, 1])
                        .init(device)
                })
                .collect(),
        }
    }

    /// # Shapes
    /// - latents: `[batch, code_dim, 8, 8]`
    /// - output: `[batch, 3, 64, 64]`, values ≈ [-1, 1]
    pub fn forward(&self, latents: Tensor<4>) -> Tensor<4> {
        let mut x = self.trunk.forward(self.trunk_in.forward(latents)); // [B, H, 8, 8]
        for (i, up) in self.up.iter().enumerate() {
            x = up.forward(x); // doubles the side
            if i + 1 < self.up.len() {
                x = relu(x);
            }
        }
        x
    }
}

#[derive(Module, Debug)]
pub struct TextDecoder {
    up: Vec<ConvTranspose1d>,
    to_embed: Conv1d,
    to_vocab: Linear,
}

impl TextDecoder {
    pub fn new(c: &Stage1Config, device: &Device) -> Self {
        let enc = text_channels(c.text_embed, c.text_layers);
        // code_dim → 4E → … → enc[1]: the encoder's widths in reverse
        let mut widths = vec![c.code_dim];
        widths.extend(enc[1..].iter().rev());
        Self {
            up: widths
                .windows(2)
                .map(|w| ConvTranspose1dConfig::new([w[0], w[1]], c.text_kernel).init(device))
                .collect(),
            to_embed: Conv1dConfig::new(enc[1], c.text_embed, 1).init(device),
            to_vocab: LinearConfig::new(c.text_embed, c.vocab_size).init(device),
        }
    }

    /// # Shapes
    /// - latents: `[batch, code_dim, 8]`
    /// - output: token logits `[batch, token_length, vocab]`
    pub fn forward(&self, latents: Tensor<3>) -> Tensor<3> {
        let x = self.up.iter().fold(latents, |x, up| relu(up.forward(x))); // [B, E', L]
        let x = self.to_embed.forward(x).swap_dims(1, 2); // [B, L, E]
        self.to_vocab.forward(x) // [B, L, V]
    }
}
