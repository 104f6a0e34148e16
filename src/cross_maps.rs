//! Cross maps (paper §3.1): learned linear maps over the *sequence* axis of the 72 codes,
//! so each decoder's latents mix every code of the pair — image latents from text codes
//! too, and the other way round. 72 → 64 for the image grid; 72 → 32 → 8 for the text.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::config::Stage1Config;

#[derive(Module, Debug)]
pub struct CrossMaps {
    image: Linear,
    text_in: Linear,
    text_out: Linear,
}

impl CrossMaps {
    pub fn new(c: &Stage1Config, device: &Device) -> Self {
        let n = c.positions();
        Self {
            image: LinearConfig::new(n, c.image_positions()).init(device),
            text_in: LinearConfig::new(n, c.text_cross_hidden).init(device),
            text_out: LinearConfig::new(c.text_cross_hidden, c.text_positions()).init(device),
        }
    }

    /// # Shapes
    /// - codes: `[batch, 72, code_dim]` (quantized)
    /// - output: image latents `[batch, code_dim, 8, 8]`, text latents `[batch, code_dim, 8]`
    pub fn forward(&self, codes: Tensor<3>) -> (Tensor<4>, Tensor<3>) {
        let [batch, _, dim] = codes.dims();
        let t = codes.swap_dims(1, 2); // [B, D, 72]: linear maps act on the sequence axis
        let image = self.image.forward(t.clone()); // [B, D, 64]
        let grid = (image.dims()[2] as f64).sqrt() as usize;
        let image = image.reshape([batch, dim, grid, grid]); // [B, D, 8, 8]
        let text = self.text_out.forward(relu(self.text_in.forward(t))); // [B, D, 8]
        (image, text)
    }
}
