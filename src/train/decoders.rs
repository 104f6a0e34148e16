//! Stage 1's decoder half fine-tuned on frozen codes (`mxq train decoders`): the encoders and
//! the codebook stay as trained, so every pair keeps its codes and a prior trained on them
//! stays valid, while the cross maps and both decoders learn to read the codes of whole
//! pairs — what the prior draws — instead of the codes of the masked inputs stage 1 trained
//! them on. (The image-autoencoder practice of a decoder fine-tuned behind a frozen encoder.)

use std::path::Path;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use crate::Error;
use crate::config::MxqConfig;
use crate::data::batch::PairSet;
use crate::data::tokenizer::CaptionTokenizer;
use crate::model::mxq_vae::MxqDecoder;
use crate::rng::{Rng, Stream};
use crate::train::checkpoint::{Checkpoint, TrainState};
use crate::train::fit::{Progress, Stage, fit, start_state};
use crate::train::metrics::StepMetrics;
use crate::train::options::TrainOptions;
use crate::train::prior::CodeSequences;

/// The decoders' step over pairs and their codes (stage 1's order, one sequence per pair).
pub struct DecoderStep<'a> {
    data: &'a PairSet,
    codes: &'a CodeSequences,
    device: Device,
    /// The share of codes swapped ([`TrainOptions::code_noise`]) and the seed of which.
    noise: (f64, u64),
}

impl<'a> DecoderStep<'a> {
    /// Steps over `data` with `codes[i]` the codes of pair `i`, swapping `noise.0` of the codes
    /// (drawn from seed `noise.1`); `device` must be an autodiff device.
    pub fn new(data: &'a PairSet, codes: &'a CodeSequences, noise: (f64, u64), device: &Device) -> Self {
        Self { data, codes, device: device.clone(), noise }
    }
}

/// The code sequences of `batch`, back to back, with a `share` of the codes swapped for the
/// code another sequence of the batch has at the same position (a code that occurs there,
/// so the noise looks like a wrong draw rather than an unused code).
pub fn swapped_codes(codes: &CodeSequences, batch: &[usize], share: f64, rng: &mut Rng) -> Vec<i64> {
    let mut flat = codes.rows(batch);
    if share > 0.0 && batch.len() > 1 {
        let length = codes.length;
        for row in 0..batch.len() {
            for at in 0..length {
                if (rng.unit_f32() as f64) < share {
                    let other = (row + 1 + rng.below(batch.len() - 1)) % batch.len();
                    flat[row * length + at] = codes.get(batch[other])[at] as i64;
                }
            }
        }
    }
    flat
}

impl Stage<MxqDecoder> for DecoderStep<'_> {
    const NAME: &'static str = "decoders";

    fn items(&self) -> usize {
        self.data.len() // train_decoders checks there are as many code sequences
    }

    fn step(
        &mut self,
        mut model: MxqDecoder,
        optim: &mut ModuleOptimizer,
        lr: f64,
        batch: &[usize],
        step: usize,
    ) -> (MxqDecoder, StepMetrics) {
        let q = &mut model.quantizer;
        if q.codebook.val().is_require_grad() {
            // the codes mean what the frozen encoders made them mean (checked each step, so a
            // resumed run keeps it too)
            q.codebook = q.codebook.clone().set_require_grad(false);
        }
        let (share, seed) = self.noise;
        let flat = swapped_codes(self.codes, batch, share, &mut Rng::new(seed, Stream::TrainStep(step as u64)));
        let codes = Tensor::<2, Int>::from_data(TensorData::new(flat, [batch.len(), self.codes.length]), &self.device);
        let targets = self.data.batch(batch, None, &self.device);
        let (image_mse, text_ce) = model.decode(codes).reconstruction_loss(targets);
        let loss = image_mse.clone() + text_ce.clone();
        let value = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
        let metrics = vec![("loss", value(loss.clone())), ("image_mse", value(image_mse)), ("text_ce", value(text_ce))];
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        (optim.step(lr, model, grads), metrics)
    }
}

/// Fine-tunes (or resumes) stage 1's decoder half in `dir` on `data` and `codes` (those of the
/// frozen encoders: [`crate::train::encode_sequences`]), starting a new run from `start` —
/// its text map factored first where `config` asks for a rank that `start` does not have.
/// `device` must be an autodiff device.
#[allow(clippy::too_many_arguments)]
pub fn train_decoders(
    dir: &Path,
    config: &MxqConfig,
    tokenizer: &CaptionTokenizer,
    data: &PairSet,
    codes: &CodeSequences,
    options: &TrainOptions,
    start: MxqDecoder,
    device: &Device,
    progress: Progress,
) -> Result<MxqDecoder, Error> {
    let ckpt = Checkpoint::new(dir);
    let (state, resume) = start_state(&ckpt, DecoderStep::NAME, config, tokenizer, options)?;
    if codes.len() != data.len() {
        return Err(ckpt.bad(format!("{} code sequences for {} pairs", codes.len(), data.len())));
    }
    device.seed(state.options.seed);
    let model = MxqDecoder::new(&state.config.stage1, device);
    let model = if resume {
        model // fit loads the checkpoint into it
    } else {
        let start = match state.config.stage1.text.map_rank {
            Some(rank) => start.with_text_map_rank(rank)?,
            None => start,
        };
        model
            .try_load_record(start.into_record())
            .map_err(|e| ckpt.bad(format!("the decoders to start from do not fit the run's stage-1 config: {e}")))?
    };
    let noise = (state.options.code_noise, state.options.seed);
    let mut stage = DecoderStep::new(data, codes, noise, device);
    fit(model, &mut stage, state, &ckpt, resume, progress)
}

/// Loads fine-tuned decoders (inference mode) from their checkpoint folder, checked to be of
/// `stage1`'s config (up to the text map's rank, which is returned: the decoders' own).
pub fn load_decoders(dir: &Path, stage1: &TrainState, device: &Device) -> Result<(MxqDecoder, Option<usize>), Error> {
    let ckpt = Checkpoint::new(dir);
    let state = ckpt.state()?;
    if state.stage != DecoderStep::NAME {
        return Err(ckpt.bad(format!("holds a {} checkpoint, not decoders", state.stage)));
    }
    if !state.config.stage1.same_codes(&stage1.config.stage1) || state.tokenizer != stage1.tokenizer {
        return Err(ckpt.bad("these decoders were fine-tuned on another stage 1 than the run's"));
    }
    let model = ckpt.load_model(MxqDecoder::new(&state.config.stage1, device))?;
    Ok((model.valid(), state.config.stage1.text.map_rank))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swapped_codes_come_from_the_same_position_of_another_sequence() {
        // sequence i holds 100·i + position: a swapped code tells where it came from
        let codes =
            CodeSequences { codes: (0..6u32).flat_map(|i| (0..80).map(move |at| 100 * i + at)).collect(), length: 80 };
        let batch = [5, 2, 0, 3];
        let plain = codes.rows(&batch);
        assert_eq!(swapped_codes(&codes, &batch, 0.0, &mut Rng::new(1, Stream::Test(0))), plain);
        let noisy = swapped_codes(&codes, &batch, 0.25, &mut Rng::new(1, Stream::Test(0)));
        let swapped = noisy.iter().zip(&plain).filter(|(n, p)| n != p).count();
        assert!((50..110).contains(&swapped), "{swapped} of 320 swapped at a share of 0.25");
        for (k, &c) in noisy.iter().enumerate() {
            let (row, at) = (k / 80, (k % 80) as i64);
            assert_eq!(c % 100, at, "code {k} comes from another position");
            let from = (c / 100) as usize;
            assert!(batch.contains(&from), "code {k} comes from outside the batch");
            assert!(c == plain[k] || from != batch[row], "a swap takes another sequence's code");
        }
        let again = swapped_codes(&codes, &batch, 0.25, &mut Rng::new(1, Stream::Test(0)));
        assert_eq!(noisy, again, "seeded");
    }
}
