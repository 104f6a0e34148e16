//! The two decoders (paper §3.1): a CNN that rebuilds the 64×64 image from the 8×8 image
//! latents, and a 1-D conv decoder that spreads the 8 text latents over the 64 token
//! positions with one dense map (see [`crate::model::text_encoder`] for why) and rebuilds the token
//! logits with length-preserving convs. Both mirror their encoders.
//!
//! The dense map is most of the bundle's decoder bytes (16 × 64 → 64 × 64 values in the demo:
//! 4.2 M weights), and a low-rank one reads nearly the same: with `text.map_rank` it is two
//! factors, started from the dense map's best approximation of that rank
//! ([`TextDecoder::factored`]) and fine-tuned (`mxq train decoders --text-map-rank`).

use burn::module::Param;
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
    /// `text_positions × code_dim` → `map_rank`, no bias: the low-rank map's first factor
    to_rank: Option<Linear>,
    /// `map_rank` (or, dense, `text_positions × code_dim`) → `token_length × text_embed`
    to_tokens: Linear,
    convs: Vec<Conv1d>,
    to_vocab: Linear,
    token_length: usize,
}

impl TextDecoder {
    pub fn new(c: &Stage1Config, device: &Device) -> Self {
        let (t, e) = (&c.text, c.text.embed);
        let latents = t.positions * c.codebook.dim;
        Self {
            to_rank: t.map_rank.map(|r| LinearConfig::new(latents, r).with_bias(false).init(device)),
            to_tokens: LinearConfig::new(t.map_rank.unwrap_or(latents), t.token_length * e).init(device),
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
        let x = match &self.to_rank {
            Some(to_rank) => to_rank.forward(x), // [B, rank]
            None => x,
        };
        let x = relu(self.to_tokens.forward(x)).reshape([batch as i32, self.token_length as i32, -1]); // [B, L, E]
        let x = self.convs.iter().fold(x.swap_dims(1, 2), |x, conv| x.clone() + relu(conv.forward(x))); // [B, E, L]
        self.to_vocab.forward(x.swap_dims(1, 2)) // [B, L, V]
    }

    /// The dense map replaced by its best approximation of rank `rank` (Eckart–Young): with
    /// `W = U·S·Vᵀ`, the factors `U_r` and `U_rᵀ·W`, `U_r` the leading eigenvectors of `W·Wᵀ`
    /// (nalgebra's symmetric eigendecomposition, in f64). What `mxq train decoders
    /// --text-map-rank` starts from: it reads nearly as the dense map did. Reads the weights
    /// back from the device (native only); a map already of rank `rank` stays as it is, one of
    /// another rank is an error.
    pub fn factored(mut self, rank: usize) -> Result<Self, crate::Error> {
        match self.to_rank.as_ref().map(|f| f.weight.dims()[1]) {
            Some(r) if r == rank => return Ok(self),
            Some(r) => return Err(crate::Error::Config(format!("the text decoder's map is of rank {r}, not {rank}"))),
            None => {}
        }
        let w = self.to_tokens.weight.val().detach(); // [in, out]
        let ([d_in, d_out], device) = (w.dims(), w.device());
        if !(1..=d_in.min(d_out)).contains(&rank) {
            return Err(crate::Error::Config(format!("text map rank {rank}: from 1 to {}", d_in.min(d_out))));
        }
        let gram: Vec<f32> = w.clone().matmul(w.clone().transpose()).into_data().iter::<f32>().collect();
        let eigen =
            nalgebra::SymmetricEigen::new(nalgebra::DMatrix::from_iterator(d_in, d_in, gram.iter().map(|&v| v as f64)));
        let mut order: Vec<usize> = (0..d_in).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        let u: Vec<f32> = (0..d_in)
            .flat_map(|i| order[..rank].iter().map(move |&k| (i, k)))
            .map(|(i, k)| eigen.eigenvectors[(i, k)] as f32)
            .collect();
        let u = Tensor::<2>::from_data(TensorData::new(u, [d_in, rank]), &device); // [in, rank]
        let mut to_rank = LinearConfig::new(d_in, rank).with_bias(false).init(&device);
        to_rank.weight = Param::from_tensor(u.clone());
        self.to_tokens.weight = Param::from_tensor(u.transpose().matmul(w)); // [rank, out]
        self.to_rank = Some(to_rank);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MxqConfig;
    use burn::tensor::Distribution;

    #[test]
    fn a_map_of_rank_r_factored_at_r_reads_the_same_and_below_r_does_not() {
        let device = crate::cpu();
        let c = MxqConfig::tiny().stage1;
        let (d_in, d_out) = (c.text.positions * c.codebook.dim, c.text.token_length * c.text.embed);
        // seeded factors (the layers' own init is the device's draw: shared by both sides)
        let random = |shape: [usize; 2]| {
            let mut rng = crate::rng::Rng::new(shape[0] as u64, crate::rng::Stream::Test(shape[1] as u64));
            let values = (0..shape[0] * shape[1]).map(|_| rng.unit_f32() - 0.5).collect();
            Tensor::<2>::from_data(TensorData::new(values, shape), &device)
        };
        let dense = || {
            let mut decoder = TextDecoder::new(&c, &device);
            decoder.to_tokens.weight = Param::from_tensor(random([d_in, 3]).matmul(random([3, d_out])));
            decoder
        };
        let latents =
            Tensor::<3>::random([5, c.codebook.dim, c.text.positions], Distribution::Normal(0.0, 1.0), &device);
        let a = dense();
        let (w, logits) = (a.to_tokens.weight.val(), a.forward(latents.clone()));
        let differs = |rank: usize| {
            let mut b = TextDecoder::new(&c, &device);
            b.to_tokens.weight = Param::from_tensor(w.clone());
            b.to_vocab = a.to_vocab.clone();
            b.convs = a.convs.clone();
            b.to_tokens.bias = a.to_tokens.bias.clone();
            let b = b.factored(rank).unwrap();
            assert_eq!(b.to_tokens.weight.dims(), [rank, d_out]);
            let scale = logits.clone().abs().max().into_scalar::<f32>();
            (b.forward(latents.clone()) - logits.clone()).abs().max().into_scalar::<f32>() / scale
        };
        assert!(differs(3) < 1e-4, "rank 3 of a rank-3 map: {}", differs(3));
        assert!(differs(2) > 1e-2, "rank 2 of a rank-3 map: {}", differs(2));
        let once = a.factored(3).unwrap();
        let twice = once.clone().factored(3).unwrap();
        assert_eq!(twice.to_tokens.weight.val().to_data(), once.to_tokens.weight.val().to_data(), "kept as it is");
        assert!(once.factored(2).is_err_and(|e| e.to_string().contains("of rank 3, not 2")));
        assert!(dense().factored(d_in.min(d_out) + 1).is_err());
    }
}
