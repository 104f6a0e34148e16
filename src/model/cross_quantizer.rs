//! Cross quantizer (paper §3.1): ONE codebook shared by both modalities quantizes all 72
//! joint-encoder outputs, so an image–caption pair becomes one unified code sequence.
//! Nearest-code lookup, straight-through gradients, codebook + commitment losses
//! (van den Oord et al. 2017). What keeps the codebook alive (EMA update, seeding, dead-code
//! restarts) is in [`crate::model::codebook_upkeep`].

use burn::module::{Param, RunningState};
use burn::prelude::*;

use crate::config::{Quantizer, Stage1Config};

#[derive(Module, Debug)]
pub struct CrossQuantizer {
    /// `[entries, dim]` (entries: `codebook.size`, twice that with separate codebooks)
    pub codebook: Param<Tensor<2>>,
    /// `[entries]`: moving average of how many vectors each code takes per step,
    /// for the EMA codebook update. Kept with the codebook so a resumed run continues
    /// the same averages.
    pub usage: RunningState<Tensor<1>>,
    /// Where the text positions and their codes start with separate codebooks (the
    /// baseline): `(image positions, codebook.size)`; `None` for the shared codebook.
    pub(crate) split: Option<(usize, usize)>,
}

/// What quantizing one batch gives.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// Codes in the forward pass, with the encoder's gradient in the backward pass
    /// (straight-through): `[batch, positions, code_dim]`.
    pub quantized: Tensor<3>,
    /// Chosen code indices, `[batch, positions]`.
    pub codes: Tensor<2, Int>,
    /// ‖sg(z) − e‖²: moves the codes toward the encoder outputs.
    pub codebook_loss: Tensor<1>,
    /// ‖z − sg(e)‖²: keeps the encoder near its codes (weighted by β in the total).
    pub commitment_loss: Tensor<1>,
    /// The encoder outputs that were quantized, detached (for the EMA codebook update).
    pub inputs: Tensor<3>,
}

impl CrossQuantizer {
    pub fn new(c: &Stage1Config, device: &Device) -> Self {
        // Uniform in ±1/K as in VQ-VAE; training re-seeds it from encoder outputs.
        let (rows, k) = (c.codebook_entries(), c.codebook.size);
        let init = Tensor::random(
            [rows, c.codebook.dim],
            burn::tensor::Distribution::Uniform(-1.0 / k as f64, 1.0 / k as f64),
            device,
        );
        Self {
            codebook: Param::from_tensor(init),
            usage: RunningState::new(Tensor::zeros([rows], device)),
            split: matches!(c.quantizer, Quantizer::Separate).then(|| (c.image_positions(), k)),
        }
    }

    /// Index of the nearest code for each vector; with separate codebooks, image positions
    /// look among the image codes and text positions among the text codes.
    ///
    /// # Shapes
    /// - z: `[batch, positions, code_dim]` → `[batch, positions]`
    pub fn nearest(&self, z: Tensor<3>) -> Tensor<2, Int> {
        let codebook = self.codebook.val(); // [K, D]
        match self.split {
            None => nearest_in(z, codebook),
            Some((n, k)) => {
                let [_, positions, _] = z.dims();
                let image = nearest_in(z.clone().narrow(1, 0, n), codebook.clone().narrow(0, 0, k));
                let text = nearest_in(z.narrow(1, n, positions - n), codebook.narrow(0, k, k)) + k as i64;
                Tensor::cat(vec![image, text], 1)
            }
        }
    }

    /// Code vectors for indices: the decoders' only entry point (`codes → decode`).
    ///
    /// # Shapes
    /// - codes: `[batch, positions]` → `[batch, positions, code_dim]`
    pub fn lookup(&self, codes: Tensor<2, Int>) -> Tensor<3> {
        let [batch, positions] = codes.dims();
        let codebook = self.codebook.val();
        let dim = codebook.dims()[1];
        codebook.select(0, codes.reshape([batch * positions])).reshape([batch, positions, dim])
    }

    /// Quantizes with straight-through gradients: `z + sg(e − z)`.
    pub fn forward(&self, z: Tensor<3>) -> Quantized {
        let codes = self.nearest(z.clone().detach());
        let chosen = self.lookup(codes.clone());
        let codebook_loss = (chosen.clone() - z.clone().detach()).powf_scalar(2.0).mean();
        let commitment_loss = (z.clone() - chosen.clone().detach()).powf_scalar(2.0).mean();
        let quantized = z.clone() + (chosen - z.clone()).detach();
        Quantized { quantized, codes, codebook_loss, commitment_loss, inputs: z.detach() }
    }
}

/// Nearest row of `codebook` (`[K, D]`) for each vector of `z` (`[B, T, D]` → `[B, T]`), by
/// ‖z − e‖² = ‖z‖² + ‖e‖² − 2 z·e.
fn nearest_in(z: Tensor<3>, codebook: Tensor<2>) -> Tensor<2, Int> {
    let [batch, positions, dim] = z.dims();
    let flat = z.reshape([batch * positions, dim]); // [N, D]
    let distance = flat.clone().powf_scalar(2.0).sum_dim(1) // [N, 1]
        + codebook.clone().powf_scalar(2.0).sum_dim(1).reshape([1, -1]) // [1, K]
        - flat.matmul(codebook.transpose()) * 2.0; // [N, K]
    distance.argmin(1).reshape([batch, positions])
}
