//! Image encoder (paper §3.1): three stride-2 convolutions (64 → 8), a 3×3 conv and a
//! residual trunk, then a 1×1 conv to the code width — one feature per cell of the 8×8 grid.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::config::Stage1Config;
use crate::model::residual::ResidualStack;

#[derive(Module, Debug)]
pub struct ImageEncoder {
    down: Vec<Conv2d>,
    trunk_in: Conv2d,
    trunk: ResidualStack,
    to_code: Conv2d,
}

impl ImageEncoder {
    pub fn new(c: &Stage1Config, device: &Device) -> Self {
        let i = &c.image;
        let mut prev = 3;
        let down = c
            .image
            .down_channels
            .iter()
            .map(|&ch| {
                let conv = Conv2dConfig::new([prev, ch], [4, 4])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device);
                prev = ch;
                conv
            })
            .collect();
        Self {
            down,
            trunk_in: Conv2dConfig::new([prev, i.hidden], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            trunk: ResidualStack::new(i.hidden, i.res_hidden, i.res_blocks, device),
            to_code: Conv2dConfig::new([i.hidden, c.codebook.dim], [1, 1]).init(device),
        }
    }

    /// # Shapes
    /// - images: `[batch, 3, 64, 64]`, values in [-1, 1]
    /// - output: `[batch, 64, code_dim]`, the 8×8 grid in row-major order
    pub fn forward(&self, images: Tensor<4>) -> Tensor<3> {
        let x = self.down.iter().fold(images, |x, conv| relu(conv.forward(x))); // [B, C, 8, 8]
        let x = self.to_code.forward(self.trunk.forward(self.trunk_in.forward(x))); // [B, D, 8, 8]
        let [batch, dim, h, w] = x.dims();
        x.reshape([batch, dim, h * w]).swap_dims(1, 2) // [B, 64, D]
    }
}
