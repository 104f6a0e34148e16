//! The two decoders (paper §3.1): a CNN that rebuilds the 64×64 image from the 8×8 image
//! latents, and a 1-D conv decoder that spreads the 8 text latents over the 64 token
//! positions with one dense map (see [`crate::model::text_encoder`] for why) and rebuilds the token
//! logits with length-preserving convs. Both mirror their encoders.

use burn::nn::conv::{Conv1d, Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::config::Stage1Config;
use crate::model::residual::ResidualStack;
use crate::model::text_encoder::same_conv;

#[derive(Module, Debug)]
pub struct ImageDecoder {
    trunk_in: Conv2d,
    trunk: ResidualStack,
    up: Vec<ConvTranspose2d>,
}

impl ImageDecoder {
    pub fn new(c: &Stage1Config, device: &Device) -> Self {
        let i = &c.image;
        let [c0, c1, _] = i.down_channels;
        let widths = [i.hidden, c1, c0, 3];
        Self {
            trunk_in: Conv2dConfig::new([c.codebook.dim, i.hidden], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            trunk: ResidualStack::new(i.hidden, i.res_hidden, i.res_blocks, device),
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
    /// `text_positions × code_dim` → `token_length × text_embed`
    to_tokens: Linear,
    convs: Vec<Conv1d>,
    to_vocab: Linear,
    token_length: usize,
}

impl TextDecoder {
    pub fn new(c: &Stage1Config, device: &Device) -> Self {
        let (t, e) = (&c.text, c.text.embed);
        Self {
            to_tokens: LinearConfig::new(t.positions * c.codebook.dim, t.token_length * e).init(device),
            convs: (0..t.layers).map(|_| same_conv(e, e, t.kernel, device)).collect(),
            to_vocab: LinearConfig::new(e, t.vocab_size).init(device),
            token_length: t.token_length,
        }
    }

    /// # Shapes
    /// - latents: `[batch, code_dim, 8]`
    /// - output: token logits `[batch, token_length, vocab]`
    pub fn forward(&self, latents: Tensor<3>) -> Tensor<3> {
        let [batch, dim, positions] = latents.dims();
        let x = latents.swap_dims(1, 2).reshape([batch, positions * dim]); // [B, 8·D]
        let x = relu(self.to_tokens.forward(x)).reshape([batch as i32, self.token_length as i32, -1]); // [B, L, E]
        let x = self.convs.iter().fold(x.swap_dims(1, 2), |x, conv| x.clone() + relu(conv.forward(x))); // [B, E, L]
        self.to_vocab.forward(x.swap_dims(1, 2)) // [B, L, V]
    }
}
