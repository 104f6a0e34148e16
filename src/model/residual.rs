//! The residual trunk shared by the image encoder and decoder (VQ-VAE style, as in the
//! authors' code): ReLU → 3×3 conv → ReLU → 1×1 conv, added to the (ReLU'd) input.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// One residual block.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    conv3: Conv2d,
    conv1: Conv2d,
}

/// `blocks` residual blocks and a final ReLU.
#[derive(Module, Debug)]
pub struct ResidualStack {
    blocks: Vec<ResidualBlock>,
}

impl ResidualStack {
    pub fn new(channels: usize, hidden: usize, blocks: usize, device: &Device) -> Self {
        let blocks = (0..blocks)
            .map(|_| ResidualBlock {
                conv3: Conv2dConfig::new([channels, hidden], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .with_bias(false)
                    .init(device),
                conv1: Conv2dConfig::new([hidden, channels], [1, 1]).with_bias(false).init(device),
            })
            .collect();
        Self { blocks }
    }

    /// # Shapes
    /// - x: `[batch, channels, h, w]` → same shape
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.blocks.iter().fold(x, |x, b| {
            // The authors' block starts with an in-place ReLU, so the skip carries relu(x).
            let x = relu(x);
            x.clone() + b.conv1.forward(relu(b.conv3.forward(x)))
        });
        relu(x)
    }
}
