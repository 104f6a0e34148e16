//! Cross maps (paper §3.1): learned linear maps over the *sequence* axis of the 72 codes,
//! so each decoder's latents mix every code of the pair — image latents from text codes
//! too, and the other way round. 72 → 64 for the image grid; 72 → 32 → 8 for the text.
//!
//! Both start as the identity on their own modality's positions (and zero on the other's):
//! with the default random init every image latent begins as a random blend of all 72
//! codes, the decoder cannot tell where a code sits, and on a CPU budget stage 1 settled
//! into blurred class averages (test MSE 0.0140, red and blue merged). From the identity,
//! training starts at a plain VQ-VAE per modality and learns the cross-modal mixing.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::config::{CrossMapsConfig, Stage1Config};

#[derive(Module, Debug)]
pub struct CrossMaps {
    image: Linear,
    text_in: Linear,
    text_out: Linear,
}

/// Sets a linear layer's weights to `weight` (`[d_input, d_output]`, row-major) and its bias to 0.
fn set_linear(linear: Linear, weight: Vec<f32>, device: &Device) -> Linear {
    let [d_in, d_out] = linear.weight.dims();
    set_weight(linear, Tensor::from_data(TensorData::new(weight, [d_in, d_out]), device), device)
}

/// Sets a linear layer's weights to `weight` (`[d_input, d_output]`) and its bias to 0.
fn set_weight(mut linear: Linear, weight: Tensor<2>, device: &Device) -> Linear {
    let d_out = linear.weight.dims()[1];
    linear.weight = Param::from_tensor(weight.detach()); // a leaf, also on an autodiff device
    linear.bias = linear.bias.map(|_| Param::from_tensor(Tensor::zeros([d_out], device)));
    linear
}

/// What the decoders read: one latent per cell of the image grid and per text position.
#[derive(Debug, Clone)]
pub struct Latents {
    /// `[batch, code_dim, 8, 8]`
    pub image: Tensor<4>,
    /// `[batch, code_dim, 8]`
    pub text: Tensor<3>,
}

impl CrossMaps {
    pub fn new(c: &Stage1Config, maps: &CrossMapsConfig, device: &Device) -> Self {
        let (n, image_n, text_n, hidden) =
            (c.sequence_length(), c.image_positions(), c.text_positions(), maps.text_hidden);
        // image latent i ← image code i
        let mut image = vec![0f32; n * image_n];
        (0..image_n).for_each(|i| image[i * image_n + i] = 1.0);
        // text latent j ← relu(code) − relu(−code) of text code j, through hidden units j and
        // text_n + j; the other hidden units keep their random init and start unread.
        // The kept random weights stay on the device (mask and set, no read-back: WebGPU in a
        // browser cannot read synchronously, and the bundle builds this module there).
        let text_in = LinearConfig::new(n, hidden).init(device);
        let mut keep = vec![1f32; n * hidden];
        let mut w_in = vec![0f32; n * hidden];
        let mut w_out = vec![0f32; hidden * text_n];
        for j in 0..text_n {
            let code = image_n + j;
            for h in 0..hidden {
                keep[code * hidden + h] = 0.0;
            }
            for row in 0..n {
                keep[row * hidden + j] = 0.0;
                keep[row * hidden + text_n + j] = 0.0;
            }
            w_in[code * hidden + j] = 1.0;
            w_in[code * hidden + text_n + j] = -1.0;
            w_out[j * text_n + j] = 1.0;
            w_out[(text_n + j) * text_n + j] = -1.0;
        }
        let grid = |values: Vec<f32>| Tensor::<2>::from_data(TensorData::new(values, [n, hidden]), device);
        let w_in = text_in.weight.val() * grid(keep) + grid(w_in);
        Self {
            image: set_linear(LinearConfig::new(n, image_n).init(device), image, device),
            text_in: set_weight(text_in, w_in, device),
            text_out: set_linear(LinearConfig::new(hidden, text_n).init(device), w_out, device),
        }
    }

    /// # Shapes
    /// - codes: `[batch, 72, code_dim]` (quantized)
    /// - output: image latents `[batch, code_dim, 8, 8]`, text latents `[batch, code_dim, 8]`
    pub fn forward(&self, codes: Tensor<3>) -> Latents {
        let [batch, _, dim] = codes.dims();
        let t = codes.swap_dims(1, 2); // [B, D, 72]: linear maps act on the sequence axis
        let image = self.image.forward(t.clone()); // [B, D, 64]
        let grid = (image.dims()[2] as f64).sqrt() as usize;
        let image = image.reshape([batch, dim, grid, grid]); // [B, D, 8, 8]
        let text = self.text_out.forward(relu(self.text_in.forward(t))); // [B, D, 8]
        Latents { image, text }
    }
}

/// What the decoders read without cross maps (the separate-codebooks baseline): image
/// latent i = image code i, text latent j = text code j.
///
/// # Shapes
/// - codes: `[batch, 72, code_dim]` → image latents `[batch, code_dim, 8, 8]`, text latents `[batch, code_dim, 8]`
pub fn split(codes: Tensor<3>, image_positions: usize) -> Latents {
    let [batch, positions, dim] = codes.dims();
    let t = codes.swap_dims(1, 2); // [B, D, 72]
    let side = (image_positions as f64).sqrt() as usize;
    let image = t.clone().narrow(2, 0, image_positions).reshape([batch, dim, side, side]);
    Latents { image, text: t.narrow(2, image_positions, positions - image_positions) }
}
