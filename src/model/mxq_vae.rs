//! Stage 1, assembled: `pair → encode → codes → decode → pair`.
//!
//! The encoder half (image and text encoders, joint encoder) is only needed to train and to
//! turn real pairs into codes; the decoder half (codebook, cross maps, decoders) is what the
//! bundle ships for generation.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;

use crate::config::Stage1Config;
use crate::data::batch::Batch;
use crate::model::cross_maps::{self, CrossMaps};
use crate::model::cross_quantizer::{CrossQuantizer, Quantized};
use crate::model::decoders::{ImageDecoder, TextDecoder};
use crate::model::image_encoder::ImageEncoder;
use crate::model::joint_encoder::JointEncoder;
use crate::model::text_encoder::TextEncoder;

/// Pair → continuous features, one per position of the unified sequence.
#[derive(Module, Debug)]
pub struct MxqEncoder {
    image: ImageEncoder,
    text: TextEncoder,
    /// `None` in the "no joint encoder" ablation.
    joint: Option<JointEncoder>,
}

/// Codes → pair: the shared codebook, the cross maps and both decoders.
#[derive(Module, Debug)]
pub struct MxqDecoder {
    pub quantizer: CrossQuantizer,
    /// `None` with separate codebooks: each decoder then reads its own modality's codes.
    cross_maps: Option<CrossMaps>,
    /// Image codes per pair (64): where the text codes start.
    image_positions: usize,
    image: ImageDecoder,
    text: TextDecoder,
}

/// The whole stage-1 model.
#[derive(Module, Debug)]
pub struct MxqVae {
    pub encoder: MxqEncoder,
    pub decoder: MxqDecoder,
}

/// The encode half alone, `pair → codes`: the encoders and the shared codebook their
/// features are quantized to — all the conditional modes need of stage 1 (an encoder file,
/// `mxq export --encoder`, half a stage-1 file's bytes).
#[derive(Module, Debug)]
pub struct MxqCoder {
    pub encoder: MxqEncoder,
    pub quantizer: CrossQuantizer,
}

/// A decoded pair, as tensors.
#[derive(Debug, Clone)]
pub struct DecodedPair {
    /// `[batch, 3, 64, 64]`, ≈ [-1, 1]
    pub image: Tensor<4>,
    /// `[batch, token_length, vocab]`
    pub logits: Tensor<3>,
}

/// Everything one training forward pass gives.
#[derive(Debug, Clone)]
pub struct Stage1Output {
    pub decoded: DecodedPair,
    pub quantized: Quantized,
    pub loss: Stage1Loss,
}

/// The stage-1 loss and its parts (paper eq. 3): image MSE + token CE + codebook + β·commitment.
#[derive(Debug, Clone)]
pub struct Stage1Loss {
    pub total: Tensor<1>,
    pub image_mse: Tensor<1>,
    pub text_ce: Tensor<1>,
    pub codebook: Tensor<1>,
    pub commitment: Tensor<1>,
}

impl MxqEncoder {
    pub fn new(c: &Stage1Config, device: &Device) -> Self {
        Self {
            image: ImageEncoder::new(c, device),
            text: TextEncoder::new(c, device),
            joint: c.joint().map(|j| JointEncoder::new(j, c.codebook.dim, device)),
        }
    }

    /// # Shapes
    /// - batch: images `[batch, 3, 64, 64]`, tokens `[batch, token_length]`
    /// - output: `[batch, 72, code_dim]`
    pub fn forward(&self, batch: Batch) -> Tensor<3> {
        let image = self.image.forward(batch.images); // [B, 64, D]
        let text = self.text.forward(batch.tokens); // [B, 8, D]
        match &self.joint {
            Some(joint) => joint.forward(image, text),
            None => Tensor::cat(vec![image, text], 1),
        }
    }
}

impl MxqCoder {
    pub fn new(c: &Stage1Config, device: &Device) -> Self {
        Self { encoder: MxqEncoder::new(c, device), quantizer: CrossQuantizer::new(c, device) }
    }

    /// The unified code sequence of each pair, `[batch, 72]`: [`MxqVae::encode`].
    pub fn encode(&self, batch: Batch) -> Tensor<2, Int> {
        self.quantizer.nearest(self.encoder.forward(batch))
    }
}

impl MxqDecoder {
    pub fn new(c: &Stage1Config, device: &Device) -> Self {
        Self {
            quantizer: CrossQuantizer::new(c, device),
            cross_maps: c.cross_maps().map(|maps| CrossMaps::new(c, maps, device)),
            image_positions: c.image_positions(),
            image: ImageDecoder::new(c, device),
            text: TextDecoder::new(c, device),
        }
    }

    /// Decodes quantized vectors `[batch, 72, code_dim]`.
    pub fn decode_quantized(&self, quantized: Tensor<3>) -> DecodedPair {
        let latents = match &self.cross_maps {
            Some(maps) => maps.forward(quantized),
            None => cross_maps::split(quantized, self.image_positions),
        };
        DecodedPair { image: self.image.forward(latents.image), logits: self.text.forward(latents.text) }
    }

    /// Decodes code indices `[batch, 72]`: all that generation needs.
    pub fn decode(&self, codes: Tensor<2, Int>) -> DecodedPair {
        self.decode_quantized(self.quantizer.lookup(codes))
    }

    /// These decoders with the text decoder's map of rank `rank` ([`TextDecoder::factored`]).
    pub fn with_text_map_rank(mut self, rank: usize) -> Result<Self, crate::Error> {
        self.text = self.text.factored(rank)?;
        Ok(self)
    }
}

impl MxqVae {
    pub fn new(c: &Stage1Config, device: &Device) -> Self {
        Self { encoder: MxqEncoder::new(c, device), decoder: MxqDecoder::new(c, device) }
    }

    /// The unified code sequence of each pair, `[batch, 72]`.
    pub fn encode(&self, batch: Batch) -> Tensor<2, Int> {
        self.decoder.quantizer.nearest(self.encoder.forward(batch))
    }

    /// The encode half, the decoders dropped.
    pub fn into_coder(self) -> MxqCoder {
        MxqCoder { encoder: self.encoder, quantizer: self.decoder.quantizer }
    }

    /// Training pass: encode the (masked) inputs, quantize, decode, and score against
    /// the full targets.
    pub fn forward(&self, inputs: Batch, targets: Batch, commitment: f64) -> Stage1Output {
        let features = self.encoder.forward(inputs);
        let quantized = self.decoder.quantizer.forward(features);
        let decoded = self.decoder.decode_quantized(quantized.quantized.clone());
        let loss = stage1_loss(&decoded, &quantized, targets, commitment);
        Stage1Output { decoded, quantized, loss }
    }
}

impl DecodedPair {
    /// How far this is from the pair `targets`: image MSE and token cross-entropy, each a
    /// `[1]` tensor.
    pub fn reconstruction_loss(&self, targets: Batch) -> (Tensor<1>, Tensor<1>) {
        let Batch { images, tokens } = targets;
        let image_mse = (self.image.clone() - images).powf_scalar(2.0).mean();
        let [batch, length, vocab] = self.logits.dims();
        // Padding is a target too (unlike the authors' ignore_index): the decoder must say
        // where the caption ends, since generated captions have no other end marker.
        let ce = CrossEntropyLossConfig::new().init(&self.logits.device());
        let text_ce =
            ce.forward(self.logits.clone().reshape([batch * length, vocab]), tokens.reshape([batch * length]));
        (image_mse, text_ce)
    }
}

fn stage1_loss(decoded: &DecodedPair, q: &Quantized, targets: Batch, beta: f64) -> Stage1Loss {
    let (image_mse, text_ce) = decoded.reconstruction_loss(targets);
    let total = image_mse.clone() + text_ce.clone() + q.codebook_loss.clone() + q.commitment_loss.clone() * beta;
    Stage1Loss { total, image_mse, text_ce, codebook: q.codebook_loss.clone(), commitment: q.commitment_loss.clone() }
}
