//! Cross quantizer (paper §3.1): ONE codebook shared by both modalities quantizes all 72
//! joint-encoder outputs, so an image–caption pair becomes one unified code sequence.
//! Nearest-code lookup, straight-through gradients, codebook + commitment losses
//! (van den Oord et al. 2017), and the tools that keep the codebook alive.

use burn::module::{Module, Param, RunningState};
use burn::prelude::*;

use crate::config::Stage1Config;

#[derive(Module, Debug)]
pub struct CrossQuantizer {
    /// `[codebook_size, code_dim]`
    pub codebook: Param<Tensor<2>>,
    /// `[codebook_size]`: moving average of how many vectors each code takes per step,
    /// for the EMA codebook update. Kept with the codebook so a resumed run continues
    /// the same averages.
    pub usage: RunningState<Tensor<1>>,
    /// Where the text positions and their codes start with separate codebooks (the
    /// baseline): `(image positions, codebook_size)`; `None` for the shared codebook.
    split: Option<(usize, usize)>,
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
        let k = c.codebook_size as f64;
        let init =
            Tensor::random([c.codes(), c.code_dim], burn::tensor::Distribution::Uniform(-1.0 / k, 1.0 / k), device);
        Self {
            codebook: Param::from_tensor(init),
            usage: RunningState::new(Tensor::zeros([c.codes()], device)),
            split: c.separate_codebooks.then(|| (c.image_positions(), c.codebook_size)),
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

    /// Moves each code to the moving average of the encoder outputs it takes (VQ-VAE-2,
    /// Razavi et al. 2019): `N ← γN + (1−γ)n`, `m ← γm + (1−γ)Σz`, `e = m / N` with
    /// `m = eN`. A gradient step moves a code by about the learning rate per step whatever
    /// the distance; measured here, that left the codes behind the encoder and stage 1
    /// reconstructed grey blurs for hundreds of steps. A code that takes nothing keeps its
    /// place (the `EPS` terms). The codebook must not also be trained by the optimizer.
    ///
    /// # Shapes
    /// - z: `[batch, positions, code_dim]` (detached encoder outputs), codes: `[batch, positions]`
    pub fn ema_update(self, z: Tensor<3>, codes: Tensor<2, Int>, decay: f64) -> Self {
        const EPS: f64 = 1e-5;
        let [batch, positions, dim] = z.dims();
        let k = self.codebook.dims()[0];
        let one_hot: Tensor<2> = codes.reshape([batch * positions]).float().one_hot(k); // [N, K]
        let taken = one_hot.clone().sum_dim(0).reshape([k]); // [K]
        let sums = one_hot.transpose().matmul(z.reshape([batch * positions, dim])); // [K, D]
        let count = self.usage.value_sync(); // [K]
        let new_count = count.clone() * decay + taken * (1.0 - decay);
        self.usage.update(new_count.clone().detach());
        let codebook = self.codebook.map(|cb| {
            let requires_grad = cb.is_require_grad();
            let old = cb.detach();
            let mass = old.clone() * (count * decay + EPS).reshape([k, 1]) + sums * (1.0 - decay);
            (mass / (new_count + EPS).reshape([k, 1])).detach().set_require_grad(requires_grad)
        });
        Self { codebook, usage: self.usage, split: self.split }
    }

    /// Overwrites the codes `ids` with `vectors` (`ids.len() × code_dim` values), keeping the
    /// parameter's identity so the optimizer state follows it. Used to seed the codebook
    /// from encoder outputs and to restart dead codes, which keeps the codebook from
    /// collapsing onto a few entries (Dhariwal et al. 2020, Jukebox).
    pub fn replace_codes(self, ids: &[usize], vectors: &[f32]) -> Self {
        if ids.is_empty() {
            return self;
        }
        let codebook = self.codebook.map(|cb| {
            let [k, d] = cb.dims();
            let device = cb.device();
            let requires_grad = cb.is_require_grad();
            let mut data = cb.into_data().try_into_vec_as::<f32>().expect("f32 codebook");
            for (n, &id) in ids.iter().enumerate() {
                data[id * d..(id + 1) * d].copy_from_slice(&vectors[n * d..(n + 1) * d]);
            }
            Tensor::from_data(TensorData::new(data, [k, d]), &device).set_require_grad(requires_grad)
        });
        Self { codebook, usage: self.usage, split: self.split }
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

/// Codebook usage over a set of codes: perplexity exp(H) of the code histogram, and how
/// many codes were used at all. A healthy codebook has both near its size.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CodebookUsage {
    pub perplexity: f64,
    pub live_codes: usize,
}

impl CodebookUsage {
    pub fn from_counts(counts: &[u64]) -> Self {
        let total: u64 = counts.iter().sum();
        let entropy: f64 = counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / total.max(1) as f64;
                -p * p.ln()
            })
            .sum();
        Self { perplexity: entropy.exp(), live_codes: counts.iter().filter(|&&c| c > 0).count() }
    }
}
